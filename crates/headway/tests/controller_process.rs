//! The real `headway controller` binary as child processes, against the local cluster and a
//! local `git daemon`:
//! - two replicas: exactly one reconciles; killing the leader (SIGKILL, no Lease release) hands
//!   over within the lease duration; SIGTERM stops gracefully and releases the Lease;
//! - killing the controller in the middle of an apply and restarting it converges with nothing
//!   lost or duplicated.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1`.

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use headway_tests::controller::{ControllerProcess, ControllerSpec};
use headway_tests::git::{Upstream, git_daemon};
use headway_tests::{TestNamespace, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use support::*;

const LEASE_SECONDS: u64 = 6;

/// A `headway controller` child process (lease `headway-controller` in `ns`); killed on drop,
/// and when this test binary ends.
fn start(
    ns: &str,
    identity: &str,
    dir: &Path,
    apply_concurrency: usize,
) -> anyhow::Result<ControllerProcess> {
    ControllerSpec::new(env!("CARGO_BIN_EXE_headway"), dir, identity)
        .namespace(ns)
        .args(["--lease-name", "headway-controller"])
        .lease_seconds(LEASE_SECONDS)
        .args(["--apply-concurrency", &apply_concurrency.to_string()])
        // A sync interrupted by SIGTERM may finish: hundreds of requests one at a time take a
        // while on a loaded machine.
        .args(["--shutdown-timeout", "120"])
        .start()
}

async fn lease_holder(ns: &TestNamespace) -> anyhow::Result<Option<String>> {
    let api: Api<Lease> = ns.api();
    Ok(api
        .get_opt("headway-controller")
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

async fn wait_holder(ns: &TestNamespace, who: &str, timeout: Duration) -> anyhow::Result<()> {
    wait_for(
        &format!("{who} to hold the Lease"),
        timeout,
        || async move {
            let holder = lease_holder(ns).await?;
            Ok(if holder.as_deref() == Some(who) {
                Ok(())
            } else {
                Err(format!("holder {holder:?}"))
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_one_leader_and_handover_within_the_lease_duration() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("two_replicas_one_leader_and_handover_within_the_lease_duration") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-leader").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();
    let dir = tempfile::tempdir()?;

    let upstream = Upstream::new();
    upstream.write("config.yaml", &configmap_yaml("settings", "one"));
    let first = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);

    let mut r1 = start(&ns.name, "r1", dir.path(), 8)?;
    wait_holder(&ns, "r1", Duration::from_secs(30)).await?;
    let mut r2 = start(&ns.name, "r2", dir.path(), 8)?;
    create_gitsync(&ns, "site", &url, serde_json::json!({})).await?;
    wait_ready_at(&ns, "site", &first, Duration::from_secs(60)).await?;
    // Let a few intervals pass: still only r1 works.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let events = events_of(&client, &ns.name, "site").await?;
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e.3 == "r1"),
        "only the leader reconciles: {events:?}"
    );
    assert!(r1.log_text().contains("sync started"), "{}", r1.log_text());
    assert!(
        !r2.log_text().contains("sync started"),
        "the follower synced:\n{}",
        r2.log_text()
    );
    assert!(
        r2.log_text().contains("waiting for leadership"),
        "{}",
        r2.log_text()
    );

    // Kill the leader without a chance to release the Lease.
    r1.kill();
    let killed = Instant::now();
    wait_holder(&ns, "r2", Duration::from_secs(LEASE_SECONDS * 3)).await?;
    let handover = killed.elapsed();
    println!(
        "handover after SIGKILL of the leader: {handover:?} (lease duration {LEASE_SECONDS} s)"
    );
    assert!(
        // The follower tries when the Lease expires; the slack is for a loaded machine, well
        // short of a second lease duration.
        handover <= Duration::from_secs(LEASE_SECONDS) + Duration::from_millis(3500),
        "handover took {handover:?}, lease duration {LEASE_SECONDS} s"
    );
    // The new leader syncs new commits.
    upstream.write("config.yaml", &configmap_yaml("settings", "two"));
    let second = upstream.commit("second");
    wait_ready_at(&ns, "site", &second, Duration::from_secs(60)).await?;
    assert_eq!(
        configmap_data(&client, &ns.name, "settings")
            .await?
            .unwrap()["value"],
        "two"
    );
    let events = events_of(&client, &ns.name, "site").await?;
    assert!(
        events.iter().any(|e| e.3 == "r2" && e.2.contains(&second)),
        "{events:?}"
    );

    // SIGTERM: a clean exit that releases the Lease at once.
    let status = r2.terminate(Duration::from_secs(40))?;
    assert!(status.success(), "exit status {status}:\n{}", r2.log_text());
    assert_eq!(lease_holder(&ns).await?, None, "the Lease was released");
    let log = r2.log_text();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .with_context(|| format!("log line is not JSON: {line}"))?;
    }
    assert!(log.contains("released the Lease"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_apply_then_restarted_converges() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("killed_mid_apply_then_restarted_converges") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-kill").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();
    let dir = tempfile::tempdir()?;

    const N: usize = 1500;
    let (upstream, head) = numbered_configmaps(N);
    let (_daemon, url) = git_daemon(&upstream);

    // One request at a time, so the apply takes long enough to be interrupted.
    let mut first = start(&ns.name, "k1", dir.path(), 1)?;
    create_gitsync(
        &ns,
        "big",
        &url,
        serde_json::json!({"wait": false, "interval": "1h"}),
    )
    .await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=big");
    let at_kill = wait_partly_applied(
        "the apply to be under way",
        &configmaps,
        &owned,
        50..N - 100,
        Duration::from_secs(120),
    )
    .await?;
    first.kill();
    let applied_at_kill = configmaps.list_metadata(&owned).await?.items.len();
    println!("killed the controller with {at_kill}..{applied_at_kill} of {N} objects applied");
    assert!(
        applied_at_kill < N,
        "the apply had finished before the kill"
    );

    // The same replica restarts (same identity: it takes its Lease back at once).
    let _second = start(&ns.name, "k1", dir.path(), 16)?;
    let synced = wait_ready_at(&ns, "big", &head, Duration::from_secs(180)).await?;
    let status = synced.status.unwrap();
    assert_eq!(status.objects.as_ref().unwrap().total, N as u32);

    let names: BTreeSet<String> = configmaps
        .list_metadata(&owned)
        .await?
        .items
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .collect();
    let expected: BTreeSet<String> = (0..N).map(|i| format!("c{i:04}")).collect();
    assert_eq!(names, expected, "exactly the objects of git, once each");
    for i in [0, N / 2, N - 1] {
        let data = configmap_data(&client, &ns.name, &format!("c{i:04}"))
            .await?
            .unwrap();
        assert_eq!(data["value"], i.to_string());
    }
    let inventories = configmaps
        .list_metadata(&ListParams::default().labels("headway.dev/inventory-of=big"))
        .await?
        .items
        .len();
    assert_eq!(inventories, 1, "one inventory, no leftover shards");
    let inventory = configmap_data(&client, &ns.name, "headway-inventory-big")
        .await?
        .unwrap();
    let parsed = headway_model::inventory::Inventory::parse(&inventory["inventory"])?;
    assert_eq!(parsed.len(), N, "every object is in the inventory once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_the_running_sync_finish_then_releases_the_lease() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("sigterm_lets_the_running_sync_finish_then_releases_the_lease") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-term").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let dir = tempfile::tempdir()?;

    const N: usize = 600;
    let (upstream, head) = numbered_configmaps(N);
    let (_daemon, url) = git_daemon(&upstream);

    let mut process = start(&ns.name, "t1", dir.path(), 1)?;
    create_gitsync(
        &ns,
        "big",
        &url,
        serde_json::json!({"wait": false, "interval": "1h"}),
    )
    .await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=big");
    wait_partly_applied(
        "the apply to be under way",
        &configmaps,
        &owned,
        20..N - 100,
        Duration::from_secs(120),
    )
    .await?;
    let status = process.terminate(Duration::from_secs(150))?;
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        process.log_text()
    );
    // The sync that was running finished before the exit: everything applied, status written.
    let n = configmaps.list_metadata(&owned).await?.items.len();
    assert_eq!(n, N, "the running sync was finished, not cut");
    let api: Api<headway_controller::GitSync> = ns.api();
    let status = api.get("big").await?.status.unwrap();
    assert_eq!(
        status.last_applied_revision.as_deref(),
        Some(format!("main@sha1:{head}").as_str()),
        "{}",
        describe(Some(&status))
    );
    assert_eq!(condition(&status, "Reconciling").unwrap().0, "False");
    assert_eq!(lease_holder(&ns).await?, None, "the Lease was released");
    Ok(())
}
