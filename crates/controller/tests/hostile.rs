//! The controller keeps serving other GitSyncs while hostile repositories are being rendered:
//! a Helm chart whose template loops for ever (killed at the GitSync's `timeout`) and a
//! 100 MiB single document. A well-behaved GitSync created meanwhile becomes Ready, and a new
//! commit of it is applied, while the endless render is still running; the hostile ones end in
//! a render failure naming what failed, with nothing applied.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1`, `HEADWAY_GIT_TESTS=1` and `HEADWAY_TOOL_TESTS=1` (helm).

mod support;

use std::time::{Duration, Instant};

use headway_tests::git::{Upstream, git_daemon};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_syncs_are_served_while_hostile_repositories_render() -> anyhow::Result<()> {
    let test = "other_syncs_are_served_while_hostile_repositories_render";
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled(test) {
        return Ok(());
    }
    if std::env::var("HEADWAY_TOOL_TESTS").ok().as_deref() != Some("1") {
        eprintln!("skipping {test}: helm is needed (HEADWAY_TOOL_TESTS=1)");
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("hostile-serving").await?;
    let _janitor = Janitor::new(&cluster, &ns);

    // A chart whose template runs 10^10 empty iterations (hours), and a 100 MiB document.
    let hostile = Upstream::new();
    hostile.write(
        "endless/Chart.yaml",
        "apiVersion: v2\nname: endless\nversion: 1.0.0\n",
    );
    hostile.write(
        "endless/templates/loop.yaml",
        "{{- range until 100000 }}{{- range until 100000 }}{{- end }}{{- end }}\n",
    );
    hostile.write(
        "big/big.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  x: \"{}\"\n",
            "a".repeat(100 << 20)
        ),
    );
    hostile.commit("hostile");
    let (_hostile_daemon, hostile_url) = git_daemon(&hostile);

    let good = Upstream::new();
    good.write("config.yaml", &configmap_yaml("served", "one"));
    let first = good.commit("one");
    let (_good_daemon, good_url) = git_daemon(&good);

    let _controller = start_controller(&cluster, &ns.name, "hostile").await?;
    // Long enough that the well-behaved GitSync's two syncs fit in it on a loaded machine.
    let endless_timeout = Duration::from_secs(40);
    create_gitsync(
        &ns,
        "endless",
        &hostile_url,
        serde_json::json!({"path": "endless", "timeout": "40s", "interval": "1h"}),
    )
    .await?;
    create_gitsync(
        &ns,
        "big",
        &hostile_url,
        serde_json::json!({"path": "big", "interval": "1h"}),
    )
    .await?;
    wait_status(
        &ns,
        "endless",
        "rendering",
        Duration::from_secs(60),
        |_, s| condition(s, "Reconciling").is_some_and(|(_, _, m)| m.contains("rendering")),
    )
    .await?;
    let rendering_since = Instant::now();

    // Meanwhile a well-behaved GitSync is served: Ready, then a new commit applied.
    create_gitsync(
        &ns,
        "served",
        &good_url,
        serde_json::json!({"interval": "2s"}),
    )
    .await?;
    wait_ready_at(&ns, "served", &first, Duration::from_secs(30)).await?;
    good.write("config.yaml", &configmap_yaml("served", "two"));
    let second = good.commit("two");
    wait_ready_at(&ns, "served", &second, Duration::from_secs(30)).await?;
    let served_after = rendering_since.elapsed();
    assert_eq!(
        configmap_data(&cluster.client, &ns.name, "served")
            .await?
            .unwrap()["value"],
        "two"
    );
    println!(
        "the well-behaved GitSync was applied twice within {served_after:.1?} of the endless render's start"
    );
    assert!(
        served_after < endless_timeout,
        "served only after {served_after:?}: not while the endless render ran"
    );
    // The endless render was still running then.
    let api: Api<headway_controller::crd::GitSync> = ns.api();
    let endless = api.get("endless").await?;
    let status = endless.status.as_ref().expect("a status");
    assert!(
        condition(status, "Reconciling").is_some_and(|(_, _, m)| m.contains("rendering")),
        "the endless render is still running: {}",
        describe(Some(status))
    );

    // The hostile ones fail, naming what failed; nothing of theirs is applied.
    let big = wait_status(
        &ns,
        "big",
        "a render failure",
        Duration::from_secs(120),
        |_, s| condition(s, "Ready").is_some_and(|(st, r, _)| st == "False" && r == "RenderFailed"),
    )
    .await?;
    let (_, _, message) = condition(big.status.as_ref().unwrap(), "Ready").unwrap();
    assert!(message.contains("big.yaml"), "names the file: {message}");
    let endless = wait_status(
        &ns,
        "endless",
        "a render failure",
        endless_timeout + Duration::from_secs(60),
        |_, s| condition(s, "Ready").is_some_and(|(st, r, _)| st == "False" && r == "RenderFailed"),
    )
    .await?;
    let (_, _, message) = condition(endless.status.as_ref().unwrap(), "Ready").unwrap();
    assert!(
        message.contains("endless") && message.contains("timed out"),
        "names the chart and the timeout: {message}"
    );
    let configmaps: Api<ConfigMap> = ns.api();
    for sync in ["endless", "big"] {
        let applied = configmaps
            .list_metadata(&ListParams::default().labels(&format!("headway.dev/sync-name={sync}")))
            .await?
            .items
            .len();
        assert_eq!(applied, 0, "nothing of {sync} is applied");
    }
    Ok(())
}
