//! Host facts: name, system, kernel, addresses.

use muster_catalog::HostFacts;
use std::path::Path;

/// Reads `KEY=value` from an os-release file (quotes removed).
pub fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// The facts of the system under `root`. For an image (`live` false) the
/// hostname is the image's own, never this machine's.
pub fn collect(root: &Path, live: bool, platform: muster_catalog::Platform) -> HostFacts {
    let text = |rel: &str| {
        crate::sources::fsroot::read(root, rel)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let os = text("etc/os-release")
        .or_else(|| text("usr/lib/os-release"))
        .unwrap_or_default();
    let hostname = if live {
        sysinfo::System::host_name().unwrap_or_default()
    } else {
        text("etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let mut facts = HostFacts {
        hostname,
        os_name: os_release_field(&os, "NAME")
            .or_else(|| os_release_field(&os, "ID"))
            .unwrap_or_else(|| "Linux".into()),
        os_version: os_release_field(&os, "VERSION_ID").unwrap_or_default(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        platform: platform.as_str().into(),
        ..HostFacts::default()
    };
    if live {
        facts.kernel = sysinfo::System::kernel_version().unwrap_or_default();
        facts.arch = sysinfo::System::cpu_arch();
        if let Ok(nets) = sysinfo::Networks::new_with_refreshed_list() {
            let mut ips: Vec<String> = nets
                .values()
                .flat_map(|data| data.ip_networks().iter().map(|n| n.addr))
                .filter(|ip| !ip.is_loopback())
                .map(|ip| ip.to_string())
                .collect();
            ips.sort();
            ips.dedup();
            facts.ips = ips;
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quotes_are_removed() {
        let t = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(os_release_field(t, "NAME").unwrap(), "Debian GNU/Linux");
        assert_eq!(os_release_field(t, "VERSION_ID").unwrap(), "12");
        assert_eq!(os_release_field(t, "ID").unwrap(), "debian");
        assert!(os_release_field(t, "NOPE").is_none());
    }

    #[test]
    fn an_image_reports_its_own_hostname() {
        let root = std::env::temp_dir().join(format!("muster-facts-{}", std::process::id()));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "image-host\n").unwrap();
        std::fs::write(
            root.join("etc/os-release"),
            "NAME=\"Fedora Linux\"\nVERSION_ID=40\n",
        )
        .unwrap();
        let f = collect(&root, false, muster_catalog::Platform::Linux);
        assert_eq!(f.hostname, "image-host");
        assert_eq!(f.os_name, "Fedora Linux");
        assert_eq!(f.os_version, "40");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
