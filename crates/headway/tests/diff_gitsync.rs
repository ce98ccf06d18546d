//! `headway diff --gitsync NS/NAME [DIR]` and `headway render --gitsync NS/NAME [DIR]` (the
//! binary) against the local cluster, a local git server and a controller running in this
//! process: a synced GitSync shows no difference, a field changed in the cluster and a field
//! changed in a local directory are named, a Helm GitSync renders what its controller applied,
//! the GitSync's git credentials are used, and missing things are named.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1`; the Helm test also
//! `HEADWAY_TOOL_TESTS=1` with `helm` on PATH.

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use headway_tests::git::{Upstream, git_daemon, http_server};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

/// Runs `headway` with its own git and chart caches; returns (exit code, stdout, stderr).
async fn headway(args: &[&str], cache: &Path) -> anyhow::Result<(i32, String, String)> {
    run_to_end(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_headway"))
            .args(args)
            .env("HEADWAY_GIT_CACHE", cache.join("git"))
            .env("HEADWAY_CHART_CACHE", cache.join("charts")),
    )
    .await
}

/// Runs `headway`, checks its exit code (showing everything when it differs) and returns
/// (stdout, stderr).
async fn check(args: &[&str], cache: &Path, code: i32) -> anyhow::Result<(String, String)> {
    let (got, out, err) = headway(args, cache).await?;
    assert_eq!(
        got,
        code,
        "headway {}\nstdout:\n{out}\nstderr:\n{err}",
        args.join(" ")
    );
    Ok((out, err))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn diff_gitsync_shows_what_its_controller_would_apply() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("diff_gitsync_shows_what_its_controller_would_apply") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("cli-diff-gitsync").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let cache = tempfile::tempdir()?;
    let up = Upstream::new();
    up.write("site/one.yaml", &configmap_yaml("one", "1"))
        .write("site/two.yaml", &configmap_yaml("two", "2"));
    let sha = up.commit("two configmaps");
    let (_daemon, url) = git_daemon(&up);
    let controller = start_controller(&cluster, &ns.name, "cli-diff-gitsync-0").await?;
    // No self-heal and a long interval: a change made in the cluster stays until diff sees it.
    create_gitsync(
        &ns,
        "site",
        &url,
        json!({"interval": "1h", "path": "site", "selfHeal": false}),
    )
    .await?;
    wait_ready_at(&ns, "site", &sha, Duration::from_secs(60)).await?;
    let key = format!("{}/site", ns.name);

    // Synced: no difference, not even the GitSync's ownership labels; the revision is named.
    let (out, _) = check(&["diff", "--gitsync", &key], cache.path(), 0).await?;
    assert!(
        out.starts_with(&format!("GitSync {key} at main@sha1:{sha}\n")),
        "{out}"
    );
    assert!(out.contains("no differences (2 objects)"), "{out}");
    let (out, _) = check(&["diff", "--gitsync", &key, "-o", "json"], cache.path(), 0).await?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["gitSync"], key.as_str());
    assert_eq!(v["revision"], format!("main@sha1:{sha}"));
    assert_eq!(v["differs"], false);

    // The working tree's spec.path, changed and not pushed: one value changed, one object
    // gone. Nothing in the cluster changes.
    up.write("site/one.yaml", &configmap_yaml("one", "local"))
        .remove("site/two.yaml");
    let site = up.work.join("site");
    let dir = site.to_str().unwrap();
    let (out, _) = check(&["diff", "--gitsync", &key, dir], cache.path(), 2).await?;
    assert!(
        out.starts_with(&format!("GitSync {key} at local {dir}\n")),
        "{out}"
    );
    assert!(out.contains(&format!("ConfigMap/{}/one", ns.name)), "{out}");
    assert!(out.contains("data.value"), "{out}");
    assert!(out.contains("local"), "{out}");
    assert!(
        out.contains(&format!(
            "ConfigMap/{}/two: no longer in the source (prune would delete it)",
            ns.name
        )),
        "the GitSync's inventory is the stale list: {out}"
    );
    assert_eq!(
        configmap_data(&cluster.client, &ns.name, "one")
            .await?
            .unwrap()["value"],
        "1"
    );
    assert!(
        configmap_data(&cluster.client, &ns.name, "two")
            .await?
            .is_some()
    );

    // A field changed in the cluster.
    let cms: Api<ConfigMap> = ns.api();
    cms.patch(
        "two",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"value": "edited"}})),
    )
    .await?;
    let (out, _) = check(&["diff", "--gitsync", &key], cache.path(), 2).await?;
    assert!(out.contains(&format!("ConfigMap/{}/two", ns.name)), "{out}");
    assert!(out.contains("data.value"), "{out}");
    assert!(out.contains("edited"), "{out}");
    let (out, _) = check(&["diff", "--gitsync", &key, "-o", "json"], cache.path(), 2).await?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let two = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "two")
        .unwrap();
    assert_eq!(two["state"], "drifted");
    assert_eq!(two["fields"][0]["path"], "data.value");

    // `render --gitsync`: the manifests of the GitSync's path, its revision on stderr.
    let (out, err) = check(&["render", "--gitsync", &key], cache.path(), 0).await?;
    assert!(
        out.contains("name: one") && out.contains("name: two"),
        "{out}"
    );
    assert!(
        err.contains(&format!("GitSync {key} at main@sha1:{sha}")),
        "{err}"
    );

    // A render error names the file, in the controller's words.
    up.write("site/broken.yaml", "kind: ConfigMap\n---\ndata: [\n");
    let (_, err) = check(&["diff", "--gitsync", &key, dir], cache.path(), 1).await?;
    assert!(
        err.contains(&format!("GitSync {key}: rendering {dir} at local: ")),
        "{err}"
    );
    assert!(err.contains("broken.yaml (document 1, line 3)"), "{err}");

    // Errors: a missing GitSync, flags that the GitSync decides.
    let missing = format!("{}/nope", ns.name);
    let (_, err) = check(&["diff", "--gitsync", &missing], cache.path(), 1).await?;
    assert!(
        err.contains(&format!("GitSync {missing} not found in the cluster")),
        "{err}"
    );
    let (_, err) = check(
        &["diff", "--gitsync", &key, "--repo", &url],
        cache.path(),
        2,
    )
    .await?;
    assert!(err.contains("cannot be used with"), "{err}");
    controller.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_gitsync_uses_the_credentials_of_its_secret() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("render_gitsync_uses_the_credentials_of_its_secret") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("cli-render-gitsync").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let cache = tempfile::tempdir()?;
    let up = Upstream::new();
    up.write("app/cm.yaml", &configmap_yaml("private", "1"));
    let sha = up.commit("one configmap");
    let (_http, url) = http_server(&up, &[("reader", "s3cret")]);
    let secrets: Api<Secret> = ns.api();
    let secret = |name: &str, data: serde_json::Value| -> Secret {
        serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap()
    };
    let post = PostParams::default();
    secrets
        .create(
            &post,
            &secret(
                "git-auth",
                json!({"username": "reader", "password": "s3cret"}),
            ),
        )
        .await?;
    secrets
        .create(&post, &secret("half", json!({"username": "reader"})))
        .await?;
    // No controller runs here: the GitSyncs are only read.
    for (name, secret_ref, branch) in [
        ("private", Some("git-auth"), "main"),
        ("no-secret", Some("absent"), "main"),
        ("no-password", Some("half"), "main"),
        ("anonymous", None, "main"),
        ("bad-ref", Some("git-auth"), "nope"),
    ] {
        let mut repository = json!({"url": url, "ref": {"branch": branch}});
        if let Some(s) = secret_ref {
            repository["secretRef"] = json!({"name": s});
        }
        create_gitsync(
            &ns,
            name,
            &url,
            json!({"repository": repository, "path": "app"}),
        )
        .await?;
    }
    let key = |name: &str| format!("{}/{name}", ns.name);

    let (out, err) = check(&["render", "--gitsync", &key("private")], cache.path(), 0).await?;
    assert!(out.contains("name: private"), "{out}");
    assert!(err.contains(&format!("at main@sha1:{sha}")), "{err}");

    let cases = [
        (
            "no-secret",
            format!(
                "spec.repository.secretRef: Secret {}/absent not found",
                ns.name
            ),
        ),
        (
            "no-password",
            format!(
                "Secret {}/half has key username but no key password",
                ns.name
            ),
        ),
        ("anonymous", format!("fetching {url}")),
        ("bad-ref", format!("fetching {url}")),
    ];
    for (name, message) in cases {
        let (_, err) = check(&["render", "--gitsync", &key(name)], cache.path(), 1).await?;
        assert!(
            err.contains(&format!("GitSync {}: ", key(name))),
            "{name}: {err}"
        );
        assert!(err.contains(&message), "{name}: {err}");
    }
    let (_, err) = check(&["render", "--gitsync", &key("bad-ref")], cache.path(), 1).await?;
    assert!(err.contains("nope"), "the ref is named: {err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn render_gitsync_of_a_chart_is_what_its_controller_applied() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("render_gitsync_of_a_chart_is_what_its_controller_applied") {
        return Ok(());
    }
    if std::env::var("HEADWAY_TOOL_TESTS").as_deref() != Ok("1") {
        eprintln!("skipping: needs HEADWAY_TOOL_TESTS=1 and helm on PATH");
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("cli-helm-gitsync").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let cache = tempfile::tempdir()?;
    let up = Upstream::new();
    up.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    )
    .write("chart/values.yaml", "greeting: from-values-yaml\n")
    .write(
        "chart/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\ndata:\n  greeting: {{ .Values.greeting | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n  namespace: {{ .Release.Namespace | quote }}\n",
    );
    let sha = up.commit("a chart");
    let (_daemon, url) = git_daemon(&up);
    let controller = start_controller(&cluster, &ns.name, "cli-helm-gitsync-0").await?;
    create_gitsync(
        &ns,
        "web",
        &url,
        json!({
            "interval": "1h", "path": "chart", "selfHeal": false,
            "render": {"type": "Helm", "helm": {"values": {"greeting": "inline"}}},
        }),
    )
    .await?;
    wait_ready_at(&ns, "web", &sha, Duration::from_secs(90)).await?;
    let key = format!("{}/web", ns.name);
    let applied = configmap_data(&cluster.client, &ns.name, "web-greeting")
        .await?
        .expect("the controller applied the chart");
    assert_eq!(applied["greeting"], "inline");

    let (out, _) = check(
        &["render", "--gitsync", &key, "-o", "json"],
        cache.path(),
        0,
    )
    .await?;
    let list: serde_json::Value = serde_json::from_str(&out)?;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{out}");
    let data = &items[0]["data"];
    for field in ["greeting", "kube", "namespace"] {
        assert_eq!(data[field], applied[field].as_str(), "{field}: {out}");
    }
    let (out, _) = check(&["diff", "--gitsync", &key], cache.path(), 0).await?;
    assert!(out.contains("no differences (1 objects)"), "{out}");

    // A template change previewed from the working tree, with the GitSync's inline values.
    up.write(
        "chart/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\ndata:\n  greeting: {{ .Values.greeting | upper | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n  namespace: {{ .Release.Namespace | quote }}\n",
    );
    let chart = up.work.join("chart");
    let dir = chart.to_str().unwrap();
    let (out, _) = check(&["diff", "--gitsync", &key, dir], cache.path(), 2).await?;
    assert!(
        out.contains("data.greeting") && out.contains("INLINE"),
        "{out}"
    );
    controller.stop().await?;
    Ok(())
}

#[tokio::test]
async fn render_gitsync_of_a_local_dir_decrypts_with_the_keys_of_its_secret() -> anyhow::Result<()>
{
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if std::env::var("HEADWAY_TOOL_TESTS").as_deref() != Ok("1") {
        eprintln!("skipping: needs HEADWAY_TOOL_TESTS=1 and sops, age-keygen on PATH");
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("cli-sops-gitsync").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let work = tempfile::tempdir()?;
    let tool = |cmd: &mut std::process::Command| -> String {
        let out = cmd.output().expect("running a tool");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let key_file = work.path().join("key.txt");
    tool(
        std::process::Command::new("age-keygen")
            .arg("-o")
            .arg(&key_file),
    );
    let recipient = tool(
        std::process::Command::new("age-keygen")
            .arg("-y")
            .arg(&key_file),
    );
    let plain = work.path().join("plain.yaml");
    std::fs::write(
        &plain,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  v: gitsync-Plaintext-7\n",
    )?;
    let encrypted = tool(
        std::process::Command::new("sops")
            .current_dir(work.path())
            .args([
                "--encrypt",
                "--age",
                recipient.trim(),
                "--encrypted-regex",
                "^stringData$",
            ])
            .arg(&plain),
    );
    let dir = work.path().join("app");
    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join("secret.yaml"), encrypted)?;
    let secrets: Api<Secret> = ns.api();
    let key_text = std::fs::read_to_string(&key_file)?;
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "sops-age"}, "stringData": {"key.agekey": key_text}
            }))?,
        )
        .await?;
    // Nothing listens at this URL: with a DIR, nothing is fetched.
    let url = "git://127.0.0.1:1/none.git";
    for (name, secret) in [("sealed", "sops-age"), ("keyless", "absent")] {
        create_gitsync(
            &ns,
            name,
            url,
            json!({"decryption": {"provider": "sops", "secretRef": {"name": secret}}}),
        )
        .await?;
    }
    let cache = tempfile::tempdir()?;
    let dir = dir.to_str().unwrap();
    let key = format!("{}/sealed", ns.name);
    let (out, _) = check(&["render", "--gitsync", &key, dir], cache.path(), 0).await?;
    assert!(out.contains("gitsync-Plaintext-7"), "{out}");
    assert!(!out.contains("sops:"), "{out}");
    let key = format!("{}/keyless", ns.name);
    let (out, err) = check(&["render", "--gitsync", &key, dir], cache.path(), 1).await?;
    assert!(
        err.contains(&format!(
            "spec.decryption.secretRef: Secret {}/absent not found",
            ns.name
        )),
        "{err}"
    );
    assert!(!out.contains("Plaintext") && !err.contains("Plaintext"));
    Ok(())
}
