//! When to sync: the pure decisions of the loop, tested without a cluster.
//!
//! Every watch event, requeue or "sync now" ends up in [`plan`], which looks at the object (its
//! generation, annotations and status) and at what this process remembers about it ([`Memory`])
//! and answers: sync now (and why), or wait (and for how long). Failures feed [`Memory::failed`]:
//! transient ones back off exponentially, terminal ones stall until the spec, the revision or a
//! manual request changes.

use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime};

use crate::conditions::{self, Reason};
use crate::crd::{
    ANNOTATION_REBUILD_REQUESTED, ANNOTATION_SYNC_REQUESTED, DependencyRef, GitSync, GitSyncStatus,
};

/// First retry delay after a transient failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often a GitSync waiting for its dependencies looks again (watch events of the
/// dependencies also wake it up earlier).
pub const DEPENDENCY_RECHECK: Duration = Duration::from_secs(5);
/// Largest jitter added to intervals and backoffs, as a fraction.
pub const JITTER_FRACTION: f64 = 0.1;

/// Why a sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The GitSync was never synced.
    New,
    /// `metadata.generation` differs from `status.observedGeneration`.
    SpecChanged,
    /// A new value of the annotation `headway.dev/sync-requested-at`.
    SyncRequested,
    /// A new value of the annotation `headway.dev/rebuild-requested-at`.
    RebuildRequested,
    /// A previous process was stopped during a sync of this GitSync (`Reconciling=True`).
    Interrupted,
    /// A retry after a transient failure.
    Retry,
    /// The interval elapsed.
    Interval,
}

impl Trigger {
    /// Whether a stalled GitSync whose revision did not change should stay stalled: only the
    /// timers keep it stalled; spec changes and explicit requests always run.
    pub fn respects_stall(self) -> bool {
        matches!(
            self,
            Trigger::Interval | Trigger::Retry | Trigger::Interrupted
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::New => "new",
            Trigger::SpecChanged => "spec changed",
            Trigger::SyncRequested => "sync requested",
            Trigger::RebuildRequested => "rebuild requested",
            Trigger::Interrupted => "previous sync interrupted",
            Trigger::Retry => "retry",
            Trigger::Interval => "interval",
        }
    }
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `spec.suspend` is set: nothing, until the spec changes.
    Suspended,
    /// Not due: look again after this long (watch events may come earlier).
    Wait(Duration),
    /// Sync now; `rebuild` bypasses every cache and re-applies every object.
    Sync { trigger: Trigger, rebuild: bool },
}

/// How a failed sync is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// May succeed by itself (network, API server overload): exponential backoff.
    Transient,
    /// Fails the same way until the spec or the revision changes (render errors, invalid spec,
    /// refused prunes): `Stalled=True`, no retry before a change.
    Terminal,
    /// Worth another try on the next interval (objects that did not become healthy).
    NextInterval,
}

/// Classifies the failing step of a sync. `transient` says whether the error itself may go away
/// without a change (a network or server error, as opposed to refused credentials, an invalid
/// object or a refused prune).
pub fn retry_of(reason: Reason, transient: bool) -> Retry {
    match reason {
        Reason::InvalidSpec | Reason::RenderFailed => Retry::Terminal,
        Reason::ApplyFailed | Reason::PruneFailed if transient => Retry::Transient,
        Reason::ApplyFailed | Reason::PruneFailed => Retry::Terminal,
        // Credentials and known_hosts live in a Secret that may be fixed without a spec change.
        Reason::FetchFailed if transient => Retry::Transient,
        Reason::FetchFailed => Retry::NextInterval,
        Reason::DependencyNotReady => Retry::Transient,
        Reason::HealthCheckFailed => Retry::NextInterval,
    }
}

/// What this process remembers about one GitSync between syncs (lost on restart, on purpose:
/// a new leader starts fresh, reading the rest from status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Whether this process has synced (or planned) this GitSync before.
    pub seen: bool,
    /// Consecutive transient failures.
    pub failures: u32,
    /// When to retry after a transient failure.
    pub retry_at: Option<SystemTime>,
    /// When the last sync of this process ended.
    pub last_end: Option<SystemTime>,
}

impl Memory {
    /// Records a successful sync (or one that needs no retry before the interval).
    pub fn succeeded(&mut self, end: SystemTime) {
        self.failures = 0;
        self.retry_at = None;
        self.last_end = Some(end);
    }

    /// Records a failure; returns the delay before the retry for transient failures.
    pub fn failed(&mut self, retry: Retry, end: SystemTime, seed: &str) -> Option<Duration> {
        self.last_end = Some(end);
        match retry {
            Retry::Transient => {
                self.failures = self.failures.saturating_add(1);
                let delay = backoff(self.failures, seed);
                self.retry_at = Some(end + delay);
                Some(delay)
            }
            Retry::Terminal | Retry::NextInterval => {
                self.failures = 0;
                self.retry_at = None;
                None
            }
        }
    }
}

/// The delay before the `failures`-th retry: 2 s, 4 s, 8 s, ... at most 5 min, plus jitter.
pub fn backoff(failures: u32, seed: &str) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_MAX);
    base + jitter(base, seed, u64::from(failures))
}

/// A deterministic jitter in `[0, JITTER_FRACTION * d)` derived from `seed` (the GitSync's uid)
/// and `round`, so that GitSyncs created together spread out and tests are reproducible.
pub fn jitter(d: Duration, seed: &str, round: u64) -> Duration {
    let mut h = std::hash::DefaultHasher::new();
    seed.hash(&mut h);
    round.hash(&mut h);
    let unit = (h.finish() % 10_000) as f64 / 10_000.0;
    d.mul_f64(JITTER_FRACTION * unit)
}

/// The object's view that [`plan`] needs.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub suspended: bool,
    pub sync_request: Option<&'a str>,
    pub rebuild_request: Option<&'a str>,
    pub status: Option<&'a GitSyncStatus>,
    pub interval: Duration,
}

impl<'a> View<'a> {
    /// The view of a GitSync with an already parsed interval.
    pub fn of(sync: &'a GitSync, interval: Duration) -> Self {
        let annotations = sync.metadata.annotations.as_ref();
        View {
            uid: sync.metadata.uid.as_deref().unwrap_or(""),
            generation: sync.metadata.generation,
            suspended: sync.spec.suspend,
            sync_request: annotations
                .and_then(|a| a.get(ANNOTATION_SYNC_REQUESTED))
                .map(String::as_str),
            rebuild_request: annotations
                .and_then(|a| a.get(ANNOTATION_REBUILD_REQUESTED))
                .map(String::as_str),
            status: sync.status.as_ref(),
            interval,
        }
    }

    /// The sync request (the annotation's value) not handled yet, if there is one.
    pub fn pending_sync_request(&self) -> Option<&'a str> {
        let handled = self
            .status
            .and_then(|s| s.last_handled_sync_request.as_deref());
        self.sync_request.filter(|r| Some(*r) != handled)
    }
}

/// Decides whether to sync now.
pub fn plan(view: &View<'_>, memory: &Memory, now: SystemTime) -> Plan {
    if view.suspended {
        return Plan::Suspended;
    }
    let status = view.status;
    let handled_rebuild = status.and_then(|s| s.last_handled_rebuild_request.as_deref());
    if view.rebuild_request.is_some() && view.rebuild_request != handled_rebuild {
        return Plan::Sync {
            trigger: Trigger::RebuildRequested,
            rebuild: true,
        };
    }
    let sync = |trigger| Plan::Sync {
        trigger,
        rebuild: false,
    };
    let Some(status) = status.filter(|s| s.observed_generation.is_some()) else {
        return sync(Trigger::New);
    };
    if status.observed_generation != view.generation {
        return sync(Trigger::SpecChanged);
    }
    if view.pending_sync_request().is_some() {
        return sync(Trigger::SyncRequested);
    }
    if !memory.seen && conditions::is_true(&status.conditions, conditions::RECONCILING) {
        return sync(Trigger::Interrupted);
    }
    if let Some(at) = memory.retry_at {
        return match at.duration_since(now) {
            Ok(left) if !left.is_zero() => Plan::Wait(left),
            _ => sync(Trigger::Retry),
        };
    }
    let last_end = memory.last_end.or_else(|| {
        status
            .last_reconcile
            .as_ref()
            .and_then(|r| parse_time(&r.end))
    });
    let Some(last_end) = last_end else {
        return sync(Trigger::Interval);
    };
    let round = last_end
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let due = last_end + view.interval + jitter(view.interval, view.uid, round);
    match due.duration_since(now) {
        Ok(left) if !left.is_zero() => Plan::Wait(left),
        _ => sync(Trigger::Interval),
    }
}

/// Whether a stalled GitSync stays stalled: the last attempt failed terminally at this very
/// revision and generation, and nothing but a timer asks for a sync.
pub fn stays_stalled(
    status: Option<&GitSyncStatus>,
    generation: Option<i64>,
    revision: &str,
    trigger: Trigger,
) -> bool {
    let Some(status) = status else {
        return false;
    };
    trigger.respects_stall()
        && conditions::is_true(&status.conditions, conditions::STALLED)
        && status.observed_generation == generation
        && status.last_attempted_revision.as_deref() == Some(revision)
}

/// The `namespace/name` keys a GitSync depends on (its own namespace by default), sorted,
/// without duplicates.
pub fn dependency_keys(namespace: &str, deps: &[DependencyRef]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = deps
        .iter()
        .map(|d| {
            (
                d.namespace.clone().unwrap_or_else(|| namespace.to_string()),
                d.name.clone(),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Checks that every dependency exists, is Ready and has synced its current generation.
/// `deps` pairs each key with the object found (or `None`). The error lists every dependency
/// that is not ready, with why.
pub fn dependencies_ready(
    own: (&str, &str),
    deps: &[((String, String), Option<&GitSync>)],
) -> Result<(), String> {
    let mut problems = Vec::new();
    for ((ns, name), found) in deps {
        if (ns.as_str(), name.as_str()) == own {
            problems.push(format!("{ns}/{name} is this GitSync itself"));
            continue;
        }
        let Some(dep) = found else {
            problems.push(format!("GitSync {ns}/{name} not found"));
            continue;
        };
        let status = dep.status.as_ref();
        let ready = status.and_then(|s| conditions::get(&s.conditions, conditions::READY));
        match ready {
            Some(c) if c.status() == conditions::ConditionStatus::True => {
                let observed = status.and_then(|s| s.observed_generation);
                if observed != dep.metadata.generation {
                    problems.push(format!(
                        "GitSync {ns}/{name} has not synced its generation {} yet",
                        dep.metadata.generation.unwrap_or(0)
                    ));
                }
            }
            Some(c) => problems.push(format!(
                "GitSync {ns}/{name} is not Ready ({}: {})",
                c.reason,
                conditions::truncate(&c.message, 200)
            )),
            None => problems.push(format!("GitSync {ns}/{name} has not synced yet")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Parses an RFC 3339 time from status.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(SystemTime::from)
}

/// Formats a time for status: RFC 3339 in UTC with milliseconds.
pub fn format_time(t: SystemTime) -> String {
    match k8s_openapi::jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => "1970-01-01T00:00:00.000Z".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::{READY, RECONCILING, STALLED};
    use crate::crd::ReconcileRecord;

    const MIN: Duration = Duration::from_secs(60);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn synced(generation: i64, end: SystemTime) -> GitSyncStatus {
        let mut s = GitSyncStatus {
            observed_generation: Some(generation),
            last_reconcile: Some(ReconcileRecord {
                end: format_time(end),
                ..Default::default()
            }),
            ..Default::default()
        };
        conditions::set(
            &mut s.conditions,
            READY,
            conditions::ConditionStatus::True,
            "ReconciliationSucceeded",
            "",
            None,
            "t",
        );
        s
    }

    fn view<'a>(status: Option<&'a GitSyncStatus>, generation: i64) -> View<'a> {
        View {
            uid: "uid-1",
            generation: Some(generation),
            suspended: false,
            sync_request: None,
            rebuild_request: None,
            status,
            interval: MIN,
        }
    }

    fn sync(trigger: Trigger) -> Plan {
        Plan::Sync {
            trigger,
            rebuild: false,
        }
    }

    #[test]
    fn new_changed_and_requested_syncs_run_at_once() {
        let seen = Memory {
            seen: true,
            ..Default::default()
        };
        assert_eq!(plan(&view(None, 1), &seen, at(0)), sync(Trigger::New));
        let status = synced(1, at(0));
        assert_eq!(
            plan(&view(Some(&status), 2), &seen, at(1)),
            sync(Trigger::SpecChanged)
        );
        let mut v = view(Some(&status), 1);
        v.sync_request = Some("2026-11-26T12:00:00Z");
        assert_eq!(plan(&v, &seen, at(1)), sync(Trigger::SyncRequested));
        let mut handled = status.clone();
        handled.last_handled_sync_request = Some("2026-11-26T12:00:00Z".into());
        v.status = Some(&handled);
        assert!(matches!(plan(&v, &seen, at(1)), Plan::Wait(_)));
        v.rebuild_request = Some("r1");
        assert_eq!(
            plan(&v, &seen, at(1)),
            Plan::Sync {
                trigger: Trigger::RebuildRequested,
                rebuild: true
            }
        );
        v.suspended = true;
        assert_eq!(plan(&v, &seen, at(1)), Plan::Suspended);
    }

    #[test]
    fn the_interval_is_counted_from_the_last_end_with_jitter() {
        let status = synced(1, at(0));
        let seen = Memory {
            seen: true,
            ..Default::default()
        };
        let Plan::Wait(left) = plan(&view(Some(&status), 1), &seen, at(10)) else {
            panic!("not due yet");
        };
        assert!(
            left >= Duration::from_secs(50) && left < Duration::from_secs(56),
            "{left:?}"
        );
        assert_eq!(
            plan(&view(Some(&status), 1), &seen, at(67)),
            sync(Trigger::Interval)
        );
        // This process's memory wins over status (it is more precise and survives a failed
        // status write).
        let later = Memory {
            seen: true,
            last_end: Some(at(30)),
            ..Default::default()
        };
        assert!(matches!(
            plan(&view(Some(&status), 1), &later, at(67)),
            Plan::Wait(_)
        ));
    }

    #[test]
    fn an_interrupted_sync_resumes_on_a_new_process_only() {
        let mut status = synced(1, at(0));
        conditions::set(
            &mut status.conditions,
            RECONCILING,
            conditions::ConditionStatus::True,
            "Progressing",
            "",
            None,
            "t",
        );
        assert_eq!(
            plan(&view(Some(&status), 1), &Memory::default(), at(1)),
            sync(Trigger::Interrupted)
        );
        let seen = Memory {
            seen: true,
            ..Default::default()
        };
        assert!(matches!(
            plan(&view(Some(&status), 1), &seen, at(1)),
            Plan::Wait(_)
        ));
    }

    #[test]
    fn transient_failures_back_off_exponentially_and_success_resets() {
        let mut m = Memory {
            seen: true,
            ..Default::default()
        };
        let delays: Vec<Duration> = (0..10)
            .map(|_| m.failed(Retry::Transient, at(0), "uid").unwrap())
            .collect();
        for (i, d) in delays.iter().enumerate().take(7) {
            let base = BACKOFF_BASE * (1 << i);
            assert!(*d >= base && *d < base.mul_f64(1.1), "retry {i}: {d:?}");
        }
        assert!(delays[9] >= BACKOFF_MAX && delays[9] < BACKOFF_MAX.mul_f64(1.1));
        let status = synced(1, at(0));
        assert!(matches!(
            plan(&view(Some(&status), 1), &m, at(1)),
            Plan::Wait(_)
        ));
        assert_eq!(
            plan(&view(Some(&status), 1), &m, at(400)),
            sync(Trigger::Retry)
        );
        m.succeeded(at(400));
        assert_eq!(m.failures, 0);
        assert_eq!(m.retry_at, None);
        assert_eq!(m.failed(Retry::Terminal, at(401), "uid"), None);
        assert_eq!(m.failed(Retry::NextInterval, at(401), "uid"), None);
    }

    #[test]
    fn failures_are_classified_by_step() {
        assert_eq!(retry_of(Reason::FetchFailed, true), Retry::Transient);
        assert_eq!(retry_of(Reason::FetchFailed, false), Retry::NextInterval);
        assert_eq!(retry_of(Reason::RenderFailed, false), Retry::Terminal);
        assert_eq!(retry_of(Reason::InvalidSpec, false), Retry::Terminal);
        assert_eq!(retry_of(Reason::PruneFailed, false), Retry::Terminal);
        assert_eq!(retry_of(Reason::PruneFailed, true), Retry::Transient);
        assert_eq!(retry_of(Reason::ApplyFailed, true), Retry::Transient);
        assert_eq!(retry_of(Reason::ApplyFailed, false), Retry::Terminal);
        assert_eq!(
            retry_of(Reason::HealthCheckFailed, false),
            Retry::NextInterval
        );
    }

    #[test]
    fn a_stall_holds_until_revision_generation_or_request_changes() {
        let mut status = synced(3, at(0));
        status.last_attempted_revision = Some("main@sha1:aaa".into());
        assert!(!stays_stalled(
            Some(&status),
            Some(3),
            "main@sha1:aaa",
            Trigger::Interval
        ));
        conditions::set(
            &mut status.conditions,
            STALLED,
            conditions::ConditionStatus::True,
            "RenderFailed",
            "x",
            None,
            "t",
        );
        assert!(stays_stalled(
            Some(&status),
            Some(3),
            "main@sha1:aaa",
            Trigger::Interval
        ));
        assert!(!stays_stalled(
            Some(&status),
            Some(3),
            "main@sha1:bbb",
            Trigger::Interval
        ));
        assert!(!stays_stalled(
            Some(&status),
            Some(4),
            "main@sha1:aaa",
            Trigger::Interval
        ));
        assert!(!stays_stalled(
            Some(&status),
            Some(3),
            "main@sha1:aaa",
            Trigger::SyncRequested
        ));
        assert!(!stays_stalled(
            None,
            Some(3),
            "main@sha1:aaa",
            Trigger::Interval
        ));
    }

    fn gitsync(name: &str, generation: i64, status: Option<GitSyncStatus>) -> GitSync {
        let mut g = GitSync::new(
            name,
            serde_json::from_value(serde_json::json!({"repository": {"url": "git://h/r"}}))
                .unwrap(),
        );
        g.metadata.namespace = Some("apps".into());
        g.metadata.generation = Some(generation);
        g.status = status;
        g
    }

    #[test]
    fn dependencies_must_exist_be_ready_and_current() {
        let deps = [
            DependencyRef {
                name: "crds".into(),
                namespace: None,
            },
            DependencyRef {
                name: "infra".into(),
                namespace: Some("ops".into()),
            },
            DependencyRef {
                name: "crds".into(),
                namespace: Some("apps".into()),
            },
        ];
        let keys = dependency_keys("apps", &deps);
        assert_eq!(
            keys,
            [
                ("apps".to_string(), "crds".to_string()),
                ("ops".to_string(), "infra".to_string())
            ]
        );
        let ready = gitsync("crds", 2, Some(synced(2, at(0))));
        let lagging = gitsync("crds", 3, Some(synced(2, at(0))));
        let mut failing_status = synced(1, at(0));
        conditions::set(
            &mut failing_status.conditions,
            READY,
            conditions::ConditionStatus::False,
            "RenderFailed",
            "a.yaml: bad",
            None,
            "t",
        );
        let failing = gitsync("infra", 1, Some(failing_status));
        let own = ("apps", "web");
        assert_eq!(
            dependencies_ready(
                own,
                &[
                    (keys[0].clone(), Some(&ready)),
                    (keys[1].clone(), Some(&ready))
                ]
            ),
            Ok(())
        );
        let err = dependencies_ready(
            own,
            &[
                (keys[0].clone(), Some(&lagging)),
                (keys[1].clone(), Some(&failing)),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err,
            "GitSync apps/crds has not synced its generation 3 yet; GitSync ops/infra is not Ready (RenderFailed: a.yaml: bad)"
        );
        let err = dependencies_ready(
            own,
            &[
                (keys[1].clone(), None),
                (("apps".into(), "web".into()), Some(&ready)),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err,
            "GitSync ops/infra not found; apps/web is this GitSync itself"
        );
        let fresh = gitsync("crds", 1, None);
        assert_eq!(
            dependencies_ready(own, &[(keys[0].clone(), Some(&fresh))]).unwrap_err(),
            "GitSync apps/crds has not synced yet"
        );
    }

    #[test]
    fn times_round_trip() {
        let t = at(0) + Duration::from_millis(123);
        let text = format_time(t);
        assert!(text.ends_with(".123Z"), "{text}");
        assert_eq!(parse_time(&text), Some(t));
        assert_eq!(parse_time("yesterday"), None);
    }
}
