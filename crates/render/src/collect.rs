//! Parsed documents to manifests: `List` flattening, validation, identity and duplicate checks.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use headway_model::{Manifest, ObjectRef, SourceLocation};
use serde_json::Value;

use crate::error::RenderError;
use crate::yaml::Document;

/// Lists nested deeper than this are reported as not being objects.
const MAX_LIST_DEPTH: usize = 8;

/// Turns documents into manifests, flattening lists. Errors are appended, not returned.
pub(crate) fn to_manifests(
    docs: Vec<Document>,
    out: &mut Vec<Manifest>,
    errors: &mut Vec<RenderError>,
) {
    for doc in docs {
        push_value(doc.value, &doc.location, None, 0, out, errors);
    }
}

/// Whether a value is a list to flatten: `kind: List`, or a kind ending in `List` (e.g.
/// `ConfigMapList`) with an `items` array.
fn is_list(value: &Value) -> bool {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let has_items = value.get("items").is_some_and(Value::is_array);
    kind == "List" || (kind.ends_with("List") && has_items)
}

fn push_value(
    value: Value,
    location: &SourceLocation,
    item: Option<usize>,
    depth: usize,
    out: &mut Vec<Manifest>,
    errors: &mut Vec<RenderError>,
) {
    if depth < MAX_LIST_DEPTH && is_list(&value) {
        let list_kind = value["kind"].as_str().unwrap_or("").to_string();
        let list_api_version = value.get("apiVersion").cloned();
        let Value::Object(mut map) = value else {
            unreachable!("a list is a mapping")
        };
        let items = match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(), // `kind: List` without items is an empty list
        };
        for (i, mut obj) in items.into_iter().enumerate() {
            // Items of a typed list (`ConfigMapList`) may omit their kind and apiVersion.
            let item_kind = list_kind.strip_suffix("List").unwrap_or("");
            if let Value::Object(m) = &mut obj
                && !item_kind.is_empty()
                && !m.contains_key("kind")
            {
                m.insert("kind".into(), Value::String(item_kind.to_string()));
                if let Some(av) = &list_api_version
                    && !m.contains_key("apiVersion")
                {
                    m.insert("apiVersion".into(), av.clone());
                }
            }
            push_value(
                obj,
                location,
                Some(item.unwrap_or(i)),
                depth + 1,
                out,
                errors,
            );
        }
        return;
    }
    match Manifest::from_object(value, location.clone()) {
        Ok(m) => out.push(m),
        Err(reason) => errors.push(RenderError::NotAnObject {
            location: location.clone(),
            item,
            reason,
        }),
    }
}

/// Reports every identity defined more than once, naming both definitions.
pub(crate) fn check_duplicates(manifests: &[Manifest], errors: &mut Vec<RenderError>) {
    let mut seen: HashMap<&ObjectRef, &SourceLocation> = HashMap::with_capacity(manifests.len());
    for m in manifests {
        match seen.entry(&m.id) {
            Entry::Vacant(v) => {
                v.insert(&m.source);
            }
            Entry::Occupied(o) => errors.push(RenderError::DuplicateObject {
                id: Box::new(m.id.clone()),
                first: (*o.get()).clone(),
                second: m.source.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(value: Value) -> Document {
        Document {
            location: SourceLocation {
                file: "f.yaml".into(),
                document: 0,
                line: Some(1),
            },
            value,
            encrypted: None,
            json: false,
        }
    }

    #[test]
    fn typed_list_items_inherit_kind_and_api_version() {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        to_manifests(
            vec![doc(
                json!({"apiVersion": "v1", "kind": "ConfigMapList", "items": [
                    {"metadata": {"name": "a"}},
                    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}},
                    {"kind": "List", "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c"}}]},
                ]}),
            )],
            &mut out,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let ids: Vec<String> = out.iter().map(|m| m.id.to_string()).collect();
        assert_eq!(ids, ["ConfigMap/a", "Secret/b", "Service/c"]);
    }

    #[test]
    fn an_object_with_items_is_not_a_list_unless_its_kind_says_so() {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        to_manifests(
            vec![doc(
                json!({"apiVersion": "x/v1", "kind": "Basket", "metadata": {"name": "b"}, "items": [1]}),
            )],
            &mut out,
            &mut errors,
        );
        assert_eq!(out.len(), 1);
        assert!(errors.is_empty());
    }

    #[test]
    fn bad_list_items_are_named() {
        let (mut out, mut errors) = (Vec::new(), Vec::new());
        to_manifests(
            vec![doc(json!({"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}}, "oops"]}))],
            &mut out,
            &mut errors,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "f.yaml (document 0, line 1): not a Kubernetes object: the document is not a mapping (List item 1)"
        );
    }
}
