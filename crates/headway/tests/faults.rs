//! Faults between the real `headway controller` binary and its dependencies, each scenario
//! ending in a check that the cluster equals git, that nothing Headway did not create was
//! touched and that nothing git still has was deleted; each prints its figures (a
//! `FAULT-FIGURES` line: time to converge after the fault ended, objects lost, wrong deletes,
//! ERROR lines logged), collected in docs/reliability.md.
//!
//! Needs `HEADWAY_FAULT_TESTS=1`, `HEADWAY_GIT_TESTS=1` and `HEADWAY_FAULT_CLUSTER_DIR`: the
//! state directory of a cluster of their own, which they break (see `headway_tests::faults`).

mod fault_support;
#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fault_support::*;
use headway_tests::faults::{Figures, Toxiproxy};
use headway_tests::git::{Upstream, git, git_daemon};
use headway_tests::wait_for;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use support::*;

/// What goes wrong in the middle of a big apply.
#[derive(Debug, Clone, Copy)]
enum MidApply {
    /// SIGKILL a component of the control plane, start it again after the downtime.
    Kill(&'static str),
    /// The controller reaches the API server through toxiproxy, which cuts every connection
    /// and refuses new ones for the downtime.
    ProxyCut,
}

/// `n` ConfigMaps applied by one GitSync; `fault` strikes when between 100 and `n - 500` are
/// applied and lasts `downtime`; then the checks and figures of every scenario.
async fn fault_mid_apply(
    test: &str,
    scenario: &'static str,
    n: usize,
    fault: MidApply,
    downtime: Duration,
) -> anyhow::Result<()> {
    let Some(setup) = Scenario::start(test, test).await? else {
        return Ok(());
    };
    let (fc, cluster, ns, dir) = setup.parts();

    let (upstream, head) = numbered_configmaps(n);
    let (_daemon, url) = git_daemon(&upstream);
    let bystander_version = create_bystander(ns).await?;

    // Through the proxy, for the cut: a kubeconfig naming the proxy's port.
    let toxiproxy = match fault {
        MidApply::ProxyCut => Some(Toxiproxy::start()?),
        MidApply::Kill(_) => None,
    };
    let kubeconfig = match &toxiproxy {
        Some(proxy) => proxied_kubeconfig(fc, proxy, "api", dir)?,
        None => fc.kubeconfig.clone(),
    };
    let controller = Controller::start_with(&kubeconfig, &ns.name, dir)?;
    create_gitsync(
        ns,
        "big",
        &url,
        serde_json::json!({"wait": false, "interval": "1h", "prune": true}),
    )
    .await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=big");
    let at_fault = wait_partly_applied(
        "the apply to be under way",
        &configmaps,
        &owned,
        100..n - 500,
        Duration::from_secs(180),
    )
    .await?;
    let errors_before = controller.error_lines().len();
    let applied_before: BTreeSet<String> = names_of(&configmaps, &owned).await?;
    let back = match fault {
        MidApply::Kill(component) => {
            let stopped = fc.kill(component)?;
            println!("killed {component} with about {at_fault} of {n} ConfigMaps applied");
            tokio::time::sleep(downtime).await;
            stopped.start()?;
            wait_api(fc).await?
        }
        MidApply::ProxyCut => {
            let proxy = toxiproxy.as_ref().expect("started for the cut");
            proxy.set_enabled("api", false)?;
            println!("cut the API connections with about {at_fault} of {n} ConfigMaps applied");
            tokio::time::sleep(downtime).await;
            proxy.set_enabled("api", true)?;
            Instant::now()
        }
    };

    wait_ready_at(ns, "big", &head, Duration::from_secs(240)).await?;
    let converged = back.elapsed();

    let names = names_of(&configmaps, &owned).await?;
    let expected: BTreeSet<String> = (0..n).map(|i| format!("c{i:04}")).collect();
    let lost = expected.difference(&names).count();
    let bystander = configmaps.get_opt("bystander").await?;
    let bystander_touched = bystander
        .as_ref()
        .and_then(|b| b.metadata.resource_version.clone())
        != Some(bystander_version);
    let inventories = configmaps
        .list_metadata(&ListParams::default().labels("headway.dev/inventory-of=big"))
        .await?
        .items
        .len();
    let errors = controller.error_lines();
    let figures = Figures {
        scenario,
        converge_after_fault: converged,
        objects_lost: lost,
        wrong_deletes: usize::from(bystander.is_none()) + applied_before.difference(&names).count(),
        error_lines: errors.len(),
    };
    figures.print();
    print_error_sources(&errors);
    assert_eq!(names, expected, "exactly the objects of git, once each");
    assert!(
        !bystander_touched,
        "the bystander was touched: {bystander:?}"
    );
    assert_eq!(inventories, 1, "one inventory, no leftover shards");
    let inventory = configmap_data(&cluster.client, &ns.name, "headway-inventory-big")
        .await?
        .context("the inventory")?;
    let parsed = headway_model::inventory::Inventory::parse(&inventory["inventory"])?;
    assert_eq!(parsed.len(), n, "every object is in the inventory once");
    // The outage costs a handful of ERROR lines, not one per object or per request in
    // flight: the apply stops at the first transport failure, and the kube client's own
    // per-request ERROR lines are limited to one per call site per 10 s (`headway::logs`).
    let during = errors.len() - errors_before;
    assert!(
        during <= 10,
        "{during} ERROR lines for one outage:\n{}",
        errors[errors_before..].join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_server_killed_mid_apply_then_restarted() -> anyhow::Result<()> {
    fault_mid_apply(
        "api_server_killed_mid_apply_then_restarted",
        "kube-apiserver SIGKILLed mid-apply of 2,000 ConfigMaps, started again 7 s later",
        2000,
        MidApply::Kill("kube-apiserver"),
        Duration::from_secs(7),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_killed_mid_apply_then_restarted() -> anyhow::Result<()> {
    fault_mid_apply(
        "etcd_killed_mid_apply_then_restarted",
        "etcd SIGKILLed mid-apply of 1,000 ConfigMaps, started again 5 s later",
        1000,
        MidApply::Kill("etcd"),
        Duration::from_secs(5),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_connections_cut_mid_apply() -> anyhow::Result<()> {
    fault_mid_apply(
        "api_connections_cut_mid_apply",
        "controller to API server connections cut (toxiproxy) mid-apply of 1,000 ConfigMaps for 10 s",
        1000,
        MidApply::ProxyCut,
        Duration::from_secs(10),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn git_server_down_for_several_intervals_then_back() -> anyhow::Result<()> {
    let test = "git_server_down_for_several_intervals_then_back";
    let Some(setup) = Scenario::start(test, "fault-git-down").await? else {
        return Ok(());
    };
    let (fc, cluster, ns, dir) = setup.parts();
    let toxiproxy = Toxiproxy::start()?;

    let upstream = Upstream::new();
    write_configmaps(&upstream, 0..20, "one");
    let first = upstream.commit("first");
    let (daemon, _) = git_daemon(&upstream);
    let port = toxiproxy.proxy("git", daemon.port)?;
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let bystander = create_bystander(ns).await?;

    let controller = Controller::start(fc, &ns.name, dir)?;
    create_gitsync(
        ns,
        "site",
        &url,
        serde_json::json!({"interval": "3s", "prune": true}),
    )
    .await?;
    wait_ready_at(ns, "site", &first, Duration::from_secs(120)).await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=site");
    let before = uids_of(&configmaps, &owned).await?;

    // Down: the proxy refuses connections; meanwhile git moves on (c19 leaves, c20 arrives).
    toxiproxy.set_enabled("git", false)?;
    let down = Instant::now();
    let attempts_before = failed_attempts(&controller.log_text(), "FetchFailed");
    upstream.remove("cm/c19.yaml");
    write_configmaps(&upstream, 0..1, "two");
    write_configmaps(&upstream, 20..21, "new");
    let second = upstream.commit("second");
    wait_status(
        ns,
        "site",
        "FetchFailed",
        Duration::from_secs(30),
        |_, s| {
            condition(s, "Ready")
                .is_some_and(|(st, reason, _)| st == "False" && reason == "FetchFailed")
        },
    )
    .await?;
    // Several intervals (3 s each) of outage.
    let outage = Duration::from_secs(20);
    tokio::time::sleep(outage.saturating_sub(down.elapsed())).await;
    let during = uids_of(&configmaps, &owned).await?;
    assert_eq!(
        during, before,
        "nothing pruned or recreated while git was unreachable"
    );
    let attempts = failed_attempts(&controller.log_text(), "FetchFailed") - attempts_before;

    toxiproxy.set_enabled("git", true)?;
    let back = Instant::now();
    wait_ready_at(ns, "site", &second, Duration::from_secs(120)).await?;
    let converged = back.elapsed();

    let after = uids_of(&configmaps, &owned).await?;
    let expected: BTreeSet<String> = (0..21)
        .filter(|i| *i != 19)
        .map(|i| format!("c{i:02}"))
        .collect();
    let names: BTreeSet<String> = after.keys().cloned().collect();
    let figures = Figures {
        scenario: "git server (git daemon behind toxiproxy) refusing connections for 20 s",
        converge_after_fault: converged,
        objects_lost: expected.difference(&names).count(),
        wrong_deletes: wrong_deletes(&before, &after, &expected)
            + usize::from(!bystander_untouched(ns, &bystander).await?),
        error_lines: controller.error_lines().len(),
    };
    figures.print();
    println!("failed fetch attempts during the {outage:?} outage: {attempts}");
    assert_eq!(names, expected, "the cluster equals git");
    assert_eq!(figures.wrong_deletes, 0);
    assert_eq!(
        configmap_data(&cluster.client, &ns.name, "c00")
            .await?
            .unwrap()["value"],
        "two"
    );
    // Backoff (2 s, 4 s, 8 s, ...), not a retry loop and not one attempt per 3 s interval.
    assert!(
        (2..=6).contains(&attempts),
        "{attempts} failed fetches in {outage:?}:\n{}",
        controller.log_text()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn git_server_extremely_slow_the_fetch_timeout_fires() -> anyhow::Result<()> {
    let test = "git_server_extremely_slow_the_fetch_timeout_fires";
    let Some(setup) = Scenario::start(test, "fault-git-slow").await? else {
        return Ok(());
    };
    let (fc, _, ns, dir) = setup.parts();
    let toxiproxy = Toxiproxy::start()?;

    let upstream = Upstream::new();
    write_configmaps(&upstream, 0..10, "one");
    let first = upstream.commit("first");
    let (daemon, _) = git_daemon(&upstream);
    let port = toxiproxy.proxy("git", daemon.port)?;
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let bystander = create_bystander(ns).await?;

    let controller = Controller::start(fc, &ns.name, dir)?;
    create_gitsync(
        ns,
        "site",
        &url,
        serde_json::json!({"interval": "3s", "timeout": "5s", "prune": true}),
    )
    .await?;
    wait_ready_at(ns, "site", &first, Duration::from_secs(120)).await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=site");
    let before = uids_of(&configmaps, &owned).await?;

    // Every byte from the server 60 s late, and 100 bytes/s at most.
    toxiproxy.add_toxic("git", "slow", "latency", &["latency=60000"])?;
    toxiproxy.add_toxic("git", "narrow", "bandwidth", &["rate=1"])?;
    let slowed = Instant::now();
    upstream.remove("cm/c09.yaml");
    let second = upstream.commit("second");
    let failed = wait_status(
        ns,
        "site",
        "a fetch timeout",
        Duration::from_secs(40),
        |_, s| {
            condition(s, "Ready").is_some_and(|(st, reason, message)| {
                st == "False" && reason == "FetchFailed" && message.contains("timed out after 5s")
            })
        },
    )
    .await?;
    let noticed = slowed.elapsed();
    println!(
        "fetch timeout reported {noticed:?} after the server slowed down: {}",
        describe(failed.status.as_ref())
    );
    assert_eq!(
        uids_of(&configmaps, &owned).await?,
        before,
        "nothing pruned while slow"
    );

    toxiproxy.remove_toxic("git", "slow")?;
    toxiproxy.remove_toxic("git", "narrow")?;
    let back = Instant::now();
    wait_ready_at(ns, "site", &second, Duration::from_secs(120)).await?;
    let converged = back.elapsed();
    let after = uids_of(&configmaps, &owned).await?;
    let expected: BTreeSet<String> = (0..9).map(|i| format!("c{i:02}")).collect();
    let names: BTreeSet<String> = after.keys().cloned().collect();
    let figures = Figures {
        scenario: "git server answering 60 s late at 1 KB/s (fetch timeout 5 s)",
        converge_after_fault: converged,
        objects_lost: expected.difference(&names).count(),
        wrong_deletes: wrong_deletes(&before, &after, &expected)
            + usize::from(!bystander_untouched(ns, &bystander).await?),
        error_lines: controller.error_lines().len(),
    };
    figures.print();
    assert_eq!(names, expected, "the cluster equals git");
    assert_eq!(figures.wrong_deletes, 0);
    // Nothing hangs: the timeout (5 s) fired well before the server's 60 s.
    assert!(noticed < Duration::from_secs(30), "{noticed:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn force_push_to_an_older_tree() -> anyhow::Result<()> {
    let test = "force_push_to_an_older_tree";
    let Some(setup) = Scenario::start(test, "fault-force-push").await? else {
        return Ok(());
    };
    let (fc, cluster, ns, dir) = setup.parts();

    let upstream = Upstream::new();
    write_configmaps(&upstream, 0..10, "one");
    let old = upstream.commit("old");
    let (_daemon, url) = git_daemon(&upstream);
    let bystander = create_bystander(ns).await?;
    let controller = Controller::start(fc, &ns.name, dir)?;
    create_gitsync(
        ns,
        "site",
        &url,
        serde_json::json!({"interval": "3s", "prune": true}),
    )
    .await?;
    wait_ready_at(ns, "site", &old, Duration::from_secs(120)).await?;

    // A newer revision: c00 changed, c09 gone, c10 and c11 new.
    write_configmaps(&upstream, 0..1, "two");
    upstream.remove("cm/c09.yaml");
    write_configmaps(&upstream, 10..12, "new");
    let newer = upstream.commit("newer");
    wait_ready_at(ns, "site", &newer, Duration::from_secs(120)).await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=site");
    let before = uids_of(&configmaps, &owned).await?;

    // History rewritten to the older tree.
    git(&upstream.work, &["reset", "-q", "--hard", &old]);
    git(&upstream.work, &["push", "-q", "--force", "origin", "main"]);
    let pushed = Instant::now();
    wait_ready_at(ns, "site", &old, Duration::from_secs(120)).await?;
    let converged = pushed.elapsed();

    let after = uids_of(&configmaps, &owned).await?;
    let expected: BTreeSet<String> = (0..10).map(|i| format!("c{i:02}")).collect();
    let names: BTreeSet<String> = after.keys().cloned().collect();
    // Kept across the rewrite: c00..c08 (c09 comes back as a new object).
    let kept: BTreeSet<String> = (0..9).map(|i| format!("c{i:02}")).collect();
    let figures = Figures {
        scenario: "force-push rewriting main to an older tree",
        converge_after_fault: converged,
        objects_lost: expected.difference(&names).count(),
        wrong_deletes: wrong_deletes(&before, &after, &kept)
            + usize::from(!bystander_untouched(ns, &bystander).await?),
        error_lines: controller.error_lines().len(),
    };
    figures.print();
    assert_eq!(names, expected, "the cluster equals the older tree");
    assert_eq!(figures.wrong_deletes, 0);
    assert_eq!(
        configmap_data(&cluster.client, &ns.name, "c00")
            .await?
            .unwrap()["value"],
        "one"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_lost_to_a_partition_mid_sync() -> anyhow::Result<()> {
    let test = "lease_lost_to_a_partition_mid_sync";
    let Some(setup) = Scenario::start(test, "fault-lease-partition").await? else {
        return Ok(());
    };
    let (fc, cluster, ns, dir) = setup.parts();

    const N: usize = 1000;
    let (upstream, head) = numbered_configmaps(N);
    let (_daemon, url) = git_daemon(&upstream);
    let bystander_version = create_bystander(ns).await?;

    // p1 reaches the API server through the proxy (and will be partitioned); p2 directly.
    let toxiproxy = Toxiproxy::start()?;
    let proxied = proxied_kubeconfig(fc, &toxiproxy, "api", dir)?;
    // One request at a time: the apply is long enough to be partitioned in the middle.
    let p1 = Controller::start_named(&proxied, &ns.name, dir, "p1", 1, LEASE_SECONDS)?;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = ns.api();
    let holder = || {
        let leases = leases.clone();
        async move {
            Ok::<_, anyhow::Error>(
                leases
                    .get_opt("headway-controller")
                    .await?
                    .and_then(|l| l.spec)
                    .and_then(|s| s.holder_identity),
            )
        }
    };
    wait_for("p1 to lead", Duration::from_secs(30), || async {
        Ok(match holder().await? {
            Some(h) if h == "p1" => Ok(()),
            other => Err(format!("{other:?}")),
        })
    })
    .await?;
    let p2 = Controller::start_named(
        &fc.kubeconfig,
        &ns.name,
        dir,
        "p2",
        APPLY_CONCURRENCY,
        LEASE_SECONDS,
    )?;
    create_gitsync(
        ns,
        "big",
        &url,
        serde_json::json!({"wait": false, "interval": "1h", "prune": true}),
    )
    .await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=big");
    let at_cut = wait_partly_applied(
        "p1's apply to be under way",
        &configmaps,
        &owned,
        50..N - 300,
        Duration::from_secs(180),
    )
    .await?;
    let applied_before = names_of(&configmaps, &owned).await?;
    toxiproxy.set_enabled("api", false)?;
    let cut = Instant::now();
    println!("partitioned p1 from the API server with about {at_cut} of {N} ConfigMaps applied");

    // p2 takes the Lease and finishes the sync while p1 is cut off.
    wait_for(
        "p2 to lead",
        Duration::from_secs(LEASE_SECONDS * 5),
        || async {
            Ok(match holder().await? {
                Some(h) if h == "p2" => Ok(()),
                other => Err(format!("{other:?}")),
            })
        },
    )
    .await?;
    let takeover = cut.elapsed();
    wait_ready_at(ns, "big", &head, Duration::from_secs(240)).await?;
    let converged = cut.elapsed();
    // The partition heals: p1 comes back as a follower and writes nothing.
    toxiproxy.set_enabled("api", true)?;
    tokio::time::sleep(Duration::from_secs(LEASE_SECONDS * 2)).await;
    assert_eq!(holder().await?.as_deref(), Some("p2"), "p2 keeps the Lease");
    let p1_log = p1.log_text();
    assert!(
        p1_log.contains("lost leadership"),
        "p1 did not notice it lost the Lease:\n{}",
        &p1_log[p1_log.len().saturating_sub(3000)..]
    );

    let names = names_of(&configmaps, &owned).await?;
    let expected: BTreeSet<String> = (0..N).map(|i| format!("c{i:04}")).collect();
    let bystander = configmaps.get_opt("bystander").await?;
    let inventory = configmap_data(&cluster.client, &ns.name, "headway-inventory-big")
        .await?
        .context("the inventory")?;
    let parsed = headway_model::inventory::Inventory::parse(&inventory["inventory"])?;
    let figures = Figures {
        scenario: "leader partitioned from the API server (toxiproxy) mid-apply of 1,000 ConfigMaps; the standby takes over",
        converge_after_fault: converged,
        objects_lost: expected.difference(&names).count(),
        wrong_deletes: usize::from(bystander.is_none()) + applied_before.difference(&names).count(),
        error_lines: p1.error_lines().len() + p2.error_lines().len(),
    };
    figures.print();
    println!("p2 took the Lease {takeover:?} after the partition began (lease {LEASE_SECONDS} s)");
    assert_eq!(names, expected, "exactly the objects of git, once each");
    assert_eq!(
        bystander.and_then(|b| b.metadata.resource_version),
        Some(bystander_version),
        "the bystander is untouched"
    );
    assert_eq!(parsed.len(), N, "every object is in the inventory once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_write_cut_then_controller_restarted() -> anyhow::Result<()> {
    let test = "inventory_write_cut_then_controller_restarted";
    let Some(setup) = Scenario::start(test, "fault-inventory-cut").await? else {
        return Ok(());
    };
    let (fc, cluster, ns, dir) = setup.parts();

    let upstream = Upstream::new();
    write_configmaps(&upstream, 0..600, "one");
    let first = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);
    let bystander = create_bystander(ns).await?;
    let toxiproxy = Toxiproxy::start()?;
    let kubeconfig = proxied_kubeconfig(fc, &toxiproxy, "api", dir)?;
    // Inventory shards of 1 KiB: the inventory of 600-800 objects is written in about a hundred
    // requests, one after the other, so the cut can land in the middle of the write.
    let shard_args = ["--inventory-shard-bytes", "1024"];
    let mut controller = Controller::start_args(&kubeconfig, &ns.name, dir, "inv-1", &shard_args)?;
    create_gitsync(
        ns,
        "inv",
        &url,
        serde_json::json!({"interval": "2s", "prune": true, "wait": false}),
    )
    .await?;
    wait_ready_at(ns, "inv", &first, Duration::from_secs(180)).await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=inv");
    let inventory_cms = ListParams::default().labels("headway.dev/inventory-of=inv");
    let before = uids_of(&configmaps, &owned).await?;
    let first_id = inventory_id(&configmaps).await?;
    let first_shards: BTreeSet<String> = names_of(&configmaps, &inventory_cms).await?;
    assert!(
        first_shards.len() > 20,
        "an inventory of many shards: {first_shards:?}"
    );

    // Every request 40 ms late: the inventory write takes seconds.
    toxiproxy.add_toxic("api", "slow", "latency", &["latency=40"])?;
    // The next revision: c00..c99 leave git, c600..c799 arrive.
    for i in 0..100 {
        upstream.remove(&format!("cm/c{i:02}.yaml"));
    }
    write_configmaps(&upstream, 600..800, "two");
    let second = upstream.commit("second");

    // The first shard of the new inventory appears: cut every connection of the controller.
    let seen = wait_for(
        "the new inventory's first shard",
        Duration::from_secs(180),
        || {
            let configmaps = configmaps.clone();
            let inventory_cms = inventory_cms.clone();
            let first_shards = first_shards.clone();
            async move {
                let now = names_of(&configmaps, &inventory_cms).await?;
                let new: Vec<String> = now.difference(&first_shards).cloned().collect();
                Ok(if new.is_empty() {
                    Err(format!("{} inventory ConfigMaps, none new", now.len()))
                } else {
                    Ok(new)
                })
            }
        },
    )
    .await?;
    toxiproxy.set_enabled("api", false)?;
    let cut = Instant::now();
    println!(
        "cut the API connections after {} new shard(s) were written",
        seen.len()
    );
    // The controller dies while cut off (no chance to finish anything), and a new one starts
    // once the network is back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    controller.kill();
    let partial = names_of(&configmaps, &inventory_cms).await?;
    let head_id = inventory_id(&configmaps).await?;
    assert_eq!(
        head_id,
        first_id,
        "the cut came before the head was written (the new write left {} shards)",
        partial.difference(&first_shards).count()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    toxiproxy.remove_toxic("api", "slow")?;
    toxiproxy.set_enabled("api", true)?;
    let back = Instant::now();
    println!("the network was cut for {:.1?}", back - cut);
    let restarted = Controller::start_args(&kubeconfig, &ns.name, dir, "inv-2", &shard_args)?;
    wait_ready_at(ns, "inv", &second, Duration::from_secs(180)).await?;
    let converged = back.elapsed();

    let after = uids_of(&configmaps, &owned).await?;
    let names: BTreeSet<String> = after.keys().cloned().collect();
    let expected: BTreeSet<String> = (100..800).map(|i| format!("c{i:02}")).collect();
    let kept: BTreeSet<String> = (100..600).map(|i| format!("c{i:02}")).collect();
    // The inventory: one head, exactly the shards it names, every object of git once.
    let id = inventory_id(&configmaps).await?;
    let head = configmaps.get("headway-inventory-inv").await?;
    let shards: usize = head
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("headway.dev/inventory-shards"))
        .context("the head names its shards")?
        .parse()?;
    let mut wanted: BTreeSet<String> = (1..shards)
        .map(|i| format!("headway-inventory-inv-{id}-{i}"))
        .collect();
    wanted.insert("headway-inventory-inv".into());
    let mut entries = 0;
    for name in &wanted {
        let data = configmap_data(&cluster.client, &ns.name, name)
            .await?
            .with_context(|| format!("inventory shard {name}"))?;
        entries += headway_model::inventory::Inventory::parse(&data["inventory"])?.len();
    }
    let figures = Figures {
        scenario: "controller to API server connections cut while the inventory is written (1 KiB shards, 40 ms per request), the controller SIGKILLed meanwhile and a new one started",
        converge_after_fault: converged,
        objects_lost: expected.difference(&names).count(),
        wrong_deletes: wrong_deletes(&before, &after, &kept)
            + usize::from(!bystander_untouched(ns, &bystander).await?),
        error_lines: restarted.error_lines().len(),
    };
    figures.print();
    assert_eq!(names, expected, "the cluster equals git");
    assert_eq!(
        figures.wrong_deletes, 0,
        "nothing git still has was deleted"
    );
    assert_eq!(
        entries,
        expected.len(),
        "every object in the inventory once"
    );
    assert_eq!(
        names_of(&configmaps, &inventory_cms).await?,
        wanted,
        "no shard of the cut write or of older writes is left"
    );
    Ok(())
}

/// The write id of the inventory head of the GitSync `inv`.
async fn inventory_id(configmaps: &Api<ConfigMap>) -> anyhow::Result<String> {
    configmaps
        .get("headway-inventory-inv")
        .await?
        .metadata
        .annotations
        .and_then(|mut a| a.remove("headway.dev/inventory-id"))
        .context("the inventory head has no write id")
}
