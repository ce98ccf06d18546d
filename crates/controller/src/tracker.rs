//! What a running sync reports as it goes: [`ProgressEvent`]s on the [`Bus`] (when there is
//! one) and the message of the `Reconciling` condition ("fetching", "rendering", "applying
//! 412/1000", "pruning 3", "waiting for 3 objects"), which the reconcile writes at most about
//! once a second ([`Tracker::messages`]).
//!
//! On the bus, apply progress counts the objects of one apply stage (its `detail` names it);
//! the condition message counts the objects of every apply stage together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use headway_apply::{ProgressStep, SyncProgress};
use tokio::sync::watch;

use crate::conditions;
use crate::outcome::{Outcome, RunResult};
use crate::progress::{Bus, ProgressEvent, ProgressKind, RunKind, Stage};
use crate::schedule;
use crate::view::SyncKey;

/// The condition message of a stage with `done` of `total` objects.
pub fn stage_message(stage: Stage, done: u64, total: u64) -> String {
    match stage {
        Stage::Fetch => "fetching".into(),
        Stage::Render => "rendering".into(),
        Stage::Apply => format!("applying {done}/{total}"),
        Stage::Prune => format!("pruning {total}"),
        Stage::Wait => {
            let left = total.saturating_sub(done);
            format!(
                "waiting for {left} object{}",
                if left == 1 { "" } else { "s" }
            )
        }
    }
}

/// A run id unique in this process and across restarts (time and a counter).
pub fn new_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The progress of one run of one GitSync.
pub struct Tracker {
    bus: Option<Bus>,
    sync: SyncKey,
    run: RunKind,
    run_id: String,
    message: watch::Sender<String>,
    /// Objects of the revision (what "applying n/total" counts to).
    objects: u64,
    /// Objects of the apply stages already finished.
    applied_before: u64,
}

impl Tracker {
    pub fn new(bus: Option<Bus>, sync: SyncKey, run: RunKind) -> Self {
        Tracker {
            bus,
            sync,
            run,
            run_id: new_run_id(),
            message: watch::channel(String::new()).0,
            objects: 0,
            applied_before: 0,
        }
    }

    /// The stage messages, newest first (only the latest one is kept).
    pub fn messages(&self) -> watch::Receiver<String> {
        self.message.subscribe()
    }

    fn publish(&self, kind: ProgressKind) {
        if let Some(bus) = &self.bus {
            bus.publish(ProgressEvent {
                sync: self.sync.clone(),
                run: self.run,
                run_id: self.run_id.clone(),
                at: schedule::format_time(SystemTime::now()),
                kind,
            });
        }
    }

    fn say(&self, text: String) {
        self.message.send_replace(text);
    }

    pub fn run_started(&self) {
        self.publish(ProgressKind::RunStarted { revision: None });
    }

    /// The rendered revision has this many objects.
    pub fn set_objects(&mut self, n: usize) {
        self.objects = n as u64;
    }

    pub fn stage_started(&self, stage: Stage, detail: Option<String>, total: Option<u64>) {
        let message = match stage {
            Stage::Apply => stage_message(stage, self.applied_before, self.objects),
            _ => stage_message(stage, 0, total.unwrap_or(0)),
        };
        self.say(message);
        self.publish(ProgressKind::StageStarted {
            stage,
            detail,
            total,
        });
    }

    pub fn stage_progress(&self, stage: Stage, done: u64, total: u64) {
        let message = match stage {
            Stage::Apply => stage_message(stage, self.applied_before + done, self.objects),
            _ => stage_message(stage, done, total),
        };
        self.say(message);
        self.publish(ProgressKind::StageProgress { stage, done, total });
    }

    pub fn stage_finished(
        &mut self,
        stage: Stage,
        detail: Option<String>,
        duration: Duration,
        count: Option<u64>,
        ok: bool,
    ) {
        if stage == Stage::Apply {
            self.applied_before += count.unwrap_or(0);
        }
        self.publish(ProgressKind::StageFinished {
            stage,
            detail,
            duration_seconds: duration.as_secs_f64(),
            count,
            ok,
        });
    }

    /// A progress report of the apply engine.
    pub fn engine(&mut self, p: SyncProgress) {
        let stage = |s: ProgressStep| match s {
            ProgressStep::Apply => Stage::Apply,
            ProgressStep::Prune => Stage::Prune,
            ProgressStep::Wait => Stage::Wait,
        };
        match p {
            SyncProgress::Started { step, name, total } => {
                let detail = (step == ProgressStep::Apply).then_some(name);
                self.stage_started(stage(step), detail, Some(total as u64));
            }
            SyncProgress::Advanced { step, done, total } => {
                self.stage_progress(stage(step), done as u64, total as u64);
            }
            SyncProgress::Finished {
                step,
                name,
                count,
                duration,
                ok,
            } => {
                let detail = (step == ProgressStep::Apply).then_some(name);
                self.stage_finished(stage(step), detail, duration, Some(count as u64), ok);
            }
        }
    }

    pub fn run_finished(&self, outcome: &Outcome, duration: Duration) {
        let (ok, reason, message) = match &outcome.result {
            RunResult::Succeeded => (true, None, None),
            RunResult::StillStalled => (
                false,
                Some(conditions::STALLED.to_string()),
                Some("stalled: waiting for a new revision or a spec change".to_string()),
            ),
            RunResult::Failed(f) => (
                false,
                Some(f.reason.as_str().to_string()),
                Some(f.message.clone()),
            ),
        };
        self.publish(ProgressKind::RunFinished {
            ok,
            reason,
            message,
            revision: outcome.revision.clone(),
            duration_seconds: duration.as_secs_f64(),
            fetch_seconds: outcome.fetch_seconds(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_messages_name_the_stage_and_the_counts() {
        let check = |stage, done, total, expected: &str| {
            assert_eq!(stage_message(stage, done, total), expected);
        };
        check(Stage::Fetch, 0, 0, "fetching");
        check(Stage::Render, 0, 0, "rendering");
        check(Stage::Apply, 412, 1000, "applying 412/1000");
        check(Stage::Prune, 0, 3, "pruning 3");
        check(Stage::Wait, 997, 1000, "waiting for 3 objects");
        check(Stage::Wait, 2, 3, "waiting for 1 object");
    }

    #[tokio::test]
    async fn apply_progress_counts_every_stage_in_the_message_and_one_on_the_bus() {
        let bus = Bus::new(64);
        let mut rx = bus.subscribe();
        let mut t = Tracker::new(Some(bus), SyncKey::new("ns", "s"), RunKind::Sync);
        let messages = t.messages();
        t.set_objects(10);
        let started = |name: &str, total| SyncProgress::Started {
            step: ProgressStep::Apply,
            name: name.into(),
            total,
        };
        t.engine(started("apply definitions", 2));
        t.engine(SyncProgress::Finished {
            step: ProgressStep::Apply,
            name: "apply definitions".into(),
            count: 2,
            duration: Duration::from_millis(10),
            ok: true,
        });
        t.engine(started("apply workloads", 8));
        assert_eq!(*messages.borrow(), "applying 2/10");
        t.engine(SyncProgress::Advanced {
            step: ProgressStep::Apply,
            done: 5,
            total: 8,
        });
        assert_eq!(*messages.borrow(), "applying 7/10");
        let kinds: Vec<ProgressKind> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds.len(), 4);
        assert_eq!(
            kinds[3],
            ProgressKind::StageProgress {
                stage: Stage::Apply,
                done: 5,
                total: 8
            }
        );
        assert_eq!(
            kinds[2],
            ProgressKind::StageStarted {
                stage: Stage::Apply,
                detail: Some("apply workloads".into()),
                total: Some(8)
            }
        );
    }
}
