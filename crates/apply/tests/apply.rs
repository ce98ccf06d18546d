//! Applying: a second apply of the same set changes nothing (also from a restarted engine, which
//! reads the inventory's stamps), hand edits and deletions are re-applied (also those made while
//! the engine was down), a CRD and its custom resources apply in one run, and a tenant's client that
//! cannot connect trips the breaker as the engine's own does. Gated by
//! `HEADWAY_CLUSTER_TESTS=1`.

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

#[tokio::test]
async fn second_apply_changes_nothing() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("apply-twice").await?;
    let (engine, writes) = engine_recording_writes(&c).await;
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
    // The recorder sees writes: one apply per object and the inventory (distinct, in case a
    // request was retried).
    let sent: std::collections::BTreeSet<String> = writes.take().into_iter().collect();
    assert_eq!(sent.len(), 6, "{sent:#?}");

    // Same engine (warm memory): nothing is sent but reads. (What Headway sent is checked, not
    // the objects' resourceVersions: the Deployment controller is still writing the status.)
    let second = engine.sync(&req).await?;
    assert!(second.is_ok(), "{second:#?}");
    assert_eq!(second.changes.counts().unchanged, 5, "{second:#?}");
    assert_eq!(
        writes.take(),
        Vec::<String>::new(),
        "the warm re-apply wrote"
    );
    // A fresh engine (a restarted controller): the inventory's stamps prove every object
    // unchanged, none is applied or written.
    let (restarted, restarted_writes) = engine_recording_writes(&c).await;
    let third = restarted.sync(&req).await?;
    assert_eq!(third.changes.counts().unchanged, 5, "{third:#?}");
    assert_eq!(
        restarted_writes.take(),
        Vec::<String>::new(),
        "the restarted engine's re-apply wrote"
    );
    // Requests: one read of the inventory, one list per kind, one wait read per kind; the
    // restarted engine makes the same ones (no apply).
    assert!(
        second.requests <= 12,
        "warm no-op sync made {} requests",
        second.requests
    );
    assert!(
        third.requests <= 12,
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

/// About forty objects of four kinds, all in the workloads stage.
fn many() -> Vec<serde_json::Value> {
    let mut objects = Vec::new();
    for i in 0..20 {
        objects.push(configmap(
            &format!("cfg-{i:02}"),
            json!({"n": i.to_string()}),
        ));
    }
    for i in 0..10 {
        objects.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": format!("sa-{i:02}"), "labels": {"tier": "back"}}}));
    }
    for i in 0..5 {
        objects.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{i}"), "annotations": {"team": "payments"}},
            "spec": {"selector": {"app": format!("dep-{i}")}, "ports": [{"port": 80}]}}));
        objects.push(deployment(&format!("dep-{i}"), 1));
    }
    objects
}

const MANY_KINDS: [(&str, &str, &str); 4] = [
    ("v1", "ConfigMap", "configmaps"),
    ("v1", "ServiceAccount", "serviceaccounts"),
    ("v1", "Service", "services"),
    ("apps/v1", "Deployment", "deployments"),
];

#[tokio::test]
async fn restarted_engine_skips_unchanged_objects() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("apply-restart").await?;
    let objects = many();
    let n = objects.len();
    assert_eq!(n, 40);
    let req = request(&ns.name, set("r1", objects));
    {
        let engine = engine(&c).await;
        let first = engine.sync(&req).await?;
        assert!(first.is_ok(), "{first:#?}");
        assert_eq!(first.changes.counts().created, n, "{first:#?}");
        // Every entry carries the stamp of what the apply left.
        let inventory = engine.inventory(&owner(&ns.name)).await?;
        assert_eq!(inventory.len(), n);
        assert!(inventory.entries.values().all(|e| e.live.is_some()));
    }

    // A new engine: empty memory, fresh discovery.
    let (restarted, writes) = engine_recording_writes(&c).await;
    let report = restarted.sync(&req).await?;
    assert!(report.is_ok(), "{report:#?}");
    let counts = report.changes.counts();
    assert_eq!(counts.unchanged, n, "{report:#?}");
    assert_eq!(counts.total(), counts.unchanged, "{report:#?}");
    // One stage (workloads): one read of the inventory head and one metadata list per kind; no
    // apply, no inventory write (nothing changed), no wait.
    assert_eq!(
        report.requests,
        1 + MANY_KINDS.len() as u64,
        "restarted no-op sync of {n} objects: {report:#?}"
    );
    assert!(report.requests < n as u64 / 5);
    // Nothing written: told from the requests the engine sent, not from the objects'
    // resourceVersions, which the Deployment controller keeps changing while it writes their
    // status.
    assert_eq!(
        writes.take(),
        Vec::<String>::new(),
        "the restarted re-apply wrote"
    );
    // Now remembered: the next sync of the same engine is the same.
    let again = restarted.sync(&req).await?;
    assert_eq!(again.changes.counts().unchanged, n, "{again:#?}");
    assert_eq!(again.requests, report.requests);
    assert_eq!(
        writes.take(),
        Vec::<String>::new(),
        "the second re-apply wrote"
    );
    Ok(())
}

#[tokio::test]
async fn edits_while_the_engine_was_down_are_reapplied() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("apply-restart-edit").await?;
    let req = request(&ns.name, set("r1", many()));
    {
        let engine = engine(&c).await;
        let first = engine.sync(&req).await?;
        assert!(first.is_ok(), "{first:#?}");
    }

    // While no engine runs: a label and a data field of one ConfigMap, another one deleted.
    let cms = configmaps(&c, &ns.name);
    cms.patch(
        "cfg-03",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"labels": {"headway.dev/sync-name": "other"}},
                              "data": {"n": "changed"}}),
        ),
    )
    .await?;
    cms.delete("cfg-07", &Default::default()).await?;
    headway_tests::wait_for(
        "cfg-07 to be gone",
        std::time::Duration::from_secs(30),
        || {
            let cms = cms.clone();
            async move {
                Ok(match cms.get_opt("cfg-07").await? {
                    None => Ok(()),
                    Some(_) => Err("still there".to_string()),
                })
            }
        },
    )
    .await?;
    // A label edit alone on a ServiceAccount (no data, no generation: its resourceVersion).
    let sas = api(
        &c,
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        Some(&ns.name),
    );
    sas.patch(
        "sa-04",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
    )
    .await?;

    let restarted = engine(&c).await;
    let report = restarted.sync(&req).await?;
    assert!(report.is_ok(), "{report:#?}");
    // Its ownership label was changed, so it is not in the labelled list, and the forced apply
    // takes over every field the edit set: reported as created (the documented cost of telling
    // created from configured without a GET), but applied either way.
    assert!(
        matches!(
            action_of(&report, "cfg-03"),
            Action::Configured | Action::Created
        ),
        "{report:#?}"
    );
    assert_eq!(action_of(&report, "cfg-07"), Action::Created);
    assert_eq!(action_of(&report, "sa-04"), Action::Configured);
    let counts = report.changes.counts();
    assert_eq!(counts.unchanged, 37, "{report:#?}");
    let cm = cms.get("cfg-03").await?;
    assert_eq!(cm.data["data"]["n"], "3");
    assert_eq!(
        cm.metadata.labels.unwrap_or_default()["headway.dev/sync-name"],
        "site"
    );
    assert_eq!(cms.get("cfg-07").await?.data["data"]["n"], "7");
    assert_eq!(
        sas.get("sa-04").await?.metadata.labels.unwrap_or_default()["tier"],
        "back"
    );

    // The inventory now holds the new stamps: yet another engine skips everything.
    let third = engine(&c).await.sync(&req).await?;
    assert_eq!(third.changes.counts().unchanged, 40, "{third:#?}");
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

/// A sync acting as a tenant whose requests cannot reach the API server (its client points at
/// a closed port) trips the breaker on the tenant's first failure, like the engine's own client:
/// nothing more is sent, every object is skipped, and the failure is marked transient.
#[tokio::test]
async fn a_tenant_client_that_cannot_connect_trips_the_breaker() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("apply-tenant-down").await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut config = c.config.clone();
    config.cluster_url = format!("https://127.0.0.1:{closed}").parse()?;
    let identity = headway_apply::Identity {
        user: "system:serviceaccount:tenant:deployer".into(),
        client: kube::Client::try_from(config)?,
    };
    let objects: Vec<_> = (0..20)
        .map(|i| configmap(&format!("cfg-{i:02}"), json!({"n": i.to_string()})))
        .collect();
    let mut req = request(&ns.name, set("r1", objects));
    req.acting_as = Some(identity);

    let report = engine(&c).await.sync(&req).await?;
    let failure = report.failure.as_ref().expect("the sync failed");
    assert!(failure.unavailable, "{report:#?}");
    assert!(failure.message.contains("unreachable"), "{failure:#?}");
    assert!(
        report
            .changes
            .changes
            .iter()
            .all(|ch| matches!(ch.action, Action::Skipped(_) | Action::Failed(_))),
        "{report:#?}"
    );
    // Discovery and the inventory (the engine's own client) plus at most one failed request
    // per request in flight, not one per object.
    assert!(report.requests < 20, "{} requests", report.requests);
    // None of the objects was written (the namespace's other ConfigMaps are the inventory and
    // kube-root-ca.crt, written by others).
    let names: Vec<String> = configmaps(&c, &ns.name)
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .filter(|name| name.starts_with("cfg-"))
        .collect();
    assert_eq!(names, Vec::<String>::new());
    Ok(())
}

/// Objects the API server refuses as they are (an invalid Service port: 422; a ConfigMap over
/// the 1 MiB limit: 422) make a failure marked `refused_by_server`, so the controller retries at
/// the next interval instead of backing off into the same refusal; a failure for another cause
/// (a namespace that does not exist: 404) is not marked.
#[tokio::test]
async fn objects_refused_as_they_are_are_marked() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("apply-refused").await?;
    let engine = engine(&c).await;
    let refused = vec![
        configmap("fine", json!({"a": "b"})),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad-port"},
               "spec": {"ports": [{"port": 99999}]}}),
        configmap("too-big", json!({"x": "a".repeat(1_100_000)})),
    ];
    let report = engine.sync(&request(&ns.name, set("r1", refused))).await?;
    let failure = report.failure.as_ref().expect("the sync failed");
    assert!(failure.refused_by_server, "{failure:#?}");
    assert!(!failure.unavailable, "{failure:#?}");
    assert!(
        failure.message.contains("refused 2 object(s)")
            && failure.message.contains("bad-port")
            && failure.message.contains("too-big"),
        "{}",
        failure.message
    );
    assert_eq!(action_of(&report, "fine"), Action::Created);

    let mut elsewhere = configmap("lost", json!({"a": "b"}));
    elsewhere["metadata"]["namespace"] = json!(format!("{}-missing", ns.name));
    let report = engine
        .sync(&request(&ns.name, set("r2", vec![elsewhere])))
        .await?;
    let failure = report.failure.as_ref().expect("the sync failed");
    assert!(!failure.refused_by_server, "{failure:#?}");
    Ok(())
}

#[tokio::test]
async fn nothing_is_applied_when_the_inventory_has_no_home() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("apply-homeless").await?;
    let engine = engine(&c).await;
    let home = format!("{}-missing", ns.name);
    // A sync whose inventory would live in a namespace that does not exist: the object for the
    // existing namespace must not be applied, since its record could not be written.
    let mut cm = configmap("orphan", json!({"a": "b"}));
    cm["metadata"]["namespace"] = json!(ns.name);
    let req = request(&home, set("r1", vec![cm.clone()]));
    let err = engine
        .sync(&req)
        .await
        .expect_err("no home for the inventory");
    let message = err.to_string();
    assert!(
        message.contains(&format!("namespace {home} does not exist")),
        "{message}"
    );
    assert!(
        configmaps(&c, &ns.name).get_opt("orphan").await?.is_none(),
        "applied without an inventory"
    );

    // The same sync with its home namespace in the set: created, then recorded there.
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": home}});
    let req = request(&home, set("r2", vec![namespace, cm]));
    let report = engine.sync(&req).await?;
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(report.inventory_len, 2);
    api(&c, "v1", "Namespace", "namespaces", None)
        .delete(&home, &Default::default())
        .await?;
    Ok(())
}
