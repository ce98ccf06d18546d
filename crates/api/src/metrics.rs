//! `/metrics` in the OpenMetrics text format (prometheus-client): durations fed from the
//! progress bus as they happen, per-sync state (revision, health, drift, last rebuild) read from
//! the reflector cache at scrape time, webhook counts from the webhook handler.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use headway_controller::GitSync;
use headway_controller::progress::{ProgressEvent, ProgressKind, RunKind};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::provider::Provider;

type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 5 ms .. ~80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The metrics recorded as things happen.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconcile: Histograms,
    fetch: Histograms,
    rebuild: Histograms,
    webhooks: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let reconcile = Histograms::new_with_constructor(duration_histogram as fn() -> Histogram);
        let fetch = Histograms::new_with_constructor(duration_histogram as fn() -> Histogram);
        let rebuild = Histograms::new_with_constructor(duration_histogram as fn() -> Histogram);
        let webhooks = Family::<Labels, Counter>::default();
        let mut registry = Registry::with_prefix("headway");
        registry.register_with_unit(
            "reconcile_duration",
            "Time per reconcile stage (fetch, render, apply stages, prune, wait) and per whole run (stage \"total\"), by sync and result",
            Unit::Seconds,
            reconcile.clone(),
        );
        registry.register_with_unit(
            "git_fetch_duration",
            "Time of git fetches, by sync",
            Unit::Seconds,
            fetch.clone(),
        );
        registry.register_with_unit(
            "rebuild_duration",
            "Time of rebuilds (fresh fetch, every object re-applied, healthy): the time to recover, by sync and result",
            Unit::Seconds,
            rebuild.clone(),
        );
        registry.register(
            "webhook_requests",
            "Webhook deliveries by provider and result (accepted, no_match, ping, ignored, unauthorized, too_large, bad_payload, unavailable, failed)",
            webhooks.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconcile,
            fetch,
            rebuild,
            webhooks,
        }
    }

    /// Counts a webhook delivery.
    pub fn webhook(&self, provider: Provider, result: &str) {
        self.webhooks
            .get_or_create(&vec![
                ("provider".into(), provider.as_str().into()),
                ("result".into(), result.into()),
            ])
            .inc();
    }

    /// Records one progress event.
    pub fn record(&self, event: &ProgressEvent) {
        let sync = event.sync.to_string();
        match &event.kind {
            ProgressKind::StageFinished {
                stage,
                detail,
                duration_seconds,
                ok,
                ..
            } => {
                // Apply stages are told apart by their detail (`apply workloads`, ...).
                let name = match detail.as_deref().filter(|d| !d.is_empty()) {
                    Some(d) if d.starts_with(&label(stage)) => d.to_string(),
                    Some(d) => format!("{} {d}", label(stage)),
                    None => label(stage),
                };
                self.reconcile
                    .get_or_create(&vec![
                        ("sync".into(), sync.clone()),
                        ("stage".into(), name),
                        ("result".into(), result(*ok).into()),
                    ])
                    .observe(*duration_seconds);
                if label(stage) == "fetch" && *ok {
                    self.fetch
                        .get_or_create(&vec![("sync".into(), sync)])
                        .observe(*duration_seconds);
                }
            }
            ProgressKind::RunFinished {
                ok,
                duration_seconds,
                ..
            } => {
                self.reconcile
                    .get_or_create(&vec![
                        ("sync".into(), sync.clone()),
                        ("stage".into(), "total".into()),
                        ("result".into(), result(*ok).into()),
                    ])
                    .observe(*duration_seconds);
                if matches!(event.run, RunKind::Rebuild) {
                    self.rebuild
                        .get_or_create(&vec![
                            ("sync".into(), sync),
                            ("result".into(), result(*ok).into()),
                        ])
                        .observe(*duration_seconds);
                }
            }
            _ => {}
        }
    }

    /// Spawns the task that records every event of the bus.
    pub fn feed_from(&self, mut receiver: Receiver<ProgressEvent>) {
        let metrics = self.clone();
        tokio::spawn(async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => metrics.record(&event),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "metrics missed progress events")
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }

    /// The OpenMetrics text: the recorded metrics, the state of `syncs`, and whether this
    /// replica leads (`leader`, when known).
    pub fn encode(
        &self,
        syncs: &[Arc<GitSync>],
        leader: Option<bool>,
    ) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode_registry(&mut out, &self.registry)?;
        encode_registry(&mut out, &state_registry(syncs))?;
        if let Some(leader) = leader {
            let gauge = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
            gauge.set(i64::from(leader));
            let mut registry = Registry::with_prefix("headway");
            registry.register(
                "leader",
                "Whether this replica holds the leader Lease and runs the syncs (1) or waits (0)",
                gauge,
            );
            encode_registry(&mut out, &registry)?;
        }
        encode_eof(&mut out)?;
        Ok(out)
    }
}

fn result(ok: bool) -> &'static str {
    if ok { "success" } else { "failure" }
}

/// A stage's name as it is serialised (`fetch`, `apply`, ...).
fn label<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s.to_ascii_lowercase(),
        Ok(other) => other.to_string(),
        Err(_) => "unknown".into(),
    }
}

/// Per-sync gauges from the cache.
fn state_registry(syncs: &[Arc<GitSync>]) -> Registry {
    let revision = Family::<Labels, Gauge>::default();
    let ready = Family::<Labels, Gauge>::default();
    let objects = Family::<Labels, Gauge>::default();
    let drifted = Family::<Labels, Gauge>::default();
    let last_rebuild_duration = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let last_rebuild_time = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for s in syncs {
        let sync = format!(
            "{}/{}",
            s.metadata.namespace.as_deref().unwrap_or_default(),
            s.metadata.name.as_deref().unwrap_or_default()
        );
        let Some(status) = &s.status else { continue };
        if let Some(c) = status.conditions.iter().find(|c| c.type_ == "Ready") {
            ready
                .get_or_create(&vec![("sync".into(), sync.clone())])
                .set(i64::from(c.status == "True"));
        }
        if let Some(r) = &status.last_applied_revision {
            revision
                .get_or_create(&vec![
                    ("sync".into(), sync.clone()),
                    ("revision".into(), r.clone()),
                ])
                .set(1);
        }
        if let Some(c) = &status.objects {
            for (health, n) in [
                ("current", c.current),
                ("in_progress", c.in_progress),
                ("failed", c.failed),
                ("terminating", c.terminating),
                ("not_found", c.not_found),
                ("unknown", c.unknown),
            ] {
                objects
                    .get_or_create(&vec![
                        ("sync".into(), sync.clone()),
                        ("health".into(), health.into()),
                    ])
                    .set(i64::from(n));
            }
        }
        if let Some(d) = &status.drift {
            drifted
                .get_or_create(&vec![("sync".into(), sync.clone())])
                .set(i64::from(d.drifted));
        }
        if let Some(r) = &status.last_rebuild {
            last_rebuild_duration
                .get_or_create(&vec![("sync".into(), sync.clone())])
                .set(r.duration_ms as f64 / 1000.0);
            if let Ok(end) = r.end.parse::<k8s_openapi::jiff::Timestamp>() {
                last_rebuild_time
                    .get_or_create(&vec![("sync".into(), sync.clone())])
                    .set(end.as_millisecond() as f64 / 1000.0);
            }
        }
    }
    let mut registry = Registry::with_prefix("headway");
    registry.register(
        "last_applied_revision_info",
        "The revision each sync applied last (value 1)",
        revision,
    );
    registry.register(
        "sync_ready",
        "Whether each sync's Ready condition is True (1) or not (0: failing, or still reconciling)",
        ready,
    );
    registry.register(
        "objects",
        "Objects of each sync's applied revision, by health (kstatus)",
        objects,
    );
    registry.register(
        "drifted_objects",
        "Objects that differ from git at the last drift check",
        drifted,
    );
    registry.register_with_unit(
        "last_rebuild_duration",
        "Duration of each sync's last rebuild (time to recover)",
        Unit::Seconds,
        last_rebuild_duration,
    );
    registry.register(
        "last_rebuild_timestamp_seconds",
        "End of each sync's last rebuild, Unix time",
        last_rebuild_time,
    );
    registry
}

/// `GET /metrics`.
pub async fn handler(State(state): State<AppState>) -> Response {
    let syncs = state.inner.syncs.list();
    let leader = state
        .inner
        .config
        .leadership
        .as_ref()
        .map(|l| l.is_leader());
    match state.inner.metrics.encode(&syncs, leader) {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(name: &str, ready: Option<&str>) -> Arc<GitSync> {
        let conditions: Vec<serde_json::Value> = ready
            .map(|status| {
                serde_json::json!({"type": "Ready", "status": status, "reason": "R", "message": "",
                                   "lastTransitionTime": "2026-01-01T00:00:00Z"})
            })
            .into_iter()
            .collect();
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "headway.dev/v1alpha1", "kind": "GitSync",
                "metadata": {"name": name, "namespace": "apps"},
                "spec": {"repository": {"url": "https://git.example.com/r.git"}},
                "status": {"conditions": conditions},
            }))
            .expect("a GitSync"),
        )
    }

    #[test]
    fn ready_and_leader_gauges() {
        let metrics = Metrics::new();
        let syncs = [
            sync("up", Some("True")),
            sync("down", Some("False")),
            sync("new", None),
        ];
        let text = metrics.encode(&syncs, Some(true)).unwrap();
        assert!(
            text.contains("headway_sync_ready{sync=\"apps/up\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("headway_sync_ready{sync=\"apps/down\"} 0\n"),
            "{text}"
        );
        assert!(
            !text.contains("apps/new"),
            "no condition, no sample: {text}"
        );
        assert!(text.contains("\nheadway_leader 1\n"), "{text}");
        let text = metrics.encode(&syncs, Some(false)).unwrap();
        assert!(text.contains("\nheadway_leader 0\n"), "{text}");
        let text = metrics.encode(&syncs, None).unwrap();
        assert!(!text.contains("headway_leader"), "{text}");
    }
}
