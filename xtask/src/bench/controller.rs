//! `cargo xtask bench controller`: the steady-state memory of the `headway controller` process
//! (release build) managing 5,000 objects in 10 GitSyncs (target: at most 100 MiB resident;
//! Flux's kustomize-controller is reported at 190 MiB for 1,000 Kustomizations).
//!
//! A git repository with `syncs` directories of `objects / syncs` objects each (a Namespace,
//! then ConfigMaps, Secrets and headless Services in a 5:3:2 ratio: no Pods, so the cluster's
//! simulated kubelet is not what is measured, and no cluster IPs, of which the local cluster has
//! only 254) is served by `git daemon`. The controller runs as a child
//! process; `syncs` GitSyncs with `interval` are created; once all are Ready, `VmRSS` of the
//! process is sampled every second for `steady` seconds (several intervals, each one a fetch,
//! render and no-op apply of every sync). Reported: time until all Ready, resident memory at
//! Ready, median and maximum during the steady window, and `VmHWM` (the peak, initial sync
//! included).
//!
//! The cluster is the one of `KUBECONFIG`; run it on a cluster of its own (`cargo xtask cluster
//! up --state-dir /tmp/ctl-bench --port-base 20443`): the bench refuses the shared cluster on
//! port 16443 unless `--allow-shared-cluster`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use headway_controller::crd::GitSync;
use headway_tests::controller::ControllerSpec;
use kube::CustomResourceExt as _;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::gitserve::{GitDaemon, commit_all, init_pair};
use crate::paths::Paths;

/// What to measure.
#[derive(clap::Args, Clone, Debug)]
pub struct Params {
    /// Objects in all.
    #[arg(long, default_value_t = 5_000)]
    pub objects: usize,
    /// GitSyncs.
    #[arg(long, default_value_t = 10)]
    pub syncs: usize,
    /// Interval of every GitSync, in seconds.
    #[arg(long, default_value_t = 30)]
    pub interval: u64,
    /// Seconds of steady state sampled once every GitSync is Ready.
    #[arg(long, default_value_t = 120)]
    pub steady: u64,
    /// Allow running against the shared cluster on port 16443.
    #[arg(long)]
    pub allow_shared_cluster: bool,
}

const NAMESPACE: &str = "headway-bench";
const TARGET_MIB: f64 = 100.0;

/// Runs the benchmark and prints a Markdown summary.
pub fn run(paths: &Paths, params: Params) -> anyhow::Result<()> {
    ensure!(
        params.syncs >= 1 && params.objects >= params.syncs * 2,
        "bad parameters {params:?}"
    );
    let headway = super::build_headway(paths, true)?;
    super::cluster::block_on(run_async(&headway, &params))
}

async fn run_async(headway: &Path, params: &Params) -> anyhow::Result<()> {
    let config = super::bench_config("controller", 20443, params.allow_shared_cluster).await?;
    let client = kube::Client::try_from(config)?;
    let dir = tempfile::tempdir()?;
    let per_sync = params.objects / params.syncs;
    let started = Instant::now();
    make_repository(dir.path(), params.syncs, per_sync)?;
    println!(
        "repository: {} syncs x {per_sync} objects, generated in {:.1?}",
        params.syncs,
        started.elapsed()
    );
    let daemon = GitDaemon::start(&dir.path().join("srv"))?;
    let repo_url = daemon.url("bench.git");

    // The CRD and the namespace of the GitSyncs.
    headway_tests::install_crd(&client, &GitSync::crd()).await?;
    super::cluster::apply_namespace(&client, NAMESPACE).await?;

    let mut controller = ControllerSpec::new(headway, dir.path(), "bench")
        .namespace(NAMESPACE)
        .args(["--concurrency", "4"])
        .log_level("warn")
        .start()?;
    let pid = controller.id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = super::memory_mib(pid)?;
    println!(
        "controller pid {pid}: {:.1} MiB resident before any GitSync",
        idle.0
    );

    let api: Api<GitSync> = Api::namespaced(client.clone(), NAMESPACE);
    let created = Instant::now();
    for i in 0..params.syncs {
        let obj = super::cluster::gitsync(
            &format!("bench-{i}"),
            NAMESPACE,
            json!({
                "repository": {"url": repo_url},
                "path": format!("s{i}"),
                "interval": format!("{}s", params.interval),
                "timeout": "10m",
            }),
        )?;
        api.create(&PostParams::default(), &obj).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        controller.ensure_running()?;
        let list = api.list(&Default::default()).await?;
        let ready = super::cluster::ready_count(&list.items)?;
        if ready == params.syncs {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {ready} of {} GitSyncs Ready after 30 min",
            params.syncs
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_ready = created.elapsed();
    let at_ready = super::memory_mib(pid)?;
    println!(
        "all {} GitSyncs Ready ({} objects) after {all_ready:.1?}; {:.1} MiB resident",
        params.syncs, params.objects, at_ready.0
    );

    let mut samples = Vec::new();
    let steady_start = Instant::now();
    while steady_start.elapsed() < Duration::from_secs(params.steady) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(super::memory_mib(pid)?.0);
    }
    let (_, hwm) = super::memory_mib(pid)?;
    let list = api.list(&Default::default()).await?;
    let syncs_in_window: usize = params.steady as usize / params.interval.max(1) as usize;
    let total_objects: u32 = list
        .items
        .iter()
        .filter_map(|g| g.status.as_ref()?.objects.as_ref().map(|o| o.total))
        .sum();
    samples.sort_by(|a, b| a.total_cmp(b));
    let median = samples[samples.len() / 2];
    let max = samples.last().copied().unwrap_or(0.0);
    let last = list
        .items
        .iter()
        .filter_map(|g| {
            g.status
                .as_ref()?
                .last_reconcile
                .as_ref()
                .map(|r| r.duration_ms)
        })
        .max()
        .unwrap_or(0);

    println!();
    println!("## controller: steady-state memory");
    println!();
    println!(
        "`headway controller` (release) managing {total_objects} objects in {} GitSyncs, interval {} s, steady window {} s (~{syncs_in_window} syncs of each GitSync):",
        params.syncs, params.interval, params.steady
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| resident before any GitSync | {:.1} MiB |", idle.0);
    println!("| time until all GitSyncs Ready | {all_ready:.1?} |");
    println!("| resident when all Ready | {:.1} MiB |", at_ready.0);
    println!("| steady-state resident, median | {median:.1} MiB |");
    println!("| steady-state resident, max | {max:.1} MiB |");
    println!("| peak (VmHWM, initial sync included) | {hwm:.1} MiB |");
    println!("| slowest last sync of one GitSync | {last} ms |");
    println!();
    println!(
        "Target: steady state at most {TARGET_MIB} MiB: {}",
        if max <= TARGET_MIB { "met" } else { "NOT met" }
    );

    // Clean up: deleting the GitSyncs prunes their objects.
    super::cluster::delete_gitsyncs(&api, Duration::from_secs(600)).await?;
    drop(controller);
    drop(daemon);
    Ok(())
}

fn make_repository(dir: &Path, syncs: usize, per_sync: usize) -> anyhow::Result<()> {
    let work = dir.join("work");
    let bare = dir.join("srv/bench.git");
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&bare)?;
    for i in 0..syncs {
        let ns = format!("bench-ctl-{i}");
        let d = work.join(format!("s{i}"));
        std::fs::create_dir_all(&d)?;
        let mut text = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
        for j in 0..per_sync - 1 {
            text.push_str("---\n");
            match j % 10 {
                0..=4 => text.push_str(&format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{j}\n  namespace: {ns}\n  labels: {{app: bench, index: \"{j}\"}}\ndata:\n  setting: \"value-{j}\"\n  config.yaml: |\n    server:\n      port: {}\n      name: bench-{j}\n",
                    8000 + j
                )),
                5..=7 => text.push_str(&format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: secret-{j}\n  namespace: {ns}\ntype: Opaque\nstringData:\n  token: \"token-{j}-abcdefghijklmnop\"\n"
                )),
                _ => text.push_str(&format!(
                    "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{j}\n  namespace: {ns}\nspec:\n  clusterIP: None\n  selector: {{app: app-{j}}}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n"
                )),
            }
        }
        // Several files per sync, as in a real repository.
        for (k, chunk) in text
            .split_inclusive("---\n")
            .collect::<Vec<_>>()
            .chunks(50)
            .enumerate()
        {
            std::fs::write(d.join(format!("part-{k:03}.yaml")), chunk.concat())?;
        }
    }
    init_pair(&work, &bare)?;
    commit_all(&work, &bare, "bench")?;
    Ok(())
}
