//! `headway rebuild --wait` and `headway status` (the binary) against the local cluster, a local
//! `git daemon` and a controller running in this process: everything deleted by hand comes back,
//! and the command reports the recovery time.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1`.

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use headway_tests::git::{Upstream, git_daemon};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use support::*;

async fn headway(args: &[&str], kubeconfig: &str) -> anyhow::Result<(i32, String, String)> {
    run_to_end(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_headway"))
            .args(args)
            .env("KUBECONFIG", kubeconfig),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_wait_brings_everything_back_and_reports_the_time() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("rebuild_wait_brings_everything_back_and_reports_the_time") {
        return Ok(());
    }
    let kubeconfig = std::env::var("KUBECONFIG")
        .expect("cargo xtask test sets KUBECONFIG for the cluster tests");
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("cli-rebuild").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let up = Upstream::new();
    up.write("alpha/one.yaml", &configmap_yaml("one", "1"))
        .write("beta/two.yaml", &configmap_yaml("two", "2"));
    let sha = up.commit("two configmaps");
    let (_daemon, url) = git_daemon(&up);
    let controller = start_controller(&cluster, &ns.name, "cli-rebuild-0").await?;
    for name in ["alpha", "beta"] {
        // Long interval: only the rebuild request can bring the objects back in time.
        create_gitsync(
            &ns,
            name,
            &url,
            json!({"interval": "1h", "path": name, "targetNamespace": ns.name, "selfHeal": false}),
        )
        .await?;
    }
    for name in ["alpha", "beta"] {
        wait_ready_at(&ns, name, &sha, Duration::from_secs(60)).await?;
    }

    // Ready is final: no second sync follows on its own status write (interval 1h, no
    // self-heal), so lastReconcile stays the same.
    let syncs: Api<headway_controller::GitSync> = ns.api();
    let first = syncs
        .get("alpha")
        .await?
        .status
        .and_then(|s| s.last_reconcile);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = syncs
        .get("alpha")
        .await?
        .status
        .and_then(|s| s.last_reconcile);
    assert_eq!(
        first.as_ref().map(|r| &r.start),
        later.as_ref().map(|r| &r.start),
        "a second sync ran"
    );

    // `status`: both Ready, exit 0.
    let (code, out, err) = headway(&["status", "-n", &ns.name], &kubeconfig).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("GITSYNC"), "{out}");
    for name in ["alpha", "beta"] {
        let row = format!("{}/{name}", ns.name);
        assert!(
            out.lines()
                .any(|l| l.starts_with(&row) && l.contains(" Ready ")),
            "{out}"
        );
    }

    // The disaster: both objects deleted by hand.
    let cms: Api<ConfigMap> = ns.api();
    for name in ["one", "two"] {
        cms.delete(name, &DeleteParams::default()).await?;
    }
    assert!(cms.get_opt("one").await?.is_none());

    let (code, out, err) = headway(
        &["rebuild", "-n", &ns.name, "--wait", "--timeout", "90"],
        &kubeconfig,
    )
    .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("rebuild requested: {}/alpha", ns.name)),
        "{out}"
    );
    assert!(
        out.contains(&format!("rebuilt: {}/beta Ready after", ns.name)),
        "{out}"
    );
    assert!(out.contains("recovery time: "), "{out}");
    assert!(out.contains("for 2 GitSync(s)"), "{out}");
    for name in ["one", "two"] {
        assert!(cms.get_opt(name).await?.is_some(), "{name} is back");
    }
    let status = syncs.get("alpha").await?.status.expect("status");
    let record = status.last_rebuild.expect("lastRebuild recorded");
    assert_eq!(record.result, "Succeeded");
    assert!(
        record.stages.iter().any(|s| s.name == "fetch"),
        "{record:?}"
    );

    // Errors: an unknown GitSync.
    let (code, _, err) = headway(&["rebuild", "nope", "-n", &ns.name], &kubeconfig).await?;
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("GitSync {}/nope not found", ns.name)),
        "{err}"
    );
    controller.stop().await?;
    Ok(())
}
