//! The API calls of one operation (a sync, a drift check, a delete), counted: every request the
//! engine makes goes through [`Calls`], so each report can say how many requests it cost. A
//! [`CountingLayer`] counts at the HTTP level instead (including kube's own retries), for
//! benchmarks that want to check the engine's own count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, PartialObjectMeta};
use serde_json::Value;

use crate::Resolved;

/// A client and a request counter for one operation.
pub(crate) struct Calls {
    pub client: Client,
    requests: AtomicU64,
}

impl Calls {
    pub fn new(client: Client) -> Self {
        Calls {
            client,
            requests: AtomicU64::new(0),
        }
    }

    /// Records one request about to be sent.
    pub fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The `Api` of one object's resource (namespaced when it has a namespace and the resource
    /// is namespaced).
    pub fn api(&self, resolved: &Resolved, namespace: Option<&str>) -> Api<DynamicObject> {
        match (namespace, resolved.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &resolved.resource),
            _ => Api::all_with(self.client.clone(), &resolved.resource),
        }
    }

    /// Lists the objects of one resource carrying `selector`, metadata only, across `namespaces`
    /// (one cluster-wide request for several namespaces, one per namespace when that is
    /// forbidden). Keys are `(namespace, name)`.
    pub async fn list_metadata(
        &self,
        resolved: &Resolved,
        selector: &str,
        namespaces: &BTreeSet<Option<String>>,
    ) -> Result<HashMap<(Option<String>, String), PartialObjectMeta<DynamicObject>>, kube::Error>
    {
        let lp = ListParams::default().labels(selector);
        self.list_with(resolved, namespaces, |api| {
            let lp = lp.clone();
            async move {
                Ok(api
                    .list_metadata(&lp)
                    .await?
                    .items
                    .into_iter()
                    .map(|item| (key_of(&item.metadata), item))
                    .collect())
            }
        })
        .await
    }

    /// Like [`Calls::list_metadata`], whole objects as JSON. The API server leaves `apiVersion`
    /// and `kind` out of the items of a list; they are set here (the health rules dispatch on
    /// them).
    pub async fn list_objects(
        &self,
        resolved: &Resolved,
        selector: &str,
        namespaces: &BTreeSet<Option<String>>,
    ) -> Result<HashMap<(Option<String>, String), Value>, kube::Error> {
        let lp = ListParams::default().labels(selector);
        self.list_with(resolved, namespaces, |api| {
            let lp = lp.clone();
            let (api_version, kind) = (
                resolved.resource.api_version.clone(),
                resolved.resource.kind.clone(),
            );
            async move {
                Ok(api
                    .list(&lp)
                    .await?
                    .items
                    .into_iter()
                    .map(|item| {
                        let mut json = to_json(&item);
                        if let Some(o) = json.as_object_mut() {
                            o.insert("apiVersion".into(), Value::String(api_version.clone()));
                            o.insert("kind".into(), Value::String(kind.clone()));
                        }
                        (key_of(&item.metadata), json)
                    })
                    .collect())
            }
        })
        .await
    }

    async fn list_with<T, F, Fut>(
        &self,
        resolved: &Resolved,
        namespaces: &BTreeSet<Option<String>>,
        list: F,
    ) -> Result<HashMap<(Option<String>, String), T>, kube::Error>
    where
        F: Fn(Api<DynamicObject>) -> Fut,
        Fut: Future<Output = Result<Vec<((Option<String>, String), T)>, kube::Error>>,
    {
        let named: Vec<&str> = namespaces.iter().flatten().map(String::as_str).collect();
        let apis = match named[..] {
            [only] if resolved.namespaced => vec![self.api(resolved, Some(only))],
            _ => {
                self.count();
                let all = Api::all_with(self.client.clone(), &resolved.resource);
                match list(all).await {
                    Ok(items) => return Ok(items.into_iter().collect()),
                    Err(kube::Error::Api(s)) if s.code == 403 && resolved.namespaced => named
                        .iter()
                        .map(|ns| self.api(resolved, Some(ns)))
                        .collect(),
                    Err(e) => return Err(e),
                }
            }
        };
        let mut out = HashMap::new();
        for api in apis {
            self.count();
            out.extend(list(api).await?);
        }
        Ok(out)
    }
}

fn key_of(meta: &kube::api::ObjectMeta) -> (Option<String>, String) {
    (
        meta.namespace.clone(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// A JSON form of an object (for the pure functions of the model).
pub(crate) fn to_json<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// The label selector matching the ownership labels of a sync.
pub(crate) fn owner_selector(owner: &headway_model::prune::SyncOwner) -> String {
    let labels: BTreeMap<&str, &str> = owner.labels();
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The API server's message for API errors (with code and reason), the error's own text otherwise.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => {
            format!("{} ({} {})", s.message, s.code, s.reason)
        }
        other => other.to_string(),
    }
}

/// A tower layer counting the HTTP requests a client sends (see [`counting_client`]).
#[derive(Debug, Clone, Default)]
pub struct CountingLayer {
    count: Arc<AtomicU64>,
}

impl CountingLayer {
    /// A layer with its own counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests sent so far through every client built with this layer.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl<S> tower::Layer<S> for CountingLayer {
    type Service = CountingService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CountingService {
            inner,
            count: self.count.clone(),
        }
    }
}

/// The service of a [`CountingLayer`].
#[derive(Debug, Clone)]
pub struct CountingService<S> {
    inner: S,
    count: Arc<AtomicU64>,
}

impl<S, R> tower::Service<R> for CountingService<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.call(request)
    }
}

/// A client for `config` that keeps at most `max_in_flight` requests in flight (kube has no
/// client-side rate limiter) and counts every HTTP request it sends in the returned layer.
pub fn counting_client(
    config: kube::Config,
    max_in_flight: usize,
) -> Result<(Client, CountingLayer), kube::Error> {
    let counter = CountingLayer::new();
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(
            max_in_flight.max(1),
        ))
        .with_layer(&counter)
        .build();
    Ok((client, counter))
}
