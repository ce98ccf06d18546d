//! Progress and the read model against the local cluster and a local `git daemon`: a sync
//! publishes RunStarted, StageStarted/StageFinished for fetch, render, apply, prune and wait, and
//! RunFinished on the bus; the `Syncs` cache lists the GitSync with its revision once Ready; a
//! rebuild asked for twice is one rebuild, and it is reported as such.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1` (`cargo xtask test` sets both).

mod support;

use std::time::Duration;

use headway_controller::progress::{ProgressEvent, ProgressKind, RunKind, Stage};
use headway_controller::view::{Phase, RequestKind, RequestState, SyncKey, Syncs};
use headway_controller::{Bus, Handle, request_state, summarize};
use headway_tests::git::{Upstream, git_daemon};
use headway_tests::wait_for;
use kube::Client;
use support::*;
use tokio::sync::broadcast;

/// Receives events of `key` until a RunFinished of a run of `kind`; returns that run's events.
async fn one_run(
    rx: &mut broadcast::Receiver<ProgressEvent>,
    key: &SyncKey,
    kind: RunKind,
) -> anyhow::Result<Vec<ProgressEvent>> {
    let mut seen: Vec<ProgressEvent> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let e = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no RunFinished of a {kind:?} run of {key} within 120 s; seen: {:#?}",
                    seen.iter().map(|e| &e.kind).collect::<Vec<_>>()
                )
            })??;
        if &e.sync != key || e.run != kind {
            continue;
        }
        let done = matches!(e.kind, ProgressKind::RunFinished { .. });
        seen.push(e);
        if done {
            let run_id = seen.last().unwrap().run_id.clone();
            return Ok(seen.into_iter().filter(|e| e.run_id == run_id).collect());
        }
    }
}

/// `started fetch`, `finished apply apply workloads`, ... for the stage events of a run.
fn stage_lines(events: &[ProgressEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            ProgressKind::StageStarted { stage, detail, .. } => Some(format!(
                "started {stage}{}",
                detail.as_ref().map(|d| format!(" {d}")).unwrap_or_default()
            )),
            ProgressKind::StageFinished {
                stage, detail, ok, ..
            } => Some(format!(
                "finished {stage}{}{}",
                detail.as_ref().map(|d| format!(" {d}")).unwrap_or_default(),
                if *ok { "" } else { " (failed)" }
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_publishes_its_stages_and_the_cache_shows_the_result() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("a_sync_publishes_its_stages_and_the_cache_shows_the_result") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-progress").await?;
    let _janitor = Janitor::new(&cluster, &ns);

    let upstream = Upstream::new();
    upstream
        .write("config.yaml", &configmap_yaml("settings", "one"))
        .write("web.yaml", &deployment_yaml("web", None));
    let head = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);
    let revision = format!("main@sha1:{head}");

    let bus = Bus::new(4096);
    let mut rx = bus.subscribe();
    let cache = tempfile::tempdir()?;
    let mut options = options(&ns.name, "progress-a", cache.path());
    options.progress = Some(bus.clone());
    let controller = start_with(&cluster, options, cache).await?;

    let client = Client::try_from(cluster.config.clone())?;
    let (syncs, drive) = Syncs::start(client.clone(), Some(ns.name.clone()));
    let reflector = tokio::spawn(drive);
    assert!(
        syncs.wait_ready_for(Duration::from_secs(30)).await,
        "the GitSync cache received its first list"
    );

    // A long interval: the runs seen are the first sync and the rebuild asked for below.
    create_gitsync(&ns, "site", &url, serde_json::json!({"interval": "1h"})).await?;
    let key = SyncKey::new(&ns.name, "site");
    let run = one_run(&mut rx, &key, RunKind::Sync).await?;

    assert!(
        matches!(run[0].kind, ProgressKind::RunStarted { .. }),
        "{run:#?}"
    );
    let lines = stage_lines(&run);
    assert_eq!(
        lines,
        [
            "started fetch",
            "finished fetch",
            "started render",
            "finished render",
            "started apply apply workloads",
            "finished apply apply workloads",
            "started prune",
            "finished prune",
            "started wait",
            "finished wait",
        ],
        "{run:#?}"
    );
    let finished = &run.last().unwrap().kind;
    match finished {
        ProgressKind::RunFinished {
            ok,
            revision: r,
            duration_seconds,
            fetch_seconds,
            ..
        } => {
            assert!(*ok, "{finished:?}");
            assert_eq!(r.as_deref(), Some(revision.as_str()));
            assert!(*duration_seconds > 0.0);
            assert!(fetch_seconds.is_some_and(|f| f <= *duration_seconds));
        }
        other => panic!("not RunFinished: {other:?}"),
    }
    // Counts: two objects rendered, applied and Current.
    let render_count = run.iter().find_map(|e| match &e.kind {
        ProgressKind::StageFinished {
            stage: Stage::Render,
            count,
            ..
        } => *count,
        _ => None,
    });
    assert_eq!(render_count, Some(2), "{run:#?}");
    let wait_count = run.iter().find_map(|e| match &e.kind {
        ProgressKind::StageFinished {
            stage: Stage::Wait,
            count,
            ..
        } => *count,
        _ => None,
    });
    assert_eq!(wait_count, Some(2), "{run:#?}");
    assert!(
        run.iter().any(|e| matches!(
            e.kind,
            ProgressKind::StageProgress {
                stage: Stage::Apply,
                done: 2,
                total: 2
            }
        )),
        "{run:#?}"
    );

    // The cache lists the GitSync with its revision once Ready.
    wait_ready_at(&ns, "site", &head, Duration::from_secs(60)).await?;
    let cached = wait_for(
        "the cache to show the GitSync Ready at its revision",
        Duration::from_secs(30),
        || {
            let syncs = syncs.clone();
            let key = key.clone();
            let revision = revision.clone();
            async move {
                let listed: Vec<SyncKey> = syncs.list().iter().map(|s| SyncKey::of(s)).collect();
                let Some(sync) = syncs.get(&key) else {
                    return Ok(Err(format!("not cached; listed: {listed:?}")));
                };
                let summary = summarize(&sync);
                Ok(
                    if listed == [key.clone()]
                        && summary.phase == Phase::Ready
                        && summary.revision.as_deref() == Some(revision.as_str())
                    {
                        Ok(summary)
                    } else {
                        Err(format!("{listed:?}: {summary:?}"))
                    },
                )
            }
        },
    )
    .await?;
    assert_eq!(cached.objects.total, 2);
    assert_eq!(cached.objects.current, 2);
    assert!(cached.unhealthy.is_empty(), "{cached:?}");
    assert_eq!(cached.url, url);
    assert_eq!(cached.reference, "branch main");
    let last = cached.last_reconcile.clone().unwrap();
    assert_eq!(last.stages[0].name, "fetch");

    // A rebuild asked for twice is one rebuild: the second request joins the first.
    let handle = Handle::new(client.clone());
    let first = handle.rebuild(&ns.name, "site").await?;
    let second = handle.rebuild(&ns.name, "site").await?;
    assert_eq!(first, second, "the second rebuild request joined the first");
    let rebuild = one_run(&mut rx, &key, RunKind::Rebuild).await?;
    assert!(
        matches!(
            rebuild.last().unwrap().kind,
            ProgressKind::RunFinished { ok: true, .. }
        ),
        "{rebuild:#?}"
    );
    wait_for(
        "the rebuild request to be done",
        Duration::from_secs(30),
        || {
            let syncs = syncs.clone();
            let key = key.clone();
            let first = first.clone();
            async move {
                let state = syncs
                    .get(&key)
                    .map(|s| request_state(&s, RequestKind::Rebuild, &first));
                Ok(if state == Some(RequestState::Done { ok: true }) {
                    Ok(())
                } else {
                    Err(format!("{state:?}"))
                })
            }
        },
    )
    .await?;
    let summary = summarize(&syncs.get(&key).unwrap());
    assert!(summary.last_rebuild.is_some(), "{summary:?}");
    // Only one rebuild ran: no second rebuild run starts for the joined request.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
        .filter(|e| e.sync == key && e.run == RunKind::Rebuild)
        .collect();
    assert!(again.is_empty(), "a second rebuild ran: {again:#?}");

    reflector.abort();
    controller.stop().await?;
    Ok(())
}

/// A claim that never binds (no such StorageClass): it stays InProgress.
const PENDING_CLAIM: &str = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  storageClassName: headway-test-none\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Mi\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciling_names_the_stage_and_status_lists_unhealthy_objects() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("reconciling_names_the_stage_and_status_lists_unhealthy_objects") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-stage").await?;
    let _janitor = Janitor::new(&cluster, &ns);

    let upstream = Upstream::new();
    upstream
        .write("config.yaml", &configmap_yaml("settings", "one"))
        .write("claim.yaml", PENDING_CLAIM);
    upstream.commit("a claim that never binds");
    let (_daemon, url) = git_daemon(&upstream);
    let controller = start_controller(&cluster, &ns.name, "stage-a").await?;
    // The wait lasts the timeout (6 s): long enough for the stage to be written (after 1 s).
    create_gitsync(
        &ns,
        "site",
        &url,
        serde_json::json!({"interval": "1h", "timeout": "6s"}),
    )
    .await?;
    wait_status(
        &ns,
        "site",
        "Reconciling=True naming the wait stage",
        Duration::from_secs(60),
        |_, s| {
            condition(s, "Reconciling").is_some_and(|(st, reason, message)| {
                st == "True" && reason == "Progressing" && message == "waiting for 1 object"
            })
        },
    )
    .await?;
    let failed = wait_status(
        &ns,
        "site",
        "Ready=False/HealthCheckFailed",
        Duration::from_secs(60),
        |_, s| condition(s, "Ready").is_some_and(|(_, reason, _)| reason == "HealthCheckFailed"),
    )
    .await?;
    let status = failed.status.clone().unwrap();
    assert_eq!(status.unhealthy.len(), 1, "{:?}", status.unhealthy);
    let claim = &status.unhealthy[0];
    assert_eq!(
        (
            claim.kind.as_str(),
            claim.namespace.as_deref(),
            claim.name.as_str(),
            claim.health.as_str()
        ),
        (
            "PersistentVolumeClaim",
            Some(ns.name.as_str()),
            "data",
            "InProgress"
        ),
        "{claim:?}"
    );
    let objects = status.objects.clone().unwrap();
    assert_eq!(
        (objects.total, objects.current, objects.in_progress),
        (2, 1, 1)
    );
    let summary = summarize(&failed);
    assert_eq!(summary.phase, Phase::Failed);
    assert_eq!(summary.unhealthy[0].name, "data");
    assert_eq!(summary.reason.as_deref(), Some("HealthCheckFailed"));
    controller.stop().await?;
    Ok(())
}
