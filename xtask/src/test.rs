//! `cargo xtask test`: exactly what CI runs. Formatting, the local cluster (reused when it already
//! runs), clippy with warnings denied, and the whole workspace's tests with every gated suite
//! enabled; the cluster is stopped afterwards if this run started it. Then it checks that no
//! process the run started is still running (see [`crate::leftovers`]), and fails with their list.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::cluster::{self, Cluster, Started};
use crate::leftovers::{RUN_MARKER_ENV, Run};

#[derive(clap::Args, Debug)]
#[group(skip)]
pub struct Options {
    #[command(flatten)]
    cluster: cluster::Options,
    /// Keep the cluster running afterwards even if this run started it.
    #[arg(long)]
    keep_cluster: bool,
    /// Extra arguments passed to `cargo test` (after `--workspace`), e.g. `-- --nocapture`.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

/// Environment variables that enable the gated suites.
pub const SUITE_GATES: [&str; 4] = [
    "HEADWAY_CLUSTER_TESTS",
    "HEADWAY_TOOL_TESTS",
    "HEADWAY_GIT_TESTS",
    "HEADWAY_BROWSER_TESTS",
];

fn cargo(run: &Run, cluster: Option<&Cluster>, args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(args).env(RUN_MARKER_ENV, &run.marker);
    if let Some(c) = cluster {
        cmd.current_dir(&c.paths.root);
        for (k, v) in c.env_vars() {
            cmd.env(k, v);
        }
        for gate in SUITE_GATES {
            cmd.env(gate, "1");
        }
    }
    let started = Instant::now();
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = cmd.status().with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    eprintln!(
        "xtask: cargo {} passed in {:.1}s",
        args[0],
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let cluster = Cluster::new(&opts.cluster);
    let root = cluster.paths.root.clone();
    std::env::set_current_dir(&root)?;
    let run = Run::new(&root);
    cargo(&run, None, &["fmt", "--all", "--", "--check"])
        .context("code is not formatted: run `cargo fmt --all`")?;
    let how = cluster.up()?;
    let result = (|| {
        cargo(
            &run,
            Some(&cluster),
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )?;
        let mut args = vec!["test", "--workspace"];
        args.extend(opts.cargo_args.iter().map(String::as_str));
        cargo(&run, Some(&cluster), &args)
    })();
    if how == Started::Fresh
        && !opts.keep_cluster
        && let Err(e) = cluster.down()
    {
        eprintln!("xtask: stopping the cluster failed: {e:#}");
    }
    let left = run.wait_for_none(std::time::Duration::from_secs(10));
    if !left.is_empty() {
        let list: Vec<String> = left.iter().map(|l| format!("  {l}")).collect();
        let message = format!(
            "{} process(es) started by this run are still running:\n{}",
            left.len(),
            list.join("\n")
        );
        return match result {
            Ok(()) => Err(anyhow::anyhow!(message)),
            Err(e) => Err(e.context(message)),
        };
    }
    eprintln!("xtask: no process started by this run is left running");
    result?;
    eprintln!(
        "xtask: all checks passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
