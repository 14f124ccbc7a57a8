//! Group commit: check-ins that arrive together are written in one
//! transaction, so that one sync (of SQLite's WAL, [`super::direct::Syncer`];
//! PostgreSQL's WAL flush) pays for many reports instead of one.
//!
//! Each committer is a task that takes whatever check-ins are queued (up to
//! [`MAX_BATCH`]), applies each inside a savepoint of one transaction, and
//! answers every caller only once the commit is durable, so an
//! acknowledgement still means durable. Nothing waits for a batch to fill:
//! a lone check-in is committed at once, and batches grow only while a
//! commit is under way.
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

pub(super) struct Job {
    pub(super) host_id: String,
    pub(super) checkin: Arc<CheckIn>,
    pub(super) catalog_digest: String,
    pub(super) evaluate: Evaluate,
    pub(super) reply: oneshot::Sender<Result<CheckInOutcome, StoreError>>,
}

impl Job {
    /// Answers the caller. The check-in is let go first: the caller holds
    /// it too, so it is freed on the caller's thread, not the committer's.
    pub(super) fn answer(self, outcome: Result<CheckInOutcome, StoreError>) {
        let Job { reply, checkin, .. } = self;
        drop(checkin);
        let _ = reply.send(outcome);
    }
}

/// Check-ins, each with its outcome, to be answered.
pub(super) type Outcomes = Vec<(Job, Result<CheckInOutcome, StoreError>)>;

/// The committers of one store, started at the first check-in (so that
/// they run on the runtime that serves).
pub struct Committers {
    count: usize,
    /// The committers' own pool, when they have one (SQLite).
    writer: Option<Pool>,
    /// SQLite's committer's own connection for unchanged check-ins.
    direct: Option<Arc<super::direct::Direct>>,
    queues: OnceLock<Vec<mpsc::Sender<Job>>>,
}

impl Committers {
    pub(super) fn new(
        count: usize,
        writer: Option<Pool>,
        direct: Option<super::direct::Direct>,
    ) -> Committers {
        Committers {
            count: count.max(1),
            writer,
            direct: direct.map(Arc::new),
            queues: OnceLock::new(),
        }
    }

    /// Closes the committers' own connections (the store is closing).
    pub(super) async fn close(&self) {
        if let Some(d) = &self.direct {
            d.close();
        }
        if let Some(w) = &self.writer {
            w.close().await;
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
                        pool: self.writer.clone().unwrap_or_else(|| store.pool.clone()),
                        commits: None,
                    };
                    match &self.direct {
                        Some(direct) => run_on_own_thread(
                            writer,
                            direct.clone(),
                            tokio::runtime::Handle::current(),
                            rx,
                        ),
                        None => {
                            tokio::spawn(run(writer, None, rx));
                        }
                    }
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
            checkin: checkin.clone(),
            catalog_digest: catalog_digest.to_string(),
            evaluate,
            reply,
        };
        if let Err(mpsc::error::SendError(job)) = queue.send(job).await {
            // The committer is gone (its runtime shut down): write alone.
            return store.alone(&job).await;
        }
        let outcome = answer
            .await
            .map_err(|_| StoreError::Commit("the check-in was not stored".into()))?;
        // Freed here rather than on the committer's thread ([`Job::answer`]).
        drop(checkin);
        outcome
    }
}

/// SQLite's one committer runs on a thread of its own: between its
/// statements it is woken at once instead of waiting behind the
/// connections' tasks, and it applies unchanged check-ins itself
/// ([`super::direct`]). Each batch's answers wait for the sync that makes
/// it durable ([`super::direct::Syncer`]), which then sends them from one
/// task on `serving`, the runtime of the connections. If the thread
/// cannot start, `rx` is dropped and every check-in is written alone
/// ([`Committers::submit`]).
fn run_on_own_thread(
    store: Store,
    direct: Arc<super::direct::Direct>,
    serving: tokio::runtime::Handle,
    rx: mpsc::Receiver<Job>,
) {
    let syncer = direct.syncer(serving);
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|rt| {
            std::thread::Builder::new()
                .name("muster-commit".into())
                .spawn(move || rt.block_on(run(store, Some((direct, syncer)), rx)))
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "cannot start the committer's thread; check-ins are written one by one");
    }
}

/// One committer: batches until every sender is dropped. With `direct`
/// (SQLite), a batch's unchanged check-ins are applied there first, and
/// every answer waits for the syncer given with it: sqlx's too, since a
/// report it finds already stored may have been stored by a commit not
/// yet synced.
async fn run(
    store: Store,
    mut direct: Option<(Arc<super::direct::Direct>, super::direct::Syncer)>,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let mut batch = std::mem::take(&mut jobs);
        if let Some((direct, syncer)) = &mut direct {
            let answered;
            (answered, batch) = direct.commit(batch, now());
            if !answered.is_empty() {
                syncer.answer(answered.into_iter().map(|(j, o)| (j, Ok(o))).collect());
            }
        }
        if batch.is_empty() {
            continue;
        }
        let outcomes = store.commit_batch(batch).await;
        match &mut direct {
            Some((_, syncer)) => syncer.answer(outcomes),
            None => {
                for (job, outcome) in outcomes {
                    job.answer(outcome);
                }
            }
        }
    }
}

/// What the batch read of a host before applying anything.
#[derive(sqlx::FromRow)]
pub(super) struct Known {
    pub(super) id: String,
    pub(super) last_sequence: i64,
    pub(super) revoked_at: Option<i64>,
    pub(super) superseded_by: Option<String>,
    pub(super) hostname: String,
}

/// How one check-in of a batch is applied.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    /// Its outcome is known from what was read, and it writes nothing.
    Answer(CheckInOutcome),
    /// Nothing changed but the time and facts: applied in bulk.
    Unchanged,
    /// Applied on its own ([`checkin_in_tx!`]).
    Alone,
}

/// What [`plan`] needs of a host: its row, and its sections' digests as
/// `(name, digest)` sorted by name.
pub(super) type Stored<'a, S> = (&'a Known, &'a [(S, S)]);

/// Decides each check-in's [`Step`] from its host's row and stored
/// digests (`stored`, by host id), exactly as [`checkin_in_tx!`] would
/// decide. Whatever might write more than an unchanged report does
/// (sections sent or dropped, a first report, a hostname written
/// otherwise, a superseded host reporting again), and every report of a
/// host that has two in the batch, goes alone.
pub(super) fn plan<'a, S: AsRef<str> + 'a>(
    jobs: &[Job],
    stored: impl Fn(&str) -> Option<Stored<'a, S>>,
) -> Vec<Step> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(jobs.len());
    for job in jobs {
        *seen.entry(job.host_id.as_str()).or_default() += 1;
    }
    jobs.iter()
        .map(|job| {
            let c = &job.checkin;
            if seen[job.host_id.as_str()] > 1 || !c.sections.is_empty() {
                return Step::Alone;
            }
            let Some((host, digests)) = stored(&job.host_id) else {
                return Step::Answer(CheckInOutcome::UnknownHost);
            };
            if let Some(at) = host.revoked_at {
                return Step::Answer(CheckInOutcome::Revoked { at });
            }
            if c.sequence <= host.last_sequence as u64 {
                return Step::Answer(CheckInOutcome::Duplicate);
            }
            let digest_of = |name: &str| {
                digests
                    .binary_search_by(|(n, _)| n.as_ref().cmp(name))
                    .ok()
                    .map(|i| digests[i].1.as_ref())
            };
            let missing: Vec<String> = c
                .digests
                .iter()
                .filter(|(name, digest)| digest_of(name) != Some(digest.as_str()))
                .map(|(name, _)| name.clone())
                .collect();
            if !missing.is_empty() {
                return Step::Answer(CheckInOutcome::Missing(missing));
            }
            let same_host = host.last_sequence != 0
                && host.superseded_by.is_none()
                && host.hostname == c.facts.hostname;
            if same_host && digests.len() == c.digests.len() {
                Step::Unchanged
            } else {
                Step::Alone
            }
        })
        .collect()
}

/// Applies the unchanged check-ins `$fast` (indexes into `$jobs`) at time
/// `$t` inside `$tx`, in four statements whatever their number: detections
/// seen again, the hosts' facts and progress, the check-in history. The
/// present detections of each host, counted.
macro_rules! unchanged_in_bulk {
    ($store:expr, $tx:expr, $jobs:expr, $fast:expr, $t:expr) => {{
        let (jobs, fast, t): (&[Job], &[usize], i64) = ($jobs, $fast, $t);
        let ids = json(&fast.iter().map(|&i| jobs[i].host_id.as_str()).collect::<Vec<_>>());
        let rows: Vec<serde_json::Value> = fast
            .iter()
            .map(|&i| {
                let (c, f) = (&jobs[i].checkin, &jobs[i].checkin.facts);
                serde_json::json!({
                    "id": jobs[i].host_id,
                    "hostname": f.hostname,
                    "os_name": f.os_name,
                    "os_version": f.os_version,
                    "kernel": f.kernel,
                    "arch": f.arch,
                    "ips": json(&f.ips),
                    "agent_version": f.agent_version,
                    "sequence": c.sequence as i64,
                    "catalog_version": c.catalog_version,
                    "agent_detections": json(&c.agent_detections),
                    "platform": f.platform,
                    "hardware_id": f.hardware_id,
                    "scanned_at": c.scanned_at,
                })
            })
            .collect();
        let rows = json(&rows);
        let counts: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>($store.locked(
            "SELECT host_id, COUNT(*) FROM detections WHERE removed_at IS NULL \
             AND host_id IN (SELECT value FROM json_each($1)) GROUP BY host_id",
            "SELECT host_id, COUNT(*) FROM detections WHERE removed_at IS NULL \
             AND host_id IN (SELECT json_array_elements_text($1::json)) GROUP BY host_id",
        ))
        .bind(&ids)
        .fetch_all(&mut *$tx)
        .await?
        .into_iter()
        .collect();
        sqlx::query($store.locked(
            "UPDATE detections SET last_seen = $1 WHERE removed_at IS NULL \
             AND host_id IN (SELECT value FROM json_each($2))",
            "UPDATE detections SET last_seen = $1 WHERE removed_at IS NULL \
             AND host_id IN (SELECT json_array_elements_text($2::json))",
        ))
        .bind(t)
        .bind(&ids)
        .execute(&mut *$tx)
        .await?;
        sqlx::query($store.locked(
            concat!(
                "UPDATE hosts SET ",
                unchanged_set!(),
                " FROM (SELECT value ->> 'id' AS id, value ->> 'hostname' AS hostname, \
                 value ->> 'os_name' AS os_name, value ->> 'os_version' AS os_version, \
                 value ->> 'kernel' AS kernel, value ->> 'arch' AS arch, value ->> 'ips' AS ips, \
                 value ->> 'agent_version' AS agent_version, value ->> 'sequence' AS sequence, \
                 value ->> 'catalog_version' AS catalog_version, \
                 value ->> 'agent_detections' AS agent_detections, value ->> 'platform' AS platform, \
                 value ->> 'hardware_id' AS hardware_id FROM json_each($1)) AS v WHERE hosts.id = v.id"
            ),
            concat!(
                "UPDATE hosts SET ",
                unchanged_set!(),
                " FROM json_to_recordset($1::json) AS v(id text, hostname text, os_name text, \
                 os_version text, kernel text, arch text, ips text, agent_version text, sequence bigint, \
                 catalog_version text, agent_detections text, platform text, hardware_id text) \
                 WHERE hosts.id = v.id"
            ),
        ))
        .bind(&rows)
        .bind(t)
        .execute(&mut *$tx)
        .await?;
        sqlx::query($store.locked(
            "INSERT INTO checkins (host_id, sequence, received_at, scanned_at, sections_sent) \
             SELECT value ->> 'id', value ->> 'sequence', $2, value ->> 'scanned_at', 0 FROM json_each($1)",
            "INSERT INTO checkins (host_id, sequence, received_at, scanned_at, sections_sent) \
             SELECT v.id, v.sequence, $2, v.scanned_at, 0 \
             FROM json_to_recordset($1::json) AS v(id text, sequence bigint, scanned_at bigint)",
        ))
        .bind(&rows)
        .bind(t)
        .execute(&mut *$tx)
        .await?;
        counts
    }};
}

/// The columns an unchanged check-in sets, from `v` (its report) and `$2`
/// (the time): what [`checkin_in_tx!`] sets but the hostname, which is the
/// same (so its indexes are left alone).
macro_rules! unchanged_set {
    () => {
        "os_name = v.os_name, os_version = v.os_version, kernel = v.kernel, \
         arch = v.arch, ips = v.ips, agent_version = v.agent_version, last_checkin = $2, \
         last_sequence = v.sequence, catalog_version = v.catalog_version, \
         agent_detections = v.agent_detections, platform = v.platform, hardware_id = v.hardware_id, \
         stale_since = NULL, superseded_by = NULL, superseded_at = NULL"
    };
}

impl Store {
    /// Applies `jobs` in one transaction; each with its outcome, for the
    /// caller to answer. When PostgreSQL breaks the batch off (a deadlock
    /// with another writer, over hosts that superseded each other), every
    /// check-in is applied again alone.
    async fn commit_batch(&self, jobs: Vec<Job>) -> Outcomes {
        let t = now();
        let started = std::time::Instant::now();
        let result = self.try_batch(&jobs, t).await;
        tracing::debug!(
            check_ins = jobs.len(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "group commit"
        );
        match result {
            Ok(outcomes) => jobs.into_iter().zip(outcomes).collect(),
            Err(e) if is_transient(&e) => {
                tracing::debug!(error = %e, check_ins = jobs.len(), "a batch of check-ins met another writer; applying each alone");
                let mut outcomes = Vec::with_capacity(jobs.len());
                for job in jobs {
                    let outcome = self.alone(&job).await;
                    outcomes.push((job, outcome));
                }
                outcomes
            }
            Err(e) => {
                tracing::error!(error = %e, check_ins = jobs.len(), "a batch of check-ins could not be stored; the agents will send them again");
                let why = e.to_string();
                jobs.into_iter()
                    .map(|job| (job, Err(StoreError::Commit(why.clone()))))
                    .collect()
            }
        }
    }

    /// The batch in one transaction. Unchanged check-ins, the bulk of any
    /// fleet's, are applied together in a few statements
    /// ([`Store::unchanged_in_bulk`]); the others one by one, each in a
    /// savepoint: a check-in that fails leaves nothing, and the others
    /// stand.
    async fn try_batch(
        &self,
        jobs: &[Job],
        t: i64,
    ) -> Result<Vec<Result<CheckInOutcome, StoreError>>, StoreError> {
        on_pool!(self, |pool| {
            let mut outcomes: Vec<Option<Result<CheckInOutcome, StoreError>>> =
                (0..jobs.len()).map(|_| None).collect();
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let ids = json(&jobs.iter().map(|j| j.host_id.as_str()).collect::<Vec<_>>());
            let known: Vec<Known> = sqlx::query_as(self.locked(
                "SELECT id, last_sequence, revoked_at, superseded_by, hostname FROM hosts \
                 WHERE id IN (SELECT value FROM json_each($1))",
                "SELECT id, last_sequence, revoked_at, superseded_by, hostname FROM hosts \
                 WHERE id IN (SELECT json_array_elements_text($1::json)) ORDER BY id FOR UPDATE",
            ))
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            let stored: Vec<(String, String, String)> = sqlx::query_as(self.locked(
                "SELECT host_id, name, digest FROM sections \
                 WHERE host_id IN (SELECT value FROM json_each($1))",
                "SELECT host_id, name, digest FROM sections \
                 WHERE host_id IN (SELECT json_array_elements_text($1::json))",
            ))
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            let mut hosts: HashMap<String, (Known, Vec<(String, String)>)> = known
                .into_iter()
                .map(|k| (k.id.clone(), (k, Vec::new())))
                .collect();
            for (host, name, digest) in stored {
                if let Some((_, digests)) = hosts.get_mut(&host) {
                    digests.push((name, digest));
                }
            }
            hosts.values_mut().for_each(|(_, digests)| digests.sort());
            let plan = plan(jobs, |id| hosts.get(id).map(|(k, d)| (k, d.as_slice())));
            let mut fast = Vec::new();
            for (i, step) in plan.into_iter().enumerate() {
                match step {
                    Step::Answer(outcome) => outcomes[i] = Some(Ok(outcome)),
                    Step::Unchanged => fast.push(i),
                    Step::Alone => {}
                }
            }
            if !fast.is_empty() {
                let counts = unchanged_in_bulk!(self, tx, jobs, &fast, t);
                for i in fast {
                    outcomes[i] = Some(Ok(CheckInOutcome::Accepted {
                        detections: counts.get(&jobs[i].host_id).copied().unwrap_or(0) as usize,
                        superseded: Vec::new(),
                        reappeared: None,
                    }));
                }
            }
            for (i, job) in jobs.iter().enumerate() {
                if outcomes[i].is_some() {
                    continue;
                }
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
                outcomes[i] = Some(outcome);
            }
            tx.commit().await?;
            Ok(outcomes
                .into_iter()
                .map(|o| o.expect("every check-in has an outcome"))
                .collect())
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
