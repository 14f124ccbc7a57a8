//! Windows, from the registry hives of a volume (`Windows/System32/config/
//! SYSTEM` and `SOFTWARE`): services and drivers of the current control
//! set, Uninstall entries (64- and 32-bit views), the computer name and the
//! Windows version, and the registry keys the catalog names. A live Windows
//! host saves its hives with `reg save` and is read by this same code.

use super::SourceError;
use super::hivefile::{self, HiveError, Key};
use super::system::find_ci;
use muster_catalog::{Catalog, HostFacts, Item, ItemKind, Platform, Presence};
use std::path::{Path, PathBuf};

/// Largest hive read, in bytes: a SYSTEM or SOFTWARE hive of a real
/// machine is tens of MB; anything far larger is not a hive to trust.
const MAX_HIVE: u64 = 512 << 20;

/// An open hive and where it came from. Cells are read on demand (see
/// [`hivefile`]), so a large hive costs little memory.
pub struct Hive {
    hive: hivefile::Hive,
    path: PathBuf,
}

impl Hive {
    /// Opens the hive `name` (`SYSTEM`, `SOFTWARE`) under `root`; `None`
    /// when the volume has none.
    pub fn open(root: &Path, name: &str) -> Option<Result<Hive, SourceError>> {
        let path = find_ci(root, &["Windows", "System32", "config", name])?;
        Some(Self::open_file(&path))
    }

    /// Opens a hive file.
    pub fn open_file(path: &Path) -> Result<Hive, SourceError> {
        let len = std::fs::metadata(path)
            .map_err(|e| SourceError::read(path, e))?
            .len();
        if len > MAX_HIVE {
            return Err(SourceError::invalid(
                path,
                format!("{len} bytes is too large for a registry hive"),
            ));
        }
        match hivefile::Hive::open(path) {
            Ok(hive) => Ok(Hive {
                hive,
                path: path.to_path_buf(),
            }),
            Err(e) => Err(SourceError::invalid(
                path,
                format!("not a readable registry hive: {}", e.message()),
            )),
        }
    }

    /// The key at `path`, `None` when it is absent or cannot be read.
    fn key(&self, path: &str) -> Option<Key<'_>> {
        self.hive.open_key(path).ok().flatten()
    }

    /// The key at `path`, `None` when absent, an error when the hive is
    /// damaged on the way there.
    fn try_key(&self, path: &str) -> Result<Option<Key<'_>>, HiveError> {
        self.hive.open_key(path)
    }

    /// `ControlSetNNN` named by `Select\Current` (001 when absent).
    fn current_control_set(&self) -> String {
        let n = self
            .key("Select")
            .and_then(|k| dword(&k, "Current"))
            .unwrap_or(1);
        format!("ControlSet{n:03}")
    }
}

fn string(key: &Key<'_>, name: &str) -> Option<String> {
    key.value(name).ok().flatten().and_then(|v| v.string())
}

fn dword(key: &Key<'_>, name: &str) -> Option<u32> {
    key.value(name).ok().flatten().and_then(|v| v.dword())
}

/// The machine hives a live Windows host is read from.
const LIVE_HIVES: [(&str, &str); 2] = [("SYSTEM", "HKLM\\SYSTEM"), ("SOFTWARE", "HKLM\\SOFTWARE")];

/// The live registry saved to files in a folder of its own, removed when
/// this is dropped: Windows keeps the hive files of a running system open,
/// so `reg save` copies them and the same reader as for an image reads the
/// copies. (Users' NTUSER.DAT files are read in place; a logged-on user's is
/// locked and reported as unreadable.)
pub struct Saved {
    dir: PathBuf,
}

impl Saved {
    /// Saves every machine hive with `save(key, file)` into a new folder
    /// under `parent`, created by this call (so nobody can have placed a
    /// file or link there first) and readable by the agent's account only.
    pub fn save(
        parent: &Path,
        save: impl Fn(&str, &Path) -> std::io::Result<()>,
    ) -> Result<Saved, SourceError> {
        let dir = parent.join(format!(
            "muster-hives-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|e| SourceError::read(&dir, e))?;
        let saved = Saved { dir };
        for (name, key) in LIVE_HIVES {
            let file = saved.path(name);
            save(key, &file).map_err(|e| {
                SourceError::invalid(
                    &file,
                    format!("could not save {key} from the live registry: {e}"),
                )
            })?;
        }
        Ok(saved)
    }

    /// The saved copy of the hive `name` (`SYSTEM`, `SOFTWARE`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Saves a live registry key to `file` with Windows' own `reg save`
/// (which needs the backup privilege an administrator or SYSTEM has).
pub fn reg_save(key: &str, file: &Path) -> std::io::Result<()> {
    let out = std::process::Command::new("reg")
        .arg("save")
        .arg(key)
        .arg(file)
        .arg("/y")
        .stdin(std::process::Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&out.stderr);
        Err(std::io::Error::other(format!(
            "reg save exited with {}: {}",
            out.status,
            said.trim()
        )))
    }
}

/// The file name at the end of an ImagePath (`system32\drivers\klif.sys`,
/// `"C:\Program Files\X\svc.exe" -k y`, `\SystemRoot\...`).
pub fn image_file(image_path: &str) -> Option<String> {
    let s = image_path.trim();
    let s = match s.strip_prefix('"') {
        Some(rest) => rest.split('"').next().unwrap_or(rest),
        None => s.split(" -").next().unwrap_or(s).trim(),
    };
    let name = s.rsplit(['\\', '/']).next()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Runs a reader over a hive, turning damage it meets into this source's
/// error (naming the hive file).
pub fn guarded(
    hive: &Hive,
    read: impl FnOnce(&Hive) -> Result<Vec<Item>, HiveError>,
) -> Result<Vec<Item>, SourceError> {
    read(hive).map_err(|e| {
        SourceError::invalid(
            &hive.path,
            format!("damaged registry hive: {}", e.message()),
        )
    })
}

/// Services and drivers of the current control set. A driver (Type 1, 2
/// or 8) is reported both by its service name and by its file name; a
/// service or driver whose Start is 4 (disabled) is a leftover.
pub fn services(system: &Hive) -> Result<Vec<Item>, HiveError> {
    let cs = system.current_control_set();
    let Some(services) = system.try_key(&format!("{cs}\\Services"))? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for k in services.subkeys()? {
        let name = k.name();
        let kind = dword(&k, "Type").unwrap_or(0);
        let start = dword(&k, "Start");
        let image = string(&k, "ImagePath").unwrap_or_default();
        // Keys without a Type are parameters or leftovers of old drivers.
        if kind == 0 && image.is_empty() {
            continue;
        }
        let presence = if start == Some(4) {
            Presence::Leftover
        } else {
            Presence::Present
        };
        let source = format!("HKLM\\SYSTEM\\{cs}\\Services\\{name}");
        let display = string(&k, "DisplayName").unwrap_or_default();
        let start = start.map(|s| s.to_string()).unwrap_or_default();
        let is_driver = kind & 0xB != 0 && kind < 0x10;
        let service = Item::new(ItemKind::Service, name, presence, source.as_str())
            .path(image.as_str())
            .attr("display_name", display.as_str())
            .attr("start", start.as_str())
            .attr("kind", if is_driver { "driver" } else { "service" });
        if is_driver {
            let file = image_file(&image).unwrap_or_else(|| format!("{name}.sys"));
            out.push(Item {
                kind: ItemKind::Driver,
                name: file,
                ..service.clone()
            });
        }
        out.push(service);
    }
    Ok(out)
}

/// Most user profiles read from one volume.
const MAX_USERS: usize = 1000;

/// Every user's NTUSER.DAT on the volume (`Users/<name>/NTUSER.DAT`, any
/// case), opened; profiles without one are skipped.
pub fn users(root: &Path) -> Vec<(String, Result<Hive, SourceError>)> {
    let Some(users) = find_ci(root, &["Users"]) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(&users) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.truncate(MAX_USERS);
    names
        .into_iter()
        .filter_map(|u| {
            let p = find_ci(&users, &[u.as_str(), "NTUSER.DAT"])?;
            Some((u, Hive::open_file(&p)))
        })
        .collect()
}

/// Uninstall entries of both registry views of the machine's SOFTWARE
/// hive, by DisplayName, with DisplayVersion.
pub fn uninstall(software: &Hive) -> Result<Vec<Item>, HiveError> {
    uninstall_in(software, "HKLM\\SOFTWARE", "", None)
}

/// A user's own Uninstall entries, from their NTUSER.DAT (whose root holds
/// `Software`) or from a saved `HKCU\Software` hive (whose root is it).
pub fn user_uninstall(ntuser: &Hive, user: &str) -> Result<Vec<Item>, HiveError> {
    let prefix = if ntuser.key("Software\\Microsoft").is_some() {
        "Software\\"
    } else {
        ""
    };
    uninstall_in(
        ntuser,
        &format!("HKU\\{user}\\Software"),
        prefix,
        Some(user),
    )
}

fn uninstall_in(
    h: &Hive,
    shown: &str,
    prefix: &str,
    user: Option<&str>,
) -> Result<Vec<Item>, HiveError> {
    let mut out = Vec::new();
    for view in [
        "Microsoft\\Windows\\CurrentVersion\\Uninstall",
        "WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall",
    ] {
        let Some(key) = h.try_key(&format!("{prefix}{view}"))? else {
            continue;
        };
        for k in key.subkeys()? {
            let Some(display) = string(&k, "DisplayName").filter(|s| !s.trim().is_empty()) else {
                continue;
            };
            let item = Item::new(
                ItemKind::UninstallDisplayName,
                display,
                Presence::Present,
                format!("{shown}\\{view}\\{}", k.name()),
            )
            .version(string(&k, "DisplayVersion").unwrap_or_default())
            .path(string(&k, "InstallLocation").unwrap_or_default())
            .attr("manager", "windows-uninstall")
            .attr("publisher", string(&k, "Publisher").unwrap_or_default())
            .attr(
                "system_component",
                dword(&k, "SystemComponent")
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            )
            .attr(
                "view",
                if view.starts_with("WOW6432Node") {
                    "32-bit"
                } else {
                    "64-bit"
                },
            )
            .attr("user", user.unwrap_or_default());
            out.push(item);
        }
    }
    Ok(out)
}

/// Products registered with Windows Security Center (workstations since
/// Windows 8 keep them under `Microsoft\Security Center\Provider`; Windows
/// Server has no Security Center, so services and drivers must suffice there).
pub fn security_center(software: &Hive) -> Result<Vec<Item>, HiveError> {
    let mut out = Vec::new();
    for (sub, kind) in [
        ("Av", "antivirus"),
        ("Fw", "firewall"),
        ("As", "antispyware"),
    ] {
        let path = format!("Microsoft\\Security Center\\Provider\\{sub}");
        let Some(key) = software.try_key(&path)? else {
            continue;
        };
        for k in key.subkeys()? {
            let Some(name) = string(&k, "DISPLAYNAME").filter(|s| !s.trim().is_empty()) else {
                continue;
            };
            out.push(
                Item::new(
                    ItemKind::SecurityCenter,
                    name,
                    Presence::Present,
                    format!("HKLM\\SOFTWARE\\{path}\\{}", k.name()),
                )
                .attr("type", kind),
            );
        }
    }
    Ok(out)
}

/// The DER certificate inside a registry certificate `Blob`: a list of
/// properties (id, reserved, length, data), the certificate being id 0x20.
pub fn blob_certificate(blob: &[u8]) -> Option<&[u8]> {
    let mut rest = blob;
    while rest.len() >= 12 {
        let word = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let (id, len) = (word(0), word(8) as usize);
        let data = rest.get(12..12usize.checked_add(len)?)?;
        if id == 0x20 {
            return Some(data);
        }
        rest = &rest[12 + len..];
    }
    None
}

/// Root certificates of the machine's registry stores (`ROOT`, `AuthRoot`,
/// and the group-policy store), by subject common name.
pub fn certificates(software: &Hive) -> Result<Vec<Item>, HiveError> {
    let mut out = Vec::new();
    for store in [
        "Microsoft\\SystemCertificates\\ROOT\\Certificates",
        "Microsoft\\SystemCertificates\\AuthRoot\\Certificates",
        "Policies\\Microsoft\\SystemCertificates\\Root\\Certificates",
    ] {
        let Some(key) = software.try_key(store)? else {
            continue;
        };
        for k in key.subkeys()?.into_iter().take(10_000) {
            let Some(blob) = k.value("Blob").ok().flatten().map(|v| v.data) else {
                continue;
            };
            let Some(cert) = blob_certificate(&blob).and_then(super::certs::parse_der) else {
                continue;
            };
            let name = if cert.common_name.is_empty() {
                cert.subject.clone()
            } else {
                cert.common_name.clone()
            };
            out.push(
                Item::new(
                    ItemKind::RootCertificate,
                    name,
                    Presence::Present,
                    format!("HKLM\\SOFTWARE\\{store}\\{}", k.name()),
                )
                .attr("subject", cert.subject)
                .attr("issuer", cert.issuer)
                .attr("sha256", hex::encode(cert.sha256))
                .attr("not_after", cert.not_after)
                .attr("store", "registry"),
            );
        }
    }
    Ok(out)
}

/// The registry keys that the catalog names and that exist in the hives.
pub fn catalog_keys(
    catalog: &Catalog,
    system: Option<&Hive>,
    software: Option<&Hive>,
) -> Vec<Item> {
    let cs = system.map(Hive::current_control_set);
    let mut out = Vec::new();
    for ind in catalog.products.iter().flat_map(|p| &p.indicators) {
        if ind.kind != ItemKind::RegistryKey || ind.platform != Platform::Windows {
            continue;
        }
        let v = ind.value.replace('/', "\\");
        let upper = v.to_ascii_uppercase();
        let found = if let Some(rest) = upper.strip_prefix("HKLM\\SOFTWARE\\").map(|_| &v[14..]) {
            software.is_some_and(|h| h.key(rest).is_some())
        } else if let Some(rest) = upper.strip_prefix("HKLM\\SYSTEM\\").map(|_| &v[12..]) {
            let rest = match (
                &cs,
                rest.to_ascii_uppercase().strip_prefix("CURRENTCONTROLSET"),
            ) {
                (Some(cs), Some(_)) => format!("{cs}{}", &rest[17..]),
                _ => rest.to_string(),
            };
            system.is_some_and(|h| h.key(&rest).is_some())
        } else {
            false
        };
        if found {
            out.push(Item {
                kind: ItemKind::RegistryKey,
                name: ind.value.clone(),
                version: String::new(),
                path: String::new(),
                presence: Presence::Present,
                source: "registry".into(),
                attrs: Default::default(),
            });
        }
    }
    out
}

/// Host facts of a Windows volume: its computer name and Windows version.
pub fn facts(system: Option<&Hive>, software: Option<&Hive>) -> HostFacts {
    let mut f = HostFacts {
        os_name: "Windows".into(),
        platform: "windows".into(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        ..HostFacts::default()
    };
    if let Some(h) = system {
        let cs = h.current_control_set();
        if let Some(k) = h.key(&format!("{cs}\\Control\\ComputerName\\ComputerName")) {
            f.hostname = string(&k, "ComputerName").unwrap_or_default();
        }
    }
    if let Some(k) = software.and_then(|h| h.key("Microsoft\\Windows NT\\CurrentVersion")) {
        if let Some(p) = string(&k, "ProductName") {
            f.os_name = p;
        }
        let version = string(&k, "DisplayVersion").or_else(|| string(&k, "CurrentVersion"));
        let build = string(&k, "CurrentBuild").or_else(|| string(&k, "CurrentBuildNumber"));
        f.os_version = match (version, build) {
            (Some(v), Some(b)) => format!("{v} (build {b})"),
            (Some(v), None) => v,
            (None, Some(b)) => format!("build {b}"),
            (None, None) => String::new(),
        };
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SOFTWARE hive and a user's NTUSER.DAT written with the hive
    /// writer: Security Center providers, machine and per-user Uninstall
    /// entries, and a key the catalog names.
    #[test]
    fn security_center_user_uninstall_and_catalog_keys() {
        use regf::writer::HiveBuilder;
        let dir = std::env::temp_dir().join(format!("muster-hivew-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sw = dir.join("SOFTWARE");
        let mut b = HiveBuilder::new().unwrap();
        let av = "Microsoft\\Security Center\\Provider\\Av\\{1E8F8AB8-0000}";
        b.create_key(av).unwrap();
        b.add_value_string(
            av,
            Some("DISPLAYNAME"),
            "Kaspersky Endpoint Security for Windows",
        )
        .unwrap();
        let un = "WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{KES}";
        b.create_key(un).unwrap();
        b.add_value_string(
            un,
            Some("DisplayName"),
            "Kaspersky Endpoint Security for Windows",
        )
        .unwrap();
        b.add_value_string(un, Some("DisplayVersion"), "11.11.0.452")
            .unwrap();
        b.add_value_string(un, Some("Publisher"), "AO Kaspersky Lab")
            .unwrap();
        b.create_key("KasperskyLab\\protected").unwrap();
        // A root in the machine store, as Windows serialises it.
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut ca = ca;
        ca.distinguished_name.push(
            rcgen::DnType::CommonName,
            "Kaspersky Anti-Virus Personal Root Certificate",
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let der = ca.self_signed(&key).unwrap().der().to_vec();
        let mut blob = Vec::new();
        for (id, data) in [(0x03u32, &b"thumbprint-bytes...."[..]), (0x20, &der[..])] {
            blob.extend(id.to_le_bytes());
            blob.extend(1u32.to_le_bytes());
            blob.extend((data.len() as u32).to_le_bytes());
            blob.extend(data);
        }
        let store = "Microsoft\\SystemCertificates\\ROOT\\Certificates\\ABCDEF";
        b.create_key(store).unwrap();
        b.add_value_binary(store, Some("Blob"), &blob).unwrap();
        b.write_to_file(&sw).unwrap();
        let nt = dir.join("NTUSER.DAT");
        let mut b = HiveBuilder::new().unwrap();
        let un = "Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Tool";
        b.create_key(un).unwrap();
        b.add_value_string(un, Some("DisplayName"), "Per-user Tool")
            .unwrap();
        b.write_to_file(&nt).unwrap();

        let software = Hive::open_file(&sw).unwrap();
        let sc = security_center(&software).unwrap();
        assert_eq!(sc.len(), 1);
        assert_eq!(sc[0].name, "Kaspersky Endpoint Security for Windows");
        assert_eq!(sc[0].attrs["type"], "antivirus");
        let un = uninstall(&software).unwrap();
        assert_eq!(un[0].version, "11.11.0.452");
        assert_eq!(un[0].attrs["view"], "32-bit");
        assert_eq!(un[0].attrs["publisher"], "AO Kaspersky Lab");
        let user = user_uninstall(&Hive::open_file(&nt).unwrap(), "alice").unwrap();
        assert_eq!(user[0].name, "Per-user Tool");
        assert_eq!(user[0].attrs["user"], "alice");
        assert!(user[0].source.starts_with("HKU\\alice\\Software\\"));
        let certs = certificates(&software).unwrap();
        assert_eq!(certs.len(), 1, "{certs:?}");
        assert_eq!(
            certs[0].name,
            "Kaspersky Anti-Virus Personal Root Certificate"
        );
        assert_eq!(certs[0].attrs["store"], "registry");
        assert!(blob_certificate(&[1, 0, 0]).is_none());
        assert!(blob_certificate(&[0x20, 0, 0, 0, 1, 0, 0, 0, 255, 255, 255, 255]).is_none());
        let keys = catalog_keys(&Catalog::builtin(), None, Some(&software));
        assert!(
            keys.iter()
                .any(|k| k.name.eq_ignore_ascii_case("HKLM\\SOFTWARE\\KasperskyLab")),
            "{keys:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_per_user_software_hive_has_its_uninstall_entries() {
        let Some(p) = crate::sources::fixture("windows-registry/regipy_ntuser_software_partial")
        else {
            return;
        };
        let items = user_uninstall(&Hive::open_file(&p).unwrap(), "tony").unwrap();
        // 5 per-user entries, per the fixture's README.
        assert_eq!(items.len(), 5, "{items:?}");
        assert!(items.iter().any(|i| i.name.contains("GitKraken")));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Arbitrary bytes, with and without a hive signature, never make
        /// the hive source panic: open and read are both guarded.
        #[test]
        fn arbitrary_bytes_are_an_error_or_a_hive(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..9000), sig in proptest::prelude::any::<bool>()) {
            if sig && bytes.len() >= 4 {
                bytes[..4].copy_from_slice(b"regf");
            }
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("SYSTEM");
            std::fs::write(&p, &bytes).unwrap();
            if let Ok(h) = Hive::open_file(&p) {
                let _ = guarded(&h, services);
                let _ = guarded(&h, uninstall);
                let _ = guarded(&h, certificates);
            }
        }

        #[test]
        fn certificate_blobs_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = blob_certificate(&bytes);
        }
    }

    /// The live path: hives saved into a private folder of their own, read
    /// by the same code as an image's, and the folder gone afterwards.
    #[test]
    fn live_hives_are_saved_privately_read_and_removed() {
        let Some(system) = crate::sources::fixture("windows-registry/regipy_SYSTEM") else {
            return;
        };
        let Some(software) = crate::sources::fixture("windows-registry/scancode_Software_Delta")
        else {
            return;
        };
        let parent = tempfile::tempdir().unwrap();
        let asked = std::cell::RefCell::new(Vec::new());
        let saved = Saved::save(parent.path(), |key, file| {
            asked.borrow_mut().push(key.to_string());
            let from = if key.ends_with("SYSTEM") {
                &system
            } else {
                &software
            };
            std::fs::copy(from, file).map(|_| ())
        })
        .unwrap();
        assert_eq!(*asked.borrow(), ["HKLM\\SYSTEM", "HKLM\\SOFTWARE"]);
        let dir = saved.path("SYSTEM").parent().unwrap().to_path_buf();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        let h = Hive::open_file(&saved.path("SYSTEM")).unwrap();
        assert_eq!(facts(Some(&h), None).hostname, "WKS-WIN732BITA");
        let sw = Hive::open_file(&saved.path("SOFTWARE")).unwrap();
        assert!(
            uninstall(&sw)
                .unwrap()
                .iter()
                .any(|i| i.name.contains("Python 3.9.5"))
        );
        drop((h, sw));
        drop(saved);
        assert!(!dir.exists(), "the saved hives are removed");
    }

    /// A failing `reg save` is the source's error, naming the key; no
    /// folder is left behind. On this Linux machine `reg` itself is absent.
    #[test]
    fn a_failed_save_names_the_key_and_leaves_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let e = Saved::save(parent.path(), |key, _| {
            if key.ends_with("SOFTWARE") {
                Err(std::io::Error::other("Access is denied."))
            } else {
                Ok(())
            }
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("HKLM\\SOFTWARE"), "{e}");
        assert!(e.to_string().contains("Access is denied"), "{e}");
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
        let e = Saved::save(parent.path(), reg_save).err().unwrap();
        assert!(e.to_string().contains("HKLM\\SYSTEM"), "{e}");
    }

    #[test]
    fn image_paths_give_file_names() {
        assert_eq!(
            image_file("system32\\drivers\\mfehidk.sys").unwrap(),
            "mfehidk.sys"
        );
        assert_eq!(
            image_file("\"C:\\Program Files\\McAfee\\mcshield.exe\"").unwrap(),
            "mcshield.exe"
        );
        assert_eq!(
            image_file("%SystemRoot%\\System32\\svchost.exe -k secsvcs").unwrap(),
            "svchost.exe"
        );
        assert_eq!(
            image_file("\\SystemRoot\\system32\\DRIVERS\\klif.sys").unwrap(),
            "klif.sys"
        );
        assert!(image_file("").is_none());
    }

    #[test]
    fn the_windows_7_system_hive_has_mcafee_and_defender() {
        let Some(p) = crate::sources::fixture("windows-registry/regipy_SYSTEM") else {
            return;
        };
        let h = Hive::open_file(&p).unwrap();
        let items = services(&h).unwrap();
        let svc = |n: &str| {
            items
                .iter()
                .find(|i| i.kind == ItemKind::Service && i.name == n)
        };
        let names: std::collections::BTreeSet<_> = items
            .iter()
            .filter(|i| i.kind == ItemKind::Service)
            .map(|i| i.name.as_str())
            .collect();
        assert!(names.len() >= 400, "{} services", names.len());
        assert!(svc("McShield").is_some());
        // WinDefend is present but set to manual start: installed, not a leftover.
        assert_eq!(svc("WinDefend").unwrap().presence, Presence::Present);
        let drv = items
            .iter()
            .find(|i| i.kind == ItemKind::Driver && i.name == "mfehidk.sys")
            .unwrap();
        assert_eq!(drv.path, "system32\\drivers\\mfehidk.sys");
        assert_eq!(facts(Some(&h), None).hostname, "WKS-WIN732BITA");
    }

    #[test]
    fn the_software_delta_hive_has_its_uninstall_entries() {
        let Some(p) = crate::sources::fixture("windows-registry/scancode_Software_Delta") else {
            return;
        };
        let h = Hive::open_file(&p).unwrap();
        let items = uninstall(&h).unwrap();
        // 7 entries in the 64-bit view and 1 in WOW6432Node, per the fixture's README.
        let in_wow = items
            .iter()
            .filter(|i| i.source.contains("WOW6432Node"))
            .count();
        assert!(
            items.iter().any(|i| i.name.contains("Python 3.9.5")),
            "{items:?}"
        );
        assert_eq!(in_wow, 1, "{items:?}");
    }

    #[test]
    fn a_damaged_hive_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("muster-hive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("SYSTEM");
        std::fs::write(&p, b"regf\0\0\0\0 this is not a hive").unwrap();
        let e = Hive::open_file(&p).err().unwrap();
        assert!(e.to_string().contains("registry hive"), "{e}");
        if let Some(real) = crate::sources::fixture("windows-registry/regipy_SYSTEM") {
            let bytes = std::fs::read(real).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
            // Truncated: either refused or read partially, never a panic.
            if let Ok(h) = Hive::open_file(&p) {
                let _ = services(&h);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
