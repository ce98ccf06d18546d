//! `cargo xtask bench scale`: 1,000 GitSyncs of one repository, as in Flux's published
//! benchmark (1,000 Kustomizations ready in 4 min 15 s with 190 MiB).
//!
//! One repository with `--syncs` directories of `--objects` objects each (ConfigMaps and
//! Secrets, two files per directory) is served by `git daemon --verbose`, whose log counts the
//! fetches. A `headway controller` (release build, a child process) watches one namespace; the
//! GitSyncs, one per directory, are created as fast as the API server takes them and timed
//! from the first create until all are Ready. Then the no-op pass: a sync request on every
//! GitSync, timed until every request is handled (and Ready). For each phase: the controller's
//! peak resident memory (`VmHWM` of `/proc/<pid>/status`), its CPU seconds (`utime + stime`
//! of `/proc/<pid>/stat`), the fetches the git server served, and the slowest sync's stages.
//! Targets: all Ready in at most 60 s, peak at most 128 MiB.
//!
//! Run it on a cluster of its own (`cargo xtask cluster up --state-dir /tmp/scale-bench
//! --port-base 19843`, then its KUBECONFIG); it refuses the shared cluster on port 16443 unless
//! `--allow-shared-cluster`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use headway_controller::crd::{ANNOTATION_SYNC_REQUESTED, GitSync};
use headway_controller::{RequestKind, RequestState, request_state};
use headway_tests::controller::{ControllerProcess, ControllerSpec};
use kube::CustomResourceExt as _;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;

use crate::gitserve::{GitDaemon, commit_all, init_pair};
use crate::paths::Paths;

/// What to measure.
#[derive(clap::Args, Clone, Debug)]
pub struct Params {
    /// GitSyncs (one directory of the repository each).
    #[arg(long, default_value_t = 1_000)]
    pub syncs: usize,
    /// Objects per GitSync.
    #[arg(long, default_value_t = 10)]
    pub objects: usize,
    /// The controller's `--concurrency` (syncs at once); default: the controller's default.
    #[arg(long)]
    pub concurrency: Option<u16>,
    /// Run this `headway` binary instead of building one (e.g. an older build, to compare).
    #[arg(long)]
    pub headway: Option<std::path::PathBuf>,
    /// Allow running against the shared cluster on port 16443.
    #[arg(long)]
    pub allow_shared_cluster: bool,
}

const NAMESPACE: &str = "headway-scale";
const TARGET_READY: Duration = Duration::from_secs(60);
const TARGET_MIB: f64 = 128.0;
const FLUX_READY: Duration = Duration::from_secs(255);
const FLUX_MIB: f64 = 190.0;
const PHASE_TIMEOUT: Duration = Duration::from_secs(1800);
/// Creates and requests in flight at once.
const CLIENT_CONCURRENCY: usize = 16;

/// Runs the benchmark and prints a Markdown summary.
pub fn run(paths: &Paths, params: Params) -> anyhow::Result<()> {
    ensure!(
        params.syncs >= 1 && params.objects >= 1,
        "bad parameters {params:?}"
    );
    let headway = match &params.headway {
        Some(path) => path.clone(),
        None => super::build_headway(paths, true)?,
    };
    super::cluster::block_on(run_async(&headway, &params))
}

/// What one phase cost the controller.
struct Phase {
    wall: Duration,
    hwm_mib: f64,
    rss_mib: f64,
    cpu_s: f64,
    fetches: usize,
    slowest: String,
    /// API server requests by verb and resource (its `apiserver_request_total`), every client
    /// of the cluster included; empty when `/metrics` could not be read.
    requests: Vec<(String, u64)>,
}

async fn run_async(headway: &Path, params: &Params) -> anyhow::Result<()> {
    let config = super::bench_config("scale", 19843, params.allow_shared_cluster).await?;
    let client = kube::Client::try_from(config)?;
    let dir = tempfile::tempdir()?;
    make_repository(dir.path(), params.syncs, params.objects)?;
    let daemon_log = dir.path().join("git-daemon.log");
    let daemon = GitDaemon::start_logged(&dir.path().join("srv"), Some(&daemon_log))?;
    let repo_url = daemon.url("scale.git");
    let fetches = || -> usize {
        std::fs::read_to_string(&daemon_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Request upload-pack"))
            .count()
    };

    headway_tests::install_crd(&client, &GitSync::crd()).await?;
    super::cluster::apply_namespace(&client, NAMESPACE).await?;
    let api: Api<GitSync> = Api::namespaced(client.clone(), NAMESPACE);
    ensure!(
        api.list(&Default::default()).await?.items.is_empty(),
        "namespace {NAMESPACE} already has GitSyncs: delete them first"
    );
    let (gitsyncs, writer) = reflector::store();
    let follow = tokio::spawn(
        reflector(writer, watcher(api.clone(), watcher::Config::default()))
            .default_backoff()
            .for_each(|_| async {}),
    );

    let mut spec = ControllerSpec::new(headway, dir.path(), "bench-scale")
        .namespace(NAMESPACE)
        .args(["--log-format", "text"])
        .log_level("warn");
    if let Some(c) = params.concurrency {
        spec = spec.args(["--concurrency", &c.to_string()]);
    }
    let mut controller = spec.start()?;
    let pid = controller.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = super::memory_mib(pid)?;
    let load_before = loadavg();
    println!(
        "controller pid {pid}: {idle:.1} MiB resident before any GitSync; load average {load_before}"
    );

    // Phase 1: create everything, until all Ready.
    let requests0 = api_requests();
    let cpu0 = cpu_seconds(pid)?;
    let created = Instant::now();
    futures::stream::iter(0..params.syncs)
        .map(|i| {
            let api = api.clone();
            let repo_url = repo_url.clone();
            async move {
                let obj = super::cluster::gitsync(
                    &format!("s{i}"),
                    NAMESPACE,
                    json!({
                        "repository": {"url": repo_url},
                        "path": format!("s{i}"),
                        "interval": "1h",
                        "timeout": "5m",
                    }),
                )?;
                api.create(&PostParams::default(), &obj).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CLIENT_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    let created_in = created.elapsed();
    println!(
        "{} GitSyncs created in {created_in:.1?}; waiting until all are Ready",
        params.syncs
    );
    wait_all(
        &gitsyncs,
        &mut controller,
        params.syncs,
        super::cluster::is_ready,
    )
    .await?;
    let wall = created.elapsed();
    let (rss, hwm) = super::memory_mib(pid)?;
    let requests1 = api_requests();
    let first = Phase {
        requests: delta(&requests0, &requests1),
        wall,
        hwm_mib: hwm,
        rss_mib: rss,
        cpu_s: cpu_seconds(pid)? - cpu0,
        fetches: fetches(),
        slowest: slowest(&api).await?,
    };
    println!(
        "all Ready after {wall:.1?}; peak {hwm:.1} MiB; {:.1} CPU s; {} fetches",
        first.cpu_s, first.fetches
    );

    // Phase 2: a sync request on every GitSync, until every one is handled.
    let cpu1 = cpu_seconds(pid)?;
    let fetches1 = fetches();
    let value = headway_controller::schedule::format_time(SystemTime::now());
    let requested = Instant::now();
    futures::stream::iter(0..params.syncs)
        .map(|i| {
            let api = api.clone();
            let patch = json!({"metadata": {"annotations": {ANNOTATION_SYNC_REQUESTED: value}}});
            async move {
                api.patch(
                    &format!("s{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CLIENT_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    wait_all(&gitsyncs, &mut controller, params.syncs, |g| {
        request_state(g, RequestKind::Sync, &value) == RequestState::Done { ok: true }
    })
    .await?;
    let wall = requested.elapsed();
    let (rss, hwm) = super::memory_mib(pid)?;
    let noop = Phase {
        requests: delta(&requests1, &api_requests()),
        wall,
        hwm_mib: hwm,
        rss_mib: rss,
        cpu_s: cpu_seconds(pid)? - cpu1,
        fetches: fetches() - fetches1,
        slowest: slowest(&api).await?,
    };
    println!(
        "no-op pass handled after {wall:.1?}; {:.1} CPU s; {} fetches",
        noop.cpu_s, noop.fetches
    );
    let errors = controller
        .log_text()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .count();

    println!();
    println!("## scale: {} GitSyncs of one repository", params.syncs);
    println!();
    println!(
        "`headway controller` (release, concurrency {}) and {} GitSyncs of {} objects each ({} objects), one repository of {} directories served by `git daemon`:",
        params
            .concurrency
            .map_or("default".to_string(), |c| c.to_string()),
        params.syncs,
        params.objects,
        params.syncs * params.objects,
        params.syncs
    );
    println!();
    println!("| measure | created until all Ready | no-op pass (sync requested on all) |");
    println!("|---|---|---|");
    println!(
        "| wall time | {:.1} s | {:.1} s |",
        first.wall.as_secs_f64(),
        noop.wall.as_secs_f64()
    );
    println!(
        "| controller CPU | {:.1} s | {:.1} s |",
        first.cpu_s, noop.cpu_s
    );
    println!(
        "| controller peak resident (VmHWM, since start) | {:.1} MiB | {:.1} MiB |",
        first.hwm_mib, noop.hwm_mib
    );
    println!(
        "| controller resident at the end | {:.1} MiB | {:.1} MiB |",
        first.rss_mib, noop.rss_mib
    );
    println!(
        "| fetches served by git daemon | {} | {} |",
        first.fetches, noop.fetches
    );
    println!(
        "| slowest sync (stages, ms) | {} | {} |",
        first.slowest, noop.slowest
    );
    let per_sync = |p: &Phase| -> String {
        let total: u64 = p.requests.iter().map(|(_, n)| n).sum();
        format!("{:.1}", total as f64 / params.syncs as f64)
    };
    println!(
        "| API server requests per GitSync (all clients) | {} | {} |",
        per_sync(&first),
        per_sync(&noop)
    );
    println!();
    for (name, phase) in [("created until all Ready", &first), ("no-op pass", &noop)] {
        let top: Vec<String> = phase
            .requests
            .iter()
            .take(12)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("API server requests, {name}: {}.", top.join(", "));
    }
    println!();
    println!(
        "Resident before any GitSync: {idle:.1} MiB; creating the {} GitSyncs took {:.1} s; controller ERROR log lines: {errors}; load average (1, 5, 15 min) {load_before} at the start, {} at the end.",
        params.syncs,
        created_in.as_secs_f64(),
        loadavg()
    );
    println!(
        "Against Flux's published 1,000 Kustomizations (4 min 15 s, 190 MiB): {:.1}x faster, {:.1}x less memory.",
        FLUX_READY.as_secs_f64() / first.wall.as_secs_f64(),
        FLUX_MIB / first.hwm_mib.max(noop.hwm_mib)
    );
    println!(
        "Targets: all Ready in at most {} s: {}; peak at most {TARGET_MIB} MiB: {}.",
        TARGET_READY.as_secs(),
        if first.wall <= TARGET_READY {
            "met"
        } else {
            "NOT met"
        },
        if first.hwm_mib.max(noop.hwm_mib) <= TARGET_MIB {
            "met"
        } else {
            "NOT met"
        }
    );

    // Clean up: deleting the GitSyncs prunes their objects.
    let cleanup = Instant::now();
    super::cluster::delete_gitsyncs(&api, Duration::from_secs(900)).await?;
    println!(
        "(cleanup: GitSyncs deleted and their objects pruned in {:.1?})",
        cleanup.elapsed()
    );
    follow.abort();
    drop(controller);
    drop(daemon);
    Ok(())
}

/// Waits until `done` holds for `n` GitSyncs, printing the count every 10 s. The GitSyncs are
/// followed through one watch (a list of 1,000 GitSyncs every half second would cost the API
/// server more than some of what is measured).
async fn wait_all(
    gitsyncs: &Store<GitSync>,
    controller: &mut ControllerProcess,
    n: usize,
    done: impl Fn(&GitSync) -> bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut reported = Instant::now();
    loop {
        controller.ensure_running()?;
        let count = gitsyncs.state().iter().filter(|g| done(g)).count();
        if count >= n {
            return Ok(());
        }
        if reported.elapsed() >= Duration::from_secs(10) {
            println!("  {count} of {n} after {:.0?}", start.elapsed());
            reported = Instant::now();
        }
        ensure!(
            start.elapsed() < PHASE_TIMEOUT,
            "only {count} of {n} GitSyncs done after {PHASE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `apiserver_request_total` summed by verb, resource and subresource, from `kubectl get --raw
/// /metrics` (empty when it cannot be read).
fn api_requests() -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    let Ok(out) = Command::new("kubectl")
        .args(["get", "--raw", "/metrics"])
        .output()
    else {
        return counts;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| -> String {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let mut key = format!("{} {}", label("verb"), label("resource"));
        let sub = label("subresource");
        if !sub.is_empty() {
            key = format!("{key}/{sub}");
        }
        if label("dry_run") == "All" {
            key.push_str(" (dry run)");
        }
        let n: f64 = value.trim().parse().unwrap_or(0.0);
        *counts.entry(key).or_insert(0) += n as u64;
    }
    counts
}

/// What grew between two counts, largest first.
fn delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    let mut grown: Vec<(String, u64)> = after
        .iter()
        .map(|(k, n)| (k.clone(), n.saturating_sub(*before.get(k).unwrap_or(&0))))
        .filter(|(_, n)| *n > 0)
        .collect();
    grown.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    grown
}

/// The stages of the slowest last sync, e.g. `812 (fetch 3, render 2, ...)`.
async fn slowest(api: &Api<GitSync>) -> anyhow::Result<String> {
    let list = api.list(&Default::default()).await?;
    let Some(record) = list
        .items
        .iter()
        .filter_map(|g| g.status.as_ref()?.last_reconcile.as_ref())
        .max_by_key(|r| r.duration_ms)
    else {
        return Ok("-".into());
    };
    let stages: Vec<String> = record
        .stages
        .iter()
        .map(|s| format!("{} {}", s.name, s.duration_ms))
        .collect();
    Ok(format!("{} ({})", record.duration_ms, stages.join(", ")))
}

/// User and system CPU seconds of a process (`utime + stime` of `/proc/<pid>/stat`).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short stat")?.parse::<u64>()? as f64)
    };
    // `rest` starts at field 3: utime (14) is index 11, stime (15) index 12.
    Ok((ticks(11)? + ticks(12)?) / clock_ticks())
}

/// The machine's load averages, as `/proc/loadavg` gives them.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `srv/scale.git`: `syncs` directories `s<i>/` of `objects` objects each (ConfigMaps and every
/// fourth a Secret), in two files.
fn make_repository(dir: &Path, syncs: usize, objects: usize) -> anyhow::Result<()> {
    let work = dir.join("work");
    let bare = dir.join("srv/scale.git");
    std::fs::create_dir_all(&work)?;
    for i in 0..syncs {
        let d = work.join(format!("s{i}"));
        std::fs::create_dir_all(&d)?;
        let docs: Vec<String> = (0..objects)
            .map(|j| {
                if j % 4 == 3 {
                    format!(
                        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s{i}-secret-{j}\ntype: Opaque\nstringData:\n  token: \"token-{i}-{j}\"\n"
                    )
                } else {
                    format!(
                        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s{i}-config-{j}\n  labels: {{app: scale, sync: \"s{i}\"}}\ndata:\n  setting: \"value-{j}\"\n  config.yaml: |\n    server:\n      port: {}\n",
                        8000 + j
                    )
                }
            })
            .collect();
        let half = docs.len().div_ceil(2);
        std::fs::write(d.join("a.yaml"), docs[..half].join("---\n"))?;
        if half < docs.len() {
            std::fs::write(d.join("b.yaml"), docs[half..].join("---\n"))?;
        }
    }
    init_pair(&work, &bare)?;
    commit_all(&work, &bare, "scale")
}
