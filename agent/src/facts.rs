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

/// The SMBIOS system UUID as a hardware id: lower case, and empty when it
/// is not a UUID or is one of the placeholders firmware ships with
/// (all zeros, all ones, the 03000200-... board default), which many
/// machines share.
pub fn hardware_id(raw: &str) -> String {
    let id = raw.trim().to_ascii_lowercase();
    let shape = id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    let digits: String = id.chars().filter(|c| *c != '-').collect();
    let placeholder = digits.chars().all(|c| c == '0')
        || digits.chars().all(|c| c == 'f')
        || id == "03000200-0400-0500-0006-000700080009"
        || id == "00020003-0004-0005-0006-000700080009";
    if shape && !placeholder {
        id
    } else {
        String::new()
    }
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
        // Readable by root or with CAP_DAC_READ_SEARCH (the unit grants it).
        hardware_id: text("sys/class/dmi/id/product_uuid")
            .map(|s| hardware_id(&s))
            .unwrap_or_default(),
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
        assert_eq!(f.hardware_id, "", "an image without DMI has no hardware id");
        std::fs::create_dir_all(root.join("sys/class/dmi/id")).unwrap();
        std::fs::write(
            root.join("sys/class/dmi/id/product_uuid"),
            "4C4C4544-0042-3510-8052-B4C04F563132\n",
        )
        .unwrap();
        let f = collect(&root, false, muster_catalog::Platform::Linux);
        assert_eq!(f.hardware_id, "4c4c4544-0042-3510-8052-b4c04f563132");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn placeholder_and_malformed_system_uuids_are_no_hardware_id() {
        for raw in [
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
            "03000200-0400-0500-0006-000700080009",
            "Not Settable",
            "",
            "4c4c4544-0042-3510-8052-b4c04f56313",
            "4c4c4544x0042-3510-8052-b4c04f563132",
        ] {
            assert_eq!(hardware_id(raw), "", "{raw:?}");
        }
        assert_eq!(
            hardware_id(" ec2a1f3e-9c51-8b7d-11aa-0242ac120002\n"),
            "ec2a1f3e-9c51-8b7d-11aa-0242ac120002"
        );
    }
}
