//! [`SourceError`]: every way a fetch can fail, worded for the user who configured the source.
//!
//! Messages carry the URL with its password removed and never a secret: git's own messages are
//! scrubbed of every secret of the source before they are stored here.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::GitRef;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source itself is malformed (bad URL, ref name, auth not fitting the URL's scheme).
    #[error("invalid source: {0}")]
    Invalid(String),
    /// The server could not be reached (DNS, refused or timed-out connection).
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// Redacted URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server refused the credentials, or asked for some that were not given.
    #[error("authentication to {url} failed: {reason}")]
    AuthFailed {
        /// Redacted URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The SSH server's host key is not in the source's known_hosts.
    #[error(
        "unknown SSH host key for {host}: {key_type} {fingerprint} is not in known_hosts; \
         add the server's key to known_hosts to trust it"
    )]
    HostKeyUnknown {
        /// `host` or `[host]:port`, as known_hosts names it.
        host: String,
        /// Key type, e.g. `ssh-ed25519`.
        key_type: String,
        /// `SHA256:...`, as `ssh-keygen -lf` prints it.
        fingerprint: String,
    },
    /// known_hosts has keys for this host but not the one the server presented (or it is revoked).
    #[error(
        "SSH host key for {host} has CHANGED (or is revoked): the server presented {key_type} \
         {fingerprint}, which known_hosts does not list for this host; refusing to connect \
         (possible man-in-the-middle attack)"
    )]
    HostKeyChanged {
        /// `host` or `[host]:port`.
        host: String,
        /// Key type presented.
        key_type: String,
        /// `SHA256:...` of the key presented.
        fingerprint: String,
    },
    /// The branch, tag or commit does not exist on the server.
    #[error("{reference} not found in {url}")]
    UnknownRef {
        /// Redacted URL.
        url: String,
        /// What was asked for.
        reference: GitRef,
    },
    /// The call did not finish within [`FetchOptions::timeout`](crate::FetchOptions::timeout).
    #[error("fetching {url} timed out after {after:?}")]
    Timeout {
        /// Redacted URL.
        url: String,
        /// The configured timeout.
        after: Duration,
    },
    /// A symlink in the tree resolves outside the checkout.
    #[error("symlink {path} points outside the checkout (target {target:?}); refusing the tree")]
    SymlinkEscape {
        /// Path of the symlink in the repository.
        path: String,
        /// Its target.
        target: String,
    },
    /// A path in the tree that cannot be written safely (`..`, `.git`, non-UTF-8, ...).
    #[error("unsafe path in tree: {path:?} ({reason})")]
    UnsafePath {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The tree is larger than [`Limits::max_bytes`](crate::Limits::max_bytes).
    #[error(
        "tree too large: more than {limit} bytes (at least {bytes} bytes); raise limits.max_bytes"
    )]
    TooLarge {
        /// Bytes counted when the limit was crossed.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The tree has more files than [`Limits::max_files`](crate::Limits::max_files).
    #[error("tree has too many files: more than {limit}; raise limits.max_files")]
    TooManyFiles {
        /// The limit.
        limit: u64,
    },
    /// The cache directory cannot be used (permissions, disk full, ...).
    #[error("cache error at {}: {reason}", path.display())]
    Cache {
        /// The path concerned.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Any other error reported by git or the server (e.g. repository not found).
    #[error("git error while fetching {url}: {message}")]
    Git {
        /// Redacted URL.
        url: String,
        /// git's message, scrubbed of secrets.
        message: String,
    },
}

impl SourceError {
    /// Whether retrying later without changing the configuration may succeed (network trouble,
    /// timeouts, server errors). Invalid sources, refused credentials or host keys, unknown refs
    /// and trees over the limits are terminal until the configuration or the repository changes.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::Unreachable { .. }
                | SourceError::Timeout { .. }
                | SourceError::Cache { .. }
                | SourceError::Git { .. }
        )
    }
}
