//! `cargo xtask bench mttr`: the disaster-recovery drill as a benchmark. A generated repository
//! of `--objects` objects (a CRD and its custom resources, Namespaces, Deployments, headless
//! Services, ConfigMaps, Secrets, and a Helm chart of its own) is served by `git daemon` and
//! synced by a `headway controller` (release build, a child process) through two GitSyncs (the
//! plain directory and the chart). Then the disaster: every workload namespace and the CRD
//! (cluster-scoped; its custom resources go with it) are deleted, and the run waits until they
//! are gone. `headway rebuild --wait` asks for the rebuild and is timed until every object is
//! back and Current (the time to recover). The controller's own record (`status.lastRebuild`)
//! gives each stage's share.
//!
//! The floor, in the same run: the same disaster again, then the same objects (the chart's
//! rendered by `helm template` beforehand) re-created by [`super::floor`], the fastest plain
//! client found, until Current. Target: Headway at most 1.5x the floor.
//!
//! Run it on a cluster of its own (`cargo xtask cluster up --state-dir /tmp/mttr-cluster
//! --port-base 19443`); it refuses the shared cluster on port 16443 unless
//! `--allow-shared-cluster`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use headway_controller::crd::GitSync;
use headway_tests::controller::{ControllerProcess, ControllerSpec};
use kube::CustomResourceExt as _;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};

use super::floor::{self, resource};
use crate::gitserve::{GitDaemon, commit_all, init_pair};
use crate::paths::Paths;

/// What to measure.
#[derive(clap::Args, Clone, Debug)]
pub struct Params {
    /// Objects in all (the chart's included).
    #[arg(long, default_value_t = 1_000)]
    pub objects: usize,
    /// Workload namespaces of the plain directory (the chart has one more).
    #[arg(long, default_value_t = 20)]
    pub namespaces: usize,
    /// Objects rendered by the Helm chart (its Namespace included).
    #[arg(long, default_value_t = 100)]
    pub chart_objects: usize,
    /// Requests in flight (the controller's `--apply-concurrency` and the floor's).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Allow running against the shared cluster on port 16443.
    #[arg(long)]
    pub allow_shared_cluster: bool,
}

const SYSTEM: &str = "mttr-system";
const LABEL: &str = "headway.dev/bench";
const VALUE: &str = "mttr";
const CRD: &str = "widgets.mttr.headway.dev";
const TIMEOUT: Duration = Duration::from_secs(900);
const TARGET: f64 = 1.5;

/// Runs the benchmark and prints a Markdown summary.
pub fn run(paths: &Paths, params: Params) -> anyhow::Result<()> {
    ensure!(
        params.objects > params.chart_objects + params.namespaces + 10 && params.chart_objects >= 4,
        "bad parameters {params:?}"
    );
    let headway = super::build_headway(paths, true)?;
    super::cluster::block_on(run_async(paths, &headway, &params))
}

/// The objects of the plain directory: the CRD, the namespaces, then the rest round-robin over
/// Deployments, Services, ConfigMaps, Secrets and Widgets (the custom resources).
fn plain_objects(params: &Params) -> Vec<Value> {
    let labels = json!({LABEL: VALUE});
    let mut out = vec![json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD, "labels": labels},
        "spec": {"group": "mttr.headway.dev", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer", "format": "int32"},
                        "color": {"type": "string"}}}}}}}]}
    })];
    let ns = |i: usize| format!("mttr-{i:02}");
    for i in 0..params.namespaces {
        out.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns(i), "labels": labels}}));
    }
    let rest = params.objects - params.chart_objects - out.len();
    for i in 0..rest {
        let name = format!("obj-{i:04}");
        let app = format!("app-{i:04}");
        let meta = json!({"name": name, "namespace": ns(i % params.namespaces), "labels": {LABEL: VALUE, "app": app}});
        out.push(match i % 5 {
            0 => deployment(meta, &app),
            1 => json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                "spec": {"clusterIP": "None", "selector": {"app": app},
                    "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
            2 => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                "data": {"config.yaml": format!("name: {name}\nlog: info\n")}}),
            3 => json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
                "data": {"token": "c2VjcmV0LXRva2VuLXZhbHVl"}}),
            _ => json!({"apiVersion": "mttr.headway.dev/v1", "kind": "Widget", "metadata": meta,
                "spec": {"size": i, "color": "blue"}}),
        });
    }
    out
}

fn deployment(meta: Value, app: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/mttr:1",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}})
}

/// The chart's objects (its values; the templates print them with labels added).
fn chart_objects(params: &Params) -> Vec<Value> {
    let ns = "mttr-helm";
    let mut out = vec![json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {LABEL: VALUE}}})];
    for i in 0..params.chart_objects - 1 {
        let app = format!("chart-app-{i:03}");
        let meta = json!({"name": format!("chart-{i:03}"), "namespace": ns, "labels": {LABEL: VALUE, "app": app}});
        out.push(match i % 4 {
            0 => deployment(meta, &app),
            1 => json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                "spec": {"clusterIP": "None", "selector": {"app": app},
                    "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
            _ => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                "data": {"index": i.to_string()}}),
        });
    }
    out
}

fn make_repository(dir: &Path, plain: &[Value], chart: &[Value]) -> anyhow::Result<()> {
    let work = dir.join("work");
    let bare = dir.join("srv/mttr.git");
    std::fs::create_dir_all(work.join("plain"))?;
    std::fs::create_dir_all(work.join("chart/templates"))?;
    std::fs::create_dir_all(&bare)?;
    // JSON is YAML: one file per 50 objects, as a repository would split them.
    for (k, chunk) in plain.chunks(50).enumerate() {
        let docs: Vec<String> = chunk
            .iter()
            .map(|o| serde_json::to_string(o).expect("JSON"))
            .collect();
        std::fs::write(
            work.join(format!("plain/part-{k:03}.yaml")),
            docs.join("\n---\n"),
        )?;
    }
    std::fs::write(
        work.join("chart/Chart.yaml"),
        "apiVersion: v2\nname: mttr\nversion: 1.0.0\n",
    )?;
    std::fs::write(
        work.join("chart/values.yaml"),
        serde_json::to_string(&json!({ "objects": chart }))?,
    )?;
    std::fs::write(
        work.join("chart/templates/objects.yaml"),
        "{{- range .Values.objects }}\n---\n{{ toJson . }}\n{{- end }}\n",
    )?;
    init_pair(&work, &bare)?;
    commit_all(&work, &bare, "mttr")?;
    Ok(())
}

async fn run_async(paths: &Paths, headway: &Path, params: &Params) -> anyhow::Result<()> {
    let config = super::bench_config("mttr", 19443, params.allow_shared_cluster).await?;
    let url = config.cluster_url.to_string();
    let kubeconfig =
        std::env::var("KUBECONFIG").context("KUBECONFIG must name the cluster's kubeconfig")?;
    let client = kube::Client::try_from(config)?;
    super::apply::register_node(&client).await?;
    let plain = plain_objects(params);
    let chart = chart_objects(params);
    let all: Vec<Value> = plain.iter().chain(&chart).cloned().collect();
    let namespaces: Vec<String> = all
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
        .collect();
    println!(
        "cluster {url}; {} objects ({} namespaces, {} from the Helm chart), concurrency {}",
        all.len(),
        namespaces.len(),
        chart.len(),
        params.concurrency
    );
    disaster(&client, &namespaces).await?; // leftovers of an interrupted run

    let dir = tempfile::tempdir()?;
    make_repository(dir.path(), &plain, &chart)?;
    let daemon = GitDaemon::start(&dir.path().join("srv"))?;
    let repo_url = daemon.url("mttr.git");
    // The chart's objects as Helm renders them, for the floor (not timed).
    let rendered = helm_template(paths, &dir.path().join("work/chart"))?;
    ensure!(
        rendered.len() == chart.len(),
        "helm template rendered {} objects, expected {}",
        rendered.len(),
        chart.len()
    );

    // The GitSync CRD, the controller's namespace, the controller.
    headway_tests::install_crd(&client, &GitSync::crd()).await?;
    let ns_api: Api<DynamicObject> = Api::all_with(client.clone(), &resource("v1", "Namespace"));
    super::cluster::apply_namespace(&client, SYSTEM).await?;
    let mut controller = ControllerSpec::new(headway, dir.path(), "mttr")
        .namespace(SYSTEM)
        .args(["--concurrency", "4"])
        .args(["--apply-concurrency", &params.concurrency.to_string()])
        .log_level("warn")
        .env("KUBECONFIG", &kubeconfig)
        .start()?;
    let log = controller.log_path().to_path_buf();
    let syncs: Api<GitSync> = Api::namespaced(client.clone(), SYSTEM);
    let started = Instant::now();
    for (name, path) in [("plain", "plain"), ("chart", "chart")] {
        let obj = super::cluster::gitsync(
            name,
            SYSTEM,
            json!({"repository": {"url": repo_url}, "path": path, "interval": "1h",
                "selfHeal": false, "timeout": "15m", "deletionPolicy": "Orphan"}),
        )?;
        match syncs.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            r => {
                r?;
            }
        }
    }
    wait_ready(&syncs, &mut controller).await?;
    println!(
        "initial sync: both GitSyncs Ready after {:.1?}",
        started.elapsed()
    );

    // Headway: the disaster, then `headway rebuild --wait`.
    let gone = disaster(&client, &namespaces).await?;
    println!("disaster: namespaces and the CRD deleted and gone in {gone:.1?}");
    let started = Instant::now();
    let out = Command::new(headway)
        .args([
            "rebuild",
            "-n",
            SYSTEM,
            "--wait",
            "--timeout",
            "900",
            "-o",
            "json",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .context("running headway rebuild")?;
    let headway_time = started.elapsed();
    ensure!(
        out.status.success(),
        "headway rebuild failed: {}{}\ncontroller log: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        log.display()
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    let recovery = report["recoverySeconds"].as_f64().unwrap_or_default();
    println!(
        "headway rebuild --wait: {headway_time:.2?} (the command's recovery time {recovery:.2} s)"
    );
    let mut stage_rows = Vec::new();
    for name in ["plain", "chart"] {
        let status = syncs.get(name).await?.status.context("status")?;
        let record = status.last_rebuild.context("no lastRebuild")?;
        let counts = status.objects.context("no object counts")?;
        ensure!(
            record.result == "Succeeded" && counts.current == counts.total,
            "{name}: rebuild {} with {}/{} Current",
            record.result,
            counts.current,
            counts.total
        );
        let stages: Vec<String> = record
            .stages
            .iter()
            .map(|s| {
                format!(
                    "{} {} ms ({:.0}%)",
                    s.name,
                    s.duration_ms,
                    100.0 * s.duration_ms as f64 / record.duration_ms.max(1) as f64
                )
            })
            .collect();
        stage_rows.push(format!(
            "| {name} | {} | {} ms | {} |",
            counts.total,
            record.duration_ms,
            stages.join(", ")
        ));
    }
    // Free the objects from the controller (Orphan), stop it.
    syncs
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !syncs.list(&ListParams::default()).await?.items.is_empty() {
        ensure!(Instant::now() < deadline, "GitSyncs not gone after 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(controller);

    // The floor: the same disaster, the same objects.
    let gone = disaster(&client, &namespaces).await?;
    println!("disaster again: gone in {gone:.1?}");
    let floor_objects: Vec<Value> = plain.iter().chain(&rendered).cloned().collect();
    let f = floor::recreate(
        &client,
        &floor_objects,
        params.concurrency,
        &format!("{LABEL}={VALUE}"),
        TIMEOUT,
    )
    .await?;
    println!("floor: applied {:.2?}, Current {:.2?}", f.applied, f.total);
    disaster(&client, &namespaces).await?;
    let _ = ns_api.delete(SYSTEM, &DeleteParams::background()).await;
    drop(daemon);

    let ratio = headway_time.as_secs_f64() / f.total.as_secs_f64();
    println!();
    println!("## mttr: recovery after the namespaces and the CRD are deleted");
    println!();
    println!("| contender | objects | time to everything Current |");
    println!("|---|---|---|");
    println!(
        "| Headway (`headway rebuild --wait`, wall clock) | {} | {headway_time:.2?} |",
        all.len()
    );
    println!(
        "| floor (SSA, watch; applied after {:.2?}) | {} | {:.2?} |",
        f.applied,
        floor_objects.len(),
        f.total
    );
    println!();
    println!(
        "Headway / floor: {ratio:.2}x (target at most {TARGET}x: {})",
        if ratio <= TARGET { "met" } else { "NOT met" }
    );
    println!();
    println!("| GitSync | objects | lastRebuild | stages (share of the rebuild) |");
    println!("|---|---|---|---|");
    for row in stage_rows {
        println!("{row}");
    }
    Ok(())
}

/// Deletes the workload namespaces and the CRD and waits until they are gone; how long it took.
async fn disaster(client: &kube::Client, namespaces: &[String]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let ns_api: Api<DynamicObject> = Api::all_with(client.clone(), &resource("v1", "Namespace"));
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &resource("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    );
    for n in namespaces {
        match ns_api.delete(n, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    match crds.delete(CRD, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    loop {
        let mut left = 0;
        for n in namespaces {
            left += usize::from(ns_api.get_opt(n).await?.is_some());
        }
        left += usize::from(crds.get_opt(CRD).await?.is_some());
        if left == 0 {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < TIMEOUT,
            "{left} namespaces or CRDs still there after {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_ready(
    syncs: &Api<GitSync>,
    controller: &mut ControllerProcess,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        controller.ensure_running()?;
        let list = syncs.list(&ListParams::default()).await?;
        let ready = super::cluster::ready_count(&list.items)?;
        if ready == 2 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "only {ready} of 2 GitSyncs Ready after {TIMEOUT:?}; controller log {}",
            controller.log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `helm template` of the chart: its objects as JSON values.
fn helm_template(paths: &Paths, chart: &Path) -> anyhow::Result<Vec<Value>> {
    let out = Command::new(paths.bin().join("helm"))
        .args(["template", "mttr"])
        .arg(chart)
        .output()
        .context("running helm template")?;
    ensure!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The template prints one JSON document per object.
    String::from_utf8(out.stdout)?
        .split("\n---")
        .filter_map(|doc| {
            let json: String = doc
                .lines()
                .filter(|l| !l.starts_with('#') && l.trim() != "---")
                .collect::<Vec<_>>()
                .join("\n");
            (!json.trim().is_empty()).then(|| serde_json::from_str(&json).context("helm output"))
        })
        .collect()
}
