//! The read model of GitSyncs shared by the CLI (`status`, `rebuild --wait`) and the HTTP API:
//! the summary of one GitSync ([`summarize`]), the rule for "this sync or rebuild request has
//! been handled" ([`request_state`]), and a watch-fed cache of every GitSync ([`Syncs`]).
//!
//! Everything here is computed from the GitSync object alone (spec, annotations, status): no
//! API call, no clock. Drift is reported as field paths, never values.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use tokio::sync::watch;

use crate::conditions::ConditionStatus::{False, True};
use crate::conditions::{self, Condition, READY, RECONCILING, STALLED};
use crate::crd::{
    ANNOTATION_REBUILD_REQUESTED, ANNOTATION_SYNC_REQUESTED, DEFAULT_BRANCH, GitSync,
    ReconcileRecord,
};

/// A GitSync's namespace and name; displayed `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SyncKey {
    pub namespace: String,
    pub name: String,
}

impl SyncKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        SyncKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a GitSync object.
    pub fn of(sync: &GitSync) -> Self {
        SyncKey::new(
            sync.metadata.namespace.clone().unwrap_or_default(),
            sync.metadata.name.clone().unwrap_or_default(),
        )
    }
}

impl std::fmt::Display for SyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where a GitSync stands, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// The last sync succeeded (`Ready=True`) and none runs.
    Ready,
    /// A sync runs, or waits for its dependencies.
    Progressing,
    /// The last sync failed and will be retried.
    Failed,
    /// The last sync failed in a way that repeats until git or the spec changes.
    Stalled,
    /// `spec.suspend` is set.
    Suspended,
    /// Not synced yet.
    Unknown,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Ready => "Ready",
            Phase::Progressing => "Progressing",
            Phase::Failed => "Failed",
            Phase::Stalled => "Stalled",
            Phase::Suspended => "Suspended",
            Phase::Unknown => "Unknown",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

/// Objects of the last applied revision by health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectCountsView {
    pub total: u32,
    pub current: u32,
    pub in_progress: u32,
    pub failed: u32,
    pub terminating: u32,
    pub not_found: u32,
    pub unknown: u32,
}

/// An object that is not Current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectHealthView {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub health: String,
    pub message: String,
}

/// A drifted object: field paths only, no values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftView {
    /// `Kind.group/namespace/name`.
    pub object: String,
    pub fields: Vec<String>,
    /// Missing from the cluster (then `fields` is empty).
    pub missing: bool,
}

/// Time spent in one stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageView {
    pub name: String,
    pub duration_seconds: f64,
}

/// One sync or rebuild.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub revision: Option<String>,
    pub start: String,
    pub end: String,
    pub duration_seconds: f64,
    /// `Succeeded` or the failure reason.
    pub result: String,
    pub changes: BTreeMap<String, u32>,
    pub stages: Vec<StageView>,
}

impl RunView {
    fn of(r: &ReconcileRecord) -> Self {
        RunView {
            revision: r.revision.clone(),
            start: r.start.clone(),
            end: r.end.clone(),
            duration_seconds: seconds(r.duration_ms),
            result: r.result.clone(),
            changes: r.changes.clone(),
            stages: r
                .stages
                .iter()
                .map(|s| StageView {
                    name: s.name.clone(),
                    duration_seconds: seconds(s.duration_ms),
                })
                .collect(),
        }
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Everything worth showing about one GitSync.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncSummary {
    pub namespace: String,
    pub name: String,
    /// `spec.repository.url`.
    pub url: String,
    /// `branch main`, `tag v1` or `commit <sha>`.
    pub reference: String,
    /// `spec.path` (empty: the repository root).
    pub path: String,
    pub suspended: bool,
    pub phase: Phase,
    /// Of `Ready` (of `Stalled` when stalled).
    pub reason: Option<String>,
    pub message: Option<String>,
    /// `status.lastAppliedRevision`.
    pub revision: Option<String>,
    pub attempted_revision: Option<String>,
    pub conditions: Vec<ConditionView>,
    pub objects: ObjectCountsView,
    pub unhealthy: Vec<ObjectHealthView>,
    pub drifted: u32,
    pub drift: Vec<DriftView>,
    pub last_reconcile: Option<RunView>,
    pub last_rebuild: Option<RunView>,
}

impl SyncSummary {
    pub fn key(&self) -> SyncKey {
        SyncKey::new(&self.namespace, &self.name)
    }
}

/// The phase of a GitSync: suspended, stalled, progressing (a sync runs or waits for its
/// dependencies; a failed sync waiting for its retry is `Failed`), ready, failed, or unknown.
pub fn phase(sync: &GitSync) -> Phase {
    if sync.spec.suspend {
        return Phase::Suspended;
    }
    let Some(status) = &sync.status else {
        return Phase::Unknown;
    };
    let c = &status.conditions;
    if conditions::is_true(c, STALLED) {
        return Phase::Stalled;
    }
    let reconciling = conditions::get(c, RECONCILING).filter(|r| r.status() == True);
    if reconciling.is_some_and(|r| r.reason != conditions::REASON_RETRYING) {
        return Phase::Progressing;
    }
    match conditions::get(c, READY).map(Condition::status) {
        Some(True) => Phase::Ready,
        Some(False) => Phase::Failed,
        _ if reconciling.is_some() => Phase::Progressing,
        _ => Phase::Unknown,
    }
}

/// The summary of a GitSync.
pub fn summarize(sync: &GitSync) -> SyncSummary {
    let key = SyncKey::of(sync);
    let phase = phase(sync);
    let status = sync.status.clone().unwrap_or_default();
    let verdict = if phase == Phase::Stalled {
        conditions::get(&status.conditions, STALLED)
    } else {
        conditions::get(&status.conditions, READY)
    };
    let r = &sync.spec.repository.reference;
    let reference = match (&r.branch, &r.tag, &r.commit) {
        (_, Some(t), _) => format!("tag {t}"),
        (_, _, Some(c)) => format!("commit {c}"),
        (Some(b), _, _) => format!("branch {b}"),
        (None, None, None) => format!("branch {DEFAULT_BRANCH}"),
    };
    let objects = status
        .objects
        .as_ref()
        .map(|o| ObjectCountsView {
            total: o.total,
            current: o.current,
            in_progress: o.in_progress,
            failed: o.failed,
            terminating: o.terminating,
            not_found: o.not_found,
            unknown: o.unknown,
        })
        .unwrap_or_default();
    SyncSummary {
        namespace: key.namespace,
        name: key.name,
        url: sync.spec.repository.url.clone(),
        reference,
        path: sync.spec.path.clone(),
        suspended: sync.spec.suspend,
        phase,
        reason: verdict.map(|c| c.reason.clone()),
        message: verdict.map(|c| c.message.clone()),
        revision: status.last_applied_revision.clone(),
        attempted_revision: status.last_attempted_revision.clone(),
        conditions: status
            .conditions
            .iter()
            .map(|c| ConditionView {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
            .collect(),
        objects,
        unhealthy: status
            .unhealthy
            .iter()
            .map(|u| ObjectHealthView {
                kind: u.kind.clone(),
                namespace: u.namespace.clone(),
                name: u.name.clone(),
                health: u.health.clone(),
                message: u.message.clone(),
            })
            .collect(),
        drifted: status.drift.as_ref().map_or(0, |d| d.drifted),
        drift: status
            .drift
            .as_ref()
            .map(|d| {
                d.details
                    .iter()
                    .map(|o| DriftView {
                        object: o.object.clone(),
                        fields: o.fields.clone(),
                        missing: o.missing,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        last_reconcile: status.last_reconcile.as_ref().map(RunView::of),
        last_rebuild: status.last_rebuild.as_ref().map(RunView::of),
    }
}

/// The two kinds of request ([`crate::Handle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RequestKind {
    /// "Sync now": annotation `headway.dev/sync-requested-at`.
    Sync,
    /// "Rebuild": annotation `headway.dev/rebuild-requested-at`.
    Rebuild,
}

impl RequestKind {
    /// The annotation that carries the request.
    pub fn annotation(self) -> &'static str {
        match self {
            RequestKind::Sync => ANNOTATION_SYNC_REQUESTED,
            RequestKind::Rebuild => ANNOTATION_REBUILD_REQUESTED,
        }
    }
}

/// Where a sync or rebuild request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum RequestState {
    /// Not picked up by the controller yet.
    Pending,
    /// Picked up; the sync runs (or its verdict is not written yet).
    Running,
    /// Handled: `ok` when the GitSync is Ready after it.
    Done { ok: bool },
}

/// Where the request `value` (as returned by [`crate::Handle`]) of `kind` stands: pending until
/// the status records it (or a later request) as handled, running while `Reconciling=True`
/// (except `Retrying`: that run failed), then done, successful when `Ready=True`.
pub fn request_state(sync: &GitSync, kind: RequestKind, value: &str) -> RequestState {
    let Some(status) = &sync.status else {
        return RequestState::Pending;
    };
    let handled = match kind {
        RequestKind::Sync => status.last_handled_sync_request.as_deref(),
        RequestKind::Rebuild => status.last_handled_rebuild_request.as_deref(),
    };
    if !handled.is_some_and(|h| covers(h, value)) {
        return RequestState::Pending;
    }
    // A run in progress; `Retrying` is not one: the run that handled the request failed, and
    // the retries are ordinary syncs.
    let running = conditions::get(&status.conditions, RECONCILING)
        .is_some_and(|c| c.status() == True && c.reason != conditions::REASON_RETRYING);
    if running {
        return RequestState::Running;
    }
    match conditions::get(&status.conditions, READY).map(Condition::status) {
        Some(True) => RequestState::Done { ok: true },
        Some(_) => RequestState::Done { ok: false },
        None => RequestState::Running,
    }
}

/// Whether handling the request `handled` also handled `value`: the same value, or a later
/// time (a run started for a later request saw the spec and git of the earlier one too).
fn covers(handled: &str, value: &str) -> bool {
    if handled == value {
        return true;
    }
    match (
        crate::schedule::parse_time(handled),
        crate::schedule::parse_time(value),
    ) {
        (Some(h), Some(v)) => h > v,
        _ => false,
    }
}

/// A cache of GitSyncs fed by one watch: reads never call the API server. Clones share it.
#[derive(Clone)]
pub struct Syncs {
    store: Store<GitSync>,
    ready: watch::Receiver<bool>,
}

impl Syncs {
    /// Starts a reflector over the GitSyncs of `namespace` (every namespace for `None`). The
    /// returned future drives it and runs until dropped: spawn it. Watch errors are retried
    /// with backoff, never fatal.
    pub fn start(
        client: kube::Client,
        namespace: Option<String>,
    ) -> (Syncs, impl Future<Output = ()> + Send + 'static) {
        let api: Api<GitSync> = match &namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let (store, writer) = reflector::store();
        let (ready_tx, ready) = watch::channel(false);
        let reader = store.clone();
        let drive = async move {
            let stream = watcher(api, watcher::Config::default().any_semantic())
                .default_backoff()
                .reflect(writer)
                .for_each(|event| {
                    if let Err(e) = event {
                        tracing::warn!(error = %e, "GitSync watch (retrying)");
                    }
                    futures::future::ready(())
                });
            let mark_ready = async move {
                if reader.wait_until_ready().await.is_ok() {
                    let _ = ready_tx.send(true);
                }
                // Keep the sender alive so that readers never see the channel closed.
                std::future::pending::<()>().await;
            };
            tokio::select! {
                () = stream => {}
                () = mark_ready => {}
            }
        };
        (Syncs { store, ready }, drive)
    }

    /// Whether the initial list has been received.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the initial list has been received.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Waits at most `timeout` for the initial list; whether it arrived.
    pub async fn wait_ready_for(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.wait_ready())
            .await
            .is_ok()
    }

    /// Every GitSync, sorted by namespace and name.
    pub fn list(&self) -> Vec<Arc<GitSync>> {
        let mut all = self.store.state();
        all.sort_by_cached_key(|s| SyncKey::of(s));
        all
    }

    /// One GitSync.
    pub fn get(&self, key: &SyncKey) -> Option<Arc<GitSync>> {
        self.store
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn sync(spec: Value, status: Value) -> GitSync {
        let mut spec_full = json!({"repository": {"url": "https://git.example.com/x.git"}});
        if let (Some(base), Some(extra)) = (spec_full.as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({
            "apiVersion": "headway.dev/v1alpha1",
            "kind": "GitSync",
            "metadata": {"name": "shop", "namespace": "apps"},
            "spec": spec_full,
            "status": status,
        }))
        .unwrap()
    }

    fn cond(kind: &str, status: &str, reason: &str) -> Value {
        json!({"type": kind, "status": status, "reason": reason, "message": format!("{kind} {reason}"),
               "lastTransitionTime": "2026-11-26T12:00:00Z"})
    }

    #[test]
    fn a_request_is_done_when_handled_not_reconciling_and_has_a_verdict() {
        let value = "2026-11-26T12:00:00.000Z";
        let check = |kind: RequestKind, status: Value, expected: RequestState| {
            assert_eq!(
                request_state(&sync(json!({}), status.clone()), kind, value),
                expected,
                "{kind:?} {status}"
            );
        };
        use RequestKind::{Rebuild, Sync};
        use RequestState::{Done, Pending, Running};
        check(Rebuild, json!({}), Pending);
        check(Rebuild, Value::Null, Pending);
        // Another request handled, not this one.
        check(
            Rebuild,
            json!({"lastHandledRebuildRequest": "2026-11-26T11:00:00.000Z",
                   "conditions": [cond("Ready", "True", "ReconciliationSucceeded")]}),
            Pending,
        );
        // Only the sync request of the same value was handled.
        check(
            Rebuild,
            json!({"lastHandledSyncRequest": value,
                   "conditions": [cond("Ready", "True", "ReconciliationSucceeded")]}),
            Pending,
        );
        check(
            Rebuild,
            json!({"lastHandledRebuildRequest": value,
                   "conditions": [cond("Ready", "True", "ReconciliationSucceeded"),
                                  cond("Reconciling", "True", "Progressing")]}),
            Running,
        );
        check(
            Rebuild,
            json!({"lastHandledRebuildRequest": value,
                   "conditions": [cond("Reconciling", "False", "Progressing")]}),
            Running,
        );
        // Failed, retrying with backoff: the retries are ordinary syncs, the rebuild is over.
        check(
            Rebuild,
            json!({"lastHandledRebuildRequest": value,
                   "conditions": [cond("Ready", "False", "FetchFailed"),
                                  cond("Reconciling", "True", "Retrying")]}),
            Done { ok: false },
        );
        check(
            Rebuild,
            json!({"lastHandledRebuildRequest": value,
                   "conditions": [cond("Ready", "True", "ReconciliationSucceeded"),
                                  cond("Reconciling", "False", "ReconciliationSucceeded")]}),
            Done { ok: true },
        );
        check(
            Rebuild,
            json!({"lastHandledRebuildRequest": value,
                   "conditions": [cond("Ready", "False", "ApplyFailed")]}),
            Done { ok: false },
        );
        // A later request covers this one.
        check(
            Sync,
            json!({"lastHandledSyncRequest": "2026-11-26T12:00:05.000Z",
                   "conditions": [cond("Ready", "True", "ReconciliationSucceeded")]}),
            Done { ok: true },
        );
        // Not a time: only the same value counts.
        check(
            Sync,
            json!({"lastHandledSyncRequest": "zzz",
                   "conditions": [cond("Ready", "True", "ReconciliationSucceeded")]}),
            Pending,
        );
    }

    #[test]
    fn the_phase_follows_the_conditions() {
        let check = |spec: Value, status: Value, expected: Phase| {
            assert_eq!(phase(&sync(spec, status.clone())), expected, "{status}");
        };
        check(json!({}), Value::Null, Phase::Unknown);
        check(json!({"suspend": true}), json!({}), Phase::Suspended);
        check(
            json!({}),
            json!({"conditions": [cond("Ready", "True", "ReconciliationSucceeded"),
                                  cond("Reconciling", "False", "ReconciliationSucceeded")]}),
            Phase::Ready,
        );
        check(
            json!({}),
            json!({"conditions": [cond("Ready", "True", "ReconciliationSucceeded"),
                                  cond("Reconciling", "True", "Progressing")]}),
            Phase::Progressing,
        );
        check(
            json!({}),
            json!({"conditions": [cond("Ready", "False", "FetchFailed"),
                                  cond("Reconciling", "True", "Retrying")]}),
            Phase::Failed,
        );
        check(
            json!({}),
            json!({"conditions": [cond("Ready", "False", "RenderFailed"),
                                  cond("Stalled", "True", "RenderFailed")]}),
            Phase::Stalled,
        );
        check(
            json!({}),
            json!({"conditions": [cond("Reconciling", "True", "Progressing")]}),
            Phase::Progressing,
        );
    }

    #[test]
    fn a_summary_has_everything_from_spec_and_status() {
        let s = sync(
            json!({"repository": {"url": "git://h/r.git", "ref": {"tag": "v1"}}, "path": "apps"}),
            json!({
                "lastAppliedRevision": "v1@sha1:abc",
                "lastAttemptedRevision": "v1@sha1:abd",
                "conditions": [cond("Ready", "False", "HealthCheckFailed"),
                               cond("Reconciling", "False", "HealthCheckFailed")],
                "objects": {"total": 3, "current": 2, "inProgress": 1, "failed": 0,
                            "terminating": 0, "notFound": 0, "unknown": 0},
                "unhealthy": [{"kind": "Deployment.apps", "namespace": "apps", "name": "web",
                               "health": "InProgress", "message": "0/1 ready"}],
                "drift": {"drifted": 2, "objects": ["x"], "details": [
                    {"object": "ConfigMap/apps/c", "fields": ["data.a"]},
                    {"object": "Service/apps/s", "missing": true}]},
                "lastRebuild": {"revision": "v1@sha1:abc", "start": "a", "end": "b",
                                "durationMs": 1500, "duration": "1.500s", "result": "Succeeded",
                                "changes": {"created": 3},
                                "stages": [{"name": "fetch", "durationMs": 250}]},
            }),
        );
        let summary = summarize(&s);
        assert_eq!(summary.key().to_string(), "apps/shop");
        assert_eq!(summary.url, "git://h/r.git");
        assert_eq!(summary.reference, "tag v1");
        assert_eq!(summary.path, "apps");
        assert_eq!(summary.phase, Phase::Failed);
        assert_eq!(summary.reason.as_deref(), Some("HealthCheckFailed"));
        assert_eq!(summary.message.as_deref(), Some("Ready HealthCheckFailed"));
        assert_eq!(summary.revision.as_deref(), Some("v1@sha1:abc"));
        assert_eq!(summary.attempted_revision.as_deref(), Some("v1@sha1:abd"));
        assert_eq!(summary.objects.in_progress, 1);
        assert_eq!(summary.unhealthy[0].name, "web");
        assert_eq!(summary.drifted, 2);
        assert_eq!(
            summary.drift,
            vec![
                DriftView {
                    object: "ConfigMap/apps/c".into(),
                    fields: vec!["data.a".into()],
                    missing: false
                },
                DriftView {
                    object: "Service/apps/s".into(),
                    fields: vec![],
                    missing: true
                }
            ]
        );
        let rebuild = summary.last_rebuild.clone().unwrap();
        assert_eq!(rebuild.duration_seconds, 1.5);
        assert_eq!(rebuild.stages[0].duration_seconds, 0.25);
        assert!(summary.last_reconcile.is_none());
        let v = serde_json::to_value(&summary).unwrap();
        assert_eq!(v["phase"], "Failed");
        assert_eq!(v["conditions"][0]["type"], "Ready");
        assert_eq!(v["lastRebuild"]["durationSeconds"], 1.5);
        assert_eq!(v["objects"]["inProgress"], 1);

        let bare = summarize(&sync(json!({}), Value::Null));
        assert_eq!(bare.reference, "branch main");
        assert_eq!(bare.phase, Phase::Unknown);
        assert_eq!(bare.reason, None);
        assert!(bare.conditions.is_empty());

        let stalled = summarize(&sync(
            json!({"repository": {"url": "u", "ref": {"commit": "0123"}}}),
            json!({"conditions": [cond("Ready", "False", "RenderFailed"),
                                  cond("Stalled", "True", "RenderFailed")]}),
        ));
        assert_eq!(stalled.reference, "commit 0123");
        assert_eq!(stalled.message.as_deref(), Some("Stalled RenderFailed"));
    }
}
