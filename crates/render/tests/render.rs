//! Rendering plain directories, every error path, limits, symlinks and child-process handling
//! (with fake tools: real kustomize/helm are in `tools.rs`).

mod support;

use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use headway_render::{
    Limits, RenderError, RenderOptions, RenderType, ToolOptions, detect, output, parse_manifests,
    render,
};
use support::*;

fn plain() -> RenderOptions {
    RenderOptions {
        render_type: RenderType::Plain,
        ..RenderOptions::default()
    }
}

#[test]
fn plain_directory_matches_golden() {
    let manifests = render(&testdata("plain"), &RenderOptions::default()).unwrap();
    check_golden("plain.golden.yaml", &golden_form(&manifests));
}

#[test]
fn plain_order_rules_and_skips() {
    let manifests = render(&testdata("plain"), &plain()).unwrap();
    let got: Vec<String> = manifests
        .iter()
        .map(|m| format!("{} {}", m.id, m.source))
        .collect();
    assert_eq!(
        got,
        [
            "Namespace/demo 00-namespace.yaml (document 0, line 3)",
            "ConfigMap/demo/scripts apps/list.yaml (document 0, line 1)",
            "ConfigMap/demo/settings apps/list.yaml (document 0, line 1)",
            "Secret/demo/token apps/secret.json (document 0, line 1)",
            "Deployment.apps/demo/web apps/web.yaml (document 0, line 1)",
            "Service/demo/web apps/web.yaml (document 2, line 37)",
            "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com crds/widgets.yml (document 0, line 1)",
            "Widget.example.com/demo/gear crds/widgets.yml (document 1, line 19)",
        ]
    );
}

#[test]
fn yaml_1_1_scalars_read_as_kubectl_reads_them() {
    let manifests = render(&testdata("plain"), &plain()).unwrap();
    let web = manifests
        .iter()
        .find(|m| m.id.kind == "Deployment")
        .unwrap();
    let spec = &web.object["spec"]["template"]["spec"];
    assert_eq!(spec["automountServiceAccountToken"], true);
    assert_eq!(spec["containers"][0]["volumeMounts"][0]["readOnly"], true);
    assert_eq!(spec["volumes"][0]["configMap"]["defaultMode"], 493);
    assert_eq!(spec["containers"][0]["args"][2], "--verbose=no");
    assert_eq!(web.object["metadata"]["labels"]["version"], "1.0");
    let svc = manifests.iter().find(|m| m.id.kind == "Service").unwrap();
    assert_eq!(svc.object["metadata"]["annotations"]["quoted-bool"], "yes");
    assert_eq!(
        svc.object["metadata"]["annotations"]["quoted-octal"],
        "0755"
    );
    // Merge keys are expanded, explicit keys win.
    let gear = manifests.iter().find(|m| m.id.kind == "Widget").unwrap();
    assert_eq!(
        gear.object["spec"],
        serde_json::json!({"size": 3, "color": "red"})
    );
}

#[test]
fn yaml_output_rereads_to_the_same_objects() {
    let manifests = render(&testdata("plain"), &plain()).unwrap();
    let text = output::to_yaml_stream(&manifests);
    let again = parse_manifests(&text, "stdout").unwrap();
    assert_eq!(again.len(), manifests.len());
    for (a, b) in manifests.iter().zip(&again) {
        assert_eq!(a.object, b.object, "{}", a.id);
        assert_eq!(a.digest, b.digest);
    }
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&output::to_json_array(&manifests)).unwrap();
    assert_eq!(json.len(), manifests.len());
    assert_eq!(
        output::to_list(&manifests)["items"]
            .as_array()
            .unwrap()
            .len(),
        manifests.len()
    );
}

#[test]
fn list_documents_are_flattened() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n---\napiVersion: v1\nkind: List\nitems: []\n";
    let m = parse_manifests(text, "list.yaml").unwrap();
    let names: Vec<&str> = m.iter().map(|m| m.id.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn every_error_is_reported_with_file_document_and_line() {
    let errors = render_err(&testdata("errors"), &plain());
    check_golden("errors.golden.txt", &format!("{errors}\n"));
    let lines = error_lines(&errors);
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    // Invalid YAML names the file, the document index and the line.
    assert!(
        has("a.yaml (document 1, line 11): invalid YAML"),
        "{lines:#?}"
    );
    // A duplicate mapping key names file and line.
    assert!(
        has("c.yaml (document 0, line 7): invalid YAML: duplicate mapping key: a"),
        "{lines:#?}"
    );
    // Not an object.
    assert!(
        has("d.yaml (document 0, line 2): not a Kubernetes object: missing or empty field `kind`"),
        "{lines:#?}"
    );
    assert!(
        has("d.yaml (document 1, line 6): not a Kubernetes object: the document is not a mapping"),
        "{lines:#?}"
    );
    assert!(
        has(
            "d.yaml (document 2, line 8): not a Kubernetes object: missing or empty field `metadata.name`"
        ),
        "{lines:#?}"
    );
    assert!(has("(List item 1)"), "{lines:#?}");
    // A duplicate identity names both places.
    assert!(
        has(
            "ConfigMap/demo/dup is defined twice: in a.yaml (document 0, line 1) and in b.yaml (document 0, line 1)"
        ),
        "{lines:#?}"
    );
    assert!(
        has("e.json (document 0, line 4): invalid YAML: trailing comma"),
        "{lines:#?}"
    );
    assert_eq!(lines.len(), 8, "{lines:#?}");
}

#[test]
fn a_three_thousand_document_stream_parses() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..3000)
        .map(|i| format!("---\n{}", config_map(&format!("cm-{i}"))))
        .collect();
    write_tree(dir.path(), &[("big.yaml", &text)]);
    let m = render(dir.path(), &plain()).unwrap();
    assert_eq!(m.len(), 3000);
    assert_eq!(m[2999].source.document, 2999);
    assert_eq!(m[2999].source.line, Some(2999 * 6 + 2));
}

#[test]
fn detection_picks_kustomize_then_helm_then_plain() {
    assert_eq!(
        detect(&testdata("kustomize/overlays/prod")),
        RenderType::Kustomize
    );
    assert_eq!(detect(&testdata("helm/demo")), RenderType::Helm);
    assert_eq!(detect(&testdata("plain")), RenderType::Plain);
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("Kustomization", "resources: []\n"),
            ("Chart.yaml", "name: x\n"),
        ],
    );
    assert_eq!(detect(dir.path()), RenderType::Kustomize);
    assert_eq!("helm".parse::<RenderType>().unwrap(), RenderType::Helm);
    assert!("jsonnet".parse::<RenderType>().is_err());
}

#[test]
fn explicit_type_overrides_detection() {
    // A chart rendered as plain: only its non-template YAML would count, and Chart.yaml is skipped.
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[("Chart.yaml", "name: x\n"), ("cm.yaml", &config_map("a"))],
    );
    let m = render(dir.path(), &plain()).unwrap();
    assert_eq!(m.len(), 1);
}

#[test]
fn missing_directory_is_an_error() {
    let errors = render_err(std::path::Path::new("/nonexistent/headway"), &plain());
    assert!(matches!(
        errors.errors()[0],
        RenderError::NotADirectory { .. }
    ));
}

#[test]
fn file_size_limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!(
        "{}data:\n  x: \"{}\"\n",
        config_map("big"),
        "x".repeat(2000)
    );
    write_tree(
        dir.path(),
        &[
            ("a.yaml", &config_map("a")),
            ("big.yaml", &big),
            ("z.yaml", &config_map("z")),
        ],
    );
    let options = RenderOptions {
        limits: Limits {
            max_file_bytes: 1000,
            ..Limits::default()
        },
        ..plain()
    };
    let errors = render_err(dir.path(), &options);
    let lines = error_lines(&errors);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let expected = format!(
        "big.yaml: file is {} bytes, over the limit of 1000 bytes per file",
        big.len()
    );
    assert_eq!(lines[0], expected);

    let options = RenderOptions {
        limits: Limits {
            max_total_bytes: 150,
            ..Limits::default()
        },
        ..plain()
    };
    let lines = error_lines(&render_err(dir.path(), &options));
    assert!(
        lines[0].contains("more than 150 bytes (limit reached at big.yaml)"),
        "{lines:?}"
    );

    let options = RenderOptions {
        limits: Limits {
            max_files: 2,
            ..Limits::default()
        },
        ..plain()
    };
    assert_eq!(
        error_lines(&render_err(dir.path(), &options)),
        ["more than 2 manifest files (the first over the limit: z.yaml)"]
    );

    let options = RenderOptions {
        limits: Limits {
            max_objects: 2,
            ..Limits::default()
        },
        ..plain()
    };
    assert_eq!(
        error_lines(&render_err(dir.path(), &options)),
        ["more than 2 objects"]
    );
}

#[test]
fn symlinks_out_of_the_root_are_errors_and_inside_ones_are_read() {
    let outside = tempfile::tempdir().unwrap();
    write_tree(outside.path(), &[("secret.yaml", &config_map("outside"))]);
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("real/cm.yaml", &config_map("inside"))]);
    symlink(
        outside.path().join("secret.yaml"),
        dir.path().join("escape.yaml"),
    )
    .unwrap();
    symlink(
        "../../etc/passwd-missing",
        dir.path().join("dangling-escape.yaml"),
    )
    .unwrap();
    symlink(outside.path(), dir.path().join("escape-dir")).unwrap();
    symlink("real/cm.yaml", dir.path().join("link-inside.yaml")).unwrap();
    symlink("real", dir.path().join("link-dir")).unwrap();

    let lines = error_lines(&render_err(dir.path(), &plain()));
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("dangling-escape.yaml: symbolic link points outside")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("escape-dir: symbolic link points outside")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("escape.yaml: symbolic link points outside")),
        "{lines:#?}"
    );
    // The link inside the root is read (so the object is defined twice); the linked directory is not followed.
    assert!(
        lines.iter().any(|l| l.contains("ConfigMap/demo/inside is defined twice: in link-inside.yaml (document 0, line 1) and in real/cm.yaml")),
        "{lines:#?}"
    );

    // With a wider boundary, the same link is inside.
    let parent = tempfile::tempdir().unwrap();
    write_tree(
        parent.path(),
        &[
            ("shared/cm.yaml", &config_map("shared")),
            ("app/x.yaml", &config_map("x")),
        ],
    );
    symlink("../shared/cm.yaml", parent.path().join("app/shared.yaml")).unwrap();
    let wide = RenderOptions {
        boundary: Some(parent.path().to_path_buf()),
        ..plain()
    };
    assert_eq!(render(&parent.path().join("app"), &wide).unwrap().len(), 2);
    assert!(render(&parent.path().join("app"), &plain()).is_err());
}

#[test]
fn tool_directories_are_checked_for_escaping_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[("kustomization.yaml", "resources: [cm.yaml]\n")],
    );
    symlink("/etc/hostname", dir.path().join("cm.yaml")).unwrap();
    let tools = tempfile::tempdir().unwrap();
    let never = fake_tool(tools.path(), "kustomize", "echo should-not-run >&2; exit 3");
    let options = RenderOptions {
        tools: ToolOptions {
            kustomize: Some(never),
            ..ToolOptions::default()
        },
        ..RenderOptions::default()
    };
    let lines = error_lines(&render_err(dir.path(), &options));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0]
            .starts_with("cm.yaml: symbolic link points outside the repository (/etc/hostname)"),
        "{lines:?}"
    );
}

fn fake_kustomize(script: &str, timeout: Duration) -> (tempfile::TempDir, RenderOptions) {
    let tools = tempfile::tempdir().unwrap();
    let program = fake_tool(tools.path(), "kustomize", script);
    let options = RenderOptions {
        render_type: RenderType::Kustomize,
        tools: ToolOptions {
            kustomize: Some(program),
            timeout,
            ..ToolOptions::default()
        },
        ..RenderOptions::default()
    };
    (tools, options)
}

#[test]
fn a_tool_that_hangs_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // The child also starts a grandchild that holds the pipes open: the group is killed.
    let (_tools, options) = fake_kustomize(
        "echo building >&2; sleep 30 & sleep 30",
        Duration::from_millis(500),
    );
    let start = Instant::now();
    let errors = render_err(dir.path(), &options);
    let elapsed = start.elapsed();
    // Killed at the timeout, long before the tool's 30 s sleep ends.
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    let lines = error_lines(&errors);
    assert!(lines[0].starts_with("kustomize build"), "{lines:?}");
    assert!(
        lines[0].contains("timed out after 500.0ms and was killed"),
        "{lines:?}"
    );
    assert!(
        lines[0].contains("building"),
        "stderr is part of the error: {lines:?}"
    );
}

/// Whether a process is running: `/proc/<pid>` exists and is not a zombie (a killed process
/// whose parent has not reaped it yet is dead).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

/// Kills what a failed test left behind.
struct Reaper(Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

#[test]
fn a_timed_out_tool_and_its_children_are_all_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pids = tempfile::tempdir().unwrap();
    let p = pids.path().display();
    // The tool starts a child that sleeps (no signal ignored), records both pids, and becomes a
    // sleep itself (`exec`, so that its pid is the one recorded).
    let (_tools, options) = fake_kustomize(
        &format!(
            "sleep 300 & echo $! > {p}/grandchild.tmp; mv {p}/grandchild.tmp {p}/grandchild\n\
             echo $$ > {p}/child.tmp; mv {p}/child.tmp {p}/child; exec sleep 300"
        ),
        Duration::from_millis(1500),
    );
    let errors = render_err(dir.path(), &options);
    assert!(
        error_lines(&errors)[0].contains("timed out after"),
        "{errors}"
    );
    let read = |name: &str| -> u32 {
        let text = std::fs::read_to_string(pids.path().join(name))
            .unwrap_or_else(|e| panic!("the tool did not record its {name} pid in time: {e}"));
        text.trim().parse().unwrap()
    };
    let (child, grandchild) = (read("child"), read("grandchild"));
    let _reaper = Reaper(vec![child, grandchild]);
    // The group was sent SIGKILL before the render returned; the kernel may take a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (alive(child) || alive(grandchild)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(child), "the tool (pid {child}) is still running");
    assert!(
        !alive(grandchild),
        "the tool's child (pid {grandchild}) is still running: the process group was not killed"
    );
}

#[test]
fn a_failing_tool_reports_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let (_tools, options) = fake_kustomize(
        "echo 'Error: accumulating resources: boom' >&2; exit 1",
        Duration::from_secs(10),
    );
    let lines = error_lines(&render_err(dir.path(), &options));
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("failed (exit code 1):\n    Error: accumulating resources: boom"),
        "{lines:?}"
    );

    let tools = tempfile::tempdir().unwrap();
    let helm = fake_tool(
        tools.path(),
        "helm",
        "echo \"Error: template: $2/templates/x.yaml:3: bad\" >&2; exit 1",
    );
    let options = RenderOptions {
        render_type: RenderType::Helm,
        tools: ToolOptions {
            helm: Some(helm),
            ..ToolOptions::default()
        },
        ..RenderOptions::default()
    };
    let lines = error_lines(&render_err(dir.path(), &options));
    assert!(lines[0].starts_with("helm template release "), "{lines:?}");
    assert!(lines[0].contains("templates/x.yaml:3: bad"), "{lines:?}");
}

#[test]
fn tool_output_is_parsed_and_named_after_the_tool() {
    let dir = tempfile::tempdir().unwrap();
    let (_tools, options) = fake_kustomize(
        "printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: a\\n---\\nkind: Oops\\n'",
        Duration::from_secs(10),
    );
    let lines = error_lines(&render_err(dir.path(), &options));
    assert_eq!(
        lines,
        [
            "kustomize:. (document 1, line 6): not a Kubernetes object: missing or empty field `apiVersion`"
        ]
    );
}

#[test]
fn tools_run_in_a_clean_private_environment() {
    let dir = tempfile::tempdir().unwrap();
    // CARGO_MANIFEST_DIR is set for this test process and must not reach the tool.
    let (_tools, options) = fake_kustomize(
        r#"cat <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: env}
data:
  home: "$HOME"
  helm: "$HELM_CACHE_HOME"
  kubeconfig: "$KUBECONFIG"
  leaked: "${CARGO_MANIFEST_DIR:-none}"
  cwd: "$(pwd)"
  args: "$*"
EOF"#,
        Duration::from_secs(10),
    );
    // kustomize inflates `helmCharts` with the same helm (found on PATH, or this one).
    let mut options = options;
    let helm = fake_tool(_tools.path(), "helm", "exit 1");
    options.tools.helm = Some(helm.clone());
    let m = render(dir.path(), &options).unwrap();
    let data = &m[0].object["data"];
    let home = data["home"].as_str().unwrap();
    assert!(home.contains("headway-render-"), "{data}");
    assert!(data["helm"].as_str().unwrap().starts_with(home), "{data}");
    assert_eq!(data["kubeconfig"], "/dev/null");
    assert_eq!(data["leaked"], "none");
    let canonical = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(data["cwd"], canonical.to_str().unwrap());
    assert_eq!(
        data["args"],
        format!(
            "build --enable-helm --helm-command {} {}",
            helm.display(),
            canonical.display()
        )
    );
    // The private home is removed afterwards.
    assert!(!std::path::Path::new(home).exists());
}

#[test]
fn helm_values_files_must_stay_inside_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[("Chart.yaml", "name: x\n"), ("values-a.yaml", "a: 1\n")],
    );
    let tools = tempfile::tempdir().unwrap();
    let helm = fake_tool(tools.path(), "helm", "echo \"# $*\"");
    let mut options = RenderOptions {
        tools: ToolOptions {
            helm: Some(helm),
            ..ToolOptions::default()
        },
        ..RenderOptions::default()
    };
    options.helm.release_name = "rel".into();
    options.helm.namespace = "ns".into();
    options.helm.values_files = vec!["values-a.yaml".into()];
    assert_eq!(render(dir.path(), &options).unwrap().len(), 0);
    options.helm.values_files = vec!["../../../etc/hostname".into(), "missing.yaml".into()];
    let lines = error_lines(&render_err(dir.path(), &options));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("outside the repository"), "{lines:?}");
    assert!(lines[1].starts_with("missing.yaml: "), "{lines:?}");
}

#[test]
fn a_missing_tool_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let options = RenderOptions {
        render_type: RenderType::Helm,
        tools: ToolOptions {
            helm: Some("/nonexistent/helm".into()),
            ..ToolOptions::default()
        },
        ..RenderOptions::default()
    };
    let lines = error_lines(&render_err(dir.path(), &options));
    assert!(
        lines[0].starts_with("helm: cannot run /nonexistent/helm"),
        "{lines:?}"
    );
}

#[test]
fn errors_display_lists_all_of_them() {
    let text = format!("{}---\nkind: X\n---\n{}", config_map("a"), config_map("a"));
    let e = parse_manifests(&text, "s.yaml").unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with("rendering failed with 2 errors:\n  - s.yaml (document 1, line 7)"),
        "{shown}"
    );
    assert!(
        shown.contains("\n  - ConfigMap/demo/a is defined twice"),
        "{shown}"
    );
}

#[test]
fn tools_are_looked_up_on_the_configured_path() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let mut options = RenderOptions {
        render_type: RenderType::Kustomize,
        tools: ToolOptions {
            path: Some(empty.path().as_os_str().to_owned()),
            ..ToolOptions::default()
        },
        ..RenderOptions::default()
    };
    assert_eq!(
        error_lines(&render_err(dir.path(), &options)),
        ["kustomize not found on PATH (looked for kustomize, kubectl)"]
    );
    options.render_type = RenderType::Helm;
    assert_eq!(
        error_lines(&render_err(dir.path(), &options)),
        ["helm not found on PATH (looked for helm)"]
    );
    // `kubectl kustomize` is the fallback.
    fake_tool(empty.path(), "kubectl", "echo \"# $*\" >&2; exit 7");
    options.render_type = RenderType::Kustomize;
    let lines = error_lines(&render_err(dir.path(), &options));
    assert!(lines[0].starts_with("kubectl kustomize "), "{lines:?}");
    assert!(
        lines[0].contains("(exit code 7):\n    # kustomize "),
        "{lines:?}"
    );
}
