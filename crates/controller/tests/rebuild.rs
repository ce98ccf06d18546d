//! Rebuild: every object of a sync (its namespace and a cluster-scoped object included) is
//! deleted by hand; a rebuild request brings everything back, and status records the rebuild's
//! duration (the time to recover) and its per-stage timings.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1`.

mod support;

use std::time::Duration;

use headway_controller::Handle;
use headway_controller::crd::GitSync;
use headway_tests::git::{Upstream, git_daemon};
use headway_tests::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_restores_everything_and_records_its_duration() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("rebuild_restores_everything_and_records_its_duration") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-rebuild").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();
    // Cluster-scoped names are shared by parallel tests: derive them from the test namespace.
    let app_ns = format!("{}-app", ns.name);
    let role = format!("{}-reader", ns.name);

    let upstream = Upstream::new();
    upstream
        .write(
            "namespace.yaml",
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {app_ns}\n"),
        )
        .write(
            "role.yaml",
            &format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n"
            ),
        )
        .write("web.yaml", &deployment_yaml("web", Some(&app_ns)));
    for i in 0..20 {
        upstream.write(
            &format!("config/c{i}.yaml"),
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n  namespace: {app_ns}\ndata:\n  i: \"{i}\"\n"
            ),
        );
    }
    let head = upstream.commit("site");
    let (_daemon, url) = git_daemon(&upstream);
    let controller = start_controller(&cluster, &ns.name, "rebuild-a").await?;
    // A long interval: only the rebuild request can bring the objects back in time.
    create_gitsync(&ns, "site", &url, serde_json::json!({"interval": "1h"})).await?;
    let synced = wait_ready_at(&ns, "site", &head, Duration::from_secs(90)).await?;
    assert_eq!(
        synced
            .status
            .as_ref()
            .unwrap()
            .objects
            .as_ref()
            .unwrap()
            .total,
        23
    );

    // Disaster: delete everything by hand, the namespace included.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let roles: Api<ClusterRole> = Api::all(client.clone());
    namespaces
        .delete(&app_ns, &DeleteParams::background())
        .await?;
    roles.delete(&role, &DeleteParams::default()).await?;
    wait_for(
        "the app namespace to be gone",
        Duration::from_secs(90),
        || {
            let namespaces = namespaces.clone();
            let app_ns = app_ns.clone();
            async move {
                Ok(match namespaces.get_opt(&app_ns).await? {
                    None => Ok(()),
                    Some(n) => Err(format!("phase {:?}", n.status.and_then(|s| s.phase))),
                })
            }
        },
    )
    .await?;

    let requested = Handle::new(client.clone())
        .rebuild(&ns.name, "site")
        .await?;
    let rebuilt = wait_status(
        &ns,
        "site",
        "rebuild handled",
        Duration::from_secs(120),
        |_, s| {
            s.last_handled_rebuild_request.as_deref() == Some(requested.as_str())
                && s.last_rebuild.is_some()
                && condition(s, "Reconciling").is_some_and(|(st, _, _)| st == "False")
        },
    )
    .await?;
    let status = rebuilt.status.unwrap();
    let record = status.last_rebuild.clone().unwrap();
    assert_eq!(record.result, "Succeeded", "{}", describe(Some(&status)));
    assert_eq!(
        record.revision.as_deref(),
        Some(format!("main@sha1:{head}").as_str())
    );
    assert!(record.duration_ms > 0, "{record:?}");
    assert_eq!(record.changes.get("created"), Some(&23), "{record:?}");
    let stages: Vec<&str> = record.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(stages[..2], ["fetch", "render"], "{stages:?}");
    assert!(stages.iter().any(|s| s.starts_with("apply")), "{stages:?}");
    assert_eq!(stages.last(), Some(&"wait"), "{stages:?}");
    let sum: u64 = record.stages.iter().map(|s| s.duration_ms).sum();
    assert!(
        sum <= record.duration_ms,
        "stages {sum} ms within the total {} ms",
        record.duration_ms
    );
    assert_eq!(condition(&status, "Ready").unwrap().0, "True");
    assert!(
        condition(&status, "Ready")
            .unwrap()
            .2
            .starts_with("Rebuilt revision")
    );
    println!(
        "rebuild of 23 objects (namespace, ClusterRole, Deployment, 20 ConfigMaps): {} ({:?})",
        record.duration,
        record
            .stages
            .iter()
            .map(|s| format!("{} {} ms", s.name, s.duration_ms))
            .collect::<Vec<_>>()
    );

    // Everything is back.
    assert!(namespaces.get_opt(&app_ns).await?.is_some());
    assert!(roles.get_opt(&role).await?.is_some());
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &app_ns);
    for i in 0..20 {
        assert!(
            configmaps.get_opt(&format!("c{i}")).await?.is_some(),
            "c{i}"
        );
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &app_ns);
    let web = deployments.get("web").await?;
    assert_eq!(web.status.and_then(|s| s.available_replicas), Some(1));

    // Clean up the cluster-scoped objects through the finalizer.
    let api: Api<GitSync> = ns.api();
    api.delete("site", &DeleteParams::default()).await?;
    wait_for(
        "the GitSync's objects to be pruned",
        Duration::from_secs(90),
        || {
            let (api, roles) = (api.clone(), roles.clone());
            let role = role.clone();
            async move {
                let left = (
                    api.get_opt("site").await?.is_some(),
                    roles.get_opt(&role).await?.is_some(),
                );
                Ok(if left == (false, false) {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                })
            }
        },
    )
    .await?;
    controller.stop().await
}
