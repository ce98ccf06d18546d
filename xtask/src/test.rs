//! `cargo xtask test`: exactly what CI runs. Formatting, the local cluster (reused when it already
//! runs), clippy with warnings denied, and the whole workspace's tests with every gated suite
//! enabled; the cluster is stopped afterwards if this run started it. The fault suite
//! (`crates/headway/tests/faults.rs`) kills kube-apiserver and etcd, so it gets a second cluster
//! of its own (`<target>/fault-cluster`, ports 2000 above the main cluster's when free), started
//! just before the tests and always stopped afterwards, whatever happened; `--no-fault-cluster`
//! skips it and the fault suite. The real public charts and kustomizations some tests apply are
//! fetched from the Go module proxy first (`crate::public_sources`). Then it checks that no process the run started is still running
//! (see [`crate::leftovers`]), and fails with their list.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::cluster::{self, Cluster, Started};
use crate::leftovers::{RUN_MARKER_ENV, Run};
use crate::public_sources;
use headway_tests::public_sources::PUBLIC_SOURCES_ENV;

#[derive(clap::Args, Debug)]
#[group(skip)]
pub struct Options {
    #[command(flatten)]
    cluster: cluster::Options,
    /// Keep the cluster running afterwards even if this run started it (the fault cluster is
    /// always stopped).
    #[arg(long)]
    keep_cluster: bool,
    /// Start no second cluster and skip the fault suite.
    #[arg(long)]
    no_fault_cluster: bool,
    /// Extra arguments passed to `cargo test` (after `--workspace`), e.g. `-- --nocapture`.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

/// Environment variables that enable the gated suites.
pub const SUITE_GATES: [&str; 5] = [
    "HEADWAY_CLUSTER_TESTS",
    "HEADWAY_TOOL_TESTS",
    "HEADWAY_GIT_TESTS",
    "HEADWAY_BROWSER_TESTS",
    FAULT_GATE,
];

/// The gate of the fault suite, set only when its cluster runs.
const FAULT_GATE: &str = "HEADWAY_FAULT_TESTS";
/// The state directory of the fault suite's cluster, for the tests.
const FAULT_CLUSTER_DIR_ENV: &str = "HEADWAY_FAULT_CLUSTER_DIR";
/// The fault cluster's ports, above the main cluster's.
const FAULT_PORT_OFFSET: u16 = 2000;
/// Ports a cluster uses from its base (see [`cluster::Options::port_base`]).
const CLUSTER_PORTS: u16 = 6;

/// Where and how `cargo` runs: the main cluster, and the fault cluster when there is one.
struct Env<'a> {
    cluster: &'a Cluster,
    fault_dir: Option<PathBuf>,
    /// The Go module cache holding the public charts and kustomizations the tests apply.
    public_sources: Option<PathBuf>,
}

fn cargo(run: &Run, env: Option<&Env>, args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(args).env(RUN_MARKER_ENV, &run.marker);
    if let Some(env) = env {
        cmd.current_dir(&env.cluster.paths.root);
        for (k, v) in env.cluster.env_vars() {
            cmd.env(k, v);
        }
        for gate in SUITE_GATES {
            if gate != FAULT_GATE {
                cmd.env(gate, "1");
            }
        }
        match &env.public_sources {
            Some(dir) => cmd.env(PUBLIC_SOURCES_ENV, dir),
            None => cmd.env_remove(PUBLIC_SOURCES_ENV),
        };
        match &env.fault_dir {
            Some(dir) => {
                cmd.env(FAULT_GATE, "1").env(FAULT_CLUSTER_DIR_ENV, dir);
            }
            // Not inherited from the caller's shell either: without its cluster, skipped.
            None => {
                cmd.env_remove(FAULT_GATE).env_remove(FAULT_CLUSTER_DIR_ENV);
            }
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

/// Whether the `CLUSTER_PORTS` ports from `base` can be bound on the loopback address now.
fn ports_free(base: u16) -> bool {
    (0..CLUSTER_PORTS).all(|i| {
        base.checked_add(i)
            .is_some_and(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
    })
}

/// The fault cluster's port base: `preferred` when its ports are free, else the first free run
/// of ports above it that does not overlap the main cluster's (`main`).
fn fault_port_base(main: u16, preferred: u16) -> anyhow::Result<u16> {
    let overlaps =
        |base: u16| base < main.saturating_add(CLUSTER_PORTS) && main < base + CLUSTER_PORTS;
    let mut base = preferred;
    for _ in 0..200 {
        if !overlaps(base) && ports_free(base) {
            return Ok(base);
        }
        base = base
            .checked_add(CLUSTER_PORTS)
            .filter(|b| b.checked_add(CLUSTER_PORTS).is_some())
            .context("ran out of ports")?;
    }
    bail!("no {CLUSTER_PORTS} free consecutive ports for the fault cluster from {preferred}")
}

/// The fault suite's cluster, stopped when dropped (after an error or a panic too).
struct FaultCluster(Cluster);

impl FaultCluster {
    /// Starts it in `<target>/fault-cluster`, after stopping whatever an interrupted run left
    /// there (its components are killed and restarted by the tests, so it is never reused).
    fn start(main: &cluster::Options, root: &std::path::Path) -> anyhow::Result<FaultCluster> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { root.join(t) })
            .unwrap_or_else(|| root.join("target"));
        let state_dir = target.join("fault-cluster");
        if state_dir.exists() {
            Cluster::new(&cluster::Options {
                state_dir: Some(state_dir.clone()),
                port_base: main.port_base,
            })
            .down()
            .context("stopping the fault cluster an earlier run left")?;
        }
        let port_base = fault_port_base(
            main.port_base,
            main.port_base.saturating_add(FAULT_PORT_OFFSET),
        )?;
        let fault = FaultCluster(Cluster::new(&cluster::Options {
            state_dir: Some(state_dir),
            port_base,
        }));
        eprintln!("xtask: starting the fault suite's cluster (ports from {port_base})");
        fault.0.up().context("starting the fault suite's cluster")?;
        Ok(fault)
    }

    fn dir(&self) -> PathBuf {
        self.0.paths.state.clone()
    }
}

impl Drop for FaultCluster {
    fn drop(&mut self) {
        if let Err(e) = self.0.down() {
            eprintln!("xtask: stopping the fault cluster failed: {e:#}");
        }
    }
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
        let env = Env {
            cluster: &cluster,
            fault_dir: None,
            public_sources: None,
        };
        cargo(
            &run,
            Some(&env),
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )?;
        // Dropped (stopped) at the end of this closure, before the leftovers check.
        let fault = if opts.no_fault_cluster {
            eprintln!("xtask: --no-fault-cluster: the fault suite is skipped");
            None
        } else {
            Some(FaultCluster::start(&opts.cluster, &root)?)
        };
        let env = Env {
            cluster: &cluster,
            fault_dir: fault.as_ref().map(FaultCluster::dir),
            public_sources: Some(public_sources::fetch(&cluster.paths)?),
        };
        let mut args = vec!["test", "--workspace"];
        args.extend(opts.cargo_args.iter().map(String::as_str));
        cargo(&run, Some(&env), &args)
    })();
    if how == Started::Fresh
        && !opts.keep_cluster
        && let Err(e) = cluster.down()
    {
        eprintln!("xtask: stopping the cluster failed: {e:#}");
    }
    let left = run.wait_for_none(std::time::Duration::from_secs(30));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_cluster_never_shares_a_port_with_the_main_one() {
        // Preferred ports free: taken as they are.
        let held = TcpListener::bind(("127.0.0.1", 0)).expect("a free port");
        let busy = held.local_addr().expect("its address").port();
        let preferred = busy.saturating_sub(2);
        let base = fault_port_base(1000, preferred).expect("a free run of ports");
        assert!(
            base + CLUSTER_PORTS <= busy || base > busy,
            "{base} overlaps the held port {busy}"
        );
        // Overlapping the main cluster's ports: moved above them.
        let base = fault_port_base(preferred, preferred).expect("a free run of ports");
        assert!(base >= preferred + CLUSTER_PORTS, "{base}");
    }
}
