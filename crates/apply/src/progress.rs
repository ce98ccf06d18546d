//! Progress of a running sync, for callers that show it as it happens (the controller's
//! Reconciling condition and event stream): steps started and finished with their object counts,
//! objects applied so far, objects healthy so far while waiting.
//!
//! Reporting never blocks the sync: events go into an unbounded channel the caller drains.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

/// The steps of a sync that report progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgressStep {
    /// One apply stage.
    Apply,
    /// Deleting what left the source.
    Prune,
    /// Waiting until every object is Current.
    Wait,
}

/// One progress report of [`crate::Engine::sync`].
#[derive(Debug, Clone, PartialEq)]
pub enum SyncProgress {
    /// A step began: an apply stage (`name` is `apply definitions`, `apply classes`, `apply
    /// workloads`), `prune` or `wait`; `total` objects it handles.
    Started {
        step: ProgressStep,
        name: String,
        total: usize,
    },
    /// `done` of `total` objects are applied (step Apply) or Current (step Wait).
    Advanced {
        step: ProgressStep,
        done: usize,
        total: usize,
    },
    /// A step ended; `count` objects it handled.
    Finished {
        step: ProgressStep,
        name: String,
        count: usize,
        duration: Duration,
        ok: bool,
    },
}

/// Where [`SyncProgress`] reports go ([`crate::SyncRequest::progress`]).
pub type ProgressSender = UnboundedSender<SyncProgress>;

/// Sends a report if anyone listens.
pub(crate) fn report(to: Option<&ProgressSender>, progress: SyncProgress) {
    if let Some(tx) = to {
        let _ = tx.send(progress);
    }
}
