//! `cargo xtask bench <what>`: benchmarks that compare Headway with a baseline measured in the
//! same run (the ratio is the result; absolute times depend on the machine).

mod api;
mod apply;
mod cluster;
mod controller;
mod fetch;
mod floor;
mod mttr;
mod render;
mod scale;

use clap::Subcommand;

use crate::paths::Paths;

/// The benchmarks.
#[derive(Subcommand)]
pub enum BenchTask {
    /// `headway render` of many plain objects against `kubectl kustomize` of the same files.
    Render(render::Params),
    /// Headway's depth-1 fetch of a repository with a long history against `git clone --depth 1`.
    Fetch(fetch::Params),
    /// Headway's apply engine (apply + wait until Current) against concurrent server-side
    /// applies with no checks (the floor) and `kubectl apply --server-side` + `kubectl wait`; then
    /// a no-op re-apply with its API requests. Uses the cluster of KUBECONFIG (not the shared one).
    Apply(apply::Params),
    /// The HTTP API: status throughput and p99 with many concurrent clients while a rebuild
    /// runs, and webhook-to-applied latency of one changed object (p50/p90 over 20 pushes).
    Api(api::Params),
    /// Steady-state memory of `headway controller` managing 5,000 objects in 10 GitSyncs
    /// (target: at most 100 MiB). Uses the cluster of KUBECONFIG (not the shared one).
    Controller(controller::Params),
    /// The disaster-recovery drill: 1,000 objects synced, namespaces and the CRD deleted,
    /// `headway rebuild --wait` timed until everything is Current, against the floor (the same
    /// objects re-created by a minimal concurrent SSA client). Uses the cluster of KUBECONFIG.
    Mttr(mttr::Params),
    /// 1,000 GitSyncs of one repository (10 objects each) from created to all Ready, then a
    /// no-op pass (a sync request on all): wall time, the controller's peak memory and CPU,
    /// fetches served (targets: 60 s, 128 MiB). Uses the cluster of KUBECONFIG.
    Scale(scale::Params),
}

/// Runs one benchmark.
pub fn run(paths: &Paths, task: BenchTask) -> anyhow::Result<()> {
    match task {
        BenchTask::Api(params) => api::run(paths, params),
        BenchTask::Render(params) => render::run(paths, params),
        BenchTask::Fetch(params) => fetch::run(paths, params),
        BenchTask::Apply(params) => apply::run(paths, params),
        BenchTask::Controller(params) => controller::run(paths, params),
        BenchTask::Mttr(params) => mttr::run(paths, params),
        BenchTask::Scale(params) => scale::run(paths, params),
    }
}

/// The median of some durations (sorted in place).
pub fn median(samples: &mut [std::time::Duration]) -> std::time::Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Builds the `headway` binary (release or debug profile) and returns its path.
pub fn build_headway(paths: &Paths, release: bool) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::{Context as _, ensure};
    let profile = if release { "release" } else { "debug" };
    println!("building headway ({profile})...");
    let mut args = vec!["build", "--quiet", "-p", "headway"];
    if release {
        args.push("--release");
    }
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(&args)
        .current_dir(&paths.root)
        .status()
        .context("run cargo build")?;
    ensure!(status.success(), "cargo {} failed", args.join(" "));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => paths.root.join(dir),
        None => paths.root.join("target"),
    };
    Ok(target.join(profile).join("headway"))
}

/// The benchmark's cluster (`KUBECONFIG`). The shared cluster (port 16443), which tests and
/// other work load, is refused unless `allow_shared`: the error says how to start one of its own
/// (`--state-dir /tmp/<bench>-bench --port-base <port_base>`).
pub async fn bench_config(
    bench: &str,
    port_base: u16,
    allow_shared: bool,
) -> anyhow::Result<kube::Config> {
    use anyhow::Context as _;
    let config = kube::Config::infer().await.context("KUBECONFIG")?;
    let url = config.cluster_url.to_string();
    anyhow::ensure!(
        allow_shared || !url.contains(":16443"),
        "{url} is the shared cluster; start one for the bench (cargo xtask cluster up --state-dir /tmp/{bench}-bench --port-base {port_base}) and use its KUBECONFIG, or pass --allow-shared-cluster"
    );
    Ok(config)
}

/// `(VmRSS, VmHWM)` of a process, in MiB.
pub fn memory_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .context("malformed line")?
            .parse()?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}
