//! The cluster a command talks to, built once from the global flags: `--kubeconfig` and
//! `--context` (default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account), the
//! kube client, the context's namespace (the default of `-n`), the async runtime and the apply
//! engine; and `-n/-A/-l`, which GitSyncs `status` and `rebuild` look at.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use headway_apply::{Engine, EngineOptions};
use headway_controller::GitSync;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Global flags of every command that talks to a cluster.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file (commands that talk to a cluster); default: `KUBECONFIG`,
    /// `~/.kube/config`, or the in-cluster service account.
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; default: the current one. Its namespace is the default of `-n`.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

/// A connection to the cluster chosen by [`ClusterArgs`].
pub struct Cluster {
    pub client: kube::Client,
    /// The context's namespace (`default` when it names none); in a pod, the pod's namespace.
    pub namespace: String,
    /// The API server's URL, for messages.
    pub url: String,
}

impl ClusterArgs {
    /// The kube configuration these flags select.
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .with_context(|| format!("loading kubeconfig {}", path.display()))
            }
            (None, Some(context)) => kube::Config::from_kubeconfig(&options)
                .await
                .with_context(|| format!("loading context {context} of the kubeconfig")),
            (None, None) => kube::Config::infer()
                .await
                .context("loading the kubeconfig or the in-cluster configuration"),
        }
    }

    /// A client for the selected cluster (nothing is sent yet).
    pub async fn connect(&self) -> anyhow::Result<Cluster> {
        let config = self.config().await?;
        let namespace = config.default_namespace.clone();
        let url = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        Ok(Cluster {
            client,
            namespace,
            url,
        })
    }
}

impl Cluster {
    /// `explicit` (from `-n`), else the context's namespace.
    pub fn namespace_or(&self, explicit: Option<&str>) -> String {
        explicit.unwrap_or(&self.namespace).to_string()
    }

    /// The apply engine on this cluster (runs discovery).
    pub async fn engine(&self) -> anyhow::Result<Engine> {
        Engine::new(self.client.clone(), EngineOptions::default())
            .await
            .with_context(|| format!("connecting to {}", self.url))
    }
}

/// A tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Which GitSyncs a command looks at.
#[derive(Debug, Args)]
pub struct Selection {
    /// GitSync names (default: all in the namespace, or in every namespace with -A).
    pub names: Vec<String>,
    /// Namespace of the GitSyncs; default: the kubeconfig context's namespace, else `default`.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Every namespace (`-n` is then ignored).
    #[arg(long, short = 'A', conflicts_with = "names")]
    pub all_namespaces: bool,
    /// Only GitSyncs with these labels (`key=value,key2!=v,key3`, as kubectl's `-l`).
    #[arg(long, short = 'l', conflicts_with = "names", value_name = "SELECTOR")]
    pub selector: Option<String>,
}

impl Selection {
    /// The selected GitSyncs, sorted by namespace and name.
    pub async fn select(&self, cluster: &Cluster) -> anyhow::Result<Vec<GitSync>> {
        let mut params = ListParams::default();
        if let Some(selector) = &self.selector {
            params = params.labels(selector);
        }
        let namespace = cluster.namespace_or(self.namespace.as_deref());
        let mut syncs = if self.all_namespaces {
            Api::<GitSync>::all(cluster.client.clone())
                .list(&params)
                .await
                .context("listing GitSyncs")?
                .items
        } else {
            let api = Api::<GitSync>::namespaced(cluster.client.clone(), &namespace);
            if self.names.is_empty() {
                api.list(&params)
                    .await
                    .with_context(|| format!("listing GitSyncs in {namespace}"))?
                    .items
            } else {
                let mut found = Vec::new();
                for name in &self.names {
                    match api
                        .get_opt(name)
                        .await
                        .with_context(|| format!("reading GitSync {namespace}/{name}"))?
                    {
                        Some(sync) => found.push(sync),
                        None => bail!("GitSync {namespace}/{name} not found"),
                    }
                }
                found
            }
        };
        syncs.sort_by_key(key);
        Ok(syncs)
    }
}

/// `namespace/name` of a GitSync.
pub fn key(sync: &GitSync) -> String {
    format!(
        "{}/{}",
        sync.metadata.namespace.as_deref().unwrap_or_default(),
        sync.metadata.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        selection: Selection,
    }

    #[test]
    fn a_missing_kubeconfig_is_named() {
        let args = ClusterArgs {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            context: None,
        };
        let err = runtime().unwrap().block_on(args.connect()).err().unwrap();
        assert!(
            format!("{err}").starts_with("reading kubeconfig /nonexistent/kubeconfig"),
            "{err}"
        );
    }

    #[test]
    fn selection_flags() {
        let s = Cli::try_parse_from(["x", "-l", "team=a", "-n", "apps"])
            .unwrap()
            .selection;
        assert_eq!(s.selector.as_deref(), Some("team=a"));
        assert_eq!(s.namespace.as_deref(), Some("apps"));
        assert!(Cli::try_parse_from(["x", "-A", "shop"]).is_err());
        assert!(Cli::try_parse_from(["x", "shop", "-l", "a=b"]).is_err());
        assert!(Cli::try_parse_from(["x", "-A", "-l", "a=b"]).is_ok());
    }
}

/// A command-line duration in whole seconds: a number of seconds (`90`), or a Go duration as
/// GitSyncs, kubectl and flux take them (`90s`, `5m`, `1h30m`); a fraction of a second is
/// rounded up.
pub fn duration_secs(text: &str) -> Result<u64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|e| format!("{text:?}: {e}"));
    }
    let d = headway_controller::crd::parse_duration(text)?;
    Ok(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

#[cfg(test)]
mod seconds_tests {
    use super::duration_secs as seconds;

    #[test]
    fn seconds_or_go_durations() {
        assert_eq!(seconds("90"), Ok(90));
        assert_eq!(seconds("90s"), Ok(90));
        assert_eq!(seconds("5m"), Ok(300));
        assert_eq!(seconds("1h30m"), Ok(5400));
        assert_eq!(seconds("1500ms"), Ok(2));
        assert!(seconds("soon").unwrap_err().contains("30s, 5m"));
        assert!(seconds("").is_err());
    }
}
