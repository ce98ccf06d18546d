//! Applying: a second apply of the same set changes nothing, hand edits are re-applied, a CRD and
//! its custom resources apply in one run. Gated by `HEADWAY_CLUSTER_TESTS=1`.

mod support;

use headway_model::changeset::Action;
use headway_tests::cluster;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::*;

fn objects() -> Vec<serde_json::Value> {
    vec![
        configmap("settings", json!({"mode": "fast"})),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        deployment("web", 2),
    ]
}

const NAMES: [(&str, &str, &str, &str); 5] = [
    ("v1", "ConfigMap", "configmaps", "settings"),
    ("v1", "Secret", "secrets", "creds"),
    ("v1", "ServiceAccount", "serviceaccounts", "runner"),
    ("v1", "Service", "services", "web"),
    ("apps/v1", "Deployment", "deployments", "web"),
];

#[tokio::test]
async fn second_apply_changes_nothing() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("apply-twice").await?;
    let engine = engine(&c).await;
    let mut req = request(&ns.name, set("r1", objects()));
    req.wait = true;

    let first = engine.sync(&req).await?;
    assert!(first.is_ok(), "{first:#?}");
    assert_eq!(
        actions(&first),
        [
            "creds created",
            "runner created",
            "settings created",
            "web created",
            "web created"
        ]
    );
    assert_eq!(first.inventory_len, 5);
    let mut versions = Vec::new();
    for (v, kind, plural, name) in NAMES {
        versions.push(resource_version(&api(&c, v, kind, plural, Some(&ns.name)), name).await);
    }

    // Same engine (warm memory): nothing is sent but the lists.
    let second = engine.sync(&req).await?;
    assert!(second.is_ok(), "{second:#?}");
    assert_eq!(second.changes.counts().unchanged, 5, "{second:#?}");
    // A fresh engine (a restarted controller): every object is applied once, none is written.
    let restarted = support::engine(&c).await;
    let third = restarted.sync(&req).await?;
    assert_eq!(third.changes.counts().unchanged, 5, "{third:#?}");
    for ((v, kind, plural, name), before) in NAMES.into_iter().zip(&versions) {
        let after = resource_version(&api(&c, v, kind, plural, Some(&ns.name)), name).await;
        assert_eq!(&after, before, "{kind} {name} was written by a re-apply");
    }
    // Requests: one read of the inventory, one list per kind, one wait read per kind; the
    // restarted engine also applies each object once.
    assert!(
        second.requests <= 12,
        "warm no-op sync made {} requests",
        second.requests
    );
    assert!(
        third.requests <= 12 + 5,
        "cold no-op sync made {} requests",
        third.requests
    );
    Ok(())
}

#[tokio::test]
async fn hand_edits_are_reapplied() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("apply-hand-edit").await?;
    let engine = engine(&c).await;
    let req = request(&ns.name, set("r1", objects()));
    assert!(engine.sync(&req).await?.is_ok());

    // Edits by someone else: a data value, a label we set, the replicas of a Deployment.
    let pp = PatchParams::default();
    let cms = configmaps(&c, &ns.name);
    cms.patch(
        "settings",
        &pp,
        &Patch::Merge(json!({"data": {"mode": "slow"}})),
    )
    .await?;
    let deployments = api(&c, "apps/v1", "Deployment", "deployments", Some(&ns.name));
    deployments
        .patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 5}})))
        .await?;
    let services = api(&c, "v1", "Service", "services", Some(&ns.name));
    services
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"headway.dev/sync-name": "other"}}})),
        )
        .await?;

    let report = engine.sync(&req).await?;
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(
        actions(&report),
        [
            "creds unchanged",
            "runner unchanged",
            "settings configured",
            "web configured",
            "web configured"
        ]
    );
    assert_eq!(cms.get("settings").await?.data["data"]["mode"], "fast");
    assert_eq!(deployments.get("web").await?.data["spec"]["replicas"], 2);
    let svc = services.get("web").await?;
    assert_eq!(
        svc.metadata.labels.unwrap_or_default()["headway.dev/sync-name"],
        "site"
    );
    Ok(())
}

#[tokio::test]
async fn crd_and_its_resources_apply_in_one_run() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("apply-crd").await?;
    // Cluster-scoped: a group unique to this test run.
    let group = format!("{}.headway.test", ns.name);
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]
        }
    });
    let widget = |name: &str, size: i64| json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": name}, "spec": {"size": size}});
    let engine = engine(&c).await;
    let mut req = request(
        &ns.name,
        set("r1", vec![widget("small", 1), widget("large", 9), crd]),
    );
    req.wait = true;
    let report = engine.sync(&req).await?;
    let crd_name = format!("widgets.{group}");
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(
        actions(&report),
        [
            "large created".to_string(),
            "small created".into(),
            format!("{crd_name} created"),
        ]
    );
    let widgets = api(
        &c,
        &format!("{group}/v1"),
        "Widget",
        "widgets",
        Some(&ns.name),
    );
    assert_eq!(widgets.get("large").await?.data["spec"]["size"], 9);
    let timings: Vec<&str> = report.timings.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        timings,
        ["apply definitions", "apply workloads", "prune", "wait"]
    );

    // The sync's finalizer deletes the CRD too (cluster-scoped, so clean up here).
    let deleted = engine.delete_all(&owner(&ns.name), &ns.name).await?;
    assert!(deleted.is_ok(), "{deleted:#?}");
    assert_eq!(deleted.counts().deleted, 3, "{deleted:#?}");
    assert!(matches!(
        deleted.changes.last().map(|c| &c.action),
        Some(Action::Deleted)
    ));
    assert_eq!(
        deleted.changes.last().unwrap().id.kind,
        "CustomResourceDefinition",
        "the CRD goes last"
    );
    assert!(engine.inventory(&owner(&ns.name)).await?.is_empty());
    Ok(())
}
