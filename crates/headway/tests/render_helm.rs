//! `headway render` and Helm: remote charts (`--helm-repo URL --chart NAME --version V`, HTTP and
//! OCI repositories on 127.0.0.1) and the capabilities charts see (`--kube-version`,
//! `--api-versions`, `--cluster`, and the default), and a local chart's dependencies that its
//! `charts/` lacks. Needs `HEADWAY_TOOL_TESTS=1` with `helm` and
//! `crane` on PATH; the `--cluster` part also `HEADWAY_CLUSTER_TESTS=1`.

use std::path::Path;
use std::process::{Command, Output};

use headway_tests::charts::{ChartRepository, Registry, package_chart};

fn tool_tests(test: &str) -> bool {
    let on = std::env::var("HEADWAY_TOOL_TESTS").is_ok_and(|v| v == "1");
    if !on {
        eprintln!("skipping: {test} needs HEADWAY_TOOL_TESTS=1 and helm, crane on PATH");
    }
    on
}

fn headway(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headway"))
        .args(args)
        .env("HEADWAY_CHART_CACHE", cache)
        .env("HEADWAY_HELM_PASSWORD", "s3cret")
        .output()
        .expect("run headway")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "headway failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field<'a>(yaml: &'a str, key: &str) -> Vec<&'a str> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .map(|v| v.trim_matches('"'))
        .collect()
}

#[test]
fn remote_charts_render_locally() {
    if !tool_tests("remote_charts_render_locally") {
        return;
    }
    let charts = ChartRepository::serve("web", &["1.0.0", "1.1.0"], Some(("reader", "s3cret")));
    let server = &charts.server;
    let cache = tempfile::tempdir().unwrap();
    let values = tempfile::tempdir().unwrap();
    std::fs::write(values.path().join("values.yaml"), "greeting: local\n").unwrap();

    let args = |version: &str| {
        vec![
            "render".to_string(),
            values.path().display().to_string(),
            "--helm-repo".into(),
            server.url.clone(),
            "--chart".into(),
            "web".into(),
            "--version".into(),
            version.into(),
            "--helm-username".into(),
            "reader".into(),
            "--kube-version".into(),
            "v1.34.2".into(),
        ]
    };
    let run = |a: Vec<String>| {
        headway(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            cache.path(),
        )
    };
    let out = run(args("~1.0"));
    let yaml = ok(&out);
    assert_eq!(field(&yaml, "chartVersion"), ["1.0.0"]);
    assert_eq!(field(&yaml, "greeting"), ["local"]);
    assert_eq!(field(&yaml, "kube"), ["v1.34.2"]);
    // The release is named after the chart; the chart and its digest are named on stderr.
    assert_eq!(field(&yaml, "name")[0], "web-settings");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chart web 1.0.0 (sha256:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An unknown version fails with exit code 1 and says why.
    let out = run(args("2.0.0"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fetching chart web 2.0.0 from") && err.contains("newest: 1.1.0, 1.0.0"),
        "{err}"
    );

    // OCI, without a values directory.
    let registry = Registry::start();
    let archive = package_chart(charts.home.path(), charts.dir.path(), "web", "3.0.0");
    registry.push(charts.home.path(), &archive, "charts");
    let yaml = ok(&headway(
        &[
            "render",
            "--helm-repo",
            &format!("oci://{}/charts", registry.host),
            "--chart",
            "web",
            "--version",
            "3.0.0",
            "--helm-plain-http",
        ],
        cache.path(),
    ));
    assert_eq!(field(&yaml, "chartVersion"), ["3.0.0"]);
    assert_eq!(
        field(&yaml, "greeting"),
        ["hello"],
        "the chart's own values"
    );
    // Without --kube-version: the documented default.
    assert_eq!(field(&yaml, "kube"), [headway_render_default()]);
}

/// `headway_render::DEFAULT_KUBE_VERSION`, read from the source so the test needs no extra crate.
fn headway_render_default() -> &'static str {
    let src = include_str!("../../render/src/options.rs");
    let line = src
        .lines()
        .find(|l| l.starts_with("pub const DEFAULT_KUBE_VERSION"))
        .unwrap();
    line.split('"').nth(1).unwrap()
}

#[test]
fn cluster_capabilities_are_read_with_dash_dash_cluster() {
    if !tool_tests("cluster_capabilities_are_read_with_dash_dash_cluster") {
        return;
    }
    if std::env::var("HEADWAY_CLUSTER_TESTS").is_ok_and(|v| v == "1") {
        let chart =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../render/testdata/helm-capabilities");
        let cache = tempfile::tempdir().unwrap();
        let yaml = ok(&headway(
            &["render", chart.to_str().unwrap(), "--cluster"],
            cache.path(),
        ));
        let server = ok(&Command::new("kubectl")
            .args(["version", "-o", "json"])
            .output()
            .unwrap());
        let server: serde_json::Value = serde_json::from_str(&server).unwrap();
        let git_version = server["serverVersion"]["gitVersion"].as_str().unwrap();
        assert_eq!(field(&yaml, "kubeVersion"), [git_version]);
        assert_eq!(field(&yaml, "pdbApi"), ["policy/v1"]);
        assert!(!yaml.contains("ServiceMonitor"), "{yaml}");
    } else {
        eprintln!("skipping the --cluster part: HEADWAY_CLUSTER_TESTS is not 1");
    }
    // Explicit flags.
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../render/testdata/helm-capabilities");
    let cache = tempfile::tempdir().unwrap();
    let yaml = ok(&headway(
        &[
            "render",
            chart.to_str().unwrap(),
            "--kube-version",
            "v1.29.0",
            "--api-versions",
            "monitoring.coreos.com/v1,policy/v1/PodDisruptionBudget",
        ],
        cache.path(),
    ));
    assert_eq!(field(&yaml, "kubeVersion"), ["v1.29.0"]);
    assert_eq!(field(&yaml, "pdbApi"), ["policy/v1"]);
    assert!(yaml.contains("kind: ServiceMonitor"), "{yaml}");
    // Too old for the chart: helm's message, exit code 1.
    let out = headway(
        &[
            "render",
            chart.to_str().unwrap(),
            "--kube-version",
            "v1.21.0",
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("incompatible with Kubernetes v1.21.0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_local_charts_missing_dependencies_are_downloaded() {
    if !tool_tests("a_local_charts_missing_dependencies_are_downloaded") {
        return;
    }
    let charts = ChartRepository::serve("web", &["1.0.0", "1.1.0"], None);
    let chart = tempfile::tempdir().unwrap();
    let dir = chart.path().join("shop");
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        format!(
            "apiVersion: v2\nname: shop\nversion: 0.1.0\ndependencies:\n\
             - {{name: web, version: '~1.0.0', repository: '{}'}}\n",
            charts.server.url
        ),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = headway(
        &["render", dir.to_str().unwrap(), "--kube-version", "v1.33.0"],
        cache.path(),
    );
    let yaml = ok(&out);
    assert_eq!(field(&yaml, "chartVersion"), ["1.0.0"], "{yaml}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dependency web 1.0.0"), "{stderr}");
    assert!(
        !dir.join("charts").exists(),
        "the chart directory is left as it was"
    );

    // A dependency the repository does not have: the error names the chart and the dependency.
    std::fs::write(
        dir.join("Chart.yaml"),
        format!(
            "apiVersion: v2\nname: shop\nversion: 0.1.0\ndependencies:\n\
             - {{name: api, version: 1.0.0, repository: '{}'}}\n",
            charts.server.url
        ),
    )
    .unwrap();
    let out = headway(&["render", dir.to_str().unwrap()], cache.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fetching its dependency api 1.0.0") && stderr.contains("shop"),
        "{stderr}"
    );
}
