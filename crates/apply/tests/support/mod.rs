//! Helpers shared by the apply engine's cluster tests: desired sets from JSON, an engine and an
//! owner per test, reading live objects, and the write requests an engine sent.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use headway_apply::{Engine, EngineOptions, SyncReport, SyncRequest};
use headway_model::changeset::Action;
use headway_model::{Manifest, SourceLocation};
use headway_model::{RenderedSet, SyncOwner};
use headway_tests::TestCluster;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

/// A complete render of `objects` at `revision`.
pub fn set(revision: &str, objects: Vec<Value>) -> RenderedSet {
    let manifests = objects
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let source = SourceLocation {
                file: "test.yaml".into(),
                document: i,
                line: None,
            };
            Manifest::from_object(o, source).expect("test object is a Kubernetes object")
        })
        .collect();
    RenderedSet::from_complete_render(revision, manifests).expect("no duplicates in a test set")
}

fn options() -> EngineOptions {
    EngineOptions {
        stage_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_millis(250),
        ..EngineOptions::default()
    }
}

/// An engine with short stage waits and fast polls.
pub async fn engine(c: &TestCluster) -> Engine {
    Engine::new(c.client.clone(), options())
        .await
        .expect("discovery on the local cluster")
}

/// Like [`engine`], with a client that records every request it sends that may write (any
/// method but GET). Whether Headway wrote an object is told from these, never from the object's
/// resourceVersion: controllers of the cluster (a Deployment's status) write objects too.
pub async fn engine_recording_writes(c: &TestCluster) -> (Engine, Writes) {
    let writes = Writes::default();
    let client = kube::client::ClientBuilder::try_from(c.config.clone())
        .expect("a client for the local cluster")
        .with_layer(&writes)
        .build();
    let engine = Engine::new(client, options())
        .await
        .expect("discovery on the local cluster");
    (engine, writes)
}

/// The write requests sent through a client (a tower layer): `METHOD path` each.
#[derive(Debug, Clone, Default)]
pub struct Writes {
    sent: Arc<Mutex<Vec<String>>>,
}

impl Writes {
    /// The writes sent since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.sent.lock().expect("writes lock"))
    }
}

impl<S> tower::Layer<S> for Writes {
    type Service = RecordWrites<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RecordWrites {
            inner,
            sent: self.sent.clone(),
        }
    }
}

/// The service of [`Writes`].
#[derive(Debug, Clone)]
pub struct RecordWrites<S> {
    inner: S,
    sent: Arc<Mutex<Vec<String>>>,
}

impl<S, B> tower::Service<http::Request<B>> for RecordWrites<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.method() != http::Method::GET {
            self.sent.lock().expect("writes lock").push(format!(
                "{} {}",
                request.method(),
                request.uri().path()
            ));
        }
        self.inner.call(request)
    }
}

/// The owner of a test's sync: named `site`, in the test's namespace.
pub fn owner(ns: &str) -> SyncOwner {
    SyncOwner::new(ns, "site").expect("test namespaces are valid label values")
}

/// A request with prune on and a short timeout.
pub fn request(ns: &str, set: RenderedSet) -> SyncRequest {
    let mut req = SyncRequest::new(owner(ns), ns, set);
    req.prune = true;
    req.timeout = Duration::from_secs(30);
    req
}

pub fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

pub fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1", "ports": [{"containerPort": 8080}]}]}
            }
        }
    })
}

/// The action of `name` (any kind) in a report; panics with the report if absent.
pub fn action_of(report: &SyncReport, name: &str) -> Action {
    report
        .changes
        .changes
        .iter()
        .find(|c| c.id.name == name)
        .map(|c| c.action.clone())
        .unwrap_or_else(|| panic!("no change for {name} in {:#?}", report.changes))
}

/// Every action of a report, as `name action` lines (sorted), for assertions with a readable diff.
pub fn actions(report: &SyncReport) -> Vec<String> {
    let mut out: Vec<String> = report
        .changes
        .changes
        .iter()
        .map(|c| format!("{} {}", c.id.name, c.action))
        .collect();
    out.sort();
    out
}

/// A dynamic API for `apiVersion`/`kind` (`plural` given) in `ns` (or cluster-wide).
pub fn api(
    c: &TestCluster,
    api_version: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(c.client.clone(), ns, &ar),
        None => Api::all_with(c.client.clone(), &ar),
    }
}

pub fn configmaps(c: &TestCluster, ns: &str) -> Api<DynamicObject> {
    api(c, "v1", "ConfigMap", "configmaps", Some(ns))
}
