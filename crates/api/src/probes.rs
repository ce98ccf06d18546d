//! `/healthz` (the process answers) and `/readyz` (the GitSync cache has its initial list and
//! the Kubernetes API answers).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    if !state.inner.syncs.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "GitSync cache not synced yet\n".into(),
        );
    }
    let client = state.inner.client.clone();
    match tokio::time::timeout(Duration::from_secs(3), client.apiserver_version()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".into()),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Kubernetes API unreachable: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Kubernetes API did not answer within 3s\n".into(),
        ),
    }
}
