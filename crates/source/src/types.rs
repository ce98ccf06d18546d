//! The public vocabulary of the crate: what to fetch ([`Source`], [`GitRef`], [`Auth`]), how
//! ([`FetchOptions`], [`Limits`]) and what comes back ([`Revision`], [`FetchStats`]).
//!
//! Secrets are held in [`Secret`] (module `secret`); `Source`'s `Debug` shows its URL with any
//! password removed.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::{Secret, redact_url};

/// What to check out: a branch's current head, a tag, or one pinned commit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GitRef {
    /// A branch name without `refs/heads/`, e.g. `main`. Fetched on every call.
    Branch(String),
    /// A tag name without `refs/tags/`, e.g. `v1.2.0`. Annotated tags are peeled to their commit.
    Tag(String),
    /// A full commit id (40 hex digits). Served from the cache without network access once fetched.
    Commit(String),
}

impl fmt::Display for GitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitRef::Branch(b) => write!(f, "branch {b:?}"),
            GitRef::Tag(t) => write!(f, "tag {t:?}"),
            GitRef::Commit(c) => write!(f, "commit {c}"),
        }
    }
}

/// How to authenticate to the git server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anonymous access (public repositories, `git://`).
    None,
    /// HTTP(S) basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// HTTP(S) token, sent as the basic-auth password; the user name is the one in the URL, or
    /// `x-access-token` (accepted by GitHub; GitLab and Gitea accept any user name with a token).
    Token(Secret),
    /// SSH public-key authentication with a private key held in memory. The user name is the one
    /// in the URL (`ssh://git@host/...`, `git@host:path`), or `git`.
    Ssh {
        /// The private key, OpenSSH or PEM format.
        private_key: Secret,
        /// Its passphrase, if it is encrypted.
        passphrase: Option<Secret>,
        /// known_hosts lines (OpenSSH format, hashed host names and `@revoked` included) that
        /// the server's host key must match. An unknown, changed or revoked host key is refused.
        known_hosts: String,
    },
}

/// A git repository and the revision wanted from it.
#[derive(Clone, PartialEq, Eq)]
pub struct Source {
    /// `git://`, `http://`, `https://`, `ssh://` or scp-like `user@host:path`. Local paths and
    /// `file://` are refused (shallow fetch needs a network transport).
    pub url: String,
    /// The branch, tag or commit to check out.
    pub reference: GitRef,
    /// Credentials.
    pub auth: Auth,
}

impl Source {
    /// A source with anonymous access.
    pub fn new(url: impl Into<String>, reference: GitRef) -> Self {
        Source {
            url: url.into(),
            reference,
            auth: Auth::None,
        }
    }

    /// The same source with other credentials.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("url", &redact_url(&self.url))
            .field("reference", &self.reference)
            .field("auth", &self.auth)
            .finish()
    }
}

/// Limits on the checked-out tree, checked before any file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Maximum sum of file sizes in bytes (default 256 MiB).
    pub max_bytes: u64,
    /// Maximum number of files and symlinks (default 20,000).
    pub max_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 256 * 1024 * 1024,
            max_files: 20_000,
        }
    }
}

/// How to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// History depth; `Some(1)` (default) fetches only the wanted commit, `None` the full history.
    pub depth: Option<u32>,
    /// Bound on establishing the TCP connection to the server (default 10 s).
    pub connect_timeout: Duration,
    /// Bound on the whole call: waiting for the cache lock, fetching and checking out (default
    /// 5 min).
    pub timeout: Duration,
    /// Tree size limits.
    pub limits: Limits,
    /// How many checked-out trees to keep per cache entry, newest first (default 3, minimum 1),
    /// so that a reader of the previous revision is not pulled from under its feet.
    pub keep_trees: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            depth: Some(1),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
            limits: Limits::default(),
            keep_trees: 3,
        }
    }
}

/// Counters about one fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FetchStats {
    /// Files and symlinks in the tree.
    pub files: u64,
    /// Sum of their sizes in bytes.
    pub bytes: u64,
    /// Wall time of the whole call in milliseconds.
    pub fetch_ms: u64,
    /// Bytes received from the server (0 when served from the cache).
    pub received_bytes: u64,
}

/// A fetched commit and its checked-out file tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// Full commit id (hex).
    pub sha: String,
    /// `Name <email>` of the commit's author.
    pub author: String,
    /// Committer time, seconds since the Unix epoch.
    pub time: i64,
    /// Full commit message.
    pub message: String,
    /// Directory holding the commit's files (no `.git`). Immutable; it stays until
    /// [`FetchOptions::keep_trees`] newer trees of the same source exist.
    pub tree_dir: PathBuf,
    /// Counters.
    pub stats: FetchStats,
    /// Set when the cache entry was found corrupted, deleted and fetched again: why.
    pub recovered_from: Option<String>,
    /// Things worth telling the user that did not stop the fetch (skipped submodules,
    /// credentials over plain http).
    pub warnings: Vec<String>,
}
