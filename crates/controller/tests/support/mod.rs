//! Support for the controller's end-to-end tests (shared with `crates/headway/tests` through
//! `#[path]`): installing the CRD, running a controller in-process, creating GitSyncs, reading
//! their status and Events, all against the local cluster and a local `git daemon`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use headway_controller::crd::{GitSync, GitSyncStatus};
use headway_controller::{Leadership, Options};
use headway_tests::git::Upstream;
use headway_tests::{TestCluster, TestNamespace, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Whether the tests that need both the cluster and `git daemon` run; prints why not otherwise.
pub fn git_enabled(test: &str) -> bool {
    headway_tests::git::enabled(test)
}

/// Installs (or updates) the GitSync CRD with server-side apply and waits until it is
/// Established. Every test binary does this; the same manager and content make it idempotent.
pub async fn install_crd(client: &Client) -> anyhow::Result<()> {
    headway_tests::install_crd(client, &GitSync::crd()).await
}

/// A controller running in this process.
pub struct RunningController {
    pub identity: String,
    pub leadership: Leadership,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), headway_controller::RunError>>>,
    _cache: tempfile::TempDir,
}

impl RunningController {
    /// Stops gracefully (finishes running syncs, releases the Lease) and returns the result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .context("the controller did not stop within 60 s")?
            .context("the controller task panicked")?
            .context("the controller failed")
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Options for a test controller watching only `ns`, with its Lease in `ns`.
pub fn options(ns: &str, identity: &str, cache: &std::path::Path) -> Options {
    let mut o = Options::new(identity, cache);
    o.namespace = Some(ns.to_string());
    o.lease_namespace = ns.to_string();
    o.lease_name = "headway-controller".into();
    o.lease_duration = Duration::from_secs(6);
    o.concurrency = 4;
    o.shutdown_timeout = Duration::from_secs(30);
    o
}

/// Starts a controller for the test namespace `ns` with a fresh git cache.
pub async fn start_controller(
    cluster: &TestCluster,
    ns: &str,
    identity: &str,
) -> anyhow::Result<RunningController> {
    let cache = tempfile::tempdir()?;
    start_with(cluster, options(ns, identity, cache.path()), cache).await
}

/// Starts a controller with explicit options (`cache` is kept alive with it).
pub async fn start_with(
    cluster: &TestCluster,
    options: Options,
    cache: tempfile::TempDir,
) -> anyhow::Result<RunningController> {
    let client = Client::try_from(cluster.config.clone())?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (lead_tx, lead_rx) = watch::channel(false);
    let identity = options.identity.clone();
    let task = tokio::spawn(headway_controller::run(
        client,
        options,
        async move {
            let _ = stop_rx.await;
        },
        Some(lead_tx),
    ));
    Ok(RunningController {
        identity,
        leadership: Leadership::from(lead_rx),
        stop: Some(stop_tx),
        task: Some(task),
        _cache: cache,
    })
}

/// Creates a GitSync `name` in `ns` following `url` (branch main), with `extra` merged into
/// its spec.
pub async fn create_gitsync(
    ns: &TestNamespace,
    name: &str,
    url: &str,
    extra: Value,
) -> anyhow::Result<GitSync> {
    let mut spec = json!({"repository": {"url": url}, "interval": "3s", "timeout": "60s"});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    let obj: GitSync = serde_json::from_value(json!({
        "apiVersion": "headway.dev/v1alpha1",
        "kind": "GitSync",
        "metadata": {"name": name, "namespace": ns.name},
        "spec": spec,
    }))?;
    let api: Api<GitSync> = ns.api();
    api.create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("creating GitSync {}/{name}", ns.name))
}

/// Runs a command (the `headway` binary, in the CLI's tests) to its end: its exit code (-1 when
/// a signal ended it), stdout and stderr.
pub async fn run_to_end(
    command: &mut tokio::process::Command,
) -> anyhow::Result<(i32, String, String)> {
    let out = command.output().await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A condition's `(status, reason, message)`.
pub fn condition(status: &GitSyncStatus, type_: &str) -> Option<(String, String, String)> {
    headway_controller::conditions::get(&status.conditions, type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Short description of a status for failure messages.
pub fn describe(status: Option<&GitSyncStatus>) -> String {
    match status {
        None => "no status".into(),
        Some(s) => format!(
            "generation {:?}, applied {:?}, attempted {:?}, conditions {:?}",
            s.observed_generation,
            s.last_applied_revision,
            s.last_attempted_revision,
            s.conditions
                .iter()
                .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                .collect::<Vec<_>>()
        ),
    }
}

/// Waits until the GitSync's status satisfies `check` (returning the status).
pub async fn wait_status(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&GitSync, &GitSyncStatus) -> bool,
) -> anyhow::Result<GitSync> {
    let api: Api<GitSync> = ns.api();
    wait_for(
        &format!("GitSync {}/{name}: {what}", ns.name),
        timeout,
        || {
            let api = api.clone();
            let check = &check;
            async move {
                let obj = api.get(name).await?;
                let ok = obj.status.as_ref().is_some_and(|s| check(&obj, s));
                Ok(if ok {
                    Ok(obj)
                } else {
                    Err(describe(obj.status.as_ref()))
                })
            }
        },
    )
    .await
}

/// Waits until the GitSync is Ready at `sha` (for its current generation).
pub async fn wait_ready_at(
    ns: &TestNamespace,
    name: &str,
    sha: &str,
    timeout: Duration,
) -> anyhow::Result<GitSync> {
    let revision = format!("main@sha1:{sha}");
    wait_status(
        ns,
        name,
        &format!("Ready at {revision}"),
        timeout,
        |obj, s| {
            s.observed_generation == obj.metadata.generation
                && s.last_applied_revision.as_deref() == Some(revision.as_str())
                && condition(s, "Ready").is_some_and(|(st, _, _)| st == "True")
        },
    )
    .await
}

/// The data of ConfigMap `ns/name`, or `None` when it does not exist.
pub async fn configmap_data(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|c| c.data.unwrap_or_default()))
}

/// Events about the GitSync `name` in `ns`: `(type, reason, note, reporting instance)`.
pub async fn events_of(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Vec<(String, String, String, String)>> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("GitSync") && r.name.as_deref() == Some(name)
            })
        })
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                e.reporting_instance.unwrap_or_default(),
            )
        })
        .collect())
}

/// Waits until the GitSync failed at `sha` with `reason`; returns the Ready message.
pub async fn wait_failed(
    ns: &TestNamespace,
    name: &str,
    sha: &str,
    reason: &str,
) -> anyhow::Result<String> {
    let revision = format!("main@sha1:{sha}");
    let obj = wait_status(
        ns,
        name,
        &format!("Ready=False/{reason} at {revision}"),
        Duration::from_secs(90),
        |_, s| {
            s.last_attempted_revision.as_deref() == Some(revision.as_str())
                && condition(s, "Ready").is_some_and(|(st, r, _)| st == "False" && r == reason)
        },
    )
    .await?;
    Ok(condition(obj.status.as_ref().unwrap(), "Ready").unwrap().2)
}

/// `helm ARGS charts/headway`: its standard output; the test fails when helm does.
pub fn chart_helm(args: &[&str]) -> String {
    match chart_helm_result(args) {
        Ok(text) => text,
        Err(e) => panic!("{e}"),
    }
}

/// `helm ARGS charts/headway`: its standard output, or what it said when it failed.
pub fn chart_helm_result(args: &[&str]) -> Result<String, String> {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/headway");
    let out = std::process::Command::new("helm")
        .args(args)
        .arg(&chart)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("headway-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("headway-helm-config"),
        )
        .output()
        .expect("helm on PATH (eval \"$(cargo xtask cluster env)\")");
    if !out.status.success() {
        return Err(format!(
            "helm {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A ConfigMap manifest.
pub fn configmap_yaml(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

/// A repository of `n` ConfigMaps `c0000`, `c0001`, ... under `cm/`, each one's value its
/// number, committed; with the commit.
pub fn numbered_configmaps(n: usize) -> (Upstream, String) {
    let upstream = Upstream::new();
    for i in 0..n {
        upstream.write(
            &format!("cm/c{i:04}.yaml"),
            &configmap_yaml(&format!("c{i:04}"), &i.to_string()),
        );
    }
    let head = upstream.commit("many");
    (upstream, head)
}

/// Waits until a number within `under_way` of the ConfigMaps `owned` selects exist (an apply
/// under way, not finished); returns that number.
pub async fn wait_partly_applied(
    what: &str,
    configmaps: &Api<ConfigMap>,
    owned: &ListParams,
    under_way: std::ops::Range<usize>,
    within: Duration,
) -> anyhow::Result<usize> {
    wait_for(what, within, || {
        let (configmaps, owned, under_way) = (configmaps.clone(), owned.clone(), under_way.clone());
        async move {
            let n = configmaps.list_metadata(&owned).await?.items.len();
            Ok(if under_way.contains(&n) {
                Ok(n)
            } else {
                Err(format!("{n} applied"))
            })
        }
    })
    .await
}

/// A Deployment manifest (kwok makes its pods ready).
pub fn deployment_yaml(name: &str, namespace: Option<&str>) -> String {
    let ns = namespace
        .map(|n| format!("  namespace: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n{ns}spec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: example.invalid/app:1\n"
    )
}

/// Removes the finalizer of every GitSync left in a test namespace when dropped (declare it
/// after the namespace, so it runs first): with no controller left to honour it, the finalizer
/// would keep the namespace Terminating forever. The namespace's deletion removes the rest.
pub struct Janitor {
    config: kube::Config,
    namespace: String,
}

impl Janitor {
    pub fn new(cluster: &TestCluster, ns: &TestNamespace) -> Self {
        Janitor {
            config: cluster.config.clone(),
            namespace: ns.name.clone(),
        }
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        let config = self.config.clone();
        let ns = self.namespace.clone();
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            rt.block_on(async {
                let client = Client::try_from(config)?;
                let api: Api<GitSync> = Api::namespaced(client, &ns);
                for g in api.list(&ListParams::default()).await?.items {
                    let name = g.metadata.name.unwrap_or_default();
                    api.patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await?;
                }
                anyhow::Ok(())
            })
        })
        .join();
        if let Ok(Err(e)) = joined {
            eprintln!("removing GitSync finalizers in {}: {e:#}", self.namespace);
        }
    }
}

/// The largest series count (1 for an Event without series) of the Events with `reason` about
/// the GitSync `name`, or `None` when there is none.
pub async fn event_count(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<Option<i32>> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding
                    .as_ref()
                    .is_some_and(|r| r.name.as_deref() == Some(name))
        })
        .map(|e| e.series.map(|s| s.count).unwrap_or(1))
        .max())
}

/// Deletes the named GitSyncs and waits until they are gone (their finalizers have run).
pub async fn delete_gitsyncs_and_wait(
    ns: &TestNamespace,
    names: &[&str],
    timeout: Duration,
) -> anyhow::Result<()> {
    let gitsyncs: Api<GitSync> = ns.api();
    for name in names {
        gitsyncs
            .delete(name, &kube::api::DeleteParams::default())
            .await?;
    }
    wait_for("the GitSyncs are gone", timeout, || {
        let gitsyncs = gitsyncs.clone();
        async move {
            let left = gitsyncs.list(&Default::default()).await?.items.len();
            Ok(if left == 0 {
                Ok(())
            } else {
                Err(format!("{left} left"))
            })
        }
    })
    .await
}
