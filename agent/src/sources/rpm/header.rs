//! The rpm header structure, which every rpm database backend stores as one
//! blob per installed package.
//!
//! Layout (all integers big-endian): entry count `il` (u32), data length
//! `dl` (u32), `il` index entries of 16 bytes (tag, type, offset, count),
//! then `dl` bytes of data that the entries point into. The first entry is
//! usually the region tag (HEADERIMMUTABLE, 63) whose data is a trailer
//! describing the signed region; it is not needed to read package fields,
//! so it is skipped like every other tag this reader does not use.

/// rpm refuses headers with more data than this (`HEADER_DATA_MAX`), so a
/// bigger one can only be damage; it also bounds what a record may allocate.
pub const MAX_HEADER_BYTES: usize = 0x0fff_ffff;

/// rpm refuses more index entries than this (`hdrchkTags`).
const MAX_ENTRIES: u32 = 0x00ff_ffff;

/// The magic and reserved bytes that precede a header in a package file;
/// some tools store headers with it, so it is accepted and skipped.
const HEADER_MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];

const PREAMBLE: usize = 8;
const ENTRY_LEN: usize = 16;

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_VENDOR: u32 = 1011;
const TAG_ARCH: u32 = 1022;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// The fields of one installed package that the inventory needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<u32>,
    pub vendor: String,
    pub arch: String,
}

/// One index entry; the offset is relative to the start of the data store.
struct Entry {
    tag: u32,
    kind: u32,
    offset: u32,
    count: u32,
}

/// Parses a header blob. Every offset and length is checked against the
/// blob, so any input gives `Ok` or an `Err` with the reason, never a panic.
pub fn parse(blob: &[u8]) -> Result<Package, String> {
    let blob = blob.strip_prefix(HEADER_MAGIC.as_slice()).unwrap_or(blob);
    let (il, dl) = match (be32(blob, 0), be32(blob, 4)) {
        (Some(il), Some(dl)) => (il, dl),
        _ => return Err(format!("header of {} bytes has no preamble", blob.len())),
    };
    if il > MAX_ENTRIES || dl as usize > MAX_HEADER_BYTES {
        return Err(format!(
            "header claims {il} entries and {dl} data bytes, more than rpm allows"
        ));
    }
    // Both factors are bounded above, so this cannot overflow even on 32-bit.
    let data_start = PREAMBLE + il as usize * ENTRY_LEN;
    let data_end = data_start + dl as usize;
    let (Some(index), Some(data)) = (
        blob.get(PREAMBLE..data_start),
        blob.get(data_start..data_end),
    ) else {
        return Err(format!(
            "header claims {il} entries and {dl} data bytes but has only {} bytes",
            blob.len()
        ));
    };
    let mut pkg = Package::default();
    for raw in index.chunks_exact(ENTRY_LEN) {
        apply(&mut pkg, &entry(raw), data)?;
    }
    if pkg.name.is_empty() {
        return Err("header has no package name".into());
    }
    Ok(pkg)
}

/// Decodes a 16-byte index entry (the caller passes exactly 16 bytes).
fn entry(raw: &[u8]) -> Entry {
    let field = |at| be32(raw, at).unwrap_or(0);
    Entry {
        tag: field(0),
        kind: field(4),
        offset: field(8),
        count: field(12),
    }
}

/// Stores the value of `e` in `pkg` when it is a tag the inventory uses.
fn apply(pkg: &mut Package, e: &Entry, data: &[u8]) -> Result<(), String> {
    let slot = match e.tag {
        TAG_NAME => &mut pkg.name,
        TAG_VERSION => &mut pkg.version,
        TAG_RELEASE => &mut pkg.release,
        TAG_VENDOR => &mut pkg.vendor,
        TAG_ARCH => &mut pkg.arch,
        TAG_EPOCH => {
            pkg.epoch = Some(int32(e, data)?);
            return Ok(());
        }
        _ => return Ok(()),
    };
    *slot = string(e, data)?;
    Ok(())
}

/// The first string of a string-typed entry.
fn string(e: &Entry, data: &[u8]) -> Result<String, String> {
    if !matches!(e.kind, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
        return Err(format!(
            "tag {} has type {} instead of a string",
            e.tag, e.kind
        ));
    }
    let rest = data
        .get(e.offset as usize..)
        .ok_or_else(|| format!("tag {} points past the header data", e.tag))?;
    let len = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| format!("tag {} has an unterminated string", e.tag))?;
    // rpm does not promise UTF-8 (old packages use Latin-1 vendors); keep
    // what can be kept rather than dropping the package.
    Ok(String::from_utf8_lossy(&rest[..len]).into_owned())
}

/// The first value of an INT32 entry.
fn int32(e: &Entry, data: &[u8]) -> Result<u32, String> {
    if e.kind != TYPE_INT32 || e.count == 0 {
        return Err(format!(
            "tag {} has type {} instead of INT32",
            e.tag, e.kind
        ));
    }
    be32(data, e.offset as usize)
        .ok_or_else(|| format!("tag {} points past the header data", e.tag))
}

/// A big-endian u32 at `at`, if the bytes are there.
fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Builds a header blob from (tag, type, value bytes) entries, with a
    /// region entry first as rpm writes it.
    pub fn build(entries: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        let mut push = |tag: u32, kind: u32, value: &[u8], count: u32| {
            for v in [tag, kind, data.len() as u32, count] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            data.extend_from_slice(value);
        };
        // Region entry: a 16-byte trailer in the data store.
        push(63, 7, &[0u8; 16], 16);
        for (tag, kind, value) in entries {
            push(*tag, *kind, value, 1);
        }
        let il = (index.len() / ENTRY_LEN) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&il.to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&index);
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn reads_fields_after_the_region_entry() {
        let blob = build(&[
            (TAG_NAME, TYPE_STRING, b"hello\0"),
            (TAG_VERSION, TYPE_STRING, b"0.0.1\0"),
            (TAG_RELEASE, TYPE_STRING, b"rls\0"),
            (TAG_EPOCH, TYPE_INT32, &1u32.to_be_bytes()),
            (TAG_ARCH, TYPE_STRING, b"x86_64\0"),
            (TAG_VENDOR, TYPE_I18NSTRING, b"Acme\0"),
        ]);
        let p = parse(&blob).expect("valid header");
        assert_eq!(
            p,
            Package {
                name: "hello".into(),
                version: "0.0.1".into(),
                release: "rls".into(),
                epoch: Some(1),
                vendor: "Acme".into(),
                arch: "x86_64".into(),
            }
        );
        // The same header behind the package-file magic.
        let mut with_magic = HEADER_MAGIC.to_vec();
        with_magic.extend_from_slice(&blob);
        assert_eq!(parse(&with_magic), Ok(p));
    }

    #[test]
    fn rejects_bad_offsets_and_types() {
        let unterminated = build(&[(TAG_NAME, TYPE_STRING, b"abc")]);
        assert!(parse(&unterminated).unwrap_err().contains("unterminated"));
        let int_name = build(&[(TAG_NAME, TYPE_INT32, &[0, 0, 0, 1])]);
        assert!(
            parse(&int_name)
                .unwrap_err()
                .contains("instead of a string")
        );
        let no_name = build(&[(TAG_VERSION, TYPE_STRING, b"1\0")]);
        assert!(parse(&no_name).unwrap_err().contains("no package name"));
        let mut huge = build(&[(TAG_NAME, TYPE_STRING, b"a\0")]);
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse(&huge).is_err());
        assert!(parse(&[]).is_err());
        // An entry offset beyond the data store.
        let mut far = build(&[(TAG_NAME, TYPE_STRING, b"a\0")]);
        far[8 + 16 + 8..8 + 16 + 12].copy_from_slice(&1000u32.to_be_bytes());
        assert!(parse(&far).unwrap_err().contains("past the header data"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_plausible_preambles(
            il in 0u32..40, dl in 0u32..400,
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024),
        ) {
            let mut blob = il.to_be_bytes().to_vec();
            blob.extend_from_slice(&dl.to_be_bytes());
            blob.extend_from_slice(&rest);
            let _ = parse(&blob);
        }
    }
}
