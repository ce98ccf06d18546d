//! API: Headway's HTTP surface, served by `headway controller` on every replica: sync status
//! from a reflector cache, live progress as Server-Sent Events, authenticated sync and rebuild
//! requests, signed git webhooks, Prometheus metrics, probes, a web page and its OpenAPI
//! document.
//!
//! - [`repo_url`], [`provider`], [`signature`], [`push`], [`matching`], [`coalesce`]: the pure
//!   parts of webhooks (URL normalisation, signature schemes, payload reading, GitSync matching,
//!   burst control), table-tested with the providers' documented payloads.
//! - [`webhook`]: `POST /hooks/{provider}`.
//! - [`auth`]: Kubernetes TokenReview and SubjectAccessReview for the POST endpoints.
//! - [`syncs`]: `GET /api/v1/syncs[/{ns}/{name}]`, `POST .../sync`, `POST /api/v1/rebuild`.
//! - [`events`]: `GET /api/v1/events`.
//! - [`metrics`]: `/metrics`, fed by the progress bus and the cache.
//! - [`page`]: `/`, plain HTML, CSS and JavaScript compiled into the binary.
//! - [`openapi`] serves `/api/v1/openapi.json`.
//!
//! Architecture invariant: this crate sees the controller only through its read model
//! (`view`), its progress bus and `Handle`; it never depends on apply, source, render or git2.
#![forbid(unsafe_code)]

pub mod auth;
pub mod coalesce;
pub mod error;
pub mod events;
pub mod matching;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod probes;
pub mod provider;
pub mod push;
pub mod repo_url;
pub mod signature;
pub mod syncs;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use headway_controller::Handle;
use headway_controller::progress::Bus;
use headway_controller::view::Syncs;

/// Default limit of a webhook body.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// How the API is configured.
#[derive(Clone)]
pub struct Config {
    /// The global webhook secret (`--webhook-secret-file`); `None`: only GitSyncs with their own
    /// `spec.webhook.secretRef` accept webhooks.
    pub webhook_secret: Option<Vec<u8>>,
    /// Largest webhook body accepted (default 1 MiB).
    pub body_limit: usize,
    /// Smallest gap between two webhook sync requests of one GitSync.
    pub coalesce_gap: Duration,
    /// Whether this replica holds the leader Lease (`headway_leader` in `/metrics`); `None`:
    /// the gauge is not served.
    pub leadership: Option<headway_controller::Leadership>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            webhook_secret: None,
            body_limit: DEFAULT_BODY_LIMIT,
            coalesce_gap: Duration::from_secs(1),
            leadership: None,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "(set)"),
            )
            .field("body_limit", &self.body_limit)
            .field("coalesce_gap", &self.coalesce_gap)
            .field(
                "leadership",
                &self.leadership.as_ref().map(|l| l.is_leader()),
            )
            .finish()
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub client: kube::Client,
    pub syncs: Syncs,
    pub handle: Handle,
    pub bus: Bus,
    pub config: Config,
    pub metrics: metrics::Metrics,
    pub webhooks: webhook::WebhookState,
}

impl AppState {
    /// The state of one API server. Spawns the metrics feeder (a task reading the progress bus).
    pub fn new(client: kube::Client, syncs: Syncs, bus: Bus, config: Config) -> AppState {
        let metrics = metrics::Metrics::new();
        metrics.feed_from(bus.subscribe());
        let webhooks = webhook::WebhookState::new(config.coalesce_gap);
        AppState {
            inner: Arc::new(Inner {
                handle: Handle::new(client.clone()),
                client,
                syncs,
                bus,
                config,
                metrics,
                webhooks,
            }),
        }
    }
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let limit = state.inner.config.body_limit;
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(metrics::handler))
        .route("/api/v1/openapi.json", get(openapi::handler))
        .route("/api/v1/syncs", get(syncs::list))
        .route("/api/v1/syncs/{namespace}/{name}", get(syncs::get_one))
        .route(
            "/api/v1/syncs/{namespace}/{name}/sync",
            post(syncs::sync_now),
        )
        .route("/api/v1/rebuild", post(syncs::rebuild))
        .route("/api/v1/events", get(events::stream))
        .route(
            "/hooks/{provider}",
            post(webhook::receive).layer(DefaultBodyLimit::max(limit)),
        )
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

/// Parses `--http-address`: `:8080` means every interface.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    full.parse().map_err(|_| {
        format!("{text:?} is not an address such as :8080, 127.0.0.1:8080 or [::]:8080")
    })
}

/// Binds `address`; returns the bound address (port 0 picks one) and the listener.
pub async fn bind(
    address: SocketAddr,
) -> Result<(SocketAddr, tokio::net::TcpListener), ServeError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind {
            address: address.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    Ok((local, listener))
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Serve)
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses() {
        assert_eq!(
            super::parse_address(":8080").unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(super::parse_address("127.0.0.1:0").unwrap().port(), 0);
        assert!(super::parse_address("[::]:80").is_ok());
        assert!(
            super::parse_address("localhost")
                .unwrap_err()
                .contains("localhost")
        );
    }
}
