//! The API calls of one operation (a sync, a drift check, a delete), counted: every request the
//! engine makes goes through [`Calls`], so each report can say how many requests it cost. Reads
//! of many objects go through [`list_by_resource`]: one list per resource, concurrently, selected
//! by the sync's ownership labels.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, stream};
use headway_model::{ObjectRef, SyncOwner};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, PartialObjectMeta};
use serde_json::Value;

use crate::discovery::{ApiCatalog, Resolved, ResourceGroups};

/// The field manager of every server-side apply Headway makes.
pub const FIELD_MANAGER: &str = "headway";

/// `(namespace, name)` of a listed object.
type Key = (Option<String>, String);

/// The clients and a request counter for one operation.
///
/// Two identities: `client` reads and writes the sync's objects (apply, prune, health, drift),
/// and may impersonate a tenant's service account; `own` is the engine's own identity, used only
/// for discovery and the inventory ConfigMaps.
pub(crate) struct Calls {
    pub client: Client,
    pub own: Client,
    requests: AtomicU64,
}

impl Calls {
    /// One identity for everything.
    pub fn new(client: Client) -> Self {
        Calls {
            own: client.clone(),
            client,
            requests: AtomicU64::new(0),
        }
    }

    /// The objects through `client`, discovery and the inventory through `own`.
    pub fn acting(own: Client, client: Client) -> Self {
        Calls {
            client,
            own,
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

    /// Runs aggregated discovery (two requests).
    pub async fn discover(&self) -> Result<ApiCatalog, kube::Error> {
        self.count();
        self.count();
        ApiCatalog::load(self.own.clone()).await
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
    ) -> Result<HashMap<Key, PartialObjectMeta<DynamicObject>>, kube::Error> {
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
    ) -> Result<HashMap<Key, Value>, kube::Error> {
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
    ) -> Result<HashMap<Key, T>, kube::Error>
    where
        F: Fn(Api<DynamicObject>) -> Fut,
        Fut: Future<Output = Result<Vec<(Key, T)>, kube::Error>>,
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

/// What one list of a resource found of the objects asked for.
pub(crate) struct Listing<T> {
    /// The resource listed.
    pub resolved: Resolved,
    /// Indexes of the objects asked for.
    pub indices: Vec<usize>,
    /// For each index, in the same order, the listed object (`None`: not in the list, so absent
    /// or not labelled as the sync's), or why the list failed.
    pub found: Result<Vec<Option<T>>, kube::Error>,
}

/// Lists the objects of each group (one request per resource, or per namespace when a
/// cluster-wide list is forbidden), at most `concurrency` lists at once, with the ownership
/// labels of `owner` as selector, and finds the objects of the group in the result. `id(i)` is
/// the identity of the object of index `i`; `list` makes one list: metadata
/// ([`Calls::list_metadata`]) or whole objects ([`Calls::list_objects`]).
pub(crate) async fn list_by_resource<'a, T, F, Fut>(
    owner: &SyncOwner,
    groups: ResourceGroups,
    id: impl Fn(usize) -> &'a ObjectRef,
    concurrency: usize,
    list: F,
) -> Vec<Listing<T>>
where
    F: Fn(Resolved, String, BTreeSet<Option<String>>) -> Fut,
    Fut: Future<Output = Result<HashMap<Key, T>, kube::Error>>,
{
    let selector = owner_selector(owner);
    let requests: Vec<_> = groups
        .into_values()
        .map(|(resolved, indices)| {
            let namespaces: BTreeSet<Option<String>> =
                indices.iter().map(|&i| id(i).namespace.clone()).collect();
            let result = list(resolved.clone(), selector.clone(), namespaces);
            (resolved, indices, result)
        })
        .collect();
    stream::iter(requests)
        .map(|(resolved, indices, result)| {
            let id = &id;
            async move {
                let found = result.await.map(|mut items| {
                    indices
                        .iter()
                        .map(|&i| {
                            let id = id(i);
                            items.remove(&(id.namespace.clone(), id.name.clone()))
                        })
                        .collect()
                });
                Listing {
                    resolved,
                    indices,
                    found,
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

fn key_of(meta: &kube::api::ObjectMeta) -> Key {
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
fn owner_selector(owner: &SyncOwner) -> String {
    let labels: BTreeMap<&str, &str> = owner.labels();
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
