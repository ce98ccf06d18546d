//! The circuit breaker of one operation: the first request that fails because the API server
//! cannot be reached (connection refused or reset, a timeout, 502/503/504 after the client's own
//! retries) trips it, and from then on the operation sends nothing more; the objects not yet
//! sent are reported as skipped with the first error. An outage therefore costs one failed
//! request per request already in flight (at most the operation's concurrency), not one per
//! object, and the sync fails as a whole with a transient error that the controller retries
//! with backoff. Errors the server answers about one object (4xx: invalid, forbidden,
//! conflict) are per-object failures and do not trip it.

use std::sync::Mutex;

use crate::error::error_message;

/// Whether `e` says the API server could not be reached or could not serve any request, as
/// opposed to an answer about the request itself.
pub fn is_unavailable(e: &kube::Error) -> bool {
    match e {
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        kube::Error::Api(s) => matches!(s.code, 502..=504),
        _ => false,
    }
}

/// Tripped on the first transport failure of an operation (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    /// The first transport error, worded as everywhere else.
    tripped: Mutex<Option<String>>,
}

impl Breaker {
    /// The first transport error, once tripped: nothing more should be sent.
    pub fn tripped(&self) -> Option<String> {
        self.tripped.lock().expect("breaker lock").clone()
    }

    /// Trips the breaker when `e` is a transport failure; returns whether it did (or already
    /// was tripped by an earlier one).
    pub fn observe(&self, e: &kube::Error) -> bool {
        if !is_unavailable(e) {
            return false;
        }
        let mut tripped = self.tripped.lock().expect("breaker lock");
        if tripped.is_none() {
            tracing::warn!(error = %error_message(e), "the API server is unreachable: sending no more requests in this sync");
            *tripped = Some(error_message(e));
        }
        true
    }

    /// The reason an object was not sent, once tripped.
    pub fn skip_reason(&self) -> Option<String> {
        self.tripped()
            .map(|e| format!("not sent: the API server is unreachable ({e})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("boom", "Reason").with_code(code),
        ))
    }

    #[test]
    fn transport_failures_trip_answers_about_one_object_do_not() {
        let breaker = Breaker::default();
        for code in [400, 403, 404, 409, 422, 429, 500] {
            assert!(!breaker.observe(&api(code)), "{code}");
        }
        assert_eq!(breaker.tripped(), None);
        assert!(breaker.observe(&api(503)));
        let first = breaker.tripped().expect("tripped");
        assert!(first.contains("503"), "{first}");
        // The first error is kept.
        assert!(breaker.observe(&kube::Error::Service("connection refused".into())));
        assert_eq!(breaker.tripped(), Some(first));
        assert!(
            breaker
                .skip_reason()
                .is_some_and(|r| r.contains("unreachable"))
        );
    }

    #[test]
    fn classifies_client_errors() {
        assert!(is_unavailable(&kube::Error::Service(
            "client error (Connect): tcp connect error: Connection refused".into()
        )));
        assert!(is_unavailable(&api(502)));
        assert!(is_unavailable(&api(504)));
        assert!(!is_unavailable(&kube::Error::TlsRequired));
    }
}
