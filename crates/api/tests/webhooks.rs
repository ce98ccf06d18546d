//! Webhooks against the local cluster: each provider's documented payload, signed by the test,
//! requests a sync of the matching GitSyncs only (https and ssh forms alike); bad, missing or
//! wrong-secret signatures get 401 and request nothing; an unknown repository gets 202 and
//! nothing; an oversize body is refused; a burst of 100 pushes makes at most 2 requests.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use headway_api::Config;
use headway_api::signature::sign;
use headway_controller::GitSync;
use headway_controller::crd::ANNOTATION_SYNC_REQUESTED;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use support::{annotations, request, serve_cached};

const SECRET: &str = "global-webhook-secret";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The headers a provider sends for `body` signed with `secret`.
fn signed(provider: &str, event: &str, secret: &str, body: &[u8]) -> Vec<(String, String)> {
    let sig = sign(secret.as_bytes(), body);
    let bare = sig.trim_start_matches("sha256=").to_string();
    let mut h: Vec<(&str, String)> = vec![("Content-Type", "application/json".into())];
    match provider {
        "github" => {
            h.push(("X-GitHub-Event", event.into()));
            h.push(("X-Hub-Signature-256", sig));
        }
        "gitlab" => {
            h.push(("X-Gitlab-Event", event.into()));
            h.push(("X-Gitlab-Token", secret.into()));
        }
        "gitea" => {
            h.push(("X-Gitea-Event", event.into()));
            h.push(("X-Gitea-Signature", bare));
        }
        "forgejo" => {
            h.push(("X-Forgejo-Event", event.into()));
            h.push(("X-Gitea-Signature", String::new()));
            h.push(("X-Forgejo-Signature", bare));
        }
        "bitbucket" | "bitbucket-server" => {
            h.push(("X-Event-Key", event.into()));
            h.push(("X-Hub-Signature", sig));
        }
        _ => h.push(("X-Signature", sig)),
    }
    h.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

async fn post(
    server: &support::Server,
    provider: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> support::Answer {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    request(
        server.address,
        "POST",
        &format!("/hooks/{provider}"),
        &h,
        body,
    )
    .await
    .unwrap()
}

/// Posts `body` as `provider` would, signed with `secret`.
async fn post_signed(
    server: &support::Server,
    provider: &str,
    event: &str,
    secret: &str,
    body: &[u8],
) -> support::Answer {
    post(
        server,
        provider,
        &signed(provider, event, secret, body),
        body,
    )
    .await
}

/// Names whose sync-request annotation is set.
async fn requested(ns: &headway_tests::TestNamespace, names: &[&str]) -> BTreeSet<String> {
    let values = annotations(ns, ANNOTATION_SYNC_REQUESTED, names)
        .await
        .unwrap();
    names
        .iter()
        .zip(values)
        .filter(|(_, v)| v.is_some())
        .map(|(n, _)| n.to_string())
        .collect()
}

/// The global webhook secret, [`SECRET`], and nothing else.
fn with_secret() -> Config {
    Config {
        webhook_secret: Some(SECRET.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// The namespace of `test` with one GitSync `app` of `https://git.example.com/team/app.git`,
/// and the API over it with `config`.
async fn one_app(
    cluster: &headway_tests::TestCluster,
    test: &str,
    config: Config,
) -> (headway_tests::TestNamespace, support::Server) {
    let app = json!({"repository": {"url": "https://git.example.com/team/app.git"}});
    let ns = support::namespace(cluster, test, &[("app", app)])
        .await
        .unwrap();
    let server = serve_cached(&cluster.client, &ns, config, &["app"])
        .await
        .unwrap();
    (ns, server)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn signed_pushes_request_syncs_of_the_matching_gitsyncs_only() {
    let Some(cluster) = headway_tests::cluster().await else {
        return;
    };
    let syncs = [
        // GitHub's example repository, followed by tag, in its ssh and https forms.
        (
            "hello-ssh",
            json!({"repository": {"url": "git@github.com:Codertocat/Hello-World.git", "ref": {"tag": "simple-tag"}}}),
        ),
        (
            "hello-https",
            json!({"repository": {"url": "https://github.com/codertocat/hello-world", "ref": {"tag": "simple-tag"}}}),
        ),
        (
            "hello-branch",
            json!({"repository": {"url": "https://github.com/Codertocat/Hello-World.git"}}),
        ),
        (
            "other",
            json!({"repository": {"url": "https://github.com/Codertocat/Other.git", "ref": {"tag": "simple-tag"}}}),
        ),
        (
            "diaspora",
            json!({"repository": {"url": "ssh://git@example.com/mike/diaspora.git", "ref": {"branch": "master"}}}),
        ),
        (
            "gitea",
            json!({"repository": {"url": "http://localhost:3000/gitea/webhooks.git", "ref": {"branch": "develop"}}}),
        ),
        (
            "bbs",
            json!({"repository": {"url": "ssh://git@bitbucketserver:7999/myproject/test-repo.git", "ref": {"branch": "master"}}}),
        ),
        (
            "bbc",
            json!({"repository": {"url": "https://bitbucket.org/team_name/repo_name.git", "ref": {"branch": "name-of-branch"}}}),
        ),
        (
            "own",
            json!({"repository": {"url": "https://git.example.com/own/repo.git"}, "webhook": {"secretRef": {"name": "own-hook"}}}),
        ),
    ];
    let ns = support::namespace(&cluster, "api-webhooks", &syncs)
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "own-hook"}, "stringData": {"token": "own-secret"},
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let names: Vec<&str> = syncs.iter().map(|(n, _)| *n).collect();
    let config = Config {
        // Longer than the test: a second push for a GitSync is deferred or coalesced however
        // slowly the machine runs through the pushes before it.
        coalesce_gap: Duration::from_secs(600),
        ..with_secret()
    };
    let server = serve_cached(&cluster.client, &ns, config, &names)
        .await
        .unwrap();

    // Refused: nothing requested.
    let github = fixture("github-push.json");
    let mut missing = signed("github", "push", SECRET, &github);
    missing.retain(|(k, _)| k != "X-Hub-Signature-256");
    let mut tampered = github.clone();
    tampered[0] = b' ';
    for (what, headers, body) in [
        ("missing signature", missing, github.clone()),
        (
            "wrong secret",
            signed("github", "push", "not-the-secret", &github),
            github.clone(),
        ),
        (
            "body changed after signing",
            signed("github", "push", SECRET, &github),
            tampered,
        ),
        (
            "gitlab wrong token",
            signed("gitlab", "Push Hook", "nope", &fixture("gitlab-push.json")),
            fixture("gitlab-push.json"),
        ),
    ] {
        let provider = if what.starts_with("gitlab") {
            "gitlab"
        } else {
            "github"
        };
        let answer = post(&server, provider, &headers, &body).await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("signature")
                || what.contains("gitlab"),
            "{answer:?}"
        );
    }
    assert_eq!(
        requested(&ns, &names).await,
        set(&[]),
        "nothing requested after refused deliveries"
    );

    // Ping: 200, nothing requested.
    let answer = post_signed(&server, "github", "ping", SECRET, b"{\"zen\":\"x\"}").await;
    assert_eq!(
        (answer.status, answer.json()["result"].as_str()),
        (200, Some("pong")),
        "{answer:?}"
    );

    // Unknown repository: 202 "no match", nothing requested.
    let body =
        br#"{"repository":"https://git.example.com/nobody/nothing.git","ref":"refs/heads/main"}"#;
    let answer = post_signed(&server, "generic", "", SECRET, body).await;
    assert_eq!(
        (answer.status, answer.json()["result"].as_str()),
        (202, Some("no match")),
        "{answer:?}"
    );
    // Signed with the global secret, but the GitSync of that repository has its own: no match.
    let body = br#"{"repository":"https://git.example.com/own/repo","ref":"refs/heads/main"}"#;
    let answer = post_signed(&server, "generic", "", SECRET, body).await;
    assert_eq!(
        (answer.status, answer.json()["result"].as_str()),
        (202, Some("no match")),
        "{answer:?}"
    );
    assert_eq!(requested(&ns, &names).await, set(&[]));

    // Each provider's documented push, signed: exactly the matching GitSyncs.
    let mut expected = BTreeSet::new();
    for (provider, event, file, secret, matches) in [
        (
            "github",
            "push",
            "github-push.json",
            SECRET,
            &["hello-ssh", "hello-https"][..],
        ),
        (
            "gitlab",
            "Push Hook",
            "gitlab-push.json",
            SECRET,
            &["diaspora"][..],
        ),
        ("gitea", "push", "gitea-push.json", SECRET, &["gitea"][..]),
        (
            "bitbucket-server",
            "repo:refs_changed",
            "bitbucket-server-refs-changed.json",
            SECRET,
            &["bbs"][..],
        ),
        (
            "bitbucket",
            "repo:push",
            "bitbucket-cloud-push.json",
            SECRET,
            &["bbc"][..],
        ),
    ] {
        let body = fixture(file);
        let answer = post_signed(&server, provider, event, secret, &body).await;
        assert_eq!(answer.status, 202, "{provider}: {answer:?}");
        let got: BTreeSet<String> = answer.json()["syncs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert_eq!(s["outcome"], "requested", "{provider}: {answer:?}");
                s["name"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(got, set(matches), "{provider}: {answer:?}");
        expected.extend(got);
        assert_eq!(requested(&ns, &names).await, expected, "after {provider}");
    }

    // GitHub's default content type: a form whose `payload` field is the JSON; the signature
    // is over the form body as sent. The hello GitSyncs were just requested, so this push is
    // deferred or coalesced, but it matches them.
    let json = fixture("github-push.json");
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&json).unwrap())
        .finish();
    let mut headers = signed("github", "push", SECRET, form.as_bytes());
    headers.retain(|(k, _)| k != "Content-Type");
    headers.push((
        "Content-Type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    let answer = post(&server, "github", &headers, form.as_bytes()).await;
    assert_eq!(answer.status, 202, "form-encoded: {answer:?}");
    let got: BTreeSet<String> = answer.json()["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, set(&["hello-ssh", "hello-https"]), "{answer:?}");

    // A per-GitSync secret: only deliveries signed with it.
    let body = br#"{"repository":"https://git.example.com/own/repo","ref":"refs/heads/main"}"#;
    let answer = post_signed(&server, "generic", "", "own-secret", body).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    expected.insert("own".into());
    assert_eq!(requested(&ns, &names).await, expected);

    // Forgejo's headers; the gitea GitSync was requested already, so the new push is deferred
    // or coalesced, never a second immediate request.
    let body = fixture("gitea-push.json");
    let answer = post_signed(&server, "forgejo", "push", SECRET, &body).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_ne!(
        answer.json()["syncs"][0]["outcome"],
        "requested",
        "{answer:?}"
    );

    // Under the limit, though larger than other endpoints accept: read.
    let mut padded = br#"{"repository":"https://git.example.com/nobody/nothing.git"}"#.to_vec();
    padded.extend(std::iter::repeat_n(b' ', 512 * 1024));
    let answer = post_signed(&server, "generic", "", SECRET, &padded).await;
    assert_eq!(
        (answer.status, answer.json()["result"].as_str()),
        (202, Some("no match")),
        "{answer:?}"
    );
    // Over the body limit: refused before anything else.
    let big = vec![b' '; headway_api::DEFAULT_BODY_LIMIT + 1];
    let answer = post_signed(&server, "github", "push", SECRET, &big).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(!expected.contains("other") && !expected.contains("hello-branch"));
    assert_eq!(requested(&ns, &names).await, expected);

    let metrics = request(server.address, "GET", "/metrics", &[], b"")
        .await
        .unwrap()
        .body;
    for needle in [
        "headway_webhook_requests_total{provider=\"github\",result=\"unauthorized\"} 3",
        "headway_webhook_requests_total{provider=\"github\",result=\"accepted\"} 2",
        "headway_webhook_requests_total{provider=\"generic\",result=\"no_match\"} 3",
        "headway_webhook_requests_total{provider=\"github\",result=\"too_large\"} 1",
        "headway_webhook_requests_total{provider=\"github\",result=\"ping\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
}

#[tokio::test]
async fn a_burst_of_100_pushes_within_a_second_makes_at_most_two_requests() {
    let Some(cluster) = headway_tests::cluster().await else {
        return;
    };
    let (ns, server) = one_app(&cluster, "api-webhook-burst", with_secret()).await;

    // Every value the request annotation takes, as seen by a watch.
    let api = ns.api::<GitSync>();
    let values = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::<String>::new()));
    let seen = values.clone();
    let watch = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(sync)) = stream.next().await {
            if let Some(v) = sync
                .metadata
                .annotations
                .and_then(|a| a.get(ANNOTATION_SYNC_REQUESTED).cloned())
            {
                seen.lock().unwrap().insert(v);
            }
        }
    });
    let body = br#"{"repository":"git@git.example.com:team/app.git","ref":"refs/heads/main"}"#;
    let headers = signed("generic", "", SECRET, body);
    let start = Instant::now();
    let mut pushes = Vec::new();
    for _ in 0..100 {
        let server = &server;
        let headers = &headers;
        pushes.push(async move { post(server, "generic", headers, body).await.status });
    }
    let statuses = futures::future::join_all(pushes).await;
    let burst = start.elapsed();
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    // Served from memory: fast even on a loaded machine (a generous bound, not a benchmark).
    assert!(burst < Duration::from_secs(10), "the burst took {burst:?}");
    headway_tests::wait_for(
        "the watch to see a request",
        Duration::from_secs(60),
        || {
            let values = values.lock().unwrap().clone();
            async move {
                Ok(if values.is_empty() {
                    Err("none".to_string())
                } else {
                    Ok(())
                })
            }
        },
    )
    .await
    .unwrap();
    // Long enough for a deferred request (1 s gap) to land and be watched.
    tokio::time::sleep(Duration::from_secs(3)).await;
    watch.abort();
    let values = values.lock().unwrap().clone();
    // At most two requests per 1 s gap: two when the burst fits in one gap (as it does unless the
    // machine is very loaded), one more for each further second it lasted.
    let allowed = 2 + burst.as_secs() as usize;
    assert!(
        values.len() <= allowed,
        "requests: {values:?} after a burst of {burst:?}"
    );
}

#[tokio::test]
async fn without_any_secret_every_delivery_is_refused() {
    let Some(cluster) = headway_tests::cluster().await else {
        return;
    };
    let (ns, server) = one_app(&cluster, "api-webhook-nosecret", Config::default()).await;
    let body = br#"{"repository":"https://git.example.com/team/app.git"}"#;
    for secret in ["", "anything"] {
        let answer = post_signed(&server, "generic", "", secret, body).await;
        assert_eq!(answer.status, 401, "{answer:?}");
        assert!(
            answer.body.contains("no webhook secret is configured"),
            "{answer:?}"
        );
    }
    assert_eq!(requested(&ns, &["app"]).await, set(&[]));
}
