//! The chart `charts/headway` installed with `helm install` into the local cluster, and the real
//! `headway controller` binary run as the chart's identity: a token requested for the chart's
//! ServiceAccount (TokenRequest) in a kubeconfig holding nothing else, the command line of the
//! chart's Deployment. kwok simulates the chart's pods but runs no container, so the process runs
//! outside the cluster with exactly the rights the chart's RBAC gives it: whatever the RBAC
//! forgets (GitSyncs and their status, Secrets for credentials, Events, the Lease,
//! TokenReview/SubjectAccessReview for the API, impersonation) fails this test. Then
//! `helm uninstall` leaves nothing of the chart behind.
//!
//! The install is the most restricted one the chart offers (`rbac.namespaced`, no cluster-admin,
//! a default ServiceAccount impersonated for applying), so that no broad grant hides a gap; the
//! cluster-wide ClusterRole renders the same rules (`headway.ownRules`), checked by
//! `crates/controller/tests/chart.rs`.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1`, `HEADWAY_GIT_TESTS=1`, and `helm` and `kubectl` on `PATH`.

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use headway_controller::crd::{DeletionPolicy, GitSync};
use headway_tests::git::{Upstream, http_server};
use headway_tests::identity::{request_token, write_service_account_kubeconfig};
use headway_tests::process::Guarded;
use headway_tests::wait_for;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use support::*;

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/headway")
}

/// Runs `helm` (private cache and config directories) and returns its standard output.
fn helm(args: &[&str]) -> anyhow::Result<String> {
    let home = std::env::temp_dir().join("headway-helm-test");
    let out = Command::new("helm")
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .context("running helm (on PATH: `eval \"$(cargo xtask cluster env)\"`)")?;
    ensure!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `kubectl` with `stdin` as input and returns its standard output.
fn kubectl(args: &[&str], stdin: &str) -> anyhow::Result<String> {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl")?;
    child
        .stdin
        .take()
        .context("kubectl stdin")?
        .write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `helm uninstall` when dropped, so a failed test leaves no cluster-scoped object behind.
struct Release {
    name: String,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm(&[
            "uninstall",
            &self.name,
            "-n",
            &self.namespace,
            "--ignore-not-found",
        ]);
    }
}

/// One HTTP/1.1 request to `address` (`Connection: close`): the status code and the body.
fn http(
    address: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(address)
        .with_context(|| format!("connecting to the controller's API at {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("an HTTP answer without headers: {text}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("an HTTP answer without status: {head}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// The address the controller's API listens on, from its JSON log.
fn api_address(log: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "HTTP API listening")
        .and_then(|l| l["address"].as_str().map(str::to_string))
        .ok_or_else(|| format!("no `HTTP API listening` in the log yet:\n{text}"))
}

/// The chart's Deployment's container arguments, with the pod's environment substituted and the
/// cache and the API moved to this machine.
fn controller_args(manifests: &[Value], ns: &str, identity: &str, cache: &Path) -> Vec<String> {
    let deployment = manifests
        .iter()
        .find(|m| m["kind"] == "Deployment")
        .expect("the chart has a Deployment");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the controller's args");
    args.iter()
        .map(|a| {
            let a = a.as_str().expect("string args");
            if a.starts_with("--cache-dir=") {
                format!("--cache-dir={}", cache.display())
            } else if a.starts_with("--http-address=") {
                "--http-address=127.0.0.1:0".into()
            } else {
                a.replace("$(POD_NAMESPACE)", ns)
                    .replace("$(POD_NAME)", identity)
            }
        })
        .collect()
}

/// The objects of a multi-document YAML text, as JSON.
fn documents(text: &str) -> anyhow::Result<Vec<Value>> {
    Ok(headway_render::parse_manifests(text, "helm get manifest")?
        .into_iter()
        .map(|m| m.object)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_chart_installs_and_its_identity_runs_the_controller() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("the_chart_installs_and_its_identity_runs_the_controller") {
        return Ok(());
    }
    // The CRD is cluster-wide and shared by every test binary: installed (idempotently) the way
    // the other tests do, and `helm install --skip-crds` leaves it alone.
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("chart-install").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let release = format!("hw{}", std::process::id());
    let client = cluster.client.clone();

    // A repository behind basic auth: the credentials Secret must be readable by the chart's
    // identity. Applied as the impersonated `tenant` ServiceAccount, bound to `edit` here as a
    // user of `rbac.clusterAdmin=false` would bind their own role.
    let upstream = Upstream::new();
    upstream.write("config.yaml", &configmap_yaml("from-chart", "yes"));
    upstream.write("web.yaml", &deployment_yaml("web", None));
    let head = upstream.commit("first");
    let (_git, url) = http_server(&upstream, &[("reader", "s3cret")]);
    kubectl(
        &["apply", "-n", &ns.name, "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-creds"},
             "stringData": {"username": "reader", "password": "s3cret"}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tenant"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "tenant-edit"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
             "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": ns.name}]},
        ]})
        .to_string(),
    )?;

    let chart = chart_dir();
    let chart = chart.to_str().context("chart path")?;
    let _release = Release {
        name: release.clone(),
        namespace: ns.name.clone(),
    };
    helm(&[
        "install",
        &release,
        chart,
        "-n",
        &ns.name,
        "--skip-crds",
        "--set-string",
        &format!("repository.url={url}"),
        "--set",
        "repository.secretName=git-creds",
        "--set",
        "sync.interval=1m",
        "--set",
        "rbac.namespaced=true",
        "--set",
        "rbac.clusterAdmin=false",
        "--set",
        "controller.defaultServiceAccount=tenant",
        "--set",
        "controller.leaseDurationSeconds=6",
    ])?;
    let manifest = helm(&["get", "manifest", &release, "-n", &ns.name])?;
    let manifests = documents(&manifest)?;
    let fullname = format!("{release}-headway");

    // The root GitSync, from values.
    let gitsyncs: Api<GitSync> = ns.api();
    let root = gitsyncs.get(&release).await.context("the root GitSync")?;
    assert_eq!(root.spec.repository.url, url);
    assert_eq!(
        root.spec
            .repository
            .secret_ref
            .as_ref()
            .map(|s| s.name.as_str()),
        Some("git-creds")
    );

    // The controller as the chart's ServiceAccount, with the chart's command line.
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    write_service_account_kubeconfig(
        &client,
        &cluster.config,
        (&ns.name, &fullname),
        Duration::from_secs(3600),
        &kubeconfig,
    )
    .await?;
    let identity = format!("{fullname}-0");
    let args = controller_args(&manifests, &ns.name, &identity, &dir.path().join("cache"));
    assert!(
        args.contains(&format!("--namespace={}", ns.name)),
        "{args:?}"
    );
    let log = dir.path().join("controller.log");
    let file = std::fs::File::create(&log)?;
    let mut controller = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_headway"))
            .args(&args)
            .env_remove("KUBECONFIG")
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", dir.path())
            .env("POD_NAME", &identity)
            .env("POD_NAMESPACE", &ns.name)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file),
    )
    .context("starting headway controller")?;
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Synced to Ready (Secret read, applied as `tenant`, status written), with Events.
    wait_ready_at(&ns, &release, &head, Duration::from_secs(90))
        .await
        .with_context(|| format!("controller log:\n{}", log_text()))?;
    assert_eq!(
        configmap_data(&client, &ns.name, "from-chart")
            .await?
            .context("the repository's ConfigMap")?["value"],
        "yes"
    );
    let events = wait_for(
        "an Event of the controller about its GitSync",
        Duration::from_secs(30),
        || {
            let (client, ns, release) = (client.clone(), ns.name.clone(), release.clone());
            async move {
                let events = events_of(&client, &ns, &release).await?;
                Ok(if events.is_empty() {
                    Err("none".to_string())
                } else {
                    Ok(events)
                })
            }
        },
    )
    .await
    .with_context(|| format!("controller log:\n{}", log_text()))?;
    assert!(
        events
            .iter()
            .any(|(_, _, _, instance)| instance == &identity),
        "Events written by {identity}: {events:?}"
    );
    // The Lease, in the release namespace, held by this process.
    let leases: Api<Lease> = ns.api();
    let holder = leases
        .get("headway-controller")
        .await?
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some(identity.as_str()));

    // Every object of the chart is Current (kwok runs the Deployment's two pods).
    wait_for(
        "every object of the chart to be Current",
        Duration::from_secs(60),
        || {
            let manifest = manifest.clone();
            let expected = manifests.len();
            async move {
                let live = kubectl(&["get", "-f", "-", "-o", "json"], &manifest)?;
                let live: Value = serde_json::from_str(&live)?;
                let items = live["items"].as_array().cloned().unwrap_or_default();
                let not_current: Vec<String> = items
                    .iter()
                    .filter(|o| !headway_model::health::health(o).is_current())
                    .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                    .collect();
                Ok(if items.len() == expected && not_current.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} live of {}; not Current: {not_current:?}",
                        items.len(),
                        expected
                    ))
                })
            }
        },
    )
    .await?;

    // The API: TokenReview and SubjectAccessReview as the chart's identity. A caller allowed to
    // patch GitSyncs asks for a rebuild; a caller without a token is refused.
    let address = wait_for("the API's address", Duration::from_secs(30), || {
        let log = log.clone();
        async move { Ok(api_address(&log)) }
    })
    .await?;
    kubectl(
        &["apply", "-n", &ns.name, "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "caller"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "gitsync-requests"},
             "rules": [{"apiGroups": ["headway.dev"], "resources": ["gitsyncs"],
                        "verbs": ["get", "list", "patch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "caller-gitsync-requests"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gitsync-requests"},
             "subjects": [{"kind": "ServiceAccount", "name": "caller", "namespace": ns.name}]},
        ]})
        .to_string(),
    )?;
    let caller = request_token(&client, &ns.name, "caller", Duration::from_secs(600)).await?;
    // The RoleBinding takes effect a moment after it is created.
    let user = format!("system:serviceaccount:{}:caller", ns.name);
    headway_tests::wait_allowed(&client, &user, &ns.name, "headway.dev", "gitsyncs", "patch")
        .await?;
    let body = json!({"syncs": [format!("{}/{release}", ns.name)]}).to_string();
    let (code, text) = http(&address, "POST", "/api/v1/rebuild", None, &body)?;
    assert_eq!(code, 401, "without a token: {text}");
    let (code, text) = http(&address, "POST", "/api/v1/rebuild", Some(&caller), &body)?;
    assert_eq!(code, 202, "{text}\ncontroller log:\n{}", log_text());
    wait_status(
        &ns,
        &release,
        "a rebuild recorded",
        Duration::from_secs(90),
        |_, s| {
            s.last_rebuild.is_some() && condition(s, "Ready").is_some_and(|(st, _, _)| st == "True")
        },
    )
    .await?;

    // /metrics serves every metric the chart's PrometheusRule alerts on, and this replica leads.
    let rule = helm(&[
        "template",
        &release,
        chart,
        "-n",
        &ns.name,
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ])?;
    let mut alerted: Vec<String> = rule
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("headway_"))
        .map(str::to_string)
        .collect();
    alerted.sort();
    alerted.dedup();
    assert_eq!(alerted.len(), 5, "{alerted:?}");
    let metrics = wait_for(
        "every alerted metric in /metrics",
        Duration::from_secs(30),
        || {
            let (address, alerted) = (address.clone(), alerted.clone());
            async move {
                let (code, text) = http(&address, "GET", "/metrics", None, "")?;
                let missing: Vec<&String> = alerted
                    .iter()
                    .filter(|m| {
                        !text.lines().any(|l| {
                            l.starts_with(&format!("{m}{{")) || l.starts_with(&format!("{m} "))
                        })
                    })
                    .collect();
                Ok(if code == 200 && missing.is_empty() {
                    Ok(text)
                } else {
                    Err(format!("{code}, missing {missing:?}:\n{text}"))
                })
            }
        },
    )
    .await?;
    assert!(
        metrics.lines().any(|l| l == "headway_leader 1"),
        "{metrics}"
    );

    // Deleting the root GitSync while the controller runs (as `helm uninstall` may): the chart's
    // default `sync.deletionPolicy=Orphan` leaves what it applied; the finalizer is removed.
    assert_eq!(root.spec.deletion_policy, DeletionPolicy::Orphan);
    gitsyncs.delete(&release, &DeleteParams::default()).await?;
    wait_for(
        "the root GitSync to be gone",
        Duration::from_secs(60),
        || {
            let api = gitsyncs.clone();
            let release = release.clone();
            async move {
                Ok(match api.get_opt(&release).await? {
                    None => Ok(()),
                    Some(g) => Err(format!("still there: {:?}", g.status)),
                })
            }
        },
    )
    .await
    .with_context(|| format!("controller log:\n{}", log_text()))?;
    assert!(
        configmap_data(&client, &ns.name, "from-chart")
            .await?
            .is_some(),
        "the root GitSync's finalizer left its objects in place"
    );
    ensure!(
        controller.try_wait()?.is_none(),
        "the controller exited:\n{}",
        log_text()
    );
    controller.kill();

    // helm uninstall: nothing of the chart is left (the CRD stays: Helm never deletes what it
    // installed from crds/, and this release skipped them anyway).
    helm(&["uninstall", &release, "-n", &ns.name, "--wait"])?;
    let selector = format!("app.kubernetes.io/instance={release}");
    let mut kinds: Vec<String> = manifests
        .iter()
        .map(|m| m["kind"].as_str().unwrap_or_default().to_ascii_lowercase())
        .collect();
    kinds.push("pod".into());
    kinds.push("replicaset".into());
    kinds.sort();
    kinds.dedup();
    let kinds = kinds.join(",");
    wait_for(
        "no object of the chart left",
        Duration::from_secs(60),
        || {
            let (kinds, selector) = (kinds.clone(), selector.clone());
            async move {
                let left = kubectl(&["get", &kinds, "-A", "-l", &selector, "-o", "name"], "")?;
                Ok(if left.trim().is_empty() {
                    Ok(())
                } else {
                    Err(left)
                })
            }
        },
    )
    .await?;
    let crd = kubectl(&["get", "crd", "gitsyncs.headway.dev", "-o", "name"], "")?;
    if crd.trim().is_empty() {
        bail!("the CRD is shared by every test: it must survive the uninstall");
    }
    Ok(())
}
