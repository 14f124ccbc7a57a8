//! The fleet store: SQLite (embedded, the default: one file in the data
//! folder) or PostgreSQL (several collectors sharing one database). Every
//! query is written once, in SQL both accept (`$n` placeholders, `ON
//! CONFLICT`), and compiled for each backend by [`on_pool!`]; the schema has
//! a migration folder per backend.

use muster_catalog::{Detection, HostFacts, Inventory, Section};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub use operator::{
    LAST_USED_RESOLUTION, OperatorAuth, OperatorToken, SessionAuth, TokenCreated, TokenRevoked,
    check_operator_name,
};
pub use outbox::{Cursor, ExporterStatus, OtherCa, OutboxEvent, RenewError};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database {path}: {source}")]
    Open {
        /// The file or URL (without its password).
        path: String,
        /// Why.
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A batch of check-ins (group commit) was not stored.
    #[error("the check-in was not stored: {0}")]
    Commit(String),
    /// Stored JSON did not parse (a bug or a damaged database).
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
}

/// Why an enrollment token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No such token.
    #[error("unknown enrollment token")]
    Unknown,
    /// Past its expiry.
    #[error("the enrollment token has expired")]
    Expired,
    /// Every use taken.
    #[error("the enrollment token has been used up")]
    UsedUp,
}

/// What an enrollment or check-in could not do.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing the certificate failed.
    #[error("cannot issue the certificate: {0}")]
    Sign(String),
}

/// One report from an agent, validated.
#[derive(Debug, Clone)]
pub struct CheckIn {
    /// The agent's sequence number.
    pub sequence: u64,
    /// Facts as reported.
    pub facts: HostFacts,
    /// Every section's digest.
    pub digests: BTreeMap<String, String>,
    /// The sections sent in full.
    pub sections: BTreeMap<String, Section>,
    /// The agent's own detections.
    pub agent_detections: Vec<Detection>,
    /// The agent's catalog version.
    pub catalog_version: String,
    /// When the inventory was taken.
    pub scanned_at: i64,
}

/// What happened to a check-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckInOutcome {
    /// Stored.
    Accepted {
        /// How many detections the collector's catalog found.
        detections: usize,
        /// Older hosts of the same machine that this report superseded.
        superseded: Vec<String>,
        /// This host had been superseded (by this host id) and reported
        /// again: two machines share a hostname. It is live again.
        reappeared: Option<String>,
    },
    /// Already stored earlier (a retry after a lost acknowledgement).
    Duplicate,
    /// The collector lacks these sections' base: nothing was stored.
    Missing(Vec<String>),
    /// The host is unknown (never enrolled, or removed).
    UnknownHost,
    /// The host was revoked (`muster hosts revoke`): nothing was stored.
    Revoked {
        /// When, Unix seconds.
        at: i64,
    },
}

/// Which hosts to list. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct HostFilter {
    /// Hosts with a present detection of one of these products (`None`:
    /// any host; `Some(empty)`: none).
    pub products: Option<Vec<String>>,
    /// With `products`: only detections in this state.
    pub state: Option<String>,
    /// Text in the OS name and version, without regard to case.
    pub os: Option<String>,
    /// Text in the hostname, without regard to case.
    pub name: Option<String>,
    /// Only hosts whose last report (or enrollment) is older than this.
    pub stale_before: Option<i64>,
    /// Also hosts superseded by a newer agent on the same machine.
    pub include_superseded: bool,
    /// The order of the listing, which the `after` position of
    /// [`Store::hosts_page`] follows.
    pub order: HostOrder,
}

/// How a host listing is sorted; ties are broken by host id, in the same
/// direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostOrder {
    /// By hostname, A to Z.
    #[default]
    Hostname,
    /// By hostname, Z to A.
    HostnameDesc,
    /// By the last check-in (never is oldest), oldest first.
    LastSeen,
    /// By the last check-in, newest first.
    LastSeenDesc,
}

impl HostOrder {
    /// Every order, by the name a query string gives it.
    pub const ALL: [(&'static str, HostOrder); 4] = [
        ("hostname", HostOrder::Hostname),
        ("-hostname", HostOrder::HostnameDesc),
        ("last_seen", HostOrder::LastSeen),
        ("-last_seen", HostOrder::LastSeenDesc),
    ];

    /// The order called `name` (`hostname`, `-hostname`, `last_seen`,
    /// `-last_seen`).
    pub fn parse(name: &str) -> Option<HostOrder> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, o)| *o)
    }

    /// Its name in a query string.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map_or("hostname", |(n, _)| n)
    }

    /// The value of `h` this order sorts by, as an `after` position holds
    /// it.
    pub fn key_of(self, h: &HostRow) -> String {
        match self {
            HostOrder::Hostname | HostOrder::HostnameDesc => h.facts.hostname.clone(),
            HostOrder::LastSeen | HostOrder::LastSeenDesc => {
                h.last_checkin.unwrap_or(0).to_string()
            }
        }
    }
}

/// What one re-evaluation batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reevaluated {
    /// Hosts evaluated.
    pub hosts: usize,
    /// Events written (changes of detections).
    pub events: usize,
    /// The last host id of the batch: where the next one starts.
    pub last: String,
}

/// The fleet's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetCounts {
    /// Every host.
    pub hosts: u64,
    /// Reported within the stale limit.
    pub reporting: u64,
    /// Reported, but not within the stale limit.
    pub stale: u64,
    /// Enrolled, never reported.
    pub never_reported: u64,
    /// Made by `muster import`.
    pub imported: u64,
    /// With a banned product present (in any state).
    pub with_banned: u64,
}

/// A host without its detections.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HostBrief {
    /// Host id.
    pub id: String,
    /// Hostname.
    pub hostname: String,
    /// OS name.
    pub os_name: String,
    /// OS version.
    pub os_version: String,
    /// Addresses, as JSON.
    pub ips: String,
    /// Enrollment (or first import).
    pub enrolled_at: i64,
    /// Last report.
    pub last_checkin: Option<i64>,
    /// Made by an import.
    pub imported: i64,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Stored as the host's newest state.
    Stored {
        /// The imported host.
        host_id: String,
        /// A new host (no earlier snapshot of that hostname).
        created: bool,
        /// Products the collector's catalog found.
        detections: usize,
    },
    /// The host has a newer report than this snapshot: nothing changed.
    Older {
        /// The imported host.
        host_id: String,
        /// Its last report's time.
        last_checkin: i64,
    },
}

/// A host as listed.
#[derive(Debug, Clone)]
pub struct HostRow {
    /// Host id (the agent id).
    pub id: String,
    /// Facts last reported.
    pub facts: HostFacts,
    /// When it enrolled.
    pub enrolled_at: i64,
    /// Last acknowledged check-in, if any.
    pub last_checkin: Option<i64>,
    /// Last acknowledged sequence.
    pub last_sequence: u64,
    /// Serial of its certificate (empty for an imported host).
    pub cert_serial: String,
    /// Created by `muster import` from a snapshot, not by an agent.
    pub imported: bool,
    /// When an operator revoked it (its reports are refused since).
    pub revoked_at: Option<i64>,
    /// The newer host that replaced it on the same machine, and when (its
    /// reports are refused since).
    pub superseded: Option<(String, i64)>,
    /// Detections by the collector's catalog.
    pub detections: Vec<DetectionRow>,
}

/// A stored detection.
#[derive(Debug, Clone)]
pub struct DetectionRow {
    /// The detection with its evidence.
    pub detection: Detection,
    /// First seen.
    pub first_seen: i64,
    /// Last seen.
    pub last_seen: i64,
    /// When it stopped being found; `None` while it is found.
    pub removed_at: Option<i64>,
}

/// What happened to a host: an entry of its timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Stable unique id (a UUID), for the SIEM to deduplicate on.
    pub id: String,
    /// The host.
    pub host_id: String,
    /// Unix seconds.
    pub at: i64,
    /// `enrolled`, `detected`, `state_changed` or `removed`.
    pub kind: String,
    /// The product, for detection events.
    pub product_id: String,
    /// The state now (for `removed`, the last state it had).
    pub state: String,
    /// The state before, for `state_changed`.
    pub previous_state: String,
    /// The product's version where known.
    pub version: String,
    /// The detection with its evidence, for detection events.
    pub detection: Option<Detection>,
    /// The campaign, for `campaign_missed`.
    pub campaign: String,
    /// The other host, for `superseded` (the newer) and `supersedes` (the
    /// older).
    pub related_host: String,
}

impl Event {
    pub(crate) fn new(host_id: &str, at: i64, kind: &str) -> Event {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            host_id: host_id.to_string(),
            at,
            kind: kind.to_string(),
            product_id: String::new(),
            state: String::new(),
            previous_state: String::new(),
            version: String::new(),
            detection: None,
            campaign: String::new(),
            related_host: String::new(),
        }
    }

    pub(crate) fn about(host_id: &str, at: i64, kind: &str, d: &Detection) -> Event {
        Event {
            product_id: d.product_id.clone(),
            state: d.state.as_str().to_string(),
            version: d.version.clone(),
            detection: Some(d.clone()),
            ..Event::new(host_id, at, kind)
        }
    }
}

/// Writes events inside the caller's transaction (`$tx`), so that a state
/// change and its events are stored together or not at all.
macro_rules! insert_events {
    ($tx:expr, $events:expr) => {
        for e in $events {
            sqlx::query(
                "INSERT INTO events (id, host_id, at, kind, product_id, state, previous_state, version, detection, \
                 recorded_at, campaign, related_host) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&e.id)
            .bind(&e.host_id)
            .bind(e.at)
            .bind(&e.kind)
            .bind(&e.product_id)
            .bind(&e.state)
            .bind(&e.previous_state)
            .bind(&e.version)
            .bind(e.detection.as_ref().map(json).unwrap_or_default())
            .bind(now())
            .bind(&e.campaign)
            .bind(&e.related_host)
            .execute(&mut *$tx)
            .await
            .map_err(StoreError::from)?;
        }
    };
}

/// Adds a host row inside transaction `$tx` (nothing when an imported
/// host of that hostname exists); the number of rows added.
macro_rules! insert_host {
    ($tx:expr, $id:expr, $facts:expr, $at:expr, $serial:expr, $imported:expr) => {{
        let facts: &HostFacts = $facts;
        sqlx::query(
            "INSERT INTO hosts (id, hostname, os_name, os_version, kernel, arch, ips, agent_version, \
             enrolled_at, cert_serial, platform, imported, hardware_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING",
        )
        .bind($id)
        .bind(&facts.hostname)
        .bind(&facts.os_name)
        .bind(&facts.os_version)
        .bind(&facts.kernel)
        .bind(&facts.arch)
        .bind(json(&facts.ips))
        .bind(&facts.agent_version)
        .bind($at)
        .bind($serial)
        .bind(&facts.platform)
        .bind($imported as i64)
        .bind(&facts.hardware_id)
        .execute(&mut *$tx)
        .await
        .map_err(StoreError::from)?
        .rows_affected()
    }};
}

/// The stored inventory of host `$host_id`, read inside transaction `$tx`;
/// the sections in `$sent` (just written) are taken from it, not parsed back.
macro_rules! load_inventory {
    ($tx:expr, $host_id:expr, $platform:expr, $sent:expr) => {{
        let sent: &BTreeMap<String, Section> = $sent;
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT name, items FROM sections WHERE host_id = $1")
                .bind($host_id)
                .fetch_all(&mut *$tx)
                .await?;
        let mut inv = Inventory {
            platform: muster_catalog::Platform::parse($platform),
            ..Inventory::default()
        };
        for (name, items) in rows {
            let section = match sent.get(&name) {
                Some(s) => s.clone(),
                None => Section {
                    items: parse(items.as_deref().unwrap_or("[]"))?,
                },
            };
            inv.sections.insert(name, section);
        }
        inv
    }};
}

/// Makes the stored detections of `$host_id` the `$found` ones as of time
/// `$t`, inside transaction `$tx`, with an event for every change: the one
/// path by which detections change (check-in, import, re-evaluation).
macro_rules! apply_detections {
    ($tx:expr, $host_id:expr, $t:expr, $found:expr) => {{
        let (host_id, t, found): (&str, i64, &[Detection]) = ($host_id, $t, $found);
        let rows: Vec<(String, String, Option<i64>, String)> = sqlx::query_as(
            "SELECT product_id, state, removed_at, detection FROM detections WHERE host_id = $1",
        )
        .bind(host_id)
        .fetch_all(&mut *$tx)
        .await?;
        let mut before = HashMap::new();
        let mut stored = HashMap::new();
        for (product, state, removed_at, detection) in rows {
            before.insert(product.clone(), (state, removed_at.is_some()));
            stored.insert(product, parse::<Detection>(&detection)?);
        }
        let events = detection_events(host_id, t, &before, found, &stored);
        write_detections!($tx, host_id, t, found, &events);
        events.len()
    }};
}

/// Writes the `$found` detections of `$host_id` and the `$events` that
/// [`detection_events`] derived for them, inside transaction `$tx`.
macro_rules! write_detections {
    ($tx:expr, $host_id:expr, $t:expr, $found:expr, $events:expr) => {{
        let (host_id, t, found, events): (&str, i64, &[Detection], &[Event]) =
            ($host_id, $t, $found, $events);
        for e in events.iter().filter(|e| e.kind == "removed") {
            sqlx::query(
                "UPDATE detections SET removed_at = $1 WHERE host_id = $2 AND product_id = $3",
            )
            .bind(t)
            .bind(host_id)
            .bind(&e.product_id)
            .execute(&mut *$tx)
            .await?;
        }
        for d in found {
            // Found again after a removal: a new first sighting.
            sqlx::query(
                "INSERT INTO detections (host_id, product_id, state, version, detection, first_seen, last_seen) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (host_id, product_id) DO UPDATE SET state = excluded.state, \
                 version = excluded.version, detection = excluded.detection, last_seen = excluded.last_seen, \
                 first_seen = CASE WHEN detections.removed_at IS NULL THEN detections.first_seen ELSE excluded.first_seen END, \
                 removed_at = NULL",
            )
            .bind(host_id)
            .bind(&d.product_id)
            .bind(d.state.as_str())
            .bind(&d.version)
            .bind(json(d))
            .bind(t)
            .execute(&mut *$tx)
            .await?;
        }
        insert_events!($tx, events);
    }};
}

/// The events that turn the stored detections (`before`: product id ->
/// (state, removed)) into the found ones: new or found again (`detected`),
/// another state (`state_changed`), no longer found (`removed`).
pub fn detection_events(
    host_id: &str,
    at: i64,
    before: &HashMap<String, (String, bool)>,
    found: &[Detection],
    stored: &HashMap<String, Detection>,
) -> Vec<Event> {
    let mut out = Vec::new();
    for d in found {
        match before.get(&d.product_id) {
            None | Some((_, true)) => out.push(Event::about(host_id, at, "detected", d)),
            Some((state, false)) if state != d.state.as_str() => out.push(Event {
                previous_state: state.clone(),
                ..Event::about(host_id, at, "state_changed", d)
            }),
            Some(_) => {}
        }
    }
    let mut gone: Vec<&String> = before
        .iter()
        .filter(|(id, (_, removed))| !removed && !found.iter().any(|d| &d.product_id == *id))
        .map(|(id, _)| id)
        .collect();
    gone.sort();
    for id in gone {
        let e = match stored.get(id) {
            Some(d) => Event::about(host_id, at, "removed", d),
            None => Event {
                product_id: id.clone(),
                ..Event::new(host_id, at, "removed")
            },
        };
        out.push(e);
    }
    out
}

/// A section as summarised for operators.
#[derive(Debug, Clone)]
pub struct SectionRow {
    /// Name.
    pub name: String,
    /// Digest.
    pub digest: String,
    /// Items.
    pub items: u32,
    /// Last change.
    pub updated_at: i64,
}

/// Unix seconds now.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The newest schema version this binary's SQLite migrations reach: a
/// database of a higher version was made by a newer collector.
pub fn newest_sqlite_schema() -> i64 {
    SQLITE_MIGRATIONS
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// Where the fleet is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL URL (`postgres://user@host/db`).
    Postgres(String),
}

impl Database {
    /// A `postgres://` or `postgresql://` URL, or else a path to an SQLite
    /// file (`sqlite://` prefix allowed).
    pub fn parse(s: &str) -> Database {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Database::Postgres(s.to_string())
        } else {
            Database::Sqlite(s.strip_prefix("sqlite://").unwrap_or(s).into())
        }
    }
}

impl std::fmt::Display for Database {
    /// The file, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => match url.split_once('@') {
                Some((creds, rest)) if creds.contains(':') && creds.matches(':').count() > 1 => {
                    let user = creds.rsplit_once(':').map(|(u, _)| u).unwrap_or(creds);
                    write!(f, "{user}:***@{rest}")
                }
                _ => f.write_str(url),
            },
        }
    }
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// Applies check-in `$c` of `$host_id` at time `$t` inside transaction
/// `$tx`; a future of its outcome. Nothing is written unless the outcome is
/// `Accepted`. The one body of [`Store::checkin`], the group commit and
/// imports.
macro_rules! checkin_in_tx {
    ($store:expr, $tx:expr, $host_id:expr, $c:expr, $catalog_digest:expr, $evaluate:expr, $t:expr) => {
        checkin_future(async {
            let (host_id, c, catalog_digest, t): (&str, &CheckIn, &str, i64) =
                ($host_id, $c, $catalog_digest, $t);
            let evaluate = $evaluate;
                let host: Option<CheckInHost> = sqlx::query_as($store.locked(
                    "SELECT last_sequence, revoked_at, superseded_by, hostname, imported, enrolled_at \
                     FROM hosts WHERE id = $1",
                    "SELECT last_sequence, revoked_at, superseded_by, hostname, imported, enrolled_at \
                     FROM hosts WHERE id = $1 FOR UPDATE",
                ))
                .bind(host_id)
                .fetch_optional(&mut *$tx)
                .await?;
                let Some(host) = host else {
                    return Ok(CheckInOutcome::UnknownHost);
                };
                if let Some(at) = host.revoked_at {
                    return Ok(CheckInOutcome::Revoked { at });
                }
                let last = host.last_sequence;
                if c.sequence <= last as u64 {
                    return Ok(CheckInOutcome::Duplicate);
                }
                let stored: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
                    "SELECT name, digest FROM sections WHERE host_id = $1",
                )
                .bind(host_id)
                .fetch_all(&mut *$tx)
                .await?
                .into_iter()
                .collect();
                let missing: Vec<String> = c
                    .digests
                    .iter()
                    .filter(|(name, digest)| {
                        !c.sections.contains_key(*name) && stored.get(*name) != Some(*digest)
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                if !missing.is_empty() {
                    return Ok(CheckInOutcome::Missing(missing));
                }
                for name in stored.keys().filter(|n| !c.digests.contains_key(*n)) {
                    sqlx::query("DELETE FROM sections WHERE host_id = $1 AND name = $2")
                        .bind(host_id)
                        .bind(name)
                        .execute(&mut *$tx)
                        .await?;
                }
                let changed =
                    !c.sections.is_empty() || stored.keys().any(|n| !c.digests.contains_key(n));
                for (name, section) in &c.sections {
                    sqlx::query(
                        "INSERT INTO sections (host_id, name, digest, items, item_count, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (host_id, name) DO UPDATE SET digest = excluded.digest, \
                         items = excluded.items, item_count = excluded.item_count, updated_at = excluded.updated_at",
                    )
                    .bind(host_id)
                    .bind(name)
                    // Checked against the section when the report was read.
                    .bind(match c.digests.get(name) {
                        Some(d) => d.clone(),
                        None => section.digest(),
                    })
                    .bind(json(&section.items))
                    .bind(section.items.len() as i64)
                    .bind(t)
                    .execute(&mut *$tx)
                    .await?;
                }
                let detections = if changed {
                    let inv = load_inventory!($tx, host_id, &c.facts.platform, &c.sections);
                    let found = evaluate(&inv);
                    apply_detections!($tx, host_id, t, &found);
                    sqlx::query("UPDATE hosts SET evaluated_with = $1 WHERE id = $2")
                        .bind(catalog_digest)
                        .bind(host_id)
                        .execute(&mut *$tx)
                        .await?;
                    found.len()
                } else {
                    // Unchanged: every present detection was seen again, and
                    // the rows touched are the count the agent is told.
                    let seen = sqlx::query(
                        "UPDATE detections SET last_seen = $1 WHERE host_id = $2 AND removed_at IS NULL",
                    )
                    .bind(t)
                    .bind(host_id)
                    .execute(&mut *$tx)
                    .await?;
                    seen.rows_affected() as usize
                };
                let f = &c.facts;
                // A machine re-imaged (or re-enrolled) gets a new agent: at its
                // first report, or when it takes another host's name, the
                // older live hosts of that machine are superseded by it.
                let mut superseded: Vec<String> = Vec::new();
                // A superseded host that reports again was not re-imaged: it is
                // another machine of the same name. It is live again, never
                // refused, and its timeline says so.
                if let Some(by) = &host.superseded_by {
                    insert_events!(
                        $tx,
                        &[Event {
                            related_host: by.clone(),
                            ..Event::new(host_id, t, "reappeared")
                        }]
                    );
                }
                if host.imported == 0
                    && !f.hostname.is_empty()
                    && (last == 0 || !host.hostname.eq_ignore_ascii_case(&f.hostname))
                {
                    superseded = sqlx::query_scalar(
                        "SELECT id FROM hosts WHERE lower(hostname) = lower($1) AND id <> $2 \
                         AND imported = 0 AND revoked_at IS NULL AND superseded_by IS NULL \
                         AND enrolled_at <= $3 AND (hardware_id = '' OR $4 = '' OR hardware_id = $4) \
                         ORDER BY id",
                    )
                    .bind(&f.hostname)
                    .bind(host_id)
                    .bind(host.enrolled_at)
                    .bind(&f.hardware_id)
                    .fetch_all(&mut *$tx)
                    .await?;
                    for old in &superseded {
                        sqlx::query(
                            "UPDATE hosts SET superseded_by = $1, superseded_at = $2 WHERE id = $3",
                        )
                        .bind(host_id)
                        .bind(t)
                        .bind(old)
                        .execute(&mut *$tx)
                        .await?;
                        let link = |id: &str, kind: &str, other: &str| Event {
                            related_host: other.to_string(),
                            ..Event::new(id, t, kind)
                        };
                        insert_events!(
                            $tx,
                            &[
                                link(old, "superseded", host_id),
                                link(host_id, "supersedes", old)
                            ]
                        );
                    }
                }
                sqlx::query(
                    "UPDATE hosts SET hostname = $1, os_name = $2, os_version = $3, kernel = $4, arch = $5, \
                     ips = $6, agent_version = $7, last_checkin = $8, last_sequence = $9, catalog_version = $10, \
                     agent_detections = $11, platform = $12, hardware_id = $13, stale_since = NULL, \
                     superseded_by = NULL, superseded_at = NULL WHERE id = $14",
                )
                .bind(&f.hostname)
                .bind(&f.os_name)
                .bind(&f.os_version)
                .bind(&f.kernel)
                .bind(&f.arch)
                .bind(json(&f.ips))
                .bind(&f.agent_version)
                .bind(t)
                .bind(c.sequence as i64)
                .bind(&c.catalog_version)
                .bind(json(&c.agent_detections))
                .bind(&f.platform)
                .bind(&f.hardware_id)
                .bind(host_id)
                .execute(&mut *$tx)
                .await?;
                sqlx::query(
                    "INSERT INTO checkins (host_id, sequence, received_at, scanned_at, sections_sent) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(host_id)
                .bind(c.sequence as i64)
                .bind(t)
                .bind(c.scanned_at)
                .bind(c.sections.len() as i64)
                .execute(&mut *$tx)
                .await?;
                Ok(CheckInOutcome::Accepted {
                    detections,
                    superseded,
                    reappeared: host.superseded_by,
                })
        })
    };
}

/// Names the output of [`checkin_in_tx!`]'s future, which `?` cannot infer.
fn checkin_future<F>(f: F) -> F
where
    F: std::future::Future<Output = Result<CheckInOutcome, StoreError>>,
{
    f
}

/// The fleet store.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The group-commit writers of check-ins; `None`: one transaction per
    /// check-in.
    commits: Option<Arc<commit::Committers>>,
}

/// Runs `$body` with `$p` bound to the store's pool, whichever backend it
/// is: the body is written once and compiled for both.
macro_rules! on_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("domain types serialise")
}

fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A host's facts, as columns of `hosts`.
#[derive(sqlx::FromRow)]
pub(crate) struct FactsRecord {
    hostname: String,
    os_name: String,
    os_version: String,
    kernel: String,
    arch: String,
    ips: String,
    agent_version: String,
    platform: String,
    hardware_id: String,
}

impl FactsRecord {
    pub(crate) fn into_facts(self) -> Result<HostFacts, StoreError> {
        Ok(HostFacts {
            hostname: self.hostname,
            os_name: self.os_name,
            os_version: self.os_version,
            kernel: self.kernel,
            arch: self.arch,
            ips: parse(&self.ips)?,
            agent_version: self.agent_version,
            platform: self.platform,
            hardware_id: self.hardware_id,
        })
    }
}

/// A `hosts` row.
#[derive(sqlx::FromRow)]
struct HostRecord {
    id: String,
    #[sqlx(flatten)]
    facts: FactsRecord,
    enrolled_at: i64,
    last_checkin: Option<i64>,
    last_sequence: i64,
    cert_serial: String,
    agent_detections: String,
    imported: i64,
    revoked_at: Option<i64>,
    superseded_by: Option<String>,
    superseded_at: Option<i64>,
}

impl HostRecord {
    fn into_row(self) -> Result<HostRow, StoreError> {
        Ok(HostRow {
            id: self.id,
            facts: self.facts.into_facts()?,
            enrolled_at: self.enrolled_at,
            last_checkin: self.last_checkin,
            last_sequence: self.last_sequence as u64,
            cert_serial: self.cert_serial,
            imported: self.imported != 0,
            revoked_at: self.revoked_at,
            superseded: self.superseded_by.zip(self.superseded_at),
            detections: Vec::new(),
        })
    }
}

/// What a check-in reads of its host first.
#[derive(sqlx::FromRow)]
struct CheckInHost {
    last_sequence: i64,
    revoked_at: Option<i64>,
    superseded_by: Option<String>,
    hostname: String,
    imported: i64,
    enrolled_at: i64,
}

/// A `detections` row.
#[derive(sqlx::FromRow)]
struct DetectionRecord {
    host_id: String,
    detection: String,
    first_seen: i64,
    last_seen: i64,
    removed_at: Option<i64>,
}

impl DetectionRecord {
    fn into_row(self) -> Result<DetectionRow, StoreError> {
        Ok(DetectionRow {
            detection: parse(&self.detection)?,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            removed_at: self.removed_at,
        })
    }
}

/// An `events` row.
#[derive(sqlx::FromRow)]
pub(crate) struct EventRecord {
    id: String,
    host_id: String,
    at: i64,
    kind: String,
    product_id: String,
    state: String,
    previous_state: String,
    version: String,
    detection: String,
    campaign: String,
    related_host: String,
}

impl EventRecord {
    pub(crate) fn into_event(self) -> Result<Event, StoreError> {
        Ok(Event {
            detection: if self.detection.is_empty() {
                None
            } else {
                Some(parse(&self.detection)?)
            },
            id: self.id,
            host_id: self.host_id,
            at: self.at,
            kind: self.kind,
            product_id: self.product_id,
            state: self.state,
            previous_state: self.previous_state,
            version: self.version,
            campaign: self.campaign,
            related_host: self.related_host,
        })
    }
}

/// A listing filtered by product reads the hosts of the products' present
/// detections and sorts them when there are at most this many, and walks
/// the hosts in hostname order otherwise. Measured at 100 000 hosts: 2 700
/// detections read and sorted in 8 ms, 15 000 in 45 ms; the walk took 1 ms
/// when one host in seven matched, and read every host (over 500 ms) when
/// none did.
const FEW_DETECTIONS: i64 = 10_000;

const HOST_COLUMNS: &str = "id, hostname, os_name, os_version, kernel, arch, ips, agent_version, platform, \
     hardware_id, enrolled_at, last_checkin, last_sequence, cert_serial, agent_detections, imported, \
     revoked_at, superseded_by, superseded_at";

impl Store {
    /// Opens (`create` = false) or creates the database and brings its
    /// schema to the newest version. A PostgreSQL database must exist
    /// (`create` only applies to an SQLite file).
    pub async fn open(db: &Database, create: bool) -> Result<Store, StoreError> {
        let open_error = |source| StoreError::Open {
            path: db.to_string(),
            source,
        };
        let mut writer = None;
        let mut direct = None;
        let pool = match db {
            Database::Sqlite(path) => {
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(create)
                    .journal_mode(SqliteJournalMode::Wal)
                    // Full: an acknowledged check-in survives even a power cut.
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(30))
                    // 32 MiB of pages per connection (2 MiB by default): a
                    // fleet's hosts and detections stay in memory instead of
                    // being read again for every batch of check-ins.
                    .pragma("cache_size", "-32768");
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .connect_with(opts.clone())
                    .await
                    .map_err(open_error)?;
                SQLITE_MIGRATIONS.run(&pool).await?;
                // The committer's own connection, for as long as the store
                // lives. In WAL mode a connection drops its whole page
                // cache when it finds that another one wrote since its last
                // transaction; batches taking any connection of the pool
                // found a cold cache each time and read the hosts' pages
                // again (a fifth of the collector's time with kept-open
                // agents). The writer's cache stays warm: nothing else
                // writes much.
                writer = Some(Pool::Sqlite(
                    // Opened at the first check-in: commands that write
                    // none never open it.
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                        .connect_lazy_with(opts.pragma("cache_size", "-65536")),
                ));
                direct = Some(direct::Direct::new(path.into()));
                Pool::Sqlite(pool)
            }
            Database::Postgres(url) => {
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await
                    .map_err(open_error)?;
                // Several collectors may start at once: the migrator
                // takes an advisory lock, so only one applies each step.
                POSTGRES_MIGRATIONS.run(&pool).await?;
                Pool::Postgres(pool)
            }
        };
        let writers = match pool {
            // SQLite has one writer at a time: one committer.
            Pool::Sqlite(_) => 1,
            // PostgreSQL commits in parallel; a few committers keep its
            // connections busy while each still batches.
            Pool::Postgres(_) => 4,
        };
        Ok(Store {
            pool,
            commits: Some(Arc::new(commit::Committers::new(writers, writer, direct))),
        })
    }

    /// This store with one transaction per check-in instead of group
    /// commit: the comparison in the benchmarks.
    pub fn without_group_commit(self) -> Store {
        Store {
            commits: None,
            ..self
        }
    }

    /// `BEGIN` for a write transaction: SQLite takes the write lock at once
    /// (a deferred transaction that reads, then writes, can fail to
    /// upgrade); PostgreSQL locks the rows it touches (`FOR UPDATE`).
    fn begin_sql(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "BEGIN IMMEDIATE",
            Pool::Postgres(_) => "BEGIN",
        }
    }

    /// The SQLite or the PostgreSQL form of a query that reads rows the
    /// transaction will change: PostgreSQL locks them (`FOR UPDATE`) so
    /// that two collectors cannot both act on what they read; SQLite's
    /// `BEGIN IMMEDIATE` already holds the only write lock.
    fn locked(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => sqlite,
            Pool::Postgres(_) => postgres,
        }
    }

    /// Which backend: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        if let Some(c) = &self.commits {
            c.close().await;
        }
        self.pool.close().await
    }

    /// The newest schema version applied.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        on_pool!(self, |pool| {
            let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one(pool)
                .await?;
            Ok(v.unwrap_or(0))
        })
    }

    /// Stores a new token (by its hash).
    pub async fn create_token(
        &self,
        token_hash: &str,
        expires_at: i64,
        uses: u32,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO enrollment_tokens (token_hash, created_at, expires_at, uses_left, uses_total) \
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(token_hash)
            .bind(now())
            .bind(expires_at)
            .bind(uses as i64)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Takes one use of the token and records the new host, in one
    /// transaction: a refused token or a failed signature creates nothing.
    pub async fn enroll<F>(
        &self,
        token_hash: &str,
        facts: &HostFacts,
        issue: F,
    ) -> Result<(String, crate::pki::Issued), EnrollError>
    where
        F: FnOnce(&str) -> Result<crate::pki::Issued, String>,
    {
        on_pool!(self, |pool| {
            let mut tx = pool
                .begin_with(self.begin_sql())
                .await
                .map_err(StoreError::from)?;
            let row: Option<(i64, i64, i64)> = sqlx::query_as(self.locked(
                "SELECT id, expires_at, uses_left FROM enrollment_tokens WHERE token_hash = $1",
                "SELECT id, expires_at, uses_left FROM enrollment_tokens WHERE token_hash = $1 FOR UPDATE",
            ))
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            let Some(row) = row else {
                return Err(TokenError::Unknown.into());
            };
            let (token_id, expires_at, uses_left) = row;
            if expires_at <= now() {
                return Err(TokenError::Expired.into());
            }
            if uses_left <= 0 {
                return Err(TokenError::UsedUp.into());
            }
            let id = uuid::Uuid::new_v4().to_string();
            let issued = issue(&id).map_err(EnrollError::Sign)?;
            sqlx::query("UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = $1")
                .bind(token_id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            insert_host!(tx, &id, facts, now(), &issued.serial, 0);
            sqlx::query("UPDATE hosts SET cert_ca = $1 WHERE id = $2")
                .bind(&issued.ca)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            insert_events!(tx, &[Event::new(&id, now(), "enrolled")]);
            tx.commit().await.map_err(StoreError::from)?;
            Ok((id, issued))
        })
    }

    /// Applies a check-in atomically. Sections not sent must match what is
    /// stored; otherwise nothing changes and the missing names come back.
    /// `evaluate` runs on the merged inventory when any section changed.
    ///
    /// Check-ins arriving together share one transaction (group commit,
    /// [`commit`]): one synced commit for many reports, each inside its
    /// own savepoint so that one failing leaves the others whole. The
    /// outcome is returned once the batch is durable.
    pub async fn checkin<F>(
        &self,
        host_id: &str,
        c: Arc<CheckIn>,
        catalog_digest: &str,
        evaluate: F,
    ) -> Result<CheckInOutcome, StoreError>
    where
        F: Fn(&Inventory) -> Vec<Detection> + Send + Sync + 'static,
    {
        match &self.commits {
            Some(commits) => {
                commits
                    .submit(self, host_id, c, catalog_digest, Box::new(evaluate))
                    .await
            }
            None => {
                self.checkin_at(host_id, &c, catalog_digest, evaluate, now())
                    .await
            }
        }
    }

    /// One check-in in a transaction of its own, as of time `t` (an
    /// import's snapshot time). Public for the benchmarks, which seed a
    /// fleet's history (check-ins weeks ago) through the path every report
    /// takes; the collector itself stores check-ins as of now.
    pub async fn checkin_at<F>(
        &self,
        host_id: &str,
        c: &CheckIn,
        catalog_digest: &str,
        evaluate: F,
        t: i64,
    ) -> Result<CheckInOutcome, StoreError>
    where
        F: FnOnce(&Inventory) -> Vec<Detection>,
    {
        on_pool!(self, |pool| {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let outcome = checkin_in_tx!(self, tx, host_id, c, catalog_digest, evaluate, t).await?;
            if matches!(outcome, CheckInOutcome::Accepted { .. }) {
                tx.commit().await?;
            }
            Ok(outcome)
        })
    }

    /// One host, its sections and its agent's own detections. Its
    /// detections include those no longer found (with `removed_at`).
    pub async fn host(
        &self,
        id: &str,
    ) -> Result<Option<(HostRow, Vec<SectionRow>, Vec<Detection>)>, StoreError> {
        on_pool!(self, |pool| {
            let row: Option<HostRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {HOST_COLUMNS} FROM hosts WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let agent: Vec<Detection> = parse(&row.agent_detections)?;
            let mut host = row.into_row()?;
            let dets: Vec<DetectionRecord> = sqlx::query_as(
                "SELECT host_id, detection, first_seen, last_seen, removed_at FROM detections \
                 WHERE host_id = $1 ORDER BY product_id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            for d in dets {
                host.detections.push(d.into_row()?);
            }
            let sections = sqlx::query_as::<_, (String, String, i64, i64)>(
                "SELECT name, digest, item_count, updated_at FROM sections WHERE host_id = $1 ORDER BY name",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|(name, digest, items, updated_at)| SectionRow {
                name,
                digest,
                items: items as u32,
                updated_at,
            })
            .collect();
            Ok(Some((host, sections, agent)))
        })
    }

    /// A host's timeline, oldest first: at most `limit` of its newest events.
    pub async fn timeline(&self, host_id: &str, limit: u32) -> Result<Vec<Event>, StoreError> {
        on_pool!(self, |pool| {
            let rows: Vec<EventRecord> = sqlx::query_as(
                "SELECT id, host_id, at, kind, product_id, state, previous_state, version, detection, campaign, related_host \
                 FROM (SELECT * FROM events WHERE host_id = $1 ORDER BY seq DESC LIMIT $2) AS newest \
                 ORDER BY seq",
            )
            .bind(host_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.into_iter().map(EventRecord::into_event).collect()
        })
    }

    /// Creates or updates the imported host named by the snapshot's
    /// hostname (one per name, matched without regard to case) with the
    /// whole inventory of a snapshot taken at `collected_at`, which becomes
    /// its check-in time. A snapshot older than the host's last report is
    /// refused and changes nothing.
    pub async fn import<F>(
        &self,
        facts: &HostFacts,
        sections: BTreeMap<String, Section>,
        collected_at: i64,
        catalog_digest: &str,
        evaluate: F,
    ) -> Result<ImportOutcome, StoreError>
    where
        F: FnOnce(&Inventory) -> Vec<Detection>,
    {
        let (host_id, created, last_sequence, last_checkin) = on_pool!(self, |pool| {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let id = uuid::Uuid::new_v4().to_string();
            let inserted = insert_host!(tx, &id, facts, collected_at, "", 1) == 1;
            if inserted {
                insert_events!(tx, &[Event::new(&id, collected_at, "imported")]);
            }
            let (host_id, seq, last): (String, i64, Option<i64>) = sqlx::query_as(
                "SELECT id, last_sequence, last_checkin FROM hosts \
                 WHERE imported = 1 AND lower(hostname) = lower($1)",
            )
            .bind(&facts.hostname)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            (host_id, inserted, seq, last)
        });
        if let Some(last) = last_checkin
            && collected_at < last
        {
            return Ok(ImportOutcome::Older {
                host_id,
                last_checkin: last,
            });
        }
        let c = CheckIn {
            sequence: last_sequence as u64 + 1,
            facts: facts.clone(),
            digests: sections
                .iter()
                .map(|(n, s)| (n.clone(), s.digest()))
                .collect(),
            sections,
            agent_detections: Vec::new(),
            catalog_version: String::new(),
            scanned_at: collected_at,
        };
        match self
            .checkin_at(&host_id, &c, catalog_digest, evaluate, collected_at)
            .await?
        {
            CheckInOutcome::Accepted { detections, .. } => Ok(ImportOutcome::Stored {
                host_id,
                created,
                detections,
            }),
            other => Err(StoreError::Corrupt(format!(
                "importing into host {host_id}: {other:?}"
            ))),
        }
    }

    /// One page of the hosts that `filter` selects, by hostname then id,
    /// after the host `after` (hostname, id), with their present
    /// detections: at most `limit` hosts, so a large fleet is read (and
    /// sent) a page at a time.
    pub async fn hosts_page(
        &self,
        filter: &HostFilter,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<HostRow>, StoreError> {
        if filter.products.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        on_pool!(self, |pool| {
            let mut q =
                sqlx::QueryBuilder::new(format!("SELECT {HOST_COLUMNS} FROM hosts WHERE 1 = 1"));
            let (column, cmp, dir) = match filter.order {
                HostOrder::Hostname => ("hostname", ">", ""),
                HostOrder::HostnameDesc => ("hostname", "<", " DESC"),
                HostOrder::LastSeen => ("COALESCE(last_checkin, 0)", ">", ""),
                HostOrder::LastSeenDesc => ("COALESCE(last_checkin, 0)", "<", " DESC"),
            };
            if let Some((key, id)) = after {
                q.push(format_args!(" AND ({column} {cmp} "));
                match filter.order {
                    HostOrder::Hostname | HostOrder::HostnameDesc => {
                        q.push_bind(key).push(format_args!(" OR ({column} = "));
                        q.push_bind(key);
                    }
                    HostOrder::LastSeen | HostOrder::LastSeenDesc => {
                        let t: i64 = key.parse().map_err(|_| {
                            StoreError::Corrupt(format!(
                                "a host listing's position {key:?} is not a time"
                            ))
                        })?;
                        q.push_bind(t).push(format_args!(" OR ({column} = "));
                        q.push_bind(t);
                    }
                }
                q.push(format_args!(" AND id {cmp} "))
                    .push_bind(id)
                    .push("))");
            }
            if !filter.include_superseded {
                q.push(" AND superseded_by IS NULL");
            }
            if let Some(name) = &filter.name {
                q.push(" AND lower(hostname) LIKE ")
                    .push_bind(like_pattern(name))
                    .push(" ESCAPE '\\'");
            }
            if let Some(os) = &filter.os {
                q.push(" AND lower(os_name || ' ' || os_version) LIKE ")
                    .push_bind(like_pattern(os))
                    .push(" ESCAPE '\\'");
            }
            if let Some(t) = filter.stale_before {
                q.push(" AND COALESCE(last_checkin, enrolled_at) < ")
                    .push_bind(t);
            }
            if let Some(products) = &filter.products {
                // Two ways to the same rows. Few present detections of these
                // products: read those hosts and sort them. Many: walk the
                // hosts in hostname order, checking each, until the page is
                // full. Either alone is slow at the other end (a product on
                // no host made the walk read every host).
                let mut n = sqlx::QueryBuilder::new(
                    "SELECT COUNT(*) FROM detections WHERE removed_at IS NULL AND product_id IN (",
                );
                let mut list = n.separated(", ");
                for p in products {
                    list.push_bind(p.as_str());
                }
                n.push(")");
                if let Some(state) = &filter.state {
                    n.push(" AND state = ").push_bind(state.as_str());
                }
                let found: i64 = n.build_query_scalar().fetch_one(pool).await?;
                if found <= FEW_DETECTIONS {
                    q.push(
                        " AND id IN (SELECT d.host_id FROM detections d \
                         WHERE d.removed_at IS NULL AND d.product_id IN (",
                    );
                } else {
                    q.push(
                        " AND EXISTS (SELECT 1 FROM detections d WHERE d.host_id = hosts.id \
                         AND d.removed_at IS NULL AND d.product_id IN (",
                    );
                }
                let mut list = q.separated(", ");
                for p in products {
                    list.push_bind(p.as_str());
                }
                q.push(")");
                if let Some(state) = &filter.state {
                    q.push(" AND d.state = ").push_bind(state.as_str());
                }
                q.push(")");
            }
            q.push(format_args!(" ORDER BY {column}{dir}, id{dir} LIMIT "))
                .push_bind(i64::from(limit));
            let rows: Vec<HostRecord> = q.build_query_as().fetch_all(pool).await?;
            let mut hosts = Vec::with_capacity(rows.len());
            let mut index = HashMap::new();
            for row in rows {
                let h = row.into_row()?;
                index.insert(h.id.clone(), hosts.len());
                hosts.push(h);
            }
            if hosts.is_empty() {
                return Ok(hosts);
            }
            let mut q = sqlx::QueryBuilder::new(
                "SELECT host_id, detection, first_seen, last_seen, removed_at FROM detections \
                 WHERE removed_at IS NULL AND host_id IN (",
            );
            let mut list = q.separated(", ");
            for h in &hosts {
                list.push_bind(h.id.as_str());
            }
            q.push(") ORDER BY product_id");
            let dets: Vec<DetectionRecord> = q.build_query_as().fetch_all(pool).await?;
            for d in dets {
                if let Some(&i) = index.get(&d.host_id) {
                    hosts[i].detections.push(d.into_row()?);
                }
            }
            Ok(hosts)
        })
    }

    /// Replaces the asset list with `assets`, in one transaction.
    pub async fn replace_assets(&self, assets: &[crate::assets::Asset]) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            sqlx::query("DELETE FROM assets").execute(&mut *tx).await?;
            let t = now();
            for a in assets {
                sqlx::query(
                    "INSERT INTO assets (hostname, ip, owner, business_unit, line, imported_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&a.hostname)
                .bind(&a.ip)
                .bind(&a.owner)
                .bind(&a.business_unit)
                .bind(a.line as i64)
                .bind(t)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The asset list, in no particular order (coverage sorts it): read in
    /// the table's own order, without a lookup per row through the
    /// hostname index, which took most of the time at 100 000 assets.
    pub async fn assets(&self) -> Result<Vec<crate::assets::Asset>, StoreError> {
        on_pool!(self, |pool| {
            let rows: Vec<(String, String, String, String, i64)> =
                sqlx::query_as("SELECT hostname, ip, owner, business_unit, line FROM assets")
                    .fetch_all(pool)
                    .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(hostname, ip, owner, business_unit, line)| crate::assets::Asset {
                        hostname,
                        ip,
                        owner,
                        business_unit,
                        line: line as usize,
                    },
                )
                .collect())
        })
    }

    /// Every host without its detections (but those superseded), in no
    /// particular order: what coverage and campaign status need (both
    /// sort what they report), light enough for a whole fleet. Read in the
    /// table's own order: through the hostname index it took three times
    /// as long at 100 000 hosts.
    pub async fn host_list(&self) -> Result<Vec<HostBrief>, StoreError> {
        on_pool!(self, |pool| {
            let rows: Vec<HostBrief> = sqlx::query_as(
                "SELECT id, hostname, os_name, os_version, ips, enrolled_at, last_checkin, imported \
                 FROM hosts WHERE superseded_by IS NULL",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows)
        })
    }

    /// Stores a new campaign; `false` when one of that name exists (and
    /// nothing changed).
    pub async fn create_campaign(&self, c: &crate::campaign::Campaign) -> Result<bool, StoreError> {
        on_pool!(self, |pool| {
            let n = sqlx::query(
                "INSERT INTO campaigns (name, policy, issued, identify_by, remove_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&c.name)
            .bind(&c.policy)
            .bind(c.issued)
            .bind(c.identify_by)
            .bind(c.remove_by)
            .bind(now())
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    /// The campaign of that name, if one was started.
    pub async fn campaign(
        &self,
        name: &str,
    ) -> Result<Option<crate::campaign::Campaign>, StoreError> {
        on_pool!(self, |pool| {
            let row: Option<(String, String, i64, i64, i64)> = sqlx::query_as(
                "SELECT name, policy, issued, identify_by, remove_by FROM campaigns WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|(name, policy, issued, identify_by, remove_by)| {
                crate::campaign::Campaign {
                    name,
                    policy,
                    issued,
                    identify_by,
                    remove_by,
                }
            }))
        })
    }

    /// Every episode of these products on every host, from the timelines:
    /// found (`detected`) until `removed` (or until the host was
    /// superseded), with the state it last had; an open episode carries the
    /// evidence of the present detection.
    pub async fn episodes(
        &self,
        products: &[String],
    ) -> Result<Vec<crate::campaign::Episode>, StoreError> {
        self.read_episodes(products, true).await
    }

    /// The same episodes without their product names, version and
    /// evidence: only when each began and ended, for a chart. The
    /// detections (JSON) are not read, which at 100 000 hosts is most of
    /// the time [`Store::episodes`] takes.
    pub async fn episode_spans(
        &self,
        products: &[String],
    ) -> Result<Vec<crate::campaign::Episode>, StoreError> {
        self.read_episodes(products, false).await
    }

    async fn read_episodes(
        &self,
        products: &[String],
        detail: bool,
    ) -> Result<Vec<crate::campaign::Episode>, StoreError> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let detection = if detail {
            "CASE WHEN kind = 'removed' THEN '' ELSE detection END"
        } else {
            "''"
        };
        on_pool!(self, |pool| {
            let mut q = sqlx::QueryBuilder::new(format!(
                "SELECT id, host_id, at, kind, product_id, state, previous_state, version, \
                 {detection} AS detection, campaign, related_host \
                 FROM events WHERE product_id IN ("
            ));
            let mut list = q.separated(", ");
            for p in products {
                list.push_bind(p.as_str());
            }
            // Only the kinds read below; a removal's detection is not read,
            // so it is not sent or parsed.
            q.push(
                ") AND kind IN ('detected', 'state_changed', 'removed') \
                 ORDER BY host_id, product_id, seq",
            );
            let rows: Vec<EventRecord> = q.build_query_as().fetch_all(pool).await?;
            let mut out: Vec<crate::campaign::Episode> = Vec::new();
            let mut open: HashMap<(String, String), usize> = HashMap::new();
            for r in rows {
                let e = r.into_event()?;
                let key = (e.host_id.clone(), e.product_id.clone());
                let evidence = |d: &Option<Detection>| -> Vec<crate::campaign::Evidence> {
                    d.iter()
                        .flat_map(|d| &d.evidence)
                        .map(|ev| crate::campaign::Evidence {
                            kind: ev.kind.clone(),
                            value: ev.matched.clone(),
                            location: ev.location.clone(),
                        })
                        .collect()
                };
                match e.kind.as_str() {
                    "detected" => {
                        let (product, vendor) = e
                            .detection
                            .as_ref()
                            .map(|d| (d.product.clone(), d.vendor.clone()))
                            .unwrap_or_default();
                        open.insert(key, out.len());
                        out.push(crate::campaign::Episode {
                            host_id: e.host_id.clone(),
                            product_id: e.product_id.clone(),
                            product,
                            vendor,
                            state: e.state.clone(),
                            version: e.version.clone(),
                            from: e.at,
                            to: None,
                            evidence: evidence(&e.detection),
                        });
                    }
                    "state_changed" => {
                        if let Some(&i) = open.get(&key) {
                            out[i].state = e.state.clone();
                            out[i].version = e.version.clone();
                            out[i].evidence = evidence(&e.detection);
                        }
                    }
                    "removed" => {
                        if let Some(i) = open.remove(&key) {
                            out[i].to = Some(e.at);
                        }
                    }
                    _ => {}
                }
            }
            // A superseded host's machine was re-installed: what it still
            // had then ended there (its new host reports what is left).
            if !open.is_empty() {
                let ended: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
                    "SELECT id, superseded_at FROM hosts WHERE superseded_at IS NOT NULL",
                )
                .fetch_all(pool)
                .await?
                .into_iter()
                .collect();
                for ((host, _), i) in open {
                    if let Some(&at) = ended.get(&host) {
                        out[i].to = Some(at);
                    }
                }
            }
            Ok(out)
        })
    }

    /// How many hosts with an inventory were last evaluated with another
    /// catalog than the one whose digest is given.
    pub async fn pending_evaluation(&self, catalog_digest: &str) -> Result<u64, StoreError> {
        on_pool!(self, |pool| {
            // `<>` as two ranges: the index on `evaluated_with` finds the few
            // (usually none) instead of a pass over every host.
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM hosts WHERE (evaluated_with < $1 OR evaluated_with > $1) \
                 AND last_checkin IS NOT NULL",
            )
            .bind(catalog_digest)
            .fetch_one(pool)
            .await?;
            Ok(n as u64)
        })
    }

    /// Re-evaluates up to `limit` stored inventories last evaluated with
    /// another catalog, in one transaction, recording every change as an
    /// event. The batch's inventories and detections are read with one
    /// query each, and only hosts whose detections change are written. On
    /// PostgreSQL the hosts are locked and locked ones skipped, so
    /// collectors (or workers) sharing the database split the work instead
    /// of doing it twice. Hosts are taken in id order after `after` (`""`
    /// to start); none left: 0 hosts.
    pub async fn reevaluate<F>(
        &self,
        catalog_digest: &str,
        after: &str,
        limit: u32,
        evaluate: F,
    ) -> Result<Reevaluated, StoreError>
    where
        F: Fn(&Inventory) -> Vec<Detection>,
    {
        on_pool!(self, |pool| {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            // From `after` on (host ids in order), so each batch reads only
            // its own rows rather than skipping every host done before.
            let hosts: Vec<(String, String)> = sqlx::query_as(self.locked(
                "SELECT id, platform FROM hosts WHERE id > $3 AND evaluated_with <> $1 \
                 AND last_checkin IS NOT NULL ORDER BY id LIMIT $2",
                "SELECT id, platform FROM hosts WHERE id > $3 AND evaluated_with <> $1 \
                 AND last_checkin IS NOT NULL ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
            ))
            .bind(catalog_digest)
            .bind(i64::from(limit))
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = hosts.last().map(|(id, _)| id.clone()) else {
                return Ok(Reevaluated::default());
            };
            let in_batch = |sql: &str| {
                let mut q = sqlx::QueryBuilder::new(sql);
                let mut list = q.separated(", ");
                for (id, _) in &hosts {
                    list.push_bind(id.as_str());
                }
                q.push(")");
                q
            };
            let mut inventories: HashMap<String, Inventory> = hosts
                .iter()
                .map(|(id, platform)| {
                    let inv = Inventory {
                        platform: muster_catalog::Platform::parse(platform),
                        ..Inventory::default()
                    };
                    (id.clone(), inv)
                })
                .collect();
            let sections: Vec<(String, String, String)> =
                in_batch("SELECT host_id, name, items FROM sections WHERE host_id IN (")
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await?;
            for (host, name, items) in sections {
                if let Some(inv) = inventories.get_mut(&host) {
                    inv.sections.insert(
                        name,
                        Section {
                            items: parse(&items)?,
                        },
                    );
                }
            }
            let mut before: HashMap<String, HashMap<String, (String, bool)>> = HashMap::new();
            let mut stored: HashMap<String, HashMap<String, (String, Detection)>> = HashMap::new();
            let rows: Vec<(String, String, String, Option<i64>, String)> = in_batch(
                "SELECT host_id, product_id, state, removed_at, detection FROM detections WHERE host_id IN (",
            )
            .build_query_as()
            .fetch_all(&mut *tx)
            .await?;
            for (host, product, state, removed_at, detection) in rows {
                before
                    .entry(host.clone())
                    .or_default()
                    .insert(product.clone(), (state, removed_at.is_some()));
                let d = parse::<Detection>(&detection)?;
                stored
                    .entry(host)
                    .or_default()
                    .insert(product, (detection, d));
            }
            let t = now();
            let mut events_written = 0;
            let (none_before, none_stored) = (HashMap::new(), HashMap::new());
            for (id, _) in &hosts {
                let found = evaluate(&inventories[id]);
                let before = before.get(id).unwrap_or(&none_before);
                let stored: &HashMap<String, (String, Detection)> =
                    stored.get(id).unwrap_or(&none_stored);
                let as_detections: HashMap<String, Detection> = stored
                    .iter()
                    .map(|(p, (_, d))| (p.clone(), d.clone()))
                    .collect();
                let events = detection_events(id, t, before, &found, &as_detections);
                // Unchanged: every found detection stored as it is, present.
                let same = events.is_empty()
                    && found.iter().all(|d| {
                        stored
                            .get(&d.product_id)
                            .is_some_and(|(text, _)| *text == json(d))
                    });
                if !same {
                    write_detections!(tx, id.as_str(), t, &found, &events);
                    events_written += events.len();
                }
            }
            let mut q = sqlx::QueryBuilder::new("UPDATE hosts SET evaluated_with = ");
            q.push_bind(catalog_digest).push(" WHERE id IN (");
            let mut list = q.separated(", ");
            for (id, _) in &hosts {
                list.push_bind(id.as_str());
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Reevaluated {
                hosts: hosts.len(),
                events: events_written,
                last,
            })
        })
    }

    /// The fleet's counts, by SQL (no host is loaded): hosts, reporting,
    /// stale, never reported, imported, and hosts where one of `banned` is
    /// present.
    pub async fn fleet_counts(
        &self,
        stale_before: i64,
        banned: &[String],
    ) -> Result<FleetCounts, StoreError> {
        on_pool!(self, |pool| {
            let (hosts, never, stale, imported): (i64, i64, i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), \
                 COALESCE(SUM(CASE WHEN last_checkin IS NULL THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN last_checkin < $1 THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN imported = 1 THEN 1 ELSE 0 END), 0) FROM hosts \
                 WHERE superseded_by IS NULL",
            )
            .bind(stale_before)
            .fetch_one(pool)
            .await?;
            let with_banned: i64 = if banned.is_empty() {
                0
            } else {
                // From the products' present detections, less the few
                // superseded hosts (`detections_present`,
                // `hosts_superseded`): never a pass over every host.
                let mut q = sqlx::QueryBuilder::new(
                    "SELECT COUNT(DISTINCT host_id) FROM detections WHERE removed_at IS NULL \
                     AND host_id NOT IN (SELECT id FROM hosts WHERE superseded_by IS NOT NULL) AND product_id IN (",
                );
                let mut list = q.separated(", ");
                for p in banned {
                    list.push_bind(p.as_str());
                }
                q.push(")");
                q.build_query_scalar().fetch_one(pool).await?
            };
            Ok(FleetCounts {
                hosts: hosts as u64,
                reporting: (hosts - never - stale) as u64,
                stale: stale as u64,
                never_reported: never as u64,
                imported: imported as u64,
                with_banned: with_banned as u64,
            })
        })
    }

    /// Hosts per present product.
    pub async fn product_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        on_pool!(self, |pool| {
            // Every detection's host exists (a foreign key), so "not among
            // the superseded" is "among the live": read from the present
            // detections' index with a short exclusion list.
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT product_id, COUNT(*) FROM detections WHERE removed_at IS NULL \
                 AND host_id NOT IN (SELECT id FROM hosts WHERE superseded_by IS NOT NULL) \
                 GROUP BY product_id ORDER BY product_id",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().map(|(p, n)| (p, n as u64)).collect())
        })
    }
}

/// A `LIKE ... ESCAPE '\'` pattern finding `text` anywhere, in lower case,
/// with `%` and `_` in it taken literally.
fn like_pattern(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

// After the macros, which they use.
mod commit;
mod direct;
mod operator;
mod outbox;
