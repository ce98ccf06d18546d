//! The disaster-recovery drill, automated: a repository of 300 objects in five namespaces of
//! their own (Deployments, headless Services, ConfigMaps, Secrets) synced by a controller; the
//! namespaces deleted (everything in them goes); `headway rebuild --wait` brings every object back
//! and Current and reports the time to recover, and the GitSync's `status.lastRebuild` records it.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1`.

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use headway_tests::git::{Upstream, git_daemon};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;
use support::*;

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
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("dr-drill").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let names: Vec<String> = (0..NAMESPACES)
        .map(|i| format!("{}-w{i}", ns.name))
        .collect();
    let _workloads = Workloads {
        config: cluster.config.clone(),
        names: names.clone(),
    };
    let up = Upstream::new();
    for n in &names {
        up.write(&format!("{n}.yaml"), &namespace_yaml(n, &ns.name));
    }
    let sha = up.commit("300 objects");
    let total = NAMESPACES * (PER_NAMESPACE + 1);
    assert_eq!(total, 300);
    let (_daemon, url) = git_daemon(&up);
    let controller = start_controller(&cluster, &ns.name, "dr-drill-0").await?;
    // Long interval, no self-heal: only the rebuild request can bring the objects back.
    create_gitsync(
        &ns,
        "root",
        &url,
        json!({"interval": "1h", "selfHeal": false, "timeout": "5m"}),
    )
    .await?;
    wait_ready_at(&ns, "root", &sha, Duration::from_secs(240)).await?;
    let syncs: Api<headway_controller::GitSync> = ns.api();
    let counts = syncs.get("root").await?.status.and_then(|s| s.objects);
    assert_eq!(
        counts.as_ref().map(|c| (c.total, c.current)),
        Some((total as u32, total as u32)),
        "{counts:?}"
    );

    // The disaster: the namespaces and everything in them.
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    for n in &names {
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
    assert_eq!(namespaces.list_metadata(&lp).await?.items.len(), NAMESPACES);
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
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(cluster.client.clone(), &names[0]);
    let d = deployments.get("app-00").await?;
    assert_eq!(
        d.status.and_then(|s| s.available_replicas),
        Some(1),
        "a Deployment is back and available"
    );

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
