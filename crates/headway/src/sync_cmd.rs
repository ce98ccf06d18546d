//! `headway sync NS/NAME [--wait]`, `headway suspend NAME`, `headway resume NAME [--wait]`: one
//! GitSync, named `namespace/name` or `name` (namespace from `-n`, default: the context's).
//! A sync is requested through [`headway_controller::Handle::sync_now`] and followed to its end
//! with the controller's own rule ([`headway_controller::request_state`]); suspend and resume
//! patch `spec.suspend` as the field manager [`SUSPEND_MANAGER`], and resume requests a sync.

use crate::cluster::duration_secs;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use headway_controller::{GitSync, Handle, RequestKind, SyncKey};
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde_json::json;

use crate::Outcome;
use crate::cluster::{Cluster, ClusterArgs, runtime};
use crate::live::Live;
use crate::output::{self, Format};
use crate::requests::{self, Request, RequestResult};

/// The field manager of `spec.suspend` when the CLI sets it (`kubectl get gitsync -o yaml
/// --show-managed-fields` shows who suspended a GitSync).
pub const SUSPEND_MANAGER: &str = "headway-suspend";

/// One GitSync: `namespace/name`, or `name` in `-n`.
#[derive(Debug, Args)]
pub struct Target {
    /// The GitSync: `NAMESPACE/NAME`, or `NAME` in the namespace of `-n`.
    #[arg(value_name = "[NAMESPACE/]NAME")]
    pub target: String,
    /// Namespace of the GitSync when it is given as `NAME`; default: the kubeconfig context's
    /// namespace, else `default`.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

impl Target {
    /// The GitSync's key (`NAME` is in `-n`, else in `default_namespace`); a namespace given
    /// twice must agree.
    pub fn key(&self, default_namespace: &str) -> anyhow::Result<SyncKey> {
        // A bad target is a usage error like clap's own (main prints it, exit code 2).
        let usage = |message: String| -> anyhow::Error {
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("{message}\n")).into()
        };
        match self.target.split_once('/') {
            Some((ns, name)) => {
                if ns.is_empty() || name.is_empty() || name.contains('/') {
                    return Err(usage(format!(
                        "{:?} is not NAMESPACE/NAME or NAME of a GitSync",
                        self.target
                    )));
                }
                if let Some(flag) = &self.namespace
                    && flag != ns
                {
                    return Err(usage(format!(
                        "{} names namespace {ns} but -n says {flag}: give one of them",
                        self.target
                    )));
                }
                Ok(SyncKey::new(ns, name))
            }
            None if self.target.is_empty() => Err(usage("the GitSync's name is empty".into())),
            None => Ok(SyncKey::new(
                self.namespace.as_deref().unwrap_or(default_namespace),
                &self.target,
            )),
        }
    }
}

/// How long to wait, shared by `sync` and `resume`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait until the controller has handled the request; exit code 0 when the GitSync is then
    /// Ready, 1 when the sync failed or the wait timed out.
    #[arg(long)]
    pub wait: bool,
    /// How long to wait with --wait: seconds, or a duration such as `90s`, `5m`.
    #[arg(long, default_value_t = 300, value_name = "DURATION", value_parser = duration_secs)]
    pub timeout: u64,
    /// Output format: `text`, or `json` (one document at the end; see docs/cli.md).
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Format,
}

/// Arguments of `headway sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Arguments of `headway suspend`.
#[derive(Debug, Args)]
pub struct SuspendArgs {
    #[command(flatten)]
    pub target: Target,
}

/// Arguments of `headway resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// The JSON document of `sync` and `resume`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SyncOutput {
    /// Requested (and, with --wait, done and Ready).
    ok: bool,
    waited: bool,
    syncs: Vec<RequestResult>,
}

async fn get(cluster: &Cluster, key: &SyncKey) -> anyhow::Result<GitSync> {
    Api::<GitSync>::namespaced(cluster.client.clone(), &key.namespace)
        .get_opt(&key.name)
        .await
        .with_context(|| format!("reading GitSync {key}"))?
        .with_context(|| format!("GitSync {key} not found"))
}

/// Requests a sync of `key` and, with --wait, follows it.
async fn request_sync(cluster: &Cluster, key: SyncKey, args: &WaitArgs) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let value = Handle::new(cluster.client.clone())
        .sync_now(&key.namespace, &key.name)
        .await?;
    let mut live = Live::new(args.output);
    live.println(&format!("sync requested: {key}"));
    let request = Request { key, value };
    let results = if args.wait {
        requests::wait(
            cluster.client.clone(),
            RequestKind::Sync,
            std::slice::from_ref(&request),
            started,
            Duration::from_secs(args.timeout),
            &mut live,
        )
        .await?
    } else {
        vec![RequestResult::new(
            &request,
            headway_controller::RequestState::Pending,
        )]
    };
    let ok = !args.wait || results.iter().all(RequestResult::ok);
    if args.output == Format::Json {
        print!(
            "{}",
            output::json(&SyncOutput {
                ok,
                waited: args.wait,
                syncs: results,
            })?
        );
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Failure
    })
}

/// Runs `headway sync`.
pub fn sync(cluster: &ClusterArgs, args: SyncArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let cluster = cluster.connect().await?;
        let key = args.target.key(&cluster.namespace)?;
        let current = get(&cluster, &key).await?;
        if current.spec.suspend {
            bail!("GitSync {key} is suspended: `headway resume {key}` resumes it and syncs");
        }
        request_sync(&cluster, key, &args.wait).await
    })
}

/// Sets `spec.suspend` of `key`.
async fn set_suspend(cluster: &Cluster, key: &SyncKey, suspend: bool) -> anyhow::Result<()> {
    let patch = json!({"spec": {"suspend": suspend}});
    let params = PatchParams {
        field_manager: Some(SUSPEND_MANAGER.to_string()),
        ..Default::default()
    };
    Api::<GitSync>::namespaced(cluster.client.clone(), &key.namespace)
        .patch(&key.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "setting spec.suspend of GitSync {key} to {suspend}: {}",
                headway_apply::error_message(&e)
            )
        })?;
    Ok(())
}

/// Runs `headway suspend`.
pub fn suspend(cluster: &ClusterArgs, args: SuspendArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let cluster = cluster.connect().await?;
        let key = args.target.key(&cluster.namespace)?;
        let was = get(&cluster, &key).await?.spec.suspend;
        set_suspend(&cluster, &key, true).await?;
        println!(
            "suspended: {key}{}",
            if was { " (it already was)" } else { "" }
        );
        Ok(Outcome::Success)
    })
}

/// Runs `headway resume`: unsuspends and requests a sync.
pub fn resume(cluster: &ClusterArgs, args: ResumeArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let cluster = cluster.connect().await?;
        let key = args.target.key(&cluster.namespace)?;
        get(&cluster, &key).await?;
        set_suspend(&cluster, &key, false).await?;
        if args.wait.output == Format::Text {
            println!("resumed: {key}");
        }
        request_sync(&cluster, key, &args.wait).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_ns_slash_name_or_a_name_in_the_namespace() {
        let key = |target: &str, ns: Option<&str>| {
            Target {
                target: target.into(),
                namespace: ns.map(String::from),
            }
            .key("ctx")
            .map(|k| k.to_string())
            .map_err(|e| e.to_string())
        };
        assert_eq!(key("apps/shop", None).unwrap(), "apps/shop");
        assert_eq!(key("apps/shop", Some("apps")).unwrap(), "apps/shop");
        assert_eq!(key("shop", Some("apps")).unwrap(), "apps/shop");
        assert_eq!(key("shop", None).unwrap(), "ctx/shop");
        assert_eq!(
            key("apps/shop", Some("web")).unwrap_err(),
            "error: apps/shop names namespace apps but -n says web: give one of them\n"
        );
        for bad in ["/shop", "apps/", "a/b/c", ""] {
            assert!(key(bad, None).is_err(), "{bad}");
        }
    }
}
