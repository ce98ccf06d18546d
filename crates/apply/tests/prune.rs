//! Prune and the inventory: removed objects are deleted, objects Headway does not own never are,
//! opt-outs are honoured, an empty set and a mass deletion are refused, and the inventory
//! survives restarts and holds 10,000+ objects. Gated by `HEADWAY_CLUSTER_TESTS=1`.

mod support;

use headway_apply::SyncStep;
use headway_model::changeset::Action;
use headway_model::inventory::{DigestPrefix, Inventory, InventoryEntry};
use headway_model::prune::PruneRefused;
use headway_model::{Digest, ObjectRef};
use headway_tests::cluster;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

fn cms(names: &[&str]) -> Vec<serde_json::Value> {
    names
        .iter()
        .map(|n| configmap(n, json!({"name": n})))
        .collect()
}

async fn exists(c: &headway_tests::TestCluster, ns: &str, name: &str) -> bool {
    configmaps(c, ns)
        .get_opt(name)
        .await
        .expect("reading a ConfigMap")
        .is_some()
}

#[tokio::test]
async fn removed_objects_are_pruned_after_a_restart() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("prune-removed").await?;
    let first = engine(&c)
        .await
        .sync(&request(&ns.name, set("r1", cms(&["a", "b", "c"]))))
        .await?;
    assert!(first.is_ok(), "{first:#?}");
    // A new engine: the inventory comes from the cluster.
    let report = engine(&c)
        .await
        .sync(&request(&ns.name, set("r2", cms(&["a", "b"]))))
        .await?;
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(
        actions(&report),
        ["a unchanged", "b unchanged", "c deleted"]
    );
    assert!(!exists(&c, &ns.name, "c").await);
    assert_eq!(report.inventory_len, 2);
    Ok(())
}

#[tokio::test]
async fn objects_not_owned_by_the_sync_are_never_deleted() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("prune-foreign").await?;
    let engine = engine(&c).await;
    let mut optout = configmap("keep", json!({}));
    optout["metadata"]["annotations"] = json!({"headway.dev/prune": "disabled"});
    let mut objects = cms(&["a", "replaced", "other-sync"]);
    objects.push(optout);
    assert!(
        engine
            .sync(&request(&ns.name, set("r1", objects)))
            .await?
            .is_ok()
    );

    let api = configmaps(&c, &ns.name);
    // Replaced by hand with an object of the same name that Headway did not create.
    api.delete("replaced", &DeleteParams::default()).await?;
    headway_tests::wait_for(
        "replaced to be gone",
        std::time::Duration::from_secs(10),
        || async {
            Ok(if exists(&c, &ns.name, "replaced").await {
                Err("still there".to_string())
            } else {
                Ok(())
            })
        },
    )
    .await?;
    api.create(
        &PostParams::default(),
        &serde_json::from_value(configmap("replaced", json!({"mine": "yes"})))?,
    )
    .await?;
    // Taken over by another sync.
    api.patch(
        "other-sync",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"headway.dev/sync-name": "someone-else"}}})),
    )
    .await?;
    // A ConfigMap that was never in the set, with the same labels as ours.
    let mut unrelated = configmap("unrelated", json!({}));
    unrelated["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "headway", "headway.dev/sync-name": "site", "headway.dev/sync-namespace": ns.name});
    api.create(&PostParams::default(), &serde_json::from_value(unrelated)?)
        .await?;

    let mut req = request(&ns.name, set("r2", cms(&["a"])));
    req.max_prune_fraction = Some(1.0);
    let report = engine.sync(&req).await?;
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(
        action_of(&report, "replaced"),
        Action::Skipped("no longer labelled app.kubernetes.io/managed-by=headway".into())
    );
    assert_eq!(
        action_of(&report, "other-sync"),
        Action::Skipped(format!("now owned by sync {}/someone-else", ns.name))
    );
    assert_eq!(
        action_of(&report, "keep"),
        Action::Skipped("headway.dev/prune: disabled".into())
    );
    for name in ["replaced", "other-sync", "keep", "unrelated"] {
        assert!(exists(&c, &ns.name, name).await, "{name} was deleted");
    }
    // Left alone, and dropped from the inventory.
    assert_eq!(report.inventory_len, 1);
    Ok(())
}

#[tokio::test]
async fn an_empty_set_is_refused_unless_allowed() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("prune-empty").await?;
    let engine = engine(&c).await;
    assert!(
        engine
            .sync(&request(&ns.name, set("r1", cms(&["a", "b"]))))
            .await?
            .is_ok()
    );

    let report = engine.sync(&request(&ns.name, set("r2", vec![]))).await?;
    let failure = report.failure.clone().expect("refused");
    assert_eq!(failure.step, SyncStep::Prune);
    assert!(matches!(
        failure.refused,
        Some(PruneRefused::EmptyDesiredSet { previous: 2, .. })
    ));
    assert!(
        failure.message.contains("renders no objects"),
        "{failure:?}"
    );
    assert!(exists(&c, &ns.name, "a").await && exists(&c, &ns.name, "b").await);
    assert_eq!(report.inventory_len, 2);

    let mut req = request(&ns.name, set("r3", vec![]));
    req.allow_empty = true;
    let report = engine.sync(&req).await?;
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(actions(&report), ["a deleted", "b deleted"]);
    assert_eq!(report.inventory_len, 0);
    Ok(())
}

#[tokio::test]
async fn the_mass_deletion_guard_trips() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("prune-mass").await?;
    let engine = engine(&c).await;
    let all = ["a", "b", "c", "d", "e", "f", "g", "h"];
    assert!(
        engine
            .sync(&request(&ns.name, set("r1", cms(&all))))
            .await?
            .is_ok()
    );

    let report = engine
        .sync(&request(&ns.name, set("r2", cms(&["a"]))))
        .await?;
    let failure = report.failure.clone().expect("refused");
    assert_eq!(failure.step, SyncStep::Prune);
    assert!(matches!(
        failure.refused,
        Some(PruneRefused::MassDeletion {
            stale: 7,
            previous: 8,
            ..
        })
    ));
    assert!(
        failure.message.contains("refusing to prune 7 of 8 objects"),
        "{failure:?}"
    );
    for name in all {
        assert!(exists(&c, &ns.name, name).await, "{name} was deleted");
    }

    let mut req = request(&ns.name, set("r3", cms(&["a"])));
    req.max_prune_fraction = Some(0.9);
    let report = engine.sync(&req).await?;
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.changes.counts().deleted, 7);
    Ok(())
}

/// A realistic inventory of `n` entries (ten kinds, 29-character names).
fn big_inventory(n: usize, salt: &str) -> Inventory {
    let kinds = [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("networking.k8s.io/v1", "Ingress"),
        ("policy/v1", "PodDisruptionBudget"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ];
    let mut inv = Inventory::new();
    for i in 0..n {
        let (api_version, kind) = kinds[i % kinds.len()];
        let namespace = format!("team-{:03}-production-workloads", i % 50);
        let name = format!("service-{i:06}-{salt}-application");
        let digest = DigestPrefix::of(&Digest::of_bytes(name.as_bytes()));
        inv.insert(
            ObjectRef::new(api_version, kind, Some(namespace), name),
            InventoryEntry {
                api_version: api_version.into(),
                digest,
                live: None,
            },
        );
    }
    inv
}

#[tokio::test]
async fn the_inventory_holds_ten_thousand_objects_and_shards_beyond() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("inventory-size").await?;
    let engine = engine(&c).await;
    let owner = owner(&ns.name);
    let inventories = configmaps(&c, &ns.name);
    let count = || async {
        let lp = kube::api::ListParams::default()
            .labels(&format!("headway.dev/inventory-of={}", owner.name()));
        inventories.list_metadata(&lp).await.map(|l| l.items.len())
    };

    let ten_thousand = big_inventory(10_000, "a");
    engine.replace_inventory(&owner, &ten_thousand).await?;
    assert_eq!(engine.inventory(&owner).await?, ten_thousand);
    assert_eq!(count().await?, 1, "10,000 entries fit one ConfigMap");

    let thirty_thousand = big_inventory(30_000, "b");
    engine.replace_inventory(&owner, &thirty_thousand).await?;
    assert_eq!(engine.inventory(&owner).await?, thirty_thousand);
    let shards = count().await?;
    assert!(shards >= 3, "30,000 entries in {shards} ConfigMaps");

    // Shrinking removes the shards of the earlier write.
    engine.replace_inventory(&owner, &ten_thousand).await?;
    assert_eq!(engine.inventory(&owner).await?, ten_thousand);
    assert_eq!(count().await?, 1);
    Ok(())
}
