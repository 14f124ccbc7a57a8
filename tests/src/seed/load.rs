//! Writing [`super::plan`]'s fleet into a store, through the store's own
//! API: enrollments, the past reports each in a transaction of its own as
//! of its time, today's through group commit, then a campaign and the
//! asset list.

use super::*;
use muster_catalog::Catalog;
use muster_collector::store::{CheckIn, CheckInOutcome, Store, StoreError};
use std::sync::Arc;
use std::time::Instant;

/// A report of `sections` that sends only those the collector lacks: digests
/// first, then (when asked) the missing sections, as the agent does. `t`:
/// `None`, through group commit as of now; `Some`, in a transaction of its
/// own as of that time.
async fn report(
    store: &Store,
    catalog: &Arc<Catalog>,
    host_id: &str,
    sequence: u64,
    facts: &HostFacts,
    sections: &BTreeMap<String, Section>,
    t: Option<i64>,
) -> Result<(), StoreError> {
    let mut c = CheckIn {
        sequence,
        facts: facts.clone(),
        digests: sections
            .iter()
            .map(|(n, s)| (n.clone(), s.digest()))
            .collect(),
        sections: BTreeMap::new(),
        agent_detections: Vec::new(),
        catalog_version: catalog.version.clone(),
        scanned_at: t.unwrap_or_else(muster_collector::store::now),
    };
    for _ in 0..2 {
        let outcome = match t {
            Some(t) => {
                store
                    .checkin_at(
                        host_id,
                        &c,
                        &catalog.digest,
                        |inv| muster_catalog::evaluate(inv, catalog),
                        t,
                    )
                    .await?
            }
            None => {
                let catalog2 = catalog.clone();
                store
                    .checkin(host_id, Arc::new(c.clone()), &catalog.digest, move |inv| {
                        muster_catalog::evaluate(inv, &catalog2)
                    })
                    .await?
            }
        };
        match outcome {
            CheckInOutcome::Accepted { .. } | CheckInOutcome::Duplicate => return Ok(()),
            CheckInOutcome::Missing(names) => {
                c.sections = names
                    .iter()
                    .filter_map(|n| sections.get(n).map(|s| (n.clone(), s.clone())))
                    .collect();
            }
            other => {
                return Err(StoreError::Corrupt(format!(
                    "seeding host {host_id}: check-in {other:?}"
                )));
            }
        }
    }
    Err(StoreError::Corrupt(format!(
        "seeding host {host_id}: sections still missing after sending them"
    )))
}

/// Progress on standard error every `every` items.
struct Progress {
    what: &'static str,
    of: usize,
    every: usize,
    started: Instant,
    done: std::sync::atomic::AtomicUsize,
}

impl Progress {
    fn new(what: &'static str, of: usize) -> Progress {
        eprintln!("  {what}: 0 of {of}");
        Progress {
            what,
            of,
            every: (of / 10).max(1),
            started: Instant::now(),
            done: Default::default(),
        }
    }

    fn tick(&self) {
        let n = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if n.is_multiple_of(self.every) || n == self.of {
            let s = self.started.elapsed().as_secs_f64();
            eprintln!(
                "  {}: {n} of {} ({s:.0} s, {:.0}/s)",
                self.what,
                self.of,
                n as f64 / s.max(0.001)
            );
        }
    }
}

/// Runs `f` on every item with `concurrency` tasks; the first error stops
/// the run.
async fn each<T, F, Fut>(items: Vec<T>, concurrency: usize, f: F) -> Result<(), StoreError>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), StoreError>> + Send,
{
    let queue = Arc::new(std::sync::Mutex::new(items.into_iter()));
    let f = Arc::new(f);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (queue, f) = (queue.clone(), f.clone());
        tasks.spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some(item) = next else {
                    return Ok::<(), StoreError>(());
                };
                f(item).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| StoreError::Corrupt(format!("seeding task: {e}")))??;
    }
    Ok(())
}

/// What a seeded data folder holds (`bench-seed.json` in it), written once
/// the seeding is complete.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    pub version: u32,
    pub hosts: usize,
    /// The seeding's start: history is relative to it.
    pub seeded_at: i64,
    /// The last time every current host reported.
    pub reported_at: i64,
}

/// Seeds `store` with hosts `0..n` as of `t0`, an asset list and a
/// campaign; `ca` is the fingerprint of the CA the hosts' certificates
/// name.
pub async fn seed(
    store: &Store,
    n: usize,
    t0: i64,
    ca: &str,
    names: Arc<Vec<String>>,
    catalog: Arc<Catalog>,
) -> Result<(), StoreError> {
    let token = "muster-bench-console seeding";
    store
        .create_token(&token_hash(token), t0 + 7 * DAY, n as u32)
        .await?;
    // Enrollment: one transaction each, as the collector does.
    let ids: Arc<Vec<std::sync::OnceLock<String>>> =
        Arc::new((0..n).map(|_| std::sync::OnceLock::new()).collect());
    let progress = Arc::new(Progress::new("enrolled", n));
    {
        let (store, ids, ca) = (store.clone(), ids.clone(), ca.to_string());
        each((0..n).collect(), 8, move |i| {
            let (store, ids, ca, progress) =
                (store.clone(), ids.clone(), ca.clone(), progress.clone());
            async move {
                let facts = plan(i).facts;
                let (id, _) = store
                    .enroll(&token_hash(token), &facts, |_| {
                        Ok(muster_collector::pki::Issued {
                            cert_pem: String::new(),
                            key_pem: String::new(),
                            serial: format!("{:032x}", mix(i, 9) as u128 * 31 + i as u128),
                            ca: ca.clone(),
                        })
                    })
                    .await
                    .map_err(|e| StoreError::Corrupt(format!("enroll host {i}: {e}")))?;
                let _ = ids[i].set(id);
                progress.tick();
                Ok(())
            }
        })
        .await?;
    }
    let ids: Arc<Vec<String>> = Arc::new(
        ids.iter()
            .map(|id| id.get().cloned().unwrap_or_default())
            .collect(),
    );
    // The past: every report before today's, each in a transaction of
    // its own as of its time.
    let past: Vec<usize> = (0..n)
        .filter(|&i| plan(i).reporting != Reporting::Never)
        .collect();
    let progress = Arc::new(Progress::new("hosts with their past reports", past.len()));
    {
        let (store, ids, names, catalog) =
            (store.clone(), ids.clone(), names.clone(), catalog.clone());
        each(past, 8, move |i| {
            let (store, ids, names, catalog, progress) = (
                store.clone(),
                ids.clone(),
                names.clone(),
                catalog.clone(),
                progress.clone(),
            );
            async move {
                let p = plan(i);
                let mut all = reports(&p, t0);
                if p.reporting == Reporting::Current {
                    all.pop();
                }
                for (seq, (t, kesl)) in all.into_iter().enumerate() {
                    let inv = inventory(&p, kesl, &names);
                    report(
                        &store,
                        &catalog,
                        &ids[i],
                        seq as u64 + 1,
                        &p.facts,
                        &inv,
                        Some(t),
                    )
                    .await?;
                }
                progress.tick();
                Ok(())
            }
        })
        .await?;
    }
    // Above the past reports' sequences (three at most).
    report_now(store, n, ids.clone(), names, catalog, 10).await?;
    // A campaign started 45 days ago: identify by 15 days ago, remove
    // within 45 more days.
    let issued = (t0 - 45 * DAY).div_euclid(DAY) * DAY;
    store
        .create_campaign(&muster_collector::campaign::Campaign {
            name: "kaspersky-removal".into(),
            policy: "bod-17-01".into(),
            issued,
            identify_by: issued + 30 * DAY,
            remove_by: issued + 90 * DAY,
        })
        .await?;
    eprintln!("  asset list: {n} rows");
    store.replace_assets(&assets(n)).await?;
    Ok(())
}

/// Today's report of every current host (`0..n`, their ids in `ids`) through
/// group commit: digests only where nothing changed. `sequence`: higher than
/// any earlier report's.
pub async fn report_now(
    store: &Store,
    n: usize,
    ids: Arc<Vec<String>>,
    names: Arc<Vec<String>>,
    catalog: Arc<Catalog>,
    sequence: u64,
) -> Result<(), StoreError> {
    let current: Vec<usize> = (0..n)
        .filter(|&i| plan(i).reporting == Reporting::Current)
        .collect();
    let progress = Arc::new(Progress::new("current hosts reporting now", current.len()));
    let store = store.clone();
    each(current, 256, move |i| {
        let (store, ids, names, catalog, progress) = (
            store.clone(),
            ids.clone(),
            names.clone(),
            catalog.clone(),
            progress.clone(),
        );
        async move {
            let p = plan(i);
            let kesl = reports(&p, 0).last().and_then(|r| r.1);
            let inv = inventory(&p, kesl, &names);
            report(&store, &catalog, &ids[i], sequence, &p.facts, &inv, None).await?;
            progress.tick();
            Ok(())
        }
    })
    .await
}

/// The ids of hosts `0..n` in a seeded store, and the highest sequence
/// any of them acknowledged.
pub async fn host_ids(store: &Store, n: usize) -> Result<(Vec<String>, u64), StoreError> {
    let mut ids = vec![String::new(); n];
    let mut highest = 0;
    let mut after: Option<(String, String)> = None;
    let filter = muster_collector::store::HostFilter::default();
    loop {
        let page = store
            .hosts_page(
                &filter,
                after.as_ref().map(|(h, i)| (h.as_str(), i.as_str())),
                1000,
            )
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.facts.hostname.clone(), last.id.clone()));
        for h in page {
            let i = h
                .facts
                .hostname
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&i| i < n)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "host {:?} is not one this benchmark seeded",
                        h.facts.hostname
                    ))
                })?;
            highest = highest.max(h.last_sequence);
            ids[i] = h.id;
        }
    }
    if let Some(i) = ids.iter().position(String::is_empty) {
        return Err(StoreError::Corrupt(format!(
            "host {} ({}) is missing from the store",
            i,
            hostname(i)
        )));
    }
    Ok((ids, highest))
}

fn token_hash(token: &str) -> String {
    muster_collector::service::token_hash(token)
}
