//! Running processes (live hosts only), by executable name. On Linux read
//! straight from `/proc` (one `readlink` of `exe` per process, as `ps` does:
//! a general-purpose process library opened every thread's folder too); on
//! other systems through `sysinfo`.

use muster_catalog::{Item, ItemKind, Presence};
use std::path::Path;

/// Every distinct running program: one item per executable name and path,
/// without pids, so the section's digest changes only when the set of
/// programs does.
pub fn read() -> Vec<Item> {
    #[cfg(target_os = "linux")]
    let programs = from_proc(Path::new("/proc"));
    #[cfg(not(target_os = "linux"))]
    let programs = from_sysinfo();
    let mut out: Vec<Item> = programs
        .into_iter()
        .map(|(name, path)| Item {
            kind: ItemKind::Process,
            name,
            version: String::new(),
            path,
            presence: Presence::Active,
            source: "/proc".into(),
            attrs: Default::default(),
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.path).cmp(&(&b.name, &b.path)));
    out.dedup_by(|a, b| a.name == b.name && a.path == b.path);
    out
}

/// (name, executable path) of every process under a `/proc`-like folder:
/// the executable's file name when `exe` can be read, else the kernel's
/// `comm` (15 bytes at most) with no path when it may not be read. Kernel
/// threads, whose `exe` does not exist, are left out; so are processes that
/// ended meanwhile.
pub fn from_proc(proc: &Path) -> Vec<(String, String)> {
    let Ok(rd) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let pid = e.file_name();
        let Some(pid) = pid
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let dir = proc.join(pid);
        match std::fs::read_link(dir.join("exe")) {
            Ok(exe) => {
                // A replaced or deleted binary shows as `/path (deleted)`.
                let exe = exe.to_string_lossy();
                let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe).to_string();
                let Some(name) = exe.rsplit('/').next().filter(|n| !n.is_empty()) else {
                    continue;
                };
                out.push((name.to_string(), exe));
            }
            // No executable at all: a kernel thread, or a zombie.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => {
                // A process we may not look into: its `comm` names it.
                let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                let comm = comm.trim_end_matches('\n');
                if !comm.is_empty() {
                    out.push((comm.to_string(), String::new()));
                }
            }
        }
    }
    out
}

#[cfg(not(target_os = "linux"))]
fn from_sysinfo() -> Vec<(String, String)> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System, UpdateKind};
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
        if !name.is_empty() {
            out.push((name, path));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_the_test_itself() {
        let items = read();
        let me = std::env::current_exe().unwrap();
        let name = me.file_name().unwrap().to_string_lossy();
        let mine = items
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("{name} not among {} processes", items.len()));
        assert_eq!(Path::new(&mine.path), me.as_path());
    }

    /// A `/proc`-like folder: a process with an executable, one whose
    /// binary was deleted, one we may not look into (named by `comm`), a
    /// kernel thread (no `exe`), and entries that are not pids.
    #[test]
    fn reads_exe_links_and_falls_back_to_comm() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let mk = |pid: &str| {
            std::fs::create_dir_all(p.join(pid)).unwrap();
            p.join(pid)
        };
        std::os::unix::fs::symlink("/opt/kaspersky/kesl/libexec/kesl", mk("10").join("exe"))
            .unwrap();
        std::os::unix::fs::symlink("/usr/sbin/clamd (deleted)", mk("11").join("exe")).unwrap();
        // `exe` that cannot be read as a link (as for another user's
        // process without the privilege): named by `comm`.
        let hidden = mk("12");
        std::fs::create_dir(hidden.join("exe")).unwrap();
        std::fs::write(hidden.join("comm"), "falcon-sensor\n").unwrap();
        // No `exe` at all: a kernel thread.
        let kthread = mk("13");
        std::fs::write(kthread.join("comm"), "kworker/0:1\n").unwrap();
        mk("self");
        std::fs::write(p.join("uptime"), "1 2").unwrap();
        let mut got = from_proc(p);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("clamd".to_string(), "/usr/sbin/clamd".to_string()),
                ("falcon-sensor".to_string(), String::new()),
                (
                    "kesl".to_string(),
                    "/opt/kaspersky/kesl/libexec/kesl".to_string()
                ),
            ]
        );
    }
}
