//! `headway diff PATH|--repo URL`: what `headway apply` would change in the current cluster,
//! field by field (Secret values masked), objects missing from the cluster, and objects the
//! inventory has that the source no longer has. Exit code 0: no difference; 2: differences;
//! 1: error (render errors, unreachable cluster, unreadable objects), as kubediff did.

use clap::Args;

use crate::Outcome;
use crate::cluster::{ClusterArgs, runtime};
use crate::input::{RenderArgs, render_source};
use crate::owner::SyncArgs;

/// Arguments of `headway diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub source: RenderArgs,
    #[command(flatten)]
    pub sync: SyncArgs,
}

/// Runs `headway diff`.
pub fn run(cluster: &ClusterArgs, args: DiffArgs) -> anyhow::Result<Outcome> {
    let rendered = render_source(&args.source)?;
    let owner = args.sync.owner(&rendered.default_name)?;
    let report = runtime()?.block_on(async {
        let cluster = cluster.connect().await?;
        let engine = cluster.engine().await?;
        let namespace = args.sync.target_namespace(&cluster);
        anyhow::Ok(engine.drift(&owner, &rendered.set, &namespace).await?)
    })?;
    print!("{}", report.render_text());
    Ok(if report.has_errors() {
        Outcome::Failure
    } else if report.has_drift() {
        Outcome::Differs
    } else {
        println!("no differences ({} objects)", report.objects.len());
        Outcome::Success
    })
}
