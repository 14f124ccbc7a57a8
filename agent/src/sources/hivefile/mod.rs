//! A small, read-only, streaming reader for Windows registry hive files ("regf").
//!
//! Cells are read on demand with positional reads through a bounded block cache
//! (64 KiB blocks, at most 4 MiB cached); the file is never loaded as a whole.
//! Every offset and length taken from the file is checked against the hive-bins
//! data size before it is used, and no input makes this module panic.
//!
//! Format notes (all integers little-endian):
//! * base block (4096 bytes): `regf`, major/minor version at 0x14/0x18, file
//!   type at 0x1C (0 = primary file), root cell offset at 0x24, hive-bins data
//!   size at 0x28. The hive bins follow; cell offsets are relative to 0x1000.
//! * a cell is an i32 size (negative = allocated; the absolute value is used)
//!   followed by its data.
//! * `nk` key node, `vk` value, `lf`/`lh`/`li`/`ri` subkey lists, value lists
//!   (arrays of u32 cell offsets) and `db` big data (hive 1.4 and later,
//!   values over 16344 bytes).
//!
//! Transaction logs are ignored: a dirty hive is read as it is on disk.
//!
//! Damage policy: a corrupt header, key node, subkey list or value list is an
//! `Err`. Inside a list that could be read, a child key node or a value that
//! cannot be read is skipped by [`Key::subkeys`] and [`Key::values`] so that it
//! does not hide its siblings; [`Key::value`] returns the error when it is the
//! value that was asked for.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::path::Path;

const BASE_BLOCK_SIZE: u64 = 4096;
const BLOCK_SIZE: u64 = 64 * 1024;
/// At most this many blocks (64 KiB each, so 4 MiB) are cached.
const MAX_CACHED_BLOCKS: usize = 64;
/// Largest value data this reader will load.
pub const MAX_VALUE_DATA: u32 = 1 << 20;
/// Largest number of subkeys accepted for one key.
pub const MAX_SUBKEYS: u32 = 100_000;
/// Largest number of values accepted for one key.
pub const MAX_VALUES: u32 = 10_000;
/// How many `ri` lists may be nested in each other.
const MAX_RI_DEPTH: u32 = 4;
const BIG_DATA_SEGMENT: u32 = 16_344;
const NK_FIXED: u32 = 0x4C;
const VK_FIXED: u32 = 0x14;
const KEY_COMP_NAME: u16 = 0x20;
const KEY_PREDEF_HANDLE: u16 = 0x40;
const VALUE_COMP_NAME: u16 = 0x1;
const DATA_INLINE: u32 = 0x8000_0000;

/// What was wrong with a hive, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiveError {
    message: String,
    /// Cell offset (relative to the first hive bin) of the damaged cell.
    cell: Option<u32>,
}

impl HiveError {
    /// The description of the problem, without the offset.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Offset of the offending cell, relative to the first hive bin (file offset - 0x1000).
    #[cfg(test)]
    pub fn cell_offset(&self) -> Option<u32> {
        self.cell
    }
}

/// Returns an error about the cell at `$cell` (`None`: about the file as a whole).
macro_rules! bail {
    ($cell:expr, $($msg:tt)+) => {
        return Err(HiveError { message: format!($($msg)+), cell: Option::<u32>::from($cell) })
    };
}

impl fmt::Display for HiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match self.cell {
            Some(c) => write!(
                f,
                " (cell offset {c:#x}, file offset {:#x})",
                u64::from(c) + 4096
            ),
            None => Ok(()),
        }
    }
}

impl std::error::Error for HiveError {}

/// A bounded cache of file blocks, evicting the least recently used one.
#[derive(Default)]
struct Cache {
    blocks: HashMap<u64, (u64, Vec<u8>)>,
    clock: u64,
    #[cfg(test)]
    reads: u64,
}

/// Fills `buf` from `offset` of `file` without moving a shared position.
#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Windows has positional reads under another name (not built here).
#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// An open hive file.
pub struct Hive {
    file: File,
    file_len: u64,
    data_size: u32,
    root: u32,
    minor: u32,
    cache: RefCell<Cache>,
}

impl fmt::Debug for Hive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Hive(1.{}, {} bytes of hive bins)",
            self.minor, self.data_size
        )
    }
}

/// Location and data length of one cell.
#[derive(Clone, Copy)]
struct Cell {
    off: u32,
    len: u32,
}

fn le16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[w, x, y, z]) => u32::from_le_bytes([w, x, y, z]),
        _ => 0,
    }
}

fn shown(sig: &[u8]) -> String {
    format!("\"{}\"", sig.escape_ascii())
}

fn utf16_units(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes.chunks_exact(2).map(|p| le16(p, 0))
}

/// A key or value name: Latin-1 when stored compressed, else UTF-16LE (lossy).
fn name(raw: &[u8], compressed: bool) -> String {
    if compressed {
        raw.iter().map(|&b| char::from(b)).collect()
    } else {
        String::from_utf16_lossy(&utf16_units(raw).collect::<Vec<_>>())
    }
}

/// Unicode simple uppercase of one char: `to_uppercase` when it maps to a
/// single char, else the char itself (e.g. 'ß' stays 'ß').
fn fold(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn names_equal(a: &str, b: &str) -> bool {
    a.chars().map(fold).eq(b.chars().map(fold))
}

impl Hive {
    /// Opens a hive and checks its base block, first hive bin and root key.
    pub fn open(path: &Path) -> Result<Hive, HiveError> {
        Self::open_inner(path).map_err(|e| HiveError {
            message: format!("{}: {}", path.display(), e.message),
            ..e
        })
    }

    fn open_inner(path: &Path) -> Result<Hive, HiveError> {
        let io = |what: &str, e: std::io::Error| HiveError {
            message: format!("cannot {what}: {e}"),
            cell: None,
        };
        let file = File::open(path).map_err(|e| io("open", e))?;
        let file_len = file.metadata().map_err(|e| io("stat", e))?.len();
        if file_len < BASE_BLOCK_SIZE {
            bail!(
                None,
                "file is {file_len} bytes, shorter than the 4096-byte base block"
            );
        }
        let mut base = [0u8; BASE_BLOCK_SIZE as usize];
        read_exact_at(&file, &mut base, 0).map_err(|e| io("read the base block", e))?;
        if !base.starts_with(b"regf") {
            let found = shown(&base[..4]);
            bail!(
                None,
                "not a registry hive: signature at offset 0 is {found} instead of \"regf\""
            );
        }
        let (major, minor) = (le32(&base, 0x14), le32(&base, 0x18));
        let (file_type, root, data_size) =
            (le32(&base, 0x1C), le32(&base, 0x24), le32(&base, 0x28));
        let available = file_len - BASE_BLOCK_SIZE;
        if major != 1 {
            bail!(
                None,
                "unsupported hive version {major}.{minor} (offsets 0x14/0x18)"
            );
        }
        if file_type != 0 {
            bail!(
                None,
                "file type {file_type} at offset 0x1c is not a primary hive (a log?)"
            );
        }
        if data_size == 0 || !data_size.is_multiple_of(4096) {
            bail!(
                None,
                "hive-bins data size {data_size:#x} at offset 0x28 is not a multiple of 4096"
            );
        }
        if u64::from(data_size) > available {
            bail!(
                None,
                "file is truncated: hive-bins data size at offset 0x28 is {data_size} bytes \
                 but only {available} bytes follow the base block"
            );
        }
        if root >= data_size {
            bail!(
                None,
                "root cell offset {root:#x} at offset 0x24 lies outside the hive-bins data \
                 ({data_size:#x} bytes)"
            );
        }
        let cache = RefCell::new(Cache::default());
        let hive = Hive {
            file,
            file_len,
            data_size,
            root,
            minor,
            cache,
        };
        let mut sig = [0u8; 4];
        hive.read(BASE_BLOCK_SIZE, &mut sig)?;
        if &sig != b"hbin" {
            bail!(
                None,
                "first hive bin at file offset 0x1000 has signature {} instead of \"hbin\"",
                shown(&sig)
            );
        }
        hive.root()?;
        Ok(hive)
    }

    /// The root key.
    pub fn root(&self) -> Result<Key<'_>, HiveError> {
        self.key_at(self.root)
    }

    /// Backslash-separated path relative to the root key, matched without regard
    /// to case (Unicode simple uppercase of each char); "" is the root.
    /// `Ok(None)` when a component is absent. Empty components are ignored.
    pub fn open_key(&self, path: &str) -> Result<Option<Key<'_>>, HiveError> {
        let mut key = self.root()?;
        for part in path.split('\\').filter(|p| !p.is_empty()) {
            match key.subkey(part)? {
                Some(k) => key = k,
                None => return Ok(None),
            }
        }
        Ok(Some(key))
    }

    /// Copies `out.len()` bytes from file offset `pos` through the block cache.
    fn read(&self, pos: u64, out: &mut [u8]) -> Result<(), HiveError> {
        let mut cache = self.cache.borrow_mut();
        #[cfg(test)]
        {
            cache.reads += 1;
        }
        let mut done = 0usize;
        while done < out.len() {
            let p = pos + done as u64;
            let (index, within) = (p / BLOCK_SIZE, (p % BLOCK_SIZE) as usize);
            cache.clock += 1;
            let now = cache.clock;
            if !cache.blocks.contains_key(&index) {
                if cache.blocks.len() >= MAX_CACHED_BLOCKS {
                    let oldest = cache.blocks.iter().min_by_key(|(_, (t, _))| *t);
                    if let Some(old) = oldest.map(|(k, _)| *k) {
                        cache.blocks.remove(&old);
                    }
                }
                let start = index * BLOCK_SIZE;
                let mut buf =
                    vec![0u8; BLOCK_SIZE.min(self.file_len.saturating_sub(start)) as usize];
                if let Err(e) = read_exact_at(&self.file, &mut buf, start) {
                    bail!(None, "read error at file offset {start:#x}: {e}");
                }
                cache.blocks.insert(index, (now, buf));
            }
            let Some((stamp, block)) = cache.blocks.get_mut(&index) else {
                bail!(None, "block cache lost a block");
            };
            *stamp = now;
            let n = block.len().saturating_sub(within).min(out.len() - done);
            if n == 0 {
                bail!(None, "file offset {p:#x} lies past the end of the file");
            }
            out[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
        }
        Ok(())
    }

    /// Locates the cell at hive offset `off` and checks it lies in the hive bins.
    fn cell(&self, off: u32, what: &str) -> Result<Cell, HiveError> {
        let size = u64::from(self.data_size);
        if !off.is_multiple_of(8) || u64::from(off) + 4 > size {
            bail!(
                off,
                "{what}: cell offset is misaligned or outside the hive-bins data ({size:#x} bytes)"
            );
        }
        let mut raw = [0u8; 4];
        self.read(BASE_BLOCK_SIZE + u64::from(off), &mut raw)?;
        let len = i32::from_le_bytes(raw).unsigned_abs();
        if len < 8 || u64::from(off) + u64::from(len) > size {
            bail!(
                off,
                "{what}: cell size {len} is too small or runs past the hive-bins data"
            );
        }
        Ok(Cell { off, len: len - 4 })
    }

    /// Reads `len` bytes at `at` within the data of cell `c`.
    fn bytes(&self, c: Cell, at: u32, len: u32, what: &str) -> Result<Vec<u8>, HiveError> {
        if u64::from(at) + u64::from(len) > u64::from(c.len) {
            bail!(
                c.off,
                "{what}: needs {len} bytes at +{at} but the cell holds {}",
                c.len
            );
        }
        let mut buf = vec![0u8; len as usize];
        let pos = BASE_BLOCK_SIZE + 4 + u64::from(c.off) + u64::from(at);
        self.read(pos, &mut buf)?;
        Ok(buf)
    }

    /// Reads the first `fixed` bytes of the cell at `off`, which must start with `sig`.
    fn record(
        &self,
        off: u32,
        fixed: u32,
        sig: &[u8],
        what: &str,
    ) -> Result<(Cell, Vec<u8>), HiveError> {
        let c = self.cell(off, what)?;
        let head = self.bytes(c, 0, fixed, what)?;
        if !head.starts_with(sig) {
            let found = shown(head.get(..2).unwrap_or(&[]));
            bail!(off, "{what}: signature {found} instead of {}", shown(sig));
        }
        Ok((c, head))
    }

    fn key_at(&self, off: u32) -> Result<Key<'_>, HiveError> {
        let (c, h) = self.record(off, NK_FIXED, b"nk", "key node")?;
        let flags = le16(&h, 0x02);
        let raw = self.bytes(c, NK_FIXED, u32::from(le16(&h, 0x48)), "key name")?;
        Ok(Key {
            hive: self,
            off,
            name: name(&raw, flags & KEY_COMP_NAME != 0),
            flags,
            subkey_count: le32(&h, 0x14),
            subkey_list: le32(&h, 0x1C),
            value_count: le32(&h, 0x24),
            value_list: le32(&h, 0x28),
        })
    }

    /// Appends the key-node offsets of subkey list `off` to `out`, following
    /// `ri` lists at most `MAX_RI_DEPTH` deep and each list cell at most once.
    fn collect_subkeys(
        &self,
        off: u32,
        depth: u32,
        out: &mut Vec<u32>,
        seen: &mut HashSet<u32>,
    ) -> Result<(), HiveError> {
        if !seen.insert(off) {
            bail!(off, "subkey list is reached twice (a loop)");
        }
        let (c, h) = self.record(off, 4, b"", "subkey list")?;
        let (stride, is_ri) = match h.get(..2) {
            Some(b"lf" | b"lh") => (8, false),
            Some(b"li") => (4, false),
            Some(b"ri") if depth < MAX_RI_DEPTH => (4, true),
            Some(b"ri") => bail!(off, "subkey list: \"ri\" nested deeper than {MAX_RI_DEPTH}"),
            _ => bail!(
                off,
                "subkey list: unknown signature {}",
                shown(h.get(..2).unwrap_or(&[]))
            ),
        };
        let body = self.bytes(c, 4, u32::from(le16(&h, 2)) * stride, "subkey list entries")?;
        for entry in body.chunks_exact(stride as usize) {
            if is_ri {
                self.collect_subkeys(le32(entry, 0), depth + 1, out, seen)?;
            } else if out.len() >= MAX_SUBKEYS as usize {
                bail!(off, "subkey list holds more than {MAX_SUBKEYS} entries");
            } else {
                out.push(le32(entry, 0));
            }
        }
        Ok(())
    }

    /// Reads a `vk` record; the returned value's data is still empty.
    fn raw_value(&self, off: u32) -> Result<RawValue, HiveError> {
        let (c, h) = self.record(off, VK_FIXED, b"vk", "value")?;
        let raw = self.bytes(c, VK_FIXED, u32::from(le16(&h, 0x02)), "value name")?;
        let name = name(&raw, le16(&h, 0x10) & VALUE_COMP_NAME != 0);
        let value = Value {
            name,
            kind: le32(&h, 0x0C),
            data: Vec::new(),
        };
        Ok(RawValue {
            off,
            size: le32(&h, 0x04),
            data_off: le32(&h, 0x08),
            value,
        })
    }

    fn value_data(&self, v: &RawValue) -> Result<Vec<u8>, HiveError> {
        let (len, name) = (v.size & !DATA_INLINE, &v.value.name);
        if v.size & DATA_INLINE != 0 {
            return match v.data_off.to_le_bytes().get(..len as usize) {
                Some(inline) => Ok(inline.to_vec()),
                None => bail!(v.off, "value {name:?}: inline data length {len} exceeds 4"),
            };
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        if len > MAX_VALUE_DATA {
            bail!(
                v.off,
                "value {name:?}: data size {len} exceeds the {MAX_VALUE_DATA}-byte limit"
            );
        }
        let c = self.cell(v.data_off, "value data")?;
        if self.minor >= 4
            && len > BIG_DATA_SEGMENT
            && c.len >= 8
            && self.bytes(c, 0, 2, "value data")? == b"db"
        {
            return self.big_data(c, len);
        }
        self.bytes(c, 0, len, "value data")
    }

    /// Reads `len` bytes stored as a `db` record: segment count, segment list.
    fn big_data(&self, c: Cell, len: u32) -> Result<Vec<u8>, HiveError> {
        let h = self.bytes(c, 0, 8, "big data")?;
        let (segments, needed) = (u32::from(le16(&h, 2)), len.div_ceil(BIG_DATA_SEGMENT));
        if segments < needed {
            bail!(
                c.off,
                "big data: {segments} segments cannot hold {len} bytes"
            );
        }
        let list = self.cell(le32(&h, 4), "big data segment list")?;
        let offsets = self.bytes(list, 0, needed * 4, "big data segment list")?;
        let mut out = Vec::with_capacity(len as usize);
        for entry in offsets.chunks_exact(4) {
            let take = BIG_DATA_SEGMENT.min(len - out.len() as u32);
            let seg = self.cell(le32(entry, 0), "big data segment")?;
            out.extend_from_slice(&self.bytes(seg, 0, take, "big data segment")?);
        }
        Ok(out)
    }

    #[cfg(test)]
    fn cached_bytes(&self) -> usize {
        self.cache
            .borrow()
            .blocks
            .values()
            .map(|(_, b)| b.len())
            .sum()
    }

    #[cfg(test)]
    fn reads(&self) -> u64 {
        self.cache.borrow().reads
    }
}

/// A `vk` record whose data has not been read yet.
struct RawValue {
    off: u32,
    size: u32,
    data_off: u32,
    value: Value,
}

/// A registry key.
#[derive(Clone)]
pub struct Key<'h> {
    hive: &'h Hive,
    off: u32,
    name: String,
    flags: u16,
    subkey_count: u32,
    subkey_list: u32,
    value_count: u32,
    value_list: u32,
}

impl fmt::Debug for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?} at cell {:#x})", self.name, self.off)
    }
}

impl<'h> Key<'h> {
    /// The key's own name (not its path).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn subkey_offsets(&self) -> Result<Vec<u32>, HiveError> {
        let (count, mut out) = (self.subkey_count, Vec::new());
        if count > MAX_SUBKEYS {
            bail!(
                self.off,
                "key {:?} claims {count} subkeys (limit {MAX_SUBKEYS})",
                self.name
            );
        }
        if count > 0 {
            self.hive
                .collect_subkeys(self.subkey_list, 0, &mut out, &mut HashSet::new())?;
        }
        Ok(out)
    }

    /// All subkeys in stored order. A corrupt subkey list is an error; a
    /// subkey whose key node cannot be read is left out.
    pub fn subkeys(&self) -> Result<Vec<Key<'h>>, HiveError> {
        let offsets = self.subkey_offsets()?;
        Ok(offsets
            .into_iter()
            .filter_map(|o| self.hive.key_at(o).ok())
            .collect())
    }

    /// The subkey called `name`, compared without regard to case.
    pub fn subkey(&self, name: &str) -> Result<Option<Key<'h>>, HiveError> {
        for off in self.subkey_offsets()? {
            let key = self.hive.key_at(off).ok();
            if let Some(key) = key.filter(|k| names_equal(&k.name, name)) {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    fn value_offsets(&self) -> Result<Vec<u32>, HiveError> {
        let count = self.value_count;
        // A predefined-handle key keeps a handle, not a count, in this field.
        if count == 0 || self.flags & KEY_PREDEF_HANDLE != 0 {
            return Ok(Vec::new());
        }
        if count > MAX_VALUES {
            bail!(
                self.off,
                "key {:?} claims {count} values (limit {MAX_VALUES})",
                self.name
            );
        }
        let c = self.hive.cell(self.value_list, "value list")?;
        let body = self.hive.bytes(c, 0, count * 4, "value list")?;
        Ok(body.chunks_exact(4).map(|e| le32(e, 0)).collect())
    }

    /// All values in stored order. A corrupt value list is an error; a value
    /// whose record or data cannot be read is left out.
    #[cfg(test)]
    pub fn values(&self) -> Result<Vec<Value>, HiveError> {
        let mut out = Vec::new();
        for raw in self
            .value_offsets()?
            .into_iter()
            .filter_map(|o| self.hive.raw_value(o).ok())
        {
            if let Ok(data) = self.hive.value_data(&raw) {
                out.push(Value { data, ..raw.value });
            }
        }
        Ok(out)
    }

    /// The value called `name` (case-insensitive; "" is the default value).
    /// An error if that value's data cannot be read.
    pub fn value(&self, name: &str) -> Result<Option<Value>, HiveError> {
        for raw in self
            .value_offsets()?
            .into_iter()
            .filter_map(|o| self.hive.raw_value(o).ok())
        {
            if names_equal(&raw.value.name, name) {
                let data = self.hive.value_data(&raw)?;
                return Ok(Some(Value { data, ..raw.value }));
            }
        }
        Ok(None)
    }

    #[cfg(test)]
    fn cell_offset(&self) -> u32 {
        self.off
    }
}

/// A value with its raw data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value name; "" for the default value.
    pub name: String,
    /// REG_NONE=0, SZ=1, EXPAND_SZ=2, BINARY=3, DWORD=4, DWORD_BIG_ENDIAN=5,
    /// LINK=6, MULTI_SZ=7, ..., QWORD=11.
    pub kind: u32,
    pub data: Vec<u8>,
}

impl Value {
    /// REG_SZ or REG_EXPAND_SZ decoded from UTF-16LE (lossy), cut at the first NUL.
    pub fn string(&self) -> Option<String> {
        if self.kind != 1 && self.kind != 2 {
            return None;
        }
        let units: Vec<u16> = utf16_units(&self.data).take_while(|&u| u != 0).collect();
        Some(String::from_utf16_lossy(&units))
    }

    /// REG_DWORD (little-endian) or REG_DWORD_BIG_ENDIAN; `None` for other kinds
    /// or fewer than 4 bytes of data.
    pub fn dword(&self) -> Option<u32> {
        let b: [u8; 4] = self.data.get(..4)?.try_into().ok()?;
        match self.kind {
            4 => Some(u32::from_le_bytes(b)),
            5 => Some(u32::from_be_bytes(b)),
            _ => None,
        }
    }

    /// REG_MULTI_SZ: the NUL-terminated UTF-16LE strings up to the first empty one.
    #[cfg(test)]
    pub fn strings(&self) -> Option<Vec<String>> {
        if self.kind != 7 {
            return None;
        }
        let units: Vec<u16> = utf16_units(&self.data).collect();
        let parts = units.split(|&u| u == 0).take_while(|s| !s.is_empty());
        Some(parts.map(String::from_utf16_lossy).collect())
    }
}

#[cfg(test)]
mod tests;
