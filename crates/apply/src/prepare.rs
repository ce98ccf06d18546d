//! Preparing a rendered set for apply: resolve each object's scope (from discovery, or from a CRD
//! in the same set for custom resources whose CRD is not installed yet), default the namespace of
//! namespaced objects, drop it from cluster-scoped ones, normalise, set the ownership labels and
//! recompute digests. Identities change here, so the inventory is taken from the prepared set.

use std::collections::BTreeMap;
use std::fmt;

use headway_model::id::split_api_version;
use headway_model::normalize::normalize_for_apply;
use headway_model::rendered_set::DuplicateObject;
use headway_model::{Manifest, ObjectRef, RenderedSet, SyncOwner};
use serde_json::Value;

use crate::discovery::ApiCatalog;

/// Where and for whom a set is applied.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Namespace given to namespaced objects that have none.
    pub default_namespace: String,
    /// The sync whose ownership labels are set on every object.
    pub owner: SyncOwner,
}

/// Why a set cannot be applied. Nothing has been written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// Kinds the server does not serve and no CRD in the set defines, one line per object.
    #[error("{} object(s) of unknown kinds (is a CRD missing?):\n{}", .0.len(), UnknownList(.0))]
    UnknownKinds(Vec<(ObjectRef, String, String)>),
    /// Two objects have the same identity once namespaces are defaulted.
    #[error(transparent)]
    Duplicate(#[from] Box<DuplicateObject>),
}

struct UnknownList<'a>(&'a [(ObjectRef, String, String)]);

impl fmt::Display for UnknownList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (id, api_version, source)) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "  {id}: {api_version} {} is not served by the API server (from {source})",
                id.kind
            )?;
        }
        Ok(())
    }
}

/// Prepares `set` for apply using the server's discovery.
pub(crate) fn prepare(
    set: RenderedSet,
    catalog: &ApiCatalog,
    target: &Target,
) -> Result<RenderedSet, PrepareError> {
    prepare_with(
        set,
        |api_version, kind| catalog.is_namespaced(api_version, kind),
        target,
    )
}

/// Prepares `set` for apply; `namespaced(api_version, kind)` tells the scope of a served kind.
pub(crate) fn prepare_with(
    set: RenderedSet,
    namespaced: impl Fn(&str, &str) -> Option<bool>,
    target: &Target,
) -> Result<RenderedSet, PrepareError> {
    let revision = set.revision().to_string();
    let mut manifests = set.into_manifests();
    let crd_scopes = crd_scopes(&manifests);
    let mut unknown = Vec::new();
    for m in &mut manifests {
        let scope = namespaced(&m.api_version, &m.id.kind).or_else(|| {
            crd_scopes
                .get(&(m.id.group.clone(), m.id.kind.clone()))
                .copied()
        });
        let Some(is_namespaced) = scope else {
            unknown.push((m.id.clone(), m.api_version.clone(), m.source.to_string()));
            continue;
        };
        set_scope(m, is_namespaced, &target.default_namespace);
        normalize_for_apply(&mut m.object);
        target.owner.mark(&mut m.object);
        m.refresh_digest();
    }
    if !unknown.is_empty() {
        return Err(PrepareError::UnknownKinds(unknown));
    }
    RenderedSet::from_complete_render(revision, manifests)
        .map_err(|e| PrepareError::Duplicate(Box::new(e)))
}

fn set_scope(m: &mut Manifest, namespaced: bool, default_namespace: &str) {
    let metadata = m.object.get_mut("metadata").and_then(Value::as_object_mut);
    match (namespaced, metadata) {
        (true, Some(meta)) => {
            let ns =
                m.id.namespace
                    .get_or_insert_with(|| default_namespace.to_string())
                    .clone();
            meta.insert("namespace".into(), Value::String(ns));
        }
        (false, Some(meta)) => {
            meta.remove("namespace");
            m.id.namespace = None;
        }
        (_, None) => {}
    }
}

/// The scope of each custom kind defined by a CRD in the set: (group, kind) -> namespaced.
fn crd_scopes(manifests: &[Manifest]) -> BTreeMap<(String, String), bool> {
    manifests
        .iter()
        .filter(|m| {
            m.id.kind == "CustomResourceDefinition"
                && split_api_version(&m.api_version).0 == "apiextensions.k8s.io"
        })
        .filter_map(|m| {
            let spec = m.object.get("spec")?;
            let group = spec.get("group")?.as_str()?;
            let kind = spec.pointer("/names/kind")?.as_str()?;
            let namespaced = spec.get("scope")?.as_str()? == "Namespaced";
            Some(((group.to_string(), kind.to_string()), namespaced))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use headway_model::SourceLocation;
    use headway_model::owner::LABEL_MANAGED_BY;
    use serde_json::json;

    fn m(object: Value) -> Manifest {
        Manifest::from_object(
            object,
            SourceLocation {
                file: "f.yaml".into(),
                document: 0,
                line: None,
            },
        )
        .unwrap()
    }

    fn served(api_version: &str, kind: &str) -> Option<bool> {
        match (api_version, kind) {
            ("v1", "ConfigMap") | ("apps/v1", "Deployment") => Some(true),
            ("v1", "Namespace") | ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                Some(false)
            }
            _ => None,
        }
    }

    fn target() -> Target {
        Target {
            default_namespace: "apps".into(),
            owner: SyncOwner::new("headway-system", "site").unwrap(),
        }
    }

    /// Prepares `input`; expects the resulting identities (apply order) or the error message.
    fn check(input: Vec<Value>, expected: Result<&[&str], &str>) {
        let set =
            RenderedSet::from_complete_render("r1", input.into_iter().map(m).collect()).unwrap();
        let got = prepare_with(set, served, &target());
        match (got, expected) {
            (Ok(set), Ok(ids)) => {
                let mut got: Vec<String> =
                    set.manifests().iter().map(|m| m.id.to_string()).collect();
                got.sort();
                let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
                ids.sort();
                assert_eq!(got, ids);
                for m in set.manifests() {
                    assert_eq!(m.object["metadata"]["labels"][LABEL_MANAGED_BY], "headway");
                    assert_eq!(
                        m.object["metadata"]
                            .get("namespace")
                            .and_then(Value::as_str),
                        m.id.namespace.as_deref()
                    );
                    assert_eq!(m.digest, headway_model::Digest::of_json(&m.object));
                }
            }
            (Err(e), Err(msg)) => assert_eq!(e.to_string(), msg),
            (got, want) => panic!("got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn scope_resolution_and_defaulting() {
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"}}});
        check(
            vec![
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "other"}}),
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other", "namespace": "junk"}}),
                json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
                crd,
            ],
            Ok(&[
                "ConfigMap/apps/a",
                "ConfigMap/other/b",
                "Namespace/other",
                "Widget.example.com/apps/w",
                "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com",
            ]),
        );
        check(
            vec![
                json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
            ],
            Err(
                "1 object(s) of unknown kinds (is a CRD missing?):\n  Gadget.example.com/g: example.com/v1 Gadget is not served by the API server (from f.yaml (document 0))",
            ),
        );
        check(
            vec![
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "apps"}}),
            ],
            Err(
                "ConfigMap/apps/a is defined twice: in f.yaml (document 0) and in f.yaml (document 0)",
            ),
        );
    }
}
