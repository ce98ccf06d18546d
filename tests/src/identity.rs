//! A ServiceAccount's identity outside the cluster: a token from the TokenRequest API and a
//! kubeconfig holding only that token and the cluster's server and CA, which is all a pod of that
//! ServiceAccount sees (its projected token, `ca.crt` and the API server's address). A process
//! run with it has exactly the ServiceAccount's rights: what its RBAC forgets is refused.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client, Config};

/// Requests a token for ServiceAccount `namespace/name` (TokenRequest API), valid for `ttl`
/// (the API server may shorten it; at least 10 minutes).
pub async fn request_token(
    client: &Client,
    namespace: &str,
    name: &str,
    ttl: Duration,
) -> anyhow::Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(ttl.as_secs().max(600) as i64),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let answer = api
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token for ServiceAccount {namespace}/{name}"))?;
    let token = answer
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .with_context(|| format!("the TokenRequest for {namespace}/{name} returned no token"))?;
    Ok(token)
}

/// The PEM text of the CA certificates `config` trusts for the API server.
pub fn ca_pem(config: &Config) -> anyhow::Result<String> {
    let certs = config
        .root_cert
        .as_ref()
        .filter(|c| !c.is_empty())
        .context("the kubeconfig names no certificate authority for the API server")?;
    let mut pem = String::new();
    for der in certs {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = BASE64.encode(der);
        for line in text.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}

/// A kubeconfig (JSON, which kubeconfig readers accept) with one cluster (`server`, CA
/// `ca_pem`), one user holding only `token`, and `namespace` as the context's namespace.
pub fn token_kubeconfig(server: &str, ca_pem: &str, token: &str, namespace: &str) -> String {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {
            "server": server,
            "certificate-authority-data": BASE64.encode(ca_pem),
        }}],
        "users": [{"name": "service-account", "user": {"token": token}}],
        "contexts": [{"name": "service-account", "context": {
            "cluster": "cluster", "user": "service-account", "namespace": namespace,
        }}],
        "current-context": "service-account",
    });
    serde_json::to_string_pretty(&config).expect("a JSON value serialises")
}

/// Requests a token for ServiceAccount `namespace/name`, valid for `ttl`, and writes a
/// kubeconfig with only that token and the server and CA of `config` to `path` (mode 0600).
/// Returns the token.
pub async fn write_service_account_kubeconfig(
    client: &Client,
    config: &Config,
    (namespace, name): (&str, &str),
    ttl: Duration,
    path: &Path,
) -> anyhow::Result<String> {
    let token = request_token(client, namespace, name, ttl).await?;
    let server = config.cluster_url.to_string();
    let text = token_kubeconfig(
        server.trim_end_matches('/'),
        &ca_pem(config)?,
        &token,
        namespace,
    );
    write_private(path, &text)?;
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
