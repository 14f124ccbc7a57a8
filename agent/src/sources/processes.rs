//! Running processes (live hosts only), by executable name.

use muster_catalog::{Item, ItemKind, Presence};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System, UpdateKind};

/// Every distinct running program: one item per executable name and path,
/// without pids, so the section's digest changes only when the set of
/// programs does.
pub fn read() -> Vec<Item> {
    let refresh = ProcessRefreshKind::nothing().with_exe(UpdateKind::OnlyIfNotSet);
    let Ok(mut sys) = System::new_with_specifics(RefreshKind::nothing()) else {
        return Vec::new();
    };
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, refresh);
    let mut out = Vec::new();
    for p in sys.processes().values() {
        if p.thread_kind().is_some() {
            continue;
        }
        // The kernel truncates `comm` to 15 bytes; the executable's file
        // name is the real name when it can be read.
        let (name, path) = match p.exe() {
            Some(exe) if exe.file_name().is_some() => (
                exe.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                exe.to_string_lossy().into_owned(),
            ),
            _ => (p.name().to_string_lossy().into_owned(), String::new()),
        };
        if name.is_empty() {
            continue;
        }
        out.push(Item {
            kind: ItemKind::Process,
            name,
            version: String::new(),
            path,
            presence: Presence::Active,
            source: "/proc".into(),
            attrs: Default::default(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn sees_the_test_itself() {
        let items = super::read();
        let me = std::env::current_exe().unwrap();
        let name = me.file_name().unwrap().to_string_lossy();
        assert!(
            items.iter().any(|i| i.name == name),
            "{name} not among {} processes",
            items.len()
        );
    }
}
