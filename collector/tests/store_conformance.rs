//! The store's conformance suite: written once, run against SQLite (a real
//! file) and PostgreSQL (a fresh database on the server named by
//! `MUSTER_TEST_POSTGRES_URL`; without it the PostgreSQL half says so and
//! is skipped).

use muster_catalog::{Catalog, Detection, HostFacts, Inventory, Item, ItemKind, Presence, Section};
use muster_collector::pki::Issued;
use muster_collector::store::{
    CheckIn, CheckInOutcome, Database, EnrollError, HostFilter, HostOrder, ImportOutcome, Store,
    TokenError, now,
};
use std::collections::BTreeMap;
use std::future::Future;

/// A database for one test, removed afterwards.
struct Backend {
    db: Database,
    _dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: the server URL and the database to drop.
    drop: Option<(String, String)>,
}

impl Backend {
    fn sqlite() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        Backend {
            db: Database::Sqlite(dir.path().join("muster.db")),
            _dir: Some(dir),
            drop: None,
        }
    }

    async fn postgres() -> Option<Backend> {
        let Ok(url) = std::env::var("MUSTER_TEST_POSTGRES_URL") else {
            eprintln!("skipped the PostgreSQL run: MUSTER_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("muster_test_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&url)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        Some(Backend {
            db: Database::Postgres(with_database(&url, &name)),
            _dir: None,
            drop: Some((url, name)),
        })
    }

    async fn cleanup(self) {
        if let Some((url, name)) = self.drop {
            let admin = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&admin)
            .await
            .unwrap();
            admin.close().await;
        }
    }
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..host_end])
}

/// Runs `test` on SQLite, then on PostgreSQL when there is one.
async fn on_every_backend<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    on_every_backend_raw(|store, _| test(store)).await;
}

fn issued(id: &str) -> Result<Issued, String> {
    Ok(Issued {
        cert_pem: String::new(),
        key_pem: String::new(),
        serial: format!("serial-{id}"),
        ca: "ca-1".into(),
    })
}

fn facts(hostname: &str) -> HostFacts {
    HostFacts {
        hostname: hostname.into(),
        os_name: "Debian GNU/Linux".into(),
        platform: "linux".into(),
        ..HostFacts::default()
    }
}

async fn enroll(store: &Store, hostname: &str) -> String {
    let token = format!("token-{}", uuid::Uuid::new_v4());
    store.create_token(&token, now() + 3600, 1).await.unwrap();
    store
        .enroll(&token, &facts(hostname), issued)
        .await
        .unwrap()
        .0
}

/// A check-in whose one section holds `packages` (name, presence).
fn report(sequence: u64, hostname: &str, packages: &[(&str, Presence)]) -> CheckIn {
    let section = Section {
        items: packages
            .iter()
            .map(|(n, p)| Item::new(ItemKind::Package, *n, *p, "dpkg").version("12.1"))
            .collect(),
    };
    CheckIn {
        sequence,
        facts: facts(hostname),
        digests: BTreeMap::from([("dpkg".to_string(), section.digest())]),
        sections: BTreeMap::from([("dpkg".to_string(), section)]),
        agent_detections: Vec::new(),
        catalog_version: String::new(),
        scanned_at: now(),
    }
}

fn evaluate(inv: &Inventory) -> Vec<Detection> {
    static CATALOG: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    muster_catalog::evaluate(inv, CATALOG.get_or_init(Catalog::builtin))
}

/// Every host, as one page.
async fn all_hosts(store: &Store) -> Vec<muster_collector::store::HostRow> {
    store
        .hosts_page(&HostFilter::default(), None, 10_000)
        .await
        .unwrap()
}

async fn checkin(store: &Store, host: &str, c: &CheckIn) -> CheckInOutcome {
    store
        .checkin(host, std::sync::Arc::new(c.clone()), "catalog-1", evaluate)
        .await
        .unwrap()
}

#[tokio::test]
async fn tokens_are_counted_and_refusals_create_nothing() {
    on_every_backend(|store| async move {
        store
            .create_token("two-uses", now() + 3600, 2)
            .await
            .unwrap();
        store.create_token("expired", now() - 1, 5).await.unwrap();
        for _ in 0..2 {
            store.enroll("two-uses", &facts("h"), issued).await.unwrap();
        }
        let refused = |r: Result<(String, Issued), EnrollError>| match r {
            Err(EnrollError::Token(t)) => t,
            other => panic!("expected a refused token, got {:?}", other.map(|x| x.0)),
        };
        assert_eq!(
            refused(store.enroll("two-uses", &facts("h"), issued).await),
            TokenError::UsedUp
        );
        assert_eq!(
            refused(store.enroll("expired", &facts("h"), issued).await),
            TokenError::Expired
        );
        assert_eq!(
            refused(store.enroll("nope", &facts("h"), issued).await),
            TokenError::Unknown
        );
        // A failed signature uses nothing up and creates no host.
        store.create_token("one", now() + 3600, 1).await.unwrap();
        let e = store
            .enroll("one", &facts("h"), |_| Err("no key".into()))
            .await;
        assert!(matches!(e, Err(EnrollError::Sign(_))));
        store.enroll("one", &facts("h"), issued).await.unwrap();
        assert_eq!(all_hosts(&store).await.len(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_detection_lives_and_every_change_is_an_event() {
    on_every_backend(|store| async move {
        let host = enroll(&store, "kesl-host").await;
        let kesl = "kaspersky.endpoint-security-linux";
        let steps: [&[(&str, Presence)]; 4] = [
            &[("bash", Presence::Present), ("kesl", Presence::Present)],
            &[("bash", Presence::Present), ("kesl", Presence::Leftover)],
            &[("bash", Presence::Present)],
            &[("bash", Presence::Present), ("kesl", Presence::Present)],
        ];
        for (i, packages) in steps.iter().enumerate() {
            let out = checkin(&store, &host, &report(i as u64 + 1, "kesl-host", packages)).await;
            assert!(matches!(out, CheckInOutcome::Accepted { .. }), "{out:?}");
            if i == 2 {
                let (h, _, _) = store.host(&host).await.unwrap().unwrap();
                assert_eq!(h.detections.len(), 1);
                assert!(h.detections[0].removed_at.is_some());
                assert_eq!(h.detections[0].detection.state.as_str(), "remnant");
                let listed = all_hosts(&store).await;
                assert!(listed[0].detections.is_empty(), "removed is not present");
            }
        }
        let timeline = store.timeline(&host, 100).await.unwrap();
        let story: Vec<(&str, &str, &str, &str)> = timeline
            .iter()
            .map(|e| {
                (
                    e.kind.as_str(),
                    e.product_id.as_str(),
                    e.previous_state.as_str(),
                    e.state.as_str(),
                )
            })
            .collect();
        assert_eq!(
            story,
            [
                ("enrolled", "", "", ""),
                ("detected", kesl, "", "installed"),
                ("state_changed", kesl, "installed", "remnant"),
                ("removed", kesl, "", "remnant"),
                ("detected", kesl, "", "installed"),
            ]
        );
        // The newest events when the timeline is cut.
        let last2 = store.timeline(&host, 2).await.unwrap();
        assert_eq!(last2[0].kind, "removed");
        assert_eq!(last2[1].kind, "detected");
        // A repeated sequence changes nothing; a digests-only check-in
        // with the same inventory adds no event.
        let again = report(4, "kesl-host", steps[3]);
        assert_eq!(
            checkin(&store, &host, &again).await,
            CheckInOutcome::Duplicate
        );
        let mut same = report(5, "kesl-host", steps[3]);
        same.sections.clear();
        assert!(matches!(
            checkin(&store, &host, &same).await,
            CheckInOutcome::Accepted { detections: 1, .. }
        ));
        assert_eq!(store.timeline(&host, 100).await.unwrap().len(), 5);
    })
    .await;
}

#[tokio::test]
async fn a_check_in_missing_its_base_changes_nothing() {
    on_every_backend(|store| async move {
        let host = enroll(&store, "h1").await;
        let first = report(1, "h1", &[("kesl", Presence::Present)]);
        checkin(&store, &host, &first).await;
        let before = store.host(&host).await.unwrap().unwrap();
        let mut bad = report(2, "renamed", &[("bash", Presence::Present)]);
        bad.sections.clear();
        bad.digests.insert("rpm".into(), "0".repeat(64));
        let out = checkin(&store, &host, &bad).await;
        assert!(
            matches!(out, CheckInOutcome::Missing(ref m) if m.len() == 2),
            "{out:?}"
        );
        let after = store.host(&host).await.unwrap().unwrap();
        assert_eq!(after.0.facts.hostname, before.0.facts.hostname);
        assert_eq!(after.0.last_sequence, 1);
        assert_eq!(after.1.len(), before.1.len());
        assert_eq!(store.timeline(&host, 100).await.unwrap().len(), 2);
        assert_eq!(
            checkin(&store, "no-such-host", &first).await,
            CheckInOutcome::UnknownHost
        );
    })
    .await;
}

/// Many writers at once (as behind a load balancer): every accepted
/// check-in is stored once, a shared token is never over-used.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_and_duplicate_nothing() {
    on_every_backend(|store| async move {
        store
            .create_token("shared", now() + 3600, 20)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..30 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .enroll("shared", &facts(&format!("h{i}")), issued)
                    .await
                    .map(|(id, _)| id)
            }));
        }
        let mut hosts = Vec::new();
        for t in tasks {
            if let Ok(id) = t.await.unwrap() {
                hosts.push(id);
            }
        }
        assert_eq!(hosts.len(), 20, "exactly the token's uses");
        let mut tasks = Vec::new();
        for (n, host) in hosts.iter().enumerate() {
            for seq in 1..=5u64 {
                let store = store.clone();
                let host = host.clone();
                tasks.push(tokio::spawn(async move {
                    let pkgs: &[(&str, Presence)] = if (n as u64 + seq).is_multiple_of(2) {
                        &[("kesl", Presence::Present)]
                    } else {
                        &[("bash", Presence::Present)]
                    };
                    let c = report(seq, &format!("h{n}"), pkgs);
                    store
                        .checkin(&host, std::sync::Arc::new(c), "catalog-1", evaluate)
                        .await
                        .unwrap()
                }));
            }
        }
        for t in tasks {
            let out = t.await.unwrap();
            assert!(
                matches!(
                    out,
                    CheckInOutcome::Accepted { .. } | CheckInOutcome::Duplicate
                ),
                "{out:?}"
            );
        }
        for host in &hosts {
            let (h, _, _) = store.host(host).await.unwrap().unwrap();
            assert_eq!(h.last_sequence, 5, "the newest report won");
            // The timeline alternates detected/removed consistently: no
            // two `detected` in a row, whatever order the reports landed.
            let kinds: Vec<String> = store
                .timeline(host, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.kind)
                .filter(|k| k != "enrolled")
                .collect();
            assert!(kinds.windows(2).all(|w| w[0] != w[1]), "{kinds:?}");
        }
    })
    .await;
}

/// A catalog change: stored inventories are re-evaluated without a new
/// check-in, each host once, every change an event.
#[tokio::test]
async fn a_new_catalog_re_evaluates_stored_inventories() {
    on_every_backend(|store| async move {
        let host = enroll(&store, "h1").await;
        let pkgs = [
            ("acme-shield", Presence::Present),
            ("kesl", Presence::Present),
        ];
        checkin(&store, &host, &report(1, "h1", &pkgs)).await;
        assert_eq!(store.pending_evaluation("catalog-1").await.unwrap(), 0);
        assert_eq!(store.pending_evaluation("catalog-2").await.unwrap(), 1);
        // The new catalog knows Acme too.
        let acme = |inv: &Inventory| {
            let mut found = evaluate(inv);
            let mut d = found[0].clone();
            d.product_id = "acme.shield".into();
            found.push(d);
            found
        };
        let b = store.reevaluate("catalog-2", "", 10, acme).await.unwrap();
        assert_eq!((b.hosts, b.events, b.last.as_str()), (1, 1, host.as_str()));
        let b = store.reevaluate("catalog-2", "", 10, acme).await.unwrap();
        assert_eq!((b.hosts, b.events), (0, 0));
        assert_eq!(store.pending_evaluation("catalog-2").await.unwrap(), 0);
        let timeline = store.timeline(&host, 10).await.unwrap();
        let last = timeline.last().unwrap();
        assert_eq!(
            (last.kind.as_str(), last.product_id.as_str()),
            ("detected", "acme.shield")
        );
        let counts = store
            .fleet_counts(0, &["acme.shield".into()])
            .await
            .unwrap();
        assert_eq!(counts.with_banned, 1);
        let per_product = store.product_counts().await.unwrap();
        assert!(
            per_product.contains(&("acme.shield".to_string(), 1)),
            "{per_product:?}"
        );
    })
    .await;
}

/// Snapshots of air-gapped hosts: one host per hostname, the snapshot's
/// time its check-in time, an older snapshot refused.
#[tokio::test]
async fn imports_create_update_and_refuse_older_snapshots() {
    on_every_backend(|store| async move {
        let sections = |pkgs: &[(&str, Presence)]| report(1, "x", pkgs).sections;
        let f = facts("Air-Gapped-1");
        let first = store
            .import(
                &f,
                sections(&[("kesl", Presence::Present)]),
                1_000,
                "c",
                evaluate,
            )
            .await
            .unwrap();
        let ImportOutcome::Stored {
            host_id,
            created: true,
            detections: 1,
        } = first
        else {
            panic!("{first:?}");
        };
        let again = store
            .import(
                &facts("air-gapped-1"),
                sections(&[("bash", Presence::Present)]),
                2_000,
                "c",
                evaluate,
            )
            .await
            .unwrap();
        assert_eq!(
            again,
            ImportOutcome::Stored {
                host_id: host_id.clone(),
                created: false,
                detections: 0
            }
        );
        let older = store
            .import(
                &f,
                sections(&[("kesl", Presence::Present)]),
                1_500,
                "c",
                evaluate,
            )
            .await
            .unwrap();
        assert!(
            matches!(
                older,
                ImportOutcome::Older {
                    last_checkin: 2_000,
                    ..
                }
            ),
            "{older:?}"
        );
        let (h, _, _) = store.host(&host_id).await.unwrap().unwrap();
        assert!(h.imported);
        assert_eq!(h.last_checkin, Some(2_000));
        let kinds: Vec<(String, i64)> = store
            .timeline(&host_id, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.at))
            .collect();
        assert_eq!(
            kinds,
            [
                ("imported".into(), 1_000),
                ("detected".into(), 1_000),
                ("removed".into(), 2_000)
            ]
        );
        let episodes = store
            .episodes(&["kaspersky.endpoint-security-linux".into()])
            .await
            .unwrap();
        assert_eq!(episodes.len(), 1);
        assert_eq!((episodes[0].from, episodes[0].to), (1_000, Some(2_000)));
    })
    .await;
}

/// Filters select in the store, and pages follow one another.
#[tokio::test]
async fn host_filters_and_pages() {
    on_every_backend(|store| async move {
        let mut ids = Vec::new();
        for i in 0..5 {
            let name = format!("web_{i}");
            let host = enroll(&store, &name).await;
            let pkgs: &[(&str, Presence)] = match i {
                0 => &[("kesl", Presence::Present)],
                1 => &[("kesl", Presence::Leftover)],
                _ => &[("bash", Presence::Present)],
            };
            checkin(&store, &host, &report(1, &name, pkgs)).await;
            ids.push(host);
        }
        let names = |hosts: Vec<muster_collector::store::HostRow>| -> Vec<String> {
            hosts.into_iter().map(|h| h.facts.hostname).collect()
        };
        let kesl = vec!["kaspersky.endpoint-security-linux".to_string()];
        let f = HostFilter {
            products: Some(kesl.clone()),
            ..Default::default()
        };
        assert_eq!(
            names(store.hosts_page(&f, None, 100).await.unwrap()),
            ["web_0", "web_1"]
        );
        // Page by page from the cursor, as for an unfiltered listing.
        let first = store.hosts_page(&f, None, 1).await.unwrap();
        let after = (first[0].facts.hostname.clone(), first[0].id.clone());
        assert_eq!(
            names(
                store
                    .hosts_page(&f, Some((after.0.as_str(), after.1.as_str())), 1)
                    .await
                    .unwrap()
            ),
            ["web_1"]
        );
        let f = HostFilter {
            products: Some(kesl),
            state: Some("remnant".into()),
            ..Default::default()
        };
        assert_eq!(
            names(store.hosts_page(&f, None, 100).await.unwrap()),
            ["web_1"]
        );
        // A product no host has: none (and no host is read to find out).
        let f = HostFilter {
            products: Some(vec!["acme.shield".into()]),
            ..Default::default()
        };
        assert!(store.hosts_page(&f, None, 100).await.unwrap().is_empty());
        let f = HostFilter {
            name: Some("B_3".into()),
            ..Default::default()
        };
        assert_eq!(
            names(store.hosts_page(&f, None, 100).await.unwrap()),
            ["web_3"]
        );
        // `_` is a literal, not a wildcard.
        let f = HostFilter {
            name: Some("b_".into()),
            ..Default::default()
        };
        assert_eq!(store.hosts_page(&f, None, 100).await.unwrap().len(), 5);
        let f = HostFilter {
            name: Some("bx".into()),
            ..Default::default()
        };
        assert!(store.hosts_page(&f, None, 100).await.unwrap().is_empty());
        let f = HostFilter {
            os: Some("debian".into()),
            ..Default::default()
        };
        assert_eq!(store.hosts_page(&f, None, 100).await.unwrap().len(), 5);
        let f = HostFilter {
            stale_before: Some(now() - 3600),
            ..Default::default()
        };
        assert!(store.hosts_page(&f, None, 100).await.unwrap().is_empty());
        let f = HostFilter {
            products: Some(Vec::new()),
            ..Default::default()
        };
        assert!(store.hosts_page(&f, None, 100).await.unwrap().is_empty());
        // Pages of two: every host once, in order.
        let mut seen = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = store
                .hosts_page(
                    &HostFilter::default(),
                    after.as_ref().map(|(n, i)| (n.as_str(), i.as_str())),
                    2,
                )
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page
                .last()
                .map(|h| (h.facts.hostname.clone(), h.id.clone()));
            seen.extend(names(page));
        }
        assert_eq!(seen, ["web_0", "web_1", "web_2", "web_3", "web_4"]);
        let counts = store.fleet_counts(now() - 3600, &[]).await.unwrap();
        assert_eq!((counts.hosts, counts.reporting, counts.stale), (5, 5, 0));

        // In every order, pages of two give every host once, as sorting
        // them all would (a host that never checked in is the oldest).
        enroll(&store, "web_5").await;
        let all = all_hosts(&store).await;
        for (name, order) in HostOrder::ALL {
            let mut expected: Vec<(i64, String, String)> = all
                .iter()
                .map(|h| {
                    (
                        h.last_checkin.unwrap_or(0),
                        h.facts.hostname.clone(),
                        h.id.clone(),
                    )
                })
                .collect();
            match order {
                HostOrder::Hostname | HostOrder::HostnameDesc => {
                    expected.sort_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)))
                }
                HostOrder::LastSeen | HostOrder::LastSeenDesc => {
                    expected.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)))
                }
            }
            if matches!(order, HostOrder::HostnameDesc | HostOrder::LastSeenDesc) {
                expected.reverse();
            }
            let f = HostFilter {
                order,
                ..Default::default()
            };
            let mut seen = Vec::new();
            let mut after: Option<(String, String)> = None;
            loop {
                let page = store
                    .hosts_page(&f, after.as_ref().map(|(k, i)| (k.as_str(), i.as_str())), 2)
                    .await
                    .unwrap();
                if page.is_empty() {
                    break;
                }
                after = page.last().map(|h| (order.key_of(h), h.id.clone()));
                seen.extend(page.into_iter().map(|h| h.id));
            }
            let expected: Vec<String> = expected.into_iter().map(|e| e.2).collect();
            assert_eq!(seen, expected, "sort={name}");
        }
        let oldest = store
            .hosts_page(
                &HostFilter {
                    order: HostOrder::LastSeen,
                    ..Default::default()
                },
                None,
                1,
            )
            .await
            .unwrap();
        assert_eq!(oldest[0].facts.hostname, "web_5");
    })
    .await;
}

#[tokio::test]
async fn assets_are_replaced_whole_and_campaigns_are_unique() {
    on_every_backend(|store| async move {
        let asset = |h: &str, line| muster_collector::assets::Asset {
            hostname: h.into(),
            ip: String::new(),
            owner: "ops".into(),
            business_unit: String::new(),
            line,
        };
        store
            .replace_assets(&[asset("a", 2), asset("b", 3)])
            .await
            .unwrap();
        store.replace_assets(&[asset("c", 2)]).await.unwrap();
        let got: Vec<String> = store
            .assets()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.hostname)
            .collect();
        assert_eq!(got, ["c"]);
        let c = muster_collector::campaign::Campaign {
            name: "ban".into(),
            policy: "bod-17-01".into(),
            issued: 0,
            identify_by: 10,
            remove_by: 20,
        };
        assert!(store.create_campaign(&c).await.unwrap());
        assert!(!store.create_campaign(&c).await.unwrap());
        assert_eq!(store.campaign("ban").await.unwrap().unwrap().remove_by, 20);
        assert!(store.campaign("other").await.unwrap().is_none());
    })
    .await;
}

#[test]
fn database_urls_are_told_apart_and_passwords_not_shown() {
    assert_eq!(
        Database::parse("/var/lib/muster/muster.db"),
        Database::Sqlite("/var/lib/muster/muster.db".into())
    );
    let pg = Database::parse("postgres://muster:s3cret@db:5432/muster");
    assert!(matches!(pg, Database::Postgres(_)));
    assert_eq!(pg.to_string(), "postgres://muster:***@db:5432/muster");
    assert_eq!(
        with_database(
            "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
            "x"
        ),
        "postgres://postgres@127.0.0.1:5432/x?sslmode=disable"
    );
}

/// Runs `test` with the store and its database on SQLite, then on
/// PostgreSQL when there is one: for tests that must reach under the
/// store (to age rows, or hold a transaction open).
async fn on_every_backend_raw<F, Fut>(test: F)
where
    F: Fn(Store, Database) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut backends = vec![Backend::sqlite()];
    backends.extend(Backend::postgres().await);
    for b in backends {
        let store = Store::open(&b.db, true).await.expect("open the store");
        eprintln!("-- on {}", store.backend());
        test(store.clone(), b.db.clone()).await;
        store.close().await;
        b.cleanup().await;
    }
}

/// Runs one statement on the store's database, beside the store.
async fn raw(db: &Database, sql: &str) {
    match db {
        Database::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Database::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

/// One number the store's database answers `sql` with, beside the store.
async fn number(db: &Database, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match db {
        Database::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
        Database::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }
}

#[tokio::test]
async fn the_check_in_log_is_pruned_oldest_first_and_hosts_keep_their_last() {
    on_every_backend_raw(|store, db| async move {
        let host = enroll(&store, "old").await;
        let day = 86_400;
        let t0 = now();
        // Five check-ins, one a day, the last yesterday.
        for n in 1..=5u64 {
            let at = t0 - (6 - n as i64) * day;
            let out = store
                .checkin_at(&host, &report(n, "old", &[]), "catalog-1", evaluate, at)
                .await
                .unwrap();
            assert!(matches!(out, CheckInOutcome::Accepted { .. }), "{out:?}");
        }
        let before = t0 - 5 * day / 2;
        assert_eq!(store.prune_checkins(before, 1).await.unwrap(), 1);
        assert_eq!(store.prune_checkins(before, 100).await.unwrap(), 2);
        assert_eq!(store.prune_checkins(before, 100).await.unwrap(), 0);
        let log = format!("FROM checkins WHERE host_id = '{host}'");
        assert_eq!(number(&db, &format!("SELECT COUNT(*) {log}")).await, 2);
        assert_eq!(
            number(&db, &format!("SELECT MIN(sequence) {log}")).await,
            4,
            "the oldest went first"
        );
        let (h, _, _) = store.host(&host).await.unwrap().unwrap();
        assert_eq!((h.last_sequence, h.last_checkin), (5, Some(t0 - day)));
    })
    .await;
}

/// The events after `after` once at least `n` are visible. On PostgreSQL
/// an event becomes readable when every transaction older than its own has
/// finished, in any database of the server: the suite's other tests run
/// such transactions at the same time.
async fn visible(
    store: &Store,
    after: muster_collector::store::Cursor,
    n: usize,
) -> Vec<muster_collector::store::OutboxEvent> {
    for _ in 0..100 {
        let events = store.outbox_after(after, 100).await.unwrap();
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.outbox_after(after, 100).await.unwrap()
}

#[tokio::test]
async fn the_outbox_is_read_in_order_from_each_exporters_cursor() {
    use muster_collector::store::Cursor;
    on_every_backend(|store| async move {
        let t = now();
        let a = enroll(&store, "outbox-a").await;
        let kesl = [("kesl", Presence::Present)];
        checkin(&store, &a, &report(1, "outbox-a", &kesl)).await;
        let events = visible(&store, Cursor::default(), 2).await;
        let kinds: Vec<&str> = events.iter().map(|e| e.event.kind.as_str()).collect();
        assert_eq!(kinds, ["enrolled", "detected"]);
        assert!(events[0].cursor < events[1].cursor);
        assert_eq!(events[1].host.hostname, "outbox-a");
        let d = events[1].event.detection.as_ref().unwrap();
        assert_eq!(d.vendor, "Kaspersky");
        assert!(!d.evidence.is_empty());

        // One collector holds an exporter; another cannot take or move it.
        let c0 = store
            .claim_exporter("soc", "one", t + 30, t - 3600)
            .await
            .unwrap();
        assert_eq!(
            c0,
            Some(Cursor::default()),
            "a new exporter starts at the window"
        );
        assert_eq!(
            store
                .claim_exporter("soc", "two", t + 30, t - 3600)
                .await
                .unwrap(),
            None
        );
        let last = events[1].cursor;
        assert!(
            !store
                .exporter_delivered("soc", "two", last, 2, t, t + 30)
                .await
                .unwrap()
        );
        assert!(
            store
                .exporter_delivered("soc", "one", events[0].cursor, 1, t, t + 30)
                .await
                .unwrap()
        );
        store
            .exporter_failed("soc", "one", "connection refused", t)
            .await
            .unwrap();
        let st = &store.exporters().await.unwrap()[0];
        assert_eq!(
            (st.sent, st.lag, st.last_error.as_str()),
            (1, 1, "connection refused")
        );
        assert!(
            store
                .exporter_delivered("soc", "one", last, 1, t, t + 30)
                .await
                .unwrap()
        );
        let st = &store.exporters().await.unwrap()[0];
        assert_eq!((st.sent, st.lag, st.last_error.as_str()), (2, 0, ""));
        assert!(store.outbox_after(last, 100).await.unwrap().is_empty());

        // The lease lapses (or is released): the other collector takes
        // over from the cursor.
        store.release_exporter("soc", "one").await.unwrap();
        assert_eq!(
            store
                .claim_exporter("soc", "two", t + 30, t - 3600)
                .await
                .unwrap(),
            Some(last)
        );

        // Revoked: an event, and the host's reports are refused; stale:
        // one event per host until it reports again.
        assert!(store.revoke_host(&a).await.unwrap());
        assert!(matches!(
            checkin(&store, &a, &report(2, "outbox-a", &kesl)).await,
            CheckInOutcome::Revoked { .. }
        ));
        assert!(!store.revoke_host("no-such-host").await.unwrap());
        let b = enroll(&store, "outbox-b").await;
        assert_eq!(
            store.mark_stale(now() + 1, 100).await.unwrap(),
            vec![b.clone()]
        );
        assert!(store.mark_stale(now() + 1, 100).await.unwrap().is_empty());
        checkin(&store, &b, &report(1, "outbox-b", &[])).await;
        assert_eq!(
            store.mark_stale(now() + 1, 100).await.unwrap(),
            vec![b.clone()]
        );
        let kinds: Vec<(String, String)> = visible(&store, last, 4)
            .await
            .into_iter()
            .map(|e| (e.event.kind, e.host.hostname))
            .collect();
        let want = [
            ("revoked", "outbox-a"),
            ("enrolled", "outbox-b"),
            ("stale", "outbox-b"),
            ("stale", "outbox-b"),
        ];
        assert_eq!(kinds, want.map(|(k, h)| (k.to_string(), h.to_string())),);
    })
    .await;
}

#[tokio::test]
async fn events_past_retention_are_dropped_counted_and_skipped() {
    use muster_collector::store::Cursor;
    on_every_backend_raw(|store, db| async move {
        let t = now();
        for i in 0..4 {
            enroll(&store, &format!("old-{i}")).await;
        }
        let start = store
            .claim_exporter("lake", "me", t + 30, 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(start, Cursor::default());
        let events = visible(&store, start, 4).await;
        assert_eq!(events.len(), 4);
        // The first three are ten days old; the retention is seven.
        let third = events[2].cursor.seq;
        raw(
            &db,
            &format!("UPDATE events SET recorded_at = recorded_at - 864000 WHERE seq <= {third}"),
        )
        .await;
        let (dropped, to) = store
            .exporter_expire("lake", "me", start, t - 7 * 86400)
            .await
            .unwrap();
        assert_eq!((dropped, to), (3, events[2].cursor));
        let st = &store.exporters().await.unwrap()[0];
        assert_eq!((st.dropped, st.lag, st.cursor), (3, 1, events[2].cursor));
        // Nothing more to drop; a new exporter starts after the old ones.
        assert_eq!(
            store
                .exporter_expire("lake", "me", to, t - 7 * 86400)
                .await
                .unwrap()
                .0,
            0
        );
        let fresh = store
            .claim_exporter("fresh", "me", t + 30, t - 7 * 86400)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fresh, events[2].cursor);
    })
    .await;
}

/// PostgreSQL: an event whose transaction commits after a later one's is
/// not passed over (exporters read only below the oldest running
/// transaction).
#[tokio::test]
async fn a_late_commit_is_not_passed_over() {
    use muster_collector::store::Cursor;
    let Some(b) = Backend::postgres().await else {
        return;
    };
    let store = Store::open(&b.db, true).await.unwrap();
    let a = enroll(&store, "late-a").await;
    let c = enroll(&store, "late-c").await;
    let after = visible(&store, Cursor::default(), 2).await[1].cursor;
    let Database::Postgres(url) = &b.db else {
        unreachable!()
    };
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let mut slow = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (id, host_id, at, kind, recorded_at) VALUES ('slow-event', $1, 0, 'slow', 0)",
    )
    .bind(&a)
    .execute(&mut *slow)
    .await
    .unwrap();
    // A later transaction commits first.
    assert!(store.revoke_host(&c).await.unwrap());
    assert!(
        store.outbox_after(after, 100).await.unwrap().is_empty(),
        "nothing may be read past a transaction still running"
    );
    slow.commit().await.unwrap();
    let kinds: Vec<String> = visible(&store, after, 2)
        .await
        .into_iter()
        .map(|e| e.event.kind)
        .collect();
    assert_eq!(kinds, ["slow", "revoked"]);
    pool.close().await;
    store.close().await;
    b.cleanup().await;
}

#[tokio::test]
async fn a_reimaged_machine_supersedes_its_old_host() {
    on_every_backend(|store| async move {
        let kesl = [("kesl", Presence::Present)];
        let with_hw = |sequence, hardware_id: &str| {
            let mut c = report(sequence, "ws-17", &kesl);
            c.facts.hardware_id = hardware_id.into();
            c
        };
        let old = enroll(&store, "ws-17").await;
        checkin(&store, &old, &report(1, "ws-17", &kesl)).await;
        // Re-imaged: a new agent enrolls; until it reports, both are listed.
        let new = enroll(&store, "ws-17").await;
        assert_eq!(all_hosts(&store).await.len(), 2);
        let out = checkin(&store, &new, &report(1, "WS-17", &kesl)).await;
        let CheckInOutcome::Accepted { superseded, .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!(superseded, std::slice::from_ref(&old));

        // The fleet shows one live host; the old one stays, marked.
        let live = all_hosts(&store).await;
        assert_eq!(live.iter().map(|h| &h.id).collect::<Vec<_>>(), [&new]);
        let banned = ["kaspersky.endpoint-security-linux".to_string()];
        let counts = store.fleet_counts(0, &banned).await.unwrap();
        assert_eq!((counts.hosts, counts.with_banned), (1, 1));
        assert_eq!(
            store.product_counts().await.unwrap(),
            [("kaspersky.endpoint-security-linux".to_string(), 1)]
        );
        let every = HostFilter {
            include_superseded: true,
            ..HostFilter::default()
        };
        let all = store.hosts_page(&every, None, 100).await.unwrap();
        let marked = all.iter().find(|h| h.id == old).expect("old host kept");
        assert_eq!(marked.superseded.as_ref().map(|s| &s.0), Some(&new));
        assert_eq!(marked.detections.len(), 1, "its state is kept");

        // The timelines name each other.
        let last = |events: Vec<muster_collector::store::Event>| {
            let e = events.last().cloned().unwrap();
            (e.kind, e.related_host)
        };
        assert_eq!(
            last(store.timeline(&old, 100).await.unwrap()),
            ("superseded".to_string(), new.clone())
        );
        assert!(
            store
                .timeline(&new, 100)
                .await
                .unwrap()
                .iter()
                .any(|e| e.kind == "supersedes" && e.related_host == old)
        );

        // For campaigns, what the old host had ended when it was superseded.
        let episodes = store
            .episodes(&["kaspersky.endpoint-security-linux".to_string()])
            .await
            .unwrap();
        let of = |id: &str| episodes.iter().find(|e| e.host_id == id).unwrap().to;
        assert_eq!(of(&old), marked.superseded.as_ref().map(|s| s.1));
        assert_eq!(of(&new), None);

        // Hardware ids tell two machines of one name apart: a host with
        // another id is left alone; one with the same id (or none) is
        // superseded.
        let x = enroll(&store, "ws-17").await;
        let out = checkin(
            &store,
            &x,
            &with_hw(1, "aaaaaaaa-0000-0000-0000-000000000001"),
        )
        .await;
        // `new` reported no hardware id: it may be this machine.
        let CheckInOutcome::Accepted { superseded, .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!(superseded, std::slice::from_ref(&new));
        let y = enroll(&store, "ws-17").await;
        let out = checkin(
            &store,
            &y,
            &with_hw(1, "bbbbbbbb-0000-0000-0000-000000000002"),
        )
        .await;
        let CheckInOutcome::Accepted { superseded, .. } = out else {
            panic!("{out:?}")
        };
        assert!(superseded.is_empty(), "{superseded:?}");
        let z = enroll(&store, "ws-17").await;
        let out = checkin(
            &store,
            &z,
            &with_hw(1, "aaaaaaaa-0000-0000-0000-000000000001"),
        )
        .await;
        let CheckInOutcome::Accepted { superseded, .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!(superseded, std::slice::from_ref(&x));
        let mut live: Vec<String> = all_hosts(&store).await.into_iter().map(|h| h.id).collect();
        live.sort();
        let mut want = vec![y.clone(), z.clone()];
        want.sort();
        assert_eq!(live, want);

        // A superseded host that reports again was another machine of
        // the same name, not a re-imaged one: it is live again, and says so.
        let out = checkin(&store, &old, &report(2, "ws-17", &kesl)).await;
        assert!(
            matches!(&out, CheckInOutcome::Accepted { reappeared: Some(by), .. } if *by == new),
            "{out:?}"
        );
        assert!(all_hosts(&store).await.iter().any(|h| h.id == old));
        assert_eq!(
            last(store.timeline(&old, 100).await.unwrap()),
            ("reappeared".to_string(), new.clone())
        );

        // A revoked host is not superseded (it is already out).
        let r = enroll(&store, "ws-99").await;
        checkin(&store, &r, &report(1, "ws-99", &kesl)).await;
        assert!(store.revoke_host(&r).await.unwrap());
        let r2 = enroll(&store, "ws-99").await;
        let out = checkin(&store, &r2, &report(1, "ws-99", &kesl)).await;
        assert!(
            matches!(&out, CheckInOutcome::Accepted { superseded, .. } if superseded.is_empty()),
            "{out:?}"
        );
    })
    .await;
}

/// Check-ins that arrive together are written in one transaction (group
/// commit); each still gets the outcome it would get alone: unchanged ones
/// (applied in bulk) stored, retries known as duplicates, reports without
/// their base told what is missing, revoked and unknown hosts refused, a
/// changed one re-evaluated, and nothing of the refused ones stored.
#[tokio::test]
async fn a_batch_gives_each_check_in_its_own_outcome() {
    on_every_backend(|store| async move {
        let mut hosts = Vec::new();
        for n in 0..24 {
            let host = enroll(&store, &format!("b{n}")).await;
            let pkgs: &[(&str, Presence)] = if n % 3 == 0 {
                &[("kesl", Presence::Present)]
            } else {
                &[("bash", Presence::Present)]
            };
            checkin(&store, &host, &report(1, &format!("b{n}"), pkgs)).await;
            hosts.push(host);
        }
        assert!(store.revoke_host(&hosts[23]).await.unwrap());
        // What each check-in is, and what it should come to.
        let mut cases: Vec<(String, CheckIn, &str)> = Vec::new();
        for (n, host) in hosts.iter().enumerate() {
            let name = format!("b{n}");
            let pkgs: &[(&str, Presence)] = if n % 3 == 0 {
                &[("kesl", Presence::Present)]
            } else {
                &[("bash", Presence::Present)]
            };
            let mut unchanged = report(2, &name, pkgs);
            unchanged.sections.clear();
            // An upgrade without a new inventory: facts are stored too.
            unchanged.facts.os_version = "13".into();
            unchanged.facts.ips = vec!["192.0.2.7".into()];
            let (c, expect) = match n % 8 {
                // A retry of an earlier report.
                5 => {
                    let mut c = report(1, &name, pkgs);
                    c.sections.clear();
                    (c, "duplicate")
                }
                // Digests of an inventory the collector never saw.
                6 => {
                    let mut c = report(2, &name, &[("zsh", Presence::Present)]);
                    c.sections.clear();
                    (c, "missing")
                }
                // KESL removed: a changed section, re-evaluated.
                7 => (report(2, &name, &[("bash", Presence::Present)]), "changed"),
                _ => (unchanged, "unchanged"),
            };
            let expect = if n == 23 { "revoked" } else { expect };
            cases.push((host.clone(), c, expect));
        }
        let mut stray = report(2, "stray", &[]);
        stray.sections.clear();
        cases.push(("no-such-host".into(), stray, "unknown"));
        let tasks: Vec<_> = cases
            .iter()
            .map(|(host, c, _)| {
                let (store, host, c) = (store.clone(), host.clone(), c.clone());
                tokio::spawn(async move {
                    store
                        .checkin(&host, std::sync::Arc::new(c), "catalog-1", evaluate)
                        .await
                        .unwrap()
                })
            })
            .collect();
        for (task, (host, c, expect)) in tasks.into_iter().zip(&cases) {
            let out = task.await.unwrap();
            let kesl = c
                .facts
                .hostname
                .trim_start_matches('b')
                .parse::<usize>()
                .ok()
                .is_some_and(|n| n % 3 == 0);
            match (*expect, &out) {
                ("unchanged", CheckInOutcome::Accepted { detections, .. }) => {
                    assert_eq!(*detections, usize::from(kesl), "{host}: {out:?}");
                }
                ("changed", CheckInOutcome::Accepted { detections, .. }) => {
                    assert_eq!(*detections, 0, "{host}: {out:?}");
                }
                ("duplicate", CheckInOutcome::Duplicate)
                | ("unknown", CheckInOutcome::UnknownHost)
                | ("revoked", CheckInOutcome::Revoked { .. }) => {}
                ("missing", CheckInOutcome::Missing(m)) => assert_eq!(m, &["dpkg"]),
                _ => panic!("{host}: expected {expect}, got {out:?}"),
            }
            if host == "no-such-host" {
                continue;
            }
            let (h, sections, _) = store.host(host).await.unwrap().unwrap();
            let stored = matches!(*expect, "unchanged" | "changed");
            assert_eq!(
                h.last_sequence,
                if stored { 2 } else { 1 },
                "{host} ({expect})"
            );
            if stored {
                assert_eq!(sections[0].digest, c.digests["dpkg"], "{host}");
                assert_eq!(h.facts, c.facts, "{host}: the facts of its report");
                if *expect == "unchanged" && kesl {
                    // Seen again: the detection's last sighting moves.
                    let present = &h.detections[0];
                    assert!(present.last_seen >= present.first_seen, "{host}");
                    assert_eq!(present.last_seen, h.last_checkin.unwrap(), "{host}");
                }
            } else if *expect == "missing" {
                assert_ne!(
                    sections[0].digest, c.digests["dpkg"],
                    "{host}: nothing stored"
                );
            }
        }
    })
    .await;
}

/// Unchanged check-ins one after another, each seeing what was written
/// between them by other paths: an operator's revocation, a changed
/// inventory. (SQLite's committer keeps what it read of each host between
/// batches; this is what must never go stale.)
#[tokio::test]
async fn each_check_in_sees_what_was_written_before_it() {
    on_every_backend(|store| async move {
        let bash: &[(&str, Presence)] = &[("bash", Presence::Present)];
        let kesl: &[(&str, Presence)] = &[("bash", Presence::Present), ("kesl", Presence::Present)];
        let unchanged = |sequence, pkgs| {
            let mut c = report(sequence, "a", pkgs);
            c.sections.clear();
            c
        };
        let (a, b) = (enroll(&store, "a").await, enroll(&store, "b").await);
        for host in [&a, &b] {
            let out = checkin(&store, host, &report(1, "a", bash)).await;
            assert!(matches!(out, CheckInOutcome::Accepted { .. }), "{out:?}");
        }
        for host in [&a, &b] {
            let out = checkin(&store, host, &unchanged(2, bash)).await;
            assert!(
                matches!(out, CheckInOutcome::Accepted { detections: 0, .. }),
                "{out:?}"
            );
        }

        assert!(store.revoke_host(&b).await.unwrap());
        let out = checkin(&store, &b, &unchanged(3, bash)).await;
        assert!(
            matches!(out, CheckInOutcome::Revoked { .. }),
            "revoked since: {out:?}"
        );
        let out = checkin(&store, &a, &unchanged(3, bash)).await;
        assert!(matches!(out, CheckInOutcome::Accepted { .. }), "{out:?}");
        let out = checkin(&store, &a, &unchanged(3, bash)).await;
        assert_eq!(out, CheckInOutcome::Duplicate, "sent twice");

        // KESL installed: a changed inventory, then unchanged reports of it.
        let out = checkin(&store, &a, &report(4, "a", kesl)).await;
        assert!(
            matches!(out, CheckInOutcome::Accepted { detections: 1, .. }),
            "{out:?}"
        );
        let out = checkin(&store, &a, &unchanged(5, bash)).await;
        assert_eq!(
            out,
            CheckInOutcome::Missing(vec!["dpkg".into()]),
            "the inventory before KESL is no longer stored"
        );
        let out = checkin(&store, &a, &unchanged(5, kesl)).await;
        assert!(
            matches!(out, CheckInOutcome::Accepted { detections: 1, .. }),
            "{out:?}"
        );
        let (h, sections, _) = store.host(&a).await.unwrap().unwrap();
        assert_eq!(h.last_sequence, 5);
        assert_eq!(sections[0].digest, report(5, "a", kesl).digests["dpkg"]);
        let (h, _, _) = store.host(&b).await.unwrap().unwrap();
        assert_eq!(h.last_sequence, 2, "nothing stored after its revocation");
    })
    .await;
}

#[tokio::test]
async fn operator_tokens_are_found_by_hash_expire_and_are_revoked_by_name_or_id() {
    use muster_collector::store::{OperatorAuth, TokenCreated, TokenRevoked};
    on_every_backend(|store| async move {
        let t = now();
        let TokenCreated::Created(console) = store
            .create_operator_token("console", "hash-1", None)
            .await
            .unwrap()
        else {
            panic!("not created")
        };
        assert_eq!(
            (
                console.name.as_str(),
                console.expires_at,
                console.revoked_at
            ),
            ("console", None, None)
        );
        // One token per name until it is revoked.
        assert_eq!(
            store
                .create_operator_token("console", "hash-2", None)
                .await
                .unwrap(),
            TokenCreated::NameTaken { id: console.id }
        );
        let TokenCreated::Created(short) = store
            .create_operator_token("ci", "hash-3", Some(t + 100))
            .await
            .unwrap()
        else {
            panic!("not created")
        };

        assert_eq!(
            store.operator_auth("hash-1", t).await.unwrap(),
            OperatorAuth::Valid(console.clone())
        );
        assert_eq!(
            store.operator_auth("nope", t).await.unwrap(),
            OperatorAuth::Unknown
        );
        assert!(matches!(
            store.operator_auth("hash-3", t + 99).await.unwrap(),
            OperatorAuth::Valid(_)
        ));
        assert!(matches!(
            store.operator_auth("hash-3", t + 100).await.unwrap(),
            OperatorAuth::Expired(k) if k.id == short.id
        ));

        // Use is recorded at most once a minute.
        store.operator_token_used(console.id, t).await.unwrap();
        store.operator_token_used(console.id, t + 30).await.unwrap();
        let used = |tokens: Vec<muster_collector::store::OperatorToken>| {
            tokens
                .iter()
                .find(|k| k.id == console.id)
                .unwrap()
                .last_used_at
        };
        assert_eq!(used(store.operator_tokens().await.unwrap()), Some(t));
        store.operator_token_used(console.id, t + 61).await.unwrap();
        assert_eq!(used(store.operator_tokens().await.unwrap()), Some(t + 61));

        // By name, then the name is free again; by id; twice is told.
        let TokenRevoked::Revoked(r) = store.revoke_operator_token("console").await.unwrap() else {
            panic!("not revoked")
        };
        assert_eq!(r.id, console.id);
        assert!(r.revoked_at.is_some());
        assert!(matches!(
            store.operator_auth("hash-1", t).await.unwrap(),
            OperatorAuth::Revoked(k) if k.id == console.id
        ));
        assert!(matches!(
            store.revoke_operator_token("console").await.unwrap(),
            TokenRevoked::NotFound
        ));
        assert!(matches!(
            store
                .revoke_operator_token(&console.id.to_string())
                .await
                .unwrap(),
            TokenRevoked::Already(_)
        ));
        let TokenCreated::Created(again) = store
            .create_operator_token("console", "hash-4", None)
            .await
            .unwrap()
        else {
            panic!("the name of a revoked token is free")
        };
        assert!(matches!(
            store
                .revoke_operator_token(&short.id.to_string())
                .await
                .unwrap(),
            TokenRevoked::Revoked(k) if k.name == "ci"
        ));
        assert!(matches!(
            store.revoke_operator_token("9999").await.unwrap(),
            TokenRevoked::NotFound
        ));
        let names: Vec<(String, bool)> = store
            .operator_tokens()
            .await
            .unwrap()
            .into_iter()
            .map(|k| (k.name, k.revoked_at.is_some()))
            .collect();
        assert_eq!(
            names,
            [
                ("console".to_string(), true),
                ("ci".to_string(), true),
                ("console".to_string(), false)
            ]
        );
        assert!(again.id > short.id);
    })
    .await;
}

#[tokio::test]
async fn console_sessions_speak_for_their_token_until_it_or_they_end() {
    use muster_collector::store::{SessionAuth, TokenCreated};
    on_every_backend(|store| async move {
        let t = now();
        let TokenCreated::Created(alice) = store
            .create_operator_token("alice", "token-a", None)
            .await
            .unwrap()
        else {
            panic!("not created")
        };
        let TokenCreated::Created(bob) = store
            .create_operator_token("bob", "token-b", Some(t + 500))
            .await
            .unwrap()
        else {
            panic!("not created")
        };
        store
            .create_console_session("s-alice", alice.id, t + 1000)
            .await
            .unwrap();
        store
            .create_console_session("s-bob", bob.id, t + 1000)
            .await
            .unwrap();
        assert_eq!(
            store.console_session("s-alice", t).await.unwrap(),
            SessionAuth::Valid(alice.clone())
        );
        assert_eq!(
            store.console_session("nope", t).await.unwrap(),
            SessionAuth::Unknown
        );
        // The session's own end, and its token's expiry, end it.
        assert_eq!(
            store.console_session("s-alice", t + 1000).await.unwrap(),
            SessionAuth::Ended
        );
        assert!(matches!(
            store.console_session("s-bob", t + 499).await.unwrap(),
            SessionAuth::Valid(k) if k.id == bob.id
        ));
        assert_eq!(
            store.console_session("s-bob", t + 500).await.unwrap(),
            SessionAuth::Ended
        );
        // Revoking the token ends its sessions at once.
        store.revoke_operator_token("alice").await.unwrap();
        assert_eq!(
            store.console_session("s-alice", t).await.unwrap(),
            SessionAuth::Ended
        );
        // Signing out forgets the session; twice is harmless.
        assert!(store.end_console_session("s-bob").await.unwrap());
        assert!(!store.end_console_session("s-bob").await.unwrap());
        assert_eq!(
            store.console_session("s-bob", t).await.unwrap(),
            SessionAuth::Unknown
        );
    })
    .await;
}

/// A database of an older collector, with a host and its check-in log,
/// migrated up to `version` only.
async fn older_database(db: &Database, version: i64) {
    let (sqlite, postgres) = (
        sqlx::migrate!("./migrations/sqlite"),
        sqlx::migrate!("./migrations/postgres"),
    );
    match db {
        Database::Sqlite(path) => {
            let url = format!("sqlite://{}?mode=rwc", path.display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlite.run_to(version, &pool).await.unwrap();
            pool.close().await;
        }
        Database::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            postgres.run_to(version, &pool).await.unwrap();
            pool.close().await;
        }
    }
    raw(
        db,
        "INSERT INTO hosts (id, hostname, enrolled_at, last_checkin, last_sequence, cert_serial) \
         VALUES ('h-old', 'old', 1000, 4000, 3, 'serial-old')",
    )
    .await;
    raw(
        db,
        "INSERT INTO checkins (host_id, sequence, received_at, scanned_at, sections_sent) \
         VALUES ('h-old', 1, 2000, 2000, 1), ('h-old', 2, 3000, 3000, 0), \
         ('h-old', 3, 4000, 4000, 0)",
    )
    .await;
}

#[tokio::test]
async fn an_older_database_keeps_its_check_in_log_through_the_upgrade() {
    let mut backends = vec![Backend::sqlite()];
    backends.extend(Backend::postgres().await);
    for b in backends {
        // 0013 rebuilt the log keyed by the time it was received.
        older_database(&b.db, 12).await;
        let store = Store::open(&b.db, true).await.expect("open and migrate");
        eprintln!("-- on {}", store.backend());
        let log = "FROM checkins WHERE host_id = 'h-old'";
        assert_eq!(number(&b.db, &format!("SELECT COUNT(*) {log}")).await, 3);
        assert_eq!(
            number(
                &b.db,
                &format!("SELECT CAST(SUM(sections_sent) AS BIGINT) {log}")
            )
            .await,
            1
        );
        assert_eq!(store.prune_checkins(3500, 100).await.unwrap(), 2);
        assert_eq!(
            number(&b.db, &format!("SELECT MIN(sequence) {log}")).await,
            3,
            "the two oldest went"
        );
        let (h, _, _) = store.host("h-old").await.unwrap().unwrap();
        assert_eq!((h.last_sequence, h.last_checkin), (3, Some(4000)));
        store.close().await;
        b.cleanup().await;
    }
}
