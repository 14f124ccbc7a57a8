//! "Come back later": how a collector over its check-in rate tells an agent
//! when to return. The status is `RESOURCE_EXHAUSTED` and the metadata
//! `retry-after` holds whole seconds.

/// The gRPC metadata key carrying the seconds to wait.
pub const RETRY_AFTER: &str = "retry-after";

/// The longest wait a collector gives out and an agent accepts, in seconds.
pub const MAX_RETRY_AFTER: u32 = 900;

/// The refusal a busy collector sends: wait `seconds`.
pub fn status(seconds: u32) -> tonic::Status {
    let mut s = tonic::Status::resource_exhausted(format!(
        "the collector is taking more check-ins than it is configured for; try again in {seconds} s"
    ));
    s.metadata_mut()
        .insert(RETRY_AFTER, tonic::metadata::MetadataValue::from(seconds));
    s
}

/// The wait a busy collector asked for in `s`, in seconds (bounded by
/// [`MAX_RETRY_AFTER`]); `None` for any other status.
pub fn retry_after(s: &tonic::Status) -> Option<u32> {
    if s.code() != tonic::Code::ResourceExhausted {
        return None;
    }
    let v = s.metadata().get(RETRY_AFTER)?.to_str().ok()?;
    let n: u32 = v.trim().parse().ok()?;
    Some(n.clamp(1, MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_round_trips_bounded_and_garbage_is_ignored() {
        assert_eq!(retry_after(&status(12)), Some(12));
        assert_eq!(retry_after(&status(999_999)), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&status(0)), Some(1));
        let mut s = tonic::Status::resource_exhausted("busy");
        assert_eq!(retry_after(&s), None);
        s.metadata_mut()
            .insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&s), None);
        let mut other = tonic::Status::unavailable("down");
        other
            .metadata_mut()
            .insert(RETRY_AFTER, "5".parse().unwrap());
        assert_eq!(retry_after(&other), None, "only a busy refusal counts");
    }
}
