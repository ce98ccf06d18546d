//! The rendered set: a desired set known to be complete, the only input from which objects are
//! applied and pruned.

use std::collections::BTreeMap;

use crate::inventory::Inventory;
use crate::{Manifest, ObjectRef};

/// A desired set known to be complete: the whole source was fetched and rendered without error.
///
/// This is the proof the prune planner asks for: build it only from the successful result of a
/// full render, never from a partial one. It also refuses duplicate identities, which would
/// otherwise make the inventory lose an object.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedSet {
    revision: String,
    manifests: Vec<Manifest>,
}

/// Two manifests with the same identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{id} is defined twice: in {first} and in {second}")]
pub struct DuplicateObject {
    pub id: Box<ObjectRef>,
    pub first: String,
    pub second: String,
}

impl RenderedSet {
    /// Wraps the complete, successful render of `revision`.
    pub fn from_complete_render(
        revision: impl Into<String>,
        manifests: Vec<Manifest>,
    ) -> Result<Self, DuplicateObject> {
        let mut seen: BTreeMap<&ObjectRef, &Manifest> = BTreeMap::new();
        for m in &manifests {
            if let Some(first) = seen.insert(&m.id, m) {
                return Err(DuplicateObject {
                    id: Box::new(m.id.clone()),
                    first: first.source.to_string(),
                    second: m.source.to_string(),
                });
            }
        }
        Ok(RenderedSet {
            revision: revision.into(),
            manifests,
        })
    }

    /// The source revision rendered.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    pub fn manifests(&self) -> &[Manifest] {
        &self.manifests
    }

    /// Mutable access, e.g. to default namespaces and set ownership labels before apply; the set
    /// of objects cannot change.
    pub fn manifests_mut(&mut self) -> &mut [Manifest] {
        &mut self.manifests
    }

    pub fn into_manifests(self) -> Vec<Manifest> {
        self.manifests
    }

    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty()
    }

    /// The inventory this set becomes once applied.
    pub fn inventory(&self) -> Inventory {
        Inventory::from_manifests(&self.manifests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceLocation;
    use serde_json::json;

    fn cm(name: &str) -> Manifest {
        Manifest::from_object(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}),
            SourceLocation { file: format!("{name}.yaml"), document: 0, line: Some(1) },
        )
        .unwrap()
    }

    #[test]
    fn rendered_set_refuses_duplicates() {
        let err = RenderedSet::from_complete_render("r", vec![cm("a"), cm("a")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap/ns/a is defined twice: in a.yaml (document 0, line 1) and in a.yaml (document 0, line 1)"
        );
    }
}
