//! The global `--kubeconfig` and `--context` flags, `-n` defaulting to the context's namespace,
//! `-l` on `status`, and one-line errors, with the real binary against the local cluster.
//! Gated by `HEADWAY_CLUSTER_TESTS=1`.

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};

use headway_tests::{TestNamespace, cluster};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::{Janitor, configmap_yaml, create_gitsync, install_crd};

/// Runs headway with `KUBECONFIG` pointing nowhere, so only the flags can name the cluster.
fn headway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headway"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run headway")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of the test kubeconfig with two more contexts: `good` (the local cluster, namespace
/// `namespace`) and `bad` (nothing listens there); its current context is `bad`.
fn write_kubeconfig(dir: &Path, namespace: &str) -> anyhow::Result<String> {
    let original = std::env::var("KUBECONFIG")?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&original)?;
    let mut value = serde_json::to_value(&kubeconfig)?;
    let current = value["current-context"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let context = value["contexts"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == current.as_str()))
        .cloned()
        .expect("the current context");
    let contexts = value["contexts"].as_array_mut().expect("contexts");
    contexts.push(json!({"name": "good", "context": {
        "cluster": context["context"]["cluster"], "user": context["context"]["user"],
        "namespace": namespace}}));
    contexts.push(json!({"name": "bad", "context": {
        "cluster": "nowhere", "user": context["context"]["user"]}}));
    value["clusters"]
        .as_array_mut()
        .expect("clusters")
        .push(json!({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}}));
    value["current-context"] = json!("bad");
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_string_pretty(&value)?)?;
    Ok(path.display().to_string())
}

async fn label_gitsyncs(ns: &TestNamespace) -> anyhow::Result<()> {
    for (name, team) in [("alpha", "a"), ("beta", "b")] {
        create_gitsync(
            ns,
            name,
            "git://127.0.0.1:1/none.git",
            json!({"suspend": true}),
        )
        .await?;
        let api: Api<headway_controller::GitSync> = ns.api();
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": team}}})),
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_cluster_flags_are_honoured_by_every_cluster_command() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    install_crd(&c.client).await?;
    let ns = c.namespace("cli-flags").await?;
    let _janitor = Janitor::new(&c, &ns);
    let dir = tempfile::tempdir()?;
    let kubeconfig = write_kubeconfig(dir.path(), &ns.name)?;
    label_gitsyncs(&ns).await?;
    let good = ["--kubeconfig", kubeconfig.as_str(), "--context", "good"];

    // status: the context's namespace without -n; the flags before or after the command.
    let out = headway(&[&good[..], &["status"]].concat());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "not Ready: {stdout}{stderr}");
    for name in ["alpha", "beta"] {
        assert!(stdout.contains(&format!("{}/{name} ", ns.name)), "{stdout}");
    }
    let out = headway(&[&["status", "-l", "team=a"][..], &good[..]].concat());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{}/alpha ", ns.name)), "{stdout}");
    assert!(!stdout.contains("beta"), "-l team=a: {stdout}");
    // Nothing selected is an error that says what was looked for.
    let out = headway(&[&good[..], &["status", "-l", "team=nobody"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out),
        (
            String::new(),
            format!(
                "error: no GitSyncs in namespace {} with labels team=nobody: nothing to show \
                 (-A looks in every namespace)\n",
                ns.name
            )
        )
    );

    // rebuild: the context's namespace too.
    let out = headway(&[&good[..], &["rebuild", "missing"]].concat());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr,
        format!("error: GitSync {}/missing not found\n", ns.name)
    );

    let out = headway(&[&good[..], &["rebuild", "-l", "team=nobody"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out).1,
        "error: no GitSyncs selected: nothing to rebuild\n"
    );

    // apply and diff: objects that name no namespace land in the context's namespace.
    let src = tempfile::tempdir()?;
    std::fs::write(src.path().join("cm.yaml"), configmap_yaml("flagged", "1"))?;
    let src_dir = src.path().to_str().unwrap();
    let sync = ["--name", "flags", "--sync-namespace", ns.name.as_str()];
    let out = headway(&[&good[..], &["apply", src_dir], &sync[..]].concat());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let cms: Api<ConfigMap> = ns.api();
    assert!(cms.get_opt("flagged").await?.is_some(), "{stdout}");
    let out = headway(&[&good[..], &["diff", src_dir], &sync[..]].concat());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("no differences (1 objects)"), "{stdout}");

    // The kubeconfig's current context (`bad`) is used without --context: a one-line error
    // naming what failed.
    for command in [&["status"][..], &["diff", src_dir, "--name", "flags"][..]] {
        let out = headway(&[&["--kubeconfig", kubeconfig.as_str()][..], command].concat());
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{command:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("backtrace"), "{stderr}");
    }
    // A context the kubeconfig does not have, and no kubeconfig at all.
    let out = headway(&["--kubeconfig", &kubeconfig, "--context", "nope", "status"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with(&format!("error: loading kubeconfig {kubeconfig}: ")),
        "{stderr}"
    );
    assert!(stderr.contains("nope"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let out = headway(&["--context", "good", "status"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: loading context good of the kubeconfig: "),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_lease_namespace_is_one_line() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    install_crd(&c.client).await?;
    let ns = c.namespace("cli-lease").await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = write_kubeconfig(dir.path(), &ns.name)?;
    let missing = format!("{}-missing", ns.name);
    let out = headway(&[
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "good",
        "controller",
        "--namespace",
        &ns.name,
        "--lease-namespace",
        &missing,
        "--identity",
        "lease-test",
        "--http-address",
        "127.0.0.1:0",
        "--cache-dir",
        dir.path().join("cache").to_str().unwrap(),
        "--log-format",
        "text",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        errors,
        [format!(
            "error: the Lease's namespace {missing} does not exist; create it or pass --lease-namespace"
        )],
        "{stderr}"
    );
    for noise in ["Status {", "ErrorResponse", "backtrace", "Caused by"] {
        assert!(!stderr.contains(noise), "{noise}: {stderr}");
    }
    Ok(())
}

/// `headway controller` whose `--http-address` is taken exits at once with an error naming the
/// flag and the address. No cluster needed: the address is bound before anything is contacted
/// (the kubeconfig points where nothing listens).
#[test]
fn controller_exits_when_the_http_address_is_in_use() -> anyhow::Result<()> {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: nowhere\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: nowhere\n  context:\n    cluster: nowhere\n    user: nobody\ncurrent-context: nowhere\nusers:\n- name: nobody\n  user:\n    token: none\n",
    )?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = taken.local_addr()?.to_string();
    let stderr = dir.path().join("stderr");
    let mut child = headway_tests::process::Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_headway"))
            .arg("controller")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--http-address", &address, "--identity", "t"])
            .args(["--log-format", "text"])
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr)?),
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "headway controller still runs 30 s after failing to bind {address}:\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&stderr)?;
    assert_eq!(status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: --http-address ")
            && last.contains(&address)
            && last.contains("already in use"),
        "{err}"
    );
    drop(taken);
    Ok(())
}
