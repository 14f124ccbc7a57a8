//! Which system a root holds, told by its files, and case-insensitive path
//! lookup for Windows volumes.

use muster_catalog::Platform;
use std::path::{Path, PathBuf};

/// Finds `parts` under `root`, each compared without regard to case (as on
/// a Windows volume). Symlinks are not followed out of the root: only real
/// directories are entered.
pub fn find_ci(root: &Path, parts: &[&str]) -> Option<PathBuf> {
    let mut cur = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        let exact = cur.join(part);
        let last = i + 1 == parts.len();
        let ok = |p: &Path| {
            std::fs::symlink_metadata(p).is_ok_and(|m| {
                if last {
                    !m.file_type().is_symlink()
                } else {
                    m.is_dir()
                }
            })
        };
        if ok(&exact) {
            cur = exact;
            continue;
        }
        let found = std::fs::read_dir(&cur)
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(part))
            .map(|e| e.path())
            .filter(|p| ok(p))?;
        cur = found;
    }
    Some(cur)
}

/// The system of the image under `root`: Windows when it has registry
/// hives, macOS when it has SystemVersion.plist, Linux otherwise.
pub fn detect(root: &Path) -> Platform {
    let config = ["Windows", "System32", "config"];
    if ["SOFTWARE", "SYSTEM"].iter().any(|h| {
        let mut p = config.to_vec();
        p.push(h);
        find_ci(root, &p).is_some()
    }) {
        return Platform::Windows;
    }
    if root
        .join("System/Library/CoreServices/SystemVersion.plist")
        .exists()
    {
        return Platform::Macos;
    }
    Platform::Linux
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_folders_are_found_whatever_their_case() {
        let root = std::env::temp_dir().join(format!("muster-system-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("WINDOWS/system32/Config")).unwrap();
        std::fs::write(root.join("WINDOWS/system32/Config/system"), b"x").unwrap();
        assert_eq!(detect(&root), Platform::Windows);
        assert!(
            find_ci(&root, &["Windows", "System32", "config", "SYSTEM"])
                .unwrap()
                .ends_with("WINDOWS/system32/Config/system")
        );
        assert!(find_ci(&root, &["Windows", "System32", "config", "SOFTWARE"]).is_none());
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::create_dir_all(root.join("System/Library/CoreServices")).unwrap();
        std::fs::write(
            root.join("System/Library/CoreServices/SystemVersion.plist"),
            b"x",
        )
        .unwrap();
        assert_eq!(detect(&root), Platform::Macos);
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::create_dir_all(&root).unwrap();
        assert_eq!(detect(&root), Platform::Linux);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
