//! Prometheus metrics, served over plain HTTP at `GET /metrics` on the
//! address `metrics_listen` names. Counters live here; the fleet's gauges
//! (hosts by state, detections by product, exporters' lag) are read from
//! the store at each scrape, so every collector sharing a database reports
//! the same fleet.

use crate::server::State;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The collector's counters since it started.
#[derive(Default)]
pub struct Metrics {
    checkins: Mutex<BTreeMap<&'static str, u64>>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    exported: Mutex<BTreeMap<String, u64>>,
    reevaluated: AtomicU64,
    handshakes_full: AtomicU64,
    handshakes_resumed: AtomicU64,
}

impl Metrics {
    /// A check-in handled: `accepted`, `duplicate` or `missing_sections`.
    pub fn checkin(&self, outcome: &'static str) {
        *self
            .checkins
            .lock()
            .expect("not poisoned")
            .entry(outcome)
            .or_default() += 1;
    }

    /// A check-in refused, by reason: `invalid`, `unknown_host`,
    /// `revoked`, `store_error`.
    pub fn refused(&self, reason: &'static str) {
        *self
            .refused
            .lock()
            .expect("not poisoned")
            .entry(reason)
            .or_default() += 1;
    }

    /// `n` events delivered by exporter `name`.
    pub fn exported(&self, name: &str, n: u64) {
        *self
            .exported
            .lock()
            .expect("not poisoned")
            .entry(name.to_string())
            .or_default() += n;
    }

    /// A TLS handshake completed: a full one, or a resumed session.
    pub fn handshake(&self, resumed: bool) {
        let n = if resumed {
            &self.handshakes_resumed
        } else {
            &self.handshakes_full
        };
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` more hosts re-evaluated with the current catalog.
    pub fn reevaluated(&self, n: u64) {
        self.reevaluated.fetch_add(n, Ordering::Relaxed);
    }
}

/// A label value, escaped as the exposition format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The text exposition of every metric.
pub async fn render(state: &State) -> Result<String, crate::store::StoreError> {
    let m = &state.metrics;
    let mut out = String::new();
    head(
        &mut out,
        "muster_checkins_total",
        "counter",
        "Check-ins handled by this collector, by outcome.",
    );
    let checkins = m.checkins.lock().expect("not poisoned").clone();
    for outcome in ["accepted", "duplicate", "missing_sections", "deferred"] {
        let n = checkins.get(outcome).copied().unwrap_or(0);
        let _ = writeln!(out, "muster_checkins_total{{outcome=\"{outcome}\"}} {n}");
    }
    head(
        &mut out,
        "muster_checkins_refused_total",
        "counter",
        "Check-ins refused by this collector, by reason.",
    );
    let refused = m.refused.lock().expect("not poisoned").clone();
    for reason in ["invalid", "unknown_host", "revoked", "store_error"] {
        let n = refused.get(reason).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "muster_checkins_refused_total{{reason=\"{reason}\"}} {n}"
        );
    }
    head(
        &mut out,
        "muster_tls_handshakes_total",
        "counter",
        "TLS handshakes completed by this collector: full, or resuming an earlier session.",
    );
    for (kind, n) in [
        ("full", &m.handshakes_full),
        ("resumed", &m.handshakes_resumed),
    ] {
        let n = n.load(Ordering::Relaxed);
        let _ = writeln!(out, "muster_tls_handshakes_total{{kind=\"{kind}\"}} {n}");
    }

    let counts = state
        .store
        .fleet_counts(state.stale_before(), &state.banned_products())
        .await?;
    head(
        &mut out,
        "muster_hosts",
        "gauge",
        "Hosts in the fleet, by state.",
    );
    for (s, n) in [
        ("reporting", counts.reporting),
        ("stale", counts.stale),
        ("never_reported", counts.never_reported),
    ] {
        let _ = writeln!(out, "muster_hosts{{state=\"{s}\"}} {n}");
    }
    head(
        &mut out,
        "muster_hosts_with_banned_product",
        "gauge",
        "Hosts with a product some policy bans, in any state.",
    );
    let _ = writeln!(
        out,
        "muster_hosts_with_banned_product {}",
        counts.with_banned
    );
    head(
        &mut out,
        "muster_detections",
        "gauge",
        "Hosts where a product is present, by product.",
    );
    for (product, n) in state.store.product_counts().await? {
        let _ = writeln!(
            out,
            "muster_detections{{product=\"{}\"}} {n}",
            label(&product)
        );
    }

    let exporters = state.store.exporters().await?;
    let exported = m.exported.lock().expect("not poisoned").clone();
    let now = crate::store::now();
    let per_exporter =
        |out: &mut String,
         name: &str,
         kind: &str,
         help: &str,
         value: &dyn Fn(&crate::store::ExporterStatus) -> i64| {
            head(out, name, kind, help);
            for e in &exporters {
                let _ = writeln!(
                    out,
                    "{name}{{exporter=\"{}\"}} {}",
                    label(&e.name),
                    value(e)
                );
            }
        };
    per_exporter(
        &mut out,
        "muster_siem_lag_events",
        "gauge",
        "Events waiting in the outbox for each exporter.",
        &|e| e.lag,
    );
    per_exporter(
        &mut out,
        "muster_siem_lag_seconds",
        "gauge",
        "Age of the oldest event waiting for each exporter (0: none).",
        &|e| e.oldest_waiting_at.map(|t| (now - t).max(0)).unwrap_or(0),
    );
    per_exporter(
        &mut out,
        "muster_siem_delivered_total",
        "counter",
        "Events each exporter delivered, by all collectors.",
        &|e| e.sent,
    );
    per_exporter(
        &mut out,
        "muster_siem_dropped_total",
        "counter",
        "Events each exporter never sent because they outlived siem_retention.",
        &|e| e.dropped,
    );
    per_exporter(
        &mut out,
        "muster_siem_failing",
        "gauge",
        "1 when an exporter's last attempt failed.",
        &|e| i64::from(!e.last_error.is_empty()),
    );
    head(
        &mut out,
        "muster_siem_exported_total",
        "counter",
        "Events delivered by this collector's exporters since it started.",
    );
    for (name, n) in &exported {
        let _ = writeln!(
            out,
            "muster_siem_exported_total{{exporter=\"{}\"}} {n}",
            label(name)
        );
    }
    let c = &state.catalog;
    head(
        &mut out,
        "muster_catalog_info",
        "gauge",
        "The catalog this collector evaluates with (always 1).",
    );
    let _ = writeln!(
        out,
        "muster_catalog_info{{version=\"{}\",digest=\"{}\",products=\"{}\"}} 1",
        label(&c.version),
        label(&c.digest),
        c.products.len()
    );
    head(
        &mut out,
        "muster_reevaluation_pending_hosts",
        "gauge",
        "Stored inventories not yet evaluated with this catalog.",
    );
    let pending = state.store.pending_evaluation(&c.digest).await?;
    let _ = writeln!(out, "muster_reevaluation_pending_hosts {pending}");
    head(
        &mut out,
        "muster_reevaluated_hosts_total",
        "counter",
        "Hosts this collector re-evaluated with its catalog since it started.",
    );
    let _ = writeln!(
        out,
        "muster_reevaluated_hosts_total {}",
        m.reevaluated.load(Ordering::Relaxed)
    );
    Ok(out)
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let state = state.clone();
            async move {
                match render(&state).await {
                    Ok(text) => (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics: cannot read the store");
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("cannot read the store: {e}\n"),
                        )
                            .into_response()
                    }
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
