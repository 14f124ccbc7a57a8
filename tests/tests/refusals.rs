//! Bad input and bad callers: refused with a clear error, nothing changed.

use muster_catalog::{Item, ItemKind, Presence, Section};
use muster_collector::pki::{Authority, Role};
use muster_proto::channel::connect;
use muster_proto::v1::{self, agent_client::AgentClient, operator_client::OperatorClient};
use muster_tests::*;
use std::path::Path;
use tonic::Code;

fn rt() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// An identity (cert, key) from a folder with cert.pem and key.pem.
fn identity(dir: &Path) -> Option<(String, String)> {
    Some((read(&dir.join("cert.pem")), read(&dir.join("key.pem"))))
}

fn section(name: &str, items: Vec<Item>) -> v1::Section {
    let mut s = Section { items };
    s.normalise();
    muster_proto::section_to_wire(name, &s)
}

fn package(name: &str) -> Item {
    Item {
        kind: ItemKind::Package,
        name: name.into(),
        version: "1.0".into(),
        path: String::new(),
        presence: Presence::Present,
        source: "/var/lib/dpkg/status".into(),
        attrs: Default::default(),
    }
}

fn checkin(seq: u64, sections: Vec<v1::Section>) -> v1::CheckInRequest {
    v1::CheckInRequest {
        sequence: seq,
        facts: Some(v1::HostFacts {
            hostname: "probe".into(),
            ..Default::default()
        }),
        digests: sections
            .iter()
            .map(|s| v1::SectionDigest {
                name: s.name.clone(),
                digest: s.digest.clone(),
            })
            .collect(),
        sections,
        ..Default::default()
    }
}

async fn agent(c: &Collector, state: &Path) -> AgentClient<tonic::transport::Channel> {
    let ch = connect(&c.url(), &read(&c.data().join("ca.pem")), identity(state))
        .await
        .unwrap();
    AgentClient::new(ch)
}

/// The host as operators see it, to compare before and after a refusal.
fn host_state(c: &Collector) -> serde_json::Value {
    let hosts = c.hosts();
    let id = hosts[0]["id"].as_str().unwrap().to_string();
    let mut v: serde_json::Value =
        serde_json::from_str(&c.muster(&["host", &id, "--format", "json"])).unwrap();
    v.as_object_mut().unwrap().remove("stale");
    v
}

#[test]
fn callers_without_the_right_certificate_are_refused() {
    let c = Collector::start();
    let state = c.dir.join("agent");
    c.enroll(&state);
    let ca = read(&c.data().join("ca.pem"));
    let rt = rt();
    rt.block_on(async {
        // No client certificate: TLS works (enrollment needs it) but the agent
        // and operator services are closed.
        let ch = connect(&c.url(), &ca, None).await.unwrap();
        let e = AgentClient::new(ch.clone())
            .check_in(checkin(1, vec![]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let e = OperatorClient::new(ch)
            .summary(v1::SummaryRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

        // The health service answers anyone, for load balancers.
        let ch = connect(&c.url(), &ca, None).await.unwrap();
        let h = tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            h.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );

        // A certificate from another CA never gets a connection.
        let (other, _) = Authority::generate("elsewhere").unwrap();
        let foreign = other.operator_cert("mallory", 1).unwrap();
        let refused = match connect(&c.url(), &ca, Some((foreign.cert_pem, foreign.key_pem))).await
        {
            Err(_) => true,
            Ok(ch) => OperatorClient::new(ch)
                .summary(v1::SummaryRequest {})
                .await
                .is_err(),
        };
        assert!(refused, "a foreign certificate was accepted");

        // An expired certificate from the right CA is refused too.
        let ours = Authority::load(&ca, &read(&c.data().join("ca-key.pem"))).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let old = ours
            .client_cert_between(
                Role::Operator,
                "former",
                now - time::Duration::days(30),
                now - time::Duration::days(1),
            )
            .unwrap();
        let refused = match connect(&c.url(), &ca, Some((old.cert_pem, old.key_pem))).await {
            Err(_) => true,
            Ok(ch) => OperatorClient::new(ch)
                .summary(v1::SummaryRequest {})
                .await
                .is_err(),
        };
        assert!(refused, "an expired certificate was accepted");

        // Roles: an agent cannot read the fleet, an operator cannot report.
        let ch = connect(&c.url(), &ca, identity(&state)).await.unwrap();
        let e = OperatorClient::new(ch)
            .list_hosts(v1::ListHostsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let ch = connect(&c.url(), &ca, identity(&c.data().join("operator")))
            .await
            .unwrap();
        let e = AgentClient::new(ch)
            .check_in(checkin(1, vec![]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    });
    let log = c.log();
    assert!(
        log.contains("tls handshake refused"),
        "handshake refusals are not logged:\n{log}"
    );
    // Nothing above reported anything.
    assert!(c.hosts()[0]["last_checkin"].is_null());
    let err = fails(
        cmd("muster")
            .args(["--collector", &c.url(), "--identity"])
            .arg(&state)
            .arg("hosts"),
    );
    assert!(err.contains("cannot call the operator service"), "{err}");
}

#[test]
fn bad_enrollment_tokens_are_refused_and_create_nothing() {
    let c = Collector::start();
    let ca = c.data().join("ca.pem");
    let enroll = |token: &str, state: &Path| {
        fails(
            cmd("muster-agent")
                .args([
                    "enroll",
                    "--collector",
                    &c.url(),
                    "--token",
                    token,
                    "--ca-cert",
                ])
                .arg(&ca)
                .arg("--state-dir")
                .arg(state),
        )
    };
    let used = c.token(1, "1h");
    c.enroll_with(&used, &c.dir.join("first"));
    for (token, why) in [
        (used.clone(), "used up"),
        (c.token(5, "0s"), "expired"),
        ("0123456789abcdef".to_string(), "unknown"),
    ] {
        let state = c.dir.join(&format!("refused-{}", why.replace(' ', "-")));
        let err = enroll(&token, &state);
        assert!(err.contains(why), "expected {why:?} in: {err}");
        assert!(!state.join("cert.pem").exists() && !state.join("key.pem").exists());
    }
    assert_eq!(c.hosts().len(), 1, "a refused enrollment created a host");
    // The token can come from a file, out of the process list.
    let file = c.dir.join("token");
    std::fs::write(&file, format!("{}\n", c.token(1, "1h"))).unwrap();
    ok(cmd("muster-agent")
        .args(["enroll", "--collector", &c.url(), "--token-file"])
        .arg(&file)
        .arg("--ca-cert")
        .arg(&ca)
        .arg("--state-dir")
        .arg(c.dir.join("from-file")));
    assert_eq!(c.hosts().len(), 2);
}

#[test]
fn malformed_or_oversized_check_ins_change_nothing() {
    let c = Collector::start_with_config("max_checkin_bytes = 4096");
    let state = c.dir.join("agent");
    c.enroll(&state);
    let rt = rt();
    rt.block_on(async {
        let mut a = agent(&c, &state).await;
        // A first real report.
        let base = section("packages", vec![package("kesl")]);
        let r = a
            .check_in(checkin(1, vec![base.clone()]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.acknowledged_sequence, 1);
    });
    let before = host_state(&c);
    assert_eq!(
        before["detections"][0]["product_id"],
        "kaspersky.endpoint-security-linux"
    );

    rt.block_on(async {
        let mut a = agent(&c, &state).await;
        // Content that does not match its digest.
        let mut s = section("packages", vec![package("bash")]);
        s.items[0].name = "kesl-gui".into();
        let e = a.check_in(checkin(2, vec![s])).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("digest"), "{}", e.message());

        // An unknown kind of item.
        let mut s = section("packages", vec![package("bash")]);
        s.items[0].kind = "toaster".into();
        let e = a.check_in(checkin(2, vec![s])).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("toaster"), "{}", e.message());

        // A sequence of 0, and a digest that is not SHA-256.
        let e = a.check_in(checkin(0, vec![])).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let mut req = checkin(2, vec![]);
        req.digests.push(v1::SectionDigest {
            name: "packages".into(),
            digest: "xyz".into(),
        });
        let e = a.check_in(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);

        // Larger than max_checkin_bytes.
        let big: Vec<Item> = (0..200)
            .map(|i| package(&format!("package-with-a-long-name-{i:04}")))
            .collect();
        let e = a
            .check_in(checkin(2, vec![section("packages", big)]))
            .await
            .unwrap_err();
        assert!(
            matches!(e.code(), Code::ResourceExhausted | Code::OutOfRange),
            "{e:?}"
        );
    });
    assert_eq!(
        host_state(&c),
        before,
        "a refused check-in changed the stored state"
    );

    // The real agent, whose report is larger than 4 KiB, gets a clear error
    // and keeps its report.
    let root = c.dir.join("img");
    let pkgs: Vec<(String, &str, &str)> = (0..100)
        .map(|i| (format!("lib-package-{i:03}"), "1.0", "install ok installed"))
        .collect();
    let pkgs: Vec<(&str, &str, &str)> = pkgs.iter().map(|(n, v, s)| (n.as_str(), *v, *s)).collect();
    linux_image(&root, "big-host", &pkgs, &[]);
    let err = fails(
        cmd("muster-agent")
            .arg("run")
            .arg("--once")
            .arg("--state-dir")
            .arg(&state)
            .arg("--root")
            .arg(&root),
    );
    assert!(
        err.contains("check-in to") && err.to_lowercase().contains("message"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(state.join("spool")).unwrap().count(), 1);
    assert_eq!(host_state(&c), before);
}

#[test]
fn a_check_in_without_a_base_asks_for_the_full_sections() {
    let c = Collector::start();
    let state = c.dir.join("agent");
    c.enroll(&state);
    let rt = rt();
    rt.block_on(async {
        let mut a = agent(&c, &state).await;
        let full = section("packages", vec![package("kesl")]);
        // Digests only, for a host the collector has no inventory of.
        let mut req = checkin(1, vec![]);
        req.digests.push(v1::SectionDigest {
            name: "packages".into(),
            digest: full.digest.clone(),
        });
        let r = a.check_in(req.clone()).await.unwrap().into_inner();
        assert_eq!(r.acknowledged_sequence, 0);
        assert_eq!(r.missing_sections, ["packages"]);
        // Sent in full, it is stored.
        let r = a
            .check_in(checkin(1, vec![full.clone()]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.acknowledged_sequence, 1);
        assert!(r.next_interval_seconds > 0);
        // Then the digest alone is enough.
        let mut req = checkin(2, vec![]);
        req.digests.push(v1::SectionDigest {
            name: "packages".into(),
            digest: full.digest.clone(),
        });
        let r = a.check_in(req).await.unwrap().into_inner();
        assert_eq!(r.acknowledged_sequence, 2);
        assert!(r.missing_sections.is_empty());
        // A retry of an acknowledged report is acknowledged again, not applied twice.
        let r = a
            .check_in(checkin(2, vec![section("packages", vec![])]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.acknowledged_sequence, 2);
    });
    let h = &c.hosts()[0];
    assert_eq!(h["sequence"], 2);
    // The host a report describes is the certificate's, whatever the facts say.
    assert_eq!(h["hostname"], "probe");
    assert_eq!(
        h["detections"][0]["product_id"],
        "kaspersky.endpoint-security-linux"
    );
}

/// A resumed TLS session carries the client certificate of its first
/// handshake: the services still see who calls, and a certificate that
/// expired since (a session may outlive it) is refused at the call.
#[test]
fn a_resumed_session_keeps_its_identity_and_its_certificate_may_expire() {
    let metrics_port = free_port();
    let c = Collector::start_with_config(&format!("metrics_listen = \"127.0.0.1:{metrics_port}\""));
    let ca = read(&c.data().join("ca.pem"));
    let authority = Authority::load(&ca, &read(&c.data().join("ca-key.pem"))).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let ends = now + time::Duration::seconds(3);
    let brief = authority
        .client_cert_between(
            Role::Operator,
            "brief",
            now - time::Duration::minutes(5),
            ends,
        )
        .unwrap();
    let id = Some((brief.cert_pem, brief.key_pem));
    let resumed = || {
        metric(
            &scrape_metrics(metrics_port),
            "muster_tls_handshakes_total{kind=\"resumed\"}",
        )
    };
    let summary = |id: Option<(String, String)>| {
        let ca = ca.clone();
        let url = c.url();
        async move {
            let ch = connect(&url, &ca, id).await.unwrap();
            OperatorClient::new(ch).summary(v1::SummaryRequest {}).await
        }
    };
    rt().block_on(async {
        summary(id.clone()).await.unwrap();
        assert_eq!(resumed(), Some(0.0));
        // A new connection with the same identity in the same process.
        summary(id.clone()).await.unwrap();
        assert_eq!(resumed(), Some(1.0), "the second connection resumed");

        while time::OffsetDateTime::now_utc() <= ends + time::Duration::seconds(1) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let e = summary(id.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        assert!(e.message().contains("expired"), "{e:?}");
        assert_eq!(resumed(), Some(2.0), "refused on a resumed session");
    });
}

/// Session tickets outlive the collector: a client that connected before a
/// restart resumes its session on the restarted collector. Without the key
/// file, its ticket no longer opens and it gets a full handshake instead,
/// not an error.
#[test]
fn a_restarted_collector_resumes_the_sessions_made_before_it() {
    let metrics_port = free_port();
    let mut c =
        Collector::start_with_config(&format!("metrics_listen = \"127.0.0.1:{metrics_port}\""));
    let ca = read(&c.data().join("ca.pem"));
    let id = Some((
        read(&c.data().join("operator/cert.pem")),
        read(&c.data().join("operator/key.pem")),
    ));
    let handshakes = || {
        let m = scrape_metrics(metrics_port);
        (
            metric(&m, "muster_tls_handshakes_total{kind=\"full\"}"),
            metric(&m, "muster_tls_handshakes_total{kind=\"resumed\"}"),
        )
    };
    let summary = |url: String| {
        let (ca, id) = (ca.clone(), id.clone());
        async move {
            let ch = connect(&url, &ca, id).await.unwrap();
            OperatorClient::new(ch)
                .summary(v1::SummaryRequest {})
                .await
                .unwrap();
        }
    };
    let rt = rt();
    rt.block_on(summary(c.url()));
    assert_eq!(handshakes(), (Some(1.0), Some(0.0)));
    let keys = c.data().join("ticket-keys");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&keys).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the ticket keys are secret");

    c.restart();
    rt.block_on(summary(c.url()));
    assert_eq!(
        handshakes(),
        (Some(0.0), Some(1.0)),
        "the restarted collector opened the ticket made before"
    );

    c.kill();
    std::fs::remove_file(&keys).unwrap();
    c.restart();
    rt.block_on(summary(c.url()));
    assert_eq!(
        handshakes(),
        (Some(1.0), Some(0.0)),
        "new keys: a full handshake, and the call served"
    );
}
