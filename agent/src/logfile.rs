//! A log file for a process with no console (the Windows service): capped
//! in size, with one older file kept, so a long-running agent never fills
//! the disk with its own log.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Appends to `path`; once it would pass `max` bytes, the file becomes
/// `path.1` (replacing the previous one) and a new file starts.
pub struct CappedLog {
    path: PathBuf,
    max: u64,
    file: Option<File>,
    len: u64,
}

impl CappedLog {
    /// Opens (or creates) the log and its folder.
    pub fn open(path: &Path, max: u64) -> io::Result<CappedLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(CappedLog {
            path: path.to_path_buf(),
            max,
            file: Some(file),
            len,
        })
    }

    /// The previous log, kept after a rotation.
    pub fn older(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        // Closed before the rename, which Windows may refuse on an open file.
        self.file = None;
        std::fs::rename(&self.path, Self::older(&self.path))?;
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        self.len = 0;
        Ok(())
    }
}

impl Write for CappedLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.len > 0 && self.len + buf.len() as u64 > self.max {
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => return Err(io::Error::other("the log file was not reopened")),
        };
        let n = file.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_once_it_reaches_its_cap_and_keeps_one_older_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("agent.log");
        let line = [b'x'; 99]
            .iter()
            .copied()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        {
            let mut log = CappedLog::open(&path, 1000).unwrap();
            for _ in 0..25 {
                log.write_all(&line).unwrap();
            }
        }
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        let older = CappedLog::older(&path);
        assert_eq!(older, dir.path().join("logs").join("agent.log.1"));
        assert_eq!(size(&older), 1000);
        assert_eq!(size(&path), 500);
        // Reopened (a service restart), it goes on from the current size.
        let mut log = CappedLog::open(&path, 1000).unwrap();
        for _ in 0..6 {
            log.write_all(&line).unwrap();
        }
        assert_eq!(size(&path), 100);
        assert_eq!(size(&older), 1000);
        let entries = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(entries, 2, "never more than two files");
    }
}
