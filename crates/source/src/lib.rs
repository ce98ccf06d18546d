//! Source: from a git URL and a ref to a commit and its file tree.
//!
//! [`Cache::fetch`] fetches a branch's head, a tag or a pinned commit (depth 1 by default) into a
//! local cache directory, checks the commit's tree out into an immutable directory and returns a
//! [`Revision`] (sha, author, time, message, `tree_dir`, counters). Later fetches of the same
//! source reuse the cached objects; force-pushed branches are followed; a corrupted cache entry is
//! deleted and fetched again, and [`Revision::recovered_from`] says why.
//!
//! Transports: `git://`, `http(s)://` (anonymous, basic or token) and `ssh://` / scp-like URLs
//! (private key in memory, host key checked against the source's known_hosts; unknown or changed
//! keys are refused). Trees are checked before they are written: no symlink may resolve outside
//! the checkout, and [`Limits`] bound the size and number of files.
//!
//! [`SharedCache`] puts a single flight and a short reuse window in front of a `Cache`, so that
//! many syncs of one source at one revision share one fetch and one checkout.
//!
//! **The API is blocking.** Call it from async code through `tokio::task::spawn_blocking`. Each
//! call is bounded by [`FetchOptions::timeout`] (the work runs on a worker thread) and the TCP
//! connection by [`FetchOptions::connect_timeout`].
//!
//! ```no_run
//! use headway_source::{Cache, FetchOptions, GitRef, Source};
//! let cache = Cache::new("/var/cache/headway")?;
//! let source = Source::new("https://github.com/org/deploy.git", GitRef::Branch("main".into()));
//! let revision = cache.fetch(&source, &FetchOptions::default())?;
//! println!("{} -> {}", revision.sha, revision.tree_dir.display());
//! # Ok::<(), headway_source::SourceError>(())
//! ```
#![forbid(unsafe_code)]

mod cache;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod git;
mod known_hosts;
mod secret;
mod shared;
mod tree;
mod types;
mod url;

pub use cache::Cache;
pub use error::SourceError;
pub use secret::{Secret, redact_url};
pub use shared::{Freshness, SharedCache, SharedStats};
pub use types::{Auth, FetchOptions, FetchStats, GitRef, Limits, Revision, Source};
