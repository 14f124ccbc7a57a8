//! rpm's SQLite database `rpmdb.sqlite`: table `Packages(hnum, blob)`.
//!
//! The file is opened read-only and `immutable=1`: rpm runs it in WAL
//! mode, and without `immutable` SQLite would want to create `-wal` and
//! `-shm` files next to it, which fails on a read-only image and must not
//! happen on an image we only inspect. The cost: changes still sitting in
//! an un-checkpointed `-wal` file are not seen.

use super::{Fail, bad};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// Calls `visit` with each package header blob, in `hnum` order.
pub(super) fn read(
    path: &Path,
    visit: &mut dyn FnMut(&[u8]) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri(path)?, flags).map_err(sql)?;
    let mut stmt = conn
        .prepare("SELECT blob FROM Packages ORDER BY hnum")
        .map_err(sql)?;
    let mut rows = stmt.query([]).map_err(sql)?;
    while let Some(row) = rows.next().map_err(sql)? {
        let value = row.get_ref(0).map_err(sql)?;
        let blob = value
            .as_blob()
            .map_err(|_| bad("a Packages row holds no blob"))?;
        visit(blob)?;
    }
    Ok(())
}

/// A SQLite error as a damaged-database reason (SQLite reports unreadable
/// and malformed files alike, e.g. "file is not a database").
fn sql(e: rusqlite::Error) -> Fail {
    bad(format!("SQLite: {e}"))
}

/// `file:` URI for `path` with `immutable=1`. Every byte but unreserved
/// characters and separators is percent-encoded, so `?`, `#` and `%` in
/// a folder name cannot be read as URI syntax.
fn uri(path: &Path) -> Result<String, Fail> {
    // SQLite would read a relative path in a URI as absolute.
    let path = std::path::absolute(path).map_err(Fail::Io)?;
    let mut bytes = path_bytes(&path)?;
    if cfg!(windows) {
        // SQLite wants `file:///C:/dir/file` on Windows.
        bytes = bytes
            .into_iter()
            .map(|b| if b == b'\\' { b'/' } else { b })
            .collect();
    }
    let mut out = String::from("file:");
    if bytes.first() != Some(&b'/') {
        out.push('/');
    }
    for b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~/:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str("?immutable=1");
    Ok(out)
}

/// The raw bytes of a path: exact on Unix, where paths need not be UTF-8.
#[cfg(unix)]
fn path_bytes(path: &Path) -> Result<Vec<u8>, Fail> {
    use std::os::unix::ffi::OsStrExt;
    Ok(path.as_os_str().as_bytes().to_vec())
}

/// The UTF-8 bytes of a path; SQLite takes UTF-8 URIs on Windows.
#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Result<Vec<u8>, Fail> {
    path.to_str()
        .map(|s| s.as_bytes().to_vec())
        .ok_or_else(|| bad("the path is not valid Unicode, so SQLite cannot open it"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_escapes_uri_syntax() {
        let u = uri(Path::new("/img/a b?c#d%e/rpmdb.sqlite")).expect("uri");
        assert_eq!(u, "file:/img/a%20b%3Fc%23d%25e/rpmdb.sqlite?immutable=1");
    }
}
