//! The disaster-recovery drill, automated: a repository of 300 objects in five namespaces of
//! their own (Deployments, headless Services, ConfigMaps, Secrets) synced by a controller; the
//! namespaces deleted (everything in them goes); a rebuild brings every object back and Current,
//! and the time to recover is reported. Twice:
//! - through the CLI: `headway rebuild --wait` reports it, `status.lastRebuild` records it;
//! - through the HTTP API of a `headway controller` process: `POST /api/v1/rebuild` with the
//!   bearer token of a ServiceAccount allowed to patch gitsyncs, then the time to recover read
//!   from `GET /api/v1/syncs/{ns}/{name}` and from `/metrics`, consistent with the status.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1`.

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use headway_tests::git::{Server, Upstream, git_daemon};
use headway_tests::process::Guarded;
use headway_tests::{TestCluster, TestNamespace};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAMESPACES: usize = 5;
/// Objects per namespace besides the Namespace itself (4 Deployments among them).
const PER_NAMESPACE: usize = 59;
const LABEL: &str = "headway.dev/dr-drill";

/// The drill's namespaces, deleted when dropped (also when the test fails half way).
struct Workloads {
    config: kube::Config,
    names: Vec<String>,
}

impl Drop for Workloads {
    fn drop(&mut self) {
        let (config, names) = (self.config.clone(), self.names.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            rt.block_on(async {
                let api: Api<Namespace> = Api::all(kube::Client::try_from(config)?);
                for n in names {
                    let _ = api.delete(&n, &DeleteParams::background()).await;
                }
                anyhow::Ok(())
            })
        })
        .join();
    }
}

fn namespace_yaml(name: &str, prefix: &str) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{LABEL}: {prefix}}}\n"
    );
    for j in 0..PER_NAMESPACE {
        text.push_str("---\n");
        let meta = format!("metadata:\n  name: obj-{j:02}\n  namespace: {name}\n");
        text.push_str(&match j % 15 {
            0 => deployment_yaml(&format!("app-{j:02}"), Some(name)),
            1..=5 => format!(
                "apiVersion: v1\nkind: ConfigMap\n{meta}data:\n  config.yaml: \"index: {j}\"\n"
            ),
            6..=10 => format!(
                "apiVersion: v1\nkind: Secret\n{meta}type: Opaque\nstringData:\n  token: \"t-{j}\"\n"
            ),
            _ => format!(
                "apiVersion: v1\nkind: Service\n{meta}spec:\n  clusterIP: None\n  selector: {{app: app-{j:02}}}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
            ),
        });
    }
    text
}

/// Objects in the repository: five namespaces and what they hold.
const TOTAL: usize = NAMESPACES * (PER_NAMESPACE + 1);

/// The drill's repository, served by `git daemon`, and its namespaces.
struct Drill {
    workloads: Workloads,
    sha: String,
    url: String,
    _daemon: Server,
    /// Holds the repository the daemon serves.
    _upstream: Upstream,
}

impl Drill {
    /// Installs the CRD and serves the repository (300 objects in namespaces named after `ns`).
    async fn prepare(cluster: &TestCluster, ns: &TestNamespace) -> anyhow::Result<Drill> {
        install_crd(&cluster.client).await?;
        let names: Vec<String> = (0..NAMESPACES)
            .map(|i| format!("{}-w{i}", ns.name))
            .collect();
        let workloads = Workloads {
            config: cluster.config.clone(),
            names: names.clone(),
        };
        let up = Upstream::new();
        for n in &names {
            up.write(&format!("{n}.yaml"), &namespace_yaml(n, &ns.name));
        }
        let sha = up.commit("300 objects");
        assert_eq!(TOTAL, 300);
        let (daemon, url) = git_daemon(&up);
        Ok(Drill {
            workloads,
            sha,
            url,
            _daemon: daemon,
            _upstream: up,
        })
    }

    /// Creates the GitSync `root` (long interval, no self-heal: only a rebuild request can bring
    /// the objects back) and waits until it is Ready with every object Current.
    async fn synced(&self, ns: &TestNamespace) -> anyhow::Result<()> {
        create_gitsync(
            ns,
            "root",
            &self.url,
            json!({"interval": "1h", "selfHeal": false, "timeout": "5m"}),
        )
        .await?;
        wait_ready_at(ns, "root", &self.sha, Duration::from_secs(240)).await?;
        let syncs: Api<headway_controller::GitSync> = ns.api();
        let counts = syncs.get("root").await?.status.and_then(|s| s.objects);
        assert_eq!(
            counts.as_ref().map(|c| (c.total, c.current)),
            Some((TOTAL as u32, TOTAL as u32)),
            "{counts:?}"
        );
        Ok(())
    }

    /// The disaster: the namespaces and everything in them, deleted and gone. Returns the
    /// Namespace API and the selector of the drill's namespaces.
    async fn disaster(
        &self,
        cluster: &TestCluster,
        ns: &TestNamespace,
    ) -> anyhow::Result<(Api<Namespace>, ListParams)> {
        let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
        for n in &self.workloads.names {
            namespaces.delete(n, &DeleteParams::background()).await?;
        }
        let lp = ListParams::default().labels(&format!("{LABEL}={}", ns.name));
        let deadline = Instant::now() + Duration::from_secs(240);
        while !namespaces.list_metadata(&lp).await?.items.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the drill's namespaces are still there after 240 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok((namespaces, lp))
    }

    /// Every namespace back, and a Deployment available again.
    async fn recovered(
        &self,
        cluster: &TestCluster,
        namespaces: &Api<Namespace>,
        lp: &ListParams,
    ) -> anyhow::Result<()> {
        assert_eq!(namespaces.list_metadata(lp).await?.items.len(), NAMESPACES);
        let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(cluster.client.clone(), &self.workloads.names[0]);
        let d = deployments.get("app-00").await?;
        assert_eq!(
            d.status.and_then(|s| s.available_replicas),
            Some(1),
            "a Deployment is back and available"
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespaces_deleted_come_back_current_through_rebuild_wait() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("namespaces_deleted_come_back_current_through_rebuild_wait") {
        return Ok(());
    }
    let kubeconfig = std::env::var("KUBECONFIG")
        .expect("cargo xtask test sets KUBECONFIG for the cluster tests");
    let ns = cluster.namespace("dr-drill").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let drill = Drill::prepare(&cluster, &ns).await?;
    let controller = start_controller(&cluster, &ns.name, "dr-drill-0").await?;
    drill.synced(&ns).await?;
    let (namespaces, lp) = drill.disaster(&cluster, &ns).await?;
    let (total, syncs) = (TOTAL, ns.api::<headway_controller::GitSync>());

    // The recovery, through the CLI.
    let started = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_headway"))
        .args(["rebuild", "-n", &ns.name, "--wait", "--timeout", "300"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .await?;
    let wall = started.elapsed();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains("recovery time: "))
        .unwrap_or_else(|| panic!("no recovery time in:\n{stdout}"));
    assert!(
        line.contains("for 1 GitSync(s)"),
        "recovery line: {line}\n{stdout}"
    );
    eprintln!("{line} (wall clock of `headway rebuild --wait`: {wall:.1?})");

    // Everything back, and Current.
    drill.recovered(&cluster, &namespaces, &lp).await?;
    let status = syncs.get("root").await?.status.expect("status");
    let counts = status.objects.clone().expect("object counts");
    assert_eq!(
        (counts.total, counts.current),
        (total as u32, total as u32),
        "{}",
        describe(Some(&status))
    );
    let record = status.last_rebuild.expect("lastRebuild recorded");
    assert_eq!(record.result, "Succeeded", "{record:?}");
    assert!(
        record.duration_ms > 0 && u128::from(record.duration_ms) <= wall.as_millis(),
        "lastRebuild took {} ms, the command {wall:?}",
        record.duration_ms
    );
    for stage in ["fetch", "apply"] {
        assert!(
            record.stages.iter().any(|s| s.name.starts_with(stage)),
            "no {stage} stage in {record:?}"
        );
    }
    // `headway status` reports the rebuild too.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_headway"))
        .args(["status", "-n", &ns.name, "-o", "json"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .await?;
    let status_json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let seconds = find_key(&status_json, "lastRebuild")
        .filter(|r| r["result"] == "Succeeded")
        .and_then(|r| r["durationSeconds"].as_f64());
    assert!(
        seconds.is_some_and(|s| s > 0.0),
        "`headway status -o json` reports no successful lastRebuild with its duration: {status_json}"
    );
    controller.stop().await?;
    Ok(())
}

/// The first value of `key` anywhere in `v`.
fn find_key<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|x| find_key(x, key))),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

/// A `headway controller` child process serving its HTTP API on a free loopback port.
struct ApiController {
    _child: Guarded,
    address: SocketAddr,
}

impl ApiController {
    /// Starts the controller for `namespace` and waits for its "HTTP API listening" log line.
    fn start(kubeconfig: &str, namespace: &str, dir: &Path) -> anyhow::Result<ApiController> {
        let log = dir.join("controller.log");
        let mut child = Guarded::spawn(
            Command::new(env!("CARGO_BIN_EXE_headway"))
                .args(["controller", "--namespace", namespace])
                .args(["--lease-namespace", namespace, "--identity", "dr-api-0"])
                .args(["--http-address", "127.0.0.1:0", "--log-format", "json"])
                .arg("--cache-dir")
                .arg(dir.join("cache"))
                .env("KUBECONFIG", kubeconfig)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?),
        )?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let address = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["message"] == "HTTP API listening")
                .and_then(|v| v["address"].as_str().and_then(|a| a.parse().ok()));
            if let Some(address) = address {
                return Ok(ApiController {
                    _child: child,
                    address,
                });
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("headway controller exited with {status}:\n{text}");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no \"HTTP API listening\" line within 60 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One HTTP/1.0 request: the status code and the body.
async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// A bearer token of the ServiceAccount `operator`, allowed to get, list and patch gitsyncs in
/// `ns` (what `POST /api/v1/rebuild` checks with a SubjectAccessReview).
async fn operator_token(ns: &TestNamespace) -> anyhow::Result<String> {
    let account: ServiceAccount = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator"}}),
    )?;
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &account)
        .await?;
    let role: Role = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "gitsync-patch"},
        "rules": [{"apiGroups": ["headway.dev"], "resources": ["gitsyncs"], "verbs": ["get", "list", "patch"]}],
    }))?;
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gitsync-patch"},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": ns.name}],
    }))?;
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(1800),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = ns
        .api::<ServiceAccount>()
        .create_token_request("operator", &PostParams::default(), &request)
        .await?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| anyhow::anyhow!("the TokenRequest has no status"))
}

/// The value of the sample `name{labels}` in OpenMetrics text (labels as written, in order).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespaces_deleted_come_back_current_through_the_api_rebuild() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("namespaces_deleted_come_back_current_through_the_api_rebuild") {
        return Ok(());
    }
    let kubeconfig = std::env::var("KUBECONFIG")
        .expect("cargo xtask test sets KUBECONFIG for the cluster tests");
    let ns = cluster.namespace("dr-api").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let drill = Drill::prepare(&cluster, &ns).await?;
    let dir = tempfile::tempdir()?;
    let controller = ApiController::start(&kubeconfig, &ns.name, dir.path())?;
    let address = controller.address;
    drill.synced(&ns).await?;
    let token = operator_token(&ns).await?;
    let (namespaces, lp) = drill.disaster(&cluster, &ns).await?;

    // The recovery, through the API.
    let started = Instant::now();
    let key = format!("{}/root", ns.name);
    let body = serde_json::to_vec(&json!({"syncs": [key]}))?;
    let (code, answer) = http(address, "POST", "/api/v1/rebuild", Some(&token), &body).await?;
    assert_eq!(code, 202, "{answer}");
    let answer: Value = serde_json::from_str(&answer)?;
    let id = answer["requests"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request id in {answer}"))
        .to_string();
    assert_eq!(answer["requests"][0]["kind"], "rebuild", "{answer}");

    // Followed through the API only: the summary of the sync, until a rebuild that started after
    // the request succeeded with every object Current.
    let path = format!("/api/v1/syncs/{}/root", ns.name);
    let deadline = Instant::now() + Duration::from_secs(300);
    let summary = loop {
        let (code, text) = http(address, "GET", &path, None, b"").await?;
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text)?;
        let rebuild = &v["lastRebuild"];
        let done = rebuild["start"].as_str().is_some_and(|s| s >= id.as_str())
            && rebuild["result"] == "Succeeded"
            && v["phase"] == "Ready"
            && v["objects"]["current"] == TOTAL;
        if done {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild requested at {id} is not done after 300 s: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let wall = started.elapsed();
    let seconds = summary["lastRebuild"]["durationSeconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("no lastRebuild.durationSeconds in {summary}"));
    eprintln!("time to recover through the API: {seconds:.3} s (wall clock {wall:.1?})");
    assert!(
        seconds > 0.0 && seconds <= wall.as_secs_f64(),
        "lastRebuild took {seconds} s, the recovery as seen from here {wall:?}"
    );
    drill.recovered(&cluster, &namespaces, &lp).await?;

    // The status agrees: the request handled, the same duration.
    let syncs: Api<headway_controller::GitSync> = ns.api();
    let status = syncs.get("root").await?.status.expect("status");
    assert_eq!(
        status.last_handled_rebuild_request.as_deref(),
        Some(id.as_str())
    );
    let record = status.last_rebuild.expect("lastRebuild recorded");
    assert_eq!(record.result, "Succeeded", "{record:?}");
    assert!(
        (record.duration_ms as f64 / 1000.0 - seconds).abs() < 0.001,
        "status says {} ms, the API {seconds} s",
        record.duration_ms
    );

    // So do the metrics: the last rebuild's duration (from the status) and the rebuild histogram
    // (from the progress events: one successful rebuild, of the same duration). The events are
    // published after the status write: wait until the histogram has the rebuild.
    let sync = format!("sync=\"{key}\"");
    let labels = format!("{sync},result=\"success\"");
    let text = headway_tests::wait_for(
        "the rebuild in the metrics",
        Duration::from_secs(30),
        || {
            let labels = &labels;
            async move {
                let (code, text) = http(address, "GET", "/metrics", None, b"").await?;
                Ok(
                    if code == 200
                        && sample(&text, "headway_rebuild_duration_seconds_count", labels).is_some()
                    {
                        Ok(text)
                    } else {
                        Err(format!("{code}: {text}"))
                    },
                )
            }
        },
    )
    .await?;
    let gauge = sample(&text, "headway_last_rebuild_duration_seconds", &sync);
    assert!(
        gauge.is_some_and(|g| (g - seconds).abs() < 0.001),
        "headway_last_rebuild_duration_seconds{{{sync}}} is {gauge:?}, the status {seconds} s:\n{text}"
    );
    let count = sample(&text, "headway_rebuild_duration_seconds_count", &labels);
    let sum = sample(&text, "headway_rebuild_duration_seconds_sum", &labels);
    assert_eq!(count, Some(1.0), "one rebuild recorded:\n{text}");
    assert!(
        sum.is_some_and(|s| (s - seconds).abs() < 0.002),
        "headway_rebuild_duration_seconds_sum{{{labels}}} is {sum:?}, the status {seconds} s:\n{text}"
    );
    let end = sample(&text, "headway_last_rebuild_timestamp_seconds", &sync);
    let status_end = record
        .end
        .parse::<k8s_openapi::jiff::Timestamp>()?
        .as_millisecond() as f64
        / 1000.0;
    assert!(
        end.is_some_and(|e| (e - status_end).abs() < 0.001),
        "headway_last_rebuild_timestamp_seconds is {end:?}, the status's end {}",
        record.end
    );
    drop(controller);
    Ok(())
}
