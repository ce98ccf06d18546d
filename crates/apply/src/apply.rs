//! Staged server-side apply of a prepared set, with change detection.
//!
//! Each [`Stage`](headway_model::order::Stage) is applied with at most
//! [`EngineOptions::concurrency`](crate::EngineOptions::concurrency) requests in flight,
//! started in apply order; after the Definitions and Classes stages the engine waits until their
//! objects are Current (CRDs Established, Namespaces Active), and after Definitions it re-runs
//! discovery when a CRD changed, so custom resources of CRDs applied in the same sync resolve. A
//! stage with a failed object stops the apply: later stages are reported as skipped.
//!
//! The first request that fails because the API server is unreachable trips the operation's
//! breaker (see the `breaker` module): the requests still in flight finish, nothing more is
//! sent, and every object not applied is reported as skipped with that one error.
//!
//! # Change detection
//! Before a stage, the engine lists the metadata of the sync's live objects, one request per
//! resource (selected by the ownership labels). An object is skipped as unchanged only when all
//! of these hold, and applied otherwise:
//! - this engine applied it before and remembers what it applied (digest) and what the server
//!   returned (uid, `generation`, `resourceVersion`);
//! - the desired object's digest equals the one applied;
//! - the live object is not being deleted and has the same uid (not recreated), the same
//!   `generation` (for kinds that track it, a spec change by anyone bumps it; status updates do
//!   not) or, for kinds without a generation, the same `resourceVersion` (any write bumps it);
//! - the live labels and annotations still contain the desired ones with the desired values.
//!
//! A hand edit of the spec, of a desired label or annotation, or a deletion is therefore always
//! re-applied.
//!
//! The memory is per process, so the inventory keeps a stamp of each object as the apply left it
//! ([`LiveStamp`](headway_model::inventory::LiveStamp): the generation and a 32-bit tag of the uid, or for kinds without a generation
//! the resourceVersion). An object the engine does not remember (after a restart) is skipped when
//! its inventory entry has a stamp that the live object still matches, with the same digest
//! (prefix) and the same checks of deletion, labels and annotations as above; it is remembered
//! from then on. Entries without a stamp (written by older versions) give no skip: the object is
//! applied once, and a server-side apply that changes nothing does not write.
//!
//! Created, configured and unchanged are told from the listed object and the one the apply
//! returned: unchanged when the `resourceVersion` is the same, or (a controller wrote the status
//! in between) when the `generation` is the same and the listed object already had the desired
//! labels and annotations. An object absent from the list was created when the returned object
//! has no field manager other than Headway.
//!
//! With self-heal off, an object is applied only when its digest differs from the one recorded
//! in the inventory (a change in the source); hand edits and deletions are left alone.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, stream};
use headway_model::changeset::{Action, ChangeSet};
use headway_model::inventory::{DigestPrefix, Inventory};
use headway_model::order::into_stages;
use headway_model::recreate::{ANNOTATION_FORCE, FORCE_ENABLED, force_enabled, is_recreate_error};
use headway_model::{Manifest, SyncOwner};
use kube::api::{
    DeleteParams, DynamicObject, ObjectMeta, PartialObjectMeta, Patch, PatchParams, Preconditions,
};
use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::calls::{FIELD_MANAGER, Listing, list_by_resource};
use crate::discovery::{ApiCatalog, Resolved, group_by_resource};
use crate::error::error_message;
use crate::health::wait_current;
use crate::memory::AppliedState;
use crate::op::Op;
use crate::progress::{ProgressSender, ProgressStep, SyncProgress, report as report_progress};

/// What was known of an object before it was applied.
#[derive(Debug, Clone)]
enum Before {
    /// Listed with our labels.
    Live(Box<PartialObjectMeta<DynamicObject>>),
    /// Not in the list of objects with our labels (absent, or not labelled as ours).
    NotListed,
    /// The list failed.
    Unknown,
}

/// How to decide which objects to apply.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Detect<'a> {
    /// Against the live objects and the engine's memory, seeded from the stamps of the previous
    /// inventory for objects it does not remember (self-heal).
    Live(&'a Inventory),
    /// Against the digests of the previous inventory only (no self-heal).
    Inventory(&'a Inventory),
    /// Apply everything.
    All,
}

/// What to apply for, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApplyInput<'a> {
    /// The sync applying.
    pub owner: &'a SyncOwner,
    pub detect: Detect<'a>,
    /// Delete and recreate every object whose apply fails on an immutable field (per object: the
    /// annotation [`ANNOTATION_FORCE`]).
    pub force: bool,
    /// The sync's longest wait; a stage waits at most this and the stage timeout.
    pub timeout: Duration,
    /// Where to report each stage started and finished, and each object applied.
    pub progress: Option<&'a ProgressSender>,
}

/// The result of the apply step of a sync.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApplyOutcome {
    pub changes: ChangeSet,
    pub failure: Option<String>,
    /// The failure is objects the API server refused as they are, and nothing else.
    pub refused_by_server: bool,
    pub timings: Vec<(String, Duration)>,
}

/// Applies a prepared set stage by stage.
pub(crate) async fn apply_set(
    op: &Op<'_>,
    input: &ApplyInput<'_>,
    manifests: &[Manifest],
) -> ApplyOutcome {
    let mut out = ApplyOutcome::default();
    for (stage, manifests) in into_stages(manifests.to_vec()) {
        if let Some(failure) = &out.failure {
            let first_line = failure.lines().next().unwrap_or_default().to_string();
            for m in manifests {
                out.changes
                    .push(m.id, Action::Skipped(format!("not applied: {first_line}")));
            }
            continue;
        }
        let started = Instant::now();
        let name = format!("apply {stage}");
        report_progress(
            input.progress,
            SyncProgress::Started {
                step: ProgressStep::Apply,
                name: name.clone(),
                total: manifests.len(),
            },
        );
        let mut catalog = op.catalog();
        if manifests
            .iter()
            .any(|m| catalog.resolve(&m.api_version, &m.id.kind).is_none())
        {
            // Kinds served since the last discovery (e.g. CRDs applied by another sync).
            match op.rediscover().await {
                Ok(c) => catalog = c,
                Err(e) => warn!(error = %e, "re-running discovery"),
            }
        }
        let refused_before = op.refused.load(Ordering::Relaxed);
        let actions = apply_stage(op, input, &catalog, &manifests).await;
        let refused = op.refused.load(Ordering::Relaxed) - refused_before;
        let unavailable = op.breaker.tripped();
        let failed = actions
            .iter()
            .filter(|a| matches!(a, Action::Failed(_)))
            .count();
        let changed_crd = manifests.iter().zip(&actions).any(|(m, a)| {
            m.id.kind == "CustomResourceDefinition"
                && matches!(a, Action::Created | Action::Configured)
        });
        for (m, action) in manifests.iter().zip(actions) {
            debug!(object = %m.id, %action, "applied");
            out.changes.push(m.id.clone(), action);
        }
        info!(sync = %input.owner, %stage, objects = manifests.len(), elapsed_ms = started.elapsed().as_millis() as u64, "stage applied");
        if let Some(first) = unavailable {
            let not_applied = actions_not_applied(&out.changes, &manifests);
            warn!(sync = %input.owner, %stage, not_applied, error = %first, "apply cut short: the API server is unreachable");
            out.failure = Some(format!(
                "the API server became unreachable in the {stage} stage ({not_applied} of {} object(s) not applied; retrying with backoff): {first}",
                manifests.len()
            ));
        } else if failed > 0 && refused == failed {
            out.refused_by_server = true;
            out.failure = Some(format!(
                "the API server refused {failed} object(s) of the {stage} stage as they are (retried at the next interval or when the source changes)"
            ));
        } else if failed > 0 {
            out.failure = Some(format!(
                "{failed} object(s) failed to apply in the {stage} stage"
            ));
        } else if stage.waits() {
            let refs: Vec<&Manifest> = manifests.iter().collect();
            let timeout = op
                .stage_timeout
                .min(input.timeout.max(Duration::from_secs(1)));
            let waited = wait_current(op, &catalog, input.owner, &refs, timeout, None).await;
            if let Some(reason) = waited.failure {
                warn!(sync = %input.owner, %stage, %reason, "stage did not become ready");
                out.failure = Some(format!("the {stage} stage did not become ready: {reason}"));
            }
        }
        if out.failure.is_none()
            && stage.rediscover_after()
            && changed_crd
            && let Err(e) = op.rediscover().await
        {
            out.failure = Some(e.to_string());
        }
        report_progress(
            input.progress,
            SyncProgress::Finished {
                step: ProgressStep::Apply,
                name: name.clone(),
                count: manifests.len(),
                duration: started.elapsed(),
                ok: out.failure.is_none(),
            },
        );
        out.timings.push((name, started.elapsed()));
    }
    out
}

/// Applies the objects of one stage; the actions are in the order of `manifests`.
async fn apply_stage(
    op: &Op<'_>,
    input: &ApplyInput<'_>,
    catalog: &ApiCatalog,
    manifests: &[Manifest],
) -> Vec<Action> {
    let mut actions: Vec<Option<Action>> = vec![None; manifests.len()];
    let mut resolved: Vec<Option<Resolved>> = Vec::with_capacity(manifests.len());
    for (i, m) in manifests.iter().enumerate() {
        let r = catalog.resolve(&m.api_version, &m.id.kind).cloned();
        if r.is_none() {
            actions[i] = Some(Action::Failed(format!(
                "{} {} is not served by the API server",
                m.api_version, m.id.kind
            )));
        }
        resolved.push(r);
    }
    // Objects the inventory says are unchanged in the source (no self-heal).
    if let Detect::Inventory(previous) = input.detect {
        for (i, m) in manifests.iter().enumerate() {
            let same = previous.entries.get(&m.id).is_some_and(|e| {
                e.api_version == m.api_version && DigestPrefix::of(&m.digest) == e.digest
            });
            if same && actions[i].is_none() {
                actions[i] = Some(Action::Unchanged);
            }
        }
    }
    let before = list_before(op, input.owner, manifests, &resolved, &actions).await;
    let mut todo: Vec<usize> = Vec::new();
    for i in 0..manifests.len() {
        if actions[i].is_some() {
            continue;
        }
        if let Detect::Live(previous) = input.detect
            && unchanged_since_applied(op, input.owner, &manifests[i], &before[i], previous)
        {
            actions[i] = Some(Action::Unchanged);
        } else {
            todo.push(i);
        }
    }
    // Objects decided without an apply (unresolved, unchanged) count as done at once.
    let total = manifests.len();
    let done = AtomicUsize::new(total - todo.len());
    let done = &done;
    let results: Vec<(usize, Action)> = stream::iter(todo)
        .map(|i| {
            let resolved = resolved[i]
                .as_ref()
                .expect("unresolved objects already failed");
            let before = &before[i];
            async move {
                let action = apply_one(op, input, &manifests[i], resolved, before).await;
                let done = done.fetch_add(1, Ordering::Relaxed) + 1;
                report_progress(
                    input.progress,
                    SyncProgress::Advanced {
                        step: ProgressStep::Apply,
                        done,
                        total,
                    },
                );
                (i, action)
            }
        })
        .buffer_unordered(op.concurrency.max(1))
        .collect()
        .await;
    for (i, action) in results {
        actions[i] = Some(action);
    }
    actions
        .into_iter()
        .map(|a| a.expect("every object decided"))
        .collect()
}

/// The live metadata of the objects still undecided, one list per resource.
async fn list_before(
    op: &Op<'_>,
    owner: &SyncOwner,
    manifests: &[Manifest],
    resolved: &[Option<Resolved>],
    decided: &[Option<Action>],
) -> Vec<Before> {
    let groups = group_by_resource(
        resolved
            .iter()
            .enumerate()
            .filter(|(i, _)| decided[*i].is_none())
            .filter_map(|(i, r)| r.as_ref().map(|r| (i, r))),
    );
    let calls = &op.calls;
    let listings = list_by_resource(
        owner,
        groups,
        |i| &manifests[i].id,
        op.concurrency,
        move |resolved, selector, namespaces| async move {
            calls.list_metadata(&resolved, &selector, &namespaces).await
        },
    )
    .await;
    let mut before = vec![Before::Unknown; manifests.len()];
    for Listing {
        resolved,
        indices,
        found,
    } in listings
    {
        match found {
            Ok(items) => {
                for (i, item) in indices.into_iter().zip(items) {
                    before[i] = match item {
                        Some(meta) => Before::Live(Box::new(meta)),
                        None => Before::NotListed,
                    };
                }
            }
            // The breaker logs the first transport failure once.
            Err(e) if op.breaker.observe(&e) => {}
            Err(e) => {
                warn!(resource = %resolved.resource.plural, error = %error_message(&e), "listing live objects; applying them all")
            }
        }
    }
    before
}

/// Whether the engine's memory, or for an object it does not remember the stamp of the
/// previous inventory, proves the live object is what it applied (see the module
/// documentation). An object proven by the inventory is remembered from then on.
fn unchanged_since_applied(
    op: &Op<'_>,
    owner: &SyncOwner,
    m: &Manifest,
    before: &Before,
    previous: &Inventory,
) -> bool {
    let Before::Live(live) = before else {
        return false;
    };
    let meta = &live.metadata;
    let labels_in_place = meta.deletion_timestamp.is_none()
        && contains_all(m.object.pointer("/metadata/labels"), meta.labels.as_ref())
        && contains_all(
            m.object.pointer("/metadata/annotations"),
            meta.annotations.as_ref(),
        );
    if let Some(state) = op.memory.get(owner, &m.id) {
        let same_version = match state.generation {
            Some(g) => meta.generation == Some(g),
            None => meta.resource_version.as_deref() == Some(state.resource_version.as_str()),
        };
        return state.digest == m.digest
            && labels_in_place
            && meta.uid.as_deref() == Some(state.uid.as_str())
            && same_version;
    }
    // Not remembered (a restarted engine): the stamp the inventory recorded after the apply.
    let Some(entry) = previous.entries.get(&m.id) else {
        return false;
    };
    let (Some(stamp), Some(uid), Some(rv)) = (
        entry.live,
        meta.uid.as_deref(),
        meta.resource_version.as_deref(),
    ) else {
        return false;
    };
    let proven = entry.api_version == m.api_version
        && entry.digest.matches(&m.digest)
        && labels_in_place
        && stamp.matches(uid, meta.generation.filter(|g| *g > 0), rv);
    if proven && let Some(state) = AppliedState::of(&m.digest, meta) {
        op.memory.insert(owner, &m.id, state);
    }
    proven
}

/// Applies one object; recreates it on an immutable-field error when opted in.
async fn apply_one(
    op: &Op<'_>,
    input: &ApplyInput<'_>,
    m: &Manifest,
    resolved: &Resolved,
    before: &Before,
) -> Action {
    let calls = &op.calls;
    let owner = input.owner;
    if let Some(reason) = op.breaker.skip_reason() {
        return Action::Skipped(reason);
    }
    let api = calls.api(resolved, m.id.namespace.as_deref());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    calls.count();
    let error = match api
        .patch(&m.id.name, &params, &Patch::Apply(&m.object))
        .await
    {
        Ok(after) => {
            let action = classify(op, owner, m, before, &after.metadata);
            op.memory.remember(owner, m, &after.metadata);
            return action;
        }
        Err(e) => e,
    };
    op.memory.forget(owner, &m.id);
    if op.breaker.observe(&error) {
        return Action::Skipped(op.breaker.skip_reason().unwrap_or_default());
    }
    let kube::Error::Api(status) = &error else {
        return Action::Failed(error_message(&error));
    };
    if !is_recreate_error(status.code, &status.reason, &status.message) {
        if refused_as_is(status.code) {
            op.refused.fetch_add(1, Ordering::Relaxed);
        }
        return Action::Failed(error_message(&error));
    }
    if !(input.force || force_enabled(&m.object)) {
        op.refused.fetch_add(1, Ordering::Relaxed);
        return Action::Failed(format!(
            "{}; an immutable field changed: set the annotation {ANNOTATION_FORCE}: {FORCE_ENABLED} on the object (or force on the sync) to delete and recreate it",
            error_message(&error),
        ));
    }
    info!(object = %m.id, reason = %status.message, "immutable field changed: recreating");
    match recreate(op, &api, m).await {
        Ok(meta) => {
            op.memory.remember(owner, m, &meta);
            Action::Configured
        }
        Err(e) => Action::Failed(format!(
            "recreating after \"{}\": {e}",
            error_message(&error)
        )),
    }
}

/// Created, configured or unchanged, from what was listed before and what the apply returned.
fn classify(
    op: &Op<'_>,
    owner: &SyncOwner,
    m: &Manifest,
    before: &Before,
    after: &ObjectMeta,
) -> Action {
    match before {
        Before::Live(live) => {
            let before = &live.metadata;
            let same_version = before.resource_version == after.resource_version;
            // A controller may write the object (its status) between the list and the
            // apply: with the same generation (no spec change) and our labels and annotations
            // already in place, the apply itself changed nothing.
            let untouched_by_us = before.generation.is_some_and(|g| g > 0)
                && before.generation == after.generation
                && contains_all(m.object.pointer("/metadata/labels"), before.labels.as_ref())
                && contains_all(
                    m.object.pointer("/metadata/annotations"),
                    before.annotations.as_ref(),
                );
            if before.uid == after.uid && (same_version || untouched_by_us) {
                Action::Unchanged
            } else {
                Action::Configured
            }
        }
        Before::NotListed | Before::Unknown => {
            let known_uid = op.memory.get(owner, &m.id).map(|s| s.uid);
            let only_ours = after
                .managed_fields
                .iter()
                .flatten()
                .all(|f| f.manager.as_deref() == Some(FIELD_MANAGER));
            if only_ours && known_uid.as_ref() != after.uid.as_ref() {
                Action::Created
            } else {
                Action::Configured
            }
        }
    }
}

/// Deletes the object (if it exists), waits until it is gone and applies it again.
async fn recreate(
    op: &Op<'_>,
    api: &kube::Api<DynamicObject>,
    m: &Manifest,
) -> Result<ObjectMeta, String> {
    let calls = &op.calls;
    calls.count();
    let live = api
        .get_metadata_opt(&m.id.name)
        .await
        .map_err(|e| format!("reading: {}", error_message(&e)))?;
    let Some(live) = live else {
        return Err("the object does not exist, so it is not recreated".into());
    };
    let mut dp = DeleteParams::background();
    dp.preconditions = Some(Preconditions {
        uid: live.metadata.uid.clone(),
        resource_version: None,
    });
    calls.count();
    match api.delete(&m.id.name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(format!("deleting: {}", error_message(&e))),
    }
    let deadline = Instant::now() + op.stage_timeout;
    loop {
        calls.count();
        match api.get_metadata_opt(&m.id.name).await {
            Ok(None) => break,
            Ok(Some(o)) if o.metadata.uid != live.metadata.uid => break,
            Ok(Some(_)) if Instant::now() >= deadline => {
                return Err(format!(
                    "still present {:?} after its deletion",
                    op.stage_timeout
                ));
            }
            Ok(Some(_)) => {
                tokio::time::sleep(op.poll_interval.min(Duration::from_millis(200))).await
            }
            Err(e) => return Err(format!("waiting for the deletion: {}", error_message(&e))),
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    calls.count();
    let after = api
        .patch(&m.id.name, &params, &Patch::Apply(&m.object))
        .await
        .map_err(|e| format!("applying after the deletion: {}", error_message(&e)))?;
    Ok(after.metadata)
}

/// Whether every key of the desired string map has the same value in the live one.
fn contains_all(desired: Option<&Value>, live: Option<&BTreeMap<String, String>>) -> bool {
    let Some(desired) = desired.and_then(Value::as_object) else {
        return true;
    };
    desired.iter().all(|(k, v)| {
        let live_value = live.and_then(|l| l.get(k));
        match v.as_str() {
            Some(s) => live_value.map(String::as_str) == Some(s),
            None => v.is_null() && live_value.is_none(),
        }
    })
}

/// How many objects of the stage just applied (the last `manifests.len()` changes) were not.
fn actions_not_applied(changes: &ChangeSet, manifests: &[Manifest]) -> usize {
    changes
        .changes
        .iter()
        .rev()
        .take(manifests.len())
        .filter(|c| matches!(c.action, Action::Skipped(_) | Action::Failed(_)))
        .count()
}

/// Whether an API status refuses the object as it is, so that sending it again fails the same
/// way: 400 (malformed, or an admission webhook's denial), 413 (too large), 422 (invalid).
/// Conflicts, missing namespaces or kinds, rights and server errors may pass later.
fn refused_as_is(code: u16) -> bool {
    matches!(code, 400 | 413 | 422)
}
