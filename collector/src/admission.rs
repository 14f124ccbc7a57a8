//! Admission of check-ins: at most `max_checkins_per_second`, with a
//! second's worth of burst. A check-in over the limit is told when to come
//! back (`retry-after`), and the times given out are spread one slot apart,
//! so that thousands of agents returning together after an outage come
//! back in an even stream instead of another crowd.

use std::sync::Mutex;

pub use muster_proto::busy::{MAX_RETRY_AFTER, RETRY_AFTER};

/// A rate limit in the GCRA form (a virtual clock instead of a token
/// count), plus the slots promised to refused callers.
pub struct Admission {
    /// Seconds between two admissions at the limit; 0 admits everything.
    period: f64,
    /// How far ahead of real time the virtual clock may run (the burst).
    tolerance: f64,
    clock: Mutex<Clock>,
}

struct Clock {
    /// When the next admission is due at the steady rate.
    due: f64,
    /// The last slot promised to a refused caller.
    promised: f64,
}

impl Admission {
    /// A limit of `per_second` check-ins (0: none).
    pub fn new(per_second: u32) -> Admission {
        let period = if per_second == 0 {
            0.0
        } else {
            1.0 / f64::from(per_second)
        };
        Admission {
            period,
            tolerance: 1.0,
            clock: Mutex::new(Clock {
                due: 0.0,
                promised: 0.0,
            }),
        }
    }

    /// Whether a check-in arriving at `now` (seconds) may proceed; if not,
    /// the whole seconds to wait before trying again.
    pub fn admit(&self, now: f64) -> Result<(), u32> {
        if self.period == 0.0 {
            return Ok(());
        }
        let mut c = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        let due = c.due.max(now);
        if due - now < self.tolerance {
            c.due = due + self.period;
            return Ok(());
        }
        // Refused: the next moment the limit has room, after every slot
        // already promised to others.
        let slot = c.promised.max(due - self.tolerance) + self.period;
        let wait = (slot - now).ceil().clamp(1.0, f64::from(MAX_RETRY_AFTER));
        c.promised = slot.min(now + f64::from(MAX_RETRY_AFTER));
        Err(wait as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_admits_everything() {
        let a = Admission::new(0);
        assert!((0..10_000).all(|_| a.admit(5.0).is_ok()));
    }

    #[test]
    fn a_crowd_gets_a_burst_then_waits_spread_one_slot_apart() {
        let a = Admission::new(10);
        let outcomes: Vec<_> = (0..100).map(|_| a.admit(1000.0)).collect();
        let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(admitted, 10, "one second's worth of burst");
        let waits: Vec<u32> = outcomes.iter().filter_map(|o| o.err()).collect();
        // 90 refused, told to come back over the next 9 seconds, about 10
        // per second: never all at once.
        assert_eq!(waits.len(), 90);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        for s in 1..=9 {
            let n = waits.iter().filter(|&&w| w == s).count();
            assert!((9..=11).contains(&n), "{n} told to wait {s}s: {waits:?}");
        }
        // When they come back at their slot, the rate has room again.
        assert!(a.admit(1002.0).is_ok());
    }

    #[test]
    fn the_steady_rate_is_admitted_and_waits_are_capped() {
        let a = Admission::new(5);
        assert!((0..1000).all(|i| a.admit(f64::from(i) * 0.2).is_ok()));
        let b = Admission::new(1);
        let longest = (0..5000).filter_map(|_| b.admit(0.0).err()).max();
        assert_eq!(longest, Some(MAX_RETRY_AFTER));
    }
}
