//! Object identity: the (group, kind, namespace, name) key that names one Kubernetes object.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The identity of one Kubernetes object, independent of the API version it is served at.
///
/// Two manifests with the same `ObjectRef` describe the same object in the cluster. The API
/// version is deliberately not part of the identity: `apps/v1` and a future `apps/v2` Deployment
/// named `web` are one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// API group; empty for the core group (`v1`).
    pub group: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Namespace; `None` for cluster-scoped objects (or namespaced objects not yet defaulted).
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectRef {
    /// Builds a reference from an `apiVersion` string (`apps/v1` or `v1`), a kind, namespace and name.
    pub fn new(
        api_version: &str,
        kind: impl Into<String>,
        namespace: Option<String>,
        name: impl Into<String>,
    ) -> Self {
        let (group, _) = split_api_version(api_version);
        ObjectRef {
            group: group.to_string(),
            kind: kind.into(),
            namespace: namespace.filter(|n| !n.is_empty()),
            name: name.into(),
        }
    }

    /// The inventory key, `<namespace>_<name>_<group>_<kind>` (empty namespace for cluster scope),
    /// the same shape Flux uses, so operators can read both.
    pub fn inventory_key(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.namespace.as_deref().unwrap_or(""),
            self.name,
            self.group,
            self.kind
        )
    }

    /// Parses an inventory key produced by [`ObjectRef::inventory_key`].
    pub fn from_inventory_key(key: &str) -> Option<Self> {
        // Names, namespaces, groups and kinds never contain '_' (DNS-1123 / Go identifiers).
        let mut parts = key.splitn(4, '_');
        let namespace = parts.next()?;
        let name = parts.next()?;
        let group = parts.next()?;
        let kind = parts.next()?;
        if name.is_empty() || kind.is_empty() || kind.contains('_') {
            return None;
        }
        Some(ObjectRef {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            name: name.to_string(),
        })
    }
}

/// `Kind/namespace/name` (or `Kind/name` for cluster scope), with the group when it is not core:
/// `Deployment.apps/default/web`.
impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, "/{ns}")?;
        }
        write!(f, "/{}", self.name)
    }
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_key_round_trips() {
        for r in [
            ObjectRef::new("apps/v1", "Deployment", Some("default".into()), "web"),
            ObjectRef::new("v1", "Namespace", None, "team-a"),
            ObjectRef::new(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                "widgets.example.com",
            ),
        ] {
            let key = r.inventory_key();
            assert_eq!(ObjectRef::from_inventory_key(&key), Some(r), "{key}");
        }
        assert_eq!(
            ObjectRef::new("apps/v1", "Deployment", Some("default".into()), "web").inventory_key(),
            "default_web_apps_Deployment"
        );
    }

    #[test]
    fn display_names_kind_group_namespace_name() {
        let r = ObjectRef::new("apps/v1", "Deployment", Some("prod".into()), "web");
        assert_eq!(r.to_string(), "Deployment.apps/prod/web");
        let r = ObjectRef::new("v1", "Namespace", Some(String::new()), "prod");
        assert_eq!(r.to_string(), "Namespace/prod");
    }

    #[test]
    fn malformed_inventory_keys_are_rejected() {
        assert_eq!(ObjectRef::from_inventory_key("default_web_apps"), None);
        assert_eq!(ObjectRef::from_inventory_key("__apps_Deployment"), None);
    }
}
