//! Snapshots: an inventory written to one JSON document for air-gapped
//! hosts (`muster-agent collect`), read back by `muster-agent scan
//! --snapshot` and by the collector's `muster import`. The format is
//! documented in `docs/snapshot.md`; its `inventory` is authoritative, the
//! other arrays are views of it for people and other tools. This is the
//! reading side, shared by the agent and the collector; the agent writes.

use crate::{HostFacts, Inventory};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The snapshot format written and read.
pub const FORMAT_VERSION: u32 = 1;

/// Largest snapshot read, in bytes.
pub const MAX_SNAPSHOT: u64 = 256 << 20;

/// A source that could not be read, as reported to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanError {
    /// The source (`dpkg`, `systemd`, ...).
    pub source: String,
    /// Why, naming the path and what to do.
    pub reason: String,
    /// The source was still read, without the part named here (a damaged
    /// plist among many).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// What `scan --snapshot` and import need from a snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Unix seconds when the inventory was taken.
    pub collected_at: i64,
    /// The host's facts.
    pub host: HostFacts,
    /// The inventory, section by section.
    pub inventory: Inventory,
    /// Sources that could not be read when it was taken.
    #[serde(default)]
    pub errors: Vec<ScanError>,
}

/// Why a document is not a snapshot this version reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not JSON at all.
    #[error("not a Muster snapshot: not valid JSON ({0})")]
    NotJson(String),
    /// JSON without a format version.
    #[error("not a Muster snapshot: it has no format_version")]
    NoVersion,
    /// Another version of the format.
    #[error(
        "snapshot format version {0} is not supported (this version reads {FORMAT_VERSION}); collect it again with this version, or upgrade"
    )]
    Version(u64),
    /// The right version, but fields missing or of the wrong type.
    #[error("a damaged snapshot: {0}")]
    Damaged(String),
}

/// Parses a snapshot document, refusing other format versions and damaged
/// documents with an error that says what is wrong.
pub fn parse(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::NotJson(e.to_string()))?;
    match v.get("format_version").and_then(Value::as_u64) {
        Some(n) if n == u64::from(FORMAT_VERSION) => {}
        Some(n) => return Err(SnapshotError::Version(n)),
        None => return Err(SnapshotError::NoVersion),
    }
    let mut s: Snapshot =
        serde_json::from_value(v).map_err(|e| SnapshotError::Damaged(e.to_string()))?;
    for section in s.inventory.sections.values_mut() {
        section.normalise();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wrong_versions_and_damage_are_named() {
        assert_eq!(
            parse(br#"{"format_version": 9999}"#).unwrap_err(),
            SnapshotError::Version(9999)
        );
        assert_eq!(parse(b"{}").unwrap_err(), SnapshotError::NoVersion);
        assert!(matches!(parse(b"{"), Err(SnapshotError::NotJson(_))));
        assert!(matches!(
            parse(br#"{"format_version": 1, "host": 3}"#),
            Err(SnapshotError::Damaged(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }
    }
}
