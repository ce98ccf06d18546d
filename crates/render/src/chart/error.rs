//! Why a remote chart could not be fetched: each variant names the repository, chart, version or
//! URL involved, and says whether trying again later may help ([`ChartError::is_transient`]).

use std::path::PathBuf;

/// A failure to resolve, download or verify a remote chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The chart reference itself is wrong (repository URL, name, version constraint).
    #[error("invalid chart reference: {0}")]
    InvalidReference(String),
    /// No connection (DNS, refused, TLS, timeout).
    #[error("{url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The server answered with an error status.
    #[error("{url} answered HTTP {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },
    /// A response larger than allowed.
    #[error("{url} sent more than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    /// index.yaml or an OCI manifest that cannot be read.
    #[error("{url}: {message}")]
    BadResponse { url: String, message: String },
    /// The repository has no chart of that name.
    #[error("chart `{name}` is not in {repository}")]
    UnknownChart { repository: String, name: String },
    /// No version satisfies the constraint.
    #[error(
        "chart `{name}` in {repository} has no version matching `{constraint}` (newest: {})",
        if newest.is_empty() { "none".to_string() } else { newest.join(", ") }
    )]
    NoMatchingVersion {
        repository: String,
        name: String,
        constraint: String,
        newest: Vec<String>,
    },
    /// The index gives no digest, so the archive cannot be verified.
    #[error(
        "{repository}/index.yaml gives no digest for {name} {version}: the archive cannot be verified"
    )]
    NoDigest {
        repository: String,
        name: String,
        version: String,
    },
    /// The downloaded bytes are not the ones the index or manifest names: refused.
    #[error(
        "digest mismatch for {url}: expected sha256:{expected}, got sha256:{actual} (archive refused)"
    )]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    /// The chart cache could not be written or read.
    #[error("chart cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ChartError {
    /// Whether the same fetch may succeed later without a change to the reference (network
    /// failures, server errors, rate limits).
    pub fn is_transient(&self) -> bool {
        match self {
            ChartError::Unreachable { .. } | ChartError::Io { .. } => true,
            ChartError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
