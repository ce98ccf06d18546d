//! Controller: the `GitSync` custom resource and the loop that keeps the cluster equal to git:
//! fetch, render, apply, prune, wait, status, on every interval, on demand ("sync now") and as a
//! rebuild that bypasses every cache and measures the time to recover.
//!
//! - [`crd`]: the resource, its schema and defaults ([`crd::crd_yaml`] feeds `cargo xtask codegen`).
//! - [`conditions`]: status conditions and reasons.
//! - [`schedule`]: the pure decisions: when to sync, backoff, stalls, dependencies.
//! - [`reconcile`]: one reconcile: finalizer, dependency check, the pipeline, status, events.
//! - [`runner`]: leader election, the watch and work queue, graceful shutdown.
//! - [`handle`]: "sync now" and "rebuild" requests.
//!
//! Architecture invariant: nothing is pruned unless the fetch and the render of the revision both
//! succeeded completely.
#![forbid(unsafe_code)]

pub mod conditions;
pub mod crd;
pub mod handle;
pub mod reconcile;
pub mod runner;
pub mod schedule;

pub use crd::{GitSync, GitSyncSpec, GitSyncStatus};
pub use handle::{Handle, RequestError};
pub use reconcile::ReconcileError;
pub use runner::{Leadership, Options, RunError, run};
