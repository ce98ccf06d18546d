//! `headway rebuild [--wait]`: the disaster-recovery operation: ask the controller to re-fetch
//! and re-apply every selected GitSync and, with `--wait`, follow each one stage by stage (the
//! `Reconciling` condition's message; bars on a terminal, plain lines otherwise) until it is
//! done, then print how long recovery took (the MTTR figure) and the controller's own record
//! (`status.lastRebuild`: duration and stages). When a request is done is
//! [`headway_controller::request_state`]'s rule, the one the API uses too.

use crate::cluster::duration_secs;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use headway_controller::{Handle, RequestKind, RequestState, SyncKey};
use serde::Serialize;

use crate::Outcome;
use crate::cluster::{ClusterArgs, Selection, runtime};
use crate::live::Live;
use crate::output::{self, Format, rounded, seconds};
use crate::requests::{self, Request, RequestResult};

/// Arguments of `headway rebuild`.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Wait until every rebuild is done, showing each one's stage, and print the time to
    /// recover.
    #[arg(long)]
    pub wait: bool,
    /// How long to wait with --wait: seconds, or a duration such as `90s`, `10m`.
    #[arg(long, default_value_t = 600, value_name = "DURATION", value_parser = duration_secs)]
    pub timeout: u64,
    /// Output format: `text`, or `json` (one document at the end; see docs/cli.md).
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Format,
}

/// The JSON document of `rebuild`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RebuildOutput {
    /// Every rebuild was requested and, with --wait, done and Ready.
    ok: bool,
    waited: bool,
    /// With --wait: seconds from the first request until the last rebuild was done.
    recovery_seconds: Option<f64>,
    /// Suspended GitSyncs that were not asked to rebuild (`namespace/name`).
    skipped: Vec<String>,
    syncs: Vec<RequestResult>,
}

/// Runs `headway rebuild`; exit code 0 when every rebuild was requested (and, with --wait,
/// succeeded), 1 otherwise.
pub fn run(cluster: &ClusterArgs, args: RebuildArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let cluster = cluster.connect().await?;
        let client = cluster.client.clone();
        let syncs = args.selection.select(&cluster).await?;
        if syncs.is_empty() {
            bail!("no GitSyncs selected: nothing to rebuild");
        }
        // A suspended GitSync would not act on the request until resumed: say so, skip it.
        let (suspended, syncs): (Vec<_>, Vec<_>) = syncs.into_iter().partition(|s| s.spec.suspend);
        let skipped: Vec<String> = suspended
            .iter()
            .map(|s| SyncKey::of(s).to_string())
            .collect();
        for key in &skipped {
            eprintln!("skipped: {key} is suspended (`headway resume {key}` syncs it)");
        }
        if syncs.is_empty() {
            bail!("every selected GitSync is suspended: nothing to rebuild");
        }
        let started = Instant::now();
        let handle = Handle::new(client.clone());
        let mut live = Live::new(args.output);
        let mut requests = Vec::new();
        for sync in &syncs {
            let key = SyncKey::of(sync);
            let value = handle.rebuild(&key.namespace, &key.name).await?;
            live.println(&format!("rebuild requested: {key}"));
            requests.push(Request { key, value });
        }
        let results = if args.wait {
            requests::wait(
                client,
                RequestKind::Rebuild,
                &requests,
                started,
                Duration::from_secs(args.timeout),
                &mut live,
            )
            .await?
        } else {
            requests
                .iter()
                .map(|r| RequestResult::new(r, RequestState::Pending))
                .collect()
        };
        let failed = results.iter().filter(|r| !r.ok()).count();
        let ok = !args.wait || failed == 0;
        let recovery = args.wait.then(|| started.elapsed().as_secs_f64());
        match args.output {
            Format::Json => print!(
                "{}",
                output::json(&RebuildOutput {
                    ok,
                    waited: args.wait,
                    recovery_seconds: recovery.map(rounded),
                    skipped,
                    syncs: results,
                })?
            ),
            Format::Text => {
                if let Some(recovery) = recovery {
                    println!(
                        "recovery time: {} for {} GitSync(s){}",
                        seconds(recovery),
                        requests.len(),
                        if failed > 0 {
                            format!(", {failed} not recovered")
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }
        Ok(if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        })
    })
}
