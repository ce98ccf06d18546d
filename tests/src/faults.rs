//! Support for the fault tests: a cluster of their own that they may break (kill and restart
//! its components), and the figures each scenario prints.
//!
//! Fault tests are gated by `HEADWAY_FAULT_TESTS=1` and need `HEADWAY_FAULT_CLUSTER_DIR`, the
//! state directory of a second cluster started for them
//! (`cargo xtask cluster up --state-dir DIR --port-base 18443`): they kill its kube-apiserver
//! and etcd, which the shared cluster of the other tests must never see. A component is killed
//! by the PID its state directory records (checked against `/proc/PID/exe`, so a reused PID is
//! never signalled) and started again with the command line and environment it had, in a
//! process group of its own, detached from the test, with a new PID file: afterwards `cargo xtask cluster down`
//! stops it as any other component.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::TestCluster;
use crate::process::{Guarded, alive};

/// The environment variable that enables the fault tests.
pub const FAULT_TESTS_ENV: &str = "HEADWAY_FAULT_TESTS";
/// The state directory of the cluster the fault tests may break.
pub const FAULT_CLUSTER_DIR_ENV: &str = "HEADWAY_FAULT_CLUSTER_DIR";

/// The cluster of the fault tests, or `None` when they are disabled (the caller returns).
/// Panics when they are enabled but the cluster is missing or unreachable.
pub async fn fault_cluster(test: &str) -> Option<FaultCluster> {
    if std::env::var(FAULT_TESTS_ENV).as_deref() != Ok("1") {
        eprintln!("skipping {test}: set {FAULT_TESTS_ENV}=1 and {FAULT_CLUSTER_DIR_ENV}=DIR");
        return None;
    }
    let dir = std::env::var(FAULT_CLUSTER_DIR_ENV).unwrap_or_else(|_| {
        panic!("{FAULT_TESTS_ENV}=1 needs {FAULT_CLUSTER_DIR_ENV}: the state directory of a cluster the fault tests may break")
    });
    let dir = PathBuf::from(dir);
    let kubeconfig = dir.join("kubeconfig");
    match TestCluster::connect_to(&kubeconfig.display().to_string()).await {
        Ok(cluster) => Some(FaultCluster {
            dir,
            kubeconfig,
            cluster,
        }),
        Err(e) => panic!("{FAULT_TESTS_ENV}=1 but the fault cluster is not usable: {e:#}"),
    }
}

/// A cluster whose components the tests may kill and restart.
pub struct FaultCluster {
    /// Its state directory (PID files in `pids/`, logs in `logs/`).
    pub dir: PathBuf,
    /// Its kubeconfig (cluster-admin).
    pub kubeconfig: PathBuf,
    pub cluster: TestCluster,
}

/// A component killed by [`FaultCluster::kill`], to be started again.
#[derive(Debug)]
pub struct Stopped {
    pub name: String,
    exe: PathBuf,
    args: Vec<String>,
    /// Its environment as it was (so the restarted process is not marked as the test run's).
    env: Vec<(String, String)>,
    pid_file: PathBuf,
    log: PathBuf,
}

impl FaultCluster {
    /// SIGKILLs the component `name` (`kube-apiserver`, `etcd`, ...) and waits until it is gone.
    pub fn kill(&self, name: &str) -> anyhow::Result<Stopped> {
        let pid_file = self.dir.join("pids").join(format!("{name}.pid"));
        let text = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?;
        let mut lines = text.lines();
        let pid: u32 = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("no PID in {}", pid_file.display()))?;
        let exe = PathBuf::from(lines.next().unwrap_or_default().trim());
        let running = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        if running.as_deref() != Some(exe.as_path()) {
            bail!(
                "{name} is not running as PID {pid} ({} is {running:?}, expected {})",
                pid_file.display(),
                exe.display()
            );
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .skip(1)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let env: Vec<(String, String)> = std::fs::read(format!("/proc/{pid}/environ"))?
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -KILL {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name} (PID {pid}) still runs after SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Stopped {
            name: name.to_string(),
            exe,
            args,
            env,
            pid_file,
            log: self.dir.join("logs").join(format!("{name}.log")),
        })
    }
}

impl Stopped {
    /// Starts the component again with the same command line, detached (it belongs to the
    /// cluster, not to the test), and records its PID. Returns the PID.
    pub fn start(self) -> anyhow::Result<u32> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let guarded = Guarded::spawn(
            Command::new(&self.exe)
                .args(&self.args)
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log),
        )
        .with_context(|| format!("starting {}", self.exe.display()))?;
        let pid = guarded.detach();
        let mut file = File::create(&self.pid_file)?;
        writeln!(file, "{pid}\n{}", self.exe.display())?;
        Ok(pid)
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

/// The figures of one fault scenario, printed as one line the reliability table is made from.
#[derive(Debug, Clone)]
pub struct Figures {
    pub scenario: &'static str,
    /// From the end of the fault to the cluster equal to git again.
    pub converge_after_fault: Duration,
    /// Objects of git missing at the end.
    pub objects_lost: usize,
    /// Objects deleted that git still has (or that Headway did not create).
    pub wrong_deletes: usize,
    /// ERROR lines the controller logged.
    pub error_lines: usize,
}

impl Figures {
    /// Prints the line `FAULT-FIGURES scenario | converge s | lost | wrong deletes | errors`.
    pub fn print(&self) {
        println!(
            "FAULT-FIGURES | {} | {:.1} s | {} | {} | {} |",
            self.scenario,
            self.converge_after_fault.as_secs_f64(),
            self.objects_lost,
            self.wrong_deletes,
            self.error_lines
        );
    }
}

/// A toxiproxy server (Shopify's fault proxy, built by `cargo xtask cluster build` from
/// xtask/go/toxiproxy) on a free port, driven with `toxiproxy-cli`; killed on drop.
pub struct Toxiproxy {
    _server: Guarded,
    api: String,
    cli: PathBuf,
}

impl Toxiproxy {
    /// Starts `toxiproxy-server` (found on `PATH`, where `cluster.env` puts the tools) and
    /// waits until its API answers.
    pub fn start() -> anyhow::Result<Toxiproxy> {
        let server = crate::git::require("toxiproxy-server");
        let cli = crate::git::require("toxiproxy-cli");
        let port = crate::git::free_port();
        let guarded = Guarded::spawn(
            Command::new(server)
                .args(["-host", "127.0.0.1", "-port", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("starting toxiproxy-server")?;
        let proxy = Toxiproxy {
            _server: guarded,
            api: format!("http://127.0.0.1:{port}"),
            cli,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while proxy.run(&["list"]).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "toxiproxy's API on {port} did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(proxy)
    }

    /// Runs `toxiproxy-cli` against this server; its standard output.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.cli)
            .arg("--host")
            .arg(&self.api)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running toxiproxy-cli")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // The CLI exits 0 on some API errors: its output says so.
        if !out.status.success() || stdout.contains("Failed") {
            bail!(
                "toxiproxy-cli {args:?} failed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// A proxy `name` from a free port on 127.0.0.1 to `upstream_port`; returns the port.
    pub fn proxy(&self, name: &str, upstream_port: u16) -> anyhow::Result<u16> {
        let port = crate::git::free_port();
        self.run(&[
            "create",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &format!("127.0.0.1:{upstream_port}"),
            name,
        ])?;
        Ok(port)
    }

    /// Disables or enables the proxy: disabled, it closes every connection and refuses new
    /// ones (a full outage).
    pub fn set_enabled(&self, name: &str, enabled: bool) -> anyhow::Result<()> {
        // The CLI can only toggle, and says what it did.
        let wanted = if enabled {
            "now enabled"
        } else {
            "now disabled"
        };
        for _ in 0..2 {
            if self.run(&["toggle", name])?.contains(wanted) {
                return Ok(());
            }
        }
        bail!("toxiproxy: proxy {name} could not be made {wanted}")
    }

    /// Adds a toxic (`latency`, `bandwidth`, `timeout`, `reset_peer`, ...) to the proxy's
    /// downstream, with `key=value` attributes.
    pub fn add_toxic(
        &self,
        proxy: &str,
        toxic: &str,
        kind: &str,
        attributes: &[&str],
    ) -> anyhow::Result<()> {
        let mut args = vec!["toxic", "add", "--type", kind, "--toxicName", toxic];
        for a in attributes {
            args.extend(["--attribute", a]);
        }
        args.push(proxy);
        self.run(&args)?;
        Ok(())
    }

    /// Removes a toxic.
    pub fn remove_toxic(&self, proxy: &str, toxic: &str) -> anyhow::Result<()> {
        self.run(&["toxic", "remove", "--toxicName", toxic, proxy])?;
        Ok(())
    }
}
