//! End to end against the local cluster and a local `git daemon`: a GitSync's objects appear and
//! become Current, new commits are applied within one interval, deleted files are pruned, a
//! broken commit leaves the cluster as it was with Ready=False/RenderFailed naming the file, the
//! fix recovers, Events are published, and deleting the GitSync prunes its objects.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1` (`cargo xtask test` sets both).

mod support;

use std::time::Duration;

use headway_controller::crd::GitSync;
use headway_tests::git::{Upstream, git_daemon};
use headway_tests::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DeleteParams};
use support::*;

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_update_prune_broken_commit_and_delete() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("sync_update_prune_broken_commit_and_delete") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-e2e").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();

    let upstream = Upstream::new();
    upstream
        .write("app/config.yaml", &configmap_yaml("settings", "one"))
        .write("app/web.yaml", &deployment_yaml("web", None))
        .write("app/service.yaml", SERVICE);
    let first = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);

    let controller = start_controller(&cluster, &ns.name, "e2e-a").await?;
    create_gitsync(&ns, "site", &url, serde_json::json!({"path": "app"})).await?;

    // Objects appear and become Current; Ready with the commit SHA.
    let synced = wait_ready_at(&ns, "site", &first, Duration::from_secs(90)).await?;
    let status = synced.status.clone().unwrap();
    let objects = status.objects.clone().unwrap();
    assert_eq!((objects.total, objects.current), (3, 3), "{objects:?}");
    let record = status.last_reconcile.clone().unwrap();
    let stages: Vec<&str> = record.stages.iter().map(|s| s.name.as_str()).collect();
    assert!(stages.starts_with(&["fetch", "render"]), "{stages:?}");
    assert!(stages.contains(&"wait"), "{stages:?}");
    // Later interval syncs may have run already: their objects are unchanged.
    let touched: u32 = ["created", "configured", "unchanged"]
        .iter()
        .filter_map(|k| record.changes.get(*k))
        .sum();
    assert_eq!(touched, 3, "{record:?}");
    assert_eq!(
        configmap_data(&client, &ns.name, "settings")
            .await?
            .unwrap()["value"],
        "one"
    );
    let deployments: Api<Deployment> = ns.api();
    let web = deployments.get("web").await?;
    assert_eq!(
        web.status.and_then(|s| s.available_replicas),
        Some(1),
        "the Deployment is available (Current)"
    );
    assert_eq!(condition(&status, "Stalled").unwrap().0, "False");
    assert_eq!(condition(&status, "Drifted").unwrap().0, "False");

    // A new commit changing one object is applied within one interval (3 s + jitter).
    upstream.write("app/config.yaml", &configmap_yaml("settings", "two"));
    let second = upstream.commit("second");
    let pushed = std::time::SystemTime::now();
    let applied = wait_ready_at(&ns, "site", &second, Duration::from_secs(60)).await?;
    assert_eq!(
        configmap_data(&client, &ns.name, "settings")
            .await?
            .unwrap()["value"],
        "two"
    );
    // The sync that applied it started within one interval (3 s + 10% jitter) of the push:
    // either the sync running at push time missed the commit (then the next one, one interval
    // after it ended, took it) or the next one took it.
    // (Under heavy load the status read may already show a later, no-op sync: then only the
    // total below is checked.)
    let record = applied.status.unwrap().last_reconcile.unwrap();
    if record.changes.contains_key("configured") {
        let started = headway_controller::schedule::parse_time(&record.start).unwrap();
        let delay = started.duration_since(pushed).unwrap_or_default();
        assert!(
            delay <= Duration::from_millis(3300 + 3000),
            "the sync applying the commit started {delay:?} after the push; the interval is 3 s"
        );
    }
    let took = pushed.elapsed()?;
    assert!(
        took < Duration::from_secs(30),
        "applied {took:?} after the push"
    );

    // Deleting a file prunes its object.
    upstream.remove("app/service.yaml");
    let third = upstream.commit("third: no service");
    wait_ready_at(&ns, "site", &third, Duration::from_secs(60)).await?;
    let services: Api<Service> = ns.api();
    assert!(
        services.get_opt("web").await?.is_none(),
        "the Service was pruned"
    );
    let events = events_of(&client, &ns.name, "site").await?;
    assert!(
        events
            .iter()
            .any(|(_, _, note, _)| note.contains(&third) && note.contains("1 pruned")),
        "{events:?}"
    );

    // Invalid YAML: the cluster stays as it was; Ready=False, RenderFailed, the file named.
    upstream
        .write("app/config.yaml", &configmap_yaml("settings", "three"))
        .write(
            "app/broken.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [oops\n",
        );
    let broken = upstream.commit("broken");
    let failed = wait_status(
        &ns,
        "site",
        "RenderFailed",
        Duration::from_secs(60),
        |_, s| {
            s.last_attempted_revision.as_deref() == Some(&format!("main@sha1:{broken}"))
                && condition(s, "Ready")
                    .is_some_and(|(st, reason, _)| st == "False" && reason == "RenderFailed")
        },
    )
    .await?;
    let status = failed.status.unwrap();
    let (_, _, message) = condition(&status, "Ready").unwrap();
    assert!(message.contains("broken.yaml"), "{message}");
    assert_eq!(condition(&status, "Stalled").unwrap().0, "True");
    assert_eq!(
        status.last_applied_revision.as_deref(),
        Some(format!("main@sha1:{third}").as_str())
    );
    assert_eq!(
        configmap_data(&client, &ns.name, "settings")
            .await?
            .unwrap()["value"],
        "two",
        "nothing of the broken revision was applied"
    );
    assert!(
        deployments.get_opt("web").await?.is_some(),
        "nothing was pruned"
    );
    // It stays stalled on later intervals.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let api: Api<GitSync> = ns.api();
    let still = api.get("site").await?.status.unwrap();
    assert_eq!(condition(&still, "Ready").unwrap().1, "RenderFailed");

    // Fixing it recovers.
    upstream.remove("app/broken.yaml");
    let fixed = upstream.commit("fixed");
    wait_ready_at(&ns, "site", &fixed, Duration::from_secs(60)).await?;
    assert_eq!(
        configmap_data(&client, &ns.name, "settings")
            .await?
            .unwrap()["value"],
        "three"
    );

    // Events: one per reconcile (revision, counts, duration) and one per failure.
    let events = events_of(&client, &ns.name, "site").await?;
    let success = events
        .iter()
        .find(|(t, reason, note, _)| {
            t == "Normal" && reason == "ReconciliationSucceeded" && note.contains(&first)
        })
        .unwrap_or_else(|| panic!("no success event for {first}: {events:?}"));
    assert!(success.2.contains("3 created"), "{success:?}");
    assert!(success.2.contains(" in "), "{success:?}");
    assert_eq!(success.3, "e2e-a");
    assert!(
        events.iter().any(|(t, reason, note, _)| t == "Warning"
            && reason == "RenderFailed"
            && note.contains("broken.yaml")),
        "{events:?}"
    );

    // Deleting the GitSync prunes its objects (deletionPolicy Prune, the default).
    api.delete("site", &DeleteParams::default()).await?;
    wait_for(
        "the GitSync and its objects to be gone",
        Duration::from_secs(60),
        || {
            let (api, deployments) = (api.clone(), deployments.clone());
            let configmaps: Api<ConfigMap> = ns.api();
            async move {
                let left = (
                    api.get_opt("site").await?.is_some(),
                    deployments.get_opt("web").await?.is_some(),
                    configmaps.get_opt("settings").await?.is_some(),
                );
                Ok(if left == (false, false, false) {
                    Ok(())
                } else {
                    Err(format!("(gitsync, deployment, configmap) exist: {left:?}"))
                })
            }
        },
    )
    .await?;
    controller.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orphan_policy_dependencies_suspend_and_schema_validation() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("orphan_policy_dependencies_suspend_and_schema_validation") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-deps").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();

    // The schema refuses what it can.
    let err = create_gitsync(
        &ns,
        "bad-path",
        "git://127.0.0.1/x.git",
        serde_json::json!({"path": "a/../../etc"}),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("spec.path"), "{err:#}");
    let err = create_gitsync(
        &ns,
        "bad-ref",
        "git://127.0.0.1/x.git",
        serde_json::json!({"repository": {"url": "git://127.0.0.1/x.git", "ref": {"branch": "a", "tag": "b"}}}),
    )
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("set at most one of branch, tag and commit"),
        "{err:#}"
    );
    let err = create_gitsync(
        &ns,
        "bad-interval",
        "git://127.0.0.1/x.git",
        serde_json::json!({"interval": "soon"}),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("spec.interval"), "{err:#}");

    let upstream = Upstream::new();
    upstream
        .write("base/a.yaml", &configmap_yaml("base-config", "1"))
        .write("app/b.yaml", &configmap_yaml("app-config", "1"));
    let head = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);
    let controller = start_controller(&cluster, &ns.name, "deps-a").await?;

    // `app` depends on `base`, which does not exist yet.
    create_gitsync(&ns, "app", &url, serde_json::json!({"path": "app", "dependsOn": [{"name": "base"}], "deletionPolicy": "Orphan"})).await?;
    let waiting = wait_status(
        &ns,
        "app",
        "DependencyNotReady",
        Duration::from_secs(30),
        |_, s| {
            condition(s, "Ready")
                .is_some_and(|(st, reason, _)| st == "False" && reason == "DependencyNotReady")
        },
    )
    .await?;
    let (_, _, message) = condition(waiting.status.as_ref().unwrap(), "Ready").unwrap();
    assert!(
        message.contains(&format!("GitSync {}/base not found", ns.name)),
        "{message}"
    );
    assert!(
        configmap_data(&client, &ns.name, "app-config")
            .await?
            .is_none()
    );
    create_gitsync(&ns, "base", &url, serde_json::json!({"path": "base"})).await?;
    wait_ready_at(&ns, "base", &head, Duration::from_secs(60)).await?;
    wait_ready_at(&ns, "app", &head, Duration::from_secs(60)).await?;
    assert!(
        configmap_data(&client, &ns.name, "app-config")
            .await?
            .is_some()
    );

    // Suspended: new commits are not applied.
    let api: Api<GitSync> = ns.api();
    api.patch(
        "app",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"suspend": true}})),
    )
    .await?;
    wait_status(&ns, "app", "Suspended", Duration::from_secs(30), |_, s| {
        condition(s, "Reconciling").is_some_and(|(_, reason, _)| reason == "Suspended")
    })
    .await?;
    upstream.write("app/b.yaml", &configmap_yaml("app-config", "2"));
    upstream.commit("second");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        configmap_data(&client, &ns.name, "app-config")
            .await?
            .unwrap()["value"],
        "1"
    );
    api.patch(
        "app",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"suspend": false}})),
    )
    .await?;
    wait_for(
        "the resumed sync to apply value 2",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            let ns = ns.name.clone();
            async move {
                let v = configmap_data(&client, &ns, "app-config")
                    .await?
                    .and_then(|d| d.get("value").cloned());
                Ok(if v.as_deref() == Some("2") {
                    Ok(())
                } else {
                    Err(format!("{v:?}"))
                })
            }
        },
    )
    .await?;

    // deletionPolicy Orphan leaves the objects (and drops the inventory).
    api.delete("app", &DeleteParams::default()).await?;
    wait_for("GitSync app to be gone", Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            Ok(if api.get_opt("app").await?.is_none() {
                Ok(())
            } else {
                Err("still there".into())
            })
        }
    })
    .await?;
    assert!(
        configmap_data(&client, &ns.name, "app-config")
            .await?
            .is_some(),
        "orphaned, not pruned"
    );
    assert!(
        configmap_data(&client, &ns.name, "headway-inventory-app")
            .await?
            .is_none(),
        "inventory dropped"
    );
    controller.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_is_reported_without_self_heal_and_corrected_with_it() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("drift_is_reported_without_self_heal_and_corrected_with_it") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-drift").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();

    let upstream = Upstream::new();
    upstream.write("config.yaml", &configmap_yaml("settings", "git"));
    let head = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);
    let controller = start_controller(&cluster, &ns.name, "drift-a").await?;
    create_gitsync(&ns, "site", &url, serde_json::json!({"selfHeal": false})).await?;
    wait_ready_at(&ns, "site", &head, Duration::from_secs(60)).await?;

    // Every reconcile is recorded: the no-op syncs of a revision form one Event series.
    wait_for(
        "a NoChange Event series of 2",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let ns = ns.name.clone();
            async move {
                let n = event_count(&client, &ns, "site", "NoChange").await?;
                Ok(if n.is_some_and(|n| n >= 2) {
                    Ok(())
                } else {
                    Err(format!("{n:?}"))
                })
            }
        },
    )
    .await?;

    // Someone edits the object by hand.
    let configmaps: Api<ConfigMap> = ns.api();
    configmaps
        .patch(
            "settings",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"data": {"value": "by-hand"}})),
        )
        .await?;
    let drifted = wait_status(
        &ns,
        "site",
        "Drifted=True",
        Duration::from_secs(30),
        |_, s| condition(s, "Drifted").is_some_and(|(st, _, _)| st == "True"),
    )
    .await?;
    let drift = drifted.status.as_ref().unwrap().drift.clone().unwrap();
    assert_eq!(drift.drifted, 1, "{drift:?}");
    assert!(drift.objects[0].contains("settings"), "{drift:?}");
    assert!(drift.objects[0].contains("data.value"), "{drift:?}");
    // The field paths, per object (never values).
    assert_eq!(drift.details.len(), 1, "{drift:?}");
    assert!(drift.details[0].object.ends_with("/settings"), "{drift:?}");
    assert_eq!(drift.details[0].fields, ["data.value"], "{drift:?}");
    let summary = headway_controller::summarize(&drifted);
    assert_eq!(summary.drifted, 1);
    assert_eq!(summary.drift[0].fields, ["data.value"]);
    assert_eq!(
        condition(drifted.status.as_ref().unwrap(), "Ready")
            .unwrap()
            .0,
        "True",
        "drift is reported, not a failure"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        configmap_data(&client, &ns.name, "settings")
            .await?
            .unwrap()["value"],
        "by-hand",
        "without self-heal the change stays"
    );

    // With self-heal, the next sync puts git's value back.
    let api: Api<GitSync> = ns.api();
    api.patch(
        "site",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"selfHeal": true}})),
    )
    .await?;
    wait_for("git's value to be back", Duration::from_secs(30), || {
        let client = client.clone();
        let ns = ns.name.clone();
        async move {
            let v = configmap_data(&client, &ns, "settings")
                .await?
                .and_then(|d| d.get("value").cloned());
            Ok(if v.as_deref() == Some("git") {
                Ok(())
            } else {
                Err(format!("{v:?}"))
            })
        }
    })
    .await?;
    wait_status(
        &ns,
        "site",
        "Drifted=False",
        Duration::from_secs(30),
        |_, s| {
            condition(s, "Drifted").is_some_and(|(st, _, _)| st == "False")
                && s.drift.as_ref().is_some_and(|d| d.drifted == 0)
        },
    )
    .await?;
    controller.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_failures_back_off_and_recover() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("fetch_failures_back_off_and_recover") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-fetch").await?;
    let _janitor = Janitor::new(&cluster, &ns);

    let upstream = Upstream::new();
    upstream.write("config.yaml", &configmap_yaml("settings", "one"));
    let head = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);
    // A repository the server does not have (yet).
    let missing = url.replace("/repo.git", "/later.git");
    let controller = start_controller(&cluster, &ns.name, "fetch-a").await?;
    create_gitsync(&ns, "site", &missing, serde_json::json!({"interval": "1h"})).await?;
    let failing = wait_status(
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
    let status = failing.status.unwrap();
    let (_, _, message) = condition(&status, "Ready").unwrap();
    assert!(message.contains("later.git"), "{message}");
    assert_eq!(
        condition(&status, "Reconciling").unwrap(),
        (
            "True".to_string(),
            "Retrying".to_string(),
            "retrying with backoff".to_string()
        )
    );
    assert_eq!(condition(&status, "Stalled").unwrap().0, "False");

    // The repository appears; a retry (2 s, 4 s, 8 s, ... after the failures), not the 1 h
    // interval, picks it up.
    headway_tests::git::git(
        &upstream.srv,
        &[
            "clone",
            "-q",
            "--bare",
            upstream.bare.to_str().unwrap(),
            "later.git",
        ],
    );
    wait_ready_at(&ns, "site", &head, Duration::from_secs(60)).await?;
    let events = events_of(&cluster.client, &ns.name, "site").await?;
    assert!(
        events
            .iter()
            .any(|(t, reason, _, _)| t == "Warning" && reason == "FetchFailed"),
        "{events:?}"
    );
    controller.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mass_deletion_stalls_until_the_threshold_is_raised() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("a_mass_deletion_stalls_until_the_threshold_is_raised") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-mass").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();

    let upstream = Upstream::new();
    for i in 0..10 {
        upstream.write(
            &format!("c{i}.yaml"),
            &configmap_yaml(&format!("c{i}"), "x"),
        );
    }
    let head = upstream.commit("ten");
    let (_daemon, url) = git_daemon(&upstream);
    let controller = start_controller(&cluster, &ns.name, "mass-a").await?;
    create_gitsync(&ns, "site", &url, serde_json::json!({})).await?;
    wait_ready_at(&ns, "site", &head, Duration::from_secs(60)).await?;

    // 8 of 10 objects leave git: more than the default 50%, more than 5 objects.
    for i in 2..10 {
        upstream.remove(&format!("c{i}.yaml"));
    }
    let two = upstream.commit("two left");
    let refused = wait_status(
        &ns,
        "site",
        "PruneFailed",
        Duration::from_secs(60),
        |_, s| {
            condition(s, "Ready")
                .is_some_and(|(st, reason, _)| st == "False" && reason == "PruneFailed")
        },
    )
    .await?;
    let status = refused.status.unwrap();
    assert!(
        condition(&status, "Ready")
            .unwrap()
            .2
            .contains("refusing to prune 8 of 10"),
        "{}",
        describe(Some(&status))
    );
    assert_eq!(condition(&status, "Stalled").unwrap().0, "True");
    for i in 0..10 {
        assert!(
            configmap_data(&client, &ns.name, &format!("c{i}"))
                .await?
                .is_some(),
            "c{i} kept"
        );
    }

    // Raising the threshold (a spec change) lets the prune through.
    let api: Api<GitSync> = ns.api();
    api.patch(
        "site",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"maxPrunePercent": 100}})),
    )
    .await?;
    wait_ready_at(&ns, "site", &two, Duration::from_secs(60)).await?;
    for i in 0..10 {
        assert_eq!(
            configmap_data(&client, &ns.name, &format!("c{i}"))
                .await?
                .is_some(),
            i < 2,
            "c{i}"
        );
    }
    controller.stop().await
}
