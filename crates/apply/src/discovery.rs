//! API discovery: which resources the server serves, to resolve a manifest's `apiVersion` and
//! `kind` to a REST resource and a scope. Loaded with aggregated discovery (two requests) and
//! indexed once, so resolving thousands of objects is a hash lookup each. [`Discovered`] holds the
//! current catalog, shared by concurrent syncs and replaced when discovery is run again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use headway_model::id::split_api_version;
use kube::Client;
use kube::discovery::{ApiResource, Discovery, Scope};

/// What the API server is, as Helm's `.Capabilities` sees it: its version and every API version
/// it serves (from the engine's current discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCapabilities {
    /// The server's `gitVersion` (`v1.36.3`).
    pub kube_version: String,
    /// Every `group/version` and `group/version/Kind` served.
    pub api_versions: Vec<String>,
}

/// A resolved kind: the REST resource to call and whether it is namespaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// The resources served by the API server.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiCatalog {
    /// (group, version, kind) -> resource.
    by_gvk: HashMap<(String, String, String), Resolved>,
    /// (group, kind) -> resource at the group's preferred version serving the kind.
    by_gk: HashMap<(String, String), Resolved>,
}

impl ApiCatalog {
    /// Runs aggregated discovery (Kubernetes >= 1.26).
    pub async fn load(client: Client) -> Result<Self, kube::Error> {
        let discovery = Discovery::new(client).run_aggregated().await?;
        Ok(Self::index(&discovery))
    }

    fn index(discovery: &Discovery) -> Self {
        let mut catalog = ApiCatalog::default();
        for group in discovery.groups() {
            for version in group.versions() {
                for (resource, caps) in group.versioned_resources(version) {
                    let resolved = Resolved {
                        namespaced: caps.scope == Scope::Namespaced,
                        resource,
                    };
                    let key = (
                        resolved.resource.group.clone(),
                        resolved.resource.version.clone(),
                        resolved.resource.kind.clone(),
                    );
                    catalog.by_gvk.entry(key).or_insert(resolved);
                }
            }
            let kinds: Vec<String> = catalog
                .by_gvk
                .keys()
                .filter(|(g, _, _)| g == group.name())
                .map(|(_, _, k)| k.clone())
                .collect();
            for kind in kinds {
                if let Some((resource, caps)) = group.recommended_kind(&kind) {
                    let resolved = Resolved {
                        namespaced: caps.scope == Scope::Namespaced,
                        resource,
                    };
                    catalog
                        .by_gk
                        .insert((group.name().to_string(), kind), resolved);
                }
            }
        }
        catalog
    }

    /// The resource serving `kind` at `api_version`, if the server has it.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<&Resolved> {
        let (group, version) = split_api_version(api_version);
        self.by_gvk
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
    }

    /// The resource serving `kind` in `group` at any version (the preferred one first); used to
    /// delete objects applied at a version the server no longer serves.
    pub fn resolve_group_kind(&self, group: &str, kind: &str) -> Option<&Resolved> {
        self.by_gk.get(&(group.to_string(), kind.to_string()))
    }

    /// The resource for `api_version`/`kind`, falling back to another version of the same group
    /// and kind.
    pub fn resolve_any_version(&self, api_version: &str, kind: &str) -> Option<&Resolved> {
        self.resolve(api_version, kind).or_else(|| {
            let (group, _) = split_api_version(api_version);
            self.resolve_group_kind(group, kind)
        })
    }

    /// Whether `kind` at `api_version` is namespaced, if the server serves it.
    pub fn is_namespaced(&self, api_version: &str, kind: &str) -> Option<bool> {
        self.resolve(api_version, kind).map(|r| r.namespaced)
    }

    /// Every `group/version` and `group/version/Kind` served (the core group as `v1` and
    /// `v1/Pod`), sorted: Helm's `--api-versions`, as Argo CD passes them.
    pub fn api_versions(&self) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        for (group, version, kind) in self.by_gvk.keys() {
            let gv = if group.is_empty() {
                version.clone()
            } else {
                format!("{group}/{version}")
            };
            out.insert(format!("{gv}/{kind}"));
            out.insert(gv);
        }
        out.into_iter().collect()
    }
}

/// The current discovery of an engine.
pub(crate) struct Discovered {
    current: RwLock<Arc<ApiCatalog>>,
}

impl Discovered {
    pub fn new(catalog: ApiCatalog) -> Self {
        Discovered {
            current: RwLock::new(Arc::new(catalog)),
        }
    }

    /// The catalog in use.
    pub fn current(&self) -> Arc<ApiCatalog> {
        self.current.read().expect("catalog lock").clone()
    }

    /// Uses `catalog` from now on.
    pub fn replace(&self, catalog: ApiCatalog) -> Arc<ApiCatalog> {
        let fresh = Arc::new(catalog);
        *self.current.write().expect("catalog lock") = fresh.clone();
        fresh
    }
}

/// Object indexes grouped by the REST resource that serves them, so that one list call covers a
/// group.
pub(crate) type ResourceGroups = BTreeMap<(String, String, String), (Resolved, Vec<usize>)>;

/// Groups `(index, resolved)` pairs by group, version and resource.
pub(crate) fn group_by_resource<'a>(
    items: impl IntoIterator<Item = (usize, &'a Resolved)>,
) -> ResourceGroups {
    let mut groups = ResourceGroups::new();
    for (i, r) in items {
        let key = (
            r.resource.group.clone(),
            r.resource.version.clone(),
            r.resource.plural.clone(),
        );
        groups
            .entry(key)
            .or_insert_with(|| (r.clone(), Vec::new()))
            .1
            .push(i);
    }
    groups
}
