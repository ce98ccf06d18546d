//! Sharding with the real `headway controller` binary: three shards (`a`, `b` and the default
//! one, for GitSyncs without the `headway.dev/shard` label), shard `a` with a standby; thirty
//! GitSyncs, each reconciled by exactly one process; killing shard `a`'s leader hands shard `a`
//! to its standby and leaves the other shards' leaders alone.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1`.

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use headway_controller::crd::GitSync;
use headway_tests::controller::{ControllerProcess, ControllerSpec};
use headway_tests::git::{Upstream, git_daemon};
use headway_tests::{TestNamespace, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use support::*;

const LEASE_SECONDS: u64 = 6;

/// Starts `headway controller --shard SHARD` as `identity`; killed on drop.
fn start(ns: &str, identity: &str, shard: &str, dir: &Path) -> anyhow::Result<ControllerProcess> {
    ControllerSpec::new(env!("CARGO_BIN_EXE_headway"), dir, identity)
        .namespace(ns)
        .args(["--shard", shard])
        .lease_seconds(LEASE_SECONDS)
        .start()
}

async fn holder(ns: &TestNamespace, shard: &str) -> anyhow::Result<Option<String>> {
    let api: Api<Lease> = ns.api();
    Ok(api
        .get_opt(&format!("headway-controller-{shard}"))
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

async fn wait_holder(ns: &TestNamespace, shard: &str, who: &str) -> anyhow::Result<()> {
    wait_for(
        &format!("{who} to hold shard {shard}'s Lease"),
        Duration::from_secs(LEASE_SECONDS * 4),
        || async move {
            let h = holder(ns, shard).await?;
            Ok(if h.as_deref() == Some(who) {
                Ok(())
            } else {
                Err(format!("holder {h:?}"))
            })
        },
    )
    .await
}

/// The shard of GitSync `i`: ten each for `a`, `b` and the default shard (no label).
fn shard_of(i: usize) -> Option<&'static str> {
    match i / 10 {
        0 => Some("a"),
        1 => Some("b"),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_shards_split_thirty_gitsyncs_and_fail_over_independently() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    let test = "three_shards_split_thirty_gitsyncs_and_fail_over_independently";
    if !git_enabled(test) {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("shards").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();
    let dir = tempfile::tempdir()?;

    const N: usize = 30;
    let upstream = Upstream::new();
    for i in 0..N {
        upstream.write(
            &format!("s{i:02}/cm.yaml"),
            &configmap_yaml(&format!("s{i:02}"), "one"),
        );
    }
    let first = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);

    let mut a1 = start(&ns.name, "a1", "a", dir.path())?;
    wait_holder(&ns, "a", "a1").await?;
    let _a2 = start(&ns.name, "a2", "a", dir.path())?;
    let _b1 = start(&ns.name, "b1", "b", dir.path())?;
    let _d1 = start(&ns.name, "d1", "default", dir.path())?;
    wait_holder(&ns, "b", "b1").await?;
    wait_holder(&ns, "default", "d1").await?;

    let api: Api<GitSync> = ns.api();
    for i in 0..N {
        let mut labels = serde_json::Map::new();
        if let Some(shard) = shard_of(i) {
            labels.insert("headway.dev/shard".into(), shard.into());
        }
        let obj: GitSync = serde_json::from_value(serde_json::json!({
            "apiVersion": "headway.dev/v1alpha1",
            "kind": "GitSync",
            "metadata": {"name": format!("g{i:02}"), "namespace": ns.name, "labels": labels},
            "spec": {"repository": {"url": url}, "path": format!("s{i:02}"), "interval": "1h", "timeout": "60s"},
        }))?;
        api.create(&PostParams::default(), &obj).await?;
    }
    for i in 0..N {
        wait_ready_at(&ns, &format!("g{i:02}"), &first, Duration::from_secs(120)).await?;
    }
    let expected = |i: usize, after_kill: bool| match shard_of(i) {
        Some("a") if after_kill => "a2",
        Some("a") => "a1",
        Some(_) => "b1",
        None => "d1",
    };
    let reporters = |events: &[(String, String, String, String)]| -> Vec<String> {
        let mut r: Vec<String> = events.iter().map(|e| e.3.clone()).collect();
        r.sort();
        r.dedup();
        r
    };
    for i in 0..N {
        let events = events_of(&client, &ns.name, &format!("g{i:02}")).await?;
        assert!(!events.is_empty(), "g{i:02}: no events");
        assert_eq!(
            reporters(&events),
            [expected(i, false)],
            "g{i:02} is reconciled by exactly one process, its shard's leader"
        );
    }

    // Kill shard a's leader: its standby takes over; b and default keep theirs.
    a1.kill();
    let killed = Instant::now();
    wait_holder(&ns, "a", "a2").await?;
    let handover = killed.elapsed();
    println!(
        "shard a handed over {handover:?} after SIGKILL of its leader (lease {LEASE_SECONDS} s)"
    );
    assert_eq!(holder(&ns, "b").await?.as_deref(), Some("b1"));
    assert_eq!(holder(&ns, "default").await?.as_deref(), Some("d1"));

    // A new revision reaches every GitSync through its shard's leader.
    for i in 0..N {
        upstream.write(
            &format!("s{i:02}/cm.yaml"),
            &configmap_yaml(&format!("s{i:02}"), "two"),
        );
    }
    let second = upstream.commit("second");
    for i in 0..N {
        let name = format!("g{i:02}");
        let api = api.clone();
        // Interval 1h: ask for a sync now.
        api.patch(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"annotations": {"headway.dev/sync-requested-at": second}}})),
        )
        .await?;
    }
    let mut by_reporter: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..N {
        let name = format!("g{i:02}");
        wait_ready_at(&ns, &name, &second, Duration::from_secs(120)).await?;
        let events = events_of(&client, &ns.name, &name).await?;
        let of_second: Vec<_> = events
            .iter()
            .filter(|e| e.2.contains(&second[..12]) || e.2.contains(&second))
            .cloned()
            .collect();
        assert!(
            !of_second.is_empty(),
            "{name}: no event of {second}: {events:?}"
        );
        assert_eq!(
            reporters(&of_second),
            [expected(i, true)],
            "{name}: {of_second:?}"
        );
        *by_reporter
            .entry(expected(i, true).to_string())
            .or_default() += 1;
        assert_eq!(
            configmap_data(&client, &ns.name, &format!("s{i:02}"))
                .await?
                .context("the ConfigMap")?["value"],
            "two"
        );
    }
    println!("GitSyncs per process after the handover: {by_reporter:?}");
    Ok(())
}
