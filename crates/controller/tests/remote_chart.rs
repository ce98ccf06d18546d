//! GitSyncs of remote charts against the local cluster: a chart from an HTTP repository (basic
//! auth from a Secret) and from an OCI registry (`crane registry serve`), with values from the git
//! path and inline, reach Ready at `main@sha1:<commit>+chart:<name>@<version>`; the chart version
//! pinned in git (a parent GitSync applies the child GitSync from git) is upgraded by a commit; a
//! tampered archive, an unknown version and an unreachable repository each fail the fetch,
//! clearly, and change nothing in the cluster.
//!
//! Needs `helm` and `crane` on `PATH` (`cargo xtask cluster build`, `eval "$(cargo xtask cluster
//! env)"`), `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1`.

mod support;

use std::time::Duration;

use headway_controller::crd::GitSync;
use headway_tests::charts::{ChartRepository, Registry, package_chart};
use headway_tests::git::{Upstream, git_daemon};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

/// Waits until the GitSync is Ready at exactly `revision`.
async fn wait_ready_revision(
    ns: &headway_tests::TestNamespace,
    name: &str,
    revision: &str,
) -> anyhow::Result<GitSync> {
    wait_status(
        ns,
        name,
        &format!("Ready at {revision}"),
        Duration::from_secs(120),
        |obj, s| {
            s.observed_generation == obj.metadata.generation
                && s.last_applied_revision.as_deref() == Some(revision)
                && condition(s, "Ready").is_some_and(|(st, _, _)| st == "True")
        },
    )
    .await
}

/// Waits until the GitSync's fetch failed with a message containing `part`; returns the message.
async fn wait_fetch_failed(
    ns: &headway_tests::TestNamespace,
    name: &str,
    part: &str,
) -> anyhow::Result<String> {
    let obj = wait_status(
        ns,
        name,
        &format!("FetchFailed with {part:?}"),
        Duration::from_secs(60),
        |obj, s| {
            s.observed_generation == obj.metadata.generation
                && condition(s, "Ready").is_some_and(|(st, r, m)| {
                    st == "False" && r == "FetchFailed" && m.contains(part)
                })
        },
    )
    .await?;
    Ok(condition(obj.status.as_ref().unwrap(), "Ready").unwrap().2)
}

fn child_gitsync(name: &str, ns: &str, url: &str, chart: serde_json::Value) -> String {
    serde_json::to_string(&json!({
        "apiVersion": "headway.dev/v1alpha1",
        "kind": "GitSync",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "repository": {"url": url},
            "path": "values/web",
            "interval": "3s",
            "timeout": "60s",
            "render": {"helm": {"chart": chart, "values": {"replicas": 1}}},
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_chart_pinned_in_git_is_synced_upgraded_and_verified() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("http_chart_pinned_in_git_is_synced_upgraded_and_verified") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-remote-chart").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();

    // A chart repository with basic auth, holding web 1.0.0 and 1.1.0.
    let charts = ChartRepository::serve("web", &["1.0.0", "1.1.0"], Some(("reader", "s3cret")));
    let server = &charts.server;
    let secrets: Api<Secret> = ns.api();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "charts"},
                "stringData": {"username": "reader", "password": "s3cret"},
            }))?,
        )
        .await?;

    // Git holds the values and the child GitSync that pins the chart version; a parent GitSync
    // applies the child (app of apps).
    let upstream = Upstream::new();
    let (_daemon, url) = git_daemon(&upstream);
    let chart = |version: &str| {
        json!({"repository": server.url, "name": "web", "version": version,
               "secretRef": {"name": "charts"}})
    };
    upstream
        .write("values/web/values.yaml", "greeting: from-git\n")
        .write(
            "apps/web.yaml",
            &child_gitsync("web", &ns.name, &url, chart("1.0.0")),
        );
    let first = upstream.commit("web 1.0.0");

    let controller = start_controller(&cluster, &ns.name, "remote-chart").await?;
    create_gitsync(&ns, "apps", &url, json!({"path": "apps", "wait": false})).await?;
    let synced =
        wait_ready_revision(&ns, "web", &format!("main@sha1:{first}+chart:web@1.0.0")).await?;
    let server_version = client.apiserver_version().await?.git_version;
    let data = configmap_data(&client, &ns.name, "web-settings")
        .await?
        .unwrap();
    assert_eq!(data["chartVersion"], "1.0.0");
    assert_eq!(data["greeting"], "from-git", "values from the git path");
    assert_eq!(
        data["kube"], server_version,
        "rendered with the cluster's version"
    );
    let objects = synced.status.unwrap().objects.unwrap();
    assert_eq!((objects.total, objects.current), (2, 2), "{objects:?}");
    assert_eq!(
        server.hits("/web-1.0.0.tgz"),
        1,
        "cached by digest after the first fetch"
    );

    // Bumping the version in git upgrades the release: a new revision.
    upstream.write(
        "apps/web.yaml",
        &child_gitsync("web", &ns.name, &url, chart(">=1.1.0 <2.0.0")),
    );
    let second = upstream.commit("web 1.1.x");
    wait_ready_revision(&ns, "web", &format!("main@sha1:{second}+chart:web@1.1.0")).await?;
    let data = configmap_data(&client, &ns.name, "web-settings")
        .await?
        .unwrap();
    assert_eq!(data["chartVersion"], "1.1.0");
    let deployments: Api<Deployment> = ns.api();
    let image = deployments
        .get("web-web")
        .await?
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap();
    assert_eq!(image, "example.com/web:1.1.0");

    // Failures, on a GitSync of its own (not managed by the parent): each fails the fetch and
    // changes nothing in the cluster.
    let direct = "direct";
    create_gitsync(
        &ns,
        direct,
        &url,
        json!({"path": "values/web", "render": {"helm": {"chart": chart("1.0.0")}}}),
    )
    .await?;
    let applied = wait_status(&ns, direct, "Ready", Duration::from_secs(90), |obj, s| {
        s.observed_generation == obj.metadata.generation
            && s.last_applied_revision
                .as_deref()
                .is_some_and(|r| r.ends_with("+chart:web@1.0.0"))
            && condition(s, "Ready").is_some_and(|(st, _, _)| st == "True")
    })
    .await?;
    let before = configmap_data(&client, &ns.name, "direct-settings")
        .await?
        .unwrap();
    assert_eq!(before["chartVersion"], "1.0.0");
    let revision = applied.status.unwrap().last_applied_revision;
    let gitsyncs: Api<GitSync> = ns.api();
    let set_chart = |chart: serde_json::Value| {
        let gitsyncs = gitsyncs.clone();
        async move {
            gitsyncs
                .patch(
                    direct,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"render": {"helm": {"chart": chart}}}})),
                )
                .await
        }
    };

    // An unknown version.
    set_chart(chart("9.9.9")).await?;
    let message = wait_fetch_failed(&ns, direct, "has no version matching `9.9.9`").await?;
    assert!(message.contains("newest: 1.1.0, 1.0.0"), "{message}");

    // A tampered archive: a new version is indexed, then its bytes are changed on the server
    // (a version never fetched before, so the digest cache cannot answer for it).
    let tampered = charts.add("web", "1.2.0");
    let mut bytes = std::fs::read(&tampered)?;
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&tampered, &bytes)?;
    set_chart(chart("1.2.0")).await?;
    let message = wait_fetch_failed(&ns, direct, "digest mismatch").await?;
    assert!(message.contains("archive refused"), "{message}");
    assert!(message.contains("web-1.2.0.tgz"), "{message}");

    // An unreachable repository.
    let port = headway_tests::git::free_port();
    let mut unreachable = chart("1.0.0");
    unreachable["repository"] = json!(format!("http://127.0.0.1:{port}/charts"));
    set_chart(unreachable).await?;
    let message = wait_fetch_failed(&ns, direct, "is unreachable").await?;
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");

    // Nothing changed in the cluster, and the last applied revision is still the good one.
    assert_eq!(
        configmap_data(&client, &ns.name, "direct-settings")
            .await?
            .unwrap(),
        before
    );
    let status = gitsyncs.get(direct).await?.status.unwrap();
    assert_eq!(status.last_applied_revision, revision);
    controller.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oci_chart_is_synced_and_upgraded() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("oci_chart_is_synced_and_upgraded") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-oci-chart").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();

    let home = tempfile::tempdir()?;
    let build = tempfile::tempdir()?;
    let registry = Registry::start();
    for v in ["2.0.0", "2.1.0"] {
        let archive = package_chart(home.path(), build.path(), "web", v);
        registry.push(home.path(), &archive, "charts");
    }
    let upstream = Upstream::new();
    upstream.write("values/web/values.yaml", "greeting: oci\n");
    let head = upstream.commit("values");
    let (_daemon, url) = git_daemon(&upstream);
    let repository = format!("oci://{}/charts", registry.host);

    let controller = start_controller(&cluster, &ns.name, "oci-chart").await?;
    create_gitsync(
        &ns,
        "web",
        &url,
        json!({"path": "values/web", "render": {"helm": {"chart": {
            "repository": repository, "name": "web", "version": "2.0.0", "plainHTTP": true}}}}),
    )
    .await?;
    wait_ready_revision(&ns, "web", &format!("main@sha1:{head}+chart:web@2.0.0")).await?;
    let data = configmap_data(&client, &ns.name, "web-settings")
        .await?
        .unwrap();
    assert_eq!(
        (data["chartVersion"].as_str(), data["greeting"].as_str()),
        ("2.0.0", "oci")
    );

    // A range picks the newest tag: a new revision, applied.
    let gitsyncs: Api<GitSync> = ns.api();
    gitsyncs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"render": {"helm": {"chart": {"version": "^2.0.0"}}}}})),
        )
        .await?;
    wait_ready_revision(&ns, "web", &format!("main@sha1:{head}+chart:web@2.1.0")).await?;
    let data = configmap_data(&client, &ns.name, "web-settings")
        .await?
        .unwrap();
    assert_eq!(data["chartVersion"], "2.1.0");
    controller.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dependencies_git_does_not_carry_are_downloaded() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("dependencies_git_does_not_carry_are_downloaded") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-chart-deps").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();

    // A public chart repository holding web 1.0.0 and 1.1.0.
    let charts = ChartRepository::serve("web", &["1.0.0", "1.1.0"], None);
    let server = &charts.server;

    // An umbrella chart in git whose dependency is not vendored (`charts/` is not committed, as
    // most repositories keep it): Chart.lock pins 1.0.0 although the range allows 1.1.0. A
    // second chart names a dependency the repository does not have.
    let upstream = Upstream::new();
    let umbrella = |name: &str, dep: &str, lock: Option<&str>| {
        upstream
            .write(
                &format!("charts/{name}/Chart.yaml"),
                &format!(
                    "apiVersion: v2\nname: {name}\nversion: 0.1.0\ndependencies:\n\
                     - name: {dep}\n  version: \">=1.0.0\"\n  repository: {}\n",
                    server.url
                ),
            )
            .write(
                &format!("charts/{name}/values.yaml"),
                &format!("{dep}:\n  greeting: from-umbrella\n"),
            )
            .write(
                &format!("charts/{name}/templates/own.yaml"),
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-own\ndata: {a: b}\n",
            );
        if let Some(version) = lock {
            upstream.write(
                &format!("charts/{name}/Chart.lock"),
                &format!(
                    "dependencies:\n- name: {dep}\n  repository: {}\n  version: {version}\n\
                     digest: sha256:0\ngenerated: \"2026-01-01T00:00:00Z\"\n",
                    server.url
                ),
            );
        }
    };
    umbrella("shop", "web", Some("1.0.0"));
    umbrella("broken", "nothere", None);
    let head = upstream.commit("umbrella charts");
    let (_daemon, url) = git_daemon(&upstream);

    let controller = start_controller(&cluster, &ns.name, "chart-deps").await?;
    create_gitsync(&ns, "shop", &url, json!({"path": "charts/shop"})).await?;
    create_gitsync(&ns, "broken", &url, json!({"path": "charts/broken"})).await?;
    let synced = wait_ready_at(&ns, "shop", &head, Duration::from_secs(90)).await?;
    assert_eq!(synced.status.unwrap().objects.unwrap().total, 3);
    let data = configmap_data(&client, &ns.name, "shop-settings")
        .await?
        .expect("the dependency's ConfigMap");
    assert_eq!(data["chartVersion"], "1.0.0", "Chart.lock's version");
    assert_eq!(data["greeting"], "from-umbrella", "the umbrella's values");
    assert!(
        configmap_data(&client, &ns.name, "shop-own")
            .await?
            .is_some()
    );

    let broken = wait_status(
        &ns,
        "broken",
        "RenderFailed naming the dependency",
        Duration::from_secs(60),
        |_, s| {
            condition(s, "Ready").is_some_and(|(st, r, m)| {
                st == "False" && r == "RenderFailed" && m.contains("dependency nothere")
            })
        },
    )
    .await?;
    let (_, _, message) = condition(broken.status.as_ref().unwrap(), "Ready").unwrap();
    assert!(message.contains("charts/broken"), "{message}");
    assert!(
        configmap_data(&client, &ns.name, "broken-own")
            .await?
            .is_none(),
        "nothing of a chart whose dependency is missing is applied"
    );
    controller.stop().await
}
