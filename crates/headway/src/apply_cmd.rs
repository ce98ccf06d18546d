//! `headway apply PATH|--repo URL [--prune] [--wait]`: one sync without a controller: renders the
//! source, applies it with the apply engine (server-side apply, field manager `headway`), records
//! the inventory in the cluster, optionally prunes and waits. Exit code 0 when everything
//! succeeded, 1 otherwise (render errors, failed objects, refused prune, objects not Current).
//!
//! Also holds what `diff` shares with it: the sync's identity and the rendered set.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use headway_apply::{Engine, EngineOptions, SyncRequest};
use headway_model::health::format_not_current;
use headway_model::{RenderedSet, SyncOwner};

use crate::render_cmd::RenderArgs;

/// Who the applied objects belong to.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Sync name written in the ownership labels and naming the inventory
    /// (`headway-inventory-<name>`). Default: the directory's (or repository's) name.
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace holding the inventory ConfigMaps (it must exist).
    #[arg(long, default_value = "default")]
    pub sync_namespace: String,
    /// Namespace of namespaced objects that name none.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
}

/// Arguments of `headway apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub source: RenderArgs,
    #[command(flatten)]
    pub sync: SyncArgs,
    /// Delete objects applied by earlier runs of this sync that the source no longer has.
    #[arg(long)]
    pub prune: bool,
    /// Wait until every object is Current (kstatus rules).
    #[arg(long)]
    pub wait: bool,
    /// Longest wait, in seconds.
    #[arg(long = "wait-timeout", default_value_t = 300)]
    pub wait_timeout: u64,
    /// Delete and recreate objects whose change touches an immutable field.
    #[arg(long)]
    pub force: bool,
    /// Allow an empty source to prune everything previously applied.
    #[arg(long)]
    pub allow_empty: bool,
    /// Largest share of the inventory one prune may delete (0.0 to 1.0; default 0.5).
    #[arg(long)]
    pub max_prune_fraction: Option<f64>,
}

/// A rendered source and the sync name derived from it.
pub struct Rendered {
    pub set: RenderedSet,
    pub default_name: String,
}

/// Renders the source; render errors are printed (all of them) and exit with code 1, so nothing
/// is applied or pruned after a failed render.
pub fn render_source(args: &RenderArgs) -> anyhow::Result<Rendered> {
    let input = args.input.resolve()?;
    let options = args.options(&input.dir)?;
    let manifests = match headway_render::render(&input.dir, &options) {
        Ok(m) => m,
        Err(errors) => {
            eprintln!("error: {errors}");
            std::process::exit(1);
        }
    };
    let (revision, name_from) = match (&input.revision, &args.input.repo) {
        (Some(rev), Some(url)) => (
            rev.sha.clone(),
            url.trim_end_matches('/')
                .trim_end_matches(".git")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        _ => ("local".to_string(), dir_name(&input.dir)),
    };
    let set = RenderedSet::from_complete_render(revision, manifests)?;
    Ok(Rendered {
        set,
        default_name: label_value(&name_from),
    })
}

fn dir_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// `name` as a label value: lowercase alphanumerics and `-`, at most 63, `headway` when empty.
fn label_value(name: &str) -> String {
    let mut v: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    v.truncate(63);
    let v = v.trim_matches('-').to_string();
    if v.is_empty() { "headway".into() } else { v }
}

impl SyncArgs {
    /// The owner: `--sync-namespace` / (`--name` or the default name).
    pub fn owner(&self, default_name: &str) -> anyhow::Result<SyncOwner> {
        let name = self.name.as_deref().unwrap_or(default_name);
        Ok(SyncOwner::new(&self.sync_namespace, name)?)
    }
}

/// A tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// An engine for the cluster of the current kubeconfig (`KUBECONFIG`, `~/.kube/config`, or
/// in-cluster).
pub async fn engine() -> anyhow::Result<Engine> {
    let config = config().await?;
    let url = config.cluster_url.clone();
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    Engine::new(client, EngineOptions::default())
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// A client for the cluster of the current kubeconfig (`KUBECONFIG`, `~/.kube/config`, or
/// in-cluster).
pub async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_from(config().await?).context("building the Kubernetes client")
}

async fn config() -> anyhow::Result<kube::Config> {
    kube::Config::infer()
        .await
        .context("loading the kubeconfig")
}

/// Runs `headway apply`; returns the exit code.
pub fn run(args: ApplyArgs) -> anyhow::Result<i32> {
    let rendered = render_source(&args.source)?;
    let owner = args.sync.owner(&rendered.default_name)?;
    let mut req = SyncRequest::new(owner.clone(), args.sync.namespace.clone(), rendered.set);
    req.prune = args.prune;
    req.wait = args.wait;
    req.timeout = Duration::from_secs(args.wait_timeout);
    req.force = args.force;
    req.allow_empty = args.allow_empty;
    req.max_prune_fraction = args.max_prune_fraction;
    let report = runtime()?.block_on(async {
        let engine = engine().await?;
        anyhow::Ok(engine.sync(&req).await?)
    })?;
    let described = report.changes.describe_changes();
    if !described.is_empty() {
        println!("{described}");
    }
    let timings: Vec<String> = report
        .timings
        .iter()
        .map(|(step, d)| format!("{step} {:.1}s", d.as_secs_f64()))
        .collect();
    println!(
        "sync {owner}: {} ({} objects in the inventory, {} API requests; {})",
        report.changes,
        report.inventory_len,
        report.requests,
        timings.join(", ")
    );
    if args.wait && report.failure.is_none() {
        println!("all {} objects are Current", report.health.len());
    }
    match &report.failure {
        Some(failure) => {
            eprintln!("error: {failure}");
            if failure.step != headway_apply::SyncStep::Health && !report.health.is_empty() {
                eprintln!(
                    "{}",
                    format_not_current(report.health.iter().map(|(id, h)| (id, h)))
                );
            }
            Ok(1)
        }
        None if !report.changes.is_ok() => Ok(1),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_names_are_label_values() {
        for (input, expected) in [
            ("site", "site"),
            ("My_Apps.prod", "my-apps-prod"),
            ("--x--", "x"),
            ("", "headway"),
            (&"a".repeat(80), &"a".repeat(63)),
        ] {
            assert_eq!(label_value(input), expected, "{input}");
            assert!(SyncOwner::new("default", &label_value(input)).is_ok());
        }
    }
}
