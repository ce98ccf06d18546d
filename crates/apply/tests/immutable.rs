//! Immutable fields: a change the server refuses fails with a clear error, and the object is
//! deleted and recreated only when opted in (per object or per sync). Gated by
//! `HEADWAY_CLUSTER_TESTS=1`.

mod support;

use headway_model::changeset::Action;
use headway_tests::cluster;
use serde_json::{Value, json};
use support::*;

fn job(image: &str, force: bool) -> Value {
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "migrate", "image": image}]}}}
    });
    if force {
        job["metadata"]["annotations"] = json!({"headway.dev/force": "enabled"});
    }
    job
}

#[tokio::test]
async fn a_job_template_change_fails_then_recreates_when_opted_in() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("immutable-job").await?;
    let engine = engine(&c).await;
    assert!(
        engine
            .sync(&request(
                &ns.name,
                set("r1", vec![job("registry.invalid/migrate:1", false)])
            ))
            .await?
            .is_ok()
    );
    let jobs = api(&c, "batch/v1", "Job", "jobs", Some(&ns.name));
    let uid = jobs.get("migrate").await?.metadata.uid;

    let report = engine
        .sync(&request(
            &ns.name,
            set("r2", vec![job("registry.invalid/migrate:2", false)]),
        ))
        .await?;
    let Action::Failed(message) = action_of(&report, "migrate") else {
        panic!("{report:#?}")
    };
    assert!(
        message.contains("field is immutable") && message.contains("headway.dev/force: enabled"),
        "{message}"
    );
    assert!(report.failure.is_some());
    assert_eq!(
        jobs.get("migrate").await?.metadata.uid,
        uid,
        "not recreated without opt-in"
    );

    let report = engine
        .sync(&request(
            &ns.name,
            set("r3", vec![job("registry.invalid/migrate:2", true)]),
        ))
        .await?;
    assert!(report.is_ok(), "{report:#?}");
    assert_eq!(action_of(&report, "migrate"), Action::Configured);
    let live = jobs.get("migrate").await?;
    assert_ne!(live.metadata.uid, uid, "recreated");
    assert_eq!(
        live.data["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.invalid/migrate:2"
    );
    Ok(())
}

fn service(cluster_ip: Option<&str>) -> Value {
    let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}});
    if let Some(ip) = cluster_ip {
        svc["spec"]["clusterIP"] = json!(ip);
    }
    svc
}

#[tokio::test]
async fn a_service_cluster_ip_change_fails_then_recreates_with_force() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("immutable-service").await?;
    let engine = engine(&c).await;
    assert!(
        engine
            .sync(&request(&ns.name, set("r1", vec![service(None)])))
            .await?
            .is_ok()
    );
    let services = api(&c, "v1", "Service", "services", Some(&ns.name));
    let uid = services.get("db").await?.metadata.uid;

    // Headless instead of the allocated address.
    let report = engine
        .sync(&request(&ns.name, set("r2", vec![service(Some("None"))])))
        .await?;
    let Action::Failed(message) = action_of(&report, "db") else {
        panic!("{report:#?}")
    };
    assert!(message.contains("may not change once set"), "{message}");
    assert_eq!(services.get("db").await?.metadata.uid, uid);

    // Forced for the whole sync.
    let mut req = request(&ns.name, set("r3", vec![service(Some("None"))]));
    req.force = true;
    let report = engine.sync(&req).await?;
    assert!(report.is_ok(), "{report:#?}");
    let live = services.get("db").await?;
    assert_ne!(live.metadata.uid, uid);
    assert_eq!(live.data["spec"]["clusterIP"], "None");
    Ok(())
}

#[tokio::test]
async fn an_invalid_object_is_never_deleted_by_force() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("immutable-invalid").await?;
    let engine = engine(&c).await;
    assert!(
        engine
            .sync(&request(&ns.name, set("r1", vec![deployment("web", 1)])))
            .await?
            .is_ok()
    );
    let mut req = request(&ns.name, set("r2", vec![deployment("web", -1)]));
    req.force = true;
    let report = engine.sync(&req).await?;
    let Action::Failed(message) = action_of(&report, "web") else {
        panic!("{report:#?}")
    };
    assert!(message.contains("spec.replicas"), "{message}");
    let deployments = api(&c, "apps/v1", "Deployment", "deployments", Some(&ns.name));
    assert_eq!(
        deployments.get("web").await?.data["spec"]["replicas"],
        1,
        "a bad value is not a reason to recreate"
    );
    Ok(())
}
