//! The GitSync endpoints: status from the reflector cache (no API-server call per read), and
//! sync and rebuild requests made through `Handle` after authentication and authorization.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use futures::future::join_all;
use headway_controller::view::{SyncKey, SyncSummary, summarize};
use k8s_openapi::api::authentication::v1::UserInfo;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth;
use crate::error::ApiError;

fn ready(state: &AppState) -> Result<(), ApiError> {
    if state.inner.syncs.is_ready() {
        Ok(())
    } else {
        Err(ApiError::Unavailable(
            "the GitSync cache is not synced yet; retry in a moment".into(),
        ))
    }
}

/// `GET /api/v1/syncs`.
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<SyncSummary>>, ApiError> {
    ready(&state)?;
    Ok(Json(
        state
            .inner
            .syncs
            .list()
            .iter()
            .map(|s| summarize(s))
            .collect(),
    ))
}

/// `GET /api/v1/syncs/{namespace}/{name}`.
pub async fn get_one(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<SyncSummary>, ApiError> {
    ready(&state)?;
    let key = SyncKey { namespace, name };
    state
        .inner
        .syncs
        .get(&key)
        .map(|s| Json(summarize(&s)))
        .ok_or_else(|| ApiError::NotFound(format!("GitSync {key} not found")))
}

/// One request made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestMade {
    pub namespace: String,
    pub name: String,
    /// `sync` or `rebuild`.
    pub kind: String,
    /// The request id: the annotation value written; the controller records it in
    /// `status.lastHandledSyncRequest` / `lastHandledRebuildRequest` when it starts.
    pub id: String,
}

/// The answer of the POST endpoints (202).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Accepted {
    pub requests: Vec<RequestMade>,
}

/// The caller, authenticated by its bearer token (401 otherwise).
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let token = auth::bearer(headers)?;
    auth::authenticate(&state.inner.client, token).await
}

/// Checks `patch` on every key (403 otherwise); nothing is requested unless all pass.
async fn authorize_all(
    state: &AppState,
    user: &UserInfo,
    keys: &[SyncKey],
) -> Result<(), ApiError> {
    let client = &state.inner.client;
    let answers = join_all(
        keys.iter()
            .map(|k| auth::may_patch(client, user, &k.namespace, &k.name)),
    )
    .await;
    let mut denied = Vec::new();
    for (key, answer) in keys.iter().zip(answers) {
        if !answer? {
            denied.push(key.to_string());
        }
    }
    if denied.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "{} may not patch GitSync {}: nothing was requested",
            auth::who(user),
            denied.join(", ")
        )))
    }
}

/// `POST /api/v1/syncs/{namespace}/{name}/sync`.
pub async fn sync_now(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let key = SyncKey { namespace, name };
    let user = caller(&state, &headers).await?;
    authorize_all(&state, &user, std::slice::from_ref(&key)).await?;
    ready(&state)?;
    if state.inner.syncs.get(&key).is_none() {
        return Err(ApiError::NotFound(format!("GitSync {key} not found")));
    }
    let id = state
        .inner
        .handle
        .sync_now(&key.namespace, &key.name)
        .await
        .map_err(|e| ApiError::Upstream(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            requests: vec![RequestMade {
                namespace: key.namespace,
                name: key.name,
                kind: "sync".into(),
                id,
            }],
        }),
    ))
}

/// Body of `POST /api/v1/rebuild`: `{"all": true}` or `{"syncs": ["ns/name", ...]}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RebuildBody {
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub syncs: Vec<String>,
}

/// Which GitSyncs a rebuild body selects, among `known` (sorted keys of the cache).
pub fn select(body: &RebuildBody, known: &[SyncKey]) -> Result<Vec<SyncKey>, ApiError> {
    match (body.all, body.syncs.is_empty()) {
        (true, true) => Ok(known.to_vec()),
        (false, false) => {
            let mut keys = Vec::new();
            let mut missing = Vec::new();
            for text in &body.syncs {
                let Some((namespace, name)) = text
                    .split_once('/')
                    .filter(|(n, m)| !n.is_empty() && !m.is_empty())
                else {
                    return Err(ApiError::BadRequest(format!(
                        "syncs: {text:?} is not namespace/name"
                    )));
                };
                let key = SyncKey {
                    namespace: namespace.into(),
                    name: name.into(),
                };
                if !known.contains(&key) {
                    missing.push(text.clone());
                } else if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            if missing.is_empty() {
                Ok(keys)
            } else {
                Err(ApiError::NotFound(format!(
                    "GitSync {} not found",
                    missing.join(", ")
                )))
            }
        }
        (true, false) => Err(ApiError::BadRequest(
            "give either \"all\": true or \"syncs\", not both".into(),
        )),
        (false, true) => Err(ApiError::BadRequest(
            "nothing selected: give \"all\": true or \"syncs\": [\"namespace/name\", ...]".into(),
        )),
    }
}

/// `POST /api/v1/rebuild`. A rebuild asked for while one runs joins it (`Handle::rebuild`).
pub async fn rebuild(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    // Authenticate before reading anything the caller sent.
    let user = caller(&state, &headers).await?;
    let body: RebuildBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("request body: {e}")))?;
    ready(&state)?;
    let known: Vec<SyncKey> = state
        .inner
        .syncs
        .list()
        .iter()
        .map(|s| SyncKey {
            namespace: s.metadata.namespace.clone().unwrap_or_default(),
            name: s.metadata.name.clone().unwrap_or_default(),
        })
        .collect();
    let keys = select(&body, &known)?;
    authorize_all(&state, &user, &keys).await?;
    let handle = &state.inner.handle;
    let results = join_all(keys.iter().map(|k| handle.rebuild(&k.namespace, &k.name))).await;
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    for (key, result) in keys.into_iter().zip(results) {
        match result {
            Ok(id) => requests.push(RequestMade {
                namespace: key.namespace,
                name: key.name,
                kind: "rebuild".into(),
                id,
            }),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Upstream(errors.join("; ")));
    }
    Ok((StatusCode::ACCEPTED, Json(Accepted { requests })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SyncKey {
        let (n, m) = s.split_once('/').unwrap();
        SyncKey {
            namespace: n.into(),
            name: m.into(),
        }
    }

    #[test]
    fn rebuild_selection() {
        let known = [key("a/x"), key("b/y")];
        let body = |v: serde_json::Value| serde_json::from_value::<RebuildBody>(v).unwrap();
        assert_eq!(
            select(&body(serde_json::json!({"all": true})), &known).unwrap(),
            known
        );
        assert_eq!(
            select(&body(serde_json::json!({"syncs": ["b/y", "b/y"]})), &known).unwrap(),
            [key("b/y")]
        );
        let err = |v| select(&body(v), &known).unwrap_err();
        assert!(
            matches!(err(serde_json::json!({"syncs": ["c/z"]})), ApiError::NotFound(m) if m.contains("c/z"))
        );
        assert!(
            matches!(err(serde_json::json!({"syncs": ["nope"]})), ApiError::BadRequest(m) if m.contains("namespace/name"))
        );
        assert!(matches!(
            err(serde_json::json!({})),
            ApiError::BadRequest(_)
        ));
        assert!(matches!(
            err(serde_json::json!({"all": true, "syncs": ["a/x"]})),
            ApiError::BadRequest(_)
        ));
        assert!(
            serde_json::from_value::<RebuildBody>(serde_json::json!({"everything": true})).is_err()
        );
    }
}
