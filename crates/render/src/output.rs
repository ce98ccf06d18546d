//! Printing rendered manifests: a YAML stream (documents separated by `---`), a JSON array or a
//! `kind: List`. Strings that would read back as another type (`"yes"`, `"0755"`, `"1.0"`) are
//! quoted, so the YAML output re-reads to exactly the same objects.

use headway_model::Manifest;
use serde_json::Value;

/// One YAML document.
pub fn object_to_yaml(object: &Value) -> String {
    // serde_json values have string keys and finite numbers: serialising cannot fail.
    serde_saphyr::to_string(object).expect("a JSON value serialises to YAML")
}

/// A YAML stream of the objects, each document starting with `---`.
pub fn to_yaml_stream(manifests: &[Manifest]) -> String {
    let mut out = String::new();
    for m in manifests {
        out.push_str("---\n");
        out.push_str(&object_to_yaml(&m.object));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// A pretty-printed JSON array of the objects.
pub fn to_json_array(manifests: &[Manifest]) -> String {
    let items: Vec<&Value> = manifests.iter().map(|m| &m.object).collect();
    let mut s = serde_json::to_string_pretty(&items).expect("JSON values serialise");
    s.push('\n');
    s
}

/// The objects as one `v1` `List`.
pub fn to_list(manifests: &[Manifest]) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": manifests.iter().map(|m| m.object.clone()).collect::<Vec<_>>(),
    })
}
