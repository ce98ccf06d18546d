//! `cargo xtask demo`: the whole recovery story on a local cluster, as a newcomer watches it. The
//! cluster comes up (or is reused); `examples/demo` becomes a git repository served by
//! `git daemon`; the chart `charts/headway` is installed with helm, its root GitSync pointing at
//! the repository's `clusters/demo` (one GitSync each for a CRD with custom resources, plain
//! Deployments and Services, a Helm chart and a kustomize overlay); the controller runs as the
//! chart's ServiceAccount (a TokenRequest token, outside the cluster since kwok runs no
//! container) and brings everything up; the page's URL is printed; then the disaster (the
//! workload namespaces deleted) and `headway rebuild --wait`, with the time to recover.
//!
//! The controller and the git daemon are left running for the page, their PIDs in
//! `<state-dir>/demo/pids`; `cargo xtask demo --down` stops them, uninstalls what the demo put
//! in a cluster it reused, and stops the cluster if the demo started it.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use headway_tests::process::Guarded;

use crate::cluster::{Cluster, Options as ClusterOptions, Started};
use crate::gitserve::{GitDaemon, git};

/// Options of `cargo xtask demo`.
#[derive(clap::Args)]
#[group(skip)]
pub struct Options {
    #[command(flatten)]
    pub cluster: ClusterOptions,
    /// Stop what an earlier `cargo xtask demo` left running (controller, git daemon), remove
    /// what it installed, and stop the cluster if the demo started it.
    #[arg(long)]
    pub down: bool,
}

/// The chart's release and namespace.
const RELEASE: &str = "headway";
const NAMESPACE: &str = "headway-demo";
/// The GitSyncs of `examples/demo/clusters/demo`, beside the chart's root GitSync.
const CHILDREN: [&str; 4] = ["demo-platform", "demo-shop", "demo-status", "demo-api"];
/// The namespaces they create: the disaster deletes them.
const WORKLOADS: [&str; 4] = ["demo-platform", "demo-shop", "demo-status", "demo-api"];
/// The controller's identity in the Lease.
const IDENTITY: &str = "headway-demo-0";

/// Where the demo keeps its repository, logs, PID files and the chart identity's kubeconfig.
fn demo_dir(cluster: &Cluster) -> PathBuf {
    cluster.paths.state.join("demo")
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let cluster = Cluster::new(&opts.cluster);
    if opts.down {
        return down(&cluster);
    }
    let dir = demo_dir(&cluster);
    let started = cluster.up()?;
    if dir.exists() {
        println!("demo: cleaning up after an earlier demo first");
        stop_demo(&cluster, &dir, true)?;
    }
    std::fs::create_dir_all(dir.join("pids"))?;
    if started == Started::Fresh {
        std::fs::write(dir.join("cluster-started"), "")?;
    }
    let result = story(&cluster, &dir);
    if result.is_err() {
        println!(
            "demo: failed; the controller and git daemon were stopped. Clean up: {}",
            down_command(&cluster)
        );
    }
    result
}

/// The demo itself; the processes it starts are killed if it fails.
fn story(cluster: &Cluster, dir: &Path) -> anyhow::Result<()> {
    let paths = &cluster.paths;
    let tools = Tools::new(cluster, dir);
    let headway = crate::bench::build_headway(paths, false)?;

    // 1. The repository: examples/demo, its GitSyncs pointing at the served URL.
    let srv = dir.join("srv");
    let work = dir.join("work");
    for d in [&srv, &work] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("clean {}", d.display()))?;
        }
    }
    let bare = srv.join("demo.git");
    std::fs::create_dir_all(&bare)?;
    git(&bare, &["init", "-q", "--bare", "-b", "main"])?;
    let daemon = GitDaemon::start(&srv)?;
    let url = daemon.url("demo.git");
    copy_dir(&paths.root.join("examples/demo"), &work)?;
    for name in std::fs::read_dir(work.join("clusters/demo"))? {
        let file = name?.path();
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, text.replace("REPO_URL", &url))?;
    }
    git(&work, &["init", "-q", "-b", "main"])?;
    git(&work, &["add", "-A"])?;
    git(&work, &["commit", "-q", "-m", "the demo cluster"])?;
    git(
        &work,
        &["push", "-q", bare.to_str().context("path")?, "main"],
    )?;
    println!("demo: serving examples/demo at {url}");

    // 2. The chart, with the repository as its root GitSync.
    let chart = paths.root.join("charts/headway");
    tools.helm(&[
        "upgrade",
        "--install",
        RELEASE,
        chart.to_str().context("path")?,
        "-n",
        NAMESPACE,
        "--create-namespace",
        "--set-string",
        &format!("repository.url={url}"),
        "--set",
        "repository.path=clusters/demo",
        "--set",
        "sync.interval=1m",
    ])?;
    println!(
        "demo: helm install {RELEASE} charts/headway -n {NAMESPACE} --set repository.url={url} --set repository.path=clusters/demo"
    );
    // A field of the chart's Deployment, by JSONPath.
    let deployment = |jsonpath: &str| {
        tools.kubectl(&[
            "get",
            "deploy",
            RELEASE,
            "-n",
            NAMESPACE,
            "-o",
            &format!("jsonpath={jsonpath}"),
        ])
    };
    tools.wait(
        "the chart's Deployment (pods simulated by kwok)",
        Duration::from_secs(120),
        || {
            let state = deployment("{.status.availableReplicas}/{.spec.replicas}")?;
            let (available, wanted) = state.split_once('/').unwrap_or_default();
            Ok((!wanted.is_empty() && available == wanted).then_some(()))
        },
    )?;

    // 3. The controller as the chart's ServiceAccount, with the Deployment's command line.
    let kubeconfig = dir.join("chart-identity.kubeconfig");
    chart_identity(paths.kubeconfig().as_path(), &kubeconfig)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let args = deployment("{.spec.template.spec.containers[0].args}")?;
    let args: Vec<String> = serde_json::from_str(&args).context("the Deployment's args")?;
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            if a.starts_with("--cache-dir=") {
                format!("--cache-dir={}", dir.join("cache").display())
            } else if a.starts_with("--http-address=") {
                format!("--http-address=127.0.0.1:{port}")
            } else {
                a.replace("$(POD_NAMESPACE)", NAMESPACE)
                    .replace("$(POD_NAME)", IDENTITY)
            }
        })
        .collect();
    let log = dir.join("controller.log");
    let log_file = std::fs::File::create(&log)?;
    let mut controller = Guarded::spawn(
        Command::new(&headway)
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env("PATH", path_with(&paths.bin()))
            .env("HOME", dir)
            .env("POD_NAME", IDENTITY)
            .env("POD_NAMESPACE", NAMESPACE)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file),
    )
    .context("start headway controller")?;
    println!(
        "demo: headway {} (as ServiceAccount {NAMESPACE}/{RELEASE}, token from the TokenRequest API; log: {})",
        args.join(" "),
        log.display()
    );

    // 4. From nothing to everything Ready.
    let started = Instant::now();
    let all: Vec<&str> = std::iter::once(RELEASE).chain(CHILDREN).collect();
    tools.wait(
        "every GitSync Ready",
        Duration::from_secs(300),
        || {
            if let Ok(Some(status)) = controller.try_wait() {
                bail!("the controller exited ({status}); its log: {}", log.display());
            }
            let ready = tools.kubectl(&[
                "get",
                "gitsyncs",
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}",
            ])?;
            Ok(all
                .iter()
                .all(|name| ready.split_whitespace().any(|w| w == format!("{name}=True")))
                .then_some(()))
        },
    )?;
    println!(
        "demo: the repository is synced: every GitSync Ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    println!("{}", tools.kubectl(&["get", "gitsyncs", "-n", NAMESPACE])?);
    println!("{}", workloads(&tools)?);
    println!("demo: the page: http://127.0.0.1:{port}/");

    // 5. The disaster, and the rebuild.
    println!(
        "demo: disaster: kubectl delete namespace {}",
        WORKLOADS.join(" ")
    );
    let mut delete = vec!["delete", "namespace", "--wait=true", "--timeout=180s"];
    delete.extend(WORKLOADS);
    tools.kubectl(&delete)?;
    println!("demo: headway rebuild -n {NAMESPACE} --wait");
    let started = Instant::now();
    let status = Command::new(&headway)
        .args(["rebuild", "-n", NAMESPACE, "--wait"])
        .env("KUBECONFIG", paths.kubeconfig())
        .status()
        .context("run headway rebuild")?;
    ensure!(
        status.success(),
        "headway rebuild failed ({status}); controller log: {}",
        log.display()
    );
    println!(
        "demo: recovered in {:.1}s (seen from outside)",
        started.elapsed().as_secs_f64()
    );
    println!("{}", workloads(&tools)?);

    // 6. Left running for the page; how to stop.
    let controller_pid = controller.detach();
    let daemon_pid = daemon.keep();
    write_pid(dir, "controller", controller_pid)?;
    write_pid(dir, "git-daemon", daemon_pid)?;
    let cluster_note = if dir.join("cluster-started").exists() {
        "the local cluster the demo started"
    } else {
        "the local cluster (it was running before: the demo leaves it up)"
    };
    println!(
        "\ndemo: left running: headway controller (pid {controller_pid}, page http://127.0.0.1:{port}/), \
         git daemon (pid {daemon_pid}), {cluster_note}.\n\
         demo: try `KUBECONFIG={} {} status -n {NAMESPACE}`, or delete a Deployment and watch it come back.\n\
         demo: stop everything: {}",
        paths.kubeconfig().display(),
        headway.display(),
        down_command(cluster)
    );
    Ok(())
}

/// The Deployments, Services and Widgets of the workload namespaces.
fn workloads(tools: &Tools) -> anyhow::Result<String> {
    let mut out = String::new();
    for ns in WORKLOADS {
        let kinds = if ns == "demo-platform" {
            "widgets"
        } else {
            "deploy,svc"
        };
        out.push_str(&format!("--- {ns}\n"));
        out.push_str(&tools.kubectl(&["get", kinds, "-n", ns])?);
    }
    Ok(out)
}

/// Writes a kubeconfig for the chart's ServiceAccount (a token from the TokenRequest API, the
/// cluster's server and CA, nothing else) to `path`.
fn chart_identity(admin: &Path, path: &Path) -> anyhow::Result<()> {
    let admin = admin.to_str().context("kubeconfig path")?.to_string();
    let path = path.to_path_buf();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let cluster = headway_tests::TestCluster::connect_to(&admin).await?;
            headway_tests::identity::write_service_account_kubeconfig(
                &cluster.client,
                &cluster.config,
                (NAMESPACE, RELEASE),
                Duration::from_secs(24 * 3600),
                &path,
            )
            .await
            .map(|_| ())
        })
}

/// `cargo xtask demo --down`, with the cluster options this run was given.
fn down_command(cluster: &Cluster) -> String {
    let mut command = "cargo xtask demo --down".to_string();
    let default = crate::paths::Paths::new(None).state;
    if cluster.paths.state != default {
        command.push_str(&format!(" --state-dir {}", cluster.paths.state.display()));
    }
    if cluster.port_base() != 16443 {
        command.push_str(&format!(" --port-base {}", cluster.port_base()));
    }
    command
}

fn down(cluster: &Cluster) -> anyhow::Result<()> {
    let dir = demo_dir(cluster);
    if !dir.exists() {
        println!("demo: nothing to stop ({} does not exist)", dir.display());
        return Ok(());
    }
    let started_here = dir.join("cluster-started").exists();
    // The cluster the demo started goes away as a whole.
    stop_demo(cluster, &dir, !started_here)?;
    if started_here {
        println!("demo: stopping the cluster the demo started");
        cluster.down()?;
    } else {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
        println!("demo: the cluster was running before the demo: left up");
    }
    println!("demo: stopped");
    Ok(())
}

/// With `remove_objects`, removes what the demo installed (while its controller still runs: the
/// GitSyncs' finalizers prune their objects); then stops its processes. The cluster and the
/// `cluster-started` marker are left.
fn stop_demo(cluster: &Cluster, dir: &Path, remove_objects: bool) -> anyhow::Result<()> {
    let tools = Tools::new(cluster, dir);
    let reachable = tools.kubectl(&["get", "--raw", "/readyz"]).is_ok();
    let controller_alive = read_pid(dir, "controller").is_some();
    if reachable && remove_objects {
        if controller_alive {
            println!(
                "demo: deleting the demo's GitSyncs (their finalizers prune what they applied)"
            );
            if let Err(e) = tools.kubectl(&[
                "delete",
                "gitsyncs",
                "--all",
                "-n",
                NAMESPACE,
                "--wait=true",
                "--timeout=120s",
            ]) {
                println!("demo: {e:#}");
            }
        }
        let _ = tools.helm(&["uninstall", RELEASE, "-n", NAMESPACE, "--ignore-not-found"]);
        // Whatever is left (finalizers with no controller, objects of a failed run).
        let _ = tools.kubectl(&[
            "patch",
            "gitsyncs",
            "--all",
            "-n",
            NAMESPACE,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
        let mut delete = vec![
            "delete",
            "namespace",
            NAMESPACE,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ];
        delete.extend(WORKLOADS);
        let _ = tools.kubectl(&delete);
        let _ = tools.kubectl(&[
            "delete",
            "crd",
            "widgets.demo.headway.dev",
            "--ignore-not-found",
        ]);
        println!("demo: removed the chart and the demo's namespaces");
    }
    for name in ["controller", "git-daemon"] {
        if let Some(pid) = read_pid(dir, name) {
            stop_group(pid);
            println!("demo: stopped {name} (pid {pid})");
        }
    }
    let pids = dir.join("pids");
    if pids.exists() {
        std::fs::remove_dir_all(&pids)?;
    }
    Ok(())
}

/// Writes `<dir>/pids/<name>.pid`: the PID and the executable (guards against PID reuse).
fn write_pid(dir: &Path, name: &str, pid: u32) -> anyhow::Result<()> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("{name} (pid {pid}) is not running"))?;
    let mut file = std::fs::File::create(dir.join("pids").join(format!("{name}.pid")))?;
    writeln!(file, "{pid}\n{}", exe.display())?;
    Ok(())
}

/// The PID of `<dir>/pids/<name>.pid` if that process still runs the same executable.
fn read_pid(dir: &Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("pids").join(format!("{name}.pid"))).ok()?;
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    let exe = lines.next()?.trim().to_string();
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    link.to_string_lossy().starts_with(&exe).then_some(pid)
}

/// SIGTERM to the process group `pid` leads (the demo's processes lead their own groups), then
/// SIGKILL after 10 s.
fn stop_group(pid: u32) {
    let group = format!("-{pid}");
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        if is_zombie(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_none_or(|state| state == 'Z')
}

/// kubectl and helm on the cluster, with helm's state under the demo directory.
struct Tools {
    bin: PathBuf,
    kubeconfig: PathBuf,
    helm_home: PathBuf,
}

impl Tools {
    fn new(cluster: &Cluster, dir: &Path) -> Tools {
        Tools {
            bin: cluster.paths.bin(),
            kubeconfig: cluster.paths.kubeconfig(),
            helm_home: dir.join("helm"),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join(tool))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", path_with(&self.bin))
            .env("HELM_CACHE_HOME", self.helm_home.join("cache"))
            .env("HELM_CONFIG_HOME", self.helm_home.join("config"))
            .env("HELM_DATA_HOME", self.helm_home.join("data"))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run("kubectl", args)
    }

    fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run("helm", args)
    }

    /// Polls `check` every 250 ms until it returns `Some`, failing after `timeout`.
    fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match check() {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => String::new(),
                Err(e) => format!(": {e:#}"),
            };
            if Instant::now() > deadline {
                bail!("waiting for {what}: not done after {timeout:?}{last}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
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
