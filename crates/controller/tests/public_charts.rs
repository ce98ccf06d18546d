//! Charts and kustomizations shaped like widely used public ones (the render crate's
//! `testdata/public`): synced by GitSyncs against the local cluster, with the cluster's
//! capabilities, they reach Ready (CRDs from a chart's `crds/` and a kustomization's custom
//! resources applied in the same sync, a library subchart, an umbrella chart with a vendored
//! subchart, a hook Job applied as an ordinary object, a test hook left out), and deleting the
//! GitSyncs prunes everything, cluster-scoped objects included.
//!
//! Needs `helm` and `kustomize` on `PATH`, `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1`.

mod support;

use std::path::Path;
use std::time::Duration;

use headway_tests::git::{Upstream, git_daemon};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use support::*;

/// Copies `testdata/public/<name>` of the render crate into the upstream under `<name>/`.
fn copy_fixture(upstream: &Upstream, name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../render/testdata/public");
    upstream.copy_tree(&root.join(name), name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn public_shaped_charts_and_kustomizations_reach_ready() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("public_shaped_charts_and_kustomizations_reach_ready") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-public").await?;
    let _janitor = Janitor::new(&cluster, &ns);

    let upstream = Upstream::new();
    let fixtures = [
        ("cert-manager-like", 9),
        ("shop-umbrella", 3),
        ("kube-prometheus-like", 7),
    ];
    for (name, _) in fixtures {
        copy_fixture(&upstream, name);
    }
    let head = upstream.commit("public-shaped fixtures");
    let (_daemon, url) = git_daemon(&upstream);

    let controller = start_controller(&cluster, &ns.name, "public").await?;
    for (name, _) in fixtures {
        create_gitsync(
            &ns,
            name,
            &url,
            serde_json::json!({"path": name, "timeout": "90s"}),
        )
        .await?;
    }
    for (name, objects) in fixtures {
        let synced = wait_ready_at(&ns, name, &head, Duration::from_secs(180)).await?;
        let counts = synced.status.unwrap().objects.unwrap();
        assert_eq!(counts.total, objects, "{name}: {counts:?}");
        assert_eq!(counts.current, objects, "{name}: {counts:?}");
    }
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    assert!(
        crds.get_opt("certificates.cert-manager-like.io")
            .await?
            .is_some()
    );

    // Deleting the GitSyncs prunes what they applied, cluster-scoped objects too.
    let names: Vec<&str> = fixtures.iter().map(|(name, _)| *name).collect();
    delete_gitsyncs_and_wait(&ns, &names, Duration::from_secs(120)).await?;
    // Read once: the CRD may finish deleting between two reads.
    let crd = crds.get_opt("certificates.cert-manager-like.io").await?;
    assert!(
        crd.is_none_or(|crd| crd.metadata.deletion_timestamp.is_some()),
        "the chart's CRD is pruned or being deleted"
    );
    controller.stop().await?;
    Ok(())
}
