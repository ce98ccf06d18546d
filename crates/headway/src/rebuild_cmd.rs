//! `headway rebuild [--wait]`: the disaster-recovery operation: ask the controller to re-fetch
//! and re-apply every selected GitSync, wait until each is Ready again, and print how long
//! recovery took (the MTTR figure).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use headway_controller::conditions::{READY, RECONCILING};
use headway_controller::{GitSync, Handle};
use kube::api::Api;

use crate::Outcome;
use crate::cluster::{ClusterArgs, Selection, runtime};
use crate::status_cmd::{condition, status_table};

/// Arguments of `headway rebuild`.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Wait until every rebuilt GitSync is Ready again and print the time it took.
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// Where a rebuild request stands.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    Pending,
    Succeeded,
    Failed(String),
}

/// Whether the rebuild request `value` has been handled and how it ended.
fn progress(sync: &GitSync, value: &str) -> Progress {
    let handled = sync
        .status
        .as_ref()
        .and_then(|s| s.last_handled_rebuild_request.as_deref());
    let reconciling = condition(sync, RECONCILING).is_some_and(|(s, _, _)| s == "True");
    if handled != Some(value) || reconciling {
        return Progress::Pending;
    }
    match condition(sync, READY) {
        Some(("True", _, _)) => Progress::Succeeded,
        Some((_, reason, message)) => Progress::Failed(format!("{reason}: {message}")),
        None => Progress::Pending,
    }
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
        let started = Instant::now();
        let handle = Handle::new(client.clone());
        let mut requests = Vec::new();
        for sync in &syncs {
            let ns = sync.metadata.namespace.clone().unwrap_or_default();
            let name = sync.metadata.name.clone().unwrap_or_default();
            let value = handle.rebuild(&ns, &name).await?;
            println!("rebuild requested: {ns}/{name}");
            requests.push((ns, name, value));
        }
        if !args.wait {
            return Ok(Outcome::Success);
        }
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        let mut pending: Vec<_> = requests;
        let mut failed = 0;
        let mut done = Vec::new();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for (ns, name, value) in pending {
                let sync = Api::<GitSync>::namespaced(client.clone(), &ns)
                    .get(&name)
                    .await
                    .with_context(|| format!("reading GitSync {ns}/{name}"))?;
                match progress(&sync, &value) {
                    Progress::Pending => still.push((ns, name, value)),
                    Progress::Succeeded => {
                        let took = sync
                            .status
                            .as_ref()
                            .and_then(|s| s.last_rebuild.as_ref())
                            .map(|r| r.duration.clone())
                            .unwrap_or_default();
                        println!(
                            "rebuilt: {ns}/{name} Ready after {:.1}s (controller: {took})",
                            started.elapsed().as_secs_f64()
                        );
                        done.push(sync);
                    }
                    Progress::Failed(why) => {
                        println!("FAILED: {ns}/{name}: {why}");
                        failed += 1;
                        done.push(sync);
                    }
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for (ns, name, _) in &pending {
                    println!("TIMED OUT: {ns}/{name} not rebuilt after {}s", args.timeout);
                }
                failed += pending.len();
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        println!();
        print!("{}", status_table(&done));
        println!(
            "\nrecovery time: {:.1}s for {} GitSync(s){}",
            started.elapsed().as_secs_f64(),
            syncs.len(),
            if failed > 0 {
                format!(", {failed} not recovered")
            } else {
                String::new()
            }
        );
        Ok(if failed > 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sync(status: serde_json::Value) -> GitSync {
        serde_json::from_value(json!({
            "apiVersion": "headway.dev/v1alpha1",
            "kind": "GitSync",
            "metadata": {"name": "shop", "namespace": "apps"},
            "spec": {"repository": {"url": "https://git.example.com/x.git"}},
            "status": status,
        }))
        .unwrap()
    }

    fn cond(kind: &str, status: &str, reason: &str) -> serde_json::Value {
        json!({"type": kind, "status": status, "reason": reason, "message": "m",
               "lastTransitionTime": "2026-11-26T12:00:00Z"})
    }

    #[test]
    fn a_rebuild_is_done_when_handled_not_reconciling_and_ready() {
        let value = "2026-11-26T12:00:00.000Z";
        let check = |status, expected| assert_eq!(progress(&sync(status), value), expected);
        check(json!({}), Progress::Pending);
        check(
            json!({"lastHandledRebuildRequest": "older",
                   "conditions": [cond("Ready", "True", "ReconciliationSucceeded")]}),
            Progress::Pending,
        );
        check(
            json!({"lastHandledRebuildRequest": value,
                   "conditions": [cond("Ready", "True", "ReconciliationSucceeded"),
                                  cond("Reconciling", "True", "Progressing")]}),
            Progress::Pending,
        );
        check(
            json!({"lastHandledRebuildRequest": value,
                   "conditions": [cond("Ready", "True", "ReconciliationSucceeded"),
                                  cond("Reconciling", "False", "ReconciliationSucceeded")]}),
            Progress::Succeeded,
        );
        check(
            json!({"lastHandledRebuildRequest": value,
                   "conditions": [cond("Ready", "False", "ApplyFailed")]}),
            Progress::Failed("ApplyFailed: m".into()),
        );
    }
}
