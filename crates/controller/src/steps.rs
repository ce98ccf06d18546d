//! The pipeline of one sync as named steps, each owning one failure reason: fetch
//! (`FetchFailed`), render (`RenderFailed`), apply (`ApplyFailed`), prune (`PruneFailed`), wait
//! (`HealthCheckFailed`), then the drift check (self-heal off). The steps report their progress
//! to a [`Tracker`] and fill an [`Outcome`]; they write no status.
//!
//! Architecture invariant: nothing is applied or pruned unless the fetch and the render both
//! succeeded completely (only then does a `RenderedSet` exist).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use headway_apply::{
    ApplyError, DriftReport, DriftState, RetryHint, SyncReport, SyncRequest, SyncStep,
};
use headway_model::ObjectRef;
use headway_model::health::{Health, HealthStatus};
use headway_model::{RenderedSet, SyncOwner};
use headway_source::{Cache, Freshness, Revision};
use tracing::warn;

use crate::conditions::Reason;
use crate::context::{Ctx, key_of};
use crate::crd::{
    DriftSummary, DriftedObject, EffectiveSpec, GitSync, MAX_DRIFT_FIELDS, MAX_DRIFT_LISTED,
    MAX_UNHEALTHY_LISTED, ObjectCounts, StageTiming, UnhealthyObject,
};
pub use crate::input::revision_name;
use crate::input::{self, RenderDir};
use crate::outcome::{Failure, HealthSummary, Outcome, RunResult};
use crate::progress::Stage;
use crate::schedule::{self, Retry, Trigger};
use crate::tracker::Tracker;

/// Runs the pipeline; the outcome says how far it got and how it ended.
pub async fn pipeline(
    ctx: &Ctx,
    obj: &GitSync,
    spec: &EffectiveSpec,
    trigger: Trigger,
    rebuild: bool,
    tracker: &mut Tracker,
) -> Outcome {
    let mut outcome = Outcome::empty();
    outcome.result = match run(ctx, obj, spec, trigger, rebuild, tracker, &mut outcome).await {
        Ok(result) => result,
        Err(failure) => RunResult::Failed(failure),
    };
    outcome
}

async fn run(
    ctx: &Ctx,
    obj: &GitSync,
    spec: &EffectiveSpec,
    trigger: Trigger,
    rebuild: bool,
    tracker: &mut Tracker,
    outcome: &mut Outcome,
) -> Result<RunResult, Failure> {
    let owner = input::owner(obj)?;
    let default_namespace = input::default_namespace(obj);

    // Fetch.
    let t = Instant::now();
    tracker.stage_started(Stage::Fetch, None, None);
    let fetched = match fetch(ctx, obj, spec, rebuild).await {
        // A remote chart is part of the source: resolved now, so its version is in the revision.
        Ok((revision, scratch)) => match ctx.renderer().remote_chart(obj, spec).await {
            Ok(chart) => Ok((revision, scratch, chart)),
            Err(f) => {
                remove_scratch(scratch);
                Err(f)
            }
        },
        Err(f) => Err(f),
    };
    tracker.stage_finished(Stage::Fetch, None, t.elapsed(), None, fetched.is_ok());
    let (revision, scratch, chart) = fetched?;
    stage(outcome, "fetch", t.elapsed());
    let revision_text = input::revision_text(spec, &revision.sha, chart.as_ref());
    outcome.revision = Some(revision_text.clone());
    if !rebuild
        && schedule::stays_stalled(
            obj.status.as_ref(),
            obj.metadata.generation,
            &revision_text,
            trigger,
        )
    {
        remove_scratch(scratch);
        return Ok(RunResult::StillStalled);
    }

    // Render.
    let t = Instant::now();
    tracker.stage_started(Stage::Render, None, None);
    let rendered = ctx
        .renderer()
        .render(
            obj,
            spec,
            &RenderDir::in_checkout(&revision.tree_dir, spec),
            &revision_text,
            chart.as_ref(),
        )
        .await;
    remove_scratch(scratch);
    let count = rendered.as_ref().ok().map(|s| s.manifests().len() as u64);
    tracker.stage_finished(Stage::Render, None, t.elapsed(), count, rendered.is_ok());
    let set = rendered?;
    stage(outcome, "render", t.elapsed());
    let total = set.manifests().len();
    tracker.set_objects(total);

    // Apply, prune, wait.
    let report = sync_objects(
        ctx,
        obj,
        spec,
        rebuild,
        &owner,
        &default_namespace,
        &set,
        tracker,
    )
    .await?;
    for (name, d) in &report.timings {
        stage(outcome, name, *d);
    }
    outcome.changes = report.changes.clone();
    outcome.health = Some(health_summary(total, &report.health));
    apply_step(&report)?;
    prune_step(&report)?;
    wait_step(&report)?;
    if !report.changes.is_ok() {
        return Err(Failure::at(
            Stage::Apply,
            report.changes.describe_changes(),
            true,
        ));
    }

    // Drift check: with self-heal, the sync itself re-applied what differed.
    if !spec.self_heal && !rebuild {
        let t = Instant::now();
        let drift = match ctx.acting_as(obj) {
            Ok(acting_as) => ctx
                .engine
                .drift_as(acting_as.as_ref(), &owner, &set, &default_namespace)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match drift {
            Ok(drift) => {
                outcome.drift = Some(drift_summary(
                    &drift,
                    &schedule::format_time(SystemTime::now()),
                ))
            }
            Err(e) => warn!(gitsync = %owner, error = %e, "drift check failed"),
        }
        stage(outcome, "drift", t.elapsed());
    }
    Ok(RunResult::Succeeded)
}

fn stage(outcome: &mut Outcome, name: &str, d: Duration) {
    outcome.stages.push(StageTiming {
        name: name.to_string(),
        duration_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    });
}

/// Which shared fetch results a run may use: while a sync request (a webhook makes one too) is
/// pending, whatever triggered the run (a request, or a spec change such as `headway resume`
/// made together with one), only a fetch that started after the request was made; otherwise one
/// that started within a tenth of the interval (and within `--fetch-reuse`), so reuse delays a
/// push by no more than the interval's jitter does.
pub fn freshness(obj: &GitSync, interval: Duration) -> Freshness {
    match schedule::View::of(obj, interval).pending_sync_request() {
        Some(value) => Freshness::StartedAfter(
            // Unreadable: the request is at most as old as this run.
            schedule::parse_time(value).unwrap_or_else(SystemTime::now),
        ),
        None => Freshness::Recent(interval / 10),
    }
}

/// Fetch: the revision, and the scratch cache of a rebuild (to remove after rendering).
async fn fetch(
    ctx: &Ctx,
    obj: &GitSync,
    spec: &EffectiveSpec,
    rebuild: bool,
) -> Result<(Revision, Option<PathBuf>), Failure> {
    let (_, name) = key_of(obj);
    let source = input::git_source(&ctx.client, obj, spec).await?;
    let options = input::fetch_options(spec);
    let result = if rebuild {
        // Bypass the cache: a fresh, empty one for this fetch only, shared with nobody.
        let dir = ctx.cache_dir.join(format!(
            ".rebuild-{}",
            obj.metadata.uid.as_deref().unwrap_or(&name)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = Cache::new(&dir).map_err(|e| Failure::at(Stage::Fetch, e.to_string(), true))?;
        let fetched = tokio::task::spawn_blocking(move || cache.fetch(&source, &options)).await;
        (fetched, Some(dir))
    } else {
        let cache = ctx.cache.clone();
        let freshness = freshness(obj, spec.interval);
        let fetched =
            tokio::task::spawn_blocking(move || cache.fetch(&source, &options, freshness)).await;
        (fetched, None)
    };
    let (result, scratch) = result;
    match result {
        Ok(Ok(r)) => Ok((r, scratch)),
        Ok(Err(e)) => {
            remove_scratch(scratch);
            Err(input::fetch_failure(obj, &e))
        }
        Err(e) => {
            remove_scratch(scratch);
            Err(Failure::at(Stage::Fetch, format!("fetch task: {e}"), true))
        }
    }
}

fn remove_scratch(dir: Option<PathBuf>) {
    if let Some(dir) = dir
        && let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(dir = %dir.display(), error = %e, "removing the rebuild cache");
    }
}

/// Apply, prune and wait, done by the apply engine in one call; its progress goes to the
/// tracker as it happens. Errors that stop the engine before it applies anything are apply
/// failures.
#[allow(clippy::too_many_arguments)]
async fn sync_objects(
    ctx: &Ctx,
    obj: &GitSync,
    spec: &EffectiveSpec,
    rebuild: bool,
    owner: &SyncOwner,
    default_namespace: &str,
    set: &RenderedSet,
    tracker: &mut Tracker,
) -> Result<SyncReport, Failure> {
    let mut req = SyncRequest::new(owner.clone(), default_namespace.to_string(), set.clone());
    req.prune = spec.prune;
    req.wait = spec.wait;
    req.timeout = spec.timeout;
    req.force = obj.spec.force;
    req.allow_empty = obj.spec.allow_empty;
    req.max_prune_fraction = Some(f64::from(spec.max_prune_percent) / 100.0);
    req.rebuild = rebuild;
    req.self_heal = spec.self_heal || rebuild;
    req.acting_as = ctx
        .acting_as(obj)
        .map_err(|e| Failure::new(Reason::ApplyFailed, e.to_string(), false))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    req.progress = Some(tx);
    let engine = async move {
        // `req` (and with it the sender) is dropped when the engine is done, ending the
        // forwarding below.
        let req = req;
        ctx.engine.sync(&req).await.map_err(|e| apply_error(&e))
    };
    let forward = async {
        while let Some(p) = rx.recv().await {
            tracker.engine(p);
        }
    };
    let (report, ()) = tokio::join!(engine, forward);
    report
}

/// Apply: every object applied. Objects the API server refused as they are (invalid, too
/// large) are tried again at the next interval, not with backoff: sending them sooner fails the
/// same way, but an admission policy or a CRD schema may change without the source changing.
fn apply_step(report: &SyncReport) -> Result<(), Failure> {
    match &report.failure {
        Some(f) if f.step == SyncStep::Apply && f.refused_by_server => Err(Failure {
            retry: Retry::NextInterval,
            ..Failure::at(Stage::Apply, f.message.clone(), false)
        }),
        Some(f) if f.step == SyncStep::Apply => {
            Err(Failure::at(Stage::Apply, f.message.clone(), true))
        }
        _ => Ok(()),
    }
}

/// Prune: what left the source deleted. A refused prune (empty set, mass deletion) repeats
/// until git or the spec changes; failed deletions may succeed later.
fn prune_step(report: &SyncReport) -> Result<(), Failure> {
    match &report.failure {
        Some(f) if f.step == SyncStep::Prune => Err(Failure::at(
            Stage::Prune,
            f.message.clone(),
            f.refused.is_none(),
        )),
        _ => Ok(()),
    }
}

/// Wait: every object Current within the timeout.
fn wait_step(report: &SyncReport) -> Result<(), Failure> {
    match &report.failure {
        Some(f) if f.step == SyncStep::Health => {
            Err(Failure::at(Stage::Wait, f.message.clone(), false))
        }
        _ => Ok(()),
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

/// `Kind` for core kinds, `Kind.group` otherwise.
fn kind_of(id: &ObjectRef) -> String {
    if id.group.is_empty() {
        id.kind.clone()
    } else {
        format!("{}.{}", id.kind, id.group)
    }
}

/// Counts by health of the `total` objects of the revision, and the first objects not
/// Current. Without health reads (no wait), every object is Unknown and none is listed.
pub fn health_summary(total: usize, health: &[(ObjectRef, Health)]) -> HealthSummary {
    let mut counts = ObjectCounts {
        total: u32::try_from(total).unwrap_or(u32::MAX),
        ..ObjectCounts::default()
    };
    let mut unhealthy = Vec::new();
    if health.is_empty() {
        counts.unknown = counts.total;
    }
    for (id, h) in health {
        match h.status {
            HealthStatus::Current => counts.current += 1,
            HealthStatus::InProgress => counts.in_progress += 1,
            HealthStatus::Failed => counts.failed += 1,
            HealthStatus::Terminating => counts.terminating += 1,
            HealthStatus::NotFound => counts.not_found += 1,
            HealthStatus::Unknown => counts.unknown += 1,
        }
        if h.status != HealthStatus::Current && unhealthy.len() < MAX_UNHEALTHY_LISTED {
            unhealthy.push(UnhealthyObject {
                kind: kind_of(id),
                namespace: id.namespace.clone(),
                name: id.name.clone(),
                health: h.status.to_string(),
                message: h.message.clone(),
            });
        }
    }
    HealthSummary { counts, unhealthy }
}

/// The drift of a check made at `now`: counts, one line per drifted object (first fields) and
/// the field paths (bounded; values never leave the engine's report).
pub fn drift_summary(drift: &DriftReport, now: &str) -> DriftSummary {
    let mut listed = Vec::new();
    let mut details = Vec::new();
    let mut drifted = 0u32;
    for (id, state) in &drift.objects {
        let (line, detail) = match state {
            DriftState::InSync | DriftState::Error(_) => continue,
            DriftState::Missing => (
                format!("{id}: missing"),
                DriftedObject {
                    object: id.to_string(),
                    fields: Vec::new(),
                    missing: true,
                },
            ),
            DriftState::Drifted(diffs) => (
                format!(
                    "{id}: {}",
                    diffs
                        .iter()
                        .take(3)
                        .map(|d| d.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                DriftedObject {
                    object: id.to_string(),
                    fields: diffs
                        .iter()
                        .take(MAX_DRIFT_FIELDS)
                        .map(|d| d.path.clone())
                        .collect(),
                    missing: false,
                },
            ),
        };
        drifted += 1;
        if listed.len() < MAX_DRIFT_LISTED {
            listed.push(line);
            details.push(detail);
        }
    }
    DriftSummary {
        drifted,
        checked_at: Some(now.to_string()),
        objects: listed,
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ANNOTATION_SYNC_REQUESTED;

    fn report(failure: headway_apply::SyncFailure) -> SyncReport {
        SyncReport {
            changes: Default::default(),
            timings: Vec::new(),
            health: Vec::new(),
            failure: Some(failure),
            requests: 0,
            inventory_len: 0,
        }
    }

    #[test]
    fn objects_refused_as_they_are_wait_for_the_next_interval_other_failures_back_off() {
        let refused = headway_apply::SyncFailure {
            refused_by_server: true,
            ..headway_apply::SyncFailure::new(SyncStep::Apply, "refused".into())
        };
        let failure = apply_step(&report(refused)).unwrap_err();
        assert_eq!(
            (failure.reason, failure.retry),
            (Reason::ApplyFailed, Retry::NextInterval)
        );
        let other = headway_apply::SyncFailure::new(SyncStep::Apply, "409".into());
        let failure = apply_step(&report(other)).unwrap_err();
        assert_eq!(failure.retry, Retry::Transient);
        let prune = headway_apply::SyncFailure::new(SyncStep::Prune, "x".into());
        assert!(apply_step(&report(prune)).is_ok());
    }

    #[test]
    fn only_a_pending_sync_request_asks_for_a_fetch_newer_than_the_request() {
        let minute = Duration::from_secs(60);
        let recent = Freshness::Recent(Duration::from_secs(6));
        let mut obj = GitSync::new(
            "s",
            serde_json::from_value(serde_json::json!({"repository": {"url": "git://h/r"}}))
                .unwrap(),
        );
        assert_eq!(freshness(&obj, minute), recent, "no request");
        let value = "2026-12-01T17:00:00.250Z";
        obj.metadata.annotations =
            Some([(ANNOTATION_SYNC_REQUESTED.to_string(), value.to_string())].into());
        assert_eq!(
            freshness(&obj, minute),
            Freshness::StartedAfter(schedule::parse_time(value).unwrap()),
            "pending"
        );
        obj.status = Some(crate::crd::GitSyncStatus {
            last_handled_sync_request: Some(value.to_string()),
            ..Default::default()
        });
        assert_eq!(freshness(&obj, minute), recent, "handled already");
        // An unreadable request time: fresher than the run itself.
        obj.metadata.annotations =
            Some([(ANNOTATION_SYNC_REQUESTED.to_string(), "soon".to_string())].into());
        let before = SystemTime::now();
        match freshness(&obj, minute) {
            Freshness::StartedAfter(t) => assert!(t >= before),
            other => panic!("{other:?}"),
        }
    }

    fn id(group: &str, kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            group: group.into(),
            kind: kind.into(),
            namespace: Some("apps".into()),
            name: name.into(),
        }
    }

    #[test]
    fn health_is_counted_and_the_unhealthy_objects_listed_with_a_bound() {
        let h = |status, message: &str| Health {
            status,
            message: message.into(),
        };
        let mut health = vec![
            (
                id("apps", "Deployment", "web"),
                h(HealthStatus::InProgress, "0/1 ready"),
            ),
            (id("", "ConfigMap", "c"), h(HealthStatus::Current, "")),
        ];
        let s = health_summary(2, &health);
        assert_eq!(
            (s.counts.total, s.counts.current, s.counts.in_progress),
            (2, 1, 1)
        );
        assert_eq!(
            s.unhealthy,
            vec![UnhealthyObject {
                kind: "Deployment.apps".into(),
                namespace: Some("apps".into()),
                name: "web".into(),
                health: "InProgress".into(),
                message: "0/1 ready".into(),
            }]
        );
        for i in 0..100 {
            health.push((
                id("", "Pod", &format!("p{i}")),
                h(HealthStatus::Failed, "x"),
            ));
        }
        let s = health_summary(102, &health);
        assert_eq!(s.counts.failed, 100);
        assert_eq!(s.unhealthy.len(), MAX_UNHEALTHY_LISTED);
        let s = health_summary(5, &[]);
        assert_eq!((s.counts.unknown, s.unhealthy.len()), (5, 0));
    }
}
