//! Ownership: the sync that owns an object, written in the object's labels when it is applied and
//! read back from a live object before anything is deleted.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::meta::label;

/// Standard label naming the tool that manages an object; we set it to [`MANAGED_BY_VALUE`].
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] on objects Headway applied.
pub const MANAGED_BY_VALUE: &str = "headway";
/// Label holding the name of the sync that owns the object. Label values cannot contain `/`, so
/// the owner's namespace and name are two labels rather than one `namespace/name` value.
pub const LABEL_SYNC_NAME: &str = "headway.dev/sync-name";
/// Label holding the namespace of the sync that owns the object.
pub const LABEL_SYNC_NAMESPACE: &str = "headway.dev/sync-namespace";

/// The sync that owns a set of objects, as written in their labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyncOwner {
    namespace: String,
    name: String,
}

/// A sync name or namespace that cannot be a label value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "sync {what} {value:?} cannot be a label value: at most 63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric"
)]
pub struct InvalidOwner {
    what: &'static str,
    value: String,
}

impl SyncOwner {
    /// The owner for the sync `namespace/name`; both must be valid label values (a sync name longer
    /// than 63 characters is refused here, with a message naming it).
    pub fn new(namespace: &str, name: &str) -> Result<Self, InvalidOwner> {
        for (what, value) in [("namespace", namespace), ("name", name)] {
            if !is_label_value(value) || value.is_empty() {
                return Err(InvalidOwner {
                    what,
                    value: value.to_string(),
                });
            }
        }
        Ok(SyncOwner {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ownership labels to set on every applied object.
    pub fn labels(&self) -> BTreeMap<&'static str, &str> {
        BTreeMap::from([
            (LABEL_MANAGED_BY, MANAGED_BY_VALUE),
            (LABEL_SYNC_NAME, self.name.as_str()),
            (LABEL_SYNC_NAMESPACE, self.namespace.as_str()),
        ])
    }

    /// Sets the ownership labels on an object (creating `metadata.labels` when needed); values of
    /// the same labels in the source are overwritten.
    pub fn mark(&self, object: &mut Value) {
        let Some(obj) = object.as_object_mut() else {
            return;
        };
        let metadata = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        let Some(metadata) = metadata.as_object_mut() else {
            return;
        };
        let labels = metadata
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if !labels.is_object() {
            *labels = Value::Object(Default::default());
        }
        let labels = labels.as_object_mut().expect("just made an object");
        for (k, v) in self.labels() {
            labels.insert(k.to_string(), Value::String(v.to_string()));
        }
    }

    /// Whom a live object says owns it.
    pub fn ownership_of(&self, live: &Value) -> Ownership {
        if label(live, LABEL_MANAGED_BY) != Some(MANAGED_BY_VALUE) {
            return Ownership::NotManaged;
        }
        let name = label(live, LABEL_SYNC_NAME).unwrap_or("");
        let namespace = label(live, LABEL_SYNC_NAMESPACE).unwrap_or("");
        if name == self.name && namespace == self.namespace {
            Ownership::Ours
        } else {
            Ownership::OtherSync(format!("{namespace}/{name}"))
        }
    }
}

impl fmt::Display for SyncOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Who owns a live object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Labelled for this sync.
    Ours,
    /// Labelled as managed by Headway, for another sync (`namespace/name`).
    OtherSync(String),
    /// Not labelled as managed by Headway.
    NotManaged,
}

fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    v.len() <= 63
        && (b.is_empty()
            || (b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner() -> SyncOwner {
        SyncOwner::new("flux-system", "apps").unwrap()
    }

    #[test]
    fn ownership_marks() {
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"app": "x", LABEL_SYNC_NAME: "forged"}}});
        owner().mark(&mut obj);
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"app": "x", LABEL_MANAGED_BY: "headway", LABEL_SYNC_NAME: "apps", LABEL_SYNC_NAMESPACE: "flux-system"})
        );
        assert_eq!(owner().ownership_of(&obj), Ownership::Ours);
        let mut bare = json!({"kind": "ConfigMap"});
        owner().mark(&mut bare);
        assert_eq!(bare["metadata"]["labels"][LABEL_MANAGED_BY], "headway");

        for (ns, name, ok) in [
            ("flux-system", "apps", true),
            ("a", &"x".repeat(63)[..], true),
            ("a", &"x".repeat(64)[..], false),
            ("a", "has/slash", false),
            ("a", "-lead", false),
            ("", "a", false),
        ] {
            assert_eq!(SyncOwner::new(ns, name).is_ok(), ok, "{ns}/{name}");
        }
    }
}
