//! Faults between the real `headway controller` binary and its dependencies, each scenario
//! ending in a check that the cluster equals git, that nothing Headway did not create was
//! touched and that nothing git still has was deleted; each prints its figures (a
//! `FAULT-FIGURES` line: time to converge after the fault ended, objects lost, wrong deletes,
//! ERROR lines logged), collected in docs/reliability.md.
//!
//! Needs `HEADWAY_FAULT_TESTS=1`, `HEADWAY_GIT_TESTS=1` and `HEADWAY_FAULT_CLUSTER_DIR`: the
//! state directory of a cluster of their own, which they break (see `headway_tests::faults`).
//!
//! long because the scenarios must share one test binary: they run one at a time under its
//! `SERIAL` lock (one kills the API server another uses), which a second binary would not see.

mod fault_support;
#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fault_support::*;
use headway_tests::faults::{Figures, Toxiproxy, fault_cluster};
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
    let Some(fc) = fault_cluster(test).await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    if !git_enabled(test) {
        return Ok(());
    }
    let cluster = fc.cluster.clone();
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace(test).await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let dir = tempfile::tempdir()?;

    let upstream = Upstream::new();
    for i in 0..n {
        upstream.write(
            &format!("cm/c{i:04}.yaml"),
            &configmap_yaml(&format!("c{i:04}"), &i.to_string()),
        );
    }
    let head = upstream.commit("many");
    let (_daemon, url) = git_daemon(&upstream);
    let bystander_version = create_bystander(&ns).await?;

    // Through the proxy, for the cut: a kubeconfig naming the proxy's port.
    let toxiproxy = match fault {
        MidApply::ProxyCut => Some(Toxiproxy::start()?),
        MidApply::Kill(_) => None,
    };
    let kubeconfig = match &toxiproxy {
        Some(proxy) => {
            let api_port = cluster.config.cluster_url.port_u16().context("API port")?;
            let port = proxy.proxy("api", api_port)?;
            let text = std::fs::read_to_string(&fc.kubeconfig)?.replace(
                &format!("127.0.0.1:{api_port}"),
                &format!("127.0.0.1:{port}"),
            );
            let path = dir.path().join("kubeconfig-proxied");
            std::fs::write(&path, text)?;
            path
        }
        None => fc.kubeconfig.clone(),
    };
    let controller = Controller::start_with(&kubeconfig, &ns.name, dir.path())?;
    create_gitsync(
        &ns,
        "big",
        &url,
        serde_json::json!({"wait": false, "interval": "1h", "prune": true}),
    )
    .await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=big");
    let at_fault = wait_for(
        "the apply to be under way",
        Duration::from_secs(180),
        || {
            let configmaps = configmaps.clone();
            let owned = owned.clone();
            async move {
                let applied = configmaps.list_metadata(&owned).await?.items.len();
                Ok(if (100..n - 500).contains(&applied) {
                    Ok(applied)
                } else {
                    Err(format!("{applied} applied"))
                })
            }
        },
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
            wait_api(&fc).await?
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

    wait_ready_at(&ns, "big", &head, Duration::from_secs(240)).await?;
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
    // The outage costs a bounded number of ERROR lines (the requests in flight when the
    // server went away, the watches and Lease renewals of the controller, one per retried
    // sync), not one per object.
    let during = errors.len() - errors_before;
    assert!(
        during <= 2 * APPLY_CONCURRENCY + 30,
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
    let Some(fc) = fault_cluster(test).await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    if !git_enabled(test) {
        return Ok(());
    }
    let cluster = fc.cluster.clone();
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("fault-git-down").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let dir = tempfile::tempdir()?;
    let toxiproxy = Toxiproxy::start()?;

    let upstream = Upstream::new();
    write_configmaps(&upstream, 0..20, "one");
    let first = upstream.commit("first");
    let (daemon, _) = git_daemon(&upstream);
    let port = toxiproxy.proxy("git", daemon.port)?;
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let bystander = create_bystander(&ns).await?;

    let controller = Controller::start(&fc, &ns.name, dir.path())?;
    create_gitsync(
        &ns,
        "site",
        &url,
        serde_json::json!({"interval": "3s", "prune": true}),
    )
    .await?;
    wait_ready_at(&ns, "site", &first, Duration::from_secs(120)).await?;
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
        &ns,
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
    wait_ready_at(&ns, "site", &second, Duration::from_secs(120)).await?;
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
            + usize::from(!bystander_untouched(&ns, &bystander).await?),
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
    let Some(fc) = fault_cluster(test).await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    if !git_enabled(test) {
        return Ok(());
    }
    let cluster = fc.cluster.clone();
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("fault-git-slow").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let dir = tempfile::tempdir()?;
    let toxiproxy = Toxiproxy::start()?;

    let upstream = Upstream::new();
    write_configmaps(&upstream, 0..10, "one");
    let first = upstream.commit("first");
    let (daemon, _) = git_daemon(&upstream);
    let port = toxiproxy.proxy("git", daemon.port)?;
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let bystander = create_bystander(&ns).await?;

    let controller = Controller::start(&fc, &ns.name, dir.path())?;
    create_gitsync(
        &ns,
        "site",
        &url,
        serde_json::json!({"interval": "3s", "timeout": "5s", "prune": true}),
    )
    .await?;
    wait_ready_at(&ns, "site", &first, Duration::from_secs(120)).await?;
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
        &ns,
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
    wait_ready_at(&ns, "site", &second, Duration::from_secs(120)).await?;
    let converged = back.elapsed();
    let after = uids_of(&configmaps, &owned).await?;
    let expected: BTreeSet<String> = (0..9).map(|i| format!("c{i:02}")).collect();
    let names: BTreeSet<String> = after.keys().cloned().collect();
    let figures = Figures {
        scenario: "git server answering 60 s late at 1 KB/s (fetch timeout 5 s)",
        converge_after_fault: converged,
        objects_lost: expected.difference(&names).count(),
        wrong_deletes: wrong_deletes(&before, &after, &expected)
            + usize::from(!bystander_untouched(&ns, &bystander).await?),
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
    let Some(fc) = fault_cluster(test).await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    if !git_enabled(test) {
        return Ok(());
    }
    let cluster = fc.cluster.clone();
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("fault-force-push").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let dir = tempfile::tempdir()?;

    let upstream = Upstream::new();
    write_configmaps(&upstream, 0..10, "one");
    let old = upstream.commit("old");
    let (_daemon, url) = git_daemon(&upstream);
    let bystander = create_bystander(&ns).await?;
    let controller = Controller::start(&fc, &ns.name, dir.path())?;
    create_gitsync(
        &ns,
        "site",
        &url,
        serde_json::json!({"interval": "3s", "prune": true}),
    )
    .await?;
    wait_ready_at(&ns, "site", &old, Duration::from_secs(120)).await?;

    // A newer revision: c00 changed, c09 gone, c10 and c11 new.
    write_configmaps(&upstream, 0..1, "two");
    upstream.remove("cm/c09.yaml");
    write_configmaps(&upstream, 10..12, "new");
    let newer = upstream.commit("newer");
    wait_ready_at(&ns, "site", &newer, Duration::from_secs(120)).await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=site");
    let before = uids_of(&configmaps, &owned).await?;

    // History rewritten to the older tree.
    git(&upstream.work, &["reset", "-q", "--hard", &old]);
    git(&upstream.work, &["push", "-q", "--force", "origin", "main"]);
    let pushed = Instant::now();
    wait_ready_at(&ns, "site", &old, Duration::from_secs(120)).await?;
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
            + usize::from(!bystander_untouched(&ns, &bystander).await?),
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
    let Some(fc) = fault_cluster(test).await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    if !git_enabled(test) {
        return Ok(());
    }
    let cluster = fc.cluster.clone();
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("fault-lease-partition").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let dir = tempfile::tempdir()?;

    const N: usize = 1000;
    let upstream = Upstream::new();
    for i in 0..N {
        upstream.write(
            &format!("cm/c{i:04}.yaml"),
            &configmap_yaml(&format!("c{i:04}"), &i.to_string()),
        );
    }
    let head = upstream.commit("many");
    let (_daemon, url) = git_daemon(&upstream);
    let bystander_version = create_bystander(&ns).await?;

    // p1 reaches the API server through the proxy (and will be partitioned); p2 directly.
    let toxiproxy = Toxiproxy::start()?;
    let api_port = cluster.config.cluster_url.port_u16().context("API port")?;
    let port = toxiproxy.proxy("api", api_port)?;
    let proxied = dir.path().join("kubeconfig-proxied");
    std::fs::write(
        &proxied,
        std::fs::read_to_string(&fc.kubeconfig)?.replace(
            &format!("127.0.0.1:{api_port}"),
            &format!("127.0.0.1:{port}"),
        ),
    )?;
    // One request at a time: the apply is long enough to be partitioned in the middle.
    let p1 = Controller::start_named(&proxied, &ns.name, dir.path(), "p1", 1, LEASE_SECONDS)?;
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
        dir.path(),
        "p2",
        APPLY_CONCURRENCY,
        LEASE_SECONDS,
    )?;
    create_gitsync(
        &ns,
        "big",
        &url,
        serde_json::json!({"wait": false, "interval": "1h", "prune": true}),
    )
    .await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=big");
    let at_cut = wait_for(
        "p1's apply to be under way",
        Duration::from_secs(180),
        || {
            let configmaps = configmaps.clone();
            let owned = owned.clone();
            async move {
                let n = configmaps.list_metadata(&owned).await?.items.len();
                Ok(if (50..N - 300).contains(&n) {
                    Ok(n)
                } else {
                    Err(format!("{n} applied"))
                })
            }
        },
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
    wait_ready_at(&ns, "big", &head, Duration::from_secs(240)).await?;
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

/// The names `c0000..` of the ConfigMaps in `range`.
fn configmap_names(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("c{i:04}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_cut_while_the_inventory_is_written_then_controller_restarted() -> anyhow::Result<()> {
    let test = "api_cut_while_the_inventory_is_written_then_controller_restarted";
    let Some(fc) = fault_cluster(test).await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    if !git_enabled(test) {
        return Ok(());
    }
    let cluster = fc.cluster.clone();
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace(test).await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let dir = tempfile::tempdir()?;
    let (n, removed) = (600, 50);

    let upstream = Upstream::new();
    for i in 0..n {
        upstream.write(
            &format!("cm/c{i:04}.yaml"),
            &configmap_yaml(&format!("c{i:04}"), &i.to_string()),
        );
    }
    let head = upstream.commit("many");
    let (_daemon, url) = git_daemon(&upstream);
    let bystander_version = create_bystander(&ns).await?;
    let proxy = Toxiproxy::start()?;
    let kubeconfig = proxied_kubeconfig(&fc, &proxy, "api", dir.path())?;
    // What the controller sends crawls at 10 KB/s per connection: an object's apply (about
    // 300 bytes) still takes tens of milliseconds, the inventory of 600 entries (tens of KB)
    // several seconds, so the cut lands while it is being sent.
    proxy.add_upstream_toxic("api", "narrow", "bandwidth", &["rate=10"])?;
    let first = Controller::start_named(
        &kubeconfig,
        &ns.name,
        dir.path(),
        "inventory-a",
        APPLY_CONCURRENCY,
        15,
    )?;
    create_gitsync(
        &ns,
        "inv",
        &url,
        serde_json::json!({"wait": false, "interval": "1h", "prune": true}),
    )
    .await?;
    let configmaps: Api<ConfigMap> = ns.api();
    let owned = ListParams::default().labels("headway.dev/sync-name=inv");

    // 1. Cut as soon as every object is applied: the inventory write is under way.
    wait_for("every object applied", Duration::from_secs(240), || {
        let (configmaps, owned) = (configmaps.clone(), owned.clone());
        async move {
            let applied = configmaps.list_metadata(&owned).await?.items.len();
            Ok(if applied == n {
                Ok(())
            } else {
                Err(format!("{applied} applied"))
            })
        }
    })
    .await?;
    proxy.set_enabled("api", false)?;
    let at_cut = inventory_len(&ns, &cluster.client, "inv").await?;
    println!(
        "cut the API connections with all {n} objects applied; the inventory held {at_cut:?} entries"
    );
    assert_eq!(
        at_cut, None,
        "the cut came after the inventory was written: the scenario did not happen"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.remove_toxic("api", "narrow")?;
    proxy.set_enabled("api", true)?;
    let back = Instant::now();
    // Every answer 150 ms late from now on: the prune below is slow enough to be cut.
    proxy.add_toxic("api", "slow", "latency", &["latency=150"])?;
    // The next sync (the retry after the transient failure) repairs the inventory.
    wait_ready_at(&ns, "inv", &head, Duration::from_secs(240)).await?;
    let repaired = back.elapsed();
    assert_eq!(
        inventory_len(&ns, &cluster.client, "inv").await?,
        Some(n),
        "the retry wrote the whole inventory"
    );

    // 2. A new commit without the first `removed` objects; cut again once its prune started,
    // SIGKILL the controller while the server is unreachable, start another one.
    for i in 0..removed {
        upstream.remove(&format!("cm/c{i:04}.yaml"));
    }
    let second = upstream.commit("fewer");
    let kept = configmap_names(removed..n);
    let uids_before = uids_of(&configmaps, &owned).await?;
    headway_controller::Handle::new(cluster.client.clone())
        .sync_now(&ns.name, "inv")
        .await?;
    let gone_at_cut = wait_for("the prune to start", Duration::from_secs(120), || {
        let (configmaps, owned) = (configmaps.clone(), owned.clone());
        async move {
            let names = names_of(&configmaps, &owned).await?;
            let gone = (0..removed)
                .filter(|i| !names.contains(&format!("c{i:04}")))
                .count();
            Ok(if gone > 0 {
                Ok(gone)
            } else {
                Err("nothing pruned yet".to_string())
            })
        }
    })
    .await?;
    proxy.set_enabled("api", false)?;
    let errors_first = first.error_lines().len();
    drop(first);
    println!(
        "cut again with {gone_at_cut} of {removed} removed objects pruned; controller SIGKILLed"
    );
    proxy.set_enabled("api", true)?;
    proxy.remove_toxic("api", "slow")?;
    let restarted = Instant::now();
    let second_controller = Controller::start_named(
        &kubeconfig,
        &ns.name,
        dir.path(),
        "inventory-b",
        APPLY_CONCURRENCY,
        15,
    )?;
    wait_ready_at(&ns, "inv", &second, Duration::from_secs(240)).await?;
    let converged = restarted.elapsed();

    let after = uids_of(&configmaps, &owned).await?;
    let names: BTreeSet<String> = after.keys().cloned().collect();
    let figures = Figures {
        scenario: "controller to API server connections cut (toxiproxy) while the inventory of 600 objects is written; the retry repairs it; cut again mid-prune, controller SIGKILLed and replaced",
        converge_after_fault: converged,
        objects_lost: kept.difference(&names).count(),
        wrong_deletes: wrong_deletes(&uids_before, &after, &kept)
            + usize::from(!bystander_untouched(&ns, &bystander_version).await?),
        error_lines: errors_first + second_controller.error_lines().len(),
    };
    figures.print();
    println!("repaired by the retry {repaired:.1?} after the first cut ended");
    assert_eq!(
        names, kept,
        "exactly the objects of git: none lost, every removed one pruned"
    );
    assert_eq!(
        figures.wrong_deletes, 0,
        "no object git still has was deleted or recreated"
    );
    assert_eq!(
        inventory_len(&ns, &cluster.client, "inv").await?,
        Some(n - removed),
        "the new controller's inventory lists exactly what git has"
    );
    let inventories = configmaps
        .list_metadata(&ListParams::default().labels("headway.dev/inventory-of=inv"))
        .await?
        .items
        .len();
    assert_eq!(inventories, 1, "one inventory, no leftover shards");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_syncs_are_served_while_hostile_repositories_render() -> anyhow::Result<()> {
    let test = "other_syncs_are_served_while_hostile_repositories_render";
    let Some(fc) = fault_cluster(test).await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    if !git_enabled(test) {
        return Ok(());
    }
    let cluster = fc.cluster.clone();
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace(test).await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let dir = tempfile::tempdir()?;

    let upstream = Upstream::new();
    // A "billion laughs" alias bomb.
    let mut bomb =
        vec![r#"  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]"#.to_string()];
    for i in 1..10u8 {
        let (prev, cur) = ((b'a' + i - 1) as char, (b'a' + i) as char);
        bomb.push(format!(
            "  {cur}: &{cur} [{}]",
            vec![format!("*{prev}"); 9].join(",")
        ));
    }
    upstream.write(
        "bomb/bomb.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n{}\n",
            bomb.join("\n")
        ),
    );
    // A 100 MiB document.
    upstream.write(
        "big/big.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  x: \"{}\"\n",
            "a".repeat(100 << 20)
        ),
    );
    // 15 MiB of YAML in one document, just under the file limit: parsed, then refused by the
    // API server (a ConfigMap holds at most 1 MiB).
    let mut heavy =
        String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: heavy\ndata:\n");
    let mut i = 0;
    while heavy.len() < 15 << 20 {
        heavy.push_str(&format!(
            "  k{i:07}: \"value number {i} of a very heavy ConfigMap\"\n"
        ));
        i += 1;
    }
    upstream.write("heavy/heavy.yaml", &heavy);
    upstream.commit("hostile");
    let (_daemon, url) = git_daemon(&upstream);
    // The normal GitSync's repository, on a server of its own.
    let normal_upstream = Upstream::new();
    for k in 0..3 {
        normal_upstream.write(
            &format!("app/c{k}.yaml"),
            &configmap_yaml(&format!("normal-{k}"), "ok"),
        );
    }
    let head = normal_upstream.commit("normal");
    let (_normal_daemon, normal_url) = git_daemon(&normal_upstream);
    let bystander_version = create_bystander(&ns).await?;
    let controller = Controller::start(&fc, &ns.name, dir.path())?;

    for path in ["bomb", "big", "heavy"] {
        create_gitsync(
            &ns,
            path,
            &url,
            serde_json::json!({"path": path, "interval": "1h"}),
        )
        .await?;
    }
    // The hostile syncs under way, then the normal one.
    wait_status(
        &ns,
        "heavy",
        "heavy under way (or done)",
        Duration::from_secs(60),
        |_, s| {
            condition(s, "Reconciling").is_some_and(|(st, _, _)| st == "True")
                || s.last_reconcile.is_some()
        },
    )
    .await?;
    let created = Instant::now();
    create_gitsync(
        &ns,
        "normal",
        &normal_url,
        serde_json::json!({"path": "app", "interval": "1h"}),
    )
    .await?;
    wait_ready_at(&ns, "normal", &head, Duration::from_secs(120)).await?;
    let normal_ready = created.elapsed();
    let gitsyncs: Api<headway_controller::GitSync> = ns.api();
    let heavy_then = gitsyncs.get("heavy").await?;
    let heavy_running = heavy_then
        .status
        .as_ref()
        .and_then(|s| condition(s, "Reconciling"))
        .is_some_and(|(st, _, _)| st == "True");
    println!(
        "normal GitSync Ready {normal_ready:.1?} after it was created; heavy still running then: {heavy_running} ({})",
        describe(heavy_then.status.as_ref())
    );

    // Every hostile sync ends in a clear failure naming its file (or, for the one the API
    // server refuses, its object); none is Ready.
    for (name, reason, file) in [
        ("bomb", Some("RenderFailed"), "bomb.yaml"),
        ("big", Some("RenderFailed"), "big.yaml"),
        ("heavy", None, "heavy"),
    ] {
        let failed = wait_status(
            &ns,
            name,
            &format!("{reason:?} naming {file}"),
            Duration::from_secs(300),
            |_, s| {
                condition(s, "Ready").is_some_and(|(st, r, m)| {
                    st == "False" && reason.is_none_or(|reason| r == reason) && m.contains(file)
                })
            },
        )
        .await?;
        println!("{name}: {}", describe(failed.status.as_ref()));
    }
    let peak = controller.peak_mib();
    let configmaps: Api<ConfigMap> = ns.api();
    let normal = names_of(
        &configmaps,
        &ListParams::default().labels("headway.dev/sync-name=normal"),
    )
    .await?;
    let hostile_applied: usize = {
        let mut count = 0;
        for name in ["bomb", "big", "heavy"] {
            count += configmaps.get_opt(name).await?.map_or(0, |_| 1);
        }
        count
    };
    let figures = Figures {
        scenario: "a normal GitSync created while three hostile ones render (alias bomb, 100 MiB document, 15 MiB document the API server refuses)",
        converge_after_fault: normal_ready,
        objects_lost: 3 - normal.len(),
        wrong_deletes: usize::from(!bystander_untouched(&ns, &bystander_version).await?),
        error_lines: controller.error_lines().len(),
    };
    figures.print();
    println!("controller peak resident memory: {peak:.0} MiB");
    assert_eq!(normal.len(), 3, "the normal GitSync's objects: {normal:?}");
    assert_eq!(
        hostile_applied, 0,
        "nothing of the hostile repositories reached the cluster"
    );
    assert_eq!(figures.wrong_deletes, 0);
    assert!(
        normal_ready < Duration::from_secs(30),
        "the normal GitSync waited {normal_ready:?} behind the hostile ones"
    );
    Ok(())
}
