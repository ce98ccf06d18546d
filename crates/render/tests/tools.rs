//! Against the real tools (`HEADWAY_TOOL_TESTS=1`, with `kustomize`, `helm` and `kubectl` on
//! PATH, as `cargo xtask test` provides): Headway's render gives the same objects as the tools.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use headway_model::Manifest;
use headway_render::{RenderOptions, RenderType, ToolOptions, parse_manifests, render};
use support::*;

/// The object set, keyed by identity, as comparable text.
fn object_set(manifests: &[Manifest]) -> BTreeMap<String, serde_json::Value> {
    manifests
        .iter()
        .map(|m| (m.id.to_string(), m.object.clone()))
        .collect()
}

fn run(program: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn kustomize_directory_renders_like_kubectl_kustomize() {
    if !tool_tests_enabled("kustomize_directory_renders_like_kubectl_kustomize") {
        return;
    }
    let kubectl = require_tool("kubectl");
    require_tool("kustomize");
    let dir = testdata("kustomize/overlays/prod");
    let expected = parse_manifests(
        &run(&kubectl, &["kustomize", dir.to_str().unwrap()]),
        "kubectl",
    )
    .unwrap();

    // Auto-detected, with `kustomize` (the boundary lets the overlay reach its base).
    let options = RenderOptions {
        boundary: Some(testdata("kustomize")),
        ..RenderOptions::default()
    };
    let got = render(&dir, &options).unwrap();
    assert_eq!(object_set(&got), object_set(&expected));
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].source.file, "kustomize:overlays/prod");
    let deploy = got.iter().find(|m| m.id.kind == "Deployment").unwrap();
    assert_eq!(deploy.id.to_string(), "Deployment.apps/prod/prod-web");
    assert_eq!(deploy.object["spec"]["replicas"], 3);
    assert_eq!(
        deploy.object["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"],
        493
    );

    // The `kubectl kustomize` fallback (no `kustomize` on the tools' PATH) gives the same.
    let only_kubectl = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&kubectl, only_kubectl.path().join("kubectl")).unwrap();
    let options = RenderOptions {
        tools: ToolOptions {
            path: Some(only_kubectl.path().as_os_str().to_owned()),
            ..ToolOptions::default()
        },
        ..options
    };
    let got = render(&dir, &options).unwrap();
    assert_eq!(object_set(&got), object_set(&expected));

    // With neither, the error names both.
    let empty = tempfile::tempdir().unwrap();
    let options = RenderOptions {
        tools: ToolOptions {
            path: Some(empty.path().as_os_str().to_owned()),
            ..ToolOptions::default()
        },
        ..options
    };
    let lines = error_lines(&render_err(&dir, &options));
    assert_eq!(
        lines,
        ["kustomize not found on PATH (looked for kustomize, kubectl)"]
    );
}

#[test]
fn kustomize_errors_carry_the_tool_stderr() {
    if !tool_tests_enabled("kustomize_errors_carry_the_tool_stderr") {
        return;
    }
    require_tool("kustomize");
    let errors = render_err(&testdata("kustomize-broken"), &RenderOptions::default());
    let lines = error_lines(&errors);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("kustomize build "), "{lines:?}");
    assert!(lines[0].contains("failed (exit code 1)"), "{lines:?}");
    assert!(lines[0].contains("does-not-exist.yaml"), "{lines:?}");
}

#[test]
fn helm_chart_renders_like_helm_template() {
    if !tool_tests_enabled("helm_chart_renders_like_helm_template") {
        return;
    }
    let helm = require_tool("helm");
    let dir = testdata("helm/demo");
    let values = dir.join("values-prod.yaml");
    let expected = parse_manifests(
        &run(
            &helm,
            &[
                "template",
                "rel",
                dir.to_str().unwrap(),
                "--namespace",
                "apps",
                "--values",
                values.to_str().unwrap(),
                "--include-crds",
            ],
        ),
        "helm",
    )
    .unwrap();
    let mut options = RenderOptions::default();
    options.helm.release_name = "rel".into();
    options.helm.namespace = "apps".into();
    options.helm.values_files = vec!["values-prod.yaml".into()];
    let got = render(&dir, &options).unwrap();
    assert_eq!(object_set(&got), object_set(&expected));
    let ids: Vec<String> = got.iter().map(|m| m.id.to_string()).collect();
    assert!(
        ids.contains(
            &"CustomResourceDefinition.apiextensions.k8s.io/gadgets.example.com".to_string()
        ),
        "{ids:?}"
    );
    let deploy = got.iter().find(|m| m.id.kind == "Deployment").unwrap();
    assert_eq!(deploy.id.to_string(), "Deployment.apps/apps/rel-web");
    assert_eq!(deploy.object["spec"]["replicas"], 4);
    assert_eq!(got[0].source.file, "helm:.");

    // Without CRDs.
    options.helm.include_crds = false;
    let got = render(&dir, &options).unwrap();
    assert!(got.iter().all(|m| m.id.kind != "CustomResourceDefinition"));
}

#[test]
fn helm_errors_carry_the_tool_stderr() {
    if !tool_tests_enabled("helm_errors_carry_the_tool_stderr") {
        return;
    }
    require_tool("helm");
    // A dependency that is not vendored: helm must not try to download it.
    let options = RenderOptions {
        render_type: RenderType::Helm,
        ..RenderOptions::default()
    };
    let lines = error_lines(&render_err(&testdata("helm-broken"), &options));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("helm template release "), "{lines:?}");
    assert!(
        lines[0].contains("missing in charts/ directory: redis"),
        "{lines:?}"
    );
}
