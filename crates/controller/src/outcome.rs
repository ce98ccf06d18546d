//! What one run of the pipeline produced: plain data, read by [`crate::status`] (the next
//! status and the Events) and by the reconcile (backoff, requeue). No I/O here.

use headway_model::changeset::ChangeSet;

use crate::conditions::Reason;
use crate::crd::{DriftSummary, ObjectCounts, StageTiming, UnhealthyObject};
use crate::progress::Stage;
use crate::schedule::{self, Retry};

/// The failure reason a pipeline stage owns: every failure of a stage carries it.
pub fn reason_of(stage: Stage) -> Reason {
    match stage {
        Stage::Fetch => Reason::FetchFailed,
        Stage::Render => Reason::RenderFailed,
        Stage::Apply => Reason::ApplyFailed,
        Stage::Prune => Reason::PruneFailed,
        Stage::Wait => Reason::HealthCheckFailed,
    }
}

/// A failed step: its reason, what happened, and how it is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
    pub retry: Retry,
}

impl Failure {
    /// A failure with the reason; `transient` says whether it may go away by itself.
    pub fn new(reason: Reason, message: impl Into<String>, transient: bool) -> Self {
        Failure {
            reason,
            message: message.into(),
            retry: schedule::retry_of(reason, transient),
        }
    }

    /// A failure of a pipeline stage (with the reason the stage owns).
    pub fn at(stage: Stage, message: impl Into<String>, transient: bool) -> Self {
        Failure::new(reason_of(stage), message, transient)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// Every step succeeded.
    Succeeded,
    /// A step failed.
    Failed(Failure),
    /// Stalled at this revision and spec already: nothing was done after the fetch.
    StillStalled,
}

/// Health of the objects of the revision, as the status keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthSummary {
    pub counts: ObjectCounts,
    /// The objects not Current (bounded, see [`crate::crd::MAX_UNHEALTHY_LISTED`]).
    pub unhealthy: Vec<UnhealthyObject>,
}

/// What the pipeline produced, whatever the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The fetched revision (`main@sha1:...`), once fetched.
    pub revision: Option<String>,
    /// Time per stage, in order.
    pub stages: Vec<StageTiming>,
    pub changes: ChangeSet,
    /// Known once the objects were applied.
    pub health: Option<HealthSummary>,
    /// Known when a drift check ran (self-heal off).
    pub drift: Option<DriftSummary>,
    pub result: RunResult,
}

impl Outcome {
    /// An outcome with nothing known yet.
    pub fn empty() -> Self {
        Outcome {
            revision: None,
            stages: Vec::new(),
            changes: ChangeSet::new(),
            health: None,
            drift: None,
            result: RunResult::Succeeded,
        }
    }

    /// The failure, if the run failed.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.result {
            RunResult::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// Seconds spent fetching, when the fetch finished.
    pub fn fetch_seconds(&self) -> Option<f64> {
        self.stages
            .iter()
            .find(|s| s.name == Stage::Fetch.as_str())
            .map(|s| s.duration_ms as f64 / 1000.0)
    }
}
