//! `headway apply PATH|--repo URL [--prune] [--wait]`: one sync without a controller: renders the
//! source, applies it with the apply engine (server-side apply, field manager `headway`), records
//! the inventory in the cluster, optionally prunes and waits. Exit code 0 when everything
//! succeeded, 1 otherwise (render errors, failed objects, refused prune, objects not Current).
//! `-o json` prints the report as one document (docs/cli.md).

use crate::cluster::duration_secs;
use std::time::Duration;

use clap::Args;
use headway_apply::{SyncReport, SyncRequest};
use headway_model::SyncOwner;
use headway_model::changeset::Action;
use headway_model::health::format_not_current;
use serde::Serialize;

use crate::Outcome;
use crate::cluster::{ClusterArgs, runtime};
use crate::input::{SourceArgs, render_source};
use crate::output::{self, Format, ObjectJson, rounded};
use crate::owner::SyncArgs;

/// Arguments of `headway apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub sync: SyncArgs,
    /// Delete objects applied by earlier runs of this sync that the source no longer has.
    #[arg(long)]
    pub prune: bool,
    /// Wait until every object is Current (kstatus rules).
    #[arg(long)]
    pub wait: bool,
    /// Longest wait: seconds, or a duration such as `90s`, `5m`, `1h30m`.
    #[arg(long = "wait-timeout", default_value_t = 300, value_parser = duration_secs)]
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
    /// Output format: `text`, or `json` (one document at the end; see docs/cli.md).
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Format,
}

/// The JSON document of `apply`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ApplyOutput {
    /// Every step succeeded (exit code 0).
    ok: bool,
    /// The sync's `namespace/name` (its ownership labels and inventory).
    sync: String,
    counts: CountsJson,
    /// Per object, in the order of the operations: applied, then pruned.
    changes: Vec<ChangeJson>,
    /// Entries of the inventory recorded at the end.
    inventory: usize,
    /// API requests made.
    requests: u64,
    /// Seconds per step (`apply definitions`, `apply classes`, `apply workloads`, `prune`,
    /// `wait`).
    timings: Vec<TimingJson>,
    /// With --wait: the last health of each object.
    health: Vec<HealthJson>,
    /// The first step that failed: `{"step": "apply"|"prune"|"health", "message": ...}`.
    failure: Option<FailureJson>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CountsJson {
    created: usize,
    configured: usize,
    unchanged: usize,
    deleted: usize,
    skipped: usize,
    failed: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChangeJson {
    #[serde(flatten)]
    object: ObjectJson,
    /// `created`, `configured`, `unchanged`, `deleted`, `skipped` or `failed`.
    action: &'static str,
    /// Why it was skipped, or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TimingJson {
    step: String,
    seconds: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthJson {
    #[serde(flatten)]
    object: ObjectJson,
    /// kstatus: `Current`, `InProgress`, `Failed`, `Terminating`, `NotFound`, `Unknown`.
    health: String,
    message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FailureJson {
    step: String,
    message: String,
}

fn apply_json(owner: &SyncOwner, report: &SyncReport) -> ApplyOutput {
    let counts = report.changes.counts();
    ApplyOutput {
        ok: report.is_ok(),
        sync: owner.to_string(),
        counts: CountsJson {
            created: counts.created,
            configured: counts.configured,
            unchanged: counts.unchanged,
            deleted: counts.deleted,
            skipped: counts.skipped,
            failed: counts.failed,
        },
        changes: report
            .changes
            .changes
            .iter()
            .map(|c| {
                let (action, detail) = match &c.action {
                    Action::Created => ("created", None),
                    Action::Configured => ("configured", None),
                    Action::Unchanged => ("unchanged", None),
                    Action::Deleted => ("deleted", None),
                    Action::Skipped(why) => ("skipped", Some(why.clone())),
                    Action::Failed(error) => ("failed", Some(error.clone())),
                };
                ChangeJson {
                    object: (&c.id).into(),
                    action,
                    detail,
                }
            })
            .collect(),
        inventory: report.inventory_len,
        requests: report.requests,
        timings: report
            .timings
            .iter()
            .map(|(step, d)| TimingJson {
                step: step.clone(),
                seconds: rounded(d.as_secs_f64()),
            })
            .collect(),
        health: report
            .health
            .iter()
            .map(|(id, h)| HealthJson {
                object: id.into(),
                health: h.status.to_string(),
                message: h.message.clone(),
            })
            .collect(),
        failure: report.failure.as_ref().map(|f| FailureJson {
            step: f.step.to_string(),
            message: f.message.clone(),
        }),
    }
}

/// Runs `headway apply`.
pub fn run(cluster: &ClusterArgs, args: ApplyArgs) -> anyhow::Result<Outcome> {
    let rendered = render_source(&args.source, cluster)?;
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
    let outcome = if report.is_ok() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    if args.output == Format::Json {
        print!("{}", output::json(&apply_json(&owner, &report))?);
        return Ok(outcome);
    }
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
