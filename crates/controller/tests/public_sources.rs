//! Real public charts and kustomizations, as their projects publish them (pinned versions fetched
//! from the Go module proxy by `cargo xtask test`, see `headway_tests::public_sources`), synced
//! by GitSyncs against the local cluster: the metrics-server, ingress-nginx and cert-manager
//! and gatekeeper charts, Argo CD's `cluster-install` and prometheus-operator's bundle through
//! kustomize overlays as users write them; and the dependencies of the kyverno chart that its
//! repository does not carry, as Headway would download them.
//!
//! Each ends as its content says: Ready with every object Current; metrics-server not Ready
//! because its aggregated APIService is never Available (kwok runs no container), and only that
//! object is reported. Deleting the GitSyncs prunes everything, cluster-scoped objects included
//! (CRDs, webhook configurations, the APIService).
//!
//! Needs `helm` and `kustomize` on `PATH`, `HEADWAY_CLUSTER_TESTS=1`, `HEADWAY_GIT_TESTS=1` and
//! `HEADWAY_PUBLIC_SOURCES` (set by `cargo xtask test`).

mod support;

use std::time::Duration;

use headway_tests::git::{Upstream, git_daemon};
use headway_tests::public_sources::{
    ARGO_CD, CERT_MANAGER, GATEKEEPER, INGRESS_NGINX, KYVERNO, METRICS_SERVER, PROMETHEUS_OPERATOR,
    modcache,
};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::json;
use support::*;

/// Cluster-scoped kinds the sources create, checked to be pruned at the end.
const CLUSTER_KINDS: &[(&str, &str, &str, &str)] = &[
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
    ),
    ("apiregistration.k8s.io", "v1", "APIService", "apiservices"),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_public_charts_and_kustomizations_sync_and_prune() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    let test = "real_public_charts_and_kustomizations_sync_and_prune";
    if !git_enabled(test) {
        return Ok(());
    }
    let Some(cache) = modcache(test) else {
        return Ok(());
    };
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-real").await?;
    let _janitor = Janitor::new(&cluster, &ns);

    // The repository a user would keep: upstream trees vendored as published, and overlays.
    let upstream = Upstream::new();
    upstream
        .copy_tree(
            &METRICS_SERVER.dir(&cache).join("charts/metrics-server"),
            "charts/metrics-server",
        )
        .copy_tree(
            &INGRESS_NGINX.dir(&cache).join("charts/ingress-nginx"),
            "charts/ingress-nginx",
        )
        .copy_tree(
            &CERT_MANAGER.dir(&cache).join("deploy/charts/cert-manager"),
            "charts/cert-manager",
        )
        .copy_tree(
            &GATEKEEPER.dir(&cache).join("charts/gatekeeper"),
            "charts/gatekeeper",
        );
    for dir in [
        "base",
        "crds",
        "cluster-rbac",
        "cluster-install",
        "namespace-install",
    ] {
        upstream.copy_tree(
            &ARGO_CD.dir(&cache).join("manifests").join(dir),
            &format!("vendor/argo-cd/{dir}"),
        );
    }
    let operator = PROMETHEUS_OPERATOR.dir(&cache);
    for file in ["kustomization.yaml", "bundle.yaml"] {
        let text = std::fs::read_to_string(operator.join(file))?;
        upstream.write(&format!("vendor/prometheus-operator/{file}"), &text);
    }
    // Overlays put the vendored installs into this test's namespace, as their docs suggest.
    for (app, base) in [
        ("argo-cd", "../../vendor/argo-cd/cluster-install"),
        ("prometheus-operator", "../../vendor/prometheus-operator"),
    ] {
        upstream.write(
            &format!("apps/{app}/kustomization.yaml"),
            &format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 namespace: {}\nresources:\n- {base}\n",
                ns.name
            ),
        );
    }
    let head = upstream.commit("vendored public charts and kustomizations");
    let (_daemon, url) = git_daemon(&upstream);

    let controller = start_controller(&cluster, &ns.name, "real").await?;
    let helm = |values: serde_json::Value| json!({"type": "Helm", "helm": {"values": values}});
    // (name, path, render, timeout): metrics-server's wait cannot succeed, so it ends sooner.
    let syncs = [
        (
            "metrics-server",
            "charts/metrics-server",
            helm(json!({})),
            "20s",
        ),
        (
            "ingress-nginx",
            "charts/ingress-nginx",
            helm(json!({})),
            "90s",
        ),
        (
            "cert-manager",
            "charts/cert-manager",
            helm(json!({"crds": {"enabled": true}})),
            "90s",
        ),
        // Its webhooks would check every write of the cluster the other tests share (and kwok
        // serves none): left off, as on a cluster that only wants its audit.
        (
            "gatekeeper",
            "charts/gatekeeper",
            helm(json!({"disableValidatingWebhook": true, "disableMutation": true})),
            "90s",
        ),
        (
            "argo-cd",
            "apps/argo-cd",
            json!({"type": "Kustomize"}),
            "90s",
        ),
        (
            "prometheus-operator",
            "apps/prometheus-operator",
            json!({"type": "Kustomize"}),
            "90s",
        ),
    ];
    for (name, path, render, timeout) in &syncs {
        create_gitsync(
            &ns,
            name,
            &url,
            json!({"path": path, "render": render, "timeout": timeout}),
        )
        .await?;
    }

    // Ready, every object Current.
    for name in [
        "ingress-nginx",
        "cert-manager",
        "argo-cd",
        "prometheus-operator",
        "gatekeeper",
    ] {
        let synced = wait_ready_at(&ns, name, &head, Duration::from_secs(240)).await?;
        let counts = synced.status.unwrap().objects.unwrap();
        assert!(counts.total >= 10, "{name}: {counts:?}");
        assert_eq!(counts.current, counts.total, "{name}: {counts:?}");
        eprintln!("{name}: Ready, {} objects Current", counts.total);
    }
    // gatekeeper's `pre-delete` hook Jobs (they delete its webhook configurations) were left
    // out; its install hooks were applied.
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = ns.api();
    let hooks: Vec<String> = jobs
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|j| {
            j.metadata
                .annotations
                .as_ref()?
                .get("helm.sh/hook")
                .cloned()
        })
        .collect();
    assert!(hooks.iter().any(|h| h == "post-install"), "{hooks:?}");
    assert!(!hooks.iter().any(|h| h.contains("delete")), "{hooks:?}");
    // metrics-server: applied, but its APIService is never Available here; it alone is named.
    let metrics = wait_status(
        &ns,
        "metrics-server",
        "applied, waiting only for its APIService",
        Duration::from_secs(240),
        |_, s| {
            s.last_attempted_revision.as_deref() == Some(&format!("main@sha1:{head}"))
                && s.unhealthy.len() == 1
                && condition(s, "Ready").is_some_and(|(st, _, _)| st == "False")
        },
    )
    .await?;
    let status = metrics.status.unwrap();
    let unhealthy = &status.unhealthy[0];
    assert_eq!(
        (unhealthy.kind.as_str(), unhealthy.name.as_str()),
        (
            "APIService.apiregistration.k8s.io",
            "v1beta1.metrics.k8s.io"
        ),
        "{status:?}"
    );
    assert!(
        unhealthy.message.contains("APIService not available"),
        "{unhealthy:?}"
    );
    // Deleting the GitSyncs prunes everything they applied, cluster-scoped objects included.
    let names: Vec<&str> = syncs.iter().map(|(name, ..)| *name).collect();
    delete_gitsyncs_and_wait(&ns, &names, Duration::from_secs(180)).await?;
    let selector = format!("headway.dev/sync-namespace={}", ns.name);
    for (group, version, kind, plural) in CLUSTER_KINDS {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &ar);
        let left: Vec<String> = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none())
            .filter_map(|o| o.metadata.name)
            .collect();
        assert!(left.is_empty(), "{kind} not pruned: {left:?}");
    }
    controller.stop().await?;
    Ok(())
}

/// kyverno's chart vendors two dependencies (`charts/crds`, `charts/grafana`) and names three
/// more by repository URL, pinned by its Chart.lock: those three are what a sync downloads
/// (from repositories this machine cannot reach, so the download itself is tested against a
/// local repository in `remote_chart.rs`).
#[test]
fn kyverno_chart_dependencies_to_download() {
    let Some(cache) = modcache("kyverno_chart_dependencies_to_download") else {
        return;
    };
    let missing =
        headway_render::chart::missing_dependencies(&KYVERNO.dir(&cache).join("charts/kyverno"))
            .unwrap();
    let found: Vec<(&str, &str, &str)> = missing
        .iter()
        .map(|c| (c.name.as_str(), c.version.as_str(), c.repository.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "kyverno-api",
                "0.0.1-alpha.4",
                "https://kyverno.github.io/api"
            ),
            (
                "openreports",
                "0.1.0",
                "https://openreports.github.io/reports-api"
            ),
            (
                "reports-server",
                "0.1.6",
                "https://kyverno.github.io/reports-server"
            ),
        ]
    );
}
