//! The web page in a real browser: Debian's headless Chromium (driven by chromedriver over
//! WebDriver) opens the page of a controller running in this process against the local cluster,
//! enters a ServiceAccount token, presses "Rebuild everything", sees per-stage progress and then
//! success with the time to recover. A screenshot is saved as
//! `target/browser/rebuild-everything.png`.
//!
//! Needs `HEADWAY_BROWSER_TESTS=1`, `HEADWAY_CLUSTER_TESTS=1`, `HEADWAY_GIT_TESTS=1`, and
//! `chromium` + `chromedriver` (Debian packages `chromium`, `chromium-driver`).

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use headway_api::{AppState, Config};
use headway_controller::progress::Bus;
use headway_controller::view::{Phase, SyncKey, Syncs, summarize};
use headway_tests::git::{Upstream, free_port, git_daemon};
use headway_tests::process::Guarded;
use headway_tests::wait_for;
use serde_json::json;
use support::create_sync;

fn enabled() -> bool {
    if std::env::var("HEADWAY_BROWSER_TESTS").is_ok_and(|v| v == "1") {
        true
    } else {
        eprintln!("skipping: set HEADWAY_BROWSER_TESTS=1 to run the browser test");
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_everything_from_the_page() {
    if !enabled() {
        return;
    }
    let Some(cluster) = headway_tests::cluster().await else {
        return;
    };
    if !headway_tests::git::enabled("rebuild_everything_from_the_page") {
        return;
    }
    let ns = support::namespace(&cluster, "api-browser", &[])
        .await
        .unwrap();

    // A repository of 200 ConfigMaps in the test namespace.
    let upstream = Upstream::new();
    for i in 0..200 {
        upstream.write(
            &format!("config/c{i}.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n  namespace: {}\ndata:\n  i: \"{i}\"\n", ns.name),
        );
    }
    upstream.commit("site");
    let (_daemon, url) = git_daemon(&upstream);

    // The controller and the API in this process, sharing the progress bus.
    let bus = Bus::new(4096);
    let cache = tempfile::tempdir().unwrap();
    let mut options = headway_controller::Options::new("browser-test", cache.path());
    options.namespace = Some(ns.name.clone());
    options.lease_namespace = ns.name.clone();
    options.lease_duration = Duration::from_secs(6);
    options.progress = Some(bus.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(headway_controller::run(
        cluster.client.clone(),
        options,
        async move {
            let _ = stopped.await;
        },
        None,
    ));
    let (syncs, reflector) = Syncs::start(cluster.client.clone(), Some(ns.name.clone()));
    let reflector = tokio::spawn(reflector);
    syncs.wait_ready().await;
    let state = AppState::new(
        cluster.client.clone(),
        syncs.clone(),
        bus,
        Config::default(),
    );
    let (address, listener) = headway_api::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let server = tokio::spawn(headway_api::serve(listener, state, std::future::pending()));

    create_sync(
        &ns,
        "site",
        json!({"repository": {"url": url}, "interval": "10m", "timeout": "120s"}),
    )
    .await
    .unwrap();
    let key = SyncKey::new(ns.name.clone(), "site");
    wait_for("the GitSync to be Ready", Duration::from_secs(120), || {
        let phase = syncs.get(&key).map(|s| summarize(&s).phase);
        async move {
            Ok(if phase == Some(Phase::Ready) {
                Ok(())
            } else {
                Err(format!("{phase:?}"))
            })
        }
    })
    .await
    .unwrap();

    // A ServiceAccount allowed to patch gitsyncs, and its token.
    let token = ns.service_account("operator").await.unwrap();
    ns.grant(
        "operator",
        "gitsync-patch",
        json!([{"apiGroups": ["headway.dev"], "resources": ["gitsyncs"], "verbs": ["patch"]}]),
    )
    .await
    .unwrap();

    // chromedriver and a headless Chromium with a fresh profile.
    let port = free_port();
    // A Guarded child: chromedriver and the Chromium it starts are killed together.
    let driver = Guarded::spawn(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("starting chromedriver (Debian package chromium-driver)");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": "/usr/bin/chromium", "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,900",
            format!("--user-data-dir={}", profile.path().display()),
        ]}),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(caps);
    let browser = wait_for(
        "chromedriver to start a session",
        Duration::from_secs(30),
        || {
            let builder = &builder;
            let webdriver = webdriver.clone();
            async move { Ok(builder.connect(&webdriver).await.map_err(|e| e.to_string())) }
        },
    )
    .await
    .unwrap();

    let page = format!("http://{address}/");
    browser.goto(&page).await.unwrap();
    let row = format!("#syncs tr[data-sync=\"{}/site\"]", ns.name);
    browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(&row))
        .await
        .unwrap();
    let live = browser.find(Locator::Css("#live")).await.unwrap();
    wait_for("the page's event stream", Duration::from_secs(20), || {
        let live = live.clone();
        async move {
            Ok(match live.text().await?.as_str() {
                "live" => Ok(()),
                other => Err(other.to_string()),
            })
        }
    })
    .await
    .unwrap();

    browser
        .find(Locator::Css("#rebuild-all"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let input = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#token"))
        .await
        .unwrap();
    input.send_keys(&token).await.unwrap();
    browser
        .find(Locator::Css("#confirm-ok"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let summary = browser
        .find(Locator::Css("#recovery-summary"))
        .await
        .unwrap();
    let text = wait_for(
        "the page to report the recovery",
        Duration::from_secs(120),
        || {
            let summary = summary.clone();
            async move {
                let text = summary.text().await?;
                Ok(
                    if text.starts_with("Recovered") || text.contains("failed") {
                        Ok(text)
                    } else {
                        Err(text)
                    },
                )
            }
        },
    )
    .await
    .unwrap();
    // The summary row follows: its "Last rebuild" cell shows the rebuild's result and stages.
    // (The table is re-rendered on every reload: find the cell afresh each time.)
    let cell = format!("{row} td:nth-child(7)");
    let last_rebuild = wait_for("the row's last rebuild", Duration::from_secs(30), || {
        let (browser, cell) = (&browser, &cell);
        async move {
            let text = match browser.find(Locator::Css(cell)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            Ok(if text.starts_with("Succeeded") {
                Ok(text)
            } else {
                Err(text)
            })
        }
    })
    .await
    .unwrap();
    assert!(last_rebuild.contains("fetch"), "{last_rebuild}");
    let shot = browser.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rebuild-everything.png"), shot).unwrap();

    assert!(
        text.starts_with("Recovered: 1 GitSync rebuilt, time to recover "),
        "{text}"
    );
    let log: Vec<String> = serde_json::from_value(
        browser
            .execute("return window.headwayLog", vec![])
            .await
            .unwrap(),
    )
    .unwrap();
    for needle in [
        "rebuild stageStarted fetch",
        "rebuild stageFinished fetch",
        "rebuild runFinished",
    ] {
        assert!(
            log.iter().any(|l| l.starts_with(needle)),
            "{needle} not seen by the page: {log:?}"
        );
    }
    assert!(
        log.iter().any(|l| l.starts_with("rebuild stageProgress")
            || l.starts_with("rebuild stageStarted apply")),
        "no apply progress seen by the page: {log:?}"
    );
    let state = browser
        .find(Locator::Css("#recovery-table tbody tr td.ok"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(state, "succeeded");

    browser.close().await.unwrap();
    drop(driver);
    server.abort();
    reflector.abort();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), controller).await;
}
