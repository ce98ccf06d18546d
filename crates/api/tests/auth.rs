//! The authenticated endpoints against the local cluster: no token, a wrong token and a
//! ServiceAccount without rights get 401/401/403 and request nothing; a ServiceAccount allowed
//! to `patch` gitsyncs gets 202 with the request ids, and the request annotations are set.
//! Also the read side: summaries from the cache, probes, metrics and the event stream.

mod support;

use std::time::Duration;

use headway_api::Config;
use headway_controller::crd::{ANNOTATION_REBUILD_REQUESTED, ANNOTATION_SYNC_REQUESTED};
use headway_controller::progress::{ProgressEvent, ProgressKind, RunKind, Stage};
use headway_controller::view::SyncKey;
use serde_json::json;
use support::{annotations, request, serve_cached};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn token_of(ns: &headway_tests::TestNamespace, sa: &str) -> String {
    ns.service_account(sa).await.unwrap()
}

#[tokio::test]
async fn requests_need_a_token_and_the_patch_right() {
    let Some(cluster) = headway_tests::cluster().await else {
        return;
    };
    let syncs = ["web", "db"].map(|name| {
        (
            name,
            json!({"repository": {"url": format!("https://git.example.com/team/{name}.git")}}),
        )
    });
    let ns = support::namespace(&cluster, "api-auth", &syncs)
        .await
        .unwrap();
    let server = serve_cached(&cluster.client, &ns, Config::default(), &["web", "db"])
        .await
        .unwrap();
    // The sync and the rebuild requests of `web` and `db`.
    let requested = async |key| annotations(&ns, key, &["web", "db"]).await.unwrap();

    let nobody = token_of(&ns, "nobody").await;
    let allowed = token_of(&ns, "operator").await;
    ns.grant(
        "operator",
        "gitsync-patch",
        json!([{"apiGroups": ["headway.dev"], "resources": ["gitsyncs"], "verbs": ["get", "list", "patch"]}]),
    )
    .await
    .unwrap();

    let sync_path = format!("/api/v1/syncs/{}/web/sync", ns.name);
    let all = br#"{"all":true}"#;
    let nobody_header = format!("Bearer {nobody}");
    for (what, headers, expected) in [
        ("no token", vec![], 401),
        ("not bearer", vec![("Authorization", "Basic YTpi")], 401),
        (
            "wrong token",
            vec![("Authorization", "Bearer not-a-token")],
            401,
        ),
        (
            "no right",
            vec![("Authorization", nobody_header.as_str())],
            403,
        ),
    ] {
        let answer = request(server.address, "POST", &sync_path, &headers, b"")
            .await
            .unwrap();
        assert_eq!(answer.status, expected, "{what}: sync: {answer:?}");
        assert!(answer.json()["error"].is_string(), "{answer:?}");
        let answer = request(server.address, "POST", "/api/v1/rebuild", &headers, all)
            .await
            .unwrap();
        assert_eq!(answer.status, expected, "{what}: rebuild: {answer:?}");
    }
    assert_eq!(requested(ANNOTATION_SYNC_REQUESTED).await, [None, None]);
    assert_eq!(requested(ANNOTATION_REBUILD_REQUESTED).await, [None, None]);

    let auth = format!("Bearer {allowed}");
    let headers = [("Authorization", auth.as_str())];
    let answer = request(server.address, "POST", &sync_path, &headers, b"")
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{answer:?}");
    let id = answer.json()["requests"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(requested(ANNOTATION_SYNC_REQUESTED).await, [Some(id), None]);

    let body = format!(r#"{{"syncs":["{}/db"]}}"#, ns.name);
    let answer = request(
        server.address,
        "POST",
        "/api/v1/rebuild",
        &headers,
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 202, "{answer:?}");
    let v = answer.json();
    assert_eq!(v["requests"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["requests"][0]["kind"], "rebuild");
    let id = v["requests"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        requested(ANNOTATION_REBUILD_REQUESTED).await,
        [None, Some(id)]
    );

    let answer = request(server.address, "POST", "/api/v1/rebuild", &headers, all)
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(
        answer.json()["requests"].as_array().unwrap().len(),
        2,
        "{answer:?}"
    );
    assert!(requested(ANNOTATION_REBUILD_REQUESTED).await[0].is_some());

    // Bad bodies and unknown names: nothing requested.
    for (body, status) in [
        (&b"{}"[..], 400),
        (b"{\"syncs\":[\"x\"]}", 400),
        (b"{\"syncs\":[\"none/such\"]}", 404),
        (b"not json", 400),
    ] {
        let answer = request(server.address, "POST", "/api/v1/rebuild", &headers, body)
            .await
            .unwrap();
        assert_eq!(
            answer.status,
            status,
            "{}: {answer:?}",
            String::from_utf8_lossy(body)
        );
    }
    let answer = request(
        server.address,
        "POST",
        &format!("/api/v1/syncs/{}/nope/sync", ns.name),
        &headers,
        b"",
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 404, "{answer:?}");
}

#[tokio::test]
async fn status_probes_metrics_and_events() {
    let Some(cluster) = headway_tests::cluster().await else {
        return;
    };
    let web = json!({"repository": {"url": "https://git.example.com/team/web.git", "ref": {"tag": "v1"}}});
    let ns = support::namespace(&cluster, "api-read", &[("web", web)])
        .await
        .unwrap();
    let server = serve_cached(&cluster.client, &ns, Config::default(), &["web"])
        .await
        .unwrap();

    let answer = request(server.address, "GET", "/api/v1/syncs", &[], b"")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let list = answer.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "web");
    assert_eq!(list[0]["reference"], "tag v1");
    let answer = request(
        server.address,
        "GET",
        &format!("/api/v1/syncs/{}/web", ns.name),
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(
        (answer.status, answer.json()["url"].as_str()),
        (200, Some("https://git.example.com/team/web.git"))
    );
    let answer = request(
        server.address,
        "GET",
        &format!("/api/v1/syncs/{}/none", ns.name),
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 404);

    for path in ["/healthz", "/readyz"] {
        let answer = request(server.address, "GET", path, &[], b"")
            .await
            .unwrap();
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "ok\n"),
            "{path}"
        );
    }
    let answer = request(server.address, "GET", "/", &[], b"").await.unwrap();
    assert!(
        answer.status == 200 && answer.body.contains("Rebuild everything"),
        "{answer:?}"
    );
    let answer = request(server.address, "GET", "/api/v1/openapi.json", &[], b"")
        .await
        .unwrap();
    assert_eq!(answer.json()["openapi"], "3.1.0");

    // The event stream: connect, then publish on the bus, and read the event.
    let mut stream = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    stream
        .write_all(
            format!(
                "GET /api/v1/events HTTP/1.0\r\nHost: {}\r\n\r\n",
                server.address
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let event = |kind| ProgressEvent {
        sync: SyncKey::new(ns.name.clone(), "web"),
        run: RunKind::Rebuild,
        run_id: "r1".into(),
        at: "2026-12-01T12:00:00.000Z".into(),
        kind,
    };
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !seen.contains("\"event\":\"runFinished\"") {
        // Publish until the subscriber is there (it subscribes when the request arrives).
        server.bus.publish(event(ProgressKind::StageFinished {
            stage: Stage::Fetch,
            detail: None,
            duration_seconds: 0.25,
            count: None,
            ok: true,
        }));
        server.bus.publish(event(ProgressKind::RunFinished {
            ok: true,
            reason: None,
            message: None,
            revision: Some("v1@sha1:0123".into()),
            duration_seconds: 1.5,
            fetch_seconds: Some(0.25),
        }));
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("events within 30s")
            .unwrap();
        assert!(n > 0, "stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("event: progress"), "{seen}");
    assert!(seen.contains("\"run\":\"rebuild\""), "{seen}");

    // Metrics: the bus-fed histograms and the cache-fed gauges. The metrics' own task reads the
    // bus: it may record the events a moment after the event stream sent them.
    let sync = format!("{}/web", ns.name);
    let needles = [
        format!(
            "headway_reconcile_duration_seconds_count{{sync=\"{sync}\",stage=\"total\",result=\"success\"}}"
        ),
        format!("headway_git_fetch_duration_seconds_count{{sync=\"{sync}\"}}"),
        format!("headway_rebuild_duration_seconds_count{{sync=\"{sync}\",result=\"success\"}}"),
        "# EOF".to_string(),
    ];
    headway_tests::wait_for("the metrics of the events", Duration::from_secs(30), || {
        let needles = &needles;
        let address = server.address;
        async move {
            let text = request(address, "GET", "/metrics", &[], b"").await?.body;
            let missing: Vec<&String> = needles.iter().filter(|n| !text.contains(*n)).collect();
            Ok(if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("{missing:?} not in\n{text}"))
            })
        }
    })
    .await
    .unwrap();
}
