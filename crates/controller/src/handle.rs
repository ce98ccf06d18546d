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

use crate::crd::GitSync;
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
    ///
    /// A sync asked for while another request is pending (not picked up by the controller yet)
    /// joins it: the value of that request is returned and nothing is written. Joining is safe
    /// because the pending run has not fetched yet, so it sees every commit pushed before this
    /// call. A request whose run is already running does not absorb a new one: that run may have
    /// fetched before the latest push, so a new request is made.
    pub async fn sync_now(&self, namespace: &str, name: &str) -> Result<String, RequestError> {
        self.request_unless_joined(namespace, name, RequestKind::Sync, "sync")
            .await
    }

    /// Asks for a rebuild of `namespace/name`: a fresh fetch and a re-apply of every object;
    /// `status.lastRebuild` records its duration. Returns the request's value.
    ///
    /// A rebuild asked for while another one is pending or running joins it: the value of that
    /// request is returned and nothing is written.
    pub async fn rebuild(&self, namespace: &str, name: &str) -> Result<String, RequestError> {
        self.request_unless_joined(namespace, name, RequestKind::Rebuild, "rebuild")
            .await
    }

    /// Returns the value of the current request of `kind` when a new one would join it (see
    /// [`joins`]); else makes a new request.
    async fn request_unless_joined(
        &self,
        namespace: &str,
        name: &str,
        kind: RequestKind,
        what: &'static str,
    ) -> Result<String, RequestError> {
        let api: Api<GitSync> = Api::namespaced(self.client.clone(), namespace);
        let current = api.get(name).await.map_err(|source| RequestError {
            what,
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })?;
        if let Some(value) = current.annotations().get(kind.annotation())
            && joins(kind, request_state(&current, kind, value))
        {
            return Ok(value.clone());
        }
        self.request(namespace, name, kind.annotation(), what).await
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

/// Whether a new request of `kind` joins the current one, in `state`: a pending request of
/// either kind (its run has not fetched yet, so it covers every push before now), and a running
/// rebuild (a rebuild re-applies everything anyway; asking twice is one rebuild). A running sync
/// does not absorb a new sync request: it may have fetched before the latest push.
pub fn joins(kind: RequestKind, state: RequestState) -> bool {
    match state {
        RequestState::Pending => true,
        RequestState::Running => kind == RequestKind::Rebuild,
        RequestState::Done { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_requests_are_joined_running_rebuilds_too_running_syncs_not() {
        use RequestKind::{Rebuild, Sync};
        use RequestState::{Done, Pending, Running};
        let check = |kind, state, expected| {
            assert_eq!(joins(kind, state), expected, "{kind:?} {state:?}");
        };
        check(Sync, Pending, true);
        check(Sync, Running, false);
        check(Sync, Done { ok: true }, false);
        check(Sync, Done { ok: false }, false);
        check(Rebuild, Pending, true);
        check(Rebuild, Running, true);
        check(Rebuild, Done { ok: true }, false);
        check(Rebuild, Done { ok: false }, false);
    }
}
