//! `headway controller`: runs the GitSync controller (leader election, watch, reconcile) until
//! SIGTERM or SIGINT, with JSON logs on standard error. Uses the global `--kubeconfig` and
//! `--context` (default: `KUBECONFIG`, `~/.kube/config`) or, inside a pod, the service account.

use crate::cluster::duration_secs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

use crate::cluster::{ClusterArgs, runtime};

/// Arguments of `headway controller`.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Syncs running at the same time (one GitSync never runs twice at once).
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
    /// Requests in flight at once within one sync.
    #[arg(long, default_value_t = 32)]
    pub apply_concurrency: usize,
    /// Largest inventory ConfigMap shard, in bytes (hidden: for tests that need an inventory
    /// of many shards without thousands of objects).
    #[arg(long, hide = true)]
    pub inventory_shard_bytes: Option<usize>,
    /// Watch GitSyncs of this namespace only; default: all namespaces.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Name of the leader-election Lease (with `--shard`, the shard's Lease is `<NAME>-<SHARD>`).
    #[arg(long, default_value = "headway-controller")]
    pub lease_name: String,
    /// Reconcile only the GitSyncs of this shard: those labelled `headway.dev/shard=<SHARD>`, or
    /// for `default` those without the label; one leader per shard. Default: every GitSync.
    #[arg(long, env = "HEADWAY_SHARD")]
    pub shard: Option<String>,
    /// With `--shard`: the label selector of the shard's GitSyncs instead of the shard label.
    #[arg(long, requires = "shard")]
    pub shard_selector: Option<String>,
    /// Namespace of the Lease; default: `POD_NAMESPACE`, else `headway-system`.
    #[arg(long, env = "POD_NAMESPACE", default_value = "headway-system")]
    pub lease_namespace: String,
    /// Seconds the leader may go without renewing the Lease before another replica takes over.
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
    /// This replica's identity in the Lease (unique per replica); default: `POD_NAME`, else
    /// `<hostname>-<pid>`.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Directory of the git cache.
    #[arg(long, default_value = "/var/cache/headway")]
    pub cache_dir: PathBuf,
    /// Seconds a fetched revision is reused by other GitSyncs of the same repository and ref
    /// (one fetch serves them all); sync requests and webhooks always fetch afresh. 0: every
    /// sync fetches (concurrent ones still share one fetch).
    #[arg(long, default_value_t = 10)]
    pub fetch_reuse: u64,
    /// How long running syncs may take to finish at shutdown: seconds, or a duration such as
    /// `30s`, `2m`.
    #[arg(long, default_value_t = 30, value_parser = duration_secs)]
    pub shutdown_timeout: u64,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Address of the HTTP API (status, events, webhooks, metrics, probes, web page), served on
    /// every replica; `:8080` means every interface.
    #[arg(long, default_value = ":8080", value_parser = headway_api::parse_address)]
    pub http_address: std::net::SocketAddr,
    /// File holding the global webhook secret (HMAC key; GitLab's token). Without it (and
    /// without `spec.webhook.secretRef` on a GitSync) every webhook is refused.
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
    /// Impersonate this ServiceAccount (in the GitSync's namespace) for every GitSync without
    /// `spec.serviceAccountName`; default: such GitSyncs use the controller's own identity.
    #[arg(long, value_name = "NAME")]
    pub default_service_account: Option<String>,
    /// Refuse GitSyncs whose `dependsOn` or `targetNamespace` leave their own namespace
    /// (InvalidSpec).
    #[arg(long)]
    pub no_cross_namespace_refs: bool,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "headway".into());
    format!("{host}-{}", std::process::id())
}

/// Completes on SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Starts the GitSync cache and serves the HTTP API in the background.
async fn start_api(
    args: &ControllerArgs,
    client: kube::Client,
    bus: headway_controller::progress::Bus,
    leadership: headway_controller::Leadership,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let webhook_secret = match &args.webhook_secret_file {
        Some(path) => {
            let text = std::fs::read(path)
                .with_context(|| format!("reading --webhook-secret-file {}", path.display()))?;
            let secret = text.trim_ascii().to_vec();
            anyhow::ensure!(
                !secret.is_empty(),
                "--webhook-secret-file {} is empty",
                path.display()
            );
            Some(secret)
        }
        None => None,
    };
    // Bound first: an address in use stops the controller before it starts anything.
    let (address, listener) = headway_api::bind(args.http_address)
        .await
        .map_err(|e| http_address_error(args.http_address, e))?;
    let (syncs, reflector) =
        headway_controller::view::Syncs::start(client.clone(), args.namespace.clone());
    tokio::spawn(reflector);
    let config = headway_api::Config {
        webhook_secret,
        leadership: Some(leadership),
        ..Default::default()
    };
    let state = headway_api::AppState::new(client, syncs, bus, config);
    tracing::info!(%address, "HTTP API listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = headway_api::serve(listener, state, std::future::pending()).await {
            tracing::error!(error = %e, "HTTP API stopped");
        }
    }))
}

/// The error of an `--http-address` that cannot be listened on, naming the flag and the address.
fn http_address_error(address: std::net::SocketAddr, e: headway_api::ServeError) -> anyhow::Error {
    match e {
        headway_api::ServeError::Bind { source, .. }
            if source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            anyhow::anyhow!(
                "--http-address {address}: the address is already in use (another process listens on it); stop that process or pass another --http-address (127.0.0.1:0 picks a free port)"
            )
        }
        headway_api::ServeError::Bind { source, .. } => {
            anyhow::anyhow!("--http-address {address}: cannot listen there: {source}")
        }
        other => anyhow::Error::from(other)
            .context(format!("serving the HTTP API on --http-address {address}")),
    }
}

/// Whether `error` says that the Lease's namespace does not exist: the API server answers a
/// Lease write in a missing namespace with 404 `namespaces "NAME" not found` (the lease task
/// may hand it over as text, so the text is what is matched).
fn lease_namespace_missing(error: &anyhow::Error, namespace: &str) -> bool {
    let expected = format!("namespaces \"{namespace}\" not found");
    error
        .chain()
        .any(|cause| cause.to_string().contains(&expected))
}

/// Runs `headway controller` until a termination signal.
pub fn run(cluster: &ClusterArgs, args: ControllerArgs) -> anyhow::Result<()> {
    let limiter = crate::logs::init(args.log_format);
    runtime()?.block_on(async {
        tokio::spawn(limiter.report());
        let config = cluster.config().await?;
        let client =
            kube::Client::try_from(config.clone()).context("building the Kubernetes client")?;
        let identity = args.identity.clone().unwrap_or_else(default_identity);
        let mut options = headway_controller::Options::new(identity, &args.cache_dir);
        options.concurrency = args.concurrency;
        options.fetch_reuse = Duration::from_secs(args.fetch_reuse);
        options.lease_name = args.lease_name.clone();
        options.lease_namespace = args.lease_namespace.clone();
        options.lease_duration = Duration::from_secs(args.lease_duration);
        options.namespace = args.namespace.clone();
        if let Some(name) = &args.shard {
            options.shard = Some(
                headway_controller::Shard::new(name, args.shard_selector.as_deref())
                    .map_err(anyhow::Error::msg)?,
            );
        }
        options.shutdown_timeout = Duration::from_secs(args.shutdown_timeout);
        options.engine.concurrency = args.apply_concurrency.max(1);
        if let Some(bytes) = args.inventory_shard_bytes {
            options.engine.inventory_shard_bytes = bytes.max(1024);
        }
        options.config = Some(config);
        options.lockdown = headway_controller::tenancy::Lockdown {
            default_service_account: args.default_service_account.clone(),
            no_cross_namespace_refs: args.no_cross_namespace_refs,
        };
        let bus = headway_controller::progress::Bus::new(4096);
        options.progress = Some(bus.clone());
        let (leader_tx, leader_rx) = tokio::sync::watch::channel(false);
        let api = start_api(&args, client.clone(), bus, leader_rx.into()).await?;
        tracing::info!(
            identity = %options.identity,
            lease = %format!("{}/{}", options.lease_namespace, options.lease_name),
            namespace = options.namespace.as_deref().unwrap_or("(all)"),
            shard = options.shard.as_ref().map(|s| s.selector.as_str()).unwrap_or("(all)"),
            concurrency = options.concurrency,
            default_service_account = options.lockdown.default_service_account.as_deref().unwrap_or("(none)"),
            no_cross_namespace_refs = options.lockdown.no_cross_namespace_refs,
            version = env!("CARGO_PKG_VERSION"),
            "headway controller starting"
        );
        let lease_namespace = options.lease_namespace.clone();
        let result = headway_controller::run(client, options, termination(), Some(leader_tx)).await;
        api.abort();
        if let Err(e) = result {
            let e = anyhow::Error::from(e);
            if lease_namespace_missing(&e, &lease_namespace) {
                bail!(
                    "the Lease's namespace {lease_namespace} does not exist; create it or pass --lease-namespace"
                );
            }
            return Err(e);
        }
        tracing::info!("headway controller stopped");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    #[test]
    fn flags_parse_with_defaults() {
        let a = Cli::try_parse_from(["controller", "--identity", "a", "--lease-namespace", "x"])
            .unwrap()
            .args;
        assert_eq!(a.concurrency, 4);
        assert_eq!(a.lease_name, "headway-controller");
        assert_eq!(a.lease_namespace, "x");
        assert_eq!(a.lease_duration, 15);
        assert_eq!(a.identity.as_deref(), Some("a"));
        assert_eq!(a.log_format, LogFormat::Json);
        assert_eq!(a.http_address.to_string(), "0.0.0.0:8080");
        assert!(a.webhook_secret_file.is_none());
        assert_eq!(a.default_service_account, None);
        assert!(!a.no_cross_namespace_refs);
        let a = Cli::try_parse_from([
            "controller",
            "--concurrency",
            "8",
            "--namespace",
            "apps",
            "--cache-dir",
            "/tmp/c",
            "--log-format",
            "text",
            "--default-service-account",
            "headway-tenant",
            "--no-cross-namespace-refs",
        ])
        .unwrap()
        .args;
        assert_eq!(a.concurrency, 8);
        assert_eq!(a.namespace.as_deref(), Some("apps"));
        assert_eq!(a.cache_dir, PathBuf::from("/tmp/c"));
        assert_eq!(a.log_format, LogFormat::Text);
        assert_eq!(a.default_service_account.as_deref(), Some("headway-tenant"));
        assert!(a.no_cross_namespace_refs);
        assert!(Cli::try_parse_from(["controller", "--concurrency", "x"]).is_err());
        assert!(default_identity().contains('-'));
    }
}
