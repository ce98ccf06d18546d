//! `headway apply PATH|--repo URL [--prune] [--wait]`: one sync without a controller: renders the
//! source, applies it with the apply engine (server-side apply, field manager `headway`), records
//! the inventory in the cluster, optionally prunes and waits. Exit code 0 when everything
//! succeeded, 1 otherwise (render errors, failed objects, refused prune, objects not Current).

use std::time::Duration;

use clap::Args;
use headway_apply::SyncRequest;
use headway_model::health::format_not_current;

use crate::Outcome;
use crate::cluster::{ClusterArgs, runtime};
use crate::input::{RenderArgs, render_source};
use crate::owner::SyncArgs;

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

/// Runs `headway apply`.
pub fn run(cluster: &ClusterArgs, args: ApplyArgs) -> anyhow::Result<Outcome> {
    let rendered = render_source(&args.source)?;
    let owner = args.sync.owner(&rendered.default_name)?;
    let report = runtime()?.block_on(async {
        let cluster = cluster.connect().await?;
        let mut req = SyncRequest::new(
            owner.clone(),
            args.sync.target_namespace(&cluster),
            rendered.set,
        );
        req.prune = args.prune;
        req.wait = args.wait;
        req.timeout = Duration::from_secs(args.wait_timeout);
        req.force = args.force;
        req.allow_empty = args.allow_empty;
        req.max_prune_fraction = args.max_prune_fraction;
        let engine = cluster.engine().await?;
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
            Ok(Outcome::Failure)
        }
        None if !report.changes.is_ok() => Ok(Outcome::Failure),
        None => Ok(Outcome::Success),
    }
}
