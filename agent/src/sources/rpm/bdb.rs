//! rpm's Berkeley DB `Packages` file: a DB hash database whose keys are
//! package instance numbers and whose values are header blobs.
//!
//! Only what rpm writes is supported: hash format, no encryption, no page
//! checksums, no duplicates. Page 0 is the metadata page; every page of type
//! hash holds key/data item pairs; values too big for a page are on chains
//! of overflow pages. Pages are read one at a time, so the file is never
//! held in memory whole.

use super::header::MAX_HEADER_BYTES;
use super::{Fail, Reader, bad};
use std::io::{Read, Seek};

const HASH_MAGIC: u32 = 0x0006_1561;

/// Page types (`P_*` in db_page.h).
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;

/// Hash item types (`H_*` in db_page.h).
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;

/// The page header: lsn (8), pgno (4), prev_pgno (4), next_pgno (4),
/// entries (2), hf_offset (2), level (1), type (1).
const PAGE_HEADER: usize = 26;
const NEXT_PGNO: usize = 16;
const ENTRIES: usize = 20;
const HF_OFFSET: usize = 22;
const PAGE_TYPE: usize = 25;

/// Fields of the metadata page (DBMETA).
const META_MAGIC: usize = 12;
const META_PAGESIZE: usize = 20;
const META_ENCRYPT: usize = 24;
const META_TYPE: usize = 25;
const META_FLAGS: usize = 26;
const META_LAST_PGNO: usize = 32;
/// DBMETA_CHKSUM: pages carry a checksum, which moves the item offsets.
const META_FLAG_CHKSUM: u8 = 0x01;

/// The smallest page size Berkeley DB allows, and so the least that must
/// be read to see the metadata.
const MIN_PAGE: usize = 512;
const MAX_PAGE: usize = 65536;

/// Byte order of the file: Berkeley DB writes the creating host's order.
#[derive(Debug, Clone, Copy)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let bytes: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            Order::Little => u32::from_le_bytes(bytes),
            Order::Big => u32::from_be_bytes(bytes),
        })
    }

    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let bytes: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            Order::Little => u16::from_le_bytes(bytes),
            Order::Big => u16::from_be_bytes(bytes),
        })
    }
}

/// The open database: the reader plus what the metadata page said.
struct Db<'r, R> {
    file: &'r mut Reader<R>,
    order: Order,
    page_size: usize,
    pages: u32,
    /// Overflow pages that may still be read. Each belongs to one record,
    /// so more reads than pages means shared or looping chains; stopping
    /// there keeps a crafted file from costing pages x pages reads.
    overflow_budget: u32,
}

/// Calls `visit` with each package header blob in the database.
pub(super) fn read<R: Read + Seek>(
    file: &mut Reader<R>,
    visit: &mut dyn FnMut(&[u8]) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let mut db = Db::open(file)?;
    for pgno in 1..db.pages {
        let page = db.page(pgno)?;
        if matches!(page[PAGE_TYPE], P_HASH | P_HASH_UNSORTED) {
            db.hash_page(pgno, &page, visit)?;
        }
    }
    Ok(())
}

impl<'r, R: Read + Seek> Db<'r, R> {
    /// Checks the metadata page and works out the page geometry.
    fn open(file: &'r mut Reader<R>) -> Result<Self, Fail> {
        let meta = file.at(0, MIN_PAGE, "the Berkeley DB metadata page")?;
        let order = [Order::Little, Order::Big]
            .into_iter()
            .find(|o| o.u32(&meta, META_MAGIC) == Some(HASH_MAGIC))
            .ok_or_else(|| bad("not a Berkeley DB hash database (wrong magic number)"))?;
        if meta[META_TYPE] != P_HASHMETA {
            return Err(bad(format!(
                "metadata page has type {} instead of hash metadata",
                meta[META_TYPE]
            )));
        }
        if meta[META_ENCRYPT] != 0 {
            return Err(bad("the database is encrypted"));
        }
        if meta[META_FLAGS] & META_FLAG_CHKSUM != 0 {
            return Err(bad(
                "the database has page checksums, which rpm never writes",
            ));
        }
        let page_size = order.u32(&meta, META_PAGESIZE).unwrap_or(0) as usize;
        if !page_size.is_power_of_two() || !(MIN_PAGE..=MAX_PAGE).contains(&page_size) {
            return Err(bad(format!("invalid page size {page_size}")));
        }
        let in_file = u32::try_from(file.len / page_size as u64).unwrap_or(u32::MAX);
        let claimed = order
            .u32(&meta, META_LAST_PGNO)
            .unwrap_or(0)
            .saturating_add(1);
        if claimed > in_file {
            return Err(bad(format!(
                "the metadata names {claimed} pages but the file holds {in_file}; it is truncated"
            )));
        }
        Ok(Db {
            file,
            order,
            page_size,
            pages: claimed,
            overflow_budget: claimed,
        })
    }

    fn page(&mut self, pgno: u32) -> Result<Vec<u8>, Fail> {
        let offset = u64::from(pgno) * self.page_size as u64;
        self.file.at(offset, self.page_size, "a database page")
    }

    /// Visits the values of the key/data pairs on one hash page.
    fn hash_page(
        &mut self,
        pgno: u32,
        page: &[u8],
        visit: &mut dyn FnMut(&[u8]) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        let entries = usize::from(self.order.u16(page, ENTRIES).unwrap_or(0));
        if entries % 2 != 0 {
            return Err(bad(format!("hash page {pgno} has a key without a value")));
        }
        for pair in (0..entries).step_by(2) {
            let key = self.item(page, pgno, pair)?;
            let value = self.item(page, pgno, pair + 1)?;
            // Key 0 is rpm's record counter, not a package.
            if key == [H_KEYDATA, 0, 0, 0, 0] {
                continue;
            }
            let blob = self.value(pgno, value)?;
            visit(&blob)?;
        }
        Ok(())
    }

    /// Item `index` of a hash page, type byte included. Items are packed
    /// from the end of the page down, so an item ends where the previous
    /// one starts (db_page.h `LEN_HITEM`).
    fn item<'p>(&self, page: &'p [u8], pgno: u32, index: usize) -> Result<&'p [u8], Fail> {
        let offset_at = |i: usize| self.order.u16(page, PAGE_HEADER + 2 * i).map(usize::from);
        let start = offset_at(index);
        let end = if index == 0 {
            Some(self.page_size)
        } else {
            offset_at(index - 1)
        };
        let items_from = PAGE_HEADER + 2 * (index + 1);
        match (start, end) {
            (Some(s), Some(e)) if items_from <= s && s < e && e <= page.len() => Ok(&page[s..e]),
            _ => Err(bad(format!(
                "hash page {pgno} has an item {index} outside the page"
            ))),
        }
    }

    /// The bytes of a value item: inline, or gathered from overflow pages.
    fn value(&mut self, pgno: u32, item: &[u8]) -> Result<Vec<u8>, Fail> {
        match item.first() {
            Some(&H_KEYDATA) => Ok(item[1..].to_vec()),
            Some(&H_OFFPAGE) => {
                // HOFFPAGE: type (1), unused (3), pgno (4), tlen (4).
                match (self.order.u32(item, 4), self.order.u32(item, 8)) {
                    (Some(first), Some(len)) => self.overflow(first, len),
                    _ => Err(bad(format!(
                        "hash page {pgno} has a short overflow reference"
                    ))),
                }
            }
            other => Err(bad(format!(
                "hash page {pgno} has a value of item type {other:?}, which rpm does not write"
            ))),
        }
    }

    /// Reassembles a value of `len` bytes from the overflow chain starting
    /// at page `first`; each page holds `hf_offset` bytes after its header.
    fn overflow(&mut self, first: u32, len: u32) -> Result<Vec<u8>, Fail> {
        let len = len as usize;
        let room = (self.pages as usize).saturating_mul(self.page_size - PAGE_HEADER);
        if len > MAX_HEADER_BYTES || len > room {
            return Err(bad(format!(
                "an overflow value claims {len} bytes, more than the file can hold"
            )));
        }
        let mut out = Vec::with_capacity(len);
        let mut pgno = first;
        while out.len() < len {
            if pgno == 0 || pgno >= self.pages {
                return Err(bad(format!(
                    "an overflow chain breaks off at page {pgno} after {} of {len} bytes",
                    out.len()
                )));
            }
            if self.overflow_budget == 0 {
                return Err(bad("overflow chains loop or share pages"));
            }
            self.overflow_budget -= 1;
            let page = self.page(pgno)?;
            if page[PAGE_TYPE] != P_OVERFLOW {
                return Err(bad(format!(
                    "page {pgno} in an overflow chain has type {}",
                    page[PAGE_TYPE]
                )));
            }
            let on_page = usize::from(self.order.u16(&page, HF_OFFSET).unwrap_or(0));
            let take = on_page.min(len - out.len());
            match page.get(PAGE_HEADER..PAGE_HEADER + on_page) {
                Some(bytes) if on_page > 0 => out.extend_from_slice(&bytes[..take]),
                _ => return Err(bad(format!("overflow page {pgno} claims {on_page} bytes"))),
            }
            pgno = self.order.u32(&page, NEXT_PGNO).unwrap_or(0);
        }
        Ok(out)
    }
}
