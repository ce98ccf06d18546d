//! Apply: all Kubernetes I/O of a sync: API discovery, scope resolution and namespace defaulting,
//! staged server-side apply with bounded concurrency and change detection, the inventory stored
//! in the cluster, prune, health waits and drift checks. The decisions themselves (order, stages,
//! health, prune guards, normalisation, diffs) are pure functions in `headway-model`; this crate
//! performs the calls.
//!
//! # The facade
//! ```no_run
//! # async fn example(client: kube::Client, set: headway_model::prune::RenderedSet) -> Result<(), headway_apply::ApplyError> {
//! use std::sync::Arc;
//! use headway_apply::{Engine, EngineOptions, SyncRequest};
//! use headway_model::prune::SyncOwner;
//!
//! let engine = Arc::new(Engine::new(client, EngineOptions::default()).await?);
//! let owner = SyncOwner::new("headway-system", "site").expect("valid label values");
//! let mut req = SyncRequest::new(owner.clone(), "default", set.clone());
//! req.prune = true;
//! req.wait = true;
//! let report = engine.sync(&req).await?; // apply + prune + wait; report.changes, .failure, .requests
//! let drift = engine.drift(&owner, &set, "default").await?; // live vs desired, no writes
//! let deleted = engine.delete_all(&owner, "headway-system").await?; // the sync's finalizer
//! # Ok(()) }
//! ```
//! - [`Engine::sync`] applies a [`RenderedSet`](headway_model::prune::RenderedSet) (only a
//!   complete render can be one, so nothing is pruned after a failed fetch or render), records
//!   the inventory, prunes (when asked, after a successful apply, within the guards) and waits
//!   for health (when asked). It returns a [`SyncReport`]: the [`ChangeSet`] per object, timings
//!   per step, health, the failed step ([`SyncFailure`]) and the number of API requests.
//! - [`Engine::drift`] compares live objects with the desired ones ([`DriftReport`]).
//! - [`Engine::delete_all`] deletes everything a sync applied (its finalizer).
//!
//! `Engine` is `Send + Sync`; share it with `Arc` and call it concurrently for different syncs.
//! Calls for the same sync must not overlap (the controller serialises them).
//!
//! [`ChangeSet`]: headway_model::changeset::ChangeSet
#![forbid(unsafe_code)]

mod apply;
mod calls;
mod discovery;
mod engine;
mod error;
mod health;
mod prepare;
mod progress;
mod prune;
pub mod store;

pub use calls::{CountingLayer, CountingService, counting_client, error_message};
pub use discovery::{ApiCatalog, Resolved};
pub use engine::{
    DriftReport, DriftState, Engine, EngineOptions, SyncFailure, SyncReport, SyncRequest, SyncStep,
};
pub use error::ApplyError;
pub use health::LIST_THRESHOLD;
pub use prepare::{PrepareError, Target, prepare, prepare_with};
pub use progress::{ProgressSender, ProgressStep, SyncProgress};

/// The field manager of every server-side apply Headway makes.
pub const FIELD_MANAGER: &str = "headway";
