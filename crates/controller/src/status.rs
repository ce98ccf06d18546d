//! The next status of a GitSync and the Events to emit, as pure functions of the previous
//! status, what happened, and the time: no API call, no clock, no memory. The reconcile writes
//! what these return, once.
//!
//! Rules kept here:
//! - a condition's `lastTransitionTime` moves only when its status does ([`conditions::set`]);
//! - terminal failures set `Stalled=True`, transient ones keep `Reconciling=True` while
//!   retrying, health failures wait for the next interval;
//! - one Event per sync that did something (or a new revision, a recovery, a rebuild); the
//!   no-op syncs of one revision form one `NoChange` Event series; the same failure again
//!   emits nothing.
//!
//! long because the table tests (about half the file) sit beside the rules they check.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::conditions::ConditionStatus::{False, True};
use crate::conditions::{self, DRIFTED, READY, RECONCILING, Reason, STALLED};
use crate::crd::{
    ANNOTATION_REBUILD_REQUESTED, ANNOTATION_SYNC_REQUESTED, DriftSummary, GitSyncStatus,
    ReconcileRecord, format_duration,
};
use crate::events::{Emit, EventType};
use crate::outcome::{Outcome, RunResult};
use crate::schedule::{self, Retry, Trigger};

/// A status to write and the Events to emit after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    pub status: GitSyncStatus,
    pub emit: Vec<Emit>,
}

/// Facts about a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub rebuild: bool,
    /// `metadata.generation` of the GitSync the run worked on.
    pub generation: Option<i64>,
    pub start: SystemTime,
    pub end: SystemTime,
    /// Wall time of the run (monotonic).
    pub elapsed: Duration,
}

fn previous(prev: Option<&GitSyncStatus>) -> GitSyncStatus {
    prev.cloned().unwrap_or_default()
}

/// The spec cannot be used (`InvalidSpec`): stalled until it changes. `None` when the status
/// already says so for this generation.
pub fn invalid_spec(
    prev: Option<&GitSyncStatus>,
    generation: Option<i64>,
    message: &str,
    now: SystemTime,
) -> Option<Next> {
    let mut status = previous(prev);
    if status.observed_generation == generation && conditions::is_true(&status.conditions, STALLED)
    {
        return None;
    }
    let now = schedule::format_time(now);
    fail_conditions(
        &mut status,
        Reason::InvalidSpec,
        message,
        Retry::Terminal,
        generation,
        &now,
    );
    status.observed_generation = generation;
    Some(Next {
        status,
        emit: vec![Emit::event(
            EventType::Warning,
            Reason::InvalidSpec.as_str(),
            message,
        )],
    })
}

/// `spec.suspend` is set: `Reconciling=False` with reason `Suspended`. `None` when the status
/// already says so.
pub fn suspended(
    prev: Option<&GitSyncStatus>,
    generation: Option<i64>,
    now: SystemTime,
) -> Option<GitSyncStatus> {
    let mut status = previous(prev);
    let already = conditions::get(&status.conditions, RECONCILING)
        .is_some_and(|c| c.reason == conditions::REASON_SUSPENDED);
    if already {
        return None;
    }
    conditions::set(
        &mut status.conditions,
        RECONCILING,
        False,
        conditions::REASON_SUSPENDED,
        "spec.suspend is true: not syncing",
        generation,
        &schedule::format_time(now),
    );
    Some(status)
}

/// A dependency is missing or not Ready (`message` says which). `None` when the status already
/// says the same.
pub fn waiting_for_dependencies(
    prev: Option<&GitSyncStatus>,
    generation: Option<i64>,
    message: &str,
    now: SystemTime,
) -> Option<Next> {
    let mut status = previous(prev);
    let same = conditions::get(&status.conditions, READY)
        .is_some_and(|c| c.reason == Reason::DependencyNotReady.as_str() && c.message == message);
    if same {
        return None;
    }
    let now = schedule::format_time(now);
    conditions::set(
        &mut status.conditions,
        READY,
        False,
        Reason::DependencyNotReady.as_str(),
        message,
        generation,
        &now,
    );
    conditions::set(
        &mut status.conditions,
        RECONCILING,
        True,
        conditions::REASON_PROGRESSING,
        "waiting for dependencies",
        generation,
        &now,
    );
    Some(Next {
        status,
        emit: vec![Emit::event(
            EventType::Normal,
            Reason::DependencyNotReady.as_str(),
            message,
        )],
    })
}

/// A run starts: the requests it handles are recorded and `Reconciling=True` says why it runs.
pub fn started(
    prev: Option<&GitSyncStatus>,
    annotations: &BTreeMap<String, String>,
    trigger: Trigger,
    rebuild: bool,
    generation: Option<i64>,
    now: SystemTime,
) -> GitSyncStatus {
    let mut status = previous(prev);
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
        True,
        conditions::REASON_PROGRESSING,
        &format!("{what} ({})", trigger.as_str()),
        generation,
        &schedule::format_time(now),
    );
    status
}

/// A run is at a stage: `Reconciling=True` with the stage's message (see
/// [`crate::tracker::stage_message`]).
pub fn in_progress(
    started: &GitSyncStatus,
    message: &str,
    generation: Option<i64>,
    now: SystemTime,
) -> GitSyncStatus {
    let mut status = started.clone();
    conditions::set(
        &mut status.conditions,
        RECONCILING,
        True,
        conditions::REASON_PROGRESSING,
        message,
        generation,
        &schedule::format_time(now),
    );
    status
}

/// The status after a run, from the status before it (`prev`), the status written when it
/// started (`started`), the run and its outcome; and the Events to emit.
pub fn finished(
    prev: Option<&GitSyncStatus>,
    started: &GitSyncStatus,
    run: &Run,
    outcome: &Outcome,
) -> Next {
    let generation = run.generation;
    let now = schedule::format_time(run.end);
    if outcome.result == RunResult::StillStalled {
        // Same revision, same spec, same terminal failure: keep the status as it was.
        let mut status = previous(prev);
        conditions::set(
            &mut status.conditions,
            RECONCILING,
            False,
            conditions::REASON_RETRYING,
            "stalled: waiting for a new revision or a spec change",
            generation,
            &now,
        );
        return Next {
            status,
            emit: Vec::new(),
        };
    }

    let mut status = started.clone();
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
        start: schedule::format_time(run.start),
        end: now.clone(),
        duration_ms: u64::try_from(run.elapsed.as_millis()).unwrap_or(u64::MAX),
        duration: format_duration(run.elapsed),
        result: match outcome.failure() {
            None => "Succeeded".into(),
            Some(f) => f.reason.as_str().into(),
        },
        changes,
        stages: outcome.stages.clone(),
    };
    status.last_reconcile = Some(record.clone());
    if run.rebuild {
        status.last_rebuild = Some(record);
    }
    if let Some(health) = &outcome.health {
        status.objects = Some(health.counts.clone());
        status.unhealthy = health.unhealthy.clone();
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
        format_duration(run.elapsed)
    );
    let mut emit = Vec::new();
    match outcome.failure() {
        None => {
            status.last_applied_revision = outcome.revision.clone();
            let message = format!(
                "{} revision {revision}: {counts}",
                if run.rebuild { "Rebuilt" } else { "Applied" },
            );
            let c = &mut status.conditions;
            let succeeded = conditions::REASON_SUCCEEDED;
            conditions::set(c, READY, True, succeeded, &message, generation, &now);
            conditions::set(c, RECONCILING, False, succeeded, "", generation, &now);
            conditions::set(c, STALLED, False, succeeded, "", generation, &now);
            match &outcome.drift {
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
                        drifted.into(),
                        if drifted {
                            conditions::REASON_DRIFT_DETECTED
                        } else {
                            conditions::REASON_NO_DRIFT
                        },
                        &message,
                        generation,
                        &now,
                    );
                    status.drift = Some(drift.clone());
                }
                None => {
                    // Self-heal: what differed was re-applied by this sync.
                    conditions::set(
                        &mut status.conditions,
                        DRIFTED,
                        False,
                        conditions::REASON_NO_DRIFT,
                        "self-heal: the cluster was made equal to git",
                        generation,
                        &now,
                    );
                    status.drift = Some(DriftSummary {
                        drifted: 0,
                        checked_at: Some(now.clone()),
                        objects: Vec::new(),
                        details: Vec::new(),
                    });
                }
            }
            // One Event per sync that did something; the no-op syncs of one revision form one
            // Event series (its count and last time move), so every reconcile is recorded
            // without an Event object per interval.
            let was_ready = prev.is_some_and(|s| conditions::is_true(&s.conditions, READY));
            let same_revision =
                prev.and_then(|s| s.last_applied_revision.as_deref()) == Some(revision.as_str());
            let did_something = counts.created + counts.configured + counts.deleted > 0;
            if did_something || !same_revision || !was_ready || run.rebuild {
                emit.push(Emit::event(
                    EventType::Normal,
                    if run.rebuild {
                        "RebuildSucceeded"
                    } else {
                        conditions::REASON_SUCCEEDED
                    },
                    summary,
                ));
            } else {
                emit.push(Emit::NoChange {
                    revision,
                    note: summary,
                });
            }
        }
        Some(failure) => {
            fail_conditions(
                &mut status,
                failure.reason,
                &failure.message,
                failure.retry,
                generation,
                &now,
            );
            // One Event per new failure; the same failure again is only logged.
            let same_failure = prev
                .and_then(|s| conditions::get(&s.conditions, READY))
                .is_some_and(|c| {
                    c.reason == failure.reason.as_str()
                        && c.message
                            == conditions::truncate(&failure.message, conditions::MAX_MESSAGE_BYTES)
                })
                && prev.and_then(|s| s.last_attempted_revision.as_deref())
                    == outcome.revision.as_deref();
            if !same_failure {
                emit.push(Emit::event(
                    EventType::Warning,
                    failure.reason.as_str(),
                    format!("{summary}: {}", failure.message),
                ));
            }
        }
    }
    Next { status, emit }
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
    let r = reason.as_str();
    conditions::set(c, READY, False, r, message, generation, now);
    match retry {
        Retry::Terminal => {
            conditions::set(c, STALLED, True, r, message, generation, now);
            conditions::set(
                c,
                RECONCILING,
                False,
                r,
                "stalled until the spec or the revision changes",
                generation,
                now,
            );
        }
        Retry::Transient => {
            conditions::set(c, STALLED, False, r, "", generation, now);
            conditions::set(
                c,
                RECONCILING,
                True,
                conditions::REASON_RETRYING,
                "retrying with backoff",
                generation,
                now,
            );
        }
        Retry::NextInterval => {
            conditions::set(c, STALLED, False, r, "", generation, now);
            conditions::set(
                c,
                RECONCILING,
                False,
                r,
                "retrying at the next interval",
                generation,
                now,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DriftedObject, ObjectCounts, StageTiming};
    use crate::outcome::{Failure, HealthSummary};
    use headway_model::ObjectRef;
    use headway_model::changeset::{Action, ChangeSet};

    const REV: &str = "main@sha1:0123";

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn t(secs: u64) -> String {
        schedule::format_time(at(secs))
    }

    fn run(rebuild: bool) -> Run {
        Run {
            rebuild,
            generation: Some(2),
            start: at(10),
            end: at(12),
            elapsed: Duration::from_millis(1500),
        }
    }

    fn changes(created: usize, unchanged: usize) -> ChangeSet {
        let mut c = ChangeSet::new();
        let id = |i: usize| ObjectRef {
            group: String::new(),
            kind: "ConfigMap".into(),
            namespace: Some("apps".into()),
            name: format!("c{i}"),
        };
        for i in 0..created {
            c.push(id(i), Action::Created);
        }
        for i in created..created + unchanged {
            c.push(id(i), Action::Unchanged);
        }
        c
    }

    fn succeeded(created: usize, unchanged: usize) -> Outcome {
        Outcome {
            revision: Some(REV.into()),
            stages: vec![StageTiming {
                name: "fetch".into(),
                duration_ms: 250,
            }],
            changes: changes(created, unchanged),
            health: Some(HealthSummary {
                counts: ObjectCounts {
                    total: (created + unchanged) as u32,
                    current: (created + unchanged) as u32,
                    ..ObjectCounts::default()
                },
                unhealthy: Vec::new(),
            }),
            drift: None,
            result: RunResult::Succeeded,
        }
    }

    fn failed(reason: Reason, retry: Retry, message: &str) -> Outcome {
        Outcome {
            revision: Some(REV.into()),
            stages: Vec::new(),
            changes: ChangeSet::new(),
            health: None,
            drift: None,
            result: RunResult::Failed(Failure {
                reason,
                message: message.into(),
                retry,
            }),
        }
    }

    /// The status after a successful sync of [`REV`] at `at(0)`.
    fn ready_before() -> GitSyncStatus {
        let started = started(None, &BTreeMap::new(), Trigger::New, false, Some(2), at(0));
        let mut r = run(false);
        r.start = at(0);
        r.end = at(0);
        finished(None, &started, &r, &succeeded(1, 0)).status
    }

    /// Conditions as `Type=Status/Reason@transition` lines (transition `before` = `at(0)`, `start`
    /// = the run's start, `now` = its end), Events as `event Type Reason: note`.
    fn render(next: &Next) -> String {
        let mut out = Vec::new();
        for c in &next.status.conditions {
            let when = if c.last_transition_time == t(12) {
                "now".to_string()
            } else if c.last_transition_time == t(10) {
                "start".to_string()
            } else if c.last_transition_time == t(0) {
                "before".to_string()
            } else {
                c.last_transition_time.clone()
            };
            out.push(format!("{}={}/{}@{when}", c.type_, c.status, c.reason));
        }
        for e in &next.emit {
            out.push(match e {
                Emit::Event {
                    type_,
                    reason,
                    note,
                } => format!("event {} {reason}: {note}", type_.as_str()),
                Emit::NoChange { revision, note } => format!("series NoChange {revision}: {note}"),
            });
        }
        out.join("\n")
    }

    /// Runs `finished` on (previous status, outcome) and compares the rendering.
    fn check(prev: Option<GitSyncStatus>, rebuild: bool, outcome: Outcome, expected: &str) {
        let started = started(
            prev.as_ref(),
            &BTreeMap::new(),
            Trigger::Interval,
            rebuild,
            Some(2),
            at(10),
        );
        let next = finished(prev.as_ref(), &started, &run(rebuild), &outcome);
        let got = render(&next);
        assert_eq!(got, expected.trim(), "\n--- got:\n{got}\n");
    }

    #[test]
    fn conditions_and_events_after_a_run() {
        // First sync: every condition new, one Event.
        check(
            None,
            false,
            succeeded(2, 0),
            "
Ready=True/ReconciliationSucceeded@now
Reconciling=False/ReconciliationSucceeded@now
Stalled=False/ReconciliationSucceeded@now
Drifted=False/NoDrift@now
event Normal ReconciliationSucceeded: main@sha1:0123: 2 created, 0 configured, 0 pruned in 1.500s",
        );
        // The same revision again, nothing changed: the NoChange series; transitions stay.
        check(
            Some(ready_before()),
            false,
            succeeded(0, 2),
            "
Ready=True/ReconciliationSucceeded@before
Reconciling=False/ReconciliationSucceeded@now
Stalled=False/ReconciliationSucceeded@before
Drifted=False/NoDrift@before
series NoChange main@sha1:0123: main@sha1:0123: 0 created, 0 configured, 0 pruned in 1.500s",
        );
        // Something changed: an Event, not the series.
        check(
            Some(ready_before()),
            false,
            succeeded(1, 1),
            "
Ready=True/ReconciliationSucceeded@before
Reconciling=False/ReconciliationSucceeded@now
Stalled=False/ReconciliationSucceeded@before
Drifted=False/NoDrift@before
event Normal ReconciliationSucceeded: main@sha1:0123: 1 created, 0 configured, 0 pruned in 1.500s",
        );
        // A rebuild always has its own Event.
        check(
            Some(ready_before()),
            true,
            succeeded(0, 2),
            "
Ready=True/ReconciliationSucceeded@before
Reconciling=False/ReconciliationSucceeded@now
Stalled=False/ReconciliationSucceeded@before
Drifted=False/NoDrift@before
event Normal RebuildSucceeded: main@sha1:0123: 0 created, 0 configured, 0 pruned in 1.500s",
        );
        // A terminal failure stalls.
        check(
            Some(ready_before()),
            false,
            failed(Reason::RenderFailed, Retry::Terminal, "a.yaml: bad"),
            "
Ready=False/RenderFailed@now
Reconciling=False/RenderFailed@now
Stalled=True/RenderFailed@now
Drifted=False/NoDrift@before
event Warning RenderFailed: main@sha1:0123: 0 created, 0 configured, 0 pruned in 1.500s: a.yaml: bad",
        );
        // A transient failure keeps reconciling (with backoff).
        check(
            Some(ready_before()),
            false,
            failed(Reason::FetchFailed, Retry::Transient, "unreachable"),
            "
Ready=False/FetchFailed@now
Reconciling=True/Retrying@start
Stalled=False/FetchFailed@before
Drifted=False/NoDrift@before
event Warning FetchFailed: main@sha1:0123: 0 created, 0 configured, 0 pruned in 1.500s: unreachable",
        );
        // Health failures wait for the next interval.
        check(
            None,
            false,
            failed(Reason::HealthCheckFailed, Retry::NextInterval, "timed out"),
            "
Ready=False/HealthCheckFailed@now
Reconciling=False/HealthCheckFailed@now
Stalled=False/HealthCheckFailed@now
event Warning HealthCheckFailed: main@sha1:0123: 0 created, 0 configured, 0 pruned in 1.500s: timed out",
        );
    }

    #[test]
    fn the_same_failure_again_emits_nothing() {
        let failure = failed(Reason::ApplyFailed, Retry::Terminal, "1 object(s) failed");
        let started_once = started(None, &BTreeMap::new(), Trigger::New, false, Some(2), at(0));
        let once = finished(None, &started_once, &run(false), &failure).status;
        check(
            Some(once),
            false,
            failure,
            "
Ready=False/ApplyFailed@now
Reconciling=False/ApplyFailed@now
Stalled=True/ApplyFailed@now",
        );
    }

    #[test]
    fn a_drift_check_sets_drifted_and_keeps_the_field_paths() {
        let mut outcome = succeeded(0, 2);
        outcome.drift = Some(DriftSummary {
            drifted: 1,
            checked_at: Some(t(11)),
            objects: vec!["ConfigMap/apps/c0: data.a".into()],
            details: vec![DriftedObject {
                object: "ConfigMap/apps/c0".into(),
                fields: vec!["data.a".into()],
                missing: false,
            }],
        });
        let started = started(None, &BTreeMap::new(), Trigger::New, false, Some(2), at(10));
        let next = finished(None, &started, &run(false), &outcome);
        let drifted = conditions::get(&next.status.conditions, DRIFTED).unwrap();
        assert_eq!(drifted.status, "True");
        assert_eq!(drifted.reason, conditions::REASON_DRIFT_DETECTED);
        assert_eq!(
            drifted.message,
            "1 object(s) differ from git: ConfigMap/apps/c0: data.a"
        );
        assert_eq!(next.status.drift, outcome.drift);
    }

    #[test]
    fn the_record_and_the_status_fields_follow_the_run() {
        let mut annotations = BTreeMap::new();
        annotations.insert(ANNOTATION_SYNC_REQUESTED.to_string(), "s1".to_string());
        annotations.insert(ANNOTATION_REBUILD_REQUESTED.to_string(), "r1".to_string());
        let s = started(
            None,
            &annotations,
            Trigger::SyncRequested,
            false,
            Some(2),
            at(10),
        );
        assert_eq!(s.last_handled_sync_request.as_deref(), Some("s1"));
        assert_eq!(s.last_handled_rebuild_request, None, "not a rebuild");
        let c = conditions::get(&s.conditions, RECONCILING).unwrap();
        assert_eq!(
            (c.status.as_str(), c.message.as_str()),
            ("True", "syncing (sync requested)")
        );
        let s = started(
            None,
            &annotations,
            Trigger::RebuildRequested,
            true,
            Some(2),
            at(10),
        );
        assert_eq!(s.last_handled_rebuild_request.as_deref(), Some("r1"));

        let next = finished(None, &s, &run(true), &succeeded(3, 0));
        let st = &next.status;
        assert_eq!(st.observed_generation, Some(2));
        assert_eq!(st.last_applied_revision.as_deref(), Some(REV));
        assert_eq!(st.last_attempted_revision.as_deref(), Some(REV));
        let record = st.last_reconcile.clone().unwrap();
        assert_eq!(st.last_rebuild.as_ref(), Some(&record));
        assert_eq!(
            (record.start.as_str(), record.end.as_str()),
            (t(10).as_str(), t(12).as_str())
        );
        assert_eq!(
            (record.duration_ms, record.duration.as_str()),
            (1500, "1.500s")
        );
        assert_eq!(record.result, "Succeeded");
        assert_eq!(record.changes.get("created"), Some(&3));
        assert_eq!(record.stages.len(), 1);
        assert_eq!(st.objects.as_ref().map(|o| o.current), Some(3));
        let ready = conditions::get(&st.conditions, READY).unwrap();
        assert_eq!(ready.message, format!("Rebuilt revision {REV}: 3 created"));

        // A failure keeps the last applied revision and records the reason.
        let fail = failed(Reason::PruneFailed, Retry::Terminal, "refused");
        let mut fail = fail;
        fail.revision = Some("main@sha1:9999".into());
        let after = finished(Some(st), st, &run(false), &fail).status;
        assert_eq!(after.last_applied_revision.as_deref(), Some(REV));
        assert_eq!(
            after.last_attempted_revision.as_deref(),
            Some("main@sha1:9999")
        );
        assert_eq!(after.last_reconcile.unwrap().result, "PruneFailed");
        assert_eq!(after.last_rebuild, Some(record), "only rebuilds replace it");
    }

    #[test]
    fn still_stalled_keeps_the_previous_status() {
        let started_once = started(None, &BTreeMap::new(), Trigger::New, false, Some(2), at(0));
        let stalled = finished(
            None,
            &started_once,
            &run(false),
            &failed(Reason::RenderFailed, Retry::Terminal, "bad"),
        )
        .status;
        let mut outcome = Outcome::empty();
        outcome.revision = Some(REV.into());
        outcome.result = RunResult::StillStalled;
        let started = started(
            Some(&stalled),
            &BTreeMap::new(),
            Trigger::Interval,
            false,
            Some(2),
            at(20),
        );
        let mut r = run(false);
        r.end = at(21);
        let next = finished(Some(&stalled), &started, &r, &outcome);
        assert!(next.emit.is_empty());
        let mut expected = stalled.clone();
        conditions::set(
            &mut expected.conditions,
            RECONCILING,
            False,
            conditions::REASON_RETRYING,
            "stalled: waiting for a new revision or a spec change",
            Some(2),
            &t(21),
        );
        assert_eq!(next.status, expected);
        assert_eq!(next.status.last_reconcile, stalled.last_reconcile);
    }

    #[test]
    fn the_decisions_before_a_run_are_written_once() {
        // Invalid spec: stalled with an Event, then nothing until the generation changes.
        let first = invalid_spec(None, Some(1), "spec.interval: bad", at(0)).unwrap();
        assert_eq!(
            render(&first),
            "Ready=False/InvalidSpec@before\nReconciling=False/InvalidSpec@before\n\
             Stalled=True/InvalidSpec@before\nevent Warning InvalidSpec: spec.interval: bad"
        );
        assert_eq!(first.status.observed_generation, Some(1));
        assert_eq!(invalid_spec(Some(&first.status), Some(1), "x", at(1)), None);
        assert!(invalid_spec(Some(&first.status), Some(2), "x", at(1)).is_some());

        // Suspended: once.
        let s = suspended(None, Some(1), at(0)).unwrap();
        let c = conditions::get(&s.conditions, RECONCILING).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "Suspended")
        );
        assert_eq!(suspended(Some(&s), Some(1), at(1)), None);

        // Dependencies: once per message.
        let w = waiting_for_dependencies(None, Some(1), "GitSync a/b not found", at(0)).unwrap();
        assert_eq!(
            render(&w),
            "Ready=False/DependencyNotReady@before\nReconciling=True/Progressing@before\n\
             event Normal DependencyNotReady: GitSync a/b not found"
        );
        assert_eq!(
            waiting_for_dependencies(Some(&w.status), Some(1), "GitSync a/b not found", at(1)),
            None
        );
        assert!(waiting_for_dependencies(Some(&w.status), Some(1), "other", at(1)).is_some());

        // In progress: the stage message, the transition time of the start.
        let s = started(None, &BTreeMap::new(), Trigger::New, false, Some(1), at(0));
        let p = in_progress(&s, "applying 3/10", Some(1), at(5));
        let c = conditions::get(&p.conditions, RECONCILING).unwrap();
        assert_eq!(c.message, "applying 3/10");
        assert_eq!(c.last_transition_time, t(0));
    }
}
