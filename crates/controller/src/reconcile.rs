//! One reconcile of one GitSync: the finalizer, the decision to sync ([`crate::schedule`]), the
//! dependency check, and the pipeline fetch → render → apply → prune → wait (→ drift check),
//! ending in one status write and one Event.
//!
//! Architecture invariant: nothing is applied or pruned unless the fetch and the render both
//! succeeded completely (only then does a `RenderedSet` exist).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use headway_apply::{ApplyError, DriftState, Engine, RetryHint, SyncRequest, SyncStep};
use headway_model::changeset::ChangeSet;
use headway_model::health::HealthStatus;
use headway_model::{RenderedSet, SyncOwner};
use headway_render::{RenderOptions, SourceType, ToolOptions};
use headway_source::{Auth, Cache, FetchOptions, GitRef, Secret as SourceSecret, Source};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::conditions::{self, DRIFTED, READY, RECONCILING, Reason, STALLED};
use crate::crd::{
    ANNOTATION_REBUILD_REQUESTED, ANNOTATION_SYNC_REQUESTED, DeletionPolicy, DriftSummary,
    EffectiveSpec, FINALIZER, GitSync, GitSyncStatus, ObjectCounts, ReconcileRecord, RenderType,
    StageTiming, format_duration,
};
use crate::schedule::{self, Memory, Plan, Retry, Trigger, View};

/// Field manager of the controller's status writes.
pub const STATUS_MANAGER: &str = "headway-controller";
/// Drifted objects listed in `status.drift.objects`.
const MAX_DRIFT_LISTED: usize = 20;
/// Largest Event note (the API server's limit is 1 kB).
const MAX_NOTE_BYTES: usize = 1000;

/// What every reconcile shares.
pub struct Ctx {
    pub client: kube::Client,
    pub engine: Arc<Engine>,
    pub cache: Arc<Cache>,
    pub cache_dir: PathBuf,
    /// This replica's identity, the `reportingInstance` of its Events.
    pub identity: String,
    pub store: Store<GitSync>,
    pub tools: ToolOptions,
    pub memory: Mutex<HashMap<(String, String), Memory>>,
    /// Per GitSync: the Event series of its no-op syncs.
    pub no_change_events: Mutex<HashMap<(String, String), NoChangeSeries>>,
}

/// The Event series recording the no-op syncs of one revision: (Event name, revision, count).
pub type NoChangeSeries = (String, String, i32);

impl Ctx {
    fn memory_of(&self, key: &(String, String)) -> Memory {
        self.memory
            .lock()
            .expect("memory lock")
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    fn update_memory(&self, key: &(String, String), f: impl FnOnce(&mut Memory)) {
        let mut map = self.memory.lock().expect("memory lock");
        f(map.entry(key.clone()).or_default());
    }
}

/// Why a reconcile could not complete (the sync's own failures are not errors: they are in the
/// status); the controller retries after a short delay.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A call to the API server about the GitSync failed.
    #[error("{what} of GitSync {namespace}/{name}: {}", headway_apply::error_message(.source))]
    Kube {
        what: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Deleting the objects of a deleted GitSync failed.
    #[error("pruning the objects of deleted GitSync {0}: {1}")]
    Cleanup(String, String),
    /// Forgetting the inventory of a deleted GitSync that orphans its objects failed.
    #[error("forgetting the inventory of deleted GitSync {0}: {1}")]
    Orphan(String, String),
    /// The finalizer could not be added or removed.
    #[error("finalizer of GitSync {0}: {1}")]
    Finalizer(String, String),
}

/// The reconcile entry point given to the kube `Controller`.
pub async fn reconcile(obj: Arc<GitSync>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<GitSync> = Api::namespaced(ctx.client.clone(), &ns);
    // The watch cache can lag behind this controller's own status writes: a reconcile queued by
    // the event of the previous write may see the status from before it, sync a second time and
    // write a status computed from the older one (Ready and the revision vanished for a moment).
    // Every reconcile starts from the object as the API server has it now.
    let obj = match api.get_opt(&name).await {
        Ok(Some(fresh)) => Arc::new(fresh),
        Ok(None) => return Ok(Action::await_change()),
        Err(source) => {
            return Err(ReconcileError::Kube {
                what: "reading",
                namespace: ns,
                name,
                source,
            });
        }
    };
    finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(obj) => apply(obj, &ctx).await,
            FinalizerEvent::Cleanup(obj) => cleanup(obj, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Finalizer(format!("{ns}/{name}"), other.to_string()),
    })
}

/// What the controller does when a reconcile returns an error.
pub fn error_policy(obj: Arc<GitSync>, error: &ReconcileError, _ctx: Arc<Ctx>) -> Action {
    warn!(gitsync = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()), %error, "reconcile error");
    Action::requeue(Duration::from_secs(5))
}

fn key_of(obj: &GitSync) -> (String, String) {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

fn now_text() -> String {
    schedule::format_time(SystemTime::now())
}

async fn apply(obj: Arc<GitSync>, ctx: &Ctx) -> Result<Action, ReconcileError> {
    let key = key_of(&obj);
    let generation = obj.metadata.generation;
    let effective = match obj.spec.effective() {
        Ok(e) => e,
        Err(e) => {
            // Nothing to fetch with: stall until the spec changes.
            let mut status = obj.status.clone().unwrap_or_default();
            if status.observed_generation != generation
                || !conditions::is_true(&status.conditions, STALLED)
            {
                let now = now_text();
                let message = e.to_string();
                fail_conditions(
                    &mut status,
                    Reason::InvalidSpec,
                    &message,
                    Retry::Terminal,
                    generation,
                    &now,
                );
                status.observed_generation = generation;
                write_status(ctx, &obj, &status).await?;
                publish(
                    ctx,
                    &obj,
                    EventType::Warning,
                    Reason::InvalidSpec.as_str(),
                    &message,
                )
                .await;
            }
            return Ok(Action::await_change());
        }
    };
    let memory = ctx.memory_of(&key);
    let plan = schedule::plan(
        &View::of(&obj, effective.interval),
        &memory,
        SystemTime::now(),
    );
    ctx.update_memory(&key, |m| m.seen = true);
    let (trigger, rebuild) = match plan {
        Plan::Suspended => {
            let mut status = obj.status.clone().unwrap_or_default();
            let already = conditions::get(&status.conditions, RECONCILING)
                .is_some_and(|c| c.reason == conditions::REASON_SUSPENDED);
            if !already {
                conditions::set(
                    &mut status.conditions,
                    RECONCILING,
                    "False",
                    conditions::REASON_SUSPENDED,
                    "spec.suspend is true: not syncing",
                    generation,
                    &now_text(),
                );
                write_status(ctx, &obj, &status).await?;
            }
            return Ok(Action::await_change());
        }
        Plan::Wait(d) => return Ok(Action::requeue(d)),
        Plan::Sync { trigger, rebuild } => (trigger, rebuild),
    };

    // Dependencies, from the watch cache (no API calls).
    let deps = schedule::dependency_keys(&key.0, &obj.spec.depends_on);
    if !deps.is_empty() {
        let found: Vec<_> = deps
            .iter()
            .map(|(ns, name)| {
                let r = ObjectRef::<GitSync>::new(name).within(ns);
                ((ns.clone(), name.clone()), ctx.store.get(&r))
            })
            .collect();
        let view: Vec<_> = found
            .iter()
            .map(|(k, o)| (k.clone(), o.as_deref()))
            .collect();
        if let Err(message) = schedule::dependencies_ready((&key.0, &key.1), &view) {
            let mut status = obj.status.clone().unwrap_or_default();
            let same = conditions::get(&status.conditions, READY).is_some_and(|c| {
                c.reason == Reason::DependencyNotReady.as_str() && c.message == message
            });
            if !same {
                let now = now_text();
                conditions::set(
                    &mut status.conditions,
                    READY,
                    "False",
                    Reason::DependencyNotReady.as_str(),
                    &message,
                    generation,
                    &now,
                );
                conditions::set(
                    &mut status.conditions,
                    RECONCILING,
                    "True",
                    conditions::REASON_PROGRESSING,
                    "waiting for dependencies",
                    generation,
                    &now,
                );
                write_status(ctx, &obj, &status).await?;
                publish(
                    ctx,
                    &obj,
                    EventType::Normal,
                    Reason::DependencyNotReady.as_str(),
                    &message,
                )
                .await;
            }
            return Ok(Action::requeue(schedule::DEPENDENCY_RECHECK));
        }
    }
    sync(obj, ctx, &effective, trigger, rebuild).await
}

/// A failed step.
struct Failure {
    reason: Reason,
    message: String,
    retry: Retry,
}

impl Failure {
    fn new(reason: Reason, message: impl Into<String>, transient: bool) -> Self {
        Failure {
            reason,
            message: message.into(),
            retry: schedule::retry_of(reason, transient),
        }
    }
}

/// What the pipeline produced.
#[derive(Default)]
struct Outcome {
    revision: Option<String>,
    stages: Vec<StageTiming>,
    changes: ChangeSet,
    objects: Option<ObjectCounts>,
    drift: Option<DriftSummary>,
    /// Stalled at this revision already: nothing was done after the fetch.
    still_stalled: bool,
}

async fn sync(
    obj: Arc<GitSync>,
    ctx: &Ctx,
    spec: &EffectiveSpec,
    trigger: Trigger,
    rebuild: bool,
) -> Result<Action, ReconcileError> {
    let key = key_of(&obj);
    let generation = obj.metadata.generation;
    let start = SystemTime::now();
    let clock = Instant::now();
    info!(gitsync = %format!("{}/{}", key.0, key.1), trigger = trigger.as_str(), rebuild, "sync started");

    let mut status = obj.status.clone().unwrap_or_default();
    let annotations = obj.metadata.annotations.clone().unwrap_or_default();
    if let Some(v) = annotations.get(ANNOTATION_SYNC_REQUESTED) {
        status.last_handled_sync_request = Some(v.clone());
    }
    if rebuild && let Some(v) = annotations.get(ANNOTATION_REBUILD_REQUESTED) {
        status.last_handled_rebuild_request = Some(v.clone());
    }
    let what = if rebuild { "rebuilding" } else { "syncing" };
    conditions::set(
        &mut status.conditions,
        RECONCILING,
        "True",
        conditions::REASON_PROGRESSING,
        &format!("{what} ({})", trigger.as_str()),
        generation,
        &schedule::format_time(start),
    );
    write_status(ctx, &obj, &status).await?;

    let mut outcome = Outcome::default();
    let result = pipeline(&obj, ctx, spec, trigger, rebuild, &mut outcome).await;
    let end = SystemTime::now();
    let elapsed = clock.elapsed();
    let now = schedule::format_time(end);

    if outcome.still_stalled {
        // Same revision, same spec, same terminal failure: keep the status as it was.
        let mut status = obj.status.clone().unwrap_or_default();
        conditions::set(
            &mut status.conditions,
            RECONCILING,
            "False",
            conditions::REASON_RETRYING,
            "stalled: waiting for a new revision or a spec change",
            generation,
            &now,
        );
        write_status(ctx, &obj, &status).await?;
        ctx.update_memory(&key, |m| m.succeeded(end));
        return Ok(Action::requeue(spec.interval));
    }

    status.observed_generation = generation;
    if outcome.revision.is_some() {
        status.last_attempted_revision = outcome.revision.clone();
    }
    let counts = outcome.changes.counts();
    let mut changes = BTreeMap::new();
    for (k, v) in [
        ("created", counts.created),
        ("configured", counts.configured),
        ("unchanged", counts.unchanged),
        ("deleted", counts.deleted),
        ("skipped", counts.skipped),
        ("failed", counts.failed),
    ] {
        if v > 0 {
            changes.insert(k.to_string(), u32::try_from(v).unwrap_or(u32::MAX));
        }
    }
    let record = ReconcileRecord {
        revision: outcome.revision.clone(),
        start: schedule::format_time(start),
        end: now.clone(),
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        duration: format_duration(elapsed),
        result: match &result {
            Ok(()) => "Succeeded".into(),
            Err(f) => f.reason.as_str().into(),
        },
        changes,
        stages: outcome.stages.clone(),
    };
    status.last_reconcile = Some(record.clone());
    if rebuild {
        status.last_rebuild = Some(record);
    }
    if let Some(objects) = outcome.objects.take() {
        status.objects = Some(objects);
    }
    let revision = outcome.revision.clone().unwrap_or_default();
    let summary = format!(
        "{}: {} created, {} configured, {} pruned in {}",
        if revision.is_empty() {
            "no revision"
        } else {
            &revision
        },
        counts.created,
        counts.configured,
        counts.deleted,
        format_duration(elapsed)
    );
    let action = match result {
        Ok(()) => {
            status.last_applied_revision = outcome.revision.clone();
            let message = format!(
                "{} revision {revision}: {}",
                if rebuild { "Rebuilt" } else { "Applied" },
                outcome.changes.counts()
            );
            conditions::set(
                &mut status.conditions,
                READY,
                "True",
                conditions::REASON_SUCCEEDED,
                &message,
                generation,
                &now,
            );
            conditions::set(
                &mut status.conditions,
                RECONCILING,
                "False",
                conditions::REASON_SUCCEEDED,
                "",
                generation,
                &now,
            );
            conditions::set(
                &mut status.conditions,
                STALLED,
                "False",
                conditions::REASON_SUCCEEDED,
                "",
                generation,
                &now,
            );
            match outcome.drift.take() {
                Some(drift) => {
                    let drifted = drift.drifted > 0;
                    let message = if drifted {
                        format!(
                            "{} object(s) differ from git: {}",
                            drift.drifted,
                            drift.objects.join("; ")
                        )
                    } else {
                        "the cluster matches git".to_string()
                    };
                    conditions::set(
                        &mut status.conditions,
                        DRIFTED,
                        conditions::status_word(drifted),
                        if drifted {
                            conditions::REASON_DRIFT_DETECTED
                        } else {
                            conditions::REASON_NO_DRIFT
                        },
                        &message,
                        generation,
                        &now,
                    );
                    status.drift = Some(drift);
                }
                None => {
                    // Self-heal: what differed was re-applied by this sync.
                    conditions::set(
                        &mut status.conditions,
                        DRIFTED,
                        "False",
                        conditions::REASON_NO_DRIFT,
                        "self-heal: the cluster was made equal to git",
                        generation,
                        &now,
                    );
                    status.drift = Some(DriftSummary {
                        drifted: 0,
                        checked_at: Some(now.clone()),
                        objects: Vec::new(),
                    });
                }
            }
            ctx.update_memory(&key, |m| m.succeeded(end));
            // One Event per sync that did something; the no-op syncs of one revision form one
            // Event series (its count and last time move), so every reconcile is recorded
            // without an Event object per interval.
            let before = obj.status.as_ref();
            let was_ready = before.is_some_and(|s| conditions::is_true(&s.conditions, READY));
            let same_revision =
                before.and_then(|s| s.last_applied_revision.as_deref()) == Some(revision.as_str());
            let did_something = counts.created + counts.configured + counts.deleted > 0;
            if did_something || !same_revision || !was_ready || rebuild {
                publish(
                    ctx,
                    &obj,
                    EventType::Normal,
                    if rebuild {
                        "RebuildSucceeded"
                    } else {
                        conditions::REASON_SUCCEEDED
                    },
                    &summary,
                )
                .await;
            } else {
                publish_no_change(ctx, &obj, &revision, &summary).await;
            }
            info!(gitsync = %format!("{}/{}", key.0, key.1), %revision, changes = %counts, duration_ms = elapsed.as_millis() as u64, rebuild, "sync succeeded");
            let jitter =
                schedule::jitter(spec.interval, obj.metadata.uid.as_deref().unwrap_or(""), 0);
            Action::requeue(spec.interval + jitter)
        }
        Err(failure) => {
            fail_conditions(
                &mut status,
                failure.reason,
                &failure.message,
                failure.retry,
                generation,
                &now,
            );
            let seed = obj.metadata.uid.clone().unwrap_or_default();
            let mut delay = None;
            ctx.update_memory(&key, |m| delay = m.failed(failure.retry, end, &seed));
            let note = format!("{summary}: {}", failure.message);
            // One Event per new failure; the same failure again is only logged.
            let before = obj.status.as_ref();
            let same_failure = before
                .and_then(|s| conditions::get(&s.conditions, READY))
                .is_some_and(|c| {
                    c.reason == failure.reason.as_str()
                        && c.message
                            == conditions::truncate(&failure.message, conditions::MAX_MESSAGE_BYTES)
                })
                && before.and_then(|s| s.last_attempted_revision.as_deref())
                    == outcome.revision.as_deref();
            if !same_failure {
                publish(
                    ctx,
                    &obj,
                    EventType::Warning,
                    failure.reason.as_str(),
                    &note,
                )
                .await;
            }
            warn!(gitsync = %format!("{}/{}", key.0, key.1), reason = failure.reason.as_str(), message = %failure.message, retry = ?failure.retry, "sync failed");
            Action::requeue(delay.unwrap_or(spec.interval))
        }
    };
    write_status(ctx, &obj, &status).await?;
    Ok(action)
}

/// Ready=False with the reason; Stalled for terminal failures; Reconciling while retrying.
fn fail_conditions(
    status: &mut GitSyncStatus,
    reason: Reason,
    message: &str,
    retry: Retry,
    generation: Option<i64>,
    now: &str,
) {
    let c = &mut status.conditions;
    conditions::set(c, READY, "False", reason.as_str(), message, generation, now);
    match retry {
        Retry::Terminal => {
            conditions::set(
                c,
                STALLED,
                "True",
                reason.as_str(),
                message,
                generation,
                now,
            );
            conditions::set(
                c,
                RECONCILING,
                "False",
                reason.as_str(),
                "stalled until the spec or the revision changes",
                generation,
                now,
            );
        }
        Retry::Transient => {
            conditions::set(c, STALLED, "False", reason.as_str(), "", generation, now);
            conditions::set(
                c,
                RECONCILING,
                "True",
                conditions::REASON_RETRYING,
                "retrying with backoff",
                generation,
                now,
            );
        }
        Retry::NextInterval => {
            conditions::set(c, STALLED, "False", reason.as_str(), "", generation, now);
            conditions::set(
                c,
                RECONCILING,
                "False",
                reason.as_str(),
                "retrying at the next interval",
                generation,
                now,
            );
        }
    }
}

fn stage(outcome: &mut Outcome, name: &str, d: Duration) {
    outcome.stages.push(StageTiming {
        name: name.to_string(),
        duration_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    });
}

/// `main@sha1:<sha>`, `v1.2@sha1:<sha>` or `sha1:<sha>`.
pub fn revision_name(reference: &GitRef, sha: &str) -> String {
    match reference {
        GitRef::Branch(b) => format!("{b}@sha1:{sha}"),
        GitRef::Tag(t) => format!("{t}@sha1:{sha}"),
        GitRef::Commit(_) => format!("sha1:{sha}"),
    }
}

async fn pipeline(
    obj: &GitSync,
    ctx: &Ctx,
    spec: &EffectiveSpec,
    trigger: Trigger,
    rebuild: bool,
    outcome: &mut Outcome,
) -> Result<(), Failure> {
    let (ns, name) = key_of(obj);
    let owner = SyncOwner::new(&ns, &name)
        .map_err(|e| Failure::new(Reason::InvalidSpec, e.to_string(), false))?;
    let default_namespace = obj
        .spec
        .target_namespace
        .clone()
        .unwrap_or_else(|| ns.clone());

    // Fetch.
    let t = Instant::now();
    let auth = credentials(ctx, &ns, &obj.spec.repository).await?;
    let source =
        Source::new(obj.spec.repository.url.clone(), spec.reference.clone()).with_auth(auth);
    let options = FetchOptions {
        timeout: spec.timeout,
        ..FetchOptions::default()
    };
    let (cache, scratch) = if rebuild {
        // Bypass the cache: a fresh, empty one for this fetch only.
        let dir = ctx.cache_dir.join(format!(
            ".rebuild-{}",
            obj.metadata.uid.as_deref().unwrap_or(&name)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let cache =
            Cache::new(&dir).map_err(|e| Failure::new(Reason::FetchFailed, e.to_string(), true))?;
        (Arc::new(cache), Some(dir))
    } else {
        (ctx.cache.clone(), None)
    };
    let result = {
        let cache = cache.clone();
        tokio::task::spawn_blocking(move || cache.fetch(&source, &options)).await
    };
    let revision = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            remove_scratch(scratch);
            return Err(Failure::new(
                Reason::FetchFailed,
                format!("fetching {}: {e}", obj.spec.repository.url),
                e.is_transient(),
            ));
        }
        Err(e) => {
            remove_scratch(scratch);
            return Err(Failure::new(
                Reason::FetchFailed,
                format!("fetch task: {e}"),
                true,
            ));
        }
    };
    stage(outcome, "fetch", t.elapsed());
    let revision_text = revision_name(&spec.reference, &revision.sha);
    outcome.revision = Some(revision_text.clone());
    if !rebuild
        && schedule::stays_stalled(
            obj.status.as_ref(),
            obj.metadata.generation,
            &revision_text,
            trigger,
        )
    {
        outcome.still_stalled = true;
        remove_scratch(scratch);
        return Ok(());
    }

    // Render.
    let t = Instant::now();
    let tree = revision.tree_dir.clone();
    let dir = match &spec.path {
        Some(p) => tree.join(p),
        None => tree.clone(),
    };
    let mut render_options = RenderOptions {
        source_type: match obj.spec.render.render_type {
            RenderType::Auto => SourceType::Auto,
            RenderType::Plain => SourceType::Plain,
            RenderType::Kustomize => SourceType::Kustomize,
            RenderType::Helm => SourceType::Helm,
        },
        tools: ctx.tools.clone(),
        boundary: Some(tree.clone()),
        ..RenderOptions::default()
    };
    render_options.tools.timeout = spec.timeout;
    let helm = obj.spec.render.helm.clone().unwrap_or_default();
    render_options.helm.release_name = helm.release_name.unwrap_or_else(|| name.clone());
    render_options.helm.namespace = helm.namespace.unwrap_or_else(|| default_namespace.clone());
    render_options.helm.values_files = helm.values_files.iter().map(PathBuf::from).collect();
    render_options.helm.include_crds = helm.include_crds.unwrap_or(true);
    let path_text = spec.path.clone().unwrap_or_else(|| ".".into());
    let rendered =
        tokio::task::spawn_blocking(move || headway_render::render(&dir, &render_options)).await;
    remove_scratch(scratch);
    let manifests = match rendered {
        Ok(Ok(m)) => m,
        Ok(Err(errors)) => {
            return Err(Failure::new(
                Reason::RenderFailed,
                format!("rendering {path_text} at {revision_text}: {errors}"),
                false,
            ));
        }
        Err(e) => {
            return Err(Failure::new(
                Reason::RenderFailed,
                format!("render task: {e}"),
                true,
            ));
        }
    };
    stage(outcome, "render", t.elapsed());
    let set = RenderedSet::from_complete_render(revision_text.clone(), manifests)
        .map_err(|e| Failure::new(Reason::RenderFailed, e.to_string(), false))?;
    let total = set.manifests().len();

    // Apply, prune, wait.
    let mut req = SyncRequest::new(owner.clone(), default_namespace.clone(), set.clone());
    req.prune = spec.prune;
    req.wait = spec.wait;
    req.timeout = spec.timeout;
    req.force = obj.spec.force;
    req.allow_empty = obj.spec.allow_empty;
    req.max_prune_fraction = Some(f64::from(spec.max_prune_percent) / 100.0);
    req.rebuild = rebuild;
    req.self_heal = spec.self_heal || rebuild;
    let report = ctx.engine.sync(&req).await.map_err(|e| apply_error(&e))?;
    for (name, d) in &report.timings {
        stage(outcome, name, *d);
    }
    outcome.changes = report.changes.clone();
    let mut counts = ObjectCounts {
        total: u32::try_from(total).unwrap_or(u32::MAX),
        ..ObjectCounts::default()
    };
    if report.health.is_empty() {
        counts.unknown = counts.total;
    } else {
        for (_, h) in &report.health {
            match h.status {
                HealthStatus::Current => counts.current += 1,
                HealthStatus::InProgress => counts.in_progress += 1,
                HealthStatus::Failed => counts.failed += 1,
                HealthStatus::Terminating => counts.terminating += 1,
                HealthStatus::NotFound => counts.not_found += 1,
                HealthStatus::Unknown => counts.unknown += 1,
            }
        }
    }
    outcome.objects = Some(counts);
    if let Some(failure) = &report.failure {
        return Err(match failure.step {
            SyncStep::Apply => Failure::new(Reason::ApplyFailed, failure.message.clone(), true),
            SyncStep::Prune => {
                // A refused prune (empty set, mass deletion) repeats until git or the spec
                // changes; failed deletions may succeed later.
                Failure::new(
                    Reason::PruneFailed,
                    failure.message.clone(),
                    failure.refused.is_none(),
                )
            }
            SyncStep::Health => {
                Failure::new(Reason::HealthCheckFailed, failure.message.clone(), false)
            }
        });
    }
    if !report.changes.is_ok() {
        return Err(Failure::new(
            Reason::ApplyFailed,
            report.changes.describe_changes(),
            true,
        ));
    }

    // Drift check: with self-heal, the sync itself re-applied what differed.
    if !spec.self_heal && !rebuild {
        let t = Instant::now();
        match ctx.engine.drift(&owner, &set, &default_namespace).await {
            Ok(drift) => {
                let mut listed = Vec::new();
                let mut drifted = 0u32;
                for (id, state) in &drift.objects {
                    let line = match state {
                        DriftState::InSync | DriftState::Error(_) => continue,
                        DriftState::Missing => format!("{id}: missing"),
                        DriftState::Drifted(diffs) => format!(
                            "{id}: {}",
                            diffs
                                .iter()
                                .take(3)
                                .map(|d| d.path.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    drifted += 1;
                    if listed.len() < MAX_DRIFT_LISTED {
                        listed.push(line);
                    }
                }
                outcome.drift = Some(DriftSummary {
                    drifted,
                    checked_at: Some(now_text()),
                    objects: listed,
                });
            }
            Err(e) => warn!(gitsync = %owner, error = %e, "drift check failed"),
        }
        stage(outcome, "drift", t.elapsed());
    }
    Ok(())
}

fn remove_scratch(dir: Option<PathBuf>) {
    if let Some(dir) = dir
        && let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(dir = %dir.display(), error = %e, "removing the rebuild cache");
    }
}

fn apply_error(e: &ApplyError) -> Failure {
    match e.retry_hint() {
        // A CRD installed by another GitSync may arrive later: retry at the next interval.
        RetryHint::Later => Failure {
            reason: Reason::ApplyFailed,
            message: e.to_string(),
            retry: Retry::NextInterval,
        },
        hint => Failure::new(Reason::ApplyFailed, e.to_string(), hint == RetryHint::Soon),
    }
}

/// Credentials from `spec.repository.secretRef` and `knownHosts`.
async fn credentials(
    ctx: &Ctx,
    namespace: &str,
    repo: &crate::crd::Repository,
) -> Result<Auth, Failure> {
    let Some(secret_ref) = &repo.secret_ref else {
        return Ok(Auth::None);
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = match api.get_opt(&secret_ref.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(Failure::new(
                Reason::FetchFailed,
                format!(
                    "spec.repository.secretRef: Secret {namespace}/{} not found",
                    secret_ref.name
                ),
                false,
            ));
        }
        Err(e) => {
            return Err(Failure::new(
                Reason::FetchFailed,
                format!(
                    "reading Secret {namespace}/{}: {}",
                    secret_ref.name,
                    headway_apply::error_message(&e)
                ),
                true,
            ));
        }
    };
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| -> Result<Option<String>, Failure> {
        match data.get(key) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.0.clone()).map(Some).map_err(|_| {
                Failure::new(
                    Reason::FetchFailed,
                    format!(
                        "Secret {namespace}/{}: key {key} is not UTF-8",
                        secret_ref.name
                    ),
                    false,
                )
            }),
        }
    };
    if let Some(key) = text("identity")? {
        let mut known_hosts = text("known_hosts")?.unwrap_or_default();
        if let Some(extra) = &repo.known_hosts {
            known_hosts.push('\n');
            known_hosts.push_str(extra);
        }
        return Ok(Auth::Ssh {
            private_key: SourceSecret::new(key),
            passphrase: text("passphrase")?.map(SourceSecret::new),
            known_hosts,
        });
    }
    if let Some(token) = text("token")? {
        return Ok(Auth::Token(SourceSecret::new(token)));
    }
    match (text("username")?, text("password")?) {
        (Some(username), Some(password)) => Ok(Auth::Basic {
            username,
            password: SourceSecret::new(password),
        }),
        _ => Err(Failure::new(
            Reason::FetchFailed,
            format!(
                "Secret {namespace}/{} has none of: identity (SSH key), token, username and password",
                secret_ref.name
            ),
            false,
        )),
    }
}

/// The finalizer's cleanup: prune or orphan the objects of a deleted GitSync.
async fn cleanup(obj: Arc<GitSync>, ctx: &Ctx) -> Result<Action, ReconcileError> {
    let (ns, name) = key_of(&obj);
    ctx.memory
        .lock()
        .expect("memory lock")
        .remove(&(ns.clone(), name.clone()));
    ctx.no_change_events
        .lock()
        .expect("events lock")
        .remove(&(ns.clone(), name.clone()));
    let policy = if obj.spec.suspend {
        DeletionPolicy::Orphan
    } else {
        obj.spec.deletion_policy
    };
    let Ok(owner) = SyncOwner::new(&ns, &name) else {
        return Ok(Action::await_change());
    };
    match policy {
        DeletionPolicy::Prune => {
            let changes = ctx
                .engine
                .delete_all(&owner, &ns)
                .await
                .map_err(|e| ReconcileError::Cleanup(format!("{ns}/{name}"), e.to_string()))?;
            if !changes.is_ok() {
                let message = changes.describe_changes();
                publish(
                    ctx,
                    &obj,
                    EventType::Warning,
                    Reason::PruneFailed.as_str(),
                    &message,
                )
                .await;
                return Err(ReconcileError::Cleanup(format!("{ns}/{name}"), message));
            }
            let note = format!(
                "GitSync deleted: {} object(s) pruned",
                changes.counts().deleted
            );
            publish(ctx, &obj, EventType::Normal, "Pruned", &note).await;
            info!(gitsync = %format!("{ns}/{name}"), changes = %changes.counts(), "deleted GitSync pruned");
        }
        DeletionPolicy::Orphan => {
            // Forget the inventory, so that a new GitSync of the same name starts afresh.
            ctx.engine
                .forget_inventory(&owner)
                .await
                .map_err(|e| ReconcileError::Orphan(format!("{ns}/{name}"), e.to_string()))?;
            publish(
                ctx,
                &obj,
                EventType::Normal,
                "Orphaned",
                "GitSync deleted: its objects are left in the cluster",
            )
            .await;
            info!(gitsync = %format!("{ns}/{name}"), "deleted GitSync orphaned its objects");
        }
    }
    Ok(Action::await_change())
}

/// Writes the whole status with server-side apply (fields left out are removed).
async fn write_status(
    ctx: &Ctx,
    obj: &GitSync,
    status: &GitSyncStatus,
) -> Result<(), ReconcileError> {
    let (ns, name) = key_of(obj);
    let api: Api<GitSync> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "apiVersion": format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
        "kind": "GitSync",
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(STATUS_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
    .map_err(|e| ReconcileError::Kube {
        what: "writing the status",
        namespace: ns,
        name,
        source: e,
    })
}

/// Event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Publishes an Event (`events.k8s.io/v1`) about the GitSync; failures are logged, never fatal.
/// Every call creates a new Event (kube's `Recorder` would fold Events of the same reason into
/// one series keeping the first note, losing each sync's revision and counts).
async fn publish(ctx: &Ctx, obj: &GitSync, type_: EventType, reason: &str, note: &str) {
    let _ = create_event(ctx, obj, type_, reason, note).await;
}

/// Reason of the Event series recording the no-op syncs of one revision.
pub const REASON_NO_CHANGE: &str = "NoChange";

/// Records a sync that changed nothing: the first one of a revision creates an Event
/// `NoChange`, the next ones add to its series (count, last observed time), as Kubernetes does
/// for repeated Events. The series is remembered per process (a new leader starts a new one).
async fn publish_no_change(ctx: &Ctx, obj: &GitSync, revision: &str, note: &str) {
    use k8s_openapi::api::events::v1::{Event, EventSeries};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let key = key_of(obj);
    let known = ctx
        .no_change_events
        .lock()
        .expect("events lock")
        .get(&key)
        .cloned();
    if let Some((event_name, rev, count)) = known
        && rev == revision
    {
        let api: Api<Event> = Api::namespaced(ctx.client.clone(), &key.0);
        let series = EventSeries {
            count: count + 1,
            last_observed_time: MicroTime(k8s_openapi::jiff::Timestamp::now()),
        };
        let patch = json!({"series": series});
        match api
            .patch(&event_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                ctx.no_change_events
                    .lock()
                    .expect("events lock")
                    .insert(key, (event_name, rev, count + 1));
                return;
            }
            // Expired (Events live an hour) or deleted: start a new series.
            Err(e) => tracing::debug!(error = %headway_apply::error_message(&e), "event series"),
        }
    }
    if let Some(event_name) =
        create_event(ctx, obj, EventType::Normal, REASON_NO_CHANGE, note).await
    {
        ctx.no_change_events
            .lock()
            .expect("events lock")
            .insert(key, (event_name, revision.to_string(), 1));
    }
}

/// Creates an Event; returns its name.
async fn create_event(
    ctx: &Ctx,
    obj: &GitSync,
    type_: EventType,
    reason: &str,
    note: &str,
) -> Option<String> {
    use k8s_openapi::api::events::v1::Event;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    let (ns, name) = key_of(obj);
    let now = k8s_openapi::jiff::Timestamp::now();
    let event = Event {
        action: Some("Reconcile".into()),
        reason: Some(reason.to_string()),
        note: Some(conditions::truncate(note, MAX_NOTE_BYTES)),
        type_: Some(match type_ {
            EventType::Normal => "Normal".into(),
            EventType::Warning => "Warning".into(),
        }),
        event_time: Some(MicroTime(now)),
        regarding: Some(obj.object_ref(&())),
        reporting_controller: Some(crate::runner::REPORTER.into()),
        reporting_instance: Some(ctx.identity.clone()),
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        ..Event::default()
    };
    let api: Api<Event> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), &event).await {
        Ok(e) => e.metadata.name,
        Err(e) => {
            warn!(error = %headway_apply::error_message(&e), reason, "publishing an event");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_named_after_the_ref() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            revision_name(&GitRef::Branch("main".into()), sha),
            format!("main@sha1:{sha}")
        );
        assert_eq!(
            revision_name(&GitRef::Tag("v1".into()), sha),
            format!("v1@sha1:{sha}")
        );
        assert_eq!(
            revision_name(&GitRef::Commit(sha.into()), sha),
            format!("sha1:{sha}")
        );
    }

    #[test]
    fn failing_conditions_follow_the_retry_kind() {
        let mut s = GitSyncStatus::default();
        fail_conditions(
            &mut s,
            Reason::RenderFailed,
            "a.yaml: bad",
            Retry::Terminal,
            Some(2),
            "t1",
        );
        let get = |s: &GitSyncStatus, t: &str| conditions::get(&s.conditions, t).cloned().unwrap();
        assert_eq!(get(&s, READY).status, "False");
        assert_eq!(get(&s, READY).reason, "RenderFailed");
        assert_eq!(get(&s, READY).message, "a.yaml: bad");
        assert_eq!(get(&s, STALLED).status, "True");
        assert_eq!(get(&s, RECONCILING).status, "False");
        fail_conditions(
            &mut s,
            Reason::FetchFailed,
            "unreachable",
            Retry::Transient,
            Some(2),
            "t2",
        );
        assert_eq!(get(&s, STALLED).status, "False");
        assert_eq!(get(&s, RECONCILING).status, "True");
        assert_eq!(get(&s, READY).last_transition_time, "t1");
    }
}
