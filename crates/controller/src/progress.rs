//! Progress as data: what a running sync or rebuild is doing, published as plain events on a
//! broadcast [`Bus`] for whoever listens (the HTTP API's event stream, tests, the CLI).
//!
//! The pipeline publishes; nobody answers. A slow listener loses the oldest events (it sees
//! `RecvError::Lagged`), the pipeline never waits for it. Events carry no secret and no object
//! content: names, counts, durations, the revision and the failure reason and message.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::view::SyncKey;

/// What kind of run an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RunKind {
    /// An ordinary sync (interval, spec change, "sync now").
    Sync,
    /// A rebuild: fresh fetch, every object re-applied.
    Rebuild,
}

/// The named steps of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    Fetch,
    Render,
    /// One event pair per apply stage; `detail` names it (`apply definitions`, `apply classes`,
    /// `apply workloads`).
    Apply,
    Prune,
    Wait,
}

impl Stage {
    /// The stage's name as in `status.lastReconcile.stages` (without the apply stage's detail).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Render => "render",
            Stage::Apply => "apply",
            Stage::Prune => "prune",
            Stage::Wait => "wait",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One progress event of one run of one GitSync.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressEvent {
    pub sync: SyncKey,
    pub run: RunKind,
    /// Unique per reconcile run (every event of one run carries the same value).
    pub run_id: String,
    /// When it happened (RFC 3339, milliseconds).
    pub at: String,
    #[serde(flatten)]
    pub kind: ProgressKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum ProgressKind {
    /// A run began; the revision is known only after the fetch (`None` here, usually).
    #[serde(rename_all = "camelCase")]
    RunStarted { revision: Option<String> },
    /// A stage began; `total` objects when known.
    #[serde(rename_all = "camelCase")]
    StageStarted {
        stage: Stage,
        detail: Option<String>,
        total: Option<u64>,
    },
    /// Objects done so far in a stage (applied, deleted, or healthy while waiting).
    #[serde(rename_all = "camelCase")]
    StageProgress { stage: Stage, done: u64, total: u64 },
    /// A stage ended; `count` objects it handled when known.
    #[serde(rename_all = "camelCase")]
    StageFinished {
        stage: Stage,
        detail: Option<String>,
        duration_seconds: f64,
        count: Option<u64>,
        ok: bool,
    },
    /// A run ended; on failure `reason` is the failing step's reason (`FetchFailed`, ...).
    #[serde(rename_all = "camelCase")]
    RunFinished {
        ok: bool,
        reason: Option<String>,
        message: Option<String>,
        revision: Option<String>,
        duration_seconds: f64,
        fetch_seconds: Option<f64>,
    },
}

/// A broadcast channel of [`ProgressEvent`]s; clones share the channel.
#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<ProgressEvent>,
}

impl Bus {
    /// A bus keeping at most `capacity` events for a slow subscriber (at least 1).
    pub fn new(capacity: usize) -> Bus {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Bus { tx }
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ProgressEvent> {
        self.tx.subscribe()
    }

    /// Publishes an event; without subscribers it is dropped.
    pub fn publish(&self, e: ProgressEvent) {
        let _ = self.tx.send(e);
    }
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new(1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_serialise_flat_with_an_event_tag() {
        let e = ProgressEvent {
            sync: SyncKey::new("apps", "shop"),
            run: RunKind::Rebuild,
            run_id: "r1".into(),
            at: "2026-12-01T12:00:00.000Z".into(),
            kind: ProgressKind::StageProgress {
                stage: Stage::Apply,
                done: 412,
                total: 1000,
            },
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"sync": {"namespace": "apps", "name": "shop"}, "run": "rebuild", "runId": "r1",
                   "at": "2026-12-01T12:00:00.000Z", "event": "stageProgress", "stage": "apply",
                   "done": 412, "total": 1000})
        );
        let finished = ProgressKind::RunFinished {
            ok: true,
            reason: None,
            message: None,
            revision: Some("main@sha1:abc".into()),
            duration_seconds: 1.5,
            fetch_seconds: Some(0.25),
        };
        let v = serde_json::to_value(&finished).unwrap();
        assert_eq!(v["event"], "runFinished");
        assert_eq!(v["durationSeconds"], 1.5);
        assert_eq!(v["fetchSeconds"], 0.25);
    }

    #[tokio::test]
    async fn every_subscriber_sees_every_event() {
        let bus = Bus::new(8);
        let mut a = bus.subscribe();
        let mut b = bus.clone().subscribe();
        let e = ProgressEvent {
            sync: SyncKey::new("ns", "n"),
            run: RunKind::Sync,
            run_id: "x".into(),
            at: "t".into(),
            kind: ProgressKind::RunStarted { revision: None },
        };
        bus.publish(e.clone());
        assert_eq!(a.recv().await.unwrap(), e);
        assert_eq!(b.recv().await.unwrap(), e);
    }
}
