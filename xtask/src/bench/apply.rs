//! `cargo xtask bench apply`: Headway's apply engine against (a) the floor, the same objects
//! sent as concurrent server-side applies by a minimal client with no checks, Deployments
//! watched until Current ([`super::floor`] says why it is the fastest found), and
//! (b) `kubectl apply --server-side -f` followed by `kubectl wait`, in the same run, each from an
//! empty cluster to every object applied and Current. Then a no-op re-apply of unchanged objects
//! with the API requests counted.
//!
//! The cluster is the one of `KUBECONFIG`; run it on a cluster of its own (`cargo xtask cluster
//! up --state-dir /tmp/bench-cluster --port-base 19443`), not the shared one: the bench refuses
//! the default port 16443 unless `--allow-shared-cluster`. It registers one extra kwok node with
//! room for 20,000 pods, so every Deployment can become available.
//!
//! Objects: `N` split evenly into Deployments (1 replica), Services, ConfigMaps and Secrets over
//! 50 namespaces (plus the 50 Namespace objects). The Services are headless: the local cluster's
//! service range (10.0.0.0/24) holds 254 addresses, fewer than the 1,250 Services of N = 5,000. Each contender uses its own namespaces, which
//! are deleted (and waited for) before the next contender starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use headway_apply::{Engine, EngineOptions, SyncRequest, counting_client};
use headway_model::{Manifest, SourceLocation};
use headway_model::{RenderedSet, SyncOwner};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::floor::resource;
use crate::paths::Paths;

/// What to measure.
#[derive(clap::Args, Clone, Debug)]
pub struct Params {
    /// Object counts (Deployments, Services, ConfigMaps, Secrets in equal parts).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub sizes: Vec<usize>,
    /// Size whose no-op re-apply is measured.
    #[arg(long, default_value_t = 1_000)]
    pub noop: usize,
    /// Requests in flight (Headway and the floor).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Namespaces the objects are spread over.
    #[arg(long, default_value_t = 50)]
    pub namespaces: usize,
    /// Do not run kubectl.
    #[arg(long)]
    pub skip_kubectl: bool,
    /// Allow running against the shared cluster on port 16443.
    #[arg(long)]
    pub allow_shared_cluster: bool,
    /// Measure Headway before the floor.
    #[arg(long)]
    pub headway_first: bool,
}

const LABEL: &str = "headway.dev/bench";
const NODE: &str = "headway-bench-node";
const TIMEOUT: Duration = Duration::from_secs(1800);

/// One contender's result for one size.
#[derive(Debug, Clone)]
struct Measured {
    /// Until the API server accepted every object.
    apply: Duration,
    /// Until every object was Current.
    total: Duration,
    /// API requests (when counted).
    requests: Option<u64>,
}

/// Runs the benchmark and prints a Markdown summary.
pub fn run(paths: &Paths, params: Params) -> anyhow::Result<()> {
    ensure!(
        params.sizes.contains(&params.noop),
        "--noop {} must be one of --sizes",
        params.noop
    );
    let kubectl = paths.bin().join("kubectl");
    ensure!(
        params.skip_kubectl || kubectl.is_file(),
        "{} is missing: run `cargo xtask cluster build` first",
        kubectl.display()
    );
    super::cluster::block_on(run_async(paths, &kubectl, params))
}

async fn run_async(_paths: &Paths, kubectl: &Path, params: Params) -> anyhow::Result<()> {
    let config = super::bench_config("apply", 19443, params.allow_shared_cluster).await?;
    let url = config.cluster_url.to_string();
    let kubeconfig =
        std::env::var("KUBECONFIG").context("KUBECONFIG must name the cluster's kubeconfig")?;
    let (client, counter) = counting_client(config.clone(), params.concurrency)?;
    println!("cluster {url}; concurrency {}", params.concurrency);
    register_node(&client).await?;
    // Leftovers of an interrupted run would make the first apply a no-op.
    for &n in &params.sizes {
        for who in ["floor", "headway", "kubectl"] {
            delete_namespaces(&client, &format!("{who}-{n}"), params.namespaces).await?;
        }
    }

    let mut summary = String::new();
    let mut results: BTreeMap<usize, BTreeMap<&str, Measured>> = BTreeMap::new();
    let mut noop_lines = Vec::new();
    for &n in &params.sizes {
        let floor = if params.headway_first {
            None
        } else {
            Some(measure_floor(&client, n, &params).await?)
        };
        let prefix = format!("headway-{n}");
        let set = rendered_set(&objects(&prefix, n, params.namespaces))?;
        let engine = Arc::new(
            Engine::new(
                client.clone(),
                EngineOptions {
                    concurrency: params.concurrency,
                    ..EngineOptions::default()
                },
            )
            .await?,
        );
        let owner = SyncOwner::new("default", &prefix)?;
        let mut req = SyncRequest::new(owner.clone(), "default", set);
        req.prune = true;
        req.wait = true;
        req.timeout = TIMEOUT;
        let before = counter.count();
        let started = Instant::now();
        let report = engine.sync(&req).await?;
        let total = started.elapsed();
        ensure!(
            report.is_ok(),
            "headway sync of {n} objects failed: {:?}\n{}",
            report.failure,
            report.changes.describe_changes()
        );
        let apply: Duration = report
            .timings
            .iter()
            .filter(|(s, _)| s.starts_with("apply"))
            .map(|(_, d)| *d)
            .sum();
        let steps: Vec<String> = report
            .timings
            .iter()
            .map(|(step, d)| format!("{step} {d:.2?}"))
            .collect();
        println!("  headway steps: {}", steps.join(", "));
        let headway = Measured {
            apply,
            total,
            requests: Some(report.requests),
        };
        println!(
            "N={n} headway: apply {:.2?}, total {:.2?}, {} requests counted by the engine, {} by the client ({})",
            apply,
            total,
            report.requests,
            counter.count() - before,
            report.changes
        );
        if n == params.noop {
            // Warm: the same engine (a running controller).
            let before = counter.count();
            let started = Instant::now();
            let again = engine.sync(&req).await?;
            let warm = started.elapsed();
            ensure!(
                again.is_ok() && !again.changes.has_changes(),
                "no-op re-apply changed something: {}",
                again.changes.describe_changes()
            );
            let warm_http = counter.count() - before;
            // Cold: a new engine (a restarted controller), every object applied once.
            let cold_engine = Engine::new(
                client.clone(),
                EngineOptions {
                    concurrency: params.concurrency,
                    ..EngineOptions::default()
                },
            )
            .await?;
            let before = counter.count();
            let started = Instant::now();
            let cold = cold_engine.sync(&req).await?;
            let cold_time = started.elapsed();
            ensure!(
                cold.is_ok() && !cold.changes.has_changes(),
                "cold no-op re-apply changed something: {}",
                cold.changes.describe_changes()
            );
            let cold_http = counter.count() - before;
            let objects = req.set.manifests().len();
            let line = format!(
                "| {objects} | warm (running engine) | {warm:.2?} | {:.1}% | {} ({:.3}/object) | {warm_http} |\n| {objects} | cold (restarted engine) | {cold_time:.2?} | {:.1}% | {} ({:.3}/object) | {cold_http} |",
                100.0 * warm.as_secs_f64() / total.as_secs_f64(),
                again.requests,
                again.requests as f64 / objects as f64,
                100.0 * cold_time.as_secs_f64() / total.as_secs_f64(),
                cold.requests,
                cold.requests as f64 / objects as f64,
            );
            println!("{line}");
            noop_lines.push(line);
        }
        delete_namespaces(&client, &prefix, params.namespaces).await?;

        let floor = match floor {
            Some(f) => f,
            None => measure_floor(&client, n, &params).await?,
        };
        let mut row = BTreeMap::from([("floor", floor), ("headway", headway)]);
        if !params.skip_kubectl {
            let prefix = format!("kubectl-{n}");
            let k = kubectl_apply(
                kubectl,
                &kubeconfig,
                &prefix,
                &objects(&prefix, n, params.namespaces),
            )
            .await?;
            println!(
                "N={n} kubectl: apply {:.2?}, total {:.2?}",
                k.apply, k.total
            );
            delete_namespaces(&client, &prefix, params.namespaces).await?;
            row.insert("kubectl", k);
        }
        results.insert(n, row);
    }

    writeln!(
        summary,
        "| objects (+{} namespaces) | contender | applied | applied and Current | requests |",
        params.namespaces
    )?;
    writeln!(summary, "|---|---|---|---|---|")?;
    for (n, row) in &results {
        for (who, m) in row {
            let requests = m.requests.map_or("-".to_string(), |r| r.to_string());
            writeln!(
                summary,
                "| {n} | {who} | {:.2?} | {:.2?} | {requests} |",
                m.apply, m.total
            )?;
        }
    }
    writeln!(summary)?;
    writeln!(
        summary,
        "| objects | Headway / floor (total) | kubectl / Headway (total) | Headway / floor (apply) | kubectl / Headway (apply) |"
    )?;
    writeln!(summary, "|---|---|---|---|---|")?;
    for (n, row) in &results {
        let h = &row["headway"];
        let f = &row["floor"];
        let ratio = |a: Duration, b: Duration| format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64());
        let (kt, ka) = match row.get("kubectl") {
            Some(k) => (ratio(k.total, h.total), ratio(k.apply, h.apply)),
            None => ("-".into(), "-".into()),
        };
        writeln!(
            summary,
            "| {n} | {} | {kt} | {} | {ka} |",
            ratio(h.total, f.total),
            ratio(h.apply, f.apply)
        )?;
    }
    writeln!(summary)?;
    writeln!(
        summary,
        "| objects | no-op re-apply | time | share of the full apply | requests (engine) | HTTP requests (client) |"
    )?;
    writeln!(summary, "|---|---|---|---|---|---|")?;
    for line in noop_lines {
        writeln!(summary, "{line}")?;
    }
    println!("\n{summary}");
    Ok(())
}

/// The floor for `n` objects, its namespaces deleted afterwards.
async fn measure_floor(
    client: &kube::Client,
    n: usize,
    params: &Params,
) -> anyhow::Result<Measured> {
    let prefix = format!("floor-{n}");
    let floor = floor_apply(
        client,
        &objects(&prefix, n, params.namespaces),
        params.concurrency,
    )
    .await?;
    println!(
        "N={n} floor: apply {:.2?}, total {:.2?}",
        floor.apply, floor.total
    );
    delete_namespaces(client, &prefix, params.namespaces).await?;
    Ok(floor)
}

/// The objects of one contender: namespaces first, then `n` objects round-robin over kinds and
/// namespaces.
fn objects(prefix: &str, n: usize, namespaces: usize) -> Vec<Value> {
    let label = json!({LABEL: prefix});
    let ns_name = |i: usize| format!("{prefix}-{i:02}");
    let mut out: Vec<Value> = (0..namespaces)
        .map(|i| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_name(i), "labels": label}}))
        .collect();
    for i in 0..n {
        let ns = ns_name(i % namespaces);
        let name = format!("app-{:05}", i / 4);
        let meta = json!({"name": name, "namespace": ns, "labels": {LABEL: prefix, "app": name}});
        out.push(match i % 4 {
            0 => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                "data": {"config.yaml": format!("name: {name}\nreplicas: 1\nlog: info\n")}}),
            1 => json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
                "data": {"token": "c2VjcmV0LXRva2VuLXZhbHVl"}}),
            2 => json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                "spec": {"clusterIP": "None", "selector": {"app": name},
                    "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
            _ => json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "app", "image": "registry.invalid/bench:1",
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}}),
        });
    }
    out
}

fn rendered_set(objects: &[Value]) -> anyhow::Result<RenderedSet> {
    let manifests = objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let source = SourceLocation {
                file: "bench".into(),
                document: i,
                line: None,
            };
            Manifest::from_object(o.clone(), source).map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(RenderedSet::from_complete_render("bench", manifests)?)
}

/// The floor (see [`super::floor`]): namespaces first, then every object at once (Deployments
/// first), `concurrency` in flight, Deployments watched until all are Current.
async fn floor_apply(
    client: &kube::Client,
    objects: &[Value],
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let prefix = objects[0]["metadata"]["labels"][LABEL]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let floor = super::floor::recreate(
        client,
        objects,
        concurrency,
        &format!("{LABEL}={prefix}"),
        TIMEOUT,
    )
    .await?;
    Ok(Measured {
        apply: floor.applied,
        total: floor.total,
        requests: None,
    })
}

/// `kubectl apply --server-side -f` of one JSON List, then `kubectl wait` for the Deployments.
async fn kubectl_apply(
    kubectl: &Path,
    kubeconfig: &str,
    prefix: &str,
    objects: &[Value],
) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("objects.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": objects}))?,
    )?;
    let run = |args: Vec<String>| {
        let output = Command::new(kubectl)
            .env("KUBECONFIG", kubeconfig)
            .args(&args)
            .output()?;
        ensure!(
            output.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        anyhow::Ok(())
    };
    let started = Instant::now();
    run(vec![
        "apply".into(),
        "--server-side".into(),
        "-f".into(),
        file.display().to_string(),
    ])?;
    let apply = started.elapsed();
    run(vec![
        "wait".into(),
        "deployment".into(),
        "--all-namespaces".into(),
        "-l".into(),
        format!("{LABEL}={prefix}"),
        "--for=condition=Available".into(),
        format!("--timeout={}s", TIMEOUT.as_secs()),
    ])?;
    Ok(Measured {
        apply,
        total: started.elapsed(),
        requests: None,
    })
}

/// Deletes a contender's namespaces and waits until they are gone.
pub(crate) async fn delete_namespaces(
    client: &kube::Client,
    prefix: &str,
    namespaces: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource("v1", "Namespace"));
    for i in 0..namespaces {
        match api
            .delete(&format!("{prefix}-{i:02}"), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let lp = ListParams::default().labels(&format!("{LABEL}={prefix}"));
    loop {
        let left = api.list_metadata(&lp).await?.items.len();
        if left == 0 {
            break;
        }
        ensure!(
            started.elapsed() < TIMEOUT,
            "{left} namespaces of {prefix} still there"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The inventory of a Headway sync (in `default`).
    let cms: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &resource("v1", "ConfigMap"));
    let lp = ListParams::default().labels(&format!("headway.dev/inventory-of={prefix}"));
    for cm in cms.list_metadata(&lp).await?.items {
        cms.delete(
            &cm.metadata.name.unwrap_or_default(),
            &DeleteParams::default(),
        )
        .await?;
    }
    println!(
        "  deleted the namespaces of {prefix} in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

/// A kwok node with room for every bench pod (the cluster's own node takes 110).
pub(crate) async fn register_node(client: &kube::Client) -> anyhow::Result<()> {
    let nodes: Api<DynamicObject> = Api::all_with(client.clone(), &resource("v1", "Node"));
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": NODE, "type": "kwok"}},
        "spec": {},
        "status": {"allocatable": {"cpu": "10000", "memory": "10000Gi", "pods": "20000"},
            "capacity": {"cpu": "10000", "memory": "10000Gi", "pods": "20000"}}
    });
    nodes
        .patch(
            NODE,
            &PatchParams::apply(super::cluster::MANAGER).force(),
            &Patch::Apply(&node),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = nodes.get(NODE).await?;
        let ready = n.data["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "node {NODE} not Ready after 60s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
