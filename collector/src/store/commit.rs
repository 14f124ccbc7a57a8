//! Group commit: check-ins that arrive together are written in one
//! transaction, so that one synced commit (SQLite's `synchronous = FULL`,
//! PostgreSQL's WAL flush) pays for many reports instead of one.
//!
//! Each committer is a task that takes whatever check-ins are queued (up to
//! [`MAX_BATCH`]), applies each inside a savepoint of one transaction, and
//! answers every caller only after the commit, so an acknowledgement still
//! means durable. Nothing waits for a batch to fill: a lone check-in is
//! committed at once, and batches grow only while a commit is under way.
//! A host always goes to the same committer, so its reports stay in order.

use super::*;

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// Most check-ins in one transaction: bounds the time a batch holds the
/// write lock (an enrollment or a sweep waits for it) and its memory.
pub const MAX_BATCH: usize = 512;

/// Check-ins queued for one committer before callers wait to queue.
const QUEUE: usize = 4 * MAX_BATCH;

/// What the collector's catalog finds in an inventory.
/// It may run more than once: a batch broken off is applied again.
pub type Evaluate = Box<dyn Fn(&Inventory) -> Vec<Detection> + Send + Sync>;

struct Job {
    host_id: String,
    checkin: Arc<CheckIn>,
    catalog_digest: String,
    evaluate: Evaluate,
    reply: oneshot::Sender<Result<CheckInOutcome, StoreError>>,
}

/// The committers of one store, started at the first check-in (so that
/// they run on the runtime that serves).
pub struct Committers {
    count: usize,
    queues: OnceLock<Vec<mpsc::Sender<Job>>>,
}

impl Committers {
    pub(super) fn new(count: usize) -> Committers {
        Committers {
            count: count.max(1),
            queues: OnceLock::new(),
        }
    }

    /// Queues one check-in and waits for its outcome.
    pub(super) async fn submit(
        &self,
        store: &Store,
        host_id: &str,
        checkin: Arc<CheckIn>,
        catalog_digest: &str,
        evaluate: Evaluate,
    ) -> Result<CheckInOutcome, StoreError> {
        let queues = self.queues.get_or_init(|| {
            (0..self.count)
                .map(|_| {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    // The committer's own store writes directly: it holds
                    // no queue, so it ends when every store is dropped.
                    let writer = Store {
                        pool: store.pool.clone(),
                        commits: None,
                    };
                    tokio::spawn(run(writer, rx));
                    tx
                })
                .collect()
        });
        let mut h = std::collections::hash_map::DefaultHasher::new();
        host_id.hash(&mut h);
        let queue = &queues[h.finish() as usize % queues.len()];
        let (reply, answer) = oneshot::channel();
        let job = Job {
            host_id: host_id.to_string(),
            checkin,
            catalog_digest: catalog_digest.to_string(),
            evaluate,
            reply,
        };
        if let Err(mpsc::error::SendError(job)) = queue.send(job).await {
            // The committer is gone (its runtime shut down): write alone.
            return store.alone(&job).await;
        }
        answer
            .await
            .map_err(|_| StoreError::Commit("the check-in was not stored".into()))?
    }
}

/// One committer: batches until every sender is dropped.
async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        store.commit_batch(std::mem::take(&mut jobs)).await;
    }
}

impl Store {
    /// Applies `jobs` in one transaction and answers each. When PostgreSQL
    /// breaks the batch off (a deadlock with another writer, over hosts
    /// that superseded each other), every check-in is applied again alone.
    async fn commit_batch(&self, jobs: Vec<Job>) {
        let t = now();
        match self.try_batch(&jobs, t).await {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) if is_transient(&e) => {
                tracing::debug!(error = %e, check_ins = jobs.len(), "a batch of check-ins met another writer; applying each alone");
                for job in jobs {
                    let outcome = self.alone(&job).await;
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, check_ins = jobs.len(), "a batch of check-ins could not be stored; the agents will send them again");
                let why = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Commit(why.clone())));
                }
            }
        }
    }

    /// The batch in one transaction, each check-in in a savepoint: a
    /// check-in that fails leaves nothing, and the others stand.
    async fn try_batch(
        &self,
        jobs: &[Job],
        t: i64,
    ) -> Result<Vec<Result<CheckInOutcome, StoreError>>, StoreError> {
        on_pool!(self, |pool| {
            let mut outcomes = Vec::with_capacity(jobs.len());
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            for job in jobs {
                let mut point = sqlx::Acquire::begin(&mut *tx).await?;
                let outcome = checkin_in_tx!(
                    self,
                    point,
                    &job.host_id,
                    &job.checkin,
                    &job.catalog_digest,
                    &job.evaluate,
                    t
                )
                .await;
                match &outcome {
                    Ok(CheckInOutcome::Accepted { .. }) => point.commit().await?,
                    Err(e) if is_transient(e) => return Err(outcome.unwrap_err()),
                    // Nothing to keep; a failure's partial writes go.
                    _ => point.rollback().await?,
                }
                outcomes.push(outcome);
            }
            tx.commit().await?;
            Ok(outcomes)
        })
    }

    /// One check-in in a transaction of its own, tried again while it
    /// meets another writer.
    async fn alone(&self, job: &Job) -> Result<CheckInOutcome, StoreError> {
        let mut tries = 0;
        loop {
            let outcome = self
                .checkin_at(
                    &job.host_id,
                    &job.checkin,
                    &job.catalog_digest,
                    &job.evaluate,
                    now(),
                )
                .await;
            match outcome {
                Err(e) if is_transient(&e) && tries < 5 => tries += 1,
                outcome => return outcome,
            }
        }
    }
}

/// A PostgreSQL deadlock or serialisation failure: the work is sound and
/// succeeds when tried again.
fn is_transient(e: &StoreError) -> bool {
    match e {
        StoreError::Sql(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

impl std::fmt::Debug for Committers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committers")
            .field("count", &self.count)
            .finish()
    }
}
