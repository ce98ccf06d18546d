//! Helpers of the fault scenarios (`faults.rs`): the controller as a child process on the fault
//! cluster, the bystander, and the counts each scenario's figures are made of.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use headway_tests::controller::{ControllerProcess, ControllerSpec};
use headway_tests::faults::{FaultCluster, Toxiproxy, fault_cluster};
use headway_tests::git::Upstream;
use headway_tests::{TestCluster, TestNamespace, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};

use crate::support::{Janitor, configmap_yaml, git_enabled, install_crd};

/// The scenarios run one at a time: one kills the API server the others use.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The lease duration of the partition scenario's controllers (the others use 15 s).
pub const LEASE_SECONDS: u64 = 6;

/// Requests in flight within one sync (the controller's default).
pub const APPLY_CONCURRENCY: usize = 32;

/// What every scenario starts with: the fault cluster (none when the fault suite is off: the
/// test returns), the lock that runs the scenarios one at a time, the GitSync CRD, a namespace
/// of its own and a temporary directory. Dropped in field order: the GitSyncs' finalizers are
/// removed before the namespace is deleted, and the lock is released last.
pub struct Scenario {
    _janitor: Janitor,
    ns: TestNamespace,
    dir: tempfile::TempDir,
    cluster: TestCluster,
    fc: FaultCluster,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Scenario {
    /// Starts the scenario `test` in a namespace named after `namespace`; `None` when the fault
    /// suite or the git servers are off.
    pub async fn start(test: &str, namespace: &str) -> anyhow::Result<Option<Scenario>> {
        let Some(fc) = fault_cluster(test).await else {
            return Ok(None);
        };
        let serial = SERIAL.lock().await;
        if !git_enabled(test) {
            return Ok(None);
        }
        let cluster = fc.cluster.clone();
        install_crd(&cluster.client).await?;
        let ns = cluster.namespace(namespace).await?;
        Ok(Some(Scenario {
            _janitor: Janitor::new(&cluster, &ns),
            ns,
            dir: tempfile::tempdir()?,
            cluster,
            fc,
            _serial: serial,
        }))
    }

    /// The fault cluster, its client, the namespace and the directory.
    pub fn parts(&self) -> (&FaultCluster, &TestCluster, &TestNamespace, &Path) {
        (&self.fc, &self.cluster, &self.ns, self.dir.path())
    }
}

/// A `headway controller` child process on the fault cluster; killed on drop.
pub struct Controller(ControllerProcess);

impl Controller {
    pub fn start(fc: &FaultCluster, ns: &str, dir: &Path) -> anyhow::Result<Controller> {
        Self::start_with(&fc.kubeconfig, ns, dir)
    }

    /// With another kubeconfig (the API server behind a proxy).
    pub fn start_with(kubeconfig: &Path, ns: &str, dir: &Path) -> anyhow::Result<Controller> {
        Self::start_named(kubeconfig, ns, dir, "faults", APPLY_CONCURRENCY, 15)
    }

    /// As `identity`, with `apply_concurrency` requests in flight per sync.
    pub fn start_named(
        kubeconfig: &Path,
        ns: &str,
        dir: &Path,
        identity: &str,
        apply_concurrency: usize,
        lease_seconds: u64,
    ) -> anyhow::Result<Controller> {
        ControllerSpec::new(env!("CARGO_BIN_EXE_headway"), dir, identity)
            .kubeconfig(kubeconfig)
            .namespace(ns)
            .lease_seconds(lease_seconds)
            .args(["--apply-concurrency", &apply_concurrency.to_string()])
            .start()
            .map(Controller)
    }

    /// As `identity`, with more arguments.
    pub fn start_args(
        kubeconfig: &Path,
        ns: &str,
        dir: &Path,
        identity: &str,
        args: &[&str],
    ) -> anyhow::Result<Controller> {
        ControllerSpec::new(env!("CARGO_BIN_EXE_headway"), dir, identity)
            .kubeconfig(kubeconfig)
            .namespace(ns)
            .args(args.iter().copied())
            .start()
            .map(Controller)
    }

    /// SIGKILL: nothing is finished or released.
    pub fn kill(&mut self) {
        self.0.kill();
    }

    pub fn log_text(&self) -> String {
        self.0.log_text()
    }

    /// The ERROR lines logged so far.
    pub fn error_lines(&self) -> Vec<String> {
        self.0.error_lines()
    }
}

/// A kubeconfig (in `dir`) reaching the fault cluster's API server through the toxiproxy proxy
/// `name`, created here.
pub fn proxied_kubeconfig(
    fc: &FaultCluster,
    proxy: &Toxiproxy,
    name: &str,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let api_port = fc
        .cluster
        .config
        .cluster_url
        .port_u16()
        .context("the API server's port")?;
    let port = proxy.proxy(name, api_port)?;
    let text = std::fs::read_to_string(&fc.kubeconfig)?.replace(
        &format!("127.0.0.1:{api_port}"),
        &format!("127.0.0.1:{port}"),
    );
    let path = dir.join(format!("kubeconfig-{name}"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A ConfigMap Headway did not create, in the sync's namespace: it must stay untouched.
pub async fn create_bystander(ns: &TestNamespace) -> anyhow::Result<String> {
    let api: Api<ConfigMap> = ns.api();
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "bystander"},
        "data": {"owner": "someone else"},
    }))?;
    let created = api.create(&PostParams::default(), &cm).await?;
    Ok(created.metadata.resource_version.unwrap_or_default())
}

/// Prints how many ERROR lines each source (tracing target and message) logged.
pub fn print_error_sources(errors: &[String]) {
    let mut by_source = std::collections::BTreeMap::<String, usize>::new();
    for line in errors {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let key = format!(
            "{}: {}",
            v["target"].as_str().unwrap_or("?"),
            v["message"]
                .as_str()
                .unwrap_or("?")
                .chars()
                .take(80)
                .collect::<String>()
        );
        *by_source.entry(key).or_default() += 1;
    }
    for (source, n) in by_source {
        println!("  {n:>5} ERROR {source}");
    }
}

/// The names of the ConfigMaps `selector` selects.
pub async fn names_of(
    api: &Api<ConfigMap>,
    selector: &ListParams,
) -> anyhow::Result<BTreeSet<String>> {
    Ok(api
        .list_metadata(selector)
        .await?
        .items
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .collect())
}

/// Waits until the API server answers again; returns when it did.
pub async fn wait_api(fc: &FaultCluster) -> anyhow::Result<Instant> {
    let client = fc.cluster.client.clone();
    wait_for("the API server to answer", Duration::from_secs(120), || {
        let client = client.clone();
        async move {
            Ok(match client.apiserver_version().await {
                Ok(_) => Ok(Instant::now()),
                Err(e) => Err(e.to_string()),
            })
        }
    })
    .await
}

/// The `sync failed` lines the controller logged with `reason` (one per failed attempt).
pub fn failed_attempts(log: &str, reason: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("\"message\":\"sync failed\"") && l.contains(reason))
        .count()
}

/// `name -> uid` of the ConfigMaps `selector` selects.
pub async fn uids_of(
    api: &Api<ConfigMap>,
    selector: &ListParams,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    Ok(api
        .list_metadata(selector)
        .await?
        .items
        .into_iter()
        .filter_map(|m| Some((m.metadata.name?, m.metadata.uid?)))
        .collect())
}

/// Objects of `before` that git still has (`kept`) but that are gone or were recreated.
pub fn wrong_deletes(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
    kept: &BTreeSet<String>,
) -> usize {
    kept.iter()
        .filter(|n| before.contains_key(*n) && before.get(*n) != after.get(*n))
        .count()
}

/// A repository of `n` ConfigMaps `c00..`, with `value` in each.
pub fn write_configmaps(upstream: &Upstream, range: std::ops::Range<usize>, value: &str) {
    for i in range {
        upstream.write(
            &format!("cm/c{i:02}.yaml"),
            &configmap_yaml(&format!("c{i:02}"), value),
        );
    }
}

/// The bystander is there with the resourceVersion it was created with.
pub async fn bystander_untouched(ns: &TestNamespace, version: &str) -> anyhow::Result<bool> {
    let api: Api<ConfigMap> = ns.api();
    Ok(api
        .get_opt("bystander")
        .await?
        .and_then(|b| b.metadata.resource_version)
        .as_deref()
        == Some(version))
}
