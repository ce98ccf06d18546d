//! `status` (`-o json|yaml`, `--watch`, nothing selected), `sync --wait`, `suspend`, `resume`
//! and `rebuild --wait -o json` with the real binary against the local cluster; the syncs are
//! run by a real `headway controller` process (a `Guarded` child, so nothing is left behind).
//! Output that is not a terminal has no control characters; on a terminal (a pty from
//! `script`) the same lines come out around the drawn progress.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1`; the controller test also `HEADWAY_GIT_TESTS=1`.

#[path = "../../controller/tests/support/mod.rs"]
mod support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use headway_controller::GitSync;
use headway_tests::controller::{ControllerProcess, ControllerSpec};
use headway_tests::git::{Upstream, git_daemon};
use headway_tests::process::Guarded;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use support::*;

/// Runs headway against the test cluster (`KUBECONFIG`), stdout and stderr piped (not a
/// terminal).
fn headway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headway"))
        .args(args)
        .output()
        .expect("run headway")
}

/// `(exit code, stdout, stderr)`; stdout and stderr must be free of control characters other
/// than newlines (no progress drawn when not a terminal).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = headway(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?}: control characters in {name}: {text:?}"
        );
    }
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn json_of(args: &[&str], stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"))
}

/// The fields of a summary in `status -o json` (docs/cli.md): the shape is stable.
const SUMMARY_FIELDS: &[&str] = &[
    "namespace",
    "name",
    "url",
    "reference",
    "path",
    "suspended",
    "phase",
    "reason",
    "message",
    "revision",
    "attemptedRevision",
    "conditions",
    "objects",
    "unhealthy",
    "drifted",
    "drift",
    "lastReconcile",
    "lastRebuild",
];

fn summary<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// Lines of a child's stdout, read on a thread.
fn lines_of(child: &mut Guarded) -> mpsc::Receiver<String> {
    let stdout = child.child().stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line of `status --watch -o json` whose summary of `name` has `phase` (with a
/// leading `!`: any other phase).
fn wait_line(lines: &mpsc::Receiver<String>, name: &str, phase: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        assert!(!line.chars().any(char::is_control), "{line:?}");
        let list: Value = serde_json::from_str(&line).with_context(|| line.clone())?;
        let seen_phase = summary(&list, name)["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let wanted = match phase.strip_prefix('!') {
            Some(not) => seen_phase != not,
            None => seen_phase == phase,
        };
        if wanted {
            return Ok(list);
        }
        seen.push(line);
    }
    anyhow::bail!("no line with {name} {phase} within 30 s; seen: {seen:#?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_watch_suspend_and_resume() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("cli-view-status").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let n = ns.name.as_str();
    // No controller runs for this namespace: alpha is suspended, beta is never synced.
    let none = "git://127.0.0.1:1/none.git";
    create_gitsync(&ns, "alpha", none, json!({"suspend": true, "path": "apps"})).await?;
    let tagged = json!({"repository": {"url": none, "ref": {"tag": "v1"}}});
    create_gitsync(&ns, "beta", none, tagged).await?;

    let args = ["status", "-n", n, "-o", "json"];
    let (code, out, err) = run(&args);
    assert_eq!(code, 1, "not every GitSync is Ready: {out}{err}");
    let list = json_of(&args, &out);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let alpha = summary(&list, "alpha");
    let fields: Vec<&str> = alpha
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = SUMMARY_FIELDS.to_vec();
    expected.sort_unstable();
    let mut fields_sorted = fields.clone();
    fields_sorted.sort_unstable();
    assert_eq!(fields_sorted, expected, "{alpha}");
    assert_eq!(alpha["namespace"], n);
    assert_eq!(alpha["url"], none);
    assert_eq!(alpha["reference"], "branch main");
    assert_eq!(alpha["path"], "apps");
    assert_eq!(alpha["suspended"], true);
    assert_eq!(alpha["phase"], "Suspended");
    assert_eq!(alpha["revision"], Value::Null);
    assert_eq!(alpha["objects"]["total"], 0);
    assert_eq!(alpha["lastRebuild"], Value::Null);
    let beta = summary(&list, "beta");
    assert_eq!(beta["reference"], "tag v1");
    assert_eq!(beta["suspended"], false);
    // Never synced (no controller watches this namespace; were one to, not Ready either).
    assert_ne!(beta["phase"], "Ready");
    assert_ne!(beta["phase"], "Suspended");

    let (code, out, _) = run(&["status", "-n", n, "-o", "yaml", "alpha"]);
    assert_eq!(code, 1);
    assert!(out.contains("phase: Suspended"), "{out}");
    assert!(!out.contains("beta"), "{out}");

    // Nothing selected: an error on stderr, nothing on stdout.
    let (code, out, err) = run(&["status", "-n", n, "-l", "team=nobody", "-o", "json"]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        format!(
            "error: no GitSyncs in namespace {n} with labels team=nobody: nothing to show \
             (-A looks in every namespace)\n"
        )
    );
    let (code, _, err) = run(&["status", "-n", n, "nope"]);
    assert_eq!(code, 1);
    assert_eq!(err, format!("error: GitSync {n}/nope not found\n"));

    // --watch: a JSON line per change.
    let mut watch = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_headway"))
            .args(["status", "--watch", "-n", n, "-o", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )?;
    let lines = lines_of(&mut watch);
    wait_line(&lines, "alpha", "Suspended")?;

    // resume: spec.suspend false (field manager headway-suspend) and a sync request.
    let (code, out, err) = run(&["resume", "alpha", "-n", n]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!("resumed: {n}/alpha\nsync requested: {n}/alpha\n")
    );
    let syncs: Api<GitSync> = ns.api();
    let alpha = syncs.get("alpha").await?;
    assert!(!alpha.spec.suspend);
    assert!(
        alpha
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("headway.dev/sync-requested-at")),
        "{:?}",
        alpha.metadata.annotations
    );
    let managers: Vec<String> = alpha
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "headway-suspend"),
        "{managers:?}"
    );
    wait_line(&lines, "alpha", "!Suspended")?;

    // suspend, given as namespace/name.
    let target = format!("{n}/alpha");
    let (code, out, err) = run(&["suspend", &target]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, format!("suspended: {n}/alpha\n"));
    assert!(syncs.get("alpha").await?.spec.suspend);
    wait_line(&lines, "alpha", "Suspended")?;
    drop(watch);

    // A suspended GitSync is not synced: say how to resume it.
    let (code, _, err) = run(&["sync", &target]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "error: GitSync {n}/alpha is suspended: `headway resume {n}/alpha` resumes it and syncs\n"
        )
    );
    // Bad targets are usage errors.
    let (code, _, err) = run(&["sync", "a/b/c"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["sync", &target, "-n", "other"]);
    assert_eq!(code, 2, "{err}");
    Ok(())
}

/// A `headway controller` child process for the namespace `ns`; its log in `dir`.
fn controller(ns: &str, dir: &Path) -> anyhow::Result<ControllerProcess> {
    ControllerSpec::new(env!("CARGO_BIN_EXE_headway"), dir, "cli-view")
        .namespace(ns)
        .lease_seconds(6)
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_resume_and_rebuild_wait_with_a_controller_process() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("sync_resume_and_rebuild_wait_with_a_controller_process") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("cli-view-sync").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let n = ns.name.as_str();
    let dir = tempfile::tempdir()?;
    let up = Upstream::new();
    up.write("app/cm.yaml", &configmap_yaml("settings", "1"));
    let first = up.commit("one");
    let (_daemon, url) = git_daemon(&up);
    let _controller = controller(n, dir.path())?;
    let log = || std::fs::read_to_string(dir.path().join("cli-view.log")).unwrap_or_default();
    // Long interval, no self-heal: only the requests sync.
    let spec = json!({"interval": "1h", "path": "app", "targetNamespace": n, "selfHeal": false});
    create_gitsync(&ns, "site", &url, spec).await?;
    wait_ready_at(&ns, "site", &first, Duration::from_secs(60))
        .await
        .with_context(log)?;

    // sync --wait -o json: done, Ready at the new commit.
    up.write("app/cm.yaml", &configmap_yaml("settings", "2"));
    let second = up.commit("two");
    let target = format!("{n}/site");
    let args = ["sync", &target, "--wait", "--timeout", "60", "-o", "json"];
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{out}{err}\n{}", log());
    let v = json_of(&args, &out);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["waited"], true, "{v}");
    let s = &v["syncs"][0];
    assert_eq!((&s["namespace"], &s["name"]), (&json!(n), &json!("site")));
    assert_eq!(
        (&s["state"], &s["ok"]),
        (&json!("done"), &json!(true)),
        "{v}"
    );
    assert_eq!(
        s["summary"]["revision"],
        format!("main@sha1:{second}"),
        "{v}"
    );
    assert!(s["seconds"].as_f64().is_some_and(|t| t > 0.0), "{v}");
    let data = configmap_data(&cluster.client, n, "settings").await?;
    assert_eq!(data.unwrap()["value"], "2");

    // sync NAME -n --wait, text: the request and the result, as plain lines.
    up.write("app/cm.yaml", &configmap_yaml("settings", "3"));
    let third = up.commit("three");
    let (code, out, err) = run(&["sync", "site", "-n", n, "--wait", "--timeout", "60"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("sync requested: {n}/site\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "synced: {n}/site Ready at main@sha1:{third} after "
        )),
        "{out}"
    );

    // suspend, a new commit is not synced; resume --wait syncs it.
    let (code, out, err) = run(&["suspend", &target]);
    assert_eq!(code, 0, "{out}{err}");
    wait_status(&ns, "site", "Suspended", Duration::from_secs(30), |_, s| {
        condition(s, "Reconciling").is_some_and(|(_, reason, _)| reason == "Suspended")
    })
    .await?;
    up.write("app/cm.yaml", &configmap_yaml("settings", "4"));
    let fourth = up.commit("four");
    let (code, out, err) = run(&["resume", &target, "--wait", "--timeout", "60"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("resumed: {n}/site\n")), "{out}");
    assert!(
        out.contains(&format!(
            "synced: {n}/site Ready at main@sha1:{fourth} after "
        )),
        "{out}"
    );

    // The disaster, then rebuild --wait -o json: the recovery time and the controller's record.
    let cms: Api<ConfigMap> = ns.api();
    cms.delete("settings", &DeleteParams::default()).await?;
    let args = [
        "rebuild",
        "-n",
        n,
        "--wait",
        "--timeout",
        "90",
        "-o",
        "json",
    ];
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{out}{err}");
    let v = json_of(&args, &out);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["waited"], true, "{v}");
    assert_eq!(v["skipped"], json!([]), "{v}");
    let recovery = v["recoverySeconds"].as_f64().expect("recoverySeconds");
    assert!(recovery > 0.0 && recovery < 90.0, "{v}");
    let s = &v["syncs"][0];
    assert_eq!(
        (&s["state"], &s["ok"]),
        (&json!("done"), &json!(true)),
        "{v}"
    );
    let record = &s["summary"]["lastRebuild"];
    assert_eq!(record["result"], "Succeeded", "{v}");
    assert!(
        record["durationSeconds"].as_f64().is_some_and(|d| d > 0.0),
        "{v}"
    );
    assert!(
        record["stages"]
            .as_array()
            .is_some_and(|st| st.iter().any(|x| x["name"] == "fetch")),
        "{v}"
    );
    assert!(cms.get_opt("settings").await?.is_some(), "settings is back");

    // Text, not a terminal: plain lines, the recovery time at the end.
    let (code, out, err) = run(&["rebuild", "-n", n, "--wait", "--timeout", "90"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("rebuild requested: {n}/site\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("rebuilt: {n}/site Ready after ")),
        "{out}"
    );
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("recovery time: ") && l.ends_with(" for 1 GitSync(s)")),
        "{out}"
    );

    // On a terminal (a pty from `script`): bars are drawn, and the lines are the same.
    let command = format!(
        "{} rebuild -n {n} --wait --timeout 90",
        env!("CARGO_BIN_EXE_headway")
    );
    // Guarded: the pty's command goes with the test, whatever happens.
    let mut script = Guarded::spawn(
        Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .context("running script (util-linux)")?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut script.child().stdout.take().unwrap(), &mut bytes)?;
    let status = script.child().wait()?;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("rebuilt: {n}/site Ready after ")),
        "{text:?}"
    );
    assert!(text.contains("recovery time: "), "{text:?}");

    // A sync that fails: exit code 1 and the reason.
    let spec = json!({"interval": "1h", "path": "missing", "targetNamespace": n});
    create_gitsync(&ns, "broken", &url, spec).await?;
    let (code, out, err) = run(&["sync", "broken", "-n", n, "--wait", "--timeout", "60"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("FAILED: {n}/broken: ")), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_and_diff_print_json() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    let ns = cluster.namespace("cli-view-json").await?;
    let n = ns.name.as_str();
    let src = tempfile::tempdir()?;
    std::fs::write(src.path().join("cm.yaml"), configmap_yaml("settings", "1"))?;
    let dir = src.path().to_str().unwrap();
    let sync = [
        "--name",
        "site",
        "--sync-namespace",
        n,
        "-n",
        n,
        "-o",
        "json",
    ];
    let id = format!("ConfigMap/{n}/settings");

    let args = [&["apply", dir][..], &sync[..]].concat();
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{out}{err}");
    let v = json_of(&args, &out);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["sync"], format!("{n}/site"));
    assert_eq!(v["counts"]["created"], 1, "{v}");
    assert_eq!(v["changes"][0]["id"], id, "{v}");
    assert_eq!(v["changes"][0]["action"], "created", "{v}");
    assert_eq!(v["inventory"], 1, "{v}");
    assert_eq!(v["failure"], Value::Null, "{v}");
    assert!(v["timings"][0]["seconds"].is_f64(), "{v}");

    let args = [&["diff", dir][..], &sync[..]].concat();
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{out}{err}");
    let v = json_of(&args, &out);
    assert_eq!(
        (&v["differs"], &v["errors"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(v["objects"][0]["state"], "inSync", "{v}");

    // Git changed: exit code 2 and the field.
    std::fs::write(src.path().join("cm.yaml"), configmap_yaml("settings", "2"))?;
    let (code, out, err) = run(&args);
    assert_eq!(code, 2, "{out}{err}");
    let v = json_of(&args, &out);
    assert_eq!(v["differs"], true, "{v}");
    let object = &v["objects"][0];
    assert_eq!(
        (&object["id"], &object["state"]),
        (&json!(id), &json!("drifted"))
    );
    assert_eq!(object["fields"][0]["path"], "data.value", "{v}");
    assert_eq!(object["fields"][0]["desired"], "2", "{v}");
    assert_eq!(object["fields"][0]["live"], "1", "{v}");
    assert_eq!(v["stale"], json!([]), "{v}");
    Ok(())
}
