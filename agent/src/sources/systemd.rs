//! systemd unit files and SysV init scripts under a root.
//!
//! A unit is `present` when it is enabled (linked from a `.wants` or
//! `.requires` folder) or static (no `[Install]` section), `leftover` when
//! it is disabled or masked: a service that is installed but switched off is
//! what an unfinished uninstall leaves behind.

use super::SourceError;
use muster_catalog::{Item, ItemKind, Presence};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Unit folders, highest precedence first, relative to the root.
pub const UNIT_DIRS: [&str; 4] = [
    "etc/systemd/system",
    "run/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];

const INIT_D: &str = "etc/init.d";
const UNIT_SUFFIXES: [&str; 4] = [".service", ".socket", ".timer", ".path"];

fn list(dir: &Path) -> Result<Vec<std::fs::DirEntry>, SourceError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd.flatten().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(SourceError::read(dir, e)),
    }
}

/// Resolves a symlink found under `root` the way the image would see it,
/// without ever leaving the image.
fn resolve(root: &Path, link: &Path) -> Option<PathBuf> {
    super::fsroot::resolve(root, link.strip_prefix(root).ok()?)
}

/// A folder of the image, resolved inside it (`None`: absent).
fn dir(root: &Path, rel: &str) -> Option<PathBuf> {
    super::fsroot::resolve(root, rel)
}

/// Names linked from `*.wants` / `*.requires` folders: the link names and
/// the names of the files they point to (for template instances).
fn enabled_names(root: &Path) -> Result<BTreeSet<String>, SourceError> {
    let mut names = BTreeSet::new();
    for rel in UNIT_DIRS {
        let Some(d) = dir(root, rel) else { continue };
        for e in list(&d)? {
            let fname = e.file_name().to_string_lossy().into_owned();
            if !(fname.ends_with(".wants") || fname.ends_with(".requires")) {
                continue;
            }
            let Some(wants) = resolve(root, &e.path()) else {
                continue;
            };
            for link in list(&wants)? {
                names.insert(link.file_name().to_string_lossy().into_owned());
                if let Ok(t) = std::fs::read_link(link.path())
                    && let Some(n) = t.file_name()
                {
                    names.insert(n.to_string_lossy().into_owned());
                }
            }
        }
    }
    Ok(names)
}

/// Whether a unit file has an `[Install]` section (read up to 1 MiB).
fn has_install_section(path: &Path) -> bool {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
        .is_ok_and(|_| text.lines().any(|l| l.trim() == "[Install]"))
}

/// Reads unit files and init scripts under `root`.
pub fn read(root: &Path) -> Result<Vec<Item>, SourceError> {
    let enabled = enabled_names(root)?;
    // First folder wins, as in systemd's own search path.
    let mut units: BTreeMap<String, (String, Presence)> = BTreeMap::new();
    for rel in UNIT_DIRS {
        let Some(d) = dir(root, rel) else { continue };
        for e in list(&d)? {
            let name = e.file_name().to_string_lossy().into_owned();
            if !UNIT_SUFFIXES.iter().any(|s| name.ends_with(s)) || units.contains_key(&name) {
                continue;
            }
            let path = e.path();
            let is_link = e.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            let real = if is_link {
                resolve(root, &path)
            } else {
                Some(path.clone())
            };
            let masked =
                is_link && std::fs::read_link(&path).is_ok_and(|t| t == Path::new("/dev/null"));
            let presence = if masked {
                Presence::Leftover
            } else if enabled.contains(&name) || !real.as_deref().is_some_and(has_install_section) {
                Presence::Present
            } else {
                Presence::Leftover
            };
            units.insert(
                name,
                (
                    format!("/{rel}/{}", e.file_name().to_string_lossy()),
                    presence,
                ),
            );
        }
    }
    let mut out = Vec::new();
    for (name, (path, presence)) in units {
        if let Some(service) = name.strip_suffix(".service") {
            out.push(Item {
                kind: ItemKind::Service,
                name: service.to_string(),
                version: String::new(),
                path: path.clone(),
                presence,
                source: "systemd".into(),
                attrs: Default::default(),
            });
        }
        out.push(Item {
            kind: ItemKind::SystemdUnit,
            name,
            version: String::new(),
            path,
            presence,
            source: "systemd".into(),
            attrs: Default::default(),
        });
    }
    out.extend(read_sysv(root)?);
    Ok(out)
}

/// SysV init scripts: present when started in some runlevel (an `S` link in
/// `etc/rc?.d`), otherwise leftover.
fn read_sysv(root: &Path) -> Result<Vec<Item>, SourceError> {
    let mut started = BTreeSet::new();
    for level in ["rc2.d", "rc3.d", "rc4.d", "rc5.d", "rcS.d"] {
        let Some(d) = dir(root, &format!("etc/{level}")) else {
            continue;
        };
        for e in list(&d)? {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = n.strip_prefix('S') {
                started.insert(
                    rest.trim_start_matches(|c: char| c.is_ascii_digit())
                        .to_string(),
                );
            }
        }
    }
    let mut out = Vec::new();
    let Some(init_d) = dir(root, INIT_D) else {
        return Ok(out);
    };
    for e in list(&init_d)? {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "README" || name.ends_with(".dpkg-old") {
            continue;
        }
        out.push(Item {
            kind: ItemKind::Service,
            name: name.clone(),
            version: String::new(),
            path: format!("/{INIT_D}/{name}"),
            presence: if started.contains(&name) {
                Presence::Present
            } else {
                Presence::Leftover
            },
            source: "sysv-init".into(),
            attrs: Default::default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn find<'a>(items: &'a [Item], kind: ItemKind, name: &str) -> Option<&'a Item> {
        items.iter().find(|i| i.kind == kind && i.name == name)
    }

    #[test]
    fn enabled_static_disabled_and_masked_units() {
        let root = std::env::temp_dir().join(format!("muster-systemd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let lib = root.join("lib/systemd/system");
        write(
            &lib.join("kesl.service"),
            "[Service]\nExecStart=/x\n[Install]\nWantedBy=multi-user.target\n",
        );
        write(
            &lib.join("klnagent64.service"),
            "[Service]\n[Install]\nWantedBy=multi-user.target\n",
        );
        write(&lib.join("static.service"), "[Service]\nExecStart=/x\n");
        write(
            &lib.join("masked.service"),
            "[Service]\n[Install]\nWantedBy=multi-user.target\n",
        );
        let wants = root.join("etc/systemd/system/multi-user.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        // An absolute link, as systemctl enable makes it: resolved inside the root.
        symlink(
            "/lib/systemd/system/kesl.service",
            wants.join("kesl.service"),
        )
        .unwrap();
        symlink("/dev/null", root.join("etc/systemd/system/masked.service")).unwrap();
        write(&root.join("etc/init.d/kav4fs-supervisor"), "#!/bin/sh\n");
        write(&root.join("etc/init.d/other"), "#!/bin/sh\n");
        std::fs::create_dir_all(root.join("etc/rc2.d")).unwrap();
        symlink("../init.d/other", root.join("etc/rc2.d/S01other")).unwrap();

        let items = read(&root).unwrap();
        let p = |k, n| find(&items, k, n).map(|i| i.presence);
        assert_eq!(
            p(ItemKind::SystemdUnit, "kesl.service"),
            Some(Presence::Present)
        );
        assert_eq!(p(ItemKind::Service, "kesl"), Some(Presence::Present));
        assert_eq!(p(ItemKind::Service, "klnagent64"), Some(Presence::Leftover));
        assert_eq!(p(ItemKind::Service, "static"), Some(Presence::Present));
        assert_eq!(p(ItemKind::Service, "masked"), Some(Presence::Leftover));
        assert_eq!(
            find(&items, ItemKind::Service, "masked").unwrap().path,
            "/etc/systemd/system/masked.service"
        );
        assert_eq!(
            p(ItemKind::Service, "kav4fs-supervisor"),
            Some(Presence::Leftover)
        );
        assert_eq!(p(ItemKind::Service, "other"), Some(Presence::Present));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_empty_root_has_no_units() {
        let root =
            std::env::temp_dir().join(format!("muster-systemd-empty-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        assert!(read(&root).unwrap().is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
