//! A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok (simulated nodes and pods), built from Go modules by [`tools`], started
//! as plain processes, stopped by their saved PIDs and, when those are lost, found by the state
//! directory their command lines name ([`procs`]).

pub mod pki;
pub mod procs;
pub mod tools;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;

use crate::paths::Paths;

/// Where and on which ports a cluster runs; two clusters with different state dirs and port
/// bases run side by side.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// State directory (PKI, kubeconfig, etcd data, logs, PIDs). Default: target/cluster.
    #[arg(long, global = true, env = "HEADWAY_CLUSTER_DIR")]
    pub state_dir: Option<PathBuf>,
    /// First of six consecutive ports: apiserver, etcd client, etcd peer, controller-manager,
    /// scheduler, kwok.
    #[arg(
        long,
        global = true,
        env = "HEADWAY_PORT_BASE",
        default_value_t = 16443
    )]
    pub port_base: u16,
}

/// The components, in start order.
pub(crate) const COMPONENTS: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

/// The node kwok simulates.
const NODE_NAME: &str = "kwok-node-0";

pub struct Cluster {
    pub paths: Paths,
    port_base: u16,
}

/// Whether `up` started the cluster or found it running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Fresh,
    Reused,
}

impl Cluster {
    pub fn new(opts: &Options) -> Self {
        Cluster {
            paths: Paths::new(opts.state_dir.clone()),
            port_base: opts.port_base,
        }
    }

    /// The first of the cluster's six ports.
    pub fn port_base(&self) -> u16 {
        self.port_base
    }

    fn apiserver_port(&self) -> u16 {
        self.port_base
    }
    fn etcd_port(&self) -> u16 {
        self.port_base + 1
    }
    fn etcd_peer_port(&self) -> u16 {
        self.port_base + 2
    }
    fn kcm_port(&self) -> u16 {
        self.port_base + 3
    }
    fn scheduler_port(&self) -> u16 {
        self.port_base + 4
    }
    fn kwok_port(&self) -> u16 {
        self.port_base + 5
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.paths.state.join("pids").join(format!("{name}.pid"))
    }
    fn log_file(&self, name: &str) -> PathBuf {
        self.paths.state.join("logs").join(format!("{name}.log"))
    }

    /// Environment for child tools (kubectl, helm, tests): the cluster's kubeconfig and the tools on PATH.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            (
                "KUBECONFIG".into(),
                self.paths.kubeconfig().display().to_string(),
            ),
            (
                "PATH".into(),
                format!("{}:{path}", self.paths.bin().display()),
            ),
        ]
    }

    /// Shell lines that put the cluster's kubeconfig and the built tools (kubectl, helm,
    /// kustomize, crane...) in the environment, after comments naming each tool's version as
    /// recorded in its build stamp.
    pub fn print_env(&self) -> anyhow::Result<()> {
        for version in tools::recorded_versions(&self.paths.bin()) {
            println!("# {version}");
        }
        println!("export KUBECONFIG={}", self.paths.kubeconfig().display());
        println!("export PATH={}:\"$PATH\"", self.paths.bin().display());
        Ok(())
    }

    /// PIDs of components that are running, by name.
    fn running(&self) -> Vec<(&'static str, u32)> {
        COMPONENTS
            .iter()
            .filter_map(|name| {
                let (pid, exe) = read_pid_file(&self.pid_file(name))?;
                is_alive(pid, &exe).then_some((*name, pid))
            })
            .collect()
    }

    pub fn status(&self) -> anyhow::Result<()> {
        println!("state: {}", self.paths.state.display());
        let running = self.running();
        for name in COMPONENTS {
            match running.iter().find(|(n, _)| *n == name) {
                Some((_, pid)) => println!("{name:<24} running (pid {pid})"),
                None => println!("{name:<24} not running"),
            }
        }
        if running.len() == COMPONENTS.len() && self.apiserver_ready() {
            println!(
                "apiserver https://127.0.0.1:{} ready",
                self.apiserver_port()
            );
        } else if !running.is_empty() {
            println!("cluster is not ready");
        }
        Ok(())
    }

    fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.paths.bin().join("kubectl"));
        cmd.arg("--kubeconfig").arg(self.paths.kubeconfig());
        cmd
    }

    fn apiserver_ready(&self) -> bool {
        self.kubectl()
            .args(["get", "--raw", "/readyz", "--request-timeout=2s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts the cluster, or reuses it when every component already runs and the API server is ready.
    pub fn up(&self) -> anyhow::Result<Started> {
        let bin = tools::ensure_built(&self.paths)?;
        let running = self.running();
        if running.len() == COMPONENTS.len() && self.apiserver_ready() {
            eprintln!(
                "xtask: cluster already up ({}), reusing it",
                self.paths.state.display()
            );
            return Ok(Started::Reused);
        }
        if !running.is_empty() {
            eprintln!("xtask: cluster partly running; stopping it before a fresh start");
            self.down()?;
        }
        let started = Instant::now();
        self.check_ports_free()?;
        let state = &self.paths.state;
        for d in ["pids", "logs", "etcd"] {
            std::fs::create_dir_all(state.join(d))
                .with_context(|| format!("creating {}", state.join(d).display()))?;
        }
        let pki = state.join("pki");
        pki::ensure(&pki)?;
        self.write_kubeconfig(&pki)?;
        let mut children: Vec<(&'static str, Child)> = Vec::new();
        let result = self.start_all(&bin, &pki, &mut children);
        if let Err(e) = result {
            // Leave nothing behind on a failed start.
            for (_, child) in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            return Err(e);
        }
        eprintln!(
            "xtask: cluster up in {:.1}s: https://127.0.0.1:{} (KUBECONFIG={})",
            started.elapsed().as_secs_f64(),
            self.apiserver_port(),
            self.paths.kubeconfig().display()
        );
        Ok(Started::Fresh)
    }

    fn check_ports_free(&self) -> anyhow::Result<()> {
        let ports = [
            (self.apiserver_port(), "kube-apiserver"),
            (self.etcd_port(), "etcd client"),
            (self.etcd_peer_port(), "etcd peer"),
            (self.kcm_port(), "kube-controller-manager"),
            (self.scheduler_port(), "kube-scheduler"),
            (self.kwok_port(), "kwok"),
        ];
        for (port, what) in ports {
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                bail!(
                    "port {port} (for {what}) on 127.0.0.1 is in use; stop what uses it, or pick other \
                     ports with --port-base / HEADWAY_PORT_BASE (six consecutive ports from the base)"
                );
            }
        }
        Ok(())
    }

    fn start_all(
        &self,
        bin: &Path,
        pki: &Path,
        children: &mut Vec<(&'static str, Child)>,
    ) -> anyhow::Result<()> {
        let state = &self.paths.state;
        let p = |f: &str| pki.join(f).display().to_string();
        let kubeconfig = self.paths.kubeconfig().display().to_string();
        let deadline = |secs| Instant::now() + Duration::from_secs(secs);

        // 1. etcd
        let etcd_url = format!("http://127.0.0.1:{}", self.etcd_port());
        let peer_url = format!("http://127.0.0.1:{}", self.etcd_peer_port());
        self.spawn(
            children,
            "etcd",
            bin,
            &[
                format!("--data-dir={}", state.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
        )?;
        self.wait_until(children, "etcd /health", deadline(60), || {
            http_get(self.etcd_port(), "/health").is_some_and(|b| b.contains("\"health\":\"true\""))
        })?;

        // 2. kube-apiserver
        self.spawn(
            children,
            "kube-apiserver",
            bin,
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", self.apiserver_port()),
                "--advertise-address=127.0.0.1".into(),
                "--endpoint-reconciler-type=none".into(),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--authorization-mode=Node,RBAC".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
            ],
        )?;
        self.wait_until(children, "kube-apiserver /readyz", deadline(120), || {
            self.apiserver_ready()
        })?;

        // 3. controller-manager and scheduler
        self.spawn(
            children,
            "kube-controller-manager",
            bin,
            &[
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", self.kcm_port()),
                "--leader-elect=false".into(),
                format!("--service-account-private-key-file={}", p("sa.key")),
                format!("--root-ca-file={}", p("ca.crt")),
                "--use-service-account-credentials=false".into(),
                // The default client limits (20 QPS) make a single controller-manager the
                // bottleneck of every large test: 250 Deployments need about a minute of its
                // requests. Raised so tests and benchmarks measure Headway, not this default.
                "--kube-api-qps=500".into(),
                "--kube-api-burst=1000".into(),
                "--concurrent-deployment-syncs=20".into(),
                "--concurrent-replicaset-syncs=20".into(),
                "--profiling=false".into(),
            ],
        )?;
        self.spawn(
            children,
            "kube-scheduler",
            bin,
            &[
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", self.scheduler_port()),
                "--leader-elect=false".into(),
                "--profiling=false".into(),
            ],
        )?;

        // 4. kwok, with the stage definitions shipped in its module.
        let kwok_config = self.write_kwok_config()?;
        self.spawn(
            children,
            "kwok",
            bin,
            &[
                format!("--kubeconfig={kubeconfig}"),
                format!("--config={}", kwok_config.display()),
                "--manage-all-nodes=false".into(),
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
                "--cidr=10.244.0.0/24".into(),
                "--node-ip=10.244.1.1".into(),
                "--node-lease-duration-seconds=40".into(),
                format!("--server-address=127.0.0.1:{}", self.kwok_port()),
            ],
        )?;

        // 5. the node, then the default ServiceAccount (created by the controller-manager).
        self.register_node(children)?;
        self.wait_until(
            children,
            "ServiceAccount default/default",
            deadline(90),
            || {
                self.kubectl()
                    .args([
                        "get",
                        "serviceaccount",
                        "default",
                        "-n",
                        "default",
                        "-o",
                        "name",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
        )?;
        Ok(())
    }

    fn spawn(
        &self,
        children: &mut Vec<(&'static str, Child)>,
        name: &'static str,
        bin: &Path,
        args: &[String],
    ) -> anyhow::Result<()> {
        let exe = bin.join(name);
        let log = File::create(self.log_file(name))
            .with_context(|| format!("creating {}", self.log_file(name).display()))?;
        let child = Command::new(&exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a Ctrl-C in the terminal that ran `up` does not reach the cluster.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut pid_file = File::create(self.pid_file(name))?;
        writeln!(pid_file, "{}\n{}", child.id(), exe.display())?;
        children.push((name, child));
        Ok(())
    }

    /// Polls `ready` until true; fails early, with the component's log tail, if any started
    /// component exits, and with every log's tail on timeout.
    fn wait_until(
        &self,
        children: &mut [(&'static str, Child)],
        what: &str,
        deadline: Instant,
        mut ready: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        loop {
            for (name, child) in children.iter_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{name} exited early ({status}) while waiting for {what}; last lines of {}:\n{}",
                        self.log_file(name).display(),
                        self.log_tail(name, 30)
                    );
                }
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = children
                    .iter()
                    .map(|(n, _)| {
                        format!(
                            "--- {n} ({}):\n{}",
                            self.log_file(n).display(),
                            self.log_tail(n, 15)
                        )
                    })
                    .collect();
                bail!("timed out waiting for {what}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self, name: &str, n: usize) -> String {
        std::fs::read_to_string(self.log_file(name))
            .map(|s| tools::tail(&s, n))
            .unwrap_or_else(|e| format!("(cannot read log: {e})"))
    }

    fn write_kubeconfig(&self, pki: &Path) -> anyhow::Result<()> {
        let b64 = |f: &str| -> anyhow::Result<String> {
            let bytes = std::fs::read(pki.join(f)).with_context(|| format!("reading {f}"))?;
            Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
        };
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: headway-local\n  cluster:\n    \
             server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  \
             user:\n    client-certificate-data: {crt}\n    client-key-data: {key}\ncontexts:\n- name: \
             headway-local\n  context:\n    cluster: headway-local\n    user: admin\n    namespace: default\n\
             current-context: headway-local\n",
            port = self.apiserver_port(),
            ca = b64("ca.crt")?,
            crt = b64("admin.crt")?,
            key = b64("admin.key")?,
        );
        std::fs::write(self.paths.kubeconfig(), config).context("writing the kubeconfig")
    }

    fn write_kwok_config(&self) -> anyhow::Result<PathBuf> {
        let module = tools::kwok_module_dir(&self.paths)?;
        let stages = [
            "kustomize/stage/node/fast/node-initialize.yaml",
            "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
            "kustomize/stage/pod/fast/pod-ready.yaml",
            "kustomize/stage/pod/fast/pod-complete.yaml",
            "kustomize/stage/pod/fast/pod-delete.yaml",
        ];
        let mut config = String::new();
        for stage in stages {
            let path = module.join(stage);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading kwok stage {}", path.display()))?;
            config.push_str("---\n");
            config.push_str(&text);
            config.push('\n');
        }
        let out = self.paths.state.join("kwok.yaml");
        std::fs::write(&out, config)?;
        Ok(out)
    }

    fn register_node(&self, children: &mut [(&'static str, Child)]) -> anyhow::Result<()> {
        let node = format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{NODE_NAME}",
            "annotations":{{"kwok.x-k8s.io/node":"fake","node.alpha.kubernetes.io/ttl":"0"}},
            "labels":{{"kubernetes.io/hostname":"{NODE_NAME}","kubernetes.io/os":"linux",
            "kubernetes.io/arch":"amd64","type":"kwok"}}}},
            "status":{{"allocatable":{{"cpu":"32","memory":"256Gi","pods":"110"}},
            "capacity":{{"cpu":"32","memory":"256Gi","pods":"110"}}}}}}"#
        );
        let mut child = self
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl apply for the node")?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(node.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "registering node {NODE_NAME}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.wait_until(
            children,
            &format!("node {NODE_NAME} Ready"),
            Instant::now() + Duration::from_secs(90),
            || {
                self.kubectl()
                    .args([
                        "get",
                        "node",
                        NODE_NAME,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                    ])
                    .output()
                    .is_ok_and(|o| o.status.success() && o.stdout == b"True")
            },
        )
    }

    /// Stops every component of this cluster (TERM, then KILL after 10 s) and removes the state.
    ///
    /// The components are the processes of the saved PIDs and every process of a component
    /// binary whose command line names this state directory: a PID file lost or overwritten
    /// (another `up` on the same directory) leaves nothing running. Processes of another state
    /// directory are never touched.
    pub fn down(&self) -> anyhow::Result<()> {
        let mut targets: Vec<procs::Found> = COMPONENTS
            .iter()
            .filter_map(|name| {
                let (pid, exe) = read_pid_file(&self.pid_file(name))?;
                is_alive(pid, &exe).then_some(procs::Found { name, pid, exe })
            })
            .collect();
        let mut unsaved = Vec::new();
        for found in procs::of_state_dir(&self.paths.state, &COMPONENTS) {
            if !targets.iter().any(|t| t.pid == found.pid) {
                unsaved.push(format!("{} (pid {})", found.name, found.pid));
                targets.push(found);
            }
        }
        if !unsaved.is_empty() {
            eprintln!(
                "xtask: running without a (current) PID file, found by the state directory {}: {}",
                self.paths.state.display(),
                unsaved.join(", ")
            );
        }
        // Reverse start order: kwok first, etcd last.
        targets.sort_by_key(|t| std::cmp::Reverse(COMPONENTS.iter().position(|c| *c == t.name)));
        let mut stopped = Vec::new();
        for procs::Found { name, pid, exe } in targets {
            if !is_alive(pid, &exe) {
                continue;
            }
            signal(pid, "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while still_running(pid, &exe) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if still_running(pid, &exe) {
                signal(pid, "KILL");
                let deadline = Instant::now() + Duration::from_secs(5);
                while still_running(pid, &exe) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if still_running(pid, &exe) {
                bail!("{name} (pid {pid}) is still running after SIGKILL");
            }
            stopped.push(format!("{name} (pid {pid})"));
        }
        if self.paths.state.exists() {
            std::fs::remove_dir_all(&self.paths.state)
                .with_context(|| format!("removing {}", self.paths.state.display()))?;
        }
        if stopped.is_empty() {
            eprintln!("xtask: no cluster process was running; state removed");
        } else {
            eprintln!("xtask: stopped {}; state removed", stopped.join(", "));
        }
        Ok(())
    }
}

fn read_pid_file(path: &Path) -> Option<(u32, PathBuf)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let exe = PathBuf::from(lines.next()?.trim());
    Some((pid, exe))
}

/// Whether `pid` is a live (not zombie) process running `exe`: guards against PID reuse.
fn is_alive(pid: u32, exe: &Path) -> bool {
    let Ok(link) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    // A rebuilt binary shows as "<path> (deleted)".
    if !link.to_string_lossy().starts_with(&*exe.to_string_lossy()) {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Field 3, after the parenthesised command name, is the state.
    let state = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some(Some('Z')) | None)
}

/// Whether a process found alive ([`is_alive`]) and then signalled has not finished exiting. An
/// exiting process loses its `/proc/<pid>/exe` link before it becomes a zombie (its memory is
/// released first, its files and sockets after): until then it still holds its ports, so it
/// counts as running.
fn still_running(pid: u32, exe: &Path) -> bool {
    if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok() {
        return is_alive(pid, exe);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    matches!(state, Some(c) if c != 'Z' && c != 'X')
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A plain HTTP/1.0 GET on 127.0.0.1, returning the body (etcd's health endpoint needs no TLS).
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}
