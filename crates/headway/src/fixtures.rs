//! Fixtures of the unit tests: the GitSync `apps/shop` with a given status, and its conditions.

use headway_controller::GitSync;
use serde_json::{Value, json};

/// The GitSync `apps/shop` of `https://git.example.com/x.git` with `status`.
pub fn sync(status: Value) -> GitSync {
    serde_json::from_value(json!({
        "apiVersion": "headway.dev/v1alpha1",
        "kind": "GitSync",
        "metadata": {"name": "shop", "namespace": "apps"},
        "spec": {"repository": {"url": "https://git.example.com/x.git"}},
        "status": status,
    }))
    .unwrap()
}

/// A condition of a GitSync's status, last changed at 2026-11-26T12:00:00Z.
pub fn cond(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-11-26T12:00:00Z"})
}
