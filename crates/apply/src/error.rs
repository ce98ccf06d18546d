//! Errors that stop an operation before it could report per-object results, when retrying them
//! may help, and the one way Headway words a Kubernetes client error. Per-object failures (an
//! apply rejected by the server, a delete that failed) are not errors: they are
//! [`Action::Failed`](headway_model::changeset::Action::Failed) entries of the change set.

use crate::prepare::PrepareError;

/// Why a sync, drift check or delete could not run.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// API discovery failed (the server is unreachable or unhealthy).
    #[error("API discovery failed: {}", error_message(.0))]
    Discovery(#[source] kube::Error),
    /// The desired set cannot be applied as a whole (unknown kinds, duplicates); nothing was
    /// written.
    #[error("the desired set cannot be applied: {0}")]
    Prepare(#[from] PrepareError),
    /// The API server could not be reached (connection refused or reset, unavailable) while
    /// the inventory was written after an apply cut short by the same outage.
    #[error("the API server is unreachable: {0}")]
    Unavailable(String),
    /// The inventory of a sync could not be read or written.
    #[error("inventory of sync {owner}: {message}")]
    Inventory { owner: String, message: String },
}

/// When an operation that failed with an [`ApplyError`] is worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryHint {
    /// The failure may go away by itself (the API server unreachable or overloaded, an inventory
    /// read or write that failed): retry soon, with backoff.
    Soon,
    /// The set uses kinds the server does not serve yet; a CRD installed by someone else (another
    /// sync) may serve them later: retry at the next interval.
    Later,
    /// The same source fails the same way (duplicate objects): retry only after it changes.
    AfterChange,
}

impl ApplyError {
    /// Whether and when retrying may succeed without a change to the source.
    pub fn retry_hint(&self) -> RetryHint {
        match self {
            ApplyError::Discovery(_)
            | ApplyError::Inventory { .. }
            | ApplyError::Unavailable(_) => RetryHint::Soon,
            ApplyError::Prepare(PrepareError::UnknownKinds(_)) => RetryHint::Later,
            ApplyError::Prepare(PrepareError::Duplicate(_)) => RetryHint::AfterChange,
        }
    }
}

/// A Kubernetes client error in one line, as Headway reports it everywhere (statuses, events,
/// logs): for an error returned by the API server, its message followed by the HTTP code and
/// reason (`configmaps "x" is forbidden: ... (403 Forbidden)`); for any other error (connection,
/// TLS, decoding), the client's own text.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => {
            format!("{} ({} {})", s.message, s.code, s.reason)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headway_model::ObjectRef;

    #[test]
    fn retry_hints() {
        let unknown = PrepareError::UnknownKinds(vec![(
            ObjectRef::new("example.com/v1", "Widget", None, "w"),
            "example.com/v1".into(),
            "f.yaml".into(),
        )]);
        let duplicate =
            PrepareError::Duplicate(Box::new(headway_model::rendered_set::DuplicateObject {
                id: Box::new(ObjectRef::new("v1", "ConfigMap", Some("ns".into()), "a")),
                first: "a.yaml".into(),
                second: "b.yaml".into(),
            }));
        let inventory = ApplyError::Inventory {
            owner: "ns/site".into(),
            message: "reading".into(),
        };
        assert_eq!(ApplyError::from(unknown).retry_hint(), RetryHint::Later);
        assert_eq!(
            ApplyError::from(duplicate).retry_hint(),
            RetryHint::AfterChange
        );
        assert_eq!(inventory.retry_hint(), RetryHint::Soon);
        assert_eq!(
            ApplyError::Unavailable("connection refused".into()).retry_hint(),
            RetryHint::Soon
        );
    }
}
