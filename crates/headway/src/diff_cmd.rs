//! `headway diff PATH|--repo URL`: what `headway apply` would change in the current cluster,
//! field by field (Secret values masked), objects missing from the cluster, and objects the
//! inventory has that the source no longer has. Exit code 0: no difference; 2: differences;
//! 1: error (render errors, unreachable cluster, unreadable objects), as kubediff did.

use clap::Args;

use crate::apply_cmd::{SyncArgs, engine, render_source, runtime};
use crate::render_cmd::RenderArgs;

/// Arguments of `headway diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub source: RenderArgs,
    #[command(flatten)]
    pub sync: SyncArgs,
}

/// Runs `headway diff`; returns the exit code.
pub fn run(args: DiffArgs) -> anyhow::Result<i32> {
    let rendered = render_source(&args.source)?;
    let owner = args.sync.owner(&rendered.default_name)?;
    let report = runtime()?.block_on(async {
        let engine = engine().await?;
        anyhow::Ok(
            engine
                .drift(&owner, &rendered.set, &args.sync.namespace)
                .await?,
        )
    })?;
    print!("{}", report.render_text());
    Ok(if report.has_errors() {
        1
    } else if report.has_drift() {
        2
    } else {
        println!("no differences ({} objects)", report.objects.len());
        0
    })
}
