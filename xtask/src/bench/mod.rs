//! `cargo xtask bench <what>`: benchmarks that compare Headway with a baseline measured in the
//! same run (the ratio is the result; absolute times depend on the machine).

mod apply;
mod controller;
mod fetch;
mod render;

use clap::Subcommand;

use crate::paths::Paths;

/// The benchmarks.
#[derive(Subcommand)]
pub enum BenchTask {
    /// `headway render` of many plain objects against `kubectl kustomize` of the same files.
    Render {
        /// Objects generated (spread evenly over `--files` files).
        #[arg(long, default_value_t = 5_000)]
        objects: usize,
        /// Files generated.
        #[arg(long, default_value_t = 500)]
        files: usize,
        /// Measured runs per side; the median is reported.
        #[arg(long, default_value_t = 7)]
        runs: usize,
    },
    /// Headway's depth-1 fetch of a repository with a long history against `git clone --depth 1`.
    Fetch {
        /// Commits in the generated history.
        #[arg(long, default_value_t = 2_000)]
        commits: usize,
        /// Files in the tree.
        #[arg(long, default_value_t = 300)]
        files: usize,
        /// Measured runs per side; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Headway's apply engine (apply + wait until Current) against concurrent server-side
    /// applies with no checks (the floor) and `kubectl apply --server-side` + `kubectl wait`; then
    /// a no-op re-apply with its API requests. Uses the cluster of KUBECONFIG (not the shared one).
    Apply {
        /// Object counts (Deployments, Services, ConfigMaps, Secrets in equal parts).
        #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
        sizes: Vec<usize>,
        /// Size whose no-op re-apply is measured.
        #[arg(long, default_value_t = 1_000)]
        noop: usize,
        /// Requests in flight (Headway and the floor).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Namespaces the objects are spread over.
        #[arg(long, default_value_t = 50)]
        namespaces: usize,
        /// Do not run kubectl.
        #[arg(long)]
        skip_kubectl: bool,
        /// Allow running against the shared cluster on port 16443.
        #[arg(long)]
        allow_shared_cluster: bool,
        /// Measure Headway before the floor.
        #[arg(long)]
        headway_first: bool,
    },
    /// Steady-state memory of `headway controller` managing 5,000 objects in 10 GitSyncs
    /// (target: at most 100 MiB). Uses the cluster of KUBECONFIG (not the shared one).
    Controller {
        /// Objects in all.
        #[arg(long, default_value_t = 5_000)]
        objects: usize,
        /// GitSyncs.
        #[arg(long, default_value_t = 10)]
        syncs: usize,
        /// Interval of every GitSync, in seconds.
        #[arg(long, default_value_t = 30)]
        interval: u64,
        /// Seconds of steady state sampled once every GitSync is Ready.
        #[arg(long, default_value_t = 120)]
        steady: u64,
        /// Allow running against the shared cluster on port 16443.
        #[arg(long)]
        allow_shared_cluster: bool,
    },
}

/// Runs one benchmark.
pub fn run(paths: &Paths, task: BenchTask) -> anyhow::Result<()> {
    match task {
        BenchTask::Controller {
            objects,
            syncs,
            interval,
            steady,
            allow_shared_cluster,
        } => controller::run(
            paths,
            controller::Params {
                objects,
                syncs,
                interval,
                steady,
                allow_shared_cluster,
            },
        ),
        BenchTask::Render {
            objects,
            files,
            runs,
        } => render::run(
            paths,
            render::Params {
                objects,
                files,
                runs,
            },
        ),
        BenchTask::Apply {
            sizes,
            noop,
            concurrency,
            namespaces,
            skip_kubectl,
            allow_shared_cluster,
            headway_first,
        } => apply::run(
            paths,
            apply::Params {
                sizes,
                noop,
                concurrency,
                namespaces,
                skip_kubectl,
                allow_shared_cluster,
                headway_first,
            },
        ),
        BenchTask::Fetch {
            commits,
            files,
            runs,
        } => fetch::run(
            paths,
            fetch::Params {
                commits,
                files,
                runs,
            },
        ),
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
