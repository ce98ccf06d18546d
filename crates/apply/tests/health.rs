//! Health waits: a Deployment that never becomes ready times out with its reason listed, and
//! ProgressDeadlineExceeded is Failed and ends the wait early. Gated by `HEADWAY_CLUSTER_TESTS=1`.

mod support;

use std::time::{Duration, Instant};

use headway_apply::SyncStep;
use headway_model::health::HealthStatus;
use headway_tests::cluster;
use serde_json::json;
use support::*;

/// A Deployment whose pods no node can run (no node has the label).
fn unschedulable(name: &str, progress_deadline: Option<i64>) -> serde_json::Value {
    let mut d = deployment(name, 1);
    d["spec"]["template"]["spec"]["nodeSelector"] = json!({"headway.dev/no-such-node": "true"});
    if let Some(s) = progress_deadline {
        d["spec"]["progressDeadlineSeconds"] = json!(s);
    }
    d
}

#[tokio::test]
async fn a_deployment_that_never_becomes_ready_times_out_with_its_reason() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("health-timeout").await?;
    let engine = engine(&c).await;
    let mut req = request(
        &ns.name,
        set(
            "r1",
            // More Deployments than LIST_THRESHOLD: they are read with one list, whose items
            // carry no apiVersion and kind of their own.
            vec![
                unschedulable("stuck", None),
                deployment("fine", 1),
                deployment("fine-2", 1),
                deployment("fine-3", 1),
                deployment("fine-4", 1),
                configmap("cfg", json!({})),
            ],
        ),
    );
    req.wait = true;
    req.timeout = Duration::from_secs(8);
    let started = Instant::now();
    let report = engine.sync(&req).await?;
    let elapsed = started.elapsed();
    let failure = report.failure.clone().expect("timed out");
    assert_eq!(failure.step, SyncStep::Health);
    assert!(
        failure
            .message
            .starts_with("timed out after 8s waiting for:"),
        "{failure:?}"
    );
    let lines: Vec<&str> = failure.message.lines().skip(1).collect();
    assert_eq!(
        lines.len(),
        1,
        "only the stuck Deployment is listed: {lines:?}"
    );
    assert!(
        lines[0].starts_with(&format!("Deployment/{}/stuck: InProgress: ", ns.name)),
        "{lines:?}"
    );
    assert!(
        lines[0].ends_with("available: 0/1"),
        "the reason: {lines:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(8) && elapsed < Duration::from_secs(40),
        "{elapsed:?}"
    );
    let fine = report
        .health
        .iter()
        .find(|(id, _)| id.name == "fine")
        .expect("health of fine");
    assert_eq!(fine.1.status, HealthStatus::Current);
    Ok(())
}

#[tokio::test]
async fn progress_deadline_exceeded_is_failed_and_ends_the_wait() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("health-deadline").await?;
    let engine = engine(&c).await;
    let mut req = request(&ns.name, set("r1", vec![unschedulable("late", Some(1))]));
    req.wait = true;
    req.timeout = Duration::from_secs(90);
    let started = Instant::now();
    let report = engine.sync(&req).await?;
    let failure = report.failure.clone().expect("failed");
    assert_eq!(failure.step, SyncStep::Health);
    assert!(
        failure.message.starts_with("objects failed:"),
        "{failure:?}"
    );
    assert!(
        failure
            .message
            .contains(&format!("Deployment/{}/late: Failed: ", ns.name)),
        "{failure:?}"
    );
    assert!(
        failure.message.contains("ProgressDeadlineExceeded"),
        "{failure:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "ended early: {:?}",
        started.elapsed()
    );
    Ok(())
}
