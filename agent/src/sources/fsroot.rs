//! Reading files of an image without leaving it: symlinks are resolved the
//! way the image itself would see them (absolute targets start again at the
//! image's root, `..` stops at it), with a bounded number of links, so a
//! hostile image cannot point the agent at the scanning machine's files or
//! make it loop.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Most symlinks followed while resolving one path (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Largest file a source reads whole, in bytes.
pub const MAX_FILE: u64 = 256 << 20;

/// `rel` (relative to the image, or absolute within it) resolved under
/// `root`, or `None` when it does not exist, loops, or needs too many links.
pub fn resolve(root: &Path, rel: impl AsRef<Path>) -> Option<PathBuf> {
    Resolver::new(root).resolve(rel)
}

/// What one path of the image is, as `lstat` and `readlink` said.
#[derive(Clone)]
enum Node {
    Missing,
    Plain,
    Link(PathBuf),
}

/// Resolves many paths of one image, remembering what each path component
/// turned out to be: a source that follows hundreds of links into the same
/// folders (Debian's `/etc/ssl/certs`) looks at each folder once, not once
/// per link. The image is taken not to change during a scan.
pub struct Resolver<'r> {
    root: &'r Path,
    nodes: std::cell::RefCell<HashMap<PathBuf, Node>>,
}

impl<'r> Resolver<'r> {
    pub fn new(root: &'r Path) -> Self {
        Resolver {
            root,
            nodes: Default::default(),
        }
    }

    fn node(&self, path: &Path) -> Node {
        if let Some(n) = self.nodes.borrow().get(path) {
            return n.clone();
        }
        let node = match std::fs::symlink_metadata(path) {
            Err(_) => Node::Missing,
            Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(path) {
                Ok(t) => Node::Link(t),
                Err(_) => Node::Missing,
            },
            Ok(_) => Node::Plain,
        };
        self.nodes
            .borrow_mut()
            .insert(path.to_path_buf(), node.clone());
        node
    }

    /// See [`resolve`].
    pub fn resolve(&self, rel: impl AsRef<Path>) -> Option<PathBuf> {
        let root = self.root;
        let mut pending: Vec<std::ffi::OsString> = Vec::new();
        push_components(&mut pending, rel.as_ref());
        pending.reverse();
        let mut cur = root.to_path_buf();
        let mut depth = 0usize; // components below root in `cur`
        let mut links = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                if depth > 0 {
                    cur.pop();
                    depth -= 1;
                }
                continue;
            }
            let next = cur.join(&c);
            match self.node(&next) {
                Node::Missing => return None,
                Node::Link(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return None;
                    }
                    if target.is_absolute() {
                        cur = root.to_path_buf();
                        depth = 0;
                    }
                    let mut more = Vec::new();
                    push_components(&mut more, &target);
                    pending.extend(more.into_iter().rev());
                }
                Node::Plain => {
                    cur = next;
                    depth += 1;
                }
            }
        }
        Some(cur)
    }
}

fn push_components(out: &mut Vec<std::ffi::OsString>, p: &Path) {
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_os_string()),
            Component::ParentDir => out.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

/// Reads a whole file of the image, refusing files larger than [`MAX_FILE`];
/// `Ok(None)` when it does not exist.
pub fn read(root: &Path, rel: &str) -> Result<Option<Vec<u8>>, super::SourceError> {
    let shown = Path::new("/").join(rel);
    let Some(path) = resolve(root, rel) else {
        return Ok(None);
    };
    let meta = std::fs::metadata(&path).map_err(|e| super::SourceError::read(&shown, e))?;
    if meta.len() > MAX_FILE {
        return Err(super::SourceError::invalid(
            &shown,
            format!("{} bytes is too large to read", meta.len()),
        ));
    }
    std::fs::read(&path)
        .map(Some)
        .map_err(|e| super::SourceError::read(&shown, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_stay_inside_the_image_and_loops_end() {
        let base = std::env::temp_dir().join(format!("muster-fsroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("image");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/secret"), "host secret").unwrap();
        std::fs::write(root.join("etc/real"), "image file").unwrap();
        // An absolute link means the image's own /etc/real.
        symlink("/etc/real", root.join("etc/abs")).unwrap();
        // `..` cannot climb out of the image.
        symlink("../../../outside/secret", root.join("etc/climb")).unwrap();
        symlink("/../../outside", root.join("out")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(read(&root, "etc/abs").unwrap().unwrap(), b"image file");
        assert_eq!(read(&root, "etc/climb").unwrap(), None);
        assert_eq!(read(&root, "out/secret").unwrap(), None);
        assert_eq!(resolve(&root, "loop1"), None);
        assert_eq!(
            resolve(&root, "etc/../etc/real"),
            Some(root.join("etc/real"))
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
