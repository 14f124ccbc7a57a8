//! rpm's NDB `Packages.db` (SUSE): a slot table followed by blobs.
//!
//! All integers are little-endian. The file starts with a 32-byte header
//! (`RpmP`, version 0, generation, number of 4096-byte slot pages, next
//! package index). The rest of the slot pages is 16-byte slots (`Slot`,
//! package index, block offset, block count); blocks are 16 bytes. Each
//! used slot points at a blob: `BlbS`, package index, generation, length,
//! then the header blob itself.

use super::header::MAX_HEADER_BYTES;
use super::{Fail, Reader, bad, le32};
use std::io::{Read, Seek};

const FILE_MAGIC: &[u8; 4] = b"RpmP";
const SLOT_MAGIC: &[u8; 4] = b"Slot";
const BLOB_MAGIC: &[u8; 4] = b"BlbS";

const SLOT_PAGE: usize = 4096;
const SLOT_LEN: usize = 16;
const BLOCK: u64 = 16;
const BLOB_HEADER: usize = 16;
/// The file header takes the room of the first two slots of page 0.
const HEADER_SLOTS: usize = 2;

/// Calls `visit` with each package header blob in the database.
pub(super) fn read<R: Read + Seek>(
    file: &mut Reader<R>,
    visit: &mut dyn FnMut(&[u8]) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let slot_pages = header(file)?;
    // Blobs must not overlap, so together they fit in the file; counting
    // keeps many slots pointing at one big blob from reading it many times.
    let mut budget = file.len;
    for page in 0..slot_pages {
        let bytes = file.at(page as u64 * SLOT_PAGE as u64, SLOT_PAGE, "a slot page")?;
        let skip = if page == 0 { HEADER_SLOTS } else { 0 };
        for (n, slot) in bytes.chunks_exact(SLOT_LEN).enumerate().skip(skip) {
            let number = page as usize * (SLOT_PAGE / SLOT_LEN) + n;
            if let Some(blob) = blob(file, slot, number, slot_pages, &mut budget)? {
                visit(&blob)?;
            }
        }
    }
    Ok(())
}

/// Checks the file header; returns the number of slot pages.
fn header<R: Read + Seek>(file: &mut Reader<R>) -> Result<u32, Fail> {
    let head = file.at(0, 32, "the NDB header")?;
    if !head.starts_with(FILE_MAGIC) {
        return Err(bad("not an rpm NDB database (no RpmP magic)"));
    }
    let version = le32(&head, 4).unwrap_or(u32::MAX);
    if version != 0 {
        return Err(bad(format!("unsupported NDB version {version}")));
    }
    let slot_pages = le32(&head, 12).unwrap_or(0);
    if slot_pages == 0 || u64::from(slot_pages) * SLOT_PAGE as u64 > file.len {
        return Err(bad(format!(
            "the header names {slot_pages} slot pages, which the file ({} bytes) cannot hold",
            file.len
        )));
    }
    Ok(slot_pages)
}

/// The header blob of one slot, or `None` for an empty slot.
fn blob<R: Read + Seek>(
    file: &mut Reader<R>,
    slot: &[u8],
    number: usize,
    slot_pages: u32,
    budget: &mut u64,
) -> Result<Option<Vec<u8>>, Fail> {
    // Never-used slots are all zero; freed ones keep the magic with index 0.
    if slot.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let field = |at| le32(slot, at).unwrap_or(0);
    let (pkgidx, blkoff, blkcnt) = (field(4), field(8), field(12));
    if !slot.starts_with(SLOT_MAGIC) {
        return Err(bad(format!("slot {number} has no Slot magic")));
    }
    if pkgidx == 0 {
        return Ok(None);
    }
    let offset = u64::from(blkoff) * BLOCK;
    let size = u64::from(blkcnt) * BLOCK;
    if offset < u64::from(slot_pages) * SLOT_PAGE as u64 {
        return Err(bad(format!(
            "slot {number} (package {pkgidx}) points at block {blkoff}, inside the slot table"
        )));
    }
    if offset + size > file.len {
        return Err(bad(format!(
            "slot {number} (package {pkgidx}) points at blocks {blkoff}+{blkcnt}, beyond the end of the file ({} bytes); it is truncated or damaged",
            file.len
        )));
    }
    if size > *budget {
        return Err(bad(format!(
            "slot {number} (package {pkgidx}) points at blocks that other slots use"
        )));
    }
    *budget -= size;
    let head = file.at(offset, BLOB_HEADER, "a blob header")?;
    let len = le32(&head, 12).unwrap_or(0) as usize;
    if !head.starts_with(BLOB_MAGIC) || le32(&head, 4) != Some(pkgidx) {
        return Err(bad(format!(
            "slot {number} (package {pkgidx}) does not point at its blob"
        )));
    }
    if len > MAX_HEADER_BYTES || (BLOB_HEADER + len) as u64 > size {
        return Err(bad(format!(
            "the blob of package {pkgidx} claims {len} bytes, more than its {size}-byte blocks"
        )));
    }
    file.at(offset + BLOB_HEADER as u64, len, "a package blob")
        .map(Some)
}
