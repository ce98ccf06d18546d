//! [`SourceError`]: every way a fetch can fail, worded for the user who configured the source.
//!
//! Messages carry the URL with its password removed and never a secret: git's own messages are
//! scrubbed of every secret of the source before they are stored here.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::GitRef;

/// Why a fetch failed. `Clone`, so that the callers sharing one fetch all get its error.
#[derive(Clone, Debug, thiserror::Error)]
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
    /// known_hosts has keys for this host but not the one the server presented.
    #[error(
        "SSH host key for {host} has CHANGED: the server presented {key_type} {fingerprint}, \
         which known_hosts does not list for this host; refusing to connect (possible \
         man-in-the-middle attack)"
    )]
    HostKeyChanged {
        /// `host` or `[host]:port`.
        host: String,
        /// Key type presented.
        key_type: String,
        /// `SHA256:...` of the key presented.
        fingerprint: String,
    },
    /// known_hosts marks the key the server presented as `@revoked` for this host.
    #[error(
        "SSH host key for {host} is REVOKED: the server presented {key_type} {fingerprint}, \
         which known_hosts marks @revoked; refusing to connect"
    )]
    HostKeyRevoked {
        /// `host` or `[host]:port`.
        host: String,
        /// Key type presented.
        key_type: String,
        /// `SHA256:...` of the key presented.
        fingerprint: String,
    },
    /// known_hosts trusts this host only through `@cert-authority` lines, and host
    /// certificates are not supported.
    #[error(
        "SSH host {host} is trusted in known_hosts only through @cert-authority, and Headway does \
         not check host certificates; add the server's own key ({key_type} {fingerprint}) to \
         known_hosts to trust it"
    )]
    HostCertificateUnsupported {
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
