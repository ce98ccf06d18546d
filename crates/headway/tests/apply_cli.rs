//! `headway apply`, `headway diff` and `headway health` against the local cluster: exit codes,
//! prune, and a render failure that prunes nothing. Gated by `HEADWAY_CLUSTER_TESTS=1`.

use std::path::Path;
use std::process::{Command, Output};

use headway_tests::cluster;
use k8s_openapi::api::core::v1::ConfigMap;

fn headway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headway"))
        .args(args)
        .output()
        .expect("run headway")
}

/// Runs `headway` and checks its exit code, showing its output when it differs.
fn check(args: &[&str], code: i32) -> String {
    let out = headway(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "headway {}\nstdout:\n{stdout}\nstderr:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).expect("write a test file");
}

fn cm(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{value: \"{value}\"}}\n"
    )
}

#[tokio::test]
async fn apply_diff_prune_and_a_render_failure_that_prunes_nothing() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("cli-apply").await?;
    let src = tempfile::tempdir()?;
    let dir = src.path().to_str().unwrap();
    write(src.path(), "a.yaml", &cm("a", "1"));
    write(src.path(), "b.yaml", &cm("b", "1"));
    let sync = [
        "--name",
        "cli",
        "--sync-namespace",
        &ns.name,
        "-n",
        &ns.name,
    ];
    let args = |cmd: &str, extra: &[&str]| -> Vec<String> {
        let mut v = vec![cmd.to_string(), dir.to_string()];
        v.extend(sync.iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run =
        |v: Vec<String>, code: i32| check(&v.iter().map(String::as_str).collect::<Vec<_>>(), code);

    let out = run(args("diff", &[]), 2);
    assert!(
        out.contains("ConfigMap/") && out.contains("missing from the cluster"),
        "{out}"
    );
    let out = run(args("apply", &["--prune", "--wait"]), 0);
    assert!(out.contains("2 created"), "{out}");
    let out = run(args("diff", &[]), 0);
    assert!(out.contains("no differences"), "{out}");

    // A changed value is a difference with its path.
    write(src.path(), "a.yaml", &cm("a", "2"));
    let out = run(args("diff", &[]), 2);
    assert!(
        out.contains("data.value") && out.contains("desired: 2"),
        "{out}"
    );

    // b leaves the source, but another file is broken: exit 1, nothing applied or pruned.
    std::fs::remove_file(src.path().join("b.yaml"))?;
    write(src.path(), "broken.yaml", "a: [\n");
    run(args("apply", &["--prune"]), 1);
    let cms: kube::Api<ConfigMap> = ns.api();
    assert!(
        cms.get_opt("b").await?.is_some(),
        "b was pruned after a render failure"
    );
    assert_eq!(cms.get("a").await?.data.unwrap_or_default()["value"], "1");

    // Fixed: b would be pruned, and is.
    std::fs::remove_file(src.path().join("broken.yaml"))?;
    let out = run(args("diff", &[]), 2);
    assert!(out.contains("prune would delete it"), "{out}");
    let out = run(args("apply", &["--prune"]), 0);
    assert!(
        out.contains("1 configured") && out.contains("1 deleted"),
        "{out}"
    );
    assert!(cms.get_opt("b").await?.is_none());
    Ok(())
}

#[test]
fn health_of_a_file_of_live_objects() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("live.yaml");
    let ready = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: prod, generation: 2}\nspec: {replicas: 1}\nstatus:\n  observedGeneration: 2\n  replicas: 1\n  updatedReplicas: 1\n  readyReplicas: 1\n  availableReplicas: 1\n  conditions:\n  - {type: Available, status: \"True\"}\n  - {type: Progressing, status: \"True\", reason: NewReplicaSetAvailable}\n";
    std::fs::write(&file, ready).unwrap();
    let f = file.to_str().unwrap();
    let out = check(&["health", "-f", f], 0);
    assert!(out.starts_with("Deployment/prod/web: Current"), "{out}");
    let stuck = ready
        .replace("name: web", "name: api")
        .replace("availableReplicas: 1", "availableReplicas: 0");
    std::fs::write(&file, format!("{ready}---\n{stuck}")).unwrap();
    let out = check(&["health", "-f", f], 2);
    assert!(
        out.contains("Deployment/prod/api: InProgress: available: 0/1"),
        "{out}"
    );
    std::fs::write(&file, "a: [\n").unwrap();
    check(&["health", "-f", f], 1);
}
