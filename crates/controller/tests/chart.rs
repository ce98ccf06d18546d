//! The Helm chart `charts/headway`: it lints, renders the controller's Deployment, RBAC and Lease
//! rights, and, with `repository.url` set, a GitSync that the controller syncs (the GitSync the
//! chart renders is applied to the local cluster and reaches Ready at the repository's commit).
//!
//! Needs `helm` on `PATH` (`eval "$(cargo xtask cluster env)"`), `HEADWAY_CLUSTER_TESTS=1` and
//! `HEADWAY_GIT_TESTS=1`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use headway_controller::crd::GitSync;
use headway_tests::git::{Upstream, git_daemon};
use kube::api::{Api, Patch, PatchParams};
use support::*;

fn helm(args: &[&str]) -> String {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/headway");
    let out = Command::new("helm")
        .args(args)
        .arg(&chart)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("headway-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("headway-helm-config"),
        )
        .output()
        .expect("helm on PATH (eval \"$(cargo xtask cluster env)\")");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_chart_renders_a_controller_and_a_gitsync_that_syncs() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("the_chart_renders_a_controller_and_a_gitsync_that_syncs") {
        return Ok(());
    }
    helm(&["lint"]);
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-chart").await?;
    let _janitor = Janitor::new(&cluster, &ns);

    let upstream = Upstream::new();
    upstream.write("config.yaml", &configmap_yaml("from-chart", "yes"));
    let head = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);

    // Without a URL: no GitSync.
    let text = helm(&["template", "hw", "--namespace", &ns.name]);
    let manifests = headway_render::parse_manifests(&text, "chart")?;
    assert!(manifests.iter().all(|m| m.id.kind != "GitSync"));

    let text = helm(&[
        "template",
        "hw",
        "--namespace",
        &ns.name,
        "--set",
        &format!("repository.url={url}"),
        "--set",
        "sync.interval=3s",
    ]);
    let manifests = headway_render::parse_manifests(&text, "chart")?;
    let mut kinds: Vec<&str> = manifests.iter().map(|m| m.id.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "GitSync",
            "Role",
            "RoleBinding",
            "ServiceAccount"
        ]
    );
    let deployment = manifests
        .iter()
        .find(|m| m.id.kind == "Deployment")
        .unwrap();
    let args = &deployment.object["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args[0], "controller", "{args}");
    let role = manifests.iter().find(|m| m.id.kind == "Role").unwrap();
    assert_eq!(role.object["rules"][0]["resources"][0], "leases");

    // The rendered GitSync is valid for the CRD and gets synced.
    let gitsync = manifests.iter().find(|m| m.id.kind == "GitSync").unwrap();
    let api: Api<GitSync> = ns.api();
    api.patch(
        "hw",
        &PatchParams::apply("helm-test").force(),
        &Patch::Apply(&gitsync.object),
    )
    .await?;
    let controller = start_controller(&cluster, &ns.name, "chart-a").await?;
    wait_ready_at(&ns, "hw", &head, Duration::from_secs(60)).await?;
    assert_eq!(
        configmap_data(&cluster.client, &ns.name, "from-chart")
            .await?
            .unwrap()["value"],
        "yes"
    );
    controller.stop().await
}

/// The `impersonate` rule of the controller's ClusterRole, if any.
fn impersonate_rule(text: &str) -> Option<serde_json::Value> {
    let manifests = headway_render::parse_manifests(text, "chart").expect("the chart renders");
    manifests
        .iter()
        .filter(|m| m.id.kind == "ClusterRole")
        .flat_map(|m| m.object["rules"].as_array().cloned().unwrap_or_default())
        .find(|r| {
            r["verbs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v == "impersonate"))
        })
}

#[test]
fn the_chart_grants_impersonation_only_when_tenancy_needs_it() {
    if std::env::var("HEADWAY_TOOL_TESTS").ok().as_deref() != Some("1")
        && !headway_tests::cluster_tests_enabled()
    {
        eprintln!("skipping: helm is needed (HEADWAY_TOOL_TESTS=1 or HEADWAY_CLUSTER_TESTS=1)");
        return;
    }
    let default = helm(&["template", "hw", "--namespace", "hw"]);
    assert!(
        impersonate_rule(&default).is_none(),
        "no impersonation by default"
    );
    assert!(!default.contains("--default-service-account"));
    assert!(!default.contains("--no-cross-namespace-refs"));

    let locked = helm(&[
        "template",
        "hw",
        "--namespace",
        "hw",
        "--set",
        "rbac.clusterAdmin=false",
        "--set",
        "controller.defaultServiceAccount=tenant",
        "--set",
        "controller.noCrossNamespaceRefs=true",
    ]);
    assert!(
        locked.contains("- --default-service-account=tenant"),
        "{locked}"
    );
    assert!(locked.contains("- --no-cross-namespace-refs"), "{locked}");
    let rule = impersonate_rule(&locked).expect("an impersonate rule");
    assert_eq!(rule["resources"], serde_json::json!(["serviceaccounts"]));
    assert_eq!(rule["verbs"], serde_json::json!(["impersonate"]));
    assert!(!locked.contains("cluster-admin"), "{locked}");

    let explicit = helm(&[
        "template",
        "hw",
        "--namespace",
        "hw",
        "--set",
        "rbac.clusterAdmin=false",
        "--set",
        "rbac.impersonateServiceAccounts=true",
    ]);
    assert!(impersonate_rule(&explicit).is_some());
}
