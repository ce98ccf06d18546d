//! `POST /hooks/{provider}`: a signed push becomes a sync request for the GitSyncs that follow
//! the pushed repository and ref. The signature is checked over the raw body (bounded by the
//! body limit) before anything parses it; no configured secret means every delivery is refused.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use headway_controller::GitSync;
use headway_controller::crd::WEBHOOK_SECRET_KEY;
use headway_controller::view::SyncKey;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde::Serialize;

use crate::AppState;
use crate::coalesce::{Coalescer, Decision};
use crate::matching::matches;
use crate::provider::Provider;
use crate::push::{Delivery, parse};
use crate::signature::{self, SignatureError};

/// How long a per-GitSync secret read from the cluster is reused.
const SECRET_TTL: Duration = Duration::from_secs(10);

/// Per-GitSync secrets by (namespace, Secret name): when read, and the value.
type SecretCache = HashMap<(String, String), (Instant, Option<Vec<u8>>)>;

/// Webhook state shared by requests: burst control and the per-GitSync secret cache.
pub struct WebhookState {
    coalescer: Arc<Mutex<Coalescer<SyncKey>>>,
    secrets: Mutex<SecretCache>,
}

impl WebhookState {
    pub fn new(gap: Duration) -> Self {
        WebhookState {
            coalescer: Arc::new(Mutex::new(Coalescer::new(gap, Duration::from_secs(60)))),
            secrets: Mutex::new(HashMap::new()),
        }
    }
}

/// The burst control, locked.
fn coalescer(state: &AppState) -> MutexGuard<'_, Coalescer<SyncKey>> {
    state
        .inner
        .webhooks
        .coalescer
        .lock()
        .expect("coalescer lock")
}

/// One GitSync a push concerned.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Triggered {
    pub namespace: String,
    pub name: String,
    /// `requested` (id given), `coalesced` (an earlier request covers this push), `deferred`
    /// (a request follows when the coalescing gap ends), or `failed` (message given).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The answer to a delivery.
#[derive(Debug, Clone, Serialize)]
pub struct HookAnswer {
    /// `sync requested`, `no match`, `pong` or `ignored`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub syncs: Vec<Triggered>,
}

fn key_of(sync: &GitSync) -> SyncKey {
    SyncKey {
        namespace: sync.metadata.namespace.clone().unwrap_or_default(),
        name: sync.metadata.name.clone().unwrap_or_default(),
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({"error": message}))).into_response()
}

/// The secrets of the GitSyncs that name their own (`spec.webhook.secretRef`); `None` when the
/// Secret or its key is missing (that GitSync then accepts nothing).
async fn own_secrets(state: &AppState, syncs: &[Arc<GitSync>]) -> Vec<(SyncKey, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for sync in syncs {
        let Some(secret_name) = sync
            .spec
            .webhook
            .as_ref()
            .and_then(|w| w.secret_ref.as_ref())
            .map(|r| r.name.clone())
        else {
            continue;
        };
        let key = key_of(sync);
        let cache_key = (key.namespace.clone(), secret_name.clone());
        let cached = {
            let secrets = state
                .inner
                .webhooks
                .secrets
                .lock()
                .expect("secret cache lock");
            secrets
                .get(&cache_key)
                .filter(|(at, _)| at.elapsed() < SECRET_TTL)
                .map(|(_, v)| v.clone())
        };
        let value = match cached {
            Some(v) => v,
            None => {
                let api: Api<Secret> = Api::namespaced(state.inner.client.clone(), &key.namespace);
                let value = match api.get_opt(&secret_name).await {
                    Ok(Some(secret)) => secret
                        .data
                        .and_then(|d| d.get(WEBHOOK_SECRET_KEY).map(|b| b.0.clone()))
                        .filter(|v| !v.is_empty()),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(gitsync = %key, secret = %secret_name, error = %e, "reading the webhook Secret");
                        None
                    }
                };
                if value.is_none() {
                    tracing::warn!(gitsync = %key, secret = %secret_name, "webhook Secret missing or without key `token`: this GitSync accepts no webhook");
                }
                let mut secrets = state
                    .inner
                    .webhooks
                    .secrets
                    .lock()
                    .expect("secret cache lock");
                secrets.insert(cache_key, (Instant::now(), value.clone()));
                value
            }
        };
        out.push((key, value));
    }
    out
}

/// Whether the controller has started on the request `value` (or a later one).
fn picked_up(state: &AppState, key: &SyncKey, value: &str) -> bool {
    state.inner.syncs.get(key).is_some_and(|s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_handled_sync_request.as_deref())
            .is_some_and(|handled| handled >= value)
    })
}

async fn request(state: &AppState, key: &SyncKey) -> Result<String, String> {
    let id = state
        .inner
        .handle
        .sync_now(&key.namespace, &key.name)
        .await
        .map_err(|e| e.to_string())?;
    coalescer(state).sent(key, id.clone());
    Ok(id)
}

fn schedule(state: &AppState, key: SyncKey, delay: Duration) {
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let go = {
            let s = &state;
            coalescer(s).fire(&key, Instant::now(), &|v| picked_up(s, &key, v))
        };
        if go {
            match request(&state, &key).await {
                Ok(id) => {
                    tracing::info!(gitsync = %key, request = %id, "deferred webhook sync requested")
                }
                Err(e) => {
                    tracing::warn!(gitsync = %key, error = %e, "deferred webhook sync request failed")
                }
            }
        }
    });
}

/// `POST /hooks/{provider}`.
pub async fn receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let metrics = &state.inner.metrics;
    let provider: Provider = match provider.parse() {
        Ok(p) => p,
        Err(e) => return refuse(StatusCode::NOT_FOUND, e.to_string()),
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            metrics.webhook(provider, "too_large");
            return refuse(
                rejection.status(),
                format!("webhook body refused: {}", rejection.body_text()),
            );
        }
    };
    let unauthorized = |e: SignatureError| {
        metrics.webhook(provider, "unauthorized");
        tracing::info!(provider = %provider, error = %e, "webhook refused");
        refuse(StatusCode::UNAUTHORIZED, e.to_string())
    };
    let proof = match signature::proof(provider, &headers) {
        Ok(p) => p,
        Err(e) => return unauthorized(e),
    };
    if !state.inner.syncs.is_ready() {
        metrics.webhook(provider, "unavailable");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the GitSync cache is not synced yet".into(),
        );
    }
    let syncs = state.inner.syncs.list();
    let own = own_secrets(&state, &syncs).await;
    let global = state.inner.config.webhook_secret.as_deref();
    if global.is_none() && own.iter().all(|(_, s)| s.is_none()) {
        return unauthorized(SignatureError::NoSecret);
    }
    let global_ok = global.is_some_and(|g| signature::verifies(&proof, g, &body));
    let own_ok: HashSet<&SyncKey> = own
        .iter()
        .filter(|(_, s)| {
            s.as_deref()
                .is_some_and(|s| signature::verifies(&proof, s, &body))
        })
        .map(|(k, _)| k)
        .collect();
    if !global_ok && own_ok.is_empty() {
        return unauthorized(SignatureError::Mismatch);
    }
    let has_own: HashSet<&SyncKey> = own.iter().map(|(k, _)| k).collect();

    let push = match parse(provider, &headers, &body) {
        Ok(Delivery::Push(p)) => p,
        Ok(Delivery::Ping) => {
            metrics.webhook(provider, "ping");
            return (
                StatusCode::OK,
                Json(HookAnswer {
                    result: "pong",
                    event: None,
                    syncs: vec![],
                }),
            )
                .into_response();
        }
        Ok(Delivery::Ignored(event)) => {
            metrics.webhook(provider, "ignored");
            return (
                StatusCode::OK,
                Json(HookAnswer {
                    result: "ignored",
                    event: Some(event),
                    syncs: vec![],
                }),
            )
                .into_response();
        }
        Err(e) => {
            metrics.webhook(provider, "bad_payload");
            return refuse(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let matched: Vec<SyncKey> = syncs
        .iter()
        .filter(|s| {
            let key = key_of(s);
            let signed_for_it = if has_own.contains(&key) {
                own_ok.contains(&key)
            } else {
                global_ok
            };
            signed_for_it && matches(s, &push)
        })
        .map(|s| key_of(s))
        .collect();
    if matched.is_empty() {
        metrics.webhook(provider, "no_match");
        tracing::info!(provider = %provider, urls = ?push.urls, refs = ?push.refs, "webhook: no matching GitSync");
        // 2xx: GitLab disables hooks that keep getting 4xx answers.
        return (
            StatusCode::ACCEPTED,
            Json(HookAnswer {
                result: "no match",
                event: None,
                syncs: vec![],
            }),
        )
            .into_response();
    }
    let mut triggered = Vec::new();
    for key in matched {
        let decision = {
            let mut c = coalescer(&state);
            c.sweep(Instant::now());
            c.decide(&key, Instant::now(), &|v| picked_up(&state, &key, v))
        };
        let (outcome, id, message) = match decision {
            Decision::Now => match request(&state, &key).await {
                Ok(id) => ("requested", Some(id), None),
                Err(e) => ("failed", None, Some(e)),
            },
            Decision::Later(delay) => {
                schedule(&state, key.clone(), delay);
                ("deferred", None, None)
            }
            Decision::Coalesced => ("coalesced", None, None),
        };
        tracing::info!(provider = %provider, gitsync = %key, outcome, after = push.after.as_deref().unwrap_or(""), "webhook push");
        triggered.push(Triggered {
            namespace: key.namespace,
            name: key.name,
            outcome,
            id,
            message,
        });
    }
    let failed = triggered.iter().all(|t| t.outcome == "failed");
    metrics.webhook(provider, if failed { "failed" } else { "accepted" });
    let status = if failed {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::ACCEPTED
    };
    (
        status,
        Json(HookAnswer {
            result: "sync requested",
            event: None,
            syncs: triggered,
        }),
    )
        .into_response()
}
