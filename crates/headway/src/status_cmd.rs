//! `headway status`: what every selected GitSync looks like (Ready, revision, objects, drift,
//! last sync and last rebuild), one aligned row each; exit code 0 when all are Ready.

use clap::Args;
use headway_controller::GitSync;
use headway_controller::conditions::READY;

use crate::Outcome;
use crate::cluster::{ClusterArgs, Selection, key, runtime};

/// Arguments of `headway status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub selection: Selection,
}

/// (status, reason, message) of a condition.
pub fn condition<'a>(sync: &'a GitSync, kind: &str) -> Option<(&'a str, &'a str, &'a str)> {
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

/// Runs `headway status`: success when every selected GitSync is Ready.
pub fn run(cluster: &ClusterArgs, args: StatusArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let cluster = cluster.connect().await?;
        let syncs = args.selection.select(&cluster).await?;
        if syncs.is_empty() {
            println!("no GitSyncs");
            return Ok(Outcome::Success);
        }
        print!("{}", status_table(&syncs));
        let all_ready = syncs
            .iter()
            .all(|s| condition(s, READY).is_some_and(|(st, _, _)| st == "True"));
        Ok(if all_ready {
            Outcome::Success
        } else {
            Outcome::Failure
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
