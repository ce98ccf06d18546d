//! Remote charts against real repositories on 127.0.0.1 (`HEADWAY_TOOL_TESTS=1`, with `helm`
//! and `crane` on PATH): an HTTP repository made with `helm package` and `helm repo index`, served
//! by a static server (with basic auth), and an OCI registry (`crane registry serve`) filled with
//! `helm push --plain-http`. Exact versions and ranges resolve to the newest match; archives are
//! verified and cached by digest; a wrong digest, an unknown version and an unreachable
//! repository fail clearly; the fetched archive renders offline with values from the directory.

mod support;

use std::time::Duration;

use headway_render::chart::{ChartCache, ChartError, ChartRef, Credentials, FetchChartOptions};
use headway_render::{RenderOptions, render};
use headway_tests::charts::{Registry, StaticServer, index_repository, package_chart};
use support::*;

fn chart(repository: &str, version: &str) -> ChartRef {
    ChartRef {
        repository: repository.to_string(),
        name: "web".into(),
        version: version.into(),
    }
}

/// Options for the local servers of these tests; no test waits for this timeout to fire, so it
/// is generous for a loaded machine.
fn quick() -> FetchChartOptions {
    FetchChartOptions {
        timeout: Duration::from_secs(60),
        ..FetchChartOptions::default()
    }
}

#[tokio::test]
async fn http_repository_versions_digests_cache_and_errors() {
    if !tool_tests_enabled("http_repository_versions_digests_cache_and_errors") {
        return;
    }
    require_tool("helm");
    let home = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    for v in ["1.0.0", "1.1.0", "2.0.0"] {
        package_chart(home.path(), repo.path(), "web", v);
    }
    let server = StaticServer::serve(repo.path(), Some(("reader", "s3cret")));
    index_repository(home.path(), repo.path(), &server.url);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ChartCache::new(cache_dir.path()).unwrap();
    let mut options = quick();

    // Without credentials: 401, named.
    let err = cache
        .fetch(&chart(&server.url, "1.0.0"), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChartError::Status { status: 401, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("check the repository credentials"),
        "{err}"
    );

    options.credentials = Some(Credentials {
        username: "reader".into(),
        password: "s3cret".into(),
    });
    // A range resolves to the newest match; the archive is verified and cached by digest.
    let got = cache
        .fetch(&chart(&server.url, ">=1.0.0 <2.0.0"), &options)
        .await
        .unwrap();
    assert_eq!((got.name.as_str(), got.version.as_str()), ("web", "1.1.0"));
    assert_eq!(got.revision(), "web@1.1.0");
    let bytes = std::fs::read(repo.path().join("web-1.1.0.tgz")).unwrap();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert_eq!(got.digest, format!("sha256:{digest}"));
    assert_eq!(
        got.archive,
        cache_dir.path().join(format!("sha256-{digest}.tgz"))
    );
    assert_eq!(server.hits("/web-1.1.0.tgz"), 1);
    // Fetched again: the index is read, the archive comes from the cache.
    let again = cache
        .fetch(&chart(&server.url, "1.1.0"), &options)
        .await
        .unwrap();
    assert_eq!(again, got);
    assert_eq!(server.hits("/web-1.1.0.tgz"), 1);
    assert_eq!(server.hits("/index.yaml"), 3);

    // The fetched archive renders offline, with the directory's values.yaml and inline values.
    let values_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        values_dir.path().join("values.yaml"),
        "greeting: from-git\nreplicas: 2\n",
    )
    .unwrap();
    let mut render_options = RenderOptions::default();
    render_options.helm.release_name = "site".into();
    render_options.helm.chart = Some(got.archive.clone());
    render_options.helm.values = Some(serde_json::json!({"replicas": 3}));
    let manifests = render(values_dir.path(), &render_options).unwrap();
    let cm = manifests.iter().find(|m| m.id.kind == "ConfigMap").unwrap();
    assert_eq!(cm.object["data"]["chartVersion"], "1.1.0");
    assert_eq!(cm.object["data"]["greeting"], "from-git");
    let deploy = manifests
        .iter()
        .find(|m| m.id.kind == "Deployment")
        .unwrap();
    assert_eq!(deploy.object["spec"]["replicas"], 3, "inline values win");

    // An unknown version: the newest versions are named.
    let err = cache
        .fetch(&chart(&server.url, "3.0.0"), &options)
        .await
        .unwrap_err();
    assert!(matches!(err, ChartError::NoMatchingVersion { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("has no version matching `3.0.0` (newest: 2.0.0, 1.1.0, 1.0.0)"),
        "{err}"
    );
    assert!(!err.is_transient());
    let err = cache
        .fetch(
            &ChartRef {
                name: "db".into(),
                ..chart(&server.url, "1.0.0")
            },
            &options,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("chart `db` is not in"), "{err}");

    // A tampered archive (same name, other bytes): refused and not cached.
    let tampered = tempfile::tempdir().unwrap();
    package_chart(home.path(), tampered.path(), "web", "2.0.0");
    let mut bytes = std::fs::read(repo.path().join("web-2.0.0.tgz")).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(repo.path().join("web-2.0.0.tgz"), &bytes).unwrap();
    let err = cache
        .fetch(&chart(&server.url, "2.0.0"), &options)
        .await
        .unwrap_err();
    assert!(matches!(err, ChartError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("archive refused"), "{err}");
    let cached: Vec<_> = std::fs::read_dir(cache_dir.path()).unwrap().collect();
    assert_eq!(cached.len(), 1, "only the verified 1.1.0 archive is cached");

    // An unreachable repository: transient, with the URL.
    let port = headway_tests::git::free_port();
    let url = format!("http://127.0.0.1:{port}/charts");
    let err = cache
        .fetch(&chart(&url, "1.0.0"), &options)
        .await
        .unwrap_err();
    assert!(matches!(err, ChartError::Unreachable { .. }), "{err}");
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .contains(&format!("{url}/index.yaml is unreachable")),
        "{err}"
    );

    // Bad references are named.
    let err = cache
        .fetch(&chart("ftp://x", "1.0.0"), &options)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("must start with https://, http:// or oci://"),
        "{err}"
    );
    let err = cache
        .fetch(&chart(&server.url, "newest"), &options)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("chart version `newest`"), "{err}");
}

#[tokio::test]
async fn oci_registry_versions_digests_and_errors() {
    if !tool_tests_enabled("oci_registry_versions_digests_and_errors") {
        return;
    }
    require_tool("helm");
    require_tool("crane");
    let home = tempfile::tempdir().unwrap();
    let build = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    for v in ["0.9.0", "1.0.0", "1.2.0+build.7"] {
        let archive = package_chart(home.path(), build.path(), "web", v);
        registry.push(home.path(), &archive, "charts");
    }
    let repository = format!("oci://{}/charts", registry.host);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ChartCache::new(cache_dir.path()).unwrap();
    let options = FetchChartOptions {
        plain_http: true,
        ..quick()
    };

    let got = cache
        .fetch(&chart(&repository, "1.0.0"), &options)
        .await
        .unwrap();
    assert_eq!(got.version, "1.0.0");
    assert!(
        got.digest.starts_with("sha256:") && got.digest.len() == 71,
        "{got:?}"
    );
    // The cached archive is the pushed one.
    assert_eq!(
        std::fs::read(&got.archive).unwrap(),
        std::fs::read(build.path().join("web-1.0.0.tgz")).unwrap()
    );
    // Ranges resolve against the tag list (`+` is `_` in tags).
    let newest = cache
        .fetch(&chart(&repository, "^1.0.0"), &options)
        .await
        .unwrap();
    assert_eq!(newest.version, "1.2.0+build.7");
    let manifests = {
        let dir = tempfile::tempdir().unwrap();
        let mut o = RenderOptions::default();
        o.helm.chart = Some(newest.archive.clone());
        render(dir.path(), &o).unwrap()
    };
    let cm = manifests.iter().find(|m| m.id.kind == "ConfigMap").unwrap();
    assert_eq!(cm.object["data"]["chartVersion"], "1.2.0+build.7");

    let err = cache
        .fetch(&chart(&repository, "3.0.0"), &options)
        .await
        .unwrap_err();
    assert!(matches!(err, ChartError::NoMatchingVersion { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("newest: 1.2.0+build.7, 1.0.0, 0.9.0"),
        "{err}"
    );
    let err = cache
        .fetch(&chart(&repository, ">=5"), &options)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("(newest: 1.2.0+build.7, 1.0.0, 0.9.0)"),
        "{err}"
    );

    // Over TLS the plain-HTTP registry cannot be reached: a clear, transient error.
    let err = cache
        .fetch(&chart(&repository, "1.0.0"), &quick())
        .await
        .unwrap_err();
    assert!(matches!(err, ChartError::Unreachable { .. }), "{err}");
    drop(registry);
    let err = cache
        .fetch(&chart(&repository, "1.0.0"), &options)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}

/// An OCI "registry" (static files) whose chart layer bytes do not match the digest its manifest
/// names: the archive is refused and nothing is cached.
#[tokio::test]
async fn oci_layer_with_a_wrong_digest_is_refused() {
    if !tool_tests_enabled("oci_layer_with_a_wrong_digest_is_refused") {
        return;
    }
    require_tool("helm");
    let home = tempfile::tempdir().unwrap();
    let build = tempfile::tempdir().unwrap();
    let archive = std::fs::read(package_chart(home.path(), build.path(), "web", "1.0.0")).unwrap();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&archive))
    };
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("v2/charts/web");
    std::fs::create_dir_all(repo.join("manifests")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                   "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                    "digest": format!("sha256:{digest}"), "size": archive.len()}],
    });
    std::fs::write(repo.join("manifests/1.0.0"), manifest.to_string()).unwrap();
    let mut tampered = archive.clone();
    tampered.extend_from_slice(b"tampered");
    std::fs::write(repo.join(format!("blobs/sha256:{digest}")), &tampered).unwrap();
    let server = StaticServer::serve(root.path(), None);
    let repository = server.url.replace("http://", "oci://") + "/charts";
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ChartCache::new(cache_dir.path()).unwrap();
    let options = FetchChartOptions {
        plain_http: true,
        ..quick()
    };
    let err = cache
        .fetch(&chart(&repository, "1.0.0"), &options)
        .await
        .unwrap_err();
    assert!(matches!(err, ChartError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("expected sha256:{digest}")),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(cache_dir.path()).unwrap().count(), 0);

    // The right bytes are accepted; the digest recorded is the manifest's.
    std::fs::write(repo.join(format!("blobs/sha256:{digest}")), &archive).unwrap();
    let got = cache
        .fetch(&chart(&repository, "1.0.0"), &options)
        .await
        .unwrap();
    let manifest_digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(manifest.to_string().as_bytes()))
    };
    assert_eq!(got.digest, format!("sha256:{manifest_digest}"));
}
