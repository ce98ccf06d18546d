//! Chart repositories on 127.0.0.1 for the remote-chart tests: a static HTTP server (for
//! `helm repo index` repositories, with optional basic auth), an OCI registry (`crane registry
//! serve`, built by `cargo xtask cluster build`) and `helm package`/`helm push` with a private
//! Helm home.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::git::free_port;

/// A static file server for `root` on 127.0.0.1, stopped on drop. Counts GETs per path.
pub struct StaticServer {
    pub url: String,
    stop: Arc<AtomicBool>,
    port: u16,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl StaticServer {
    /// Serves `root`; with `basic_auth`, every request needs that user and password.
    pub fn serve(root: &Path, basic_auth: Option<(&str, &str)>) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(BTreeMap::new()));
        let root = root.to_path_buf();
        let expected_auth = basic_auth.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        {
            let stop = stop.clone();
            let hits = hits.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let _ = answer(stream, &root, expected_auth.as_deref(), &hits);
                    }
                }
            });
        }
        StaticServer {
            url: format!("http://127.0.0.1:{port}"),
            stop,
            port,
            hits,
        }
    }

    /// How many GETs `path` (e.g. `/index.yaml`) got.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer(
    stream: TcpStream,
    root: &Path,
    expected_auth: Option<&str>,
    hits: &Mutex<BTreeMap<String, usize>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut auth = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            auth = Some(v.trim().to_string());
        }
    }
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let mut stream = stream;
    if let Some(expected) = expected_auth
        && auth.as_deref() != Some(expected)
    {
        return stream.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"charts\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let rel = path.trim_start_matches('/');
    let file = root.join(rel);
    match (rel.contains(".."), std::fs::read(&file)) {
        (false, Ok(body)) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(&body)
        }
        _ => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}

/// `helm` with a private home (config, cache, data, registry config) in `home`.
pub fn helm(home: &Path, args: &[&str]) -> String {
    let out = Command::new("helm")
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("HELM_REGISTRY_CONFIG", home.join("registry.json"))
        .output()
        .expect("helm on PATH (eval \"$(cargo xtask cluster env)\")");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a small chart `name` at `version` into `dir/src/name` (a ConfigMap and a Deployment
/// whose data and image tag name the version, and a values.yaml) and packages it into `dir`:
/// returns the archive path.
pub fn package_chart(home: &Path, dir: &Path, name: &str, version: &str) -> PathBuf {
    let src = dir.join("src").join(name);
    std::fs::create_dir_all(src.join("templates")).unwrap();
    std::fs::write(
        src.join("Chart.yaml"),
        format!(
            "apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: \"{version}\"\nkubeVersion: \">=1.23.0-0\"\n"
        ),
    )
    .unwrap();
    std::fs::write(src.join("values.yaml"), "greeting: hello\nreplicas: 1\n").unwrap();
    std::fs::write(
        src.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  chartVersion: {{ .Chart.Version | quote }}\n  greeting: {{ .Values.greeting | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("templates/deployment.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\nspec:\n  replicas: {{ .Values.replicas }}\n  selector:\n    matchLabels: {app: {{ .Release.Name }}-web}\n  template:\n    metadata:\n      labels: {app: {{ .Release.Name }}-web}\n    spec:\n      containers:\n        - name: web\n          image: \"example.com/web:{{ .Chart.AppVersion }}\"\n",
    )
    .unwrap();
    helm(
        home,
        &[
            "package",
            src.to_str().unwrap(),
            "--destination",
            dir.to_str().unwrap(),
        ],
    );
    dir.join(format!("{name}-{version}.tgz"))
}

/// `helm repo index dir --url url`.
pub fn index_repository(home: &Path, dir: &Path, url: &str) {
    helm(
        home,
        &["repo", "index", dir.to_str().unwrap(), "--url", url],
    );
}

/// A `helm repo index` chart repository served on 127.0.0.1 (its files in `dir`, its Helm home
/// in `home`), holding the test chart `name` ([`package_chart`]) at each version given.
pub struct ChartRepository {
    pub home: tempfile::TempDir,
    pub dir: tempfile::TempDir,
    pub server: StaticServer,
}

impl ChartRepository {
    /// Packages `name` at every version, serves the directory (with `basic_auth` if given) and
    /// indexes it.
    pub fn serve(name: &str, versions: &[&str], basic_auth: Option<(&str, &str)>) -> Self {
        let home = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for v in versions {
            package_chart(home.path(), dir.path(), name, v);
        }
        let server = StaticServer::serve(dir.path(), basic_auth);
        index_repository(home.path(), dir.path(), &server.url);
        ChartRepository { home, dir, server }
    }

    /// Adds `name` at `version` and indexes again; returns the archive.
    pub fn add(&self, name: &str, version: &str) -> PathBuf {
        let archive = package_chart(self.home.path(), self.dir.path(), name, version);
        index_repository(self.home.path(), self.dir.path(), &self.server.url);
        archive
    }
}

/// `crane registry serve` on 127.0.0.1, killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub host: String,
}

impl Registry {
    /// Starts an empty in-memory OCI registry.
    pub fn start() -> Registry {
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let child = Command::new("crane")
            .args(["registry", "serve", "--address", &host])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "crane on PATH (cargo xtask cluster build; eval \"$(cargo xtask cluster env)\")",
            );
        let mut registry = Registry { child, host };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("crane registry serve exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "crane registry not listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `helm push archive oci://<host>/<path> --plain-http`.
    pub fn push(&self, home: &Path, archive: &Path, path: &str) {
        helm(
            home,
            &[
                "push",
                archive.to_str().unwrap(),
                &format!("oci://{}/{path}", self.host),
                "--plain-http",
            ],
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
