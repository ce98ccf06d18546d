//! Controller: the `GitSync` custom resource and the loop that keeps the cluster equal to git:
//! fetch, render, apply, prune, wait, status, on every interval, on demand ("sync now") and as a
//! rebuild that bypasses every cache and measures the time to recover.
//!
//! - [`crd`]: the resource, its schema and defaults ([`crd::crd_yaml`] feeds `cargo xtask codegen`).
//! - [`conditions`]: status conditions and reasons.
//! - [`schedule`]: the pure decisions: when to sync, backoff, stalls, dependencies.
//! - [`reconcile`]: one reconcile: finalizer, dependency check, a run of the pipeline, one
//!   status write; [`context`] is what every reconcile shares.
//! - [`steps`]: the pipeline's named steps (fetch, render, apply, prune, wait, drift check),
//!   each owning one failure reason; [`credentials`] reads the git credentials, [`decryption`]
//!   the SOPS keys; [`outcome`] is what a run produced; [`input`] maps a spec to what is
//!   fetched and how it is rendered (shared with `headway diff/render --gitsync`).
//! - [`status`]: the next status and the Events to emit, as pure functions of the previous
//!   status, the outcome and the time; [`events`] writes the Events.
//! - [`tracker`]: a run's progress, as events on the bus and the `Reconciling` message.
//! - [`runner`]: leader election, the watch and work queue, graceful shutdown; [`shard`]: which
//!   GitSyncs a controller takes when several split them by a label, each with its own Lease.
//! - [`handle`]: "sync now" and "rebuild" requests.
//! - [`tenancy`]: the identity a GitSync is synced as (impersonated service accounts) and the
//!   lockdown of its cross-namespace references.
//! - [`view`]: the read model shared by the CLI and the HTTP API (summary of a GitSync, "has
//!   this request been handled", a watch-fed cache of GitSyncs).
//! - [`progress`]: what a running sync is doing, as plain events on a broadcast [`progress::Bus`].
//!
//! Architecture invariant: nothing is pruned unless the fetch and the render of the revision both
//! succeeded completely.
#![forbid(unsafe_code)]

pub mod conditions;
pub mod context;
pub mod crd;
pub mod credentials;
pub mod decryption;
pub mod events;
pub mod handle;
pub mod input;
pub mod outcome;
pub mod progress;
pub mod reconcile;
pub mod runner;
pub mod schedule;
pub mod shard;
pub mod status;
pub mod steps;
pub mod tenancy;
pub mod tracker;
pub mod view;

pub use crd::{GitSync, GitSyncSpec, GitSyncStatus};
pub use handle::{Handle, RequestError};
pub use progress::{Bus, ProgressEvent, ProgressKind, RunKind, Stage};
pub use reconcile::ReconcileError;
pub use runner::{Leadership, Options, RunError, run};
pub use shard::Shard;
pub use view::{
    Phase, RequestKind, RequestState, SyncKey, SyncSummary, Syncs, request_state, summarize,
};
