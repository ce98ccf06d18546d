//! A chart in git that branches on `.Capabilities` and declares `kubeVersion: ">=1.23.0-0"` (the
//! render crate's `testdata/helm-capabilities`): the controller renders it with the local
//! cluster's version and API versions, so it picks the PodDisruptionBudget API the cluster serves
//! and leaves out the ServiceMonitor whose API the cluster does not serve, and reaches Ready.
//!
//! Needs `helm` on `PATH`, `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1`.

mod support;

use std::time::Duration;

use headway_tests::git::{Upstream, git_daemon};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use support::*;

const CHART: [(&str, &str); 6] = [
    (
        "Chart.yaml",
        include_str!("../../render/testdata/helm-capabilities/Chart.yaml"),
    ),
    (
        "values.yaml",
        include_str!("../../render/testdata/helm-capabilities/values.yaml"),
    ),
    (
        "templates/_helpers.tpl",
        include_str!("../../render/testdata/helm-capabilities/templates/_helpers.tpl"),
    ),
    (
        "templates/configmap.yaml",
        include_str!("../../render/testdata/helm-capabilities/templates/configmap.yaml"),
    ),
    (
        "templates/pdb.yaml",
        include_str!("../../render/testdata/helm-capabilities/templates/pdb.yaml"),
    ),
    (
        "templates/servicemonitor.yaml",
        include_str!("../../render/testdata/helm-capabilities/templates/servicemonitor.yaml"),
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chart_sees_the_capabilities_of_the_target_cluster() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("a_chart_sees_the_capabilities_of_the_target_cluster") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-helm-caps").await?;
    let _janitor = Janitor::new(&cluster, &ns);

    let upstream = Upstream::new();
    for (path, text) in CHART {
        upstream.write(&format!("chart/{path}"), text);
    }
    let head = upstream.commit("a chart that branches on the cluster");
    let (_daemon, url) = git_daemon(&upstream);

    let controller = start_controller(&cluster, &ns.name, "helm-caps").await?;
    create_gitsync(
        &ns,
        "caps",
        &url,
        serde_json::json!({"path": "chart", "render": {"type": "Helm"}}),
    )
    .await?;
    let synced = wait_ready_at(&ns, "caps", &head, Duration::from_secs(90)).await?;

    let server = cluster.client.apiserver_version().await?;
    let data = configmap_data(&cluster.client, &ns.name, "caps-capabilities")
        .await?
        .expect("the chart's ConfigMap");
    assert_eq!(data["kubeVersion"], server.git_version);
    assert_eq!(data["kubeMinor"], server.minor);
    // The local cluster serves policy/v1 PodDisruptionBudgets (and not policy/v1beta1).
    assert_eq!(data["pdbApi"], "policy/v1");
    let pdbs: Api<PodDisruptionBudget> = ns.api();
    assert!(pdbs.get_opt("caps-web").await?.is_some());
    // No ServiceMonitor: the cluster has no monitoring.coreos.com API (applying one would fail).
    let objects = synced.status.unwrap().objects.unwrap();
    assert_eq!((objects.total, objects.current), (2, 2), "{objects:?}");
    controller.stop().await?;
    Ok(())
}
