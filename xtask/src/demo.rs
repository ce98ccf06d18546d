//! `cargo xtask demo`: the whole recovery story on the local cluster. A git repository
//! (`examples/demo-shop`) served by `git daemon`, the GitSync CRD, `headway controller`, a
//! GitSync that brings the shop up; then a disaster (the namespace deleted by hand) and a
//! rebuild, with the time it took reported by the controller itself (status.lastRebuild).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use headway_tests::process::Guarded;

use crate::cluster::{Cluster, Options as ClusterOptions};
use crate::gitserve::{GitDaemon, git};

/// Options of `cargo xtask demo`.
#[derive(clap::Args)]
#[group(skip)]
pub struct Options {
    #[command(flatten)]
    pub cluster: ClusterOptions,
    /// Leave the controller and git daemon running at the end (their PIDs are printed).
    #[arg(long)]
    pub keep: bool,
}

const NAMESPACE: &str = "default";
const SYNC: &str = "demo-shop";

/// A child process killed on drop (unless kept).
struct Background {
    name: &'static str,
    child: Option<Guarded>,
}

impl Background {
    fn keep(mut self) -> u32 {
        self.child.take().map(Guarded::detach).unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
            println!("demo: stopped {}", self.name);
        }
    }
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let cluster = Cluster::new(&opts.cluster);
    cluster.up()?;
    let paths = &cluster.paths;
    let kubeconfig = paths.kubeconfig();
    let dir = paths.root.join("target/demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clean {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;

    println!("demo: building headway...");
    let headway = crate::bench::build_headway(paths, false)?;

    // 1. The repository.
    let srv = dir.join("srv");
    let bare = srv.join("demo-shop.git");
    let work = dir.join("work");
    std::fs::create_dir_all(&bare)?;
    git(&bare, &["init", "-q", "--bare", "-b", "main"])?;
    copy_dir(&paths.root.join("examples/demo-shop"), &work)?;
    git(&work, &["init", "-q", "-b", "main"])?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-q", "-m", "demo-shop 1.4.2"])?;
    git(
        &work,
        &["push", "-q", bare.to_str().context("path")?, "main"],
    )?;
    let daemon = GitDaemon::start(&srv)?;
    let url = daemon.url("demo-shop.git");
    println!("demo: serving examples/demo-shop at {url}");

    // 2. The CRD and the controller.
    let kubectl = |args: &[&str]| kubectl(paths.bin().join("kubectl"), &kubeconfig, args);
    kubectl(&[
        "apply",
        "--server-side",
        "-f",
        paths
            .root
            .join("charts/headway/crds/gitsync.yaml")
            .to_str()
            .context("path")?,
    ])?;
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/gitsyncs.headway.dev",
        "--timeout=60s",
    ])?;
    kubectl(&[
        "create",
        "namespace",
        "headway-system",
        "--dry-run=client",
        "-o",
        "yaml",
    ])
    .and_then(|yaml| kubectl_stdin(paths.bin().join("kubectl"), &kubeconfig, &yaml))?;
    let log = dir.join("controller.log");
    let log_file = std::fs::File::create(&log)?;
    let controller = Background {
        name: "headway controller",
        child: Some(
            Guarded::spawn(
                Command::new(&headway)
                    .args([
                        "controller",
                        "--namespace",
                        NAMESPACE,
                        "--lease-namespace",
                        "headway-system",
                        "--lease-name",
                        "headway-demo",
                        "--cache-dir",
                    ])
                    .arg(dir.join("cache"))
                    .env("KUBECONFIG", &kubeconfig)
                    .env("PATH", path_with(&paths.bin()))
                    .stdin(Stdio::null())
                    .stdout(log_file.try_clone()?)
                    .stderr(log_file),
            )
            .context("start headway controller")?,
        ),
    };
    println!("demo: headway controller running (logs: {})", log.display());

    // A GitSync left by an earlier demo is deleted first (its finalizer prunes what it applied),
    // so that this run starts from nothing.
    if !kubectl(&["get", "gitsync", "-n", NAMESPACE, "-o", "name"])?
        .trim()
        .is_empty()
    {
        println!("demo: deleting the GitSync of an earlier run (its finalizer prunes its objects)");
        kubectl(&[
            "delete",
            "gitsync",
            SYNC,
            "-n",
            NAMESPACE,
            "--ignore-not-found",
            "--timeout=120s",
        ])?;
        kubectl(&[
            "delete",
            "namespace",
            "demo-shop",
            "--ignore-not-found",
            "--timeout=120s",
        ])?;
    }

    // 3. The GitSync: from nothing to everything Current.
    let gitsync = format!(
        "apiVersion: headway.dev/v1alpha1\nkind: GitSync\nmetadata:\n  name: {SYNC}\n  namespace: {NAMESPACE}\nspec:\n  repository:\n    url: {url}\n    ref: {{branch: main}}\n  interval: 1m\n  prune: true\n  wait: true\n"
    );
    let started = Instant::now();
    kubectl_stdin(paths.bin().join("kubectl"), &kubeconfig, &gitsync)?;
    wait_ready(&kubectl, Duration::from_secs(180))?;
    println!(
        "demo: GitSync {SYNC} Ready in {:.1}s (seen from outside)",
        started.elapsed().as_secs_f64()
    );
    println!("{}", kubectl(&["get", "gitsync", "-n", NAMESPACE])?);
    println!("{}", kubectl(&["get", "deploy,svc,cm", "-n", "demo-shop"])?);

    // 4. The disaster, and the rebuild.
    println!("demo: disaster: kubectl delete namespace demo-shop");
    kubectl(&[
        "delete",
        "namespace",
        "demo-shop",
        "--wait=true",
        "--timeout=120s",
    ])?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_secs()
        .to_string();
    println!("demo: requesting a rebuild (annotation headway.dev/rebuild-requested-at={stamp})");
    let started = Instant::now();
    kubectl(&[
        "annotate",
        "gitsync",
        SYNC,
        "-n",
        NAMESPACE,
        "--overwrite",
        &format!("headway.dev/rebuild-requested-at={stamp}"),
    ])?;
    // Done when the controller has taken the request, finished reconciling, and is Ready.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let state = kubectl(&[
            "get",
            "gitsync",
            SYNC,
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.lastHandledRebuildRequest} {.status.conditions[?(@.type==\"Reconciling\")].status} {.status.conditions[?(@.type==\"Ready\")].status} {.status.lastRebuild.end}",
        ])?;
        let fields: Vec<&str> = state.split_whitespace().collect();
        if let [handled, "False", "True", _end] = fields.as_slice()
            && *handled == stamp
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the rebuild did not finish within 180 s ({state}); controller log: {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "demo: rebuilt in {:.1}s (seen from outside); the controller's own record:",
        started.elapsed().as_secs_f64()
    );
    let record = kubectl(&[
        "get",
        "gitsync",
        SYNC,
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath=  rebuild of {.status.lastRebuild.revision}: {.status.lastRebuild.result} in {.status.lastRebuild.duration}{\"\\n\"}  stages:{range .status.lastRebuild.stages[*]} {.name}={.durationMs}ms{end}",
    ])?;
    println!("{record}");
    println!("{}", kubectl(&["get", "deploy", "-n", "demo-shop"])?);

    if opts.keep {
        let c = controller.keep();
        let d = daemon.keep();
        println!(
            "demo: left running: headway controller (pid {c}), git daemon (pid {d}); the cluster: `cargo xtask cluster down`"
        );
    }
    Ok(())
}

fn wait_ready(
    kubectl: &dyn Fn(&[&str]) -> anyhow::Result<String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = kubectl(&[
            "get",
            "gitsync",
            SYNC,
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.conditions[?(@.type==\"Ready\")].message}",
        ])?;
        if status.starts_with("True") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("GitSync {SYNC} not Ready after {timeout:?}: {status}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn kubectl(bin: PathBuf, kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(&bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .with_context(|| format!("run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn kubectl_stdin(bin: PathBuf, kubeconfig: &Path, yaml: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = Command::new(&bin)
        .args(["apply", "--server-side", "-f", "-"])
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {}", bin.display()))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut paths = vec![bin.to_path_buf()];
    if let Some(old) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(paths).unwrap_or_default()
}
