//! `headway status [--watch] [-o table|json|yaml]`: the selected GitSyncs as the controller's read
//! model sums them up ([`headway_controller::summarize`]): phase, reason (or the current stage),
//! revision, objects, drift, last sync and last rebuild. Exit code 0 when every one is Ready;
//! selecting none is an error. `--watch` redraws on every change, through one watch.

use std::collections::BTreeSet;

use anyhow::bail;
use clap::Args;
use headway_controller::conditions::{self, RECONCILING};
use headway_controller::view::RunView;
use headway_controller::{GitSync, Phase, SyncKey, SyncSummary, summarize};

use crate::Outcome;
use crate::cluster::{Cluster, ClusterArgs, Selection, runtime};
use crate::output::{self, StatusFormat, seconds, stdout_is_terminal};
use crate::watch::{Scope, Update, Watched};

/// Arguments of `headway status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Output format: `table`, or `json`/`yaml` (the list of GitSync summaries; see docs/cli.md).
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: StatusFormat,
    /// Keep running and print again on every change of a selected GitSync (Ctrl-C to stop). On a
    /// terminal the table is redrawn in place; otherwise each change is printed in full (with
    /// `-o json`: one JSON line per change).
    #[arg(long, short = 'w')]
    pub watch: bool,
}

/// The table's row of one GitSync.
fn row(summary: &SyncSummary, sync: &GitSync) -> Vec<String> {
    // While a sync runs, the reason column names its stage ("applying 412/1000").
    let stage = (summary.phase == Phase::Progressing)
        .then(|| {
            sync.status
                .as_ref()
                .and_then(|s| conditions::get(&s.conditions, RECONCILING))
                .map(|c| c.message.clone())
                .filter(|m| !m.is_empty())
        })
        .flatten();
    let run = |r: Option<&RunView>| {
        r.map(|r| format!("{} ({}, {})", seconds(r.duration_seconds), r.result, r.end))
            .unwrap_or_else(|| "-".into())
    };
    let synced = summary.revision.is_some() || summary.objects.total > 0;
    vec![
        summary.key().to_string(),
        summary.phase.to_string(),
        stage
            .or_else(|| summary.reason.clone())
            .unwrap_or_else(|| "-".into()),
        summary.revision.clone().unwrap_or_else(|| "-".into()),
        if synced {
            format!(
                "{}/{} current",
                summary.objects.current, summary.objects.total
            )
        } else {
            "-".into()
        },
        if synced {
            summary.drifted.to_string()
        } else {
            "-".into()
        },
        run(summary.last_reconcile.as_ref()),
        run(summary.last_rebuild.as_ref()),
    ]
}

/// One aligned line per GitSync, under a header.
pub fn status_table<'a>(syncs: impl IntoIterator<Item = &'a GitSync>) -> String {
    let mut rows = vec![
        [
            "GITSYNC",
            "PHASE",
            "REASON",
            "REVISION",
            "OBJECTS",
            "DRIFTED",
            "LAST SYNC",
            "LAST REBUILD",
        ]
        .map(String::from)
        .to_vec(),
    ];
    rows.extend(syncs.into_iter().map(|s| row(&summarize(s), s)));
    output::table(&rows)
}

/// The document of `-o json|yaml` or the table.
fn render(syncs: &[&GitSync], format: StatusFormat, one_line: bool) -> anyhow::Result<String> {
    let summaries: Vec<SyncSummary> = syncs.iter().map(|s| summarize(s)).collect();
    match format {
        StatusFormat::Table => Ok(status_table(syncs.iter().copied())),
        StatusFormat::Json if one_line => output::json_line(&summaries),
        StatusFormat::Json => output::json(&summaries),
        StatusFormat::Yaml => output::yaml(&summaries),
    }
}

fn all_ready(syncs: &[&GitSync]) -> bool {
    syncs
        .iter()
        .all(|s| headway_controller::view::phase(s) == Phase::Ready)
}

/// What `-n/-A/-l` and the names selected, for the "nothing selected" error.
fn describe(selection: &Selection, cluster: &Cluster) -> String {
    let place = if selection.all_namespaces {
        "in any namespace".to_string()
    } else {
        format!(
            "in namespace {}",
            cluster.namespace_or(selection.namespace.as_deref())
        )
    };
    match &selection.selector {
        Some(selector) => format!("{place} with labels {selector}"),
        None => place,
    }
}

/// Runs `headway status`: success when every selected GitSync is Ready.
pub fn run(cluster: &ClusterArgs, args: StatusArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let cluster = cluster.connect().await?;
        let syncs = args.selection.select(&cluster).await?;
        if syncs.is_empty() {
            let hint = if args.selection.all_namespaces {
                ""
            } else {
                " (-A looks in every namespace)"
            };
            bail!(
                "no GitSyncs {}: nothing to show{hint}",
                describe(&args.selection, &cluster)
            );
        }
        if args.watch {
            return watch(&cluster, &args).await;
        }
        let syncs: Vec<&GitSync> = syncs.iter().collect();
        print!("{}", render(&syncs, args.output, false)?);
        Ok(if all_ready(&syncs) {
            Outcome::Success
        } else {
            Outcome::Failure
        })
    })
}

/// `status --watch`: prints again on every change, until interrupted.
async fn watch(cluster: &Cluster, args: &StatusArgs) -> anyhow::Result<Outcome> {
    let selection = &args.selection;
    let namespace = cluster.namespace_or(selection.namespace.as_deref());
    let scope = Scope {
        namespace: (!selection.all_namespaces).then(|| namespace.clone()),
        selector: selection.selector.clone(),
        keys: (!selection.names.is_empty()).then(|| {
            selection
                .names
                .iter()
                .map(|n| SyncKey::new(&namespace, n))
                .collect::<BTreeSet<_>>()
        }),
    };
    let terminal = stdout_is_terminal();
    let mut watched = Watched::start(cluster.client.clone(), scope);
    let mut shown = String::new();
    loop {
        let syncs = match watched.changed().await? {
            Update::Syncs(syncs) => syncs,
            Update::Retrying(why) => {
                eprintln!("warning: {why} (retrying)");
                continue;
            }
        };
        let list: Vec<&GitSync> = syncs.values().collect();
        let text = if list.is_empty() {
            format!("no GitSyncs {}\n", describe(selection, cluster))
        } else {
            render(&list, args.output, !terminal)?
        };
        // A change of fields the output does not show (resourceVersion, managedFields) is
        // not a change.
        if text == shown {
            continue;
        }
        if terminal && args.output == StatusFormat::Table {
            // Home, clear the screen, draw.
            print!("\x1b[H\x1b[2J{text}");
        } else if args.output == StatusFormat::Yaml {
            print!("---\n{text}");
        } else if args.output == StatusFormat::Table {
            println!("{text}");
        } else {
            print!("{text}");
        }
        use std::io::Write as _;
        std::io::stdout().flush()?;
        shown = text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{cond, sync};
    use serde_json::json;

    #[test]
    fn the_status_table_has_one_aligned_row_per_sync() {
        let ready = sync(json!({
            "lastAppliedRevision": "main@sha1:abc",
            "conditions": [cond("Ready", "True", "ReconciliationSucceeded", "m")],
            "objects": {"total": 8, "current": 8, "inProgress": 0, "failed": 0, "terminating": 0, "notFound": 0, "unknown": 0},
            "lastRebuild": {"start": "a", "end": "2026-11-26T12:00:01Z", "durationMs": 553, "duration": "553ms", "result": "Succeeded"},
        }));
        let running = sync(json!({
            "conditions": [cond("Reconciling", "True", "Progressing", "applying 412/1000")],
        }));
        let table = status_table([&ready, &running, &sync(json!({}))]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[0].starts_with("GITSYNC    PHASE        REASON                   REVISION"),
            "{table}"
        );
        assert!(
            lines[1].contains(
                "apps/shop  Ready        ReconciliationSucceeded  main@sha1:abc  8/8 current  0"
            ),
            "{table}"
        );
        assert!(
            lines[1].contains("553ms (Succeeded, 2026-11-26T12:00:01Z)"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("apps/shop  Progressing  applying 412/1000"),
            "{table}"
        );
        assert!(
            lines[3].starts_with("apps/shop  Unknown      -    "),
            "{table}"
        );
    }

    #[test]
    fn json_and_yaml_are_the_summary_list() {
        let s = sync(json!({"conditions": [cond("Ready", "False", "FetchFailed", "no route")]}));
        let text = render(&[&s], StatusFormat::Json, false).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["name"], "shop");
        assert_eq!(v[0]["phase"], "Failed");
        assert_eq!(v[0]["reason"], "FetchFailed");
        assert_eq!(
            render(&[&s], StatusFormat::Json, true)
                .unwrap()
                .lines()
                .count(),
            1
        );
        let yaml = render(&[&s], StatusFormat::Yaml, false).unwrap();
        assert!(yaml.contains("phase: Failed"), "{yaml}");
        assert!(!all_ready(&[&s]));
    }
}
