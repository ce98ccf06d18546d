//! Headway's pure domain model: what an object is, how it is identified and digested, and the
//! decisions taken on sets of objects (apply order, inventory diff, health, drift).
//!
//! Architecture invariant: this crate performs no I/O. It knows nothing about kube, tokio, git2 or
//! axum; everything here is a pure function of its inputs and is tested without a cluster.
#![forbid(unsafe_code)]

pub mod changeset;
pub mod diff;
pub mod digest;
pub mod health;
pub mod id;
pub mod inventory;
pub mod manifest;
mod meta;
pub mod normalize;
pub mod order;
pub mod owner;
pub mod prune;
pub mod quantity;
pub mod recreate;
pub mod rendered_set;

pub use digest::Digest;
pub use id::ObjectRef;
pub use manifest::{Manifest, SourceLocation};
pub use owner::SyncOwner;
pub use rendered_set::RenderedSet;
