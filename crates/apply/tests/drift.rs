//! Drift: hand edits are reported with their field paths (Secret values masked), hand deletions
//! as missing, and self-heal restores both. Gated by `HEADWAY_CLUSTER_TESTS=1`.

mod support;

use headway_apply::DriftState;
use headway_model::diff::{FieldDiff, MASKED};
use headway_tests::cluster;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::*;

fn diff(path: &str, desired: &str, live: &str) -> FieldDiff {
    FieldDiff {
        path: path.into(),
        desired: Some(desired.into()),
        live: Some(live.into()),
    }
}

#[tokio::test]
async fn hand_edits_and_deletions_are_drift_and_self_heal_restores_them() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("drift").await?;
    let engine = engine(&c).await;
    let mut cm = configmap("settings", json!({"mode": "fast"}));
    cm["metadata"]["labels"] = json!({"tier": "backend"});
    let desired = set(
        "r1",
        vec![
            cm,
            configmap("extra", json!({"k": "v"})),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}),
            deployment("web", 2),
        ],
    );
    let owner = owner(&ns.name);
    let mut req = request(&ns.name, desired.clone());
    assert!(engine.sync(&req).await?.is_ok());
    let clean = engine.drift(&owner, &desired, &ns.name).await?;
    assert!(!clean.has_drift(), "{}", clean.render_text());

    let pp = PatchParams::default();
    api(&c, "apps/v1", "Deployment", "deployments", Some(&ns.name))
        .patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 5}})))
        .await?;
    configmaps(&c, &ns.name)
        .patch(
            "settings",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "frontend"}}})),
        )
        .await?;
    api(&c, "v1", "Secret", "secrets", Some(&ns.name))
        .patch(
            "creds",
            &pp,
            &Patch::Merge(json!({"stringData": {"token": "leaked"}})),
        )
        .await?;
    configmaps(&c, &ns.name)
        .delete("extra", &DeleteParams::default())
        .await?;

    let drift = engine.drift(&owner, &desired, &ns.name).await?;
    assert!(drift.has_drift());
    let state = |name: &str, kind: &str| {
        drift
            .objects
            .iter()
            .find(|(id, _)| id.name == name && id.kind == kind)
            .map(|(_, s)| s.clone())
            .unwrap()
    };
    assert_eq!(
        state("web", "Deployment"),
        DriftState::Drifted(vec![diff("spec.replicas", "2", "5")])
    );
    assert_eq!(
        state("settings", "ConfigMap"),
        DriftState::Drifted(vec![diff("metadata.labels.tier", "backend", "frontend")])
    );
    assert_eq!(
        state("creds", "Secret"),
        DriftState::Drifted(vec![diff("data.token", MASKED, MASKED)])
    );
    assert_eq!(state("extra", "ConfigMap"), DriftState::Missing);
    let text = drift.render_text();
    assert!(
        text.contains("spec.replicas") && text.contains("missing from the cluster"),
        "{text}"
    );
    assert!(
        !text.contains("leaked") && !text.contains("s3cret"),
        "secret values are masked: {text}"
    );

    // Without self-heal, an unchanged source changes nothing.
    req.self_heal = false;
    let report = engine.sync(&req).await?;
    assert!(!report.changes.has_changes(), "{report:#?}");
    assert!(engine.drift(&owner, &desired, &ns.name).await?.has_drift());

    // With self-heal, everything is restored.
    req.self_heal = true;
    let report = engine.sync(&req).await?;
    assert_eq!(
        actions(&report),
        [
            "creds configured",
            "extra created",
            "settings configured",
            "web configured"
        ]
    );
    let healed = engine.drift(&owner, &desired, &ns.name).await?;
    assert!(!healed.has_drift(), "{}", healed.render_text());
    Ok(())
}

#[tokio::test]
async fn objects_left_out_of_the_source_are_reported() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("drift-stale").await?;
    let engine = engine(&c).await;
    let req = request(
        &ns.name,
        set(
            "r1",
            vec![configmap("a", json!({})), configmap("b", json!({}))],
        ),
    );
    assert!(engine.sync(&req).await?.is_ok());
    let smaller = set("r2", vec![configmap("a", json!({}))]);
    let drift = engine.drift(&owner(&ns.name), &smaller, &ns.name).await?;
    assert_eq!(
        drift
            .stale
            .iter()
            .map(|id| id.name.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert!(drift.has_drift());
    Ok(())
}
