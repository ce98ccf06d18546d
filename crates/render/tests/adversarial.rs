//! Hostile repositories: each render fails with an error naming the file (or, for what is
//! harmless, renders without reaching outside the repository), quickly and in bounded memory.
//! The memory each takes in the `headway render` binary is measured in
//! `crates/headway/tests/adversarial_repos.rs`; the tool cases (a kustomization with a remote
//! base, a chart using `lookup`) need `HEADWAY_TOOL_TESTS=1`.

mod support;

use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use headway_render::{RenderOptions, RenderType, render};
use support::*;

/// A YAML "billion laughs": ten levels of nine aliases each.
fn alias_bomb() -> String {
    let mut lines =
        vec![r#"  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]"#.to_string()];
    for i in 1..10u8 {
        let (prev, cur) = ((b'a' + i - 1) as char, (b'a' + i) as char);
        let refs = vec![format!("*{prev}"); 9].join(",");
        lines.push(format!("  {cur}: &{cur} [{refs}]"));
    }
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n{}\n",
        lines.join("\n")
    )
}

/// Renders `dir` with the defaults, expecting failure within `within`; the errors, one a line.
fn fails(dir: &Path, within: Duration) -> String {
    let started = Instant::now();
    let errors = render_err(dir, &RenderOptions::default());
    let took = started.elapsed();
    assert!(took < within, "took {took:?}");
    error_lines(&errors).join("\n")
}

#[test]
fn a_yaml_alias_bomb_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("bomb.yaml", &alias_bomb())]);
    let text = fails(dir.path(), Duration::from_secs(60));
    assert!(text.contains("bomb.yaml (document 0"), "{text}");
    assert!(text.contains("budget"), "{text}");
}

#[test]
fn ten_thousand_levels_of_nesting_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\nextra: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let block: String = (0..10_000)
        .map(|i| format!("{}k:\n", " ".repeat(i % 2000)))
        .collect();
    write_tree(
        dir.path(),
        &[
            ("deep.yaml", &deep),
            (
                "block.yaml",
                &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n{block}"),
            ),
        ],
    );
    let text = fails(dir.path(), Duration::from_secs(30));
    assert!(text.contains("deep.yaml (document 0"), "{text}");
    assert!(text.contains("block.yaml"), "{text}");
}

#[test]
fn a_hundred_mib_document_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = fs::File::create(dir.path().join("big.yaml")).unwrap();
    // Sparse: the size is what is checked, before any byte is read.
    file.set_len(100 << 20).unwrap();
    let text = fails(dir.path(), Duration::from_secs(5));
    assert!(
        text.contains("big.yaml: file is 104857600 bytes, over the limit of 16777216 bytes"),
        "{text}"
    );
}

#[test]
fn a_hundred_thousand_tiny_files_are_refused_naming_the_first_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..100_000 {
        fs::write(
            dir.path().join(format!("f{i:06}.yaml")),
            config_map(&format!("c{i}")),
        )
        .unwrap();
    }
    let text = fails(dir.path(), Duration::from_secs(60));
    assert!(
        text.contains("more than 20000 manifest files (the first over the limit: f020000.yaml)"),
        "{text}"
    );
}

#[test]
fn symlink_loops_and_links_out_of_the_repository_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::os::unix::fs::symlink("b.yaml", root.join("a.yaml")).unwrap();
    std::os::unix::fs::symlink("a.yaml", root.join("b.yaml")).unwrap();
    std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd.yaml")).unwrap();
    write_tree(root, &[("ok.yaml", &config_map("ok"))]);
    let text = fails(root, Duration::from_secs(5));
    for name in ["a.yaml", "b.yaml", "loop"] {
        assert!(
            text.contains(&format!("{name}: Too many levels of symbolic links")),
            "{name}: {text}"
        );
    }
    assert!(
        text.contains("passwd.yaml: symbolic link points outside the repository (/etc/passwd)"),
        "{text}"
    );
    assert!(
        !text.contains("root:"),
        "the content of /etc/passwd leaked: {text}"
    );
}

#[test]
fn a_dot_git_file_pointing_elsewhere_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            (".git", "gitdir: /etc\n"),
            ("sub/.git", "gitdir: ../../../../etc\n"),
            ("sub/ok.yaml", &config_map("ok")),
        ],
    );
    let manifests = render(dir.path(), &RenderOptions::default()).unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0].source.file, "sub/ok.yaml");
}

#[test]
fn file_names_with_newlines_and_non_utf8_bytes_are_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("new\nline.yaml"), "kind: [\n").unwrap();
    let bad = std::ffi::OsStr::from_bytes(b"bad\xff\xfe.yaml");
    fs::write(root.join(bad), "kind: [\n").unwrap();
    fs::write(root.join("tab\there.yaml"), config_map("tab")).unwrap();
    let errors = render_err(root, &RenderOptions::default());
    let text = errors.to_string();
    // One line per error: a name cannot forge another line.
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains("  - new\\nline.yaml (document 0, line 1)"),
        "{text}"
    );
    assert!(
        text.contains("  - bad\\xFF\\xFE.yaml (document 0, line 1)"),
        "{text}"
    );

    // Valid ones render, named escaped.
    fs::remove_file(root.join("new\nline.yaml")).unwrap();
    fs::remove_file(root.join(bad)).unwrap();
    let manifests = render(root, &RenderOptions::default()).unwrap();
    assert_eq!(manifests[0].source.file, "tab\\there.yaml");
}

#[test]
fn a_kustomization_with_a_remote_base_fails_without_network_naming_it() {
    if !tool_tests_enabled("a_kustomization_with_a_remote_base_fails_without_network_naming_it") {
        return;
    }
    require_tool("kustomize");
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[(
            "kustomization.yaml",
            "resources:\n- https://github.invalid/org/repo//base?ref=v1\n",
        )],
    );
    let started = Instant::now();
    let errors = render_err(dir.path(), &RenderOptions::default());
    let text = error_lines(&errors).join("\n");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert!(text.contains("kustomize"), "{text}");
    assert!(text.contains("github.invalid"), "{text}");
    assert!(text.contains("renderers get no network"), "{text}");
}

#[test]
fn a_chart_using_lookup_renders_without_reaching_a_cluster() {
    if !tool_tests_enabled("a_chart_using_lookup_renders_without_reaching_a_cluster") {
        return;
    }
    require_tool("helm");
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            (
                "Chart.yaml",
                "apiVersion: v2\nname: looker\nversion: 0.1.0\n",
            ),
            (
                "templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: looker\ndata:\n  found: {{ (lookup \"v1\" \"Secret\" \"kube-system\" \"\") | len | quote }}\n",
            ),
        ],
    );
    let options = RenderOptions {
        render_type: RenderType::Helm,
        ..RenderOptions::default()
    };
    // helm template never talks to a cluster: lookup gives nothing, whatever KUBECONFIG says.
    let manifests = render(dir.path(), &options).unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0].object["data"]["found"], "0");
}
