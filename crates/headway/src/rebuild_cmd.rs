//! `headway status` and `headway rebuild [--wait]`: what every GitSync looks like, and the
//! disaster-recovery operation: ask the controller to re-fetch and re-apply everything, wait
//! until every sync is Ready again, and print how long recovery took (the MTTR figure).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use headway_controller::conditions::{READY, RECONCILING};
use headway_controller::{GitSync, Handle};
use kube::api::{Api, ListParams};

use crate::apply_cmd::{client, runtime};

/// Which GitSyncs a command looks at.
#[derive(Debug, Args)]
pub struct Selection {
    /// GitSync names (default: all in the namespace, or in every namespace with -A).
    pub names: Vec<String>,
    /// Namespace of the GitSyncs.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Every namespace.
    #[arg(long, short = 'A', conflicts_with = "names")]
    pub all_namespaces: bool,
}

/// Arguments of `headway status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub selection: Selection,
}

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

/// The selected GitSyncs, sorted by namespace and name.
async fn select(client: &kube::Client, selection: &Selection) -> anyhow::Result<Vec<GitSync>> {
    let mut syncs = if selection.all_namespaces {
        Api::<GitSync>::all(client.clone())
            .list(&ListParams::default())
            .await
            .context("listing GitSyncs")?
            .items
    } else {
        let api = Api::<GitSync>::namespaced(client.clone(), &selection.namespace);
        if selection.names.is_empty() {
            api.list(&ListParams::default())
                .await
                .with_context(|| format!("listing GitSyncs in {}", selection.namespace))?
                .items
        } else {
            let mut found = Vec::new();
            for name in &selection.names {
                match api.get_opt(name).await? {
                    Some(sync) => found.push(sync),
                    None => bail!("GitSync {}/{name} not found", selection.namespace),
                }
            }
            found
        }
    };
    syncs.sort_by_key(key);
    Ok(syncs)
}

fn key(sync: &GitSync) -> String {
    format!(
        "{}/{}",
        sync.metadata.namespace.as_deref().unwrap_or_default(),
        sync.metadata.name.as_deref().unwrap_or_default()
    )
}

/// (status, reason, message) of a condition.
fn condition<'a>(sync: &'a GitSync, kind: &str) -> Option<(&'a str, &'a str, &'a str)> {
    sync.status.as_ref()?.conditions.iter().find_map(|c| {
        (c.type_ == kind).then_some((c.status.as_str(), c.reason.as_str(), c.message.as_str()))
    })
}

/// One line per GitSync.
pub fn status_table(syncs: &[GitSync]) -> String {
    let mut rows = vec![[
        "GITSYNC".to_string(),
        "READY".into(),
        "REASON".into(),
        "REVISION".into(),
        "OBJECTS".into(),
        "DRIFTED".into(),
        "LAST SYNC".into(),
        "LAST REBUILD".into(),
    ]];
    for sync in syncs {
        let status = sync.status.as_ref();
        let (ready, reason) = condition(sync, READY)
            .map(|(s, r, _)| (s.to_string(), r.to_string()))
            .unwrap_or_else(|| ("Unknown".into(), "-".into()));
        let revision = status
            .and_then(|s| s.last_applied_revision.clone())
            .unwrap_or_else(|| "-".into());
        let objects = status
            .and_then(|s| s.objects.as_ref())
            .map(|o| format!("{}/{} current", o.current, o.total))
            .unwrap_or_else(|| "-".into());
        let drifted = status
            .and_then(|s| s.drift.as_ref())
            .map(|d| d.drifted.to_string())
            .unwrap_or_else(|| "-".into());
        let record = |r: Option<&headway_controller::crd::ReconcileRecord>| {
            r.map(|r| format!("{} ({}, {})", r.duration, r.result, r.end))
                .unwrap_or_else(|| "-".into())
        };
        rows.push([
            key(sync),
            ready,
            reason,
            revision,
            objects,
            drifted,
            record(status.and_then(|s| s.last_reconcile.as_ref())),
            record(status.and_then(|s| s.last_rebuild.as_ref())),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Runs `headway status`; exit code 0 when every selected GitSync is Ready, 1 otherwise.
pub fn status(args: StatusArgs) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let client = client().await?;
        let syncs = select(&client, &args.selection).await?;
        if syncs.is_empty() {
            println!("no GitSyncs");
            return Ok(0);
        }
        print!("{}", status_table(&syncs));
        let all_ready = syncs
            .iter()
            .all(|s| condition(s, READY).is_some_and(|(st, _, _)| st == "True"));
        Ok(if all_ready { 0 } else { 1 })
    })
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
pub fn rebuild(args: RebuildArgs) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let client = client().await?;
        let syncs = select(&client, &args.selection).await?;
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
            return Ok(0);
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
        Ok(if failed > 0 { 1 } else { 0 })
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

    #[test]
    fn the_status_table_has_one_aligned_row_per_sync() {
        let s = sync(json!({
            "lastAppliedRevision": "main@sha1:abc",
            "conditions": [cond("Ready", "True", "ReconciliationSucceeded")],
            "objects": {"total": 8, "current": 8, "inProgress": 0, "failed": 0, "terminating": 0, "notFound": 0, "unknown": 0},
            "lastRebuild": {"start": "a", "end": "2026-11-26T12:00:01Z", "durationMs": 553, "duration": "553ms", "result": "Succeeded"},
        }));
        let table = status_table(&[s, sync(json!({}))]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            lines[0].starts_with("GITSYNC    READY    REASON                   REVISION"),
            "{table}"
        );
        assert!(
            lines[1].contains(
                "apps/shop  True     ReconciliationSucceeded  main@sha1:abc  8/8 current  -"
            ),
            "{table}"
        );
        assert!(
            lines[1].contains("553ms (Succeeded, 2026-11-26T12:00:01Z)"),
            "{table}"
        );
        assert!(lines[2].starts_with("apps/shop  Unknown  -    "), "{table}");
    }
}
