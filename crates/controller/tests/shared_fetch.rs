//! GitSyncs of one repository share their fetches, and a sync request is never served a
//! revision resolved before it: against the local cluster and a local `git daemon` (whose log
//! counts the fetches). Needs `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1`.

mod support;

use std::time::Duration;

use headway_tests::git::{Upstream, git_daemon};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn syncs_of_one_repository_share_a_fetch_and_a_sync_request_fetches_afresh()
-> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    let test = "syncs_of_one_repository_share_a_fetch_and_a_sync_request_fetches_afresh";
    if !git_enabled(test) {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-shared-fetch").await?;
    let _janitor = Janitor::new(&cluster, &ns);

    let upstream = Upstream::new();
    let syncs = 8;
    for i in 0..syncs {
        upstream.write(
            &format!("p{i}/cm.yaml"),
            &configmap_yaml(&format!("shared-{i}"), "one"),
        );
    }
    let first = upstream.commit("first");
    let (daemon, url) = git_daemon(&upstream);
    // A window long enough for the whole test: only sync requests may fetch again.
    let cache = tempfile::tempdir()?;
    let mut options = options(&ns.name, "shared-fetch", cache.path());
    options.fetch_reuse = Duration::from_secs(600);
    let _controller = start_with(&cluster, options, cache).await?;
    for i in 0..syncs {
        create_gitsync(
            &ns,
            &format!("s{i}"),
            &url,
            serde_json::json!({"path": format!("p{i}"), "interval": "1h"}),
        )
        .await?;
    }
    for i in 0..syncs {
        wait_ready_at(&ns, &format!("s{i}"), &first, Duration::from_secs(90)).await?;
    }
    // Eight GitSyncs created together, four syncing at a time: one fetch.
    assert_eq!(daemon.upload_packs(), 1, "{}", daemon.log_text());

    // A push, then a sync request on one GitSync: it fetches afresh and applies the new
    // commit, although a fetch of the old one is well within the reuse window.
    for i in 0..syncs {
        upstream.write(
            &format!("p{i}/cm.yaml"),
            &configmap_yaml(&format!("shared-{i}"), "two"),
        );
    }
    let second = upstream.commit("second");
    headway_controller::Handle::new(cluster.client.clone())
        .sync_now(&ns.name, "s0")
        .await?;
    wait_ready_at(&ns, "s0", &second, Duration::from_secs(60)).await?;
    assert_eq!(
        configmap_data(&cluster.client, &ns.name, "shared-0")
            .await?
            .unwrap()["value"],
        "two"
    );
    assert_eq!(daemon.upload_packs(), 2, "{}", daemon.log_text());
    Ok(())
}
