//! Errors that stop an operation before it could report per-object results. Per-object failures
//! (an apply rejected by the server, a delete that failed) are not errors: they are
//! [`Action::Failed`](headway_model::changeset::Action::Failed) entries of the change set.

use crate::prepare::PrepareError;

/// Why a sync, drift check or delete could not run.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// API discovery failed (the server is unreachable or unhealthy).
    #[error("API discovery failed: {}", crate::error_message(.0))]
    Discovery(#[source] kube::Error),
    /// The desired set cannot be applied as a whole (unknown kinds, duplicates); nothing was
    /// written.
    #[error("the desired set cannot be applied: {0}")]
    Prepare(#[from] PrepareError),
    /// The inventory of a sync could not be read or written.
    #[error("inventory of sync {owner}: {message}")]
    Inventory { owner: String, message: String },
}

impl ApplyError {
    /// Whether retrying later may succeed without a change to the source: discovery and
    /// inventory I/O failures are transient; a set that cannot be prepared needs a new revision.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ApplyError::Prepare(_))
    }
}
