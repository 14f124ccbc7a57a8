//! The outbox: the events table read in order by the SIEM exporters, each
//! from its own persisted cursor, and the stale-host and campaign sweeps
//! that add events of their own.
//!
//! Order. SQLite has one writer, so `seq` order is commit order. On
//! PostgreSQL a sequence value is taken at insert but becomes visible at
//! commit, so reading `seq > cursor` could pass over an event whose
//! transaction commits late. Each event therefore records its writing
//! transaction (`xact`), and exporters read only events of transactions
//! older than every transaction still running (the snapshot's `xmin`), in
//! `(xact, seq)` order: no transaction that commits later can sort before
//! what was read.
//!
//! Ownership. An exporter is driven by one collector at a time: the one
//! holding its lease (`owner`, `lease_until`), renewed while it works and
//! taken over by another collector when it lapses. So collectors sharing a
//! PostgreSQL database send each event once per exporter in normal
//! operation, and a collector that dies hands its exporters on, from their
//! last confirmed cursor.

use super::*;

/// A position in the outbox: events after it have not been delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// The writing transaction (PostgreSQL; 0 on SQLite).
    pub xact: i64,
    /// The event's sequence number.
    pub seq: i64,
}

/// An event as an exporter reads it, with its host's facts.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// Its position.
    pub cursor: Cursor,
    /// When the collector wrote it.
    pub recorded_at: i64,
    /// The event.
    pub event: Event,
    /// The host's facts as last reported.
    pub host: HostFacts,
}

/// An exporter's state, for `muster siem status` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterStatus {
    /// The exporter's name.
    pub name: String,
    /// The collector holding its lease (empty: none yet).
    pub owner: String,
    /// When the lease lapses, Unix seconds.
    pub lease_until: i64,
    /// The last event delivered.
    pub cursor: Cursor,
    /// Events delivered since it was created.
    pub sent: i64,
    /// Events it never sent because they outlived the retention window.
    pub dropped: i64,
    /// Last delivery, Unix seconds.
    pub last_sent_at: Option<i64>,
    /// Last error ("" when the last attempt succeeded).
    pub last_error: String,
    /// When that error happened.
    pub last_error_at: Option<i64>,
    /// Events waiting (after the cursor).
    pub lag: i64,
    /// When the oldest waiting event was written.
    pub oldest_waiting_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct OutboxRecord {
    xact: i64,
    seq: i64,
    recorded_at: i64,
    #[sqlx(flatten)]
    event: EventRecord,
    #[sqlx(flatten)]
    host: FactsRecord,
}

impl OutboxRecord {
    fn into_event(self) -> Result<OutboxEvent, StoreError> {
        Ok(OutboxEvent {
            cursor: Cursor {
                xact: self.xact,
                seq: self.seq,
            },
            recorded_at: self.recorded_at,
            event: self.event.into_event()?,
            host: self.host.into_facts()?,
        })
    }
}

impl Store {
    /// SQL for "events after the cursor ($1, $2) that a reader may take":
    /// on PostgreSQL only those of transactions older than every running
    /// one.
    fn after_cursor(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "e.xact = $1 AND e.seq > $2",
            Pool::Postgres(_) => {
                "(e.xact, e.seq) > ($1, $2) \
                 AND e.xact < pg_snapshot_xmin(pg_current_snapshot())::TEXT::BIGINT"
            }
        }
    }

    /// SQL: "event `e` may be read" (PostgreSQL: its transaction is older
    /// than every running one).
    fn readable(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "1 = 1",
            Pool::Postgres(_) => "e.xact < pg_snapshot_xmin(pg_current_snapshot())::TEXT::BIGINT",
        }
    }

    /// Claims exporter `name` for `owner` until `lease_until`, or renews
    /// the claim; a new exporter starts at `window_start` (it is not sent
    /// events recorded before). Its cursor when `owner` holds it now;
    /// `None` while another collector's lease runs.
    pub async fn claim_exporter(
        &self,
        name: &str,
        owner: &str,
        lease_until: i64,
        window_start: i64,
    ) -> Result<Option<Cursor>, StoreError> {
        let t = now();
        let start_sql = format!(
            "SELECT e.xact, e.seq FROM events e WHERE e.recorded_at < $1 AND {} \
             ORDER BY e.xact DESC, e.seq DESC LIMIT 1",
            self.readable()
        );
        on_pool!(self, |pool| {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT created_at FROM exporters WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?;
            if exists.is_none() {
                let start: Option<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(start_sql))
                    .bind(window_start)
                    .fetch_optional(pool)
                    .await?;
                let (xact, seq) = start.unwrap_or((0, 0));
                sqlx::query(
                    "INSERT INTO exporters (name, cursor_xact, cursor_seq, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(xact)
                .bind(seq)
                .bind(t)
                .execute(pool)
                .await?;
            }
            let row: Option<(i64, i64)> = sqlx::query_as(
                "UPDATE exporters SET owner = $2, lease_until = $3 \
                 WHERE name = $1 AND (owner = $2 OR owner = '' OR lease_until < $4) \
                 RETURNING cursor_xact, cursor_seq",
            )
            .bind(name)
            .bind(owner)
            .bind(lease_until)
            .bind(t)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|(xact, seq)| Cursor { xact, seq }))
        })
    }

    /// Gives up `owner`'s lease on `name` (at shutdown), so that another
    /// collector can take it at once.
    pub async fn release_exporter(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query("UPDATE exporters SET lease_until = 0 WHERE name = $1 AND owner = $2")
                .bind(name)
                .bind(owner)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Up to `limit` events after `after`, in order, with their hosts.
    pub async fn outbox_after(
        &self,
        after: Cursor,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let sql = format!(
            "SELECT e.xact, e.seq, e.recorded_at, e.id, e.host_id, e.at, e.kind, e.product_id, \
             e.state, e.previous_state, e.version, e.detection, e.campaign, e.related_host, h.hostname, \
             h.os_name, h.os_version, h.kernel, h.arch, h.ips, h.agent_version, h.platform, h.hardware_id \
             FROM events e JOIN hosts h ON h.id = e.host_id WHERE {} \
             ORDER BY e.xact, e.seq LIMIT $3",
            self.after_cursor()
        );
        on_pool!(self, |pool| {
            let rows: Vec<OutboxRecord> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(after.xact)
                .bind(after.seq)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.into_iter().map(OutboxRecord::into_event).collect()
        })
    }

    /// Records that `owner` delivered `count` events up to `cursor` at `at`
    /// and renews its lease to `lease_until`. False when `owner` no longer
    /// holds the exporter (nothing is recorded then).
    pub async fn exporter_delivered(
        &self,
        name: &str,
        owner: &str,
        cursor: Cursor,
        count: u64,
        at: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        on_pool!(self, |pool| {
            let n = sqlx::query(
                "UPDATE exporters SET cursor_xact = $3, cursor_seq = $4, sent = sent + $5, \
                 last_sent_at = $6, last_error = '', lease_until = $7 WHERE name = $1 AND owner = $2",
            )
            .bind(name)
            .bind(owner)
            .bind(cursor.xact)
            .bind(cursor.seq)
            .bind(count as i64)
            .bind(at)
            .bind(lease_until)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    /// Records `owner`'s failure to deliver on `name`.
    pub async fn exporter_failed(
        &self,
        name: &str,
        owner: &str,
        error: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE exporters SET last_error = $3, last_error_at = $4 WHERE name = $1 AND owner = $2",
            )
            .bind(name)
            .bind(owner)
            .bind(error)
            .bind(at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Moves `name`'s cursor from `from` past the undelivered events
    /// written before `cutoff` (they left the retention window), counting
    /// them as dropped. Only the run of such events right after the cursor
    /// is skipped: the first recent event stops it. All of it reads one
    /// snapshot (PostgreSQL: `REPEATABLE READ`), so an event committed
    /// meanwhile is never counted or passed over; and nothing changes
    /// unless `owner` holds the exporter at `from`. The number dropped and
    /// the new cursor.
    pub async fn exporter_expire(
        &self,
        name: &str,
        owner: &str,
        from: Cursor,
        cutoff: i64,
    ) -> Result<(u64, Cursor), StoreError> {
        let after = self.after_cursor();
        let (before_p, order_desc, begin) = match self.pool {
            Pool::Sqlite(_) => ("e.seq < $4", "e.seq DESC", "BEGIN IMMEDIATE"),
            Pool::Postgres(_) => (
                "(e.xact, e.seq) < ($3, $4)",
                "e.xact DESC, e.seq DESC",
                "BEGIN ISOLATION LEVEL REPEATABLE READ",
            ),
        };
        on_pool!(self, |pool| {
            let mut tx = pool.begin_with(begin).await?;
            let first_recent: Option<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT e.xact, e.seq FROM events e WHERE {after} AND e.recorded_at >= $3 \
                     ORDER BY e.xact, e.seq LIMIT 1"
            )))
            .bind(from.xact)
            .bind(from.seq)
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await?;
            let (p_xact, p_seq) = first_recent.unwrap_or((i64::MAX, i64::MAX));
            let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM events e WHERE {after} AND {before_p}"
            )))
            .bind(from.xact)
            .bind(from.seq)
            .bind(p_xact)
            .bind(p_seq)
            .fetch_one(&mut *tx)
            .await?;
            let last: Option<(i64, i64)> = if count == 0 {
                None
            } else {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT e.xact, e.seq FROM events e WHERE {after} AND {before_p} \
                     ORDER BY {order_desc} LIMIT 1"
                )))
                .bind(from.xact)
                .bind(from.seq)
                .bind(p_xact)
                .bind(p_seq)
                .fetch_optional(&mut *tx)
                .await?
            };
            let Some((xact, seq)) = last else {
                return Ok((0, from));
            };
            let to = Cursor { xact, seq };
            let moved = sqlx::query(
                "UPDATE exporters SET cursor_xact = $3, cursor_seq = $4, dropped = dropped + $5 \
                 WHERE name = $1 AND owner = $2 AND cursor_xact = $6 AND cursor_seq = $7",
            )
            .bind(name)
            .bind(owner)
            .bind(to.xact)
            .bind(to.seq)
            .bind(count)
            .bind(from.xact)
            .bind(from.seq)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved != 1 {
                // Not ours any more, or the cursor moved meanwhile.
                return Ok((0, from));
            }
            tx.commit().await?;
            Ok((count as u64, to))
        })
    }

    /// Every exporter the database knows, by name, with its lag.
    pub async fn exporters(&self) -> Result<Vec<ExporterStatus>, StoreError> {
        // Counted up to a million: a status read must not scan a year of
        // backlog.
        let lag_sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM events e WHERE {} LIMIT 1000000) AS waiting",
            self.after_cursor()
        );
        let oldest_sql = format!(
            "SELECT e.recorded_at FROM events e WHERE {} ORDER BY e.xact, e.seq LIMIT 1",
            self.after_cursor()
        );
        on_pool!(self, |pool| {
            #[allow(clippy::type_complexity)]
            let rows: Vec<(
                String,
                String,
                i64,
                i64,
                i64,
                i64,
                i64,
                Option<i64>,
                String,
                Option<i64>,
            )> = sqlx::query_as(
                "SELECT name, owner, lease_until, cursor_xact, cursor_seq, sent, dropped, \
                 last_sent_at, last_error, last_error_at FROM exporters ORDER BY name",
            )
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for (
                name,
                owner,
                lease_until,
                xact,
                seq,
                sent,
                dropped,
                last_sent_at,
                last_error,
                last_error_at,
            ) in rows
            {
                let lag: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(lag_sql.clone()))
                    .bind(xact)
                    .bind(seq)
                    .fetch_one(pool)
                    .await?;
                let oldest: Option<i64> =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(oldest_sql.clone()))
                        .bind(xact)
                        .bind(seq)
                        .fetch_optional(pool)
                        .await?;
                out.push(ExporterStatus {
                    name,
                    owner,
                    lease_until,
                    cursor: Cursor { xact, seq },
                    sent,
                    dropped,
                    last_sent_at,
                    last_error,
                    last_error_at,
                    lag,
                    oldest_waiting_at: oldest,
                });
            }
            Ok(out)
        })
    }

    /// Marks up to `limit` hosts whose last report (or enrollment) is
    /// older than `before` as stale, each with a `stale` event, once: the
    /// host's next check-in clears the mark. The hosts marked.
    pub async fn mark_stale(&self, before: i64, limit: u32) -> Result<Vec<String>, StoreError> {
        let t = now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let ids: Vec<String> = sqlx::query_scalar(self.locked(
                "SELECT id FROM hosts WHERE stale_since IS NULL AND revoked_at IS NULL \
                 AND superseded_by IS NULL AND COALESCE(last_checkin, enrolled_at) < $1 ORDER BY id LIMIT $2",
                "SELECT id FROM hosts WHERE stale_since IS NULL AND revoked_at IS NULL \
                 AND superseded_by IS NULL AND COALESCE(last_checkin, enrolled_at) < $1 ORDER BY id LIMIT $2 \
                 FOR UPDATE SKIP LOCKED",
            ))
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
            for id in &ids {
                sqlx::query("UPDATE hosts SET stale_since = $1 WHERE id = $2")
                    .bind(t)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let events: Vec<Event> = ids.iter().map(|id| Event::new(id, t, "stale")).collect();
            insert_events!(tx, &events);
            tx.commit().await?;
            Ok(ids)
        })
    }

    /// Deletes up to `limit` entries of the check-in log received before
    /// `before`, oldest first; returns how many. A host's last check-in
    /// stays on the host, and its detections' history in the events.
    pub async fn prune_checkins(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        on_pool!(self, |pool| {
            let done = sqlx::query(self.locked(
                "DELETE FROM checkins WHERE (received_at, host_id, sequence) IN \
                 (SELECT received_at, host_id, sequence FROM checkins \
                 WHERE received_at < $1 ORDER BY received_at LIMIT $2)",
                "DELETE FROM checkins WHERE ctid IN (SELECT ctid FROM checkins \
                 WHERE received_at < $1 ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            ))
            .bind(before)
            .bind(i64::from(limit))
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Revokes host `id`: its state stays, marked revoked, and its
    /// check-ins are refused from now on. False when there is no such
    /// host; already revoked is fine (nothing changes).
    pub async fn revoke_host(&self, id: &str) -> Result<bool, StoreError> {
        let t = now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let row: Option<Option<i64>> = sqlx::query_scalar(self.locked(
                "SELECT revoked_at FROM hosts WHERE id = $1",
                "SELECT revoked_at FROM hosts WHERE id = $1 FOR UPDATE",
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => Ok(false),
                Some(Some(_)) => Ok(true),
                Some(None) => {
                    sqlx::query("UPDATE hosts SET revoked_at = $1 WHERE id = $2")
                        .bind(t)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    insert_events!(tx, &[Event::new(id, t, "revoked")]);
                    tx.commit().await?;
                    Ok(true)
                }
            }
        })
    }

    /// When host `id` was revoked, if it was.
    pub async fn revoked_at(&self, id: &str) -> Result<Option<i64>, StoreError> {
        on_pool!(self, |pool| {
            let at: Option<Option<i64>> =
                sqlx::query_scalar("SELECT revoked_at FROM hosts WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
            Ok(at.flatten())
        })
    }

    /// Records that each of `missed` (host id, the detection it still
    /// has) missed campaign `campaign`'s deadline, with a
    /// `campaign_missed` event, once per host and campaign. The number of
    /// hosts newly recorded.
    pub async fn campaign_missed(
        &self,
        campaign: &str,
        missed: &[(String, Detection)],
    ) -> Result<usize, StoreError> {
        let t = now();
        on_pool!(self, |pool| {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let mut events = Vec::new();
            for (host, d) in missed {
                // The host's check-ins wait (PostgreSQL), and the product
                // must still be there, the host not revoked, when this
                // commits: no "missed" after a "removed".
                sqlx::query(self.locked(
                    "SELECT id FROM hosts WHERE id = $1",
                    "SELECT id FROM hosts WHERE id = $1 FOR UPDATE",
                ))
                .bind(host)
                .fetch_optional(&mut *tx)
                .await?;
                let n = sqlx::query(
                    "INSERT INTO campaign_missed (campaign, host_id, at) SELECT $1, $2, $3 \
                     WHERE EXISTS (SELECT 1 FROM detections d JOIN hosts h ON h.id = d.host_id \
                     WHERE d.host_id = $2 AND d.product_id = $4 AND d.removed_at IS NULL \
                     AND h.revoked_at IS NULL AND h.superseded_by IS NULL) ON CONFLICT DO NOTHING",
                )
                .bind(campaign)
                .bind(host)
                .bind(t)
                .bind(&d.product_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 1 {
                    events.push(Event {
                        campaign: campaign.to_string(),
                        ..Event::about(host, t, "campaign_missed", d)
                    });
                }
            }
            insert_events!(tx, &events);
            tx.commit().await?;
            Ok(events.len())
        })
    }
}

impl Store {
    /// Every campaign, oldest first.
    pub async fn campaigns(&self) -> Result<Vec<crate::campaign::Campaign>, StoreError> {
        on_pool!(self, |pool| {
            let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
                "SELECT name, policy, issued, identify_by, remove_by FROM campaigns \
                 ORDER BY created_at, name",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(name, policy, issued, identify_by, remove_by)| crate::campaign::Campaign {
                        name,
                        policy,
                        issued,
                        identify_by,
                        remove_by,
                    },
                )
                .collect())
        })
    }

    /// Hosts (not revoked) where one of `products` is present and that are
    /// not yet recorded as having missed `campaign`'s deadline, with that
    /// detection; up to `limit`.
    pub async fn not_yet_missed(
        &self,
        campaign: &str,
        products: &[String],
        limit: u32,
    ) -> Result<Vec<(String, Detection)>, StoreError> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        on_pool!(self, |pool| {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT d.host_id, d.detection FROM detections d JOIN hosts h ON h.id = d.host_id \
                 WHERE d.removed_at IS NULL AND h.revoked_at IS NULL AND h.superseded_by IS NULL \
                 AND NOT EXISTS \
                 (SELECT 1 FROM campaign_missed m WHERE m.host_id = d.host_id AND m.campaign = ",
            );
            q.push_bind(campaign).push(") AND d.product_id IN (");
            let mut list = q.separated(", ");
            for p in products {
                list.push_bind(p.as_str());
            }
            q.push(") ORDER BY d.host_id, d.product_id LIMIT ")
                .push_bind(i64::from(limit));
            let rows: Vec<(String, String)> = q.build_query_as().fetch_all(pool).await?;
            let mut out: Vec<(String, Detection)> = Vec::with_capacity(rows.len());
            for (host, d) in rows {
                // One event per host: its first banned product.
                if out.last().is_none_or(|(h, _)| *h != host) {
                    out.push((host, parse(&d)?));
                }
            }
            Ok(out)
        })
    }
}

/// Hosts whose current certificate another CA than `ca` signed.
#[derive(Debug, Clone, Default)]
pub struct OtherCa {
    /// How many (live agents: not revoked, superseded or imported).
    pub count: u64,
    /// The first of them by hostname: (id, hostname, last check-in).
    pub hosts: Vec<(String, String, Option<i64>)>,
}

impl Store {
    /// The live agents still holding a certificate that CA `ca` did not
    /// sign (at most `limit` listed): what a CA rotation waits for.
    pub async fn hosts_on_other_ca(&self, ca: &str, limit: u32) -> Result<OtherCa, StoreError> {
        const LIVE: &str =
            "imported = 0 AND revoked_at IS NULL AND superseded_by IS NULL AND cert_ca <> $1";
        on_pool!(self, |pool| {
            let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM hosts WHERE {LIVE}"
            )))
            .bind(ca)
            .fetch_one(pool)
            .await?;
            let hosts = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, hostname, last_checkin FROM hosts WHERE {LIVE} ORDER BY hostname, id LIMIT $2"
            )))
            .bind(ca)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            Ok(OtherCa {
                count: count as u64,
                hosts,
            })
        })
    }
}

/// Why a certificate was not renewed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// No such host.
    #[error("unknown host")]
    Unknown,
    /// The host was revoked.
    #[error("the host was revoked")]
    Revoked,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed.
    #[error("cannot issue the certificate: {0}")]
    Sign(String),
}

impl Store {
    /// Issues host `id` a new certificate (`issue`) and records its serial,
    /// with a `certificate_renewed` event, in one transaction: a revoked or
    /// unknown host gets nothing.
    pub async fn renew_certificate<F>(
        &self,
        id: &str,
        issue: F,
    ) -> Result<crate::pki::Issued, RenewError>
    where
        F: FnOnce() -> Result<crate::pki::Issued, String>,
    {
        let t = now();
        on_pool!(self, |pool| {
            let mut tx = pool
                .begin_with(self.begin_sql())
                .await
                .map_err(StoreError::from)?;
            let row: Option<Option<i64>> = sqlx::query_scalar(self.locked(
                "SELECT revoked_at FROM hosts WHERE id = $1",
                "SELECT revoked_at FROM hosts WHERE id = $1 FOR UPDATE",
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            match row {
                None => return Err(RenewError::Unknown),
                Some(Some(_)) => return Err(RenewError::Revoked),
                Some(None) => {}
            }
            let issued = issue().map_err(RenewError::Sign)?;
            sqlx::query("UPDATE hosts SET cert_serial = $1, cert_ca = $2 WHERE id = $3")
                .bind(&issued.serial)
                .bind(&issued.ca)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            insert_events!(tx, &[Event::new(id, t, "certificate_renewed")]);
            tx.commit().await.map_err(StoreError::from)?;
            Ok(issued)
        })
    }
}
