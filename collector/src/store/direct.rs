//! SQLite's unchanged check-ins, applied by the committer's own thread on
//! a connection of its own, with no round trip to sqlx's worker thread.
//!
//! Through sqlx every statement is a message to the connection's worker
//! thread and a wake-up back, and a batch of unchanged check-ins took eight
//! of them: with kept-open agents the committer spent about 40 % of each
//! batch waiting for one thread or the other to be scheduled, and SQLite
//! spent much of the rest taking apart the JSON the batch was bound as.
//! Here the committer's thread holds a connection of its own (rusqlite, on
//! the same SQLite library) and runs plain prepared statements on it, one
//! row each.
//!
//! Only what [`plan`] marks unchanged or answerable is done here; every
//! other check-in of the batch (sections sent, a first report, a host with
//! two reports in the batch) goes on through [`Store::commit_batch`] after
//! this transaction commits. A host's reports are either all here or all
//! there, so they stay in order. The two connections share the file's
//! write lock like any two writers; when sqlx's has written, this one
//! reads its pages again (WAL mode drops a connection's cache when another
//! wrote), which costs little next to the round trips it saves.
//!
//! The committer does not checkpoint the WAL after its commits, as every
//! SQLite connection does by default each 1 000 pages: with kept-open
//! agents that was a checkpoint every few dozen milliseconds, a fifth of
//! the committer's time, and the batches that did it took up to 20 ms.
//! A thread of its own checkpoints instead ([`checkpoints`]), while the
//! committer goes on. The WAL starts over only when a write transaction
//! begins with every frame copied back, which under steady load a passive
//! checkpoint never wins; so once the WAL holds [`RESTART_FRAMES`], the
//! checkpointer copies what is left holding the write lock (`RESTART`),
//! a few milliseconds just after a passive pass. (When the committer
//! copied it after its own commits, that took up to 35 ms at 7 000
//! check-ins per second, and set the p99.)

use super::commit::{Job, Known, Outcomes, Step, plan};
use super::*;
use rusqlite::{OpenFlags, OptionalExtension, params};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// WAL frames (pages) after which the checkpointer lets the WAL start
/// over: 64 MB.
const RESTART_FRAMES: i64 = 16_384;

/// How long a `RESTART` checkpoint may wait for the committer's
/// transaction or a reader before it gives up until the next pass: it
/// holds the write lock while it waits.
const RESTART_WAIT: Duration = Duration::from_millis(20);

/// When the checkpointer is not running, the committer copies the WAL
/// back itself every so many commits.
const CATCH_UP: u32 = 256;

/// How often the checkpointer copies the WAL back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Check-ins stored or answered, each with its outcome, not yet sent.
pub(super) type Answered = Vec<(Job, CheckInOutcome)>;

/// Makes the committer's commits durable, then answers them.
///
/// The committer's connection commits without waiting for the disk
/// (`synchronous = NORMAL`: in WAL mode a crash may lose the last commits
/// but never damages the file). Each batch's answers come here instead;
/// on a thread of its own the syncer syncs the WAL file (`fdatasync`),
/// and only then sends the answers of every batch committed before the
/// sync began, so an acknowledgement still means durable. The WAL is
/// written in order, so one sync covers every commit before it, sqlx's
/// included. Meanwhile the committer writes the next batch: with
/// `synchronous = FULL` it waited for each sync, 0.2 ms on a quiet disk
/// but 1 to 5 ms, at times 30, on a busy one, and that wait, not its
/// work, bounded how many check-ins it stored.
///
/// Its commits are visible to readers before the sync: an operator may
/// see a check-in that a power cut then takes back. The agent was not
/// answered, so it sends the report again.
pub(super) enum Syncer {
    /// The syncer's thread.
    Thread(std::sync::mpsc::Sender<Outcomes>),
    /// Its thread could not start: the committer syncs before answering.
    Inline(Wal, tokio::runtime::Handle),
}

impl Syncer {
    /// Answers `outcomes` once what was committed before is durable.
    pub(super) fn answer(&mut self, outcomes: Outcomes) {
        match self {
            Syncer::Thread(tx) => {
                if let Err(std::sync::mpsc::SendError(outcomes)) = tx.send(outcomes) {
                    // The thread is gone; nothing says these are durable.
                    send(Err(String::from("the syncer stopped")), vec![outcomes]);
                }
            }
            Syncer::Inline(wal, serving) => {
                let _enter = serving.enter();
                send(wal.sync(), vec![outcomes]);
            }
        }
    }
}

/// The syncer's thread: until the committer is gone, syncs once for all
/// the batches that are waiting, then answers them.
fn syncs(wal: Wal, serving: tokio::runtime::Handle, rx: std::sync::mpsc::Receiver<Outcomes>) {
    let _enter = serving.enter();
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        batches.extend(rx.try_iter());
        send(wal.sync(), batches);
    }
}

/// Sends each answer from one task on the current runtime (the one that
/// serves: waking each caller there costs no system call, where from
/// this thread each of hundreds of wake-ups could), or an error for all
/// if the sync failed.
fn send(synced: Result<(), String>, batches: Vec<Outcomes>) {
    if let Err(e) = &synced {
        tracing::error!(error = %e, check_ins = batches.iter().map(Vec::len).sum::<usize>(), "the database's log could not be synced; these check-ins are answered with an error and the agents will send them again");
    }
    tokio::spawn(async move {
        for (job, outcome) in batches.into_iter().flatten() {
            job.answer(match &synced {
                Ok(()) => outcome,
                Err(e) => Err(StoreError::Commit(format!(
                    "it is not known to be on disk: the database's log could not be synced: {e}"
                ))),
            });
        }
    });
}

/// The database's WAL file, opened at each sync: SQLite may have let it
/// go and made another since the last.
pub(super) struct Wal(PathBuf);

impl Wal {
    fn sync(&self) -> Result<(), String> {
        let opened = std::fs::OpenOptions::new().write(true).open(&self.0);
        match opened {
            Ok(file) => file.sync_data(),
            // No WAL: the last connection before this sync copied it all
            // back into the database, and synced that.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
        .map_err(|e| format!("{}: {e}", self.0.display()))
    }
}

/// The committer's own SQLite connection, opened at its first batch and
/// closed with the store.
pub(super) struct Direct {
    path: PathBuf,
    state: Mutex<State>,
    /// Tells the checkpointer's thread to stop.
    closing: Arc<Closing>,
}

enum State {
    Unopened,
    Open {
        db: rusqlite::Connection,
        /// Commits since the committer last checkpointed.
        commits: u32,
        memory: Memory,
    },
    /// The store is closing: nothing opens it again.
    Closed,
}

#[derive(Default)]
struct Closing {
    closed: Mutex<bool>,
    wake: Condvar,
    /// The checkpointer's thread has its connection and checkpoints.
    running: std::sync::atomic::AtomicBool,
}

impl Direct {
    pub(super) fn new(path: PathBuf) -> Direct {
        Direct {
            path,
            state: Mutex::new(State::Unopened),
            closing: Arc::default(),
        }
    }

    /// Starts the syncer for the committer's commits: its answers are sent
    /// from `serving`.
    pub(super) fn syncer(&self, serving: tokio::runtime::Handle) -> Syncer {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (tx, rx) = std::sync::mpsc::channel();
        let (path, thread) = (wal.clone(), serving.clone());
        let started = std::thread::Builder::new()
            .name("muster-sync".into())
            .spawn(move || syncs(Wal(path), thread, rx));
        match started {
            Ok(_) => Syncer::Thread(tx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the syncer's thread; the committer syncs each batch itself");
                Syncer::Inline(Wal(wal), serving)
            }
        }
    }

    /// Closes the connection and stops the checkpointer (the store is
    /// closing); later batches go through sqlx.
    pub(super) fn close(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::Closed;
        *self
            .closing
            .closed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        self.closing.wake.notify_all();
    }

    /// Opens the committer's connection and starts the checkpointer. When
    /// the checkpointer's thread cannot start, the committer checkpoints
    /// as SQLite does by default.
    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        // Synced by the [`Syncer`], not at each commit.
        let db = open(&self.path, "NORMAL")?;
        let (path, closing) = (self.path.clone(), self.closing.clone());
        let started = std::thread::Builder::new()
            .name("muster-checkpoint".into())
            .spawn(move || checkpoints(&path, &closing));
        match started {
            Ok(_) => db.execute_batch("PRAGMA wal_autocheckpoint = 0")?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the checkpointer's thread; the committer checkpoints")
            }
        }
        Ok(db)
    }

    /// Applies the batch's unchanged check-ins in one transaction. Returns
    /// them, with the ones [`plan`] can answer from what it read, each
    /// with its outcome for the caller to send; and the others, to be
    /// applied through sqlx. When anything fails here, all of them are
    /// among the others, and nothing of this transaction stays.
    pub(super) fn commit(&self, jobs: Vec<Job>, t: i64) -> (Answered, Vec<Job>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let State::Unopened = *state {
            match self.open() {
                Ok(db) => {
                    *state = State::Open {
                        db,
                        commits: 0,
                        memory: Memory::default(),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %self.path.display(), "the committer cannot open its own connection; check-ins go through the pool");
                    *state = State::Closed;
                }
            }
        }
        let State::Open {
            db,
            commits,
            memory,
        } = &mut *state
        else {
            return (Vec::new(), jobs);
        };
        let started = std::time::Instant::now();
        let outcomes = apply(db, memory, &jobs, t);
        *commits += 1;
        let checkpointer = self
            .closing
            .running
            .load(std::sync::atomic::Ordering::Relaxed);
        if *commits >= CATCH_UP && !checkpointer {
            if let Err(e) = checkpoint(db, "PASSIVE") {
                tracing::warn!(error = %e, "the committer's checkpoint failed");
            }
            *commits = 0;
        }
        tracing::debug!(
            check_ins = jobs.len(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "group commit (direct)"
        );
        let outcomes = match outcomes {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::debug!(error = %e, check_ins = jobs.len(), "the batch goes through sqlx");
                return (Vec::new(), jobs);
            }
        };
        let (mut answered, mut rest) = (Vec::with_capacity(jobs.len()), Vec::new());
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            match outcome {
                Some(outcome) => answered.push((job, outcome)),
                None => rest.push(job),
            }
        }
        (answered, rest)
    }
}

/// The store's database with the settings of its sqlx connections
/// ([`Store::open`]); the file is already in WAL mode.
///
/// But `synchronous` as given (the committer's is `NORMAL`, see
/// [`Syncer`]), and a smaller page cache, 16 MiB. When SQLite rebalances a B-tree it
/// parks a page for a moment at the number of the page that holds the
/// 1 GiB lock byte; at the end of the transaction, in a database smaller
/// than that, its page cache then drops every page past the database's
/// end by walking its whole hash table, one division per slot. The table
/// is as large as the most pages the cache ever held, and the check-in
/// log's appends fill any cache in a few minutes: with 64 MiB (16 384
/// slots) the walk took about 200 µs at most commits, 8 % of the
/// collector's CPU with kept-open agents; with 16 MiB, 2.3 %. The
/// committer reads little ([`Memory`]); what it misses comes from the
/// system's file cache.
fn open(path: &std::path::Path, synchronous: &str) -> rusqlite::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    db.busy_timeout(Duration::from_secs(30))?;
    db.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; PRAGMA cache_size = -16384;"
    ))?;
    Ok(db)
}

/// Copies the WAL back into the database while the committer writes,
/// until the store closes. Each pass copies what the committer committed
/// since the last (`PASSIVE`: it never waits for a reader or a writer).
fn checkpoints(path: &std::path::Path, closing: &Closing) {
    let db = match open(path, "FULL").and_then(|db| db.busy_timeout(RESTART_WAIT).map(|_| db)) {
        Ok(db) => db,
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "the checkpointer cannot open the database; the committer checkpoints alone");
            return;
        }
    };
    let running = |on| {
        closing
            .running
            .store(on, std::sync::atomic::Ordering::Relaxed)
    };
    running(true);
    let mut closed = closing.closed.lock().unwrap_or_else(|e| e.into_inner());
    while !*closed {
        drop(closed);
        let pass = checkpoint(&db, "PASSIVE").and_then(|frames| {
            if frames < RESTART_FRAMES {
                return Ok(());
            }
            // A second pass leaves only what was written during the first
            // for the one that holds the lock.
            checkpoint(&db, "PASSIVE")?;
            checkpoint(&db, "RESTART").map(drop)
        });
        match pass {
            Ok(()) => {}
            // The committer or a reader held on past RESTART_WAIT.
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy => {}
            Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
        }
        closed = closing.closed.lock().unwrap_or_else(|e| e.into_inner());
        closed = closing
            .wake
            .wait_timeout(closed, CHECKPOINT_EVERY)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    running(false);
}

/// One checkpoint in `mode`; the WAL's frames when it began.
fn checkpoint(db: &rusqlite::Connection, mode: &str) -> rusqlite::Result<i64> {
    db.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
}

/// Most hosts [`Memory`] keeps. Past it, it starts over. A host with four
/// sections takes about 800 bytes (allocator's rounding included), so this
/// is at most about 200 MB; 100 000 hosts take about 80 MB.
const MEMORY_HOSTS: usize = 1 << 18;

/// What the committer read or wrote of each host, kept between batches
/// so that an unchanged check-in is decided without reading its host:
/// three index lookups by a 36-character id, about a fifth of the
/// committer's time in `muster-bench-store`. It holds only while this
/// connection is the only one that wrote: SQLite's `data_version`
/// changes when any other connection commits (sqlx's batches, an
/// operator's revocation, a sweep, a restore), and then it is forgotten.
#[derive(Default)]
struct Memory {
    data_version: i64,
    hosts: HashMap<String, Remembered>,
}

struct Remembered {
    rowid: i64,
    /// Its row; the id is left empty (it is the key).
    known: Known,
    /// Its present detections.
    present: i64,
    /// Its sections' digests, `(name, digest)` sorted by name.
    digests: Box<[(Box<str>, Box<str>)]>,
}

/// The transaction: reads what [`plan`] needs, writes the unchanged
/// check-ins, commits. `None` for each check-in left to sqlx. When it
/// fails, `memory` is forgotten: it may hold what was rolled back.
fn apply(
    db: &rusqlite::Connection,
    memory: &mut Memory,
    jobs: &[Job],
    t: i64,
) -> rusqlite::Result<Vec<Option<CheckInOutcome>>> {
    db.execute_batch("BEGIN IMMEDIATE")?;
    let result = write_unchanged(db, memory, jobs, t).and_then(|outcomes| {
        db.execute_batch("COMMIT")?;
        Ok(outcomes)
    });
    if result.is_err() {
        memory.hosts.clear();
        if !db.is_autocommit() {
            let _ = db.execute_batch("ROLLBACK");
        }
    }
    result
}

/// Reads into `memory` each host it does not hold (after forgetting all
/// of them if another connection wrote), then plans and writes.
fn write_unchanged(
    db: &rusqlite::Connection,
    memory: &mut Memory,
    jobs: &[Job],
    t: i64,
) -> rusqlite::Result<Vec<Option<CheckInOutcome>>> {
    // Read inside the transaction, which holds the write lock: no other
    // connection commits until this one has.
    let version: i64 = db.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    if version != memory.data_version || memory.hosts.len() > MEMORY_HOSTS {
        memory.hosts.clear();
        memory.data_version = version;
    }
    {
        let mut host = db.prepare_cached(
            "SELECT last_sequence, revoked_at, superseded_by, hostname, rowid, \
             (SELECT COUNT(*) FROM detections WHERE host_id = ?1 AND removed_at IS NULL) \
             FROM hosts WHERE id = ?1",
        )?;
        let mut sections = db
            .prepare_cached("SELECT name, digest FROM sections WHERE host_id = ?1 ORDER BY name")?;
        for job in jobs {
            // A report with sections goes through sqlx whatever is stored.
            if !job.checkin.sections.is_empty() || memory.hosts.contains_key(&job.host_id) {
                continue;
            }
            let row = host
                .query_row([&job.host_id], |r| {
                    Ok(Remembered {
                        known: Known {
                            id: String::new(),
                            last_sequence: r.get(0)?,
                            revoked_at: r.get(1)?,
                            superseded_by: r.get(2)?,
                            hostname: r.get(3)?,
                        },
                        rowid: r.get(4)?,
                        present: r.get(5)?,
                        digests: Box::default(),
                    })
                })
                .optional()?;
            let Some(mut row) = row else {
                continue;
            };
            row.digests = sections
                .query_map([&job.host_id], |r| {
                    Ok((r.get::<_, String>(0)?.into(), r.get::<_, String>(1)?.into()))
                })?
                .collect::<rusqlite::Result<_>>()?;
            memory.hosts.insert(job.host_id.clone(), row);
        }
    }
    let steps = plan(jobs, |id| {
        memory.hosts.get(id).map(|h| (&h.known, &h.digests[..]))
    });
    let mut seen = db.prepare_cached(
        "UPDATE detections SET last_seen = ?2 WHERE host_id = ?1 AND removed_at IS NULL",
    )?;
    // What `unchanged_set!` sets, for one host.
    let mut host = db.prepare_cached(
        "UPDATE hosts SET os_name = ?2, os_version = ?3, kernel = ?4, arch = ?5, ips = ?6, \
         agent_version = ?7, last_checkin = ?8, last_sequence = ?9, catalog_version = ?10, \
         agent_detections = ?11, platform = ?12, hardware_id = ?13, stale_since = NULL, \
         superseded_by = NULL, superseded_at = NULL WHERE rowid = ?1",
    )?;
    let mut history = db.prepare_cached(
        "INSERT INTO checkins (host_id, sequence, received_at, scanned_at, sections_sent) \
         VALUES (?1, ?2, ?3, ?4, 0)",
    )?;
    steps
        .into_iter()
        .zip(jobs)
        .map(|(step, job)| match step {
            Step::Answer(outcome) => Ok(Some(outcome)),
            Step::Alone => Ok(None),
            Step::Unchanged => {
                // `plan` found it in memory.
                let Some(remembered) = memory.hosts.get_mut(&job.host_id) else {
                    return Ok(None);
                };
                let (c, f) = (&job.checkin, &job.checkin.facts);
                if remembered.present > 0 {
                    seen.execute(params![job.host_id, t])?;
                }
                host.execute(params![
                    remembered.rowid,
                    f.os_name,
                    f.os_version,
                    f.kernel,
                    f.arch,
                    json(&f.ips),
                    f.agent_version,
                    t,
                    c.sequence as i64,
                    c.catalog_version,
                    json(&c.agent_detections),
                    f.platform,
                    f.hardware_id,
                ])?;
                history.execute(params![job.host_id, c.sequence as i64, t, c.scanned_at])?;
                // Undone with the rest if the commit fails (`apply`).
                remembered.known.last_sequence = c.sequence as i64;
                Ok(Some(CheckInOutcome::Accepted {
                    detections: remembered.present as usize,
                    superseded: Vec::new(),
                    reappeared: None,
                }))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_catalog::{Item, ItemKind, Presence};
    use tokio::sync::oneshot;

    fn report(sequence: u64, hostname: &str, os_version: &str) -> CheckIn {
        let section = Section {
            items: vec![Item::new(
                ItemKind::Package,
                "bash",
                Presence::Present,
                "dpkg",
            )],
        };
        CheckIn {
            sequence,
            facts: HostFacts {
                hostname: hostname.into(),
                os_name: "Debian GNU/Linux".into(),
                os_version: os_version.into(),
                ..HostFacts::default()
            },
            digests: BTreeMap::from([("dpkg".to_string(), section.digest())]),
            sections: BTreeMap::from([("dpkg".to_string(), section)]),
            agent_detections: Vec::new(),
            catalog_version: String::new(),
            scanned_at: now(),
        }
    }

    fn job(
        host_id: &str,
        checkin: CheckIn,
    ) -> (Job, oneshot::Receiver<Result<CheckInOutcome, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            host_id: host_id.into(),
            checkin: Arc::new(checkin),
            catalog_digest: "catalog-1".into(),
            evaluate: Box::new(|_| Vec::new()),
            reply,
        };
        (job, answer)
    }

    #[tokio::test]
    async fn unchanged_check_ins_are_stored_here_and_the_others_left_to_sqlx() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("muster.db");
        let store = Store::open(&Database::Sqlite(path.clone()), true)
            .await
            .unwrap();
        let mut hosts = Vec::new();
        for n in 0..3 {
            let token = format!("token-{n}");
            store.create_token(&token, now() + 60, 1).await.unwrap();
            let facts = report(1, &format!("h{n}"), "12").facts;
            let (id, _) = store
                .enroll(&token, &facts, |id| {
                    Ok(crate::pki::Issued {
                        cert_pem: String::new(),
                        key_pem: String::new(),
                        serial: format!("serial-{id}"),
                        ca: "ca-1".into(),
                    })
                })
                .await
                .unwrap();
            let first = report(1, &format!("h{n}"), "12");
            let out = store
                .checkin(&id, Arc::new(first), "catalog-1", |_| Vec::new())
                .await
                .unwrap();
            assert!(matches!(out, CheckInOutcome::Accepted { .. }), "{out:?}");
            hosts.push(id);
        }
        let direct = Direct::new(path);
        // h0: unchanged, on a new system version; h1: a retry; h2: sections.
        let mut unchanged = report(2, "h0", "13");
        unchanged.sections.clear();
        let mut retry = report(1, "h1", "12");
        retry.sections.clear();
        let (j0, a0) = job(&hosts[0], unchanged);
        let (j1, a1) = job(&hosts[1], retry);
        let (j2, _a2) = job(&hosts[2], report(2, "h2", "12"));
        let (answered, rest) = direct.commit(vec![j0, j1, j2], now());
        assert_eq!(answered.len(), 2, "the unchanged report and the retry");
        for (job, outcome) in answered {
            job.answer(Ok(outcome));
        }

        assert_eq!(rest.len(), 1, "only the report with sections is left");
        assert_eq!(rest[0].host_id, hosts[2]);
        let out = a0.await.unwrap().unwrap();
        assert_eq!(
            out,
            CheckInOutcome::Accepted {
                detections: 0,
                superseded: Vec::new(),
                reappeared: None
            }
        );
        assert_eq!(a1.await.unwrap().unwrap(), CheckInOutcome::Duplicate);
        let (h0, _, _) = store.host(&hosts[0]).await.unwrap().unwrap();
        assert_eq!((h0.last_sequence, h0.facts.os_version.as_str()), (2, "13"));
        let (h2, _, _) = store.host(&hosts[2]).await.unwrap().unwrap();
        assert_eq!(h2.last_sequence, 1, "left for sqlx: not written here");
        let history: i64 = on_pool!(store, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM checkins WHERE host_id = $1")
                .bind(&hosts[0])
                .fetch_one(pool)
                .await
                .unwrap()
        });
        assert_eq!(history, 2, "the first report and the unchanged one");

        // Closed, it stores nothing and hands every check-in back.
        direct.close();
        let mut again = report(3, "h0", "13");
        again.sections.clear();
        let (j, _a) = job(&hosts[0], again);
        let (answered, rest) = direct.commit(vec![j], now());
        assert_eq!((answered.len(), rest.len()), (0, 1));
        store.close().await;
    }

    #[tokio::test]
    async fn the_syncer_answers_after_syncing_and_says_when_it_could_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("muster.db");
        let wal = dir.path().join("muster.db-wal");
        let mut syncer = Direct::new(path).syncer(tokio::runtime::Handle::current());

        // A WAL to sync, then none (every frame copied back): both answered
        // with the committer's outcome.
        std::fs::write(&wal, b"frames").unwrap();
        let (j, a) = job("h0", report(2, "h0", "12"));
        syncer.answer(vec![(j, Ok(CheckInOutcome::Duplicate))]);
        assert_eq!(a.await.unwrap().unwrap(), CheckInOutcome::Duplicate);
        std::fs::remove_file(&wal).unwrap();
        let (j, a) = job("h1", report(2, "h1", "12"));
        syncer.answer(vec![(j, Ok(CheckInOutcome::Duplicate))]);
        assert_eq!(a.await.unwrap().unwrap(), CheckInOutcome::Duplicate);

        // A WAL that cannot be synced: no check-in is acknowledged, and the
        // error names the file.
        std::fs::create_dir(&wal).unwrap();
        let (j0, a0) = job("h0", report(3, "h0", "12"));
        let (j1, a1) = job("h1", report(3, "h1", "12"));
        syncer.answer(vec![(j0, Ok(CheckInOutcome::Duplicate))]);
        syncer.answer(vec![(j1, Ok(CheckInOutcome::Duplicate))]);
        for a in [a0, a1] {
            let e = a.await.unwrap().unwrap_err().to_string();
            assert!(e.contains("could not be synced"), "{e}");
            assert!(e.contains(&wal.display().to_string()), "{e}");
        }
    }
}
