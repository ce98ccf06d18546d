//! Running the controller: leader election on a Lease, the kube `Controller` (watch, work queue,
//! one reconcile per GitSync at a time, bounded concurrency), and shutdown.
//!
//! A replica that does not hold the Lease watches nothing and writes nothing. When it becomes
//! leader it starts a fresh controller (fresh discovery, empty apply memory); when it loses the
//! Lease it drops the controller at once, which cancels every reconcile in flight. On shutdown
//! (SIGTERM) it stops taking new work, lets running syncs finish for at most
//! [`Options::shutdown_timeout`], then releases the Lease so that another replica takes over
//! immediately instead of after the lease duration.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use headway_apply::{Engine, EngineOptions};
use headway_render::ToolOptions;
use headway_source::{Cache, SharedCache};
use kube::api::Api;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::watcher;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::context::Ctx;
use crate::crd::GitSync;
pub use crate::events::REPORTER;
use crate::progress::Bus;
use crate::reconcile::{error_policy, reconcile};
use crate::shard::Shard;
use crate::tenancy::{Identities, Lockdown};

/// How to run the controller.
#[derive(Debug, Clone)]
pub struct Options {
    /// Syncs running at once.
    pub concurrency: u16,
    /// The Lease used for leader election.
    pub lease_name: String,
    /// Its namespace.
    pub lease_namespace: String,
    /// Seconds a leader may go without renewing before another replica takes over.
    pub lease_duration: Duration,
    /// This replica's identity in the Lease (the pod name in a cluster); must be unique among
    /// replicas. A restarted replica with the same identity takes its Lease back at once.
    pub identity: String,
    /// Where git repositories are cached.
    pub cache_dir: PathBuf,
    /// How long a fetched revision is reused by other syncs of the same repository and ref
    /// (sync requests and webhooks always fetch afresh); see `headway_source::SharedCache`.
    pub fetch_reuse: Duration,
    /// Watch GitSyncs of this namespace only; `None`: every namespace.
    pub namespace: Option<String>,
    /// Take only the GitSyncs of this shard, electing a leader on the shard's own Lease
    /// (`<lease_name>-<shard>`); `None`: every GitSync, on `lease_name`.
    pub shard: Option<Shard>,
    /// Longest wait for running syncs at shutdown.
    pub shutdown_timeout: Duration,
    /// Apply engine tuning.
    pub engine: EngineOptions,
    /// kustomize/helm location and timeout.
    pub tools: ToolOptions,
    /// Where the pipeline publishes its progress ([`crate::progress`]); `None`: nowhere.
    pub progress: Option<Bus>,
    /// The configuration the controller's client was built from, to build clients that
    /// impersonate service accounts (`spec.serviceAccountName`, the default service account);
    /// `None`: a GitSync needing impersonation fails.
    pub config: Option<kube::Config>,
    /// Default service account and cross-namespace references ([`crate::tenancy`]).
    pub lockdown: Lockdown,
}

impl Options {
    /// Options with the defaults of `headway controller`.
    pub fn new(identity: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        Options {
            concurrency: 4,
            lease_name: "headway-controller".into(),
            lease_namespace: "headway-system".into(),
            lease_duration: Duration::from_secs(15),
            identity: identity.into(),
            cache_dir: cache_dir.into(),
            fetch_reuse: DEFAULT_FETCH_REUSE,
            namespace: None,
            shard: None,
            shutdown_timeout: Duration::from_secs(30),
            engine: EngineOptions::default(),
            tools: ToolOptions::default(),
            progress: None,
            config: None,
            lockdown: Lockdown::default(),
        }
    }
}

/// Default of [`Options::fetch_reuse`].
pub const DEFAULT_FETCH_REUSE: Duration = Duration::from_secs(10);

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The Lease could not be created or read.
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    /// The git cache directory is unusable.
    #[error("git cache {}: {source}", dir.display())]
    Cache {
        dir: PathBuf,
        #[source]
        source: headway_source::SourceError,
    },
    /// The leader-election task ended unexpectedly.
    #[error("leader election on Lease {0} stopped: {1}")]
    LeaseLost(String, String),
}

/// Leadership as seen by observers (tests, the HTTP API's probes).
#[derive(Debug, Clone)]
pub struct Leadership(watch::Receiver<bool>);

impl From<watch::Receiver<bool>> for Leadership {
    fn from(rx: watch::Receiver<bool>) -> Self {
        Leadership(rx)
    }
}

impl Leadership {
    /// Whether this replica currently leads.
    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until leadership equals `leader`.
    pub async fn wait_for(&mut self, leader: bool) {
        let _ = self.0.wait_for(|l| *l == leader).await;
    }
}

/// Runs until `shutdown` completes: elects a leader among replicas and, while leading,
/// reconciles GitSyncs. `leadership` (if given) is kept up to date for observers.
pub async fn run(
    client: kube::Client,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
    leadership: Option<watch::Sender<bool>>,
) -> Result<(), RunError> {
    let cache = Arc::new(SharedCache::new(
        Cache::new(&options.cache_dir).map_err(|source| RunError::Cache {
            dir: options.cache_dir.clone(),
            source,
        })?,
        options.fetch_reuse,
    ));
    let lease_name = match &options.shard {
        Some(shard) => shard.lease_name(&options.lease_name),
        None => options.lease_name.clone(),
    };
    let lease_id = format!("{}/{}", options.lease_namespace, lease_name);
    let duration = options.lease_duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client.clone(), &lease_name)
        .with_namespace(&options.lease_namespace)
        .with_identity(&options.identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .with_field_manager(format!("headway-controller-{}", options.identity))
        .build()
        .await
        .map_err(|source| RunError::Lease {
            namespace: options.lease_namespace.clone(),
            name: lease_name.clone(),
            source,
        })?;
    let (mut leader, lease_task) = manager.watch().await;
    let publish = |value: bool| {
        if let Some(tx) = &leadership {
            let _ = tx.send(value);
        }
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let shard = options
        .shard
        .as_ref()
        .map(|s| s.name.as_str())
        .unwrap_or("(all)");
    info!(identity = %options.identity, lease = %lease_id, shard, "waiting for leadership");
    'outer: loop {
        // Follower: wait for the Lease or for shutdown.
        loop {
            if *leader.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leader.changed() => {
                    if changed.is_err() {
                        let why = match lease_task.await {
                            Ok(Ok(_)) => "ended".to_string(),
                            Ok(Err(e)) => e.to_string(),
                            Err(e) => e.to_string(),
                        };
                        return Err(RunError::LeaseLost(lease_id, why));
                    }
                }
                () = &mut shutdown => break 'outer,
            }
        }
        info!(identity = %options.identity, lease = %lease_id, "became leader");
        publish(true);

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let controller = lead(client.clone(), &options, cache.clone(), async move {
            let _ = stop_rx.await;
        });
        let mut controller = std::pin::pin!(controller);
        let lost = async {
            let _ = leader.wait_for(|l| !*l).await;
        };
        tokio::select! {
            () = lost => {
                // Another replica may already be applying: stop at once, cancelling every
                // reconcile in flight.
                warn!(identity = %options.identity, lease = %lease_id, "lost leadership; stopping");
                publish(false);
                continue 'outer;
            }
            () = &mut controller => {
                warn!("the controller stopped by itself; restarting it");
                publish(false);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue 'outer;
            }
            () = &mut shutdown => {
                info!(timeout = ?options.shutdown_timeout, "shutting down: waiting for running syncs");
                let _ = stop_tx.send(());
                if tokio::time::timeout(options.shutdown_timeout, &mut controller).await.is_err() {
                    warn!("running syncs did not finish in time; cancelling them");
                }
                break 'outer;
            }
        }
    }
    publish(false);
    // Closing the channel makes the lease task release the Lease.
    drop(leader);
    match lease_task.await {
        Ok(Ok(_)) => info!(lease = %lease_id, "released the Lease"),
        Ok(Err(e)) => warn!(lease = %lease_id, error = %e, "releasing the Lease"),
        Err(e) => warn!(lease = %lease_id, error = %e, "the lease task failed"),
    }
    Ok(())
}

/// Runs the controller as leader until it ends or `stop` completes (graceful).
async fn lead(
    client: kube::Client,
    options: &Options,
    cache: Arc<SharedCache>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let engine = loop {
        match Engine::new(client.clone(), options.engine.clone()).await {
            Ok(e) => break Arc::new(e),
            Err(e) => {
                warn!(error = %e, "starting the apply engine; retrying in 5s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let api: Api<GitSync> = match &options.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut watch = watcher::Config::default().any_semantic();
    if let Some(shard) = &options.shard {
        // A GitSync whose label moves it to another shard leaves this watch (the new shard's
        // watch sees it arrive).
        watch = watch.labels(&shard.selector);
    }
    let controller = Controller::new(api, watch)
        .with_config(Config::default().concurrency(options.concurrency.max(1)));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        engine,
        cache,
        cache_dir: options.cache_dir.clone(),
        chart_cache: options.cache_dir.join("charts"),
        identity: options.identity.clone(),
        store: controller.store(),
        tools: options.tools.clone(),
        progress: options.progress.clone(),
        memory: Mutex::new(HashMap::new()),
        lockdown: options.lockdown.clone(),
        identities: Identities::new(options.config.clone()),
        no_change_events: Mutex::new(HashMap::new()),
    });
    controller
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                match e {
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                    other => warn!(error = %other, "controller"),
                }
            }
        })
        .await;
}
