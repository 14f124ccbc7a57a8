//! The periodic checks that add events of their own: a host that stops
//! reporting becomes `stale` (once, until it reports again), and a host
//! that still has a banned product after a campaign's deadline gets a
//! `campaign_missed` event (once per campaign). On several collectors
//! sharing a database the sweeps may run on each; the store writes each
//! event once. The same pass deletes the check-in log's entries older
//! than `checkin_history`.

use crate::server::State;
use std::sync::Arc;
use std::time::Duration;

/// Hosts handled per transaction.
const BATCH: u32 = 500;

/// Check-in log entries deleted per statement: a short hold of the write
/// lock, so check-ins are not kept waiting behind a large deletion.
const PRUNE_BATCH: u32 = 5_000;

/// How often the sweeps run: a quarter of the check-in interval, between
/// 2 seconds and a minute.
pub fn period(state: &State) -> Duration {
    (state.config.interval() / 4).clamp(Duration::from_secs(2), Duration::from_secs(60))
}

/// Runs the sweeps every [`period`] until `shutdown` turns true.
pub async fn run(state: Arc<State>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = once(&state).await {
            tracing::warn!(error = %e, "sweep for stale hosts and missed deadlines failed; retrying");
        }
        let wait = period(&state);
        if tokio::time::timeout(wait, shutdown.wait_for(|s| *s))
            .await
            .is_ok()
        {
            return;
        }
    }
}

/// One pass of both sweeps.
pub async fn once(state: &State) -> Result<(), crate::store::StoreError> {
    loop {
        let marked = state.store.mark_stale(state.stale_before(), BATCH).await?;
        if !marked.is_empty() {
            tracing::info!(
                hosts = marked.len(),
                "hosts stopped reporting: marked stale"
            );
        }
        if marked.len() < BATCH as usize {
            break;
        }
    }
    let now = crate::store::now();
    let before = now - state.config.checkin_history().as_secs() as i64;
    let mut pruned = 0;
    loop {
        let n = state.store.prune_checkins(before, PRUNE_BATCH).await?;
        pruned += n;
        if n < u64::from(PRUNE_BATCH) {
            break;
        }
    }
    if pruned > 0 {
        tracing::info!(
            entries = pruned,
            older_than = %state.config.checkin_history,
            "check-in log pruned"
        );
    }
    for c in state.store.campaigns().await? {
        if c.remove_by > now {
            continue;
        }
        let Some(policy) = state.catalog.policy(&c.policy) else {
            continue;
        };
        let banned: Vec<String> = state
            .catalog
            .products
            .iter()
            .filter(|p| policy.bans(p))
            .map(|p| p.id.clone())
            .collect();
        loop {
            let missed = state.store.not_yet_missed(&c.name, &banned, BATCH).await?;
            if missed.is_empty() {
                break;
            }
            let n = state.store.campaign_missed(&c.name, &missed).await?;
            tracing::warn!(campaign = %c.name, hosts = n, "hosts missed the campaign's deadline with a banned product still present");
            if n == 0 {
                break;
            }
        }
    }
    Ok(())
}
