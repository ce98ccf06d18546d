//! Sync and rebuild requests through `Handle` against the local cluster, with no controller
//! running (so where a request stands is set by the test through the status subresource): a
//! sync asked for while another request is pending joins it (nothing written); once that request
//! is picked up and running, or done, a new sync request is made; a rebuild asked for while one
//! runs joins it.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1`.

mod support;

use std::time::Duration;

use headway_controller::crd::{ANNOTATION_REBUILD_REQUESTED, ANNOTATION_SYNC_REQUESTED, GitSync};
use headway_controller::view::{RequestKind, RequestState};
use headway_controller::{Handle, request_state};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::*;

/// Writes the status of a GitSync as if the controller had handled the requests `sync` and
/// `rebuild`, with a run in progress (`running`) or finished Ready.
async fn set_status(
    api: &Api<GitSync>,
    name: &str,
    sync: Option<&str>,
    rebuild: Option<&str>,
    running: bool,
) -> anyhow::Result<()> {
    let now = "2026-01-01T00:00:00Z";
    let condition = |type_: &str, status: bool, reason: &str| {
        json!({"type": type_, "status": if status { "True" } else { "False" }, "reason": reason,
               "message": "set by the test", "lastTransitionTime": now, "observedGeneration": 1})
    };
    let conditions = if running {
        vec![
            condition("Reconciling", true, "Progressing"),
            condition("Ready", false, "Progressing"),
        ]
    } else {
        vec![
            condition("Reconciling", false, "Succeeded"),
            condition("Ready", true, "Succeeded"),
        ]
    };
    let body = json!({"status": {
        "lastHandledSyncRequest": sync,
        "lastHandledRebuildRequest": rebuild,
        "conditions": conditions,
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    Ok(())
}

async fn annotation(api: &Api<GitSync>, name: &str, key: &str) -> anyhow::Result<Option<String>> {
    Ok(api.get(name).await?.annotations().get(key).cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_request_joins_a_pending_one_and_not_a_running_one() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-requests").await?;
    let api: Api<GitSync> = ns.api();
    // No controller runs in this test: nothing is ever fetched from this URL.
    create_gitsync(&ns, "site", "https://example.invalid/site.git", json!({})).await?;
    let handle = Handle::new(cluster.client.clone());

    // Pending (never picked up): a second request joins the first, even a while later (values
    // are times in milliseconds, so a new request would differ).
    let first = handle.sync_now(&ns.name, "site").await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = handle.sync_now(&ns.name, "site").await?;
    assert_eq!(
        second, first,
        "the second sync request joined the pending one"
    );
    assert_eq!(
        annotation(&api, "site", ANNOTATION_SYNC_REQUESTED).await?,
        Some(first.clone())
    );

    // Picked up and running: that run may have fetched before the latest push, so a new
    // request is made.
    set_status(&api, "site", Some(&first), None, true).await?;
    let obj = api.get("site").await?;
    assert_eq!(
        request_state(&obj, RequestKind::Sync, &first),
        RequestState::Running
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let third = handle.sync_now(&ns.name, "site").await?;
    assert_ne!(third, first, "a running sync does not absorb a new request");
    assert_eq!(
        annotation(&api, "site", ANNOTATION_SYNC_REQUESTED).await?,
        Some(third.clone())
    );
    // The new request is pending: asking again joins it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(handle.sync_now(&ns.name, "site").await?, third);

    // Done: a new request.
    set_status(&api, "site", Some(&third), None, false).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let fourth = handle.sync_now(&ns.name, "site").await?;
    assert_ne!(fourth, third, "a handled request does not absorb a new one");
    assert_eq!(
        annotation(&api, "site", ANNOTATION_SYNC_REQUESTED).await?,
        Some(fourth)
    );

    // A rebuild joins a pending one and a running one; a done one does not absorb a new one.
    let rebuild = handle.rebuild(&ns.name, "site").await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(handle.rebuild(&ns.name, "site").await?, rebuild);
    set_status(&api, "site", None, Some(&rebuild), true).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(handle.rebuild(&ns.name, "site").await?, rebuild);
    set_status(&api, "site", None, Some(&rebuild), false).await?;
    let next = handle.rebuild(&ns.name, "site").await?;
    assert_ne!(next, rebuild);
    assert_eq!(
        annotation(&api, "site", ANNOTATION_REBUILD_REQUESTED).await?,
        Some(next)
    );
    Ok(())
}
