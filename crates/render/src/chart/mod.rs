//! Remote Helm charts: resolve `{repository, name, version}` against an HTTP(S) chart repository
//! (its `index.yaml`) or an OCI registry (`oci://host/path`), download the archive with a Rust
//! HTTP client, verify its sha256 against the index (or the OCI manifest's layer digest), and keep
//! it in a cache named by digest. `helm template` then renders the archive offline.
//!
//! - Versions: exact (`4.11.3`) or a Helm range ([`Constraint`]); the newest match wins. For OCI,
//!   ranges are resolved against the registry's tag list (`+` is written `_` in tags, as Helm does).
//! - Digests: an HTTP repository's index must give each version's `digest` (as `helm repo index`
//!   writes it), else the chart is refused. For OCI the resolved digest is the manifest's
//!   (`sha256` of its bytes, checked against `Docker-Content-Digest` when sent); the chart layer
//!   is checked against the digest the manifest gives it.
//! - Credentials (basic auth) go to the repository's own host only, and to an OCI registry's token
//!   service when it asks for a bearer token.
//! - Nothing is written outside the cache directory; a refused archive is never cached.

mod deps;
mod error;
mod version;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

pub use deps::missing_dependencies;
pub use error::ChartError;
pub use version::{Constraint, parse_version};

/// The media type of a Helm chart layer in an OCI manifest.
const HELM_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Which chart to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartRef {
    /// `https://charts.example.com/stable` (serving `index.yaml`) or `oci://registry/path`.
    pub repository: String,
    /// The chart's name.
    pub name: String,
    /// An exact version or a range ([`Constraint`]).
    pub version: String,
}

/// A user name and password (or token) for the repository.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchChartOptions {
    pub credentials: Option<Credentials>,
    /// Talk plain HTTP to an `oci://` registry (a registry on 127.0.0.1 in tests; Helm's
    /// `--plain-http`).
    pub plain_http: bool,
    /// Longest time for each request.
    pub timeout: Duration,
    /// Largest index.yaml, manifest or archive accepted, in bytes. Default 64 MiB.
    pub max_bytes: u64,
}

impl Default for FetchChartOptions {
    fn default() -> Self {
        FetchChartOptions {
            credentials: None,
            plain_http: false,
            timeout: Duration::from_secs(60),
            max_bytes: 64 << 20,
        }
    }
}

/// A fetched, verified chart archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedChart {
    pub name: String,
    /// The version chosen (as the repository spells it).
    pub version: String,
    /// `sha256:<hex>`: the archive's digest (HTTP repository) or the OCI manifest's.
    pub digest: String,
    /// The archive in the cache, ready for `helm template`.
    pub archive: PathBuf,
}

impl ResolvedChart {
    /// `<name>@<version>`, as recorded in a revision string.
    pub fn revision(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// A directory of verified chart archives, named by their sha256.
#[derive(Debug, Clone)]
pub struct ChartCache {
    dir: PathBuf,
}

impl ChartCache {
    /// Uses (and creates) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, ChartError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| ChartError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(ChartCache { dir })
    }

    fn path_of(&self, sha256_hex: &str) -> PathBuf {
        self.dir.join(format!("sha256-{sha256_hex}.tgz"))
    }

    /// The cached archive with this sha256, if present and still intact.
    fn cached(&self, sha256_hex: &str) -> Option<PathBuf> {
        let path = self.path_of(sha256_hex);
        let bytes = std::fs::read(&path).ok()?;
        (sha256_hex_of(&bytes) == sha256_hex).then_some(path)
    }

    /// Stores the bytes downloaded from `url` under their digest, once they match `sha256_hex`
    /// (write, then rename: readers never see half a file).
    fn store(&self, url: &str, sha256_hex: &str, bytes: &[u8]) -> Result<PathBuf, ChartError> {
        let actual = sha256_hex_of(bytes);
        if actual != sha256_hex {
            return Err(ChartError::DigestMismatch {
                url: url.to_string(),
                expected: sha256_hex.to_string(),
                actual,
            });
        }
        let path = self.path_of(sha256_hex);
        let io = |source| ChartError::Io {
            path: path.clone(),
            source,
        };
        let tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io)?;
        std::fs::write(tmp.path(), bytes).map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(path)
    }

    /// Resolves, downloads (unless cached) and verifies the chart.
    pub async fn fetch(
        &self,
        chart: &ChartRef,
        options: &FetchChartOptions,
    ) -> Result<ResolvedChart, ChartError> {
        if chart.name.is_empty() || chart.name.contains(['/', '\\']) || chart.name.starts_with('.')
        {
            return Err(ChartError::InvalidReference(format!(
                "chart name `{}` must be a plain name",
                chart.name
            )));
        }
        let constraint = Constraint::parse(&chart.version).map_err(ChartError::InvalidReference)?;
        let client = Client::builder()
            .timeout(options.timeout)
            .user_agent(concat!("headway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ChartError::InvalidReference(format!("HTTP client: {e}")))?;
        let fetcher = Fetcher {
            client,
            options,
            cache: self,
        };
        if let Some(rest) = chart.repository.strip_prefix("oci://") {
            fetcher.oci(rest, chart, &constraint).await
        } else if chart.repository.starts_with("https://")
            || chart.repository.starts_with("http://")
        {
            fetcher.http(chart, &constraint).await
        } else {
            Err(ChartError::InvalidReference(format!(
                "repository `{}` must start with https://, http:// or oci://",
                chart.repository
            )))
        }
    }
}

fn sha256_hex_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

struct Fetcher<'a> {
    client: Client,
    options: &'a FetchChartOptions,
    cache: &'a ChartCache,
}

impl Fetcher<'_> {
    /// Sends a request; a connection failure is `Unreachable`.
    async fn send(&self, url: &str, request: RequestBuilder) -> Result<Response, ChartError> {
        request.send().await.map_err(|e| ChartError::Unreachable {
            url: url.to_string(),
            message: error_chain(&e),
        })
    }

    /// The body of a successful response, capped.
    async fn body(&self, url: &str, mut response: Response) -> Result<Vec<u8>, ChartError> {
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(url, status));
        }
        let limit = self.options.max_bytes;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(ChartError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        let mut out = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ChartError::Unreachable {
                url: url.to_string(),
                message: error_chain(&e),
            })?
        {
            out.extend_from_slice(&chunk);
            if out.len() as u64 > limit {
                return Err(ChartError::TooLarge {
                    url: url.to_string(),
                    limit,
                });
            }
        }
        Ok(out)
    }

    fn with_basic_auth(&self, request: RequestBuilder, same_host: bool) -> RequestBuilder {
        match &self.options.credentials {
            Some(c) if same_host => request.basic_auth(&c.username, Some(&c.password)),
            _ => request,
        }
    }

    // -----------------------------------------------------------------------------------------
    // HTTP(S) chart repositories.

    async fn http(
        &self,
        chart: &ChartRef,
        constraint: &Constraint,
    ) -> Result<ResolvedChart, ChartError> {
        let repo = chart.repository.trim_end_matches('/');
        let base = Url::parse(&format!("{repo}/")).map_err(|e| {
            ChartError::InvalidReference(format!("repository `{}`: {e}", chart.repository))
        })?;
        let index_url = format!("{repo}/index.yaml");
        let response = self
            .send(
                &index_url,
                self.with_basic_auth(self.client.get(&index_url), true),
            )
            .await?;
        let bytes = self.body(&index_url, response).await?;
        let index = parse_index(&index_url, &bytes)?;
        let entries = index
            .pointer(&format!("/entries/{}", chart.name.replace('~', "~0")))
            .and_then(Value::as_array)
            .ok_or_else(|| ChartError::UnknownChart {
                repository: repo.to_string(),
                name: chart.name.clone(),
            })?;
        let versions: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.get("version").and_then(Value::as_str))
            .collect();
        let chosen = constraint
            .select(versions.iter().copied())
            .ok_or_else(|| no_match(repo, chart, versions.iter().copied()))?;
        let entry = entries
            .iter()
            .find(|e| e.get("version").and_then(Value::as_str) == Some(chosen))
            .expect("chosen from these entries");
        let expected = entry
            .get("digest")
            .and_then(Value::as_str)
            .map(|d| d.trim_start_matches("sha256:").to_ascii_lowercase())
            .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ChartError::NoDigest {
                repository: repo.to_string(),
                name: chart.name.clone(),
                version: chosen.to_string(),
            })?;
        let resolved = |archive| ResolvedChart {
            name: chart.name.clone(),
            version: chosen.to_string(),
            digest: format!("sha256:{expected}"),
            archive,
        };
        if let Some(archive) = self.cache.cached(&expected) {
            return Ok(resolved(archive));
        }
        let url = entry
            .pointer("/urls/0")
            .and_then(Value::as_str)
            .ok_or_else(|| ChartError::BadResponse {
                url: index_url.clone(),
                message: format!("{} {chosen} has no urls", chart.name),
            })?;
        let url = base.join(url).map_err(|e| ChartError::BadResponse {
            url: index_url.clone(),
            message: format!("{} {chosen}: bad url `{url}`: {e}", chart.name),
        })?;
        let same_host = url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default();
        let url = url.to_string();
        let response = self
            .send(&url, self.with_basic_auth(self.client.get(&url), same_host))
            .await?;
        let bytes = self.body(&url, response).await?;
        Ok(resolved(self.cache.store(&url, &expected, &bytes)?))
    }

    // -----------------------------------------------------------------------------------------
    // OCI registries.

    async fn oci(
        &self,
        rest: &str,
        chart: &ChartRef,
        constraint: &Constraint,
    ) -> Result<ResolvedChart, ChartError> {
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(ChartError::InvalidReference(format!(
                "repository `{}` names no registry host",
                chart.repository
            )));
        }
        let scheme = if self.options.plain_http {
            "http"
        } else {
            "https"
        };
        let path = path.trim_matches('/');
        let repo = if path.is_empty() {
            chart.name.clone()
        } else {
            format!("{path}/{}", chart.name)
        };
        let registry = Registry {
            fetcher: self,
            base: format!("{scheme}://{host}/v2/{repo}"),
            token: std::sync::Mutex::new(None),
            content_digest: std::sync::Mutex::new(None),
        };
        let repository = chart.repository.trim_end_matches('/');
        let tag = match constraint {
            Constraint::Exact(_) => chart.version.trim().replace('+', "_"),
            Constraint::Range(_) => {
                let url = format!("{}/tags/list", registry.base);
                let bytes = registry.get(&url, None).await?;
                let tags: Value =
                    serde_json::from_slice(&bytes).map_err(|e| ChartError::BadResponse {
                        url: url.clone(),
                        message: format!("tag list is not JSON: {e}"),
                    })?;
                let versions: Vec<String> = tags
                    .get("tags")
                    .and_then(Value::as_array)
                    .map(|t| {
                        t.iter()
                            .filter_map(Value::as_str)
                            .map(|t| t.replace('_', "+"))
                            .collect()
                    })
                    .unwrap_or_default();
                let chosen = constraint
                    .select(versions.iter().map(String::as_str))
                    .ok_or_else(|| {
                        no_match(repository, chart, versions.iter().map(String::as_str))
                    })?;
                chosen.replace('+', "_")
            }
        };
        let url = format!("{}/manifests/{tag}", registry.base);
        let manifest_bytes = match registry.get(&url, Some(OCI_MANIFEST)).await {
            Err(ChartError::Status { status: 404, .. }) => {
                // Name the versions there are, when the registry lists them.
                let tags_url = format!("{}/tags/list", registry.base);
                let tags: Vec<String> = registry
                    .get(&tags_url, None)
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|t| t.get("tags").and_then(Value::as_array).cloned())
                    .map(|t| {
                        t.iter()
                            .filter_map(Value::as_str)
                            .map(|t| t.replace('_', "+"))
                            .collect()
                    })
                    .unwrap_or_default();
                return Err(no_match(repository, chart, tags.iter().map(String::as_str)));
            }
            other => other?,
        };
        let manifest_digest = sha256_hex_of(&manifest_bytes);
        if let Some(sent) = registry.content_digest.lock().expect("digest lock").take()
            && sent != format!("sha256:{manifest_digest}")
        {
            return Err(ChartError::DigestMismatch {
                url,
                expected: sent.trim_start_matches("sha256:").to_string(),
                actual: manifest_digest,
            });
        }
        let manifest: Value =
            serde_json::from_slice(&manifest_bytes).map_err(|e| ChartError::BadResponse {
                url: url.clone(),
                message: format!("manifest is not JSON: {e}"),
            })?;
        let layer_digest = manifest
            .get("layers")
            .and_then(Value::as_array)
            .and_then(|layers| {
                layers
                    .iter()
                    .find(|l| l.get("mediaType").and_then(Value::as_str) == Some(HELM_LAYER))
            })
            .and_then(|l| l.get("digest").and_then(Value::as_str))
            .and_then(|d| d.strip_prefix("sha256:"))
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| ChartError::BadResponse {
                url: url.clone(),
                message: format!(
                    "the manifest has no sha256 layer of type {HELM_LAYER}: not a Helm chart"
                ),
            })?;
        let version = tag.replace('_', "+");
        let resolved = |archive| ResolvedChart {
            name: chart.name.clone(),
            version: version.clone(),
            digest: format!("sha256:{manifest_digest}"),
            archive,
        };
        if let Some(archive) = self.cache.cached(&layer_digest) {
            return Ok(resolved(archive));
        }
        let blob_url = format!("{}/blobs/sha256:{layer_digest}", registry.base);
        let bytes = registry.get(&blob_url, None).await?;
        Ok(resolved(self.cache.store(
            &blob_url,
            &layer_digest,
            &bytes,
        )?))
    }
}

/// One OCI repository on a registry, with the bearer token it handed out (if it asked for one).
struct Registry<'a> {
    fetcher: &'a Fetcher<'a>,
    /// `<scheme>://<host>/v2/<repository>`.
    base: String,
    token: std::sync::Mutex<Option<String>>,
    /// The `Docker-Content-Digest` of the last manifest response.
    content_digest: std::sync::Mutex<Option<String>>,
}

impl Registry<'_> {
    /// GETs `url`, answering one authentication challenge (Basic, or Bearer through the token
    /// service named in `WWW-Authenticate`).
    async fn get(&self, url: &str, accept: Option<&str>) -> Result<Vec<u8>, ChartError> {
        let f = self.fetcher;
        let request = |auth: Option<Auth>| {
            let mut r = f.client.get(url);
            if let Some(a) = accept {
                r = r.header(ACCEPT, a);
            }
            match auth {
                Some(Auth::Bearer(t)) => r.bearer_auth(t),
                Some(Auth::Basic) => f.with_basic_auth(r, true),
                None => r,
            }
        };
        let token = self.token.lock().expect("token lock").clone();
        let mut response = f.send(url, request(token.map(Auth::Bearer))).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let auth = if challenge.to_ascii_lowercase().starts_with("bearer") {
                let token = self.token_for(url, &challenge).await?;
                *self.token.lock().expect("token lock") = Some(token.clone());
                Auth::Bearer(token)
            } else {
                Auth::Basic
            };
            response = f.send(url, request(Some(auth))).await?;
        }
        if let Some(d) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && accept.is_some()
        {
            *self.content_digest.lock().expect("digest lock") = Some(d.to_string());
        }
        f.body(url, response).await
    }

    /// A bearer token from the realm of a `Bearer realm="...",service="...",scope="..."` challenge.
    async fn token_for(&self, url: &str, challenge: &str) -> Result<String, ChartError> {
        let params = challenge_params(challenge);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| ChartError::BadResponse {
                url: url.to_string(),
                message: format!("authentication challenge without a realm: {challenge}"),
            })?;
        let mut token_url = Url::parse(&realm).map_err(|e| ChartError::BadResponse {
            url: url.to_string(),
            message: format!("token realm `{realm}`: {e}"),
        })?;
        for (k, v) in &params {
            if k == "service" || k == "scope" {
                token_url.query_pairs_mut().append_pair(k, v);
            }
        }
        let token_url = token_url.to_string();
        let f = self.fetcher;
        let response = f
            .send(
                &token_url,
                f.with_basic_auth(f.client.get(&token_url), true),
            )
            .await?;
        let bytes = f.body(&token_url, response).await?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| ChartError::BadResponse {
            url: token_url.clone(),
            message: format!("token answer is not JSON: {e}"),
        })?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ChartError::BadResponse {
                url: token_url,
                message: "token answer has no token".into(),
            })
    }
}

enum Auth {
    Bearer(String),
    Basic,
}

/// `key="value"` pairs of an authentication challenge (after the scheme).
fn challenge_params(challenge: &str) -> Vec<(String, String)> {
    let rest = challenge.split_once(' ').map_or("", |(_, r)| r);
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            chars.by_ref().take_while(|c| *c != '"').collect()
        } else {
            chars.by_ref().take_while(|c| *c != ',').collect()
        };
        out.push((key.trim().to_string(), value));
    }
    out
}

fn parse_index(url: &str, bytes: &[u8]) -> Result<Value, ChartError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ChartError::BadResponse {
        url: url.to_string(),
        message: "index.yaml is not UTF-8".into(),
    })?;
    let index: Value = crate::yaml::with_big_stack(|| {
        serde_saphyr::from_str_with_options::<Value>(text, crate::yaml::saphyr_options())
            .map_err(|e| e.to_string())
    })
    .map_err(|e| ChartError::BadResponse {
        url: url.to_string(),
        message: format!("index.yaml is not valid YAML: {e}"),
    })?;
    if !index.get("entries").is_some_and(Value::is_object) {
        return Err(ChartError::BadResponse {
            url: url.to_string(),
            message: "index.yaml has no `entries` mapping: not a chart repository index".into(),
        });
    }
    Ok(index)
}

fn no_match<'a>(
    repository: &str,
    chart: &ChartRef,
    versions: impl Iterator<Item = &'a str>,
) -> ChartError {
    let mut parsed: Vec<(semver::Version, &str)> = versions
        .filter_map(|s| parse_version(s).map(|v| (v, s)))
        .collect();
    parsed.sort_by(|a, b| b.0.cmp(&a.0));
    ChartError::NoMatchingVersion {
        repository: repository.to_string(),
        name: chart.name.clone(),
        constraint: chart.version.clone(),
        newest: parsed.iter().take(5).map(|(_, s)| s.to_string()).collect(),
    }
}

fn status_error(url: &str, status: StatusCode) -> ChartError {
    ChartError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        hint: match status.as_u16() {
            401 | 403 => " (check the repository credentials)",
            404 => " (not found)",
            _ => "",
        },
    }
}

/// An error and its causes, `: `-separated (reqwest's own message is only the outermost).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_parsed() {
        let p = challenge_params(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:charts/web:pull""#,
        );
        assert_eq!(
            p,
            [
                (
                    "realm".to_string(),
                    "https://auth.example.com/token".to_string()
                ),
                ("service".to_string(), "registry.example.com".to_string()),
                (
                    "scope".to_string(),
                    "repository:charts/web:pull".to_string()
                ),
            ]
        );
    }

    #[test]
    fn credentials_are_not_printed() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
