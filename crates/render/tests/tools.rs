//! Against the real tools (`HEADWAY_TOOL_TESTS=1`, with `kustomize`, `helm` and `kubectl` on
//! PATH, as `cargo xtask test` provides): Headway's render gives the same objects as the tools.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use headway_model::Manifest;
use headway_render::{
    Capabilities, DEFAULT_KUBE_VERSION, RenderOptions, RenderType, ToolOptions, parse_manifests,
    render,
};
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

/// `crates/render/testdata/helm-capabilities` branches on `.Capabilities` and declares
/// `kubeVersion: ">=1.23.0-0"`: Headway passes the target cluster's version and API versions as
/// `helm template` flags, and gives the same objects as `helm template` with those flags.
#[test]
fn helm_capabilities_render_like_helm_template_with_the_same_flags() {
    if !tool_tests_enabled("helm_capabilities_render_like_helm_template_with_the_same_flags") {
        return;
    }
    let helm = require_tool("helm");
    let dir = testdata("helm-capabilities");
    let api_versions = [
        "v1",
        "v1/ConfigMap",
        "policy/v1",
        "policy/v1/PodDisruptionBudget",
        "monitoring.coreos.com/v1",
        "monitoring.coreos.com/v1/ServiceMonitor",
    ];
    let mut args = vec![
        "template",
        "rel",
        dir.to_str().unwrap(),
        "--namespace",
        "apps",
        "--include-crds",
        "--kube-version",
        "v1.31.4",
    ];
    for a in api_versions {
        args.extend(["--api-versions", a]);
    }
    let expected = parse_manifests(&run(&helm, &args), "helm").unwrap();
    let mut options = RenderOptions::default();
    options.helm.release_name = "rel".into();
    options.helm.namespace = "apps".into();
    options.helm.capabilities = Capabilities {
        kube_version: "v1.31.4".into(),
        api_versions: api_versions.iter().map(|a| a.to_string()).collect(),
    };
    let got = render(&dir, &options).unwrap();
    assert_eq!(object_set(&got), object_set(&expected));
    let kinds: Vec<String> = got.iter().map(|m| m.id.to_string()).collect();
    assert_eq!(
        kinds,
        [
            "PodDisruptionBudget.policy/rel-web",
            "ConfigMap/rel-capabilities",
            "ServiceMonitor.monitoring.coreos.com/rel-web",
        ]
    );
    let cm = &got[1].object["data"];
    assert_eq!(cm["kubeVersion"], "v1.31.4");
    assert_eq!(cm["pdbApi"], "policy/v1");
    assert_eq!(cm["sidecars"], "emulated");
    assert_eq!(got[0].object["apiVersion"], "policy/v1");

    // Nothing known about the cluster: the documented default version, and only Helm's
    // built-in API versions (group/version, never group/version/Kind; no custom resources).
    options.helm.capabilities = Capabilities::default();
    let got = render(&dir, &options).unwrap();
    let ids: Vec<String> = got.iter().map(|m| m.id.to_string()).collect();
    assert_eq!(ids.len(), 2, "no ServiceMonitor without its API: {ids:?}");
    let cm = &got[1].object["data"];
    assert_eq!(cm["kubeVersion"], DEFAULT_KUBE_VERSION);
    assert_eq!(cm["sidecars"], "native");
    assert_eq!(got[0].object["apiVersion"], "policy/v1beta1");

    // A cluster older than the chart's kubeVersion constraint: helm's message, in full.
    options.helm.capabilities.kube_version = "v1.22.9".into();
    let lines = error_lines(&render_err(&dir, &options));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("--kube-version v1.22.9"), "{lines:?}");
    assert!(
        lines[0].contains(
            "chart requires kubeVersion: >=1.23.0-0 which is incompatible with Kubernetes v1.22.9"
        ),
        "{lines:?}"
    );

    // A malformed version is refused before helm runs, naming the value.
    options.helm.capabilities.kube_version = "latest".into();
    let lines = error_lines(&render_err(&dir, &options));
    assert!(lines[0].contains("kube version `latest`"), "{lines:?}");
}

/// `testdata/kustomize-features/overlays/prod`: `components` (a ServiceMonitor and two patches),
/// `replacements` (a generated ConfigMap name and a chart's Service name into env vars),
/// `configMapGenerator` with files (and `behavior: merge` in the overlay), `images`, and
/// `helmCharts` inflated through helm from a chart vendored under `charts/`: the same objects as
/// `kubectl kustomize --enable-helm`, with the real kustomize and with the kubectl fallback.
#[test]
fn kustomize_features_render_like_kubectl_kustomize() {
    if !tool_tests_enabled("kustomize_features_render_like_kubectl_kustomize") {
        return;
    }
    let kubectl = require_tool("kubectl");
    let helm = require_tool("helm");
    require_tool("kustomize");
    let dir = testdata("kustomize-features/overlays/prod");
    let expected = parse_manifests(
        &run(
            &kubectl,
            &[
                "kustomize",
                "--enable-helm",
                "--helm-command",
                helm.to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
        ),
        "kubectl",
    )
    .unwrap();
    let options = RenderOptions {
        boundary: Some(testdata("kustomize-features")),
        ..RenderOptions::default()
    };
    let got = render(&dir, &options).unwrap();
    assert_eq!(object_set(&got), object_set(&expected));
    let mut ids: Vec<String> = got.iter().map(|m| m.id.to_string()).collect();
    ids.sort();
    let config = ids
        .iter()
        .find(|i| i.starts_with("ConfigMap/"))
        .unwrap()
        .clone();
    assert!(
        config.starts_with("ConfigMap/shop/prod-web-config-"),
        "hashed: {config}"
    );
    assert_eq!(
        ids,
        [
            config.as_str(),
            "Deployment.apps/shop/prod-web",
            "Service/shop/prod-cache-redis-lite",
            "Service/shop/prod-web",
            "ServiceMonitor.monitoring.coreos.com/shop/prod-web",
            "StatefulSet.apps/shop/prod-cache-redis-lite",
        ]
    );
    let cm = got.iter().find(|m| m.id.kind == "ConfigMap").unwrap();
    let data = &cm.object["data"];
    assert!(
        data["app.properties"]
            .as_str()
            .unwrap()
            .contains("shop.currency=EUR")
    );
    assert!(data["nginx.conf"].as_str().unwrap().contains("listen 8080"));
    assert!(
        data["feature-flags.json"]
            .as_str()
            .unwrap()
            .contains("checkout-v2")
    );
    assert_eq!(data["LOG_LEVEL"], "warn", "the overlay's merge wins");
    let deploy = got.iter().find(|m| m.id.kind == "Deployment").unwrap();
    let pod = &deploy.object["spec"]["template"];
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    let env = &pod["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["value"], "prod-cache-redis-lite");
    assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:1.27.3");
    let sts = got.iter().find(|m| m.id.kind == "StatefulSet").unwrap();
    assert_eq!(sts.object["spec"]["replicas"], 2, "valuesInline");

    // The kubectl fallback inflates the chart the same way.
    let only_kubectl = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&kubectl, only_kubectl.path().join("kubectl")).unwrap();
    std::os::unix::fs::symlink(&helm, only_kubectl.path().join("helm")).unwrap();
    let fallback = RenderOptions {
        tools: ToolOptions {
            path: Some(only_kubectl.path().as_os_str().to_owned()),
            ..ToolOptions::default()
        },
        ..options.clone()
    };
    assert_eq!(
        object_set(&render(&dir, &fallback).unwrap()),
        object_set(&expected)
    );

    // A chart that is not vendored is not downloaded: a clear error naming the chart.
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(
        tree.path().join("kustomization.yaml"),
        "helmCharts:\n  - name: not-vendored\n    repo: https://charts.example.com\n    version: 1.0.0\n",
    )
    .unwrap();
    let lines = error_lines(&render_err(tree.path(), &RenderOptions::default()));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("not-vendored"), "{lines:?}");
}

/// Charts and kustomizations shaped like widely used public ones (`testdata/public`): what each
/// renders against a cluster like the local one is kept in `testdata/public.golden.txt`, and each
/// chart gives the same objects as `helm template` with the same flags.
#[test]
fn public_shaped_fixtures_render() {
    if !tool_tests_enabled("public_shaped_fixtures_render") {
        return;
    }
    let helm = require_tool("helm");
    require_tool("kustomize");
    let capabilities = Capabilities {
        kube_version: "v1.36.3".into(),
        api_versions: [
            "v1",
            "apps/v1",
            "batch/v1",
            "policy/v1",
            "policy/v1/PodDisruptionBudget",
            "networking.k8s.io/v1",
            "networking.k8s.io/v1/IngressClass",
            "admissionregistration.k8s.io/v1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    };
    let mut out = String::new();
    for name in [
        "cert-manager-like",
        "ingress-nginx-like",
        "shop-umbrella",
        "kube-prometheus-like",
    ] {
        let dir = testdata(&format!("public/{name}"));
        let mut options = RenderOptions::default();
        options.helm.release_name = "rel".into();
        options.helm.namespace = "infra".into();
        options.helm.capabilities = capabilities.clone();
        let got = render(&dir, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        if headway_render::detect(&dir) == RenderType::Helm {
            let mut args = vec![
                "template",
                "rel",
                dir.to_str().unwrap(),
                "--namespace",
                "infra",
                "--include-crds",
                "--skip-tests",
                "--kube-version",
                "v1.36.3",
            ];
            for a in &capabilities.api_versions {
                args.extend(["--api-versions", a.as_str()]);
            }
            let expected = parse_manifests(&run(&helm, &args), "helm").unwrap();
            assert_eq!(object_set(&got), object_set(&expected), "{name}");
        }
        out.push_str(&format!("{name} ({}):\n", headway_render::detect(&dir)));
        for m in &got {
            let hook = m.object["metadata"]["annotations"]["helm.sh/hook"]
                .as_str()
                .map(|h| format!(" [hook {h}]"))
                .unwrap_or_default();
            out.push_str(&format!("  {} from {}{hook}\n", m.id, m.source));
        }
    }
    check_golden("public.golden.txt", &out);
}
