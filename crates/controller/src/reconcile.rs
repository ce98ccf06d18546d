//! One reconcile of one GitSync: the finalizer, the decision to sync ([`crate::schedule`]), the
//! dependency check, and a run of the pipeline ([`crate::steps`]), ending in one status write
//! ([`crate::status`] computes it) and its Events ([`crate::events`]). While a run is in
//! progress, the `Reconciling` condition names its stage, written at most about once a second.
//!
//! Architecture invariant: nothing is applied or pruned unless the fetch and the render both
//! succeeded completely (only then does a `RenderedSet` exist).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use headway_model::SyncOwner;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::conditions::Reason;
pub use crate::context::{Ctx, NoChangeSeries};
use crate::context::{Key, key_of};
use crate::crd::{DeletionPolicy, EffectiveSpec, FINALIZER, GitSync, GitSyncStatus};
pub use crate::events::{EventType, REASON_NO_CHANGE};
use crate::events::{emit, publish};
use crate::outcome::RunResult;
use crate::progress::RunKind;
use crate::schedule::{self, Plan, Trigger, View};
use crate::status::{self, Run};
pub use crate::steps::revision_name;
use crate::tracker::Tracker;
use crate::view::SyncKey;

/// Field manager of the controller's status writes.
pub const STATUS_MANAGER: &str = "headway-controller";
/// Shortest time between two writes of the `Reconciling` message while a run is in progress.
pub const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(1);

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

async fn apply(obj: Arc<GitSync>, ctx: &Ctx) -> Result<Action, ReconcileError> {
    let key = key_of(&obj);
    let generation = obj.metadata.generation;
    let checked = obj
        .spec
        .effective()
        .and_then(|e| ctx.lockdown.check(&obj.spec, &key.0).map(|()| e));
    let effective = match checked {
        Ok(e) => e,
        Err(e) => {
            // Nothing to fetch with: stall until the spec changes.
            let next = status::invalid_spec(
                obj.status.as_ref(),
                generation,
                &e.to_string(),
                SystemTime::now(),
            );
            if let Some(next) = next {
                write_status(&ctx.client, &obj, &next.status).await?;
                emit(ctx, &obj, &next.emit).await;
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
            if let Some(status) =
                status::suspended(obj.status.as_ref(), generation, SystemTime::now())
            {
                write_status(&ctx.client, &obj, &status).await?;
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
            let next = status::waiting_for_dependencies(
                obj.status.as_ref(),
                generation,
                &message,
                SystemTime::now(),
            );
            if let Some(next) = next {
                write_status(&ctx.client, &obj, &next.status).await?;
                emit(ctx, &obj, &next.emit).await;
            }
            return Ok(Action::requeue(schedule::DEPENDENCY_RECHECK));
        }
    }
    sync(obj, ctx, &effective, trigger, rebuild).await
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

    let annotations = obj.metadata.annotations.clone().unwrap_or_default();
    let started = status::started(
        obj.status.as_ref(),
        &annotations,
        trigger,
        rebuild,
        generation,
        start,
    );
    write_status(&ctx.client, &obj, &started).await?;

    let mut tracker = Tracker::new(
        ctx.progress.clone(),
        SyncKey::new(&key.0, &key.1),
        if rebuild {
            RunKind::Rebuild
        } else {
            RunKind::Sync
        },
    );
    let writer = ProgressWriter::start(
        ctx.client.clone(),
        &obj,
        started.clone(),
        tracker.messages(),
    );
    tracker.run_started();
    let outcome = crate::steps::pipeline(ctx, &obj, spec, trigger, rebuild, &mut tracker).await;
    let end = SystemTime::now();
    let elapsed = clock.elapsed();
    // No progress write may land after the final one.
    writer.stop().await;

    let run = Run {
        rebuild,
        generation,
        start,
        end,
        elapsed,
    };
    let next = status::finished(obj.status.as_ref(), &started, &run, &outcome);
    let action = match &outcome.result {
        RunResult::StillStalled => {
            let written = write_status(&ctx.client, &obj, &next.status).await;
            tracker.run_finished(&outcome, elapsed);
            written?;
            ctx.update_memory(&key, |m| m.succeeded(end));
            return Ok(Action::requeue(spec.interval));
        }
        RunResult::Succeeded => {
            ctx.update_memory(&key, |m| m.succeeded(end));
            let revision = outcome.revision.clone().unwrap_or_default();
            info!(gitsync = %format!("{}/{}", key.0, key.1), %revision, changes = %outcome.changes.counts(), duration_ms = elapsed.as_millis() as u64, rebuild, "sync succeeded");
            let jitter =
                schedule::jitter(spec.interval, obj.metadata.uid.as_deref().unwrap_or(""), 0);
            Action::requeue(spec.interval + jitter)
        }
        RunResult::Failed(failure) => {
            let seed = obj.metadata.uid.clone().unwrap_or_default();
            let mut delay = None;
            ctx.update_memory(&key, |m| delay = m.failed(failure.retry, end, &seed));
            warn!(gitsync = %format!("{}/{}", key.0, key.1), reason = failure.reason.as_str(), message = %failure.message, retry = ?failure.retry, "sync failed");
            Action::requeue(delay.unwrap_or(spec.interval))
        }
    };
    // The Events go out before the status write, as they always did: a client that sees the
    // final status finds the Event already there.
    emit(ctx, &obj, &next.emit).await;
    let written = write_status(&ctx.client, &obj, &next.status).await;
    // After the write: a listener that reads the GitSync on RunFinished sees the result.
    tracker.run_finished(&outcome, elapsed);
    written?;
    Ok(action)
}

/// Writes the `Reconciling` message of a run in progress: the latest stage message, at most
/// once per [`PROGRESS_WRITE_INTERVAL`], never within the first interval (short runs cost no
/// extra write). A write in flight is never cancelled: [`ProgressWriter::stop`] waits for it.
struct ProgressWriter {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressWriter {
    fn start(
        client: kube::Client,
        obj: &GitSync,
        started: GitSyncStatus,
        mut messages: watch::Receiver<String>,
    ) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let key = key_of(obj);
        let generation = obj.metadata.generation;
        let task = tokio::spawn(async move {
            let mut last = String::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(PROGRESS_WRITE_INTERVAL) => {}
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    changed = messages.changed() => if changed.is_err() { return },
                }
                let message = messages.borrow_and_update().clone();
                if message.is_empty() || message == last {
                    continue;
                }
                let status = status::in_progress(&started, &message, generation, SystemTime::now());
                if let Err(e) = write_status_of(&client, &key, &status).await {
                    warn!(error = %e, "writing the progress of a sync");
                }
                last = message;
            }
        });
        ProgressWriter { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The finalizer's cleanup: prune or orphan the objects of a deleted GitSync.
async fn cleanup(obj: Arc<GitSync>, ctx: &Ctx) -> Result<Action, ReconcileError> {
    let (ns, name) = key_of(&obj);
    ctx.forget(&(ns.clone(), name.clone()));
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
            // Deleted as the GitSync's identity: what it could not delete stays.
            let acting_as = ctx
                .acting_as(&obj)
                .map_err(|e| ReconcileError::Cleanup(format!("{ns}/{name}"), e.to_string()))?;
            let changes = ctx
                .engine
                .delete_all_as(acting_as.as_ref(), &owner, &ns)
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
    client: &kube::Client,
    obj: &GitSync,
    status: &GitSyncStatus,
) -> Result<(), ReconcileError> {
    write_status_of(client, &key_of(obj), status).await
}

async fn write_status_of(
    client: &kube::Client,
    (ns, name): &Key,
    status: &GitSyncStatus,
) -> Result<(), ReconcileError> {
    let (ns, name) = (ns.clone(), name.clone());
    let api: Api<GitSync> = Api::namespaced(client.clone(), &ns);
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
