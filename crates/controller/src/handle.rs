//! Programmatic triggers: "sync now" and "rebuild" for webhooks, the HTTP API and the CLI.
//!
//! A request is an annotation on the GitSync (`headway.dev/sync-requested-at`,
//! `headway.dev/rebuild-requested-at`) set to the current time: any replica (leader or not) and
//! any client with `patch` rights can make one, it survives a leader change, and the leader acts
//! on it through its watch, recording the handled value in status.

use std::time::SystemTime;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::crd::{ANNOTATION_REBUILD_REQUESTED, ANNOTATION_SYNC_REQUESTED, GitSync};
use crate::view::{RequestKind, RequestState, request_state};

/// Field manager of the request annotations.
pub const REQUEST_MANAGER: &str = "headway-request";

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
#[error("requesting a {what} of GitSync {namespace}/{name}: {}", headway_apply::error_message(.source))]
pub struct RequestError {
    pub what: &'static str,
    pub namespace: String,
    pub name: String,
    #[source]
    pub source: kube::Error,
}

/// Makes sync and rebuild requests.
#[derive(Clone)]
pub struct Handle {
    client: kube::Client,
}

impl Handle {
    pub fn new(client: kube::Client) -> Self {
        Handle { client }
    }

    /// Asks for a sync of `namespace/name` now; returns the request's value.
    pub async fn sync_now(&self, namespace: &str, name: &str) -> Result<String, RequestError> {
        self.request(namespace, name, ANNOTATION_SYNC_REQUESTED, "sync")
            .await
    }

    /// Asks for a rebuild of `namespace/name`: a fresh fetch and a re-apply of every object;
    /// `status.lastRebuild` records its duration. Returns the request's value.
    ///
    /// A rebuild asked for while another one is pending or running joins it: the value of that
    /// request is returned and nothing is written.
    pub async fn rebuild(&self, namespace: &str, name: &str) -> Result<String, RequestError> {
        let api: Api<GitSync> = Api::namespaced(self.client.clone(), namespace);
        let current = api.get(name).await.map_err(|source| RequestError {
            what: "rebuild",
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })?;
        if let Some(value) = current.annotations().get(ANNOTATION_REBUILD_REQUESTED)
            && matches!(
                request_state(&current, RequestKind::Rebuild, value),
                RequestState::Pending | RequestState::Running
            )
        {
            return Ok(value.clone());
        }
        self.request(namespace, name, ANNOTATION_REBUILD_REQUESTED, "rebuild")
            .await
    }

    async fn request(
        &self,
        namespace: &str,
        name: &str,
        annotation: &str,
        what: &'static str,
    ) -> Result<String, RequestError> {
        let value = crate::schedule::format_time(SystemTime::now());
        let api: Api<GitSync> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({"metadata": {"annotations": {annotation: value}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| RequestError {
                what,
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })?;
        Ok(value)
    }
}
