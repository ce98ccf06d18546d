//! Recreation: when an apply that the server refused on an immutable field may delete and recreate
//! the object (opted in per object with an annotation, or per sync), and which errors call for it.

use serde_json::Value;

use crate::meta::{annotation, label};

/// Annotation (on the desired object) that opts in to delete-and-recreate when an apply fails on
/// an immutable field, with the value [`FORCE_ENABLED`].
pub const ANNOTATION_FORCE: &str = "headway.dev/force";
/// Value of [`ANNOTATION_FORCE`] that enables recreation.
pub const FORCE_ENABLED: &str = "enabled";

/// Whether a desired object opts in to delete-and-recreate on immutable-field errors
/// ([`ANNOTATION_FORCE`]` = enabled`, also honoured as a label).
pub fn force_enabled(object: &Value) -> bool {
    annotation(object, ANNOTATION_FORCE) == Some(FORCE_ENABLED)
        || label(object, ANNOTATION_FORCE) == Some(FORCE_ENABLED)
}

/// Whether an apply error means the object must be recreated to change: HTTP 409 Conflict,
/// reason `Invalid` (HTTP 422), or a message saying a field is immutable.
pub fn is_immutable_error(http_status: u16, reason: &str, message: &str) -> bool {
    http_status == 409
        || reason == "Invalid"
        || message.contains("is immutable")
        || message.contains("immutable field")
}

/// Whether an apply error can only be resolved by deleting and recreating the object: the server
/// rejected the change (HTTP 422 or 409, or reason `Invalid`) and says a field cannot change
/// (`field is immutable`, `immutable field`, `may not change once set`, as the API server words
/// it for Job templates, selectors and Service cluster IPs).
///
/// Narrower than [`is_immutable_error`]: a plain validation error (reason `Invalid` for a bad
/// value) would fail again after the deletion, leaving the object deleted.
pub fn is_recreate_error(http_status: u16, reason: &str, message: &str) -> bool {
    let rejected = http_status == 422 || http_status == 409 || reason == "Invalid";
    let says_immutable =
        message.contains("immutable") || message.contains("may not change once set");
    rejected && says_immutable
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn force_and_immutable_errors() {
        assert!(force_enabled(
            &json!({"metadata": {"annotations": {ANNOTATION_FORCE: "enabled"}}})
        ));
        assert!(!force_enabled(
            &json!({"metadata": {"annotations": {ANNOTATION_FORCE: "true"}}})
        ));
        assert!(force_enabled(
            &json!({"metadata": {"labels": {ANNOTATION_FORCE: "enabled"}}})
        ));
        for (status, reason, message, expected) in [
            (409, "Conflict", "", true),
            (422, "Invalid", "spec.selector: Invalid value", true),
            (422, "Other", "field is immutable", true),
            (
                500,
                "",
                "spec.clusterIP: Invalid value: \"\": immutable field",
                true,
            ),
            (422, "Other", "bad value", false),
            (404, "NotFound", "", false),
        ] {
            assert_eq!(
                is_immutable_error(status, reason, message),
                expected,
                "{status} {reason} {message}"
            );
        }
        for (status, reason, message, expected) in [
            (
                422,
                "Invalid",
                "Job.batch \"j\" is invalid: spec.template: Invalid value: ...: field is immutable",
                true,
            ),
            (
                422,
                "Invalid",
                "spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.9\"}: may not change once set",
                true,
            ),
            (409, "Conflict", "spec.selector: immutable field", true),
            (
                422,
                "Invalid",
                "spec.replicas: Invalid value: -1: must be >= 0",
                false,
            ),
            (500, "InternalError", "field is immutable", false),
            (404, "NotFound", "", false),
        ] {
            assert_eq!(
                is_recreate_error(status, reason, message),
                expected,
                "{status} {reason} {message}"
            );
        }
    }
}
