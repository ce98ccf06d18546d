//! Support for the API's cluster tests: the GitSync CRD, the API served in-process on
//! 127.0.0.1:0 with a real client, GitSyncs created in the test's namespace, and a minimal HTTP
//! client (HTTP/1.0 over a TCP stream: the answer ends when the connection closes).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use headway_api::{AppState, Config};
use headway_controller::GitSync;
use headway_controller::progress::Bus;
use headway_controller::view::Syncs;
use headway_tests::{TestCluster, TestNamespace, wait_for};
use kube::api::PostParams;
use kube::{Client, CustomResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The test's namespace, once the GitSync CRD is installed (or updated) and Established, with
/// `syncs` (name and spec) created in it.
pub async fn namespace(
    cluster: &TestCluster,
    test: &str,
    syncs: &[(&str, serde_json::Value)],
) -> anyhow::Result<TestNamespace> {
    headway_tests::install_crd(&cluster.client, &GitSync::crd()).await?;
    let ns = cluster.namespace(test).await?;
    for (name, spec) in syncs {
        create_sync(&ns, name, spec.clone()).await?;
    }
    Ok(ns)
}

/// The API served in this process for one namespace.
pub struct Server {
    pub address: SocketAddr,
    pub bus: Bus,
    pub syncs: Syncs,
    task: tokio::task::JoinHandle<()>,
    reflector: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        self.reflector.abort();
    }
}

/// Serves the API over the GitSyncs of `namespace`, once its cache is synced.
pub async fn serve(client: &Client, namespace: &str, config: Config) -> anyhow::Result<Server> {
    let (syncs, reflector) = Syncs::start(client.clone(), Some(namespace.to_string()));
    let reflector = tokio::spawn(reflector);
    tokio::time::timeout(Duration::from_secs(30), syncs.wait_ready())
        .await
        .context("the GitSync cache did not sync within 30s")?;
    let bus = Bus::new(1024);
    let state = AppState::new(client.clone(), syncs.clone(), bus.clone(), config);
    let (address, listener) = headway_api::bind("127.0.0.1:0".parse()?).await?;
    let task = tokio::spawn(async move {
        headway_api::serve(listener, state, std::future::pending())
            .await
            .expect("serving");
    });
    Ok(Server {
        address,
        bus,
        syncs,
        task,
        reflector,
    })
}

/// Serves the API over the GitSyncs of `ns` and waits until its cache holds `names`.
pub async fn serve_cached(
    client: &Client,
    ns: &TestNamespace,
    config: Config,
    names: &[&str],
) -> anyhow::Result<Server> {
    let server = serve(client, &ns.name, config).await?;
    wait_cached(&server, &ns.name, names).await?;
    Ok(server)
}

/// Creates a GitSync.
pub async fn create_sync(
    ns: &TestNamespace,
    name: &str,
    spec: serde_json::Value,
) -> anyhow::Result<()> {
    let sync: GitSync = serde_json::from_value(json!({
        "apiVersion": "headway.dev/v1alpha1", "kind": "GitSync",
        "metadata": {"name": name, "namespace": ns.name},
        "spec": spec,
    }))?;
    ns.api::<GitSync>()
        .create(&PostParams::default(), &sync)
        .await
        .with_context(|| format!("creating GitSync {name}"))?;
    Ok(())
}

/// Waits until the server's cache holds `names`.
pub async fn wait_cached(server: &Server, namespace: &str, names: &[&str]) -> anyhow::Result<()> {
    wait_for(
        "the API cache to hold the GitSyncs",
        Duration::from_secs(30),
        || {
            let missing: Vec<String> = names
                .iter()
                .filter(|n| {
                    server
                        .syncs
                        .get(&headway_controller::view::SyncKey::new(namespace, **n))
                        .is_none()
                })
                .map(|n| n.to_string())
                .collect();
            async move {
                Ok(if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("missing {missing:?}"))
                })
            }
        },
    )
    .await
}

/// An annotation of a GitSync, read from the API server.
pub async fn annotation(
    ns: &TestNamespace,
    name: &str,
    key: &str,
) -> anyhow::Result<Option<String>> {
    let sync = ns.api::<GitSync>().get(name).await?;
    Ok(sync.metadata.annotations.and_then(|a| a.get(key).cloned()))
}

/// The annotation `key` of each of `names`, in their order.
pub async fn annotations(
    ns: &TestNamespace,
    key: &str,
    names: &[&str],
) -> anyhow::Result<Vec<Option<String>>> {
    let mut out = Vec::new();
    for n in names {
        out.push(annotation(ns, n, key).await?);
    }
    Ok(out)
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Sends one request and reads the whole answer.
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Answer> {
    let mut stream = TcpStream::connect(address).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    // A refused oversize body may be answered before it is all sent.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .with_context(|| format!("{method} {path}: no answer within 30s"))??;
    parse_answer(&raw)
        .with_context(|| format!("{method} {path}: {}", String::from_utf8_lossy(&raw)))
}

fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no status line")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}
