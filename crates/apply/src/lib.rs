//! Apply: all Kubernetes I/O of a sync: API discovery, scope resolution and namespace defaulting,
//! staged server-side apply with bounded concurrency and change detection, the inventory stored
//! in the cluster, prune, health waits and drift checks. The decisions themselves (order, stages,
//! health, prune guards, normalisation, diffs) are pure functions in `headway-model`; this crate
//! performs the calls.
//!
//! # The facade
//! ```no_run
//! # async fn example(client: kube::Client, set: headway_model::RenderedSet) -> Result<(), headway_apply::ApplyError> {
//! use std::sync::Arc;
//! use headway_apply::{Engine, EngineOptions, SyncRequest};
//! use headway_model::SyncOwner;
//!
//! let engine = Arc::new(Engine::new(client, EngineOptions::default()).await?);
//! let owner = SyncOwner::new("headway-system", "site").expect("valid label values");
//! let mut req = SyncRequest::new(owner.clone(), "default", set.clone());
//! req.prune = true;
//! req.wait = true;
//! let report = engine.sync(&req).await?; // apply + prune + wait; report.changes, .failure, .requests
//! let drift = engine.drift(&owner, &set, "default").await?; // live vs desired, no writes
//! let deleted = engine.delete_all(&owner, "headway-system").await?; // the sync's finalizer
//! engine.forget_inventory(&owner).await?; // or leave its objects: forget what it applied
//! # Ok(()) }
//! ```
//! - [`Engine::sync`] applies a [`RenderedSet`](headway_model::RenderedSet) (only a
//!   complete render can be one, so nothing is pruned after a failed fetch or render), records
//!   the inventory, prunes (when asked, after a successful apply, within the guards) and waits
//!   for health (when asked). It returns a [`SyncReport`]: the [`ChangeSet`] per object, timings
//!   per step, health, the failed step ([`SyncFailure`]) and the number of API requests.
//! - [`Engine::drift`] compares live objects with the desired ones ([`DriftReport`]).
//! - [`Engine::delete_all`] deletes everything a sync applied (its finalizer);
//!   [`Engine::forget_inventory`] forgets it instead, leaving the objects in place.
//! - An [`ApplyError`] says, through [`ApplyError::retry_hint`], when retrying may help.
//! - With [`SyncRequest::progress`] set, a sync reports [`SyncProgress`] as it runs: each apply
//!   stage, the prune and the wait started and finished, objects applied and objects Current.
//! - [`error_message`] words a Kubernetes client error the way Headway reports them everywhere.
//!
//! `Engine` is `Send + Sync`; share it with `Arc` and call it concurrently for different syncs.
//! Calls for the same sync must not overlap (the controller serialises them).
//!
//! [`ChangeSet`]: headway_model::changeset::ChangeSet
//!
//! # Modules
//! Below the facade ([`Engine`], the `engine` module), each step is a module of its own that knows nothing of
//! the engine: `prepare` (scope, namespaces, ownership labels), `apply` (staged server-side apply
//! and change detection), `prune` (deletion of what left the set), `health` (reads and waits),
//! `drift` (live versus desired), `store` (the inventory ConfigMaps), `progress` (reports of a
//! running sync, [`SyncRequest::progress`]). They share an `op` (one
//! operation: its counted `calls`, the `discovery`, the engine's `memory` of applied objects and
//! its `breaker`, tripped by the first transport failure so that nothing more is sent).
#![forbid(unsafe_code)]

mod apply;
mod breaker;
mod calls;
mod counting;
mod discovery;
mod drift;
mod engine;
mod error;
mod health;
mod memory;
mod op;
mod prepare;
mod progress;
mod prune;
mod store;

pub use breaker::is_unavailable;
pub use calls::FIELD_MANAGER;
pub use counting::{CountingLayer, CountingService, counting_client};
pub use discovery::ServerCapabilities;
pub use drift::{DriftReport, DriftState};
pub use engine::{Engine, EngineOptions, Identity, SyncFailure, SyncReport, SyncRequest, SyncStep};
pub use error::{ApplyError, RetryHint, error_message};
pub use prepare::PrepareError;
pub use progress::{ProgressSender, ProgressStep, SyncProgress};
