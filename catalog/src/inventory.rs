//! The inventory: what a host has that matters for recognising security
//! software, each fact with where it was read.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// How present an inventory item is on the host.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// Only leftovers: a package removed but not purged, a disabled unit.
    Leftover,
    /// Installed or registered.
    #[default]
    Present,
    /// Running now: a process, a loaded module.
    Active,
}

impl Presence {
    /// The wire and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Leftover => "leftover",
            Presence::Present => "present",
            Presence::Active => "active",
        }
    }

    /// Parses the wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "leftover" => Some(Presence::Leftover),
            "present" => Some(Presence::Present),
            "active" => Some(Presence::Active),
            _ => None,
        }
    }
}

/// The kinds of fact an inventory holds; indicators of the same kind match them.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// An installed package (dpkg, rpm, apk, pacman).
    #[default]
    Package,
    /// A service: Windows service key name, systemd service name, SysV script.
    Service,
    /// A Windows kernel or file-system driver, by file name (`klif.sys`).
    Driver,
    /// A running process, by executable file name.
    Process,
    /// A Linux kernel module.
    KernelModule,
    /// A file or folder that exists.
    FilePath,
    /// A Windows registry key, `HKLM\SOFTWARE\...`.
    RegistryKey,
    /// The DisplayName of a Windows Uninstall entry.
    UninstallDisplayName,
    /// A product registered with Windows Security Center, by display name.
    SecurityCenter,
    /// A macOS bundle identifier (app, kext, system extension).
    BundleId,
    /// A macOS launchd job label.
    LaunchdLabel,
    /// A systemd unit file name, e.g. `kesl.service`.
    SystemdUnit,
    /// A browser extension id.
    BrowserExtension,
    /// A trusted root certificate, by subject common name.
    RootCertificate,
}

impl ItemKind {
    /// Every kind, in a stable order.
    pub const ALL: [ItemKind; 14] = [
        ItemKind::Package,
        ItemKind::Service,
        ItemKind::Driver,
        ItemKind::Process,
        ItemKind::KernelModule,
        ItemKind::FilePath,
        ItemKind::RegistryKey,
        ItemKind::UninstallDisplayName,
        ItemKind::SecurityCenter,
        ItemKind::BundleId,
        ItemKind::LaunchdLabel,
        ItemKind::SystemdUnit,
        ItemKind::BrowserExtension,
        ItemKind::RootCertificate,
    ];

    /// The wire and data-file name.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Package => "package",
            ItemKind::Service => "service",
            ItemKind::Driver => "driver",
            ItemKind::Process => "process",
            ItemKind::KernelModule => "kernel_module",
            ItemKind::FilePath => "file_path",
            ItemKind::RegistryKey => "registry_key",
            ItemKind::UninstallDisplayName => "uninstall_display_name",
            ItemKind::SecurityCenter => "security_center",
            ItemKind::BundleId => "bundle_id",
            ItemKind::LaunchdLabel => "launchd_label",
            ItemKind::SystemdUnit => "systemd_unit",
            ItemKind::BrowserExtension => "browser_extension",
            ItemKind::RootCertificate => "root_certificate",
        }
    }

    /// Parses the wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An operating system family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Linux.
    Linux,
    /// Windows.
    Windows,
    /// macOS.
    Macos,
}

impl Platform {
    /// The data-file name.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Linux => "linux",
            Platform::Windows => "windows",
            Platform::Macos => "macos",
        }
    }

    /// Parses the data-file name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "linux" => Some(Platform::Linux),
            "windows" => Some(Platform::Windows),
            "macos" => Some(Platform::Macos),
            _ => None,
        }
    }
}

/// One fact about the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Item {
    /// What kind of fact.
    pub kind: ItemKind,
    /// The name an indicator matches: package name, unit name, executable name.
    pub name: String,
    /// The version, where the source knows it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// A path on the host, where there is one (the executable, the unit file).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// How present the item is.
    pub presence: Presence,
    /// Where the fact was read, e.g. `/var/lib/dpkg/status`.
    pub source: String,
    /// Further facts a source knows, by name: `manager` (dpkg, rpm, apk,
    /// pacman, snap, windows-uninstall, macos-app, macos-receipt),
    /// `status`, `release`, `epoch`, `vendor`, `publisher`, `display_name`,
    /// `start`, `arch`. Shown in snapshots; not matched by the engine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
}

impl Item {
    /// An item with no version, path or attributes.
    pub fn new(
        kind: ItemKind,
        name: impl Into<String>,
        presence: Presence,
        source: impl Into<String>,
    ) -> Item {
        Item {
            kind,
            name: name.into(),
            presence,
            source: source.into(),
            ..Item::default()
        }
    }

    /// Sets the version.
    pub fn version(mut self, v: impl Into<String>) -> Item {
        self.version = v.into();
        self
    }

    /// Sets the path.
    pub fn path(mut self, p: impl Into<String>) -> Item {
        self.path = p.into();
        self
    }

    /// Adds an attribute (empty values are left out).
    pub fn attr(mut self, k: &str, v: impl Into<String>) -> Item {
        let v = v.into();
        if !v.is_empty() {
            self.attrs.insert(k.to_string(), v);
        }
        self
    }
}

/// A named part of the inventory that is sent and stored as a whole, so that
/// an unchanged section costs only its digest on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// The items, sorted and without duplicates once [`Section::normalise`] ran.
    pub items: Vec<Item>,
}

impl Section {
    /// Sorts the items and removes duplicates, so the digest does not depend
    /// on the order a source read them in.
    pub fn normalise(&mut self) {
        self.items.sort();
        self.items.dedup();
    }

    /// Lowercase hex SHA-256 of the canonical form: every item's fields,
    /// length-prefixed, in sorted order.
    pub fn digest(&self) -> String {
        let mut sorted: Vec<&Item> = self.items.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut h = Sha256::new();
        for it in sorted {
            let attrs = it.attrs.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]);
            for field in [
                it.kind.as_str(),
                &it.name,
                &it.version,
                &it.path,
                it.presence.as_str(),
                &it.source,
            ]
            .into_iter()
            .chain(attrs)
            {
                h.update((field.len() as u64).to_le_bytes());
                h.update(field.as_bytes());
            }
        }
        hex::encode(h.finalize())
    }
}

/// Every section of one host's inventory, by name (`packages`, `services`, `processes`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The system the inventory is of; indicators of other platforms are
    /// not matched against it. `None` matches every platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Sections by name.
    pub sections: BTreeMap<String, Section>,
}

impl Inventory {
    /// All items of every section.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.sections.values().flat_map(|s| s.items.iter())
    }

    /// The digest of every section, by name.
    pub fn digests(&self) -> BTreeMap<String, String> {
        self.sections
            .iter()
            .map(|(n, s)| (n.clone(), s.digest()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str) -> Item {
        Item {
            kind: ItemKind::Package,
            name: name.into(),
            version: "1".into(),
            path: String::new(),
            presence: Presence::Present,
            source: "/var/lib/dpkg/status".into(),
            attrs: Default::default(),
        }
    }

    #[test]
    fn digest_ignores_order_and_sees_changes() {
        let a = Section {
            items: vec![item("a"), item("b")],
        };
        let b = Section {
            items: vec![item("b"), item("a")],
        };
        assert_eq!(a.digest(), b.digest());
        let c = Section {
            items: vec![item("a"), item("c")],
        };
        assert_ne!(a.digest(), c.digest());
        // Field boundaries matter: "ab"+"" differs from "a"+"b".
        let mut x = item("ab");
        x.version = String::new();
        let mut y = item("a");
        y.version = "b".into();
        assert_ne!(
            Section { items: vec![x] }.digest(),
            Section { items: vec![y] }.digest()
        );
    }
}

/// What a host says about itself: name, system, addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// The host's own name (of the image, when scanning an image).
    pub hostname: String,
    /// Operating system name, e.g. `Debian GNU/Linux`.
    pub os_name: String,
    /// Operating system version, e.g. `12`.
    pub os_version: String,
    /// Kernel release, live hosts only.
    #[serde(default)]
    pub kernel: String,
    /// CPU architecture, e.g. `x86_64`.
    #[serde(default)]
    pub arch: String,
    /// IP addresses, live hosts only.
    #[serde(default)]
    pub ips: Vec<String>,
    /// The agent's version.
    #[serde(default)]
    pub agent_version: String,
    /// `linux`, `windows` or `macos`; empty when unknown.
    #[serde(default)]
    pub platform: String,
    /// The machine's hardware id (SMBIOS system UUID, lower case), which a
    /// re-installation keeps; empty when unknown. Tells a re-imaged
    /// machine from another machine of the same hostname.
    #[serde(default)]
    pub hardware_id: String,
}
