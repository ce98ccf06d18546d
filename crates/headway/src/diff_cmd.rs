//! `headway diff PATH|--repo URL`: what `headway apply` would change in the current cluster,
//! field by field (Secret values masked), objects missing from the cluster, and objects the
//! inventory has that the source no longer has. `headway diff --gitsync NS/NAME [DIR]`: the
//! same for what that GitSync's controller would apply (its settings, its newest commit or DIR,
//! its ownership labels and inventory). Exit code 0: no difference; 2: differences;
//! 1: error (render errors, unreachable cluster, unreadable objects), as kubediff did.
//! `-o json` prints the same as one document (docs/cli.md).

use clap::Args;
use headway_apply::{DriftReport, DriftState};
use headway_model::diff::FieldDiff;
use serde::Serialize;

use crate::Outcome;
use crate::cluster::{ClusterArgs, runtime};
use crate::gitsync_input::{self, GitSyncArgs, GitSyncKey};
use crate::input::{SourceArgs, render_source};
use crate::output::{self, Format, ObjectJson};
use crate::owner::SyncArgs;

/// Arguments of `headway diff`. The owner flags conflict with `--gitsync` (the GitSync is the
/// owner).
#[derive(Debug, Args)]
#[command(mut_arg("gitsync", |a| a.conflicts_with_all(["name", "sync_namespace", "namespace"])))]
pub struct DiffArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub gitsync: GitSyncArgs,
    #[command(flatten)]
    pub sync: SyncArgs,
    /// Output format: `text`, or `json` (one document; see docs/cli.md).
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Format,
}

/// The JSON document of `diff`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DiffOutput {
    /// With `--gitsync`: the GitSync (`namespace/name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    git_sync: Option<String>,
    /// With `--gitsync`: the revision rendered (`main@sha1:<sha>`, or `local DIR`).
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<String>,
    /// Something differs (drifted, missing or stale objects): exit code 2.
    differs: bool,
    /// Some object could not be read: exit code 1.
    errors: bool,
    /// Every desired object, in apply order.
    objects: Vec<ObjectDiff>,
    /// Objects of the inventory the source no longer has (a prune would delete them).
    stale: Vec<ObjectJson>,
    /// API requests made.
    requests: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectDiff {
    #[serde(flatten)]
    object: ObjectJson,
    /// `inSync`, `drifted`, `missing` or `error`.
    state: &'static str,
    /// With `drifted`: each differing field (Secret values masked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<FieldJson>,
    /// With `error`: why the object could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FieldJson {
    path: String,
    /// `null`: the field is missing on that side.
    desired: Option<String>,
    live: Option<String>,
}

fn diff_json(report: &DriftReport, from: Option<&Header>) -> DiffOutput {
    let field = |f: &FieldDiff| FieldJson {
        path: f.path.clone(),
        desired: f.desired.clone(),
        live: f.live.clone(),
    };
    DiffOutput {
        git_sync: from.map(|h| h.key.to_string()),
        revision: from.map(|h| h.revision.clone()),
        differs: report.has_drift(),
        errors: report.has_errors(),
        objects: report
            .objects
            .iter()
            .map(|(id, state)| {
                let (state, fields, error) = match state {
                    DriftState::InSync => ("inSync", vec![], None),
                    DriftState::Drifted(diffs) => {
                        ("drifted", diffs.iter().map(field).collect(), None)
                    }
                    DriftState::Missing => ("missing", vec![], None),
                    DriftState::Error(e) => ("error", vec![], Some(e.clone())),
                };
                ObjectDiff {
                    object: id.into(),
                    state,
                    fields,
                    error,
                }
            })
            .collect(),
        stale: report.stale.iter().map(ObjectJson::from).collect(),
        requests: report.requests,
    }
}

/// With `--gitsync`: which GitSync was diffed, at which revision.
struct Header {
    key: GitSyncKey,
    revision: String,
}

/// Runs `headway diff`.
pub fn run(cluster: &ClusterArgs, args: DiffArgs) -> anyhow::Result<Outcome> {
    let (report, header) = match &args.gitsync.gitsync {
        Some(key) => runtime()?.block_on(async {
            let cluster = cluster.connect().await?;
            let engine = cluster.engine().await?;
            let dir = args.source.input.dir.as_deref();
            let from = gitsync_input::render(&cluster, &engine, key, dir).await?;
            let report = engine
                .drift(&from.owner, &from.set, &from.default_namespace)
                .await?;
            let header = Header {
                key: from.key,
                revision: from.revision,
            };
            anyhow::Ok((report, Some(header)))
        })?,
        None => {
            let rendered = render_source(&args.source, cluster)?;
            let owner = args.sync.owner(&rendered.default_name)?;
            let report = runtime()?.block_on(async {
                let cluster = cluster.connect().await?;
                let engine = cluster.engine().await?;
                let namespace = args.sync.target_namespace(&cluster);
                anyhow::Ok(engine.drift(&owner, &rendered.set, &namespace).await?)
            })?;
            (report, None)
        }
    };
    let outcome = if report.has_errors() {
        Outcome::Failure
    } else if report.has_drift() {
        Outcome::Differs
    } else {
        Outcome::Success
    };
    match args.output {
        Format::Json => print!("{}", output::json(&diff_json(&report, header.as_ref()))?),
        Format::Text => {
            if let Some(h) = &header {
                println!("GitSync {} at {}", h.key, h.revision);
            }
            print!("{}", report.render_text());
            if outcome == Outcome::Success {
                println!("no differences ({} objects)", report.objects.len());
            }
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use headway_model::ObjectRef;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: DiffArgs,
    }

    #[test]
    fn gitsync_takes_every_setting_so_the_flags_that_give_one_are_refused() {
        use clap::Parser as _;
        let parse = |argv: &[&str]| {
            Cli::try_parse_from(std::iter::once("diff").chain(argv.iter().copied()))
        };
        let a = parse(&["--gitsync", "apps/site"]).unwrap().args;
        assert_eq!(a.gitsync.gitsync.unwrap().to_string(), "apps/site");
        let a = parse(&["--gitsync", "apps/site", "./deploy"]).unwrap().args;
        assert_eq!(
            a.source.input.dir.unwrap(),
            std::path::Path::new("./deploy")
        );
        for flags in [
            &["--repo", "git://h/r"][..],
            &["--ref", "main"],
            &["--type", "helm"],
            &["--helm-values", "v.yaml"],
            &["--decrypt-key", "k"],
            &["--timeout", "5"],
            &["--name", "x"],
            &["--sync-namespace", "x"],
            &["-n", "x"],
        ] {
            let argv: Vec<&str> = ["--gitsync", "apps/site"]
                .iter()
                .chain(flags)
                .copied()
                .collect();
            let err = parse(&argv).err().unwrap();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{flags:?}: {err}"
            );
        }
        let err = parse(&["--gitsync", "site"]).err().unwrap();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn the_json_shape() {
        let cm = |name: &str| ObjectRef::new("v1", "ConfigMap", Some("apps".into()), name);
        let report = DriftReport {
            objects: vec![
                (cm("a"), DriftState::InSync),
                (
                    cm("b"),
                    DriftState::Drifted(vec![FieldDiff {
                        path: "data.x".into(),
                        desired: Some("1".into()),
                        live: None,
                    }]),
                ),
                (cm("c"), DriftState::Missing),
                (cm("d"), DriftState::Error("forbidden".into())),
            ],
            stale: vec![cm("old")],
            requests: 3,
        };
        let v = serde_json::to_value(diff_json(&report, None)).unwrap();
        assert_eq!(v["differs"], true);
        assert_eq!(v["errors"], true);
        assert_eq!(v["objects"][0]["id"], "ConfigMap/apps/a");
        assert_eq!(v["objects"][0]["state"], "inSync");
        assert!(v["objects"][0].get("fields").is_none());
        assert_eq!(v["objects"][1]["fields"][0]["path"], "data.x");
        assert_eq!(
            v["objects"][1]["fields"][0]["live"],
            serde_json::Value::Null
        );
        assert_eq!(v["objects"][2]["state"], "missing");
        assert_eq!(v["objects"][3]["error"], "forbidden");
        assert_eq!(v["stale"][0]["name"], "old");
        assert_eq!(v["requests"], 3);
        assert!(v.get("gitSync").is_none() && v.get("revision").is_none());
        let header = Header {
            key: GitSyncKey {
                namespace: "apps".into(),
                name: "site".into(),
            },
            revision: "main@sha1:abc".into(),
        };
        let v = serde_json::to_value(diff_json(&report, Some(&header))).unwrap();
        assert_eq!(v["gitSync"], "apps/site");
        assert_eq!(v["revision"], "main@sha1:abc");
    }
}
