//! `headway render --repo`: the binary fetches a repository from a real `git daemon` and renders
//! the directory given by `--path`, exactly as it renders the same directory checked out locally;
//! the fetch's warnings are printed on stderr.

use std::path::Path;
use std::process::{Command, Output};

use headway_tests::git::{Upstream, enabled, git, git_daemon, http_server};

const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: demo}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n";
const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n";

fn headway(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headway"))
        .args(args)
        .env("HEADWAY_GIT_CACHE", cache)
        .env_remove("HEADWAY_GIT_PASSWORD")
        .output()
        .expect("run headway")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn render_from_a_repository_matches_the_local_directory() {
    if !enabled("render_from_a_repository_matches_the_local_directory") {
        return;
    }
    let up = Upstream::new();
    up.write("deploy/app.yaml", DEPLOY)
        .write("deploy/ns.yaml", NS)
        .write("other/broken.yaml", "a: [\n");
    let first = up.commit("first");
    up.tag("v1", false);
    up.write(
        "deploy/app.yaml",
        &DEPLOY.replace("replicas: 2", "replicas: 5"),
    );
    let second = up.commit("second");
    let (_daemon, url) = git_daemon(&up);
    let cache = tempfile::tempdir().unwrap();

    // HEAD of main, --path deploy: the same output as rendering the local work tree.
    let out = headway(
        &["render", "--repo", &url, "--path", "deploy"],
        cache.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&second), "{}", stderr(&out));
    let local = headway(
        &["render", up.work.join("deploy").to_str().unwrap()],
        cache.path(),
    );
    assert!(local.status.success(), "{}", stderr(&local));
    assert_eq!(stdout(&out), stdout(&local));
    assert!(stdout(&out).contains("replicas: 5"));

    // A tag and a pinned commit.
    for reference in ["tag:v1", first.as_str()] {
        let out = headway(
            &[
                "render", "--repo", &url, "--ref", reference, "--path", "deploy",
            ],
            cache.path(),
        );
        assert!(out.status.success(), "{reference}: {}", stderr(&out));
        assert!(stdout(&out).contains("replicas: 2"), "{reference}");
    }

    // Errors: an unknown branch, a path outside the repository, a directory with invalid YAML.
    let out = headway(&["render", "--repo", &url, "--ref", "nope"], cache.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("\"nope\""), "{}", stderr(&out));
    let out = headway(
        &["render", "--repo", &url, "--path", "../etc"],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("without `..`"), "{}", stderr(&out));
    let out = headway(&["render", "--repo", &url, "--path", "other"], cache.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("broken.yaml (document 0, line"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_directory_and_a_repository_are_exclusive() {
    let cache = tempfile::tempdir().unwrap();
    for args in [
        &["render", ".", "--repo", "git://127.0.0.1:1/x.git"][..],
        &["render"][..],
        &["render", ".", "--ref", "main"][..],
    ] {
        let out = headway(args, cache.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: a usage error");
    }
}

#[test]
fn fetch_warnings_are_printed() {
    if !enabled("fetch_warnings_are_printed") {
        return;
    }
    let up = Upstream::new();
    up.write("deploy/ns.yaml", NS);
    // An embedded repository is committed as a submodule entry (a gitlink).
    let sub = up.work.join("vendor/lib");
    std::fs::create_dir_all(&sub).unwrap();
    git(&sub, &["init", "-q", "-b", "main"]);
    std::fs::write(sub.join("x"), "x").unwrap();
    git(&sub, &["add", "x"]);
    git(&sub, &["commit", "-q", "-m", "sub"]);
    up.commit("with a submodule");
    let cache = tempfile::tempdir().unwrap();

    let (_daemon, url) = git_daemon(&up);
    let out = headway(
        &["render", "--repo", &url, "--path", "deploy"],
        cache.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "warning: {url}: submodule vendor/lib is not fetched (submodules are not supported)"
        )),
        "{}",
        stderr(&out)
    );

    let (_http, http_url) = http_server(&up, &[("ada", "secret")]);
    let out = Command::new(env!("CARGO_BIN_EXE_headway"))
        .args(["fetch", "--repo", &http_url, "--username", "ada"])
        .env("HEADWAY_GIT_CACHE", cache.path())
        .env("HEADWAY_GIT_PASSWORD", "secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "warning: {http_url}: credentials were sent over plain http (not encrypted)"
        )),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("secret"), "{}", stderr(&out));
}
