//! Field-level comparison of a desired object with the live one, in the style of Weave's kubediff:
//! which fields of the desired object the live one lacks or holds with another value.
//!
//! # Comparison rules
//! - One-sided: only fields present in the desired object are compared; fields only the live
//!   object has (defaults, fields set by controllers and webhooks) are ignored. `apiVersion`,
//!   `kind`, `status` and server-managed metadata (`managedFields`, `resourceVersion`, `uid`,
//!   `creationTimestamp`, `generation`, `selfLink`) are never compared.
//! - Zero values in the desired object (`null`, `""`, `false`, `0`, `[]`, `{}`) match a missing
//!   live field: the API server omits them when it serialises an object.
//! - Lists of maps are matched by a key, the first of `name`, `mountPath`, `containerPort`,
//!   `port`, `ip` that every desired element has with unique values (containers, env, volumes,
//!   volume mounts, ports): `spec.template.spec.containers[name=web].image`. Their order does not
//!   matter, and live elements without a desired counterpart are ignored (one-sided). Lists of
//!   maps without such a key are compared element by element, by index (`rules[0].host`).
//! - Lists of scalars are compared as a whole and in order: order is meaningful in `args`,
//!   `command` and most scalar lists Kubernetes has, and server-side apply preserves the order it
//!   was given, so a reordering is real drift. (kubediff compared all lists ignoring order; that
//!   hid reordered arguments.)
//! - Resource quantities (values under `requests`, `limits`, `hard`, `capacity`, `allocatable`,
//!   `default`, `defaultRequest`, `min`, `max`, `overhead`, and `sizeLimit`) are compared
//!   numerically: `500m` equals `0.5`, `1Gi` equals `1024Mi`. Numbers compare by value (`1`
//!   equals `1.0`).
//! - Secrets (`v1` `Secret`): `stringData` is compared as the base64 of `data`, values are
//!   compared decoded, and every value under `data` is shown as [`MASKED`].
//!
//! Paths join map keys with `.`; keys that are not plain identifiers are quoted:
//! `metadata.labels["app.kubernetes.io/name"]`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::digest::write_canonical;
use crate::normalize::string_data_as_base64;
use crate::quantity::quantities_equal;

/// Shown instead of Secret values.
pub const MASKED: &str = "(masked)";

/// Annotation put on objects decrypted from SOPS files (value `sops`): every value of such an
/// object is shown masked, whatever its kind, so that no decrypted value reaches a diff.
pub const ANNOTATION_DECRYPTED: &str = "headway.dev/decrypted";

/// One field that differs. `None` means the field is missing on that side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDiff {
    /// Path of the field, e.g. `spec.template.spec.containers[name=web].image`.
    pub path: String,
    /// The desired value (strings as they are, other values as compact JSON).
    pub desired: Option<String>,
    /// The live value.
    pub live: Option<String>,
}

/// Metadata fields set by the server, never compared.
const SERVER_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Keys of maps whose values are resource quantities.
const QUANTITY_MAPS: &[&str] = &[
    "requests",
    "limits",
    "hard",
    "capacity",
    "allocatable",
    "default",
    "defaultRequest",
    "min",
    "max",
    "overhead",
];

/// Candidate keys of lists of maps, in order of preference.
const LIST_KEYS: &[&str] = &["name", "mountPath", "containerPort", "port", "ip"];

/// The fields of `desired` that differ in `live`, in the order of the desired object.
pub fn diff(desired: &Value, live: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    let Some(desired_map) = desired.as_object() else {
        return out;
    };
    let secret = is_core(desired, "Secret");
    for (key, d) in desired_map {
        let l = live.get(key);
        match key.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                let Some(meta) = d.as_object() else { continue };
                for (mk, mv) in meta {
                    if !SERVER_METADATA.contains(&mk.as_str()) {
                        let path = join("metadata", mk);
                        walk(
                            &path,
                            mk,
                            "metadata",
                            mv,
                            l.and_then(|l| l.get(mk)),
                            &mut out,
                        );
                    }
                }
            }
            "data" | "stringData" if secret => {}
            _ => walk(key, key, "", d, l, &mut out),
        }
    }
    if secret {
        secret_data(desired, live.get("data"), &mut out);
    }
    let decrypted = desired
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ANNOTATION_DECRYPTED))
        .is_some();
    if decrypted {
        for d in &mut out {
            for side in [&mut d.desired, &mut d.live] {
                if side.is_some() {
                    *side = Some(MASKED.to_string());
                }
            }
        }
    }
    out
}

fn is_core(o: &Value, kind: &str) -> bool {
    o.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && o.get("kind").and_then(Value::as_str) == Some(kind)
}

fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (_, false) => format!("{path}[{}]", Value::String(key.to_string())),
        (false, true) => format!("{path}.{key}"),
    }
}

/// Compact JSON with sorted keys; strings as they are.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => {
            let mut buf = Vec::new();
            write_canonical(other, &mut buf);
            String::from_utf8(buf).expect("JSON is UTF-8")
        }
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn push(out: &mut Vec<FieldDiff>, path: &str, d: &Value, l: Option<&Value>) {
    out.push(FieldDiff {
        path: path.to_string(),
        desired: Some(show(d)),
        live: l.filter(|l| !l.is_null()).map(show),
    });
}

fn walk(
    path: &str,
    key: &str,
    parent: &str,
    d: &Value,
    l: Option<&Value>,
    out: &mut Vec<FieldDiff>,
) {
    let l = l.filter(|l| !l.is_null());
    if d.is_null() {
        return;
    }
    let Some(live) = l else {
        if !is_zero(d) {
            push(out, path, d, None);
        }
        return;
    };
    match (d, live) {
        (Value::Object(dm), Value::Object(lm)) => {
            for (k, dv) in dm {
                walk(&join(path, k), k, key, dv, lm.get(k), out);
            }
        }
        (Value::Array(da), Value::Array(la)) => walk_list(path, key, da, la, out),
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
            push(out, path, d, Some(live))
        }
        _ => {
            let quantity = QUANTITY_MAPS.contains(&parent) || key == "sizeLimit";
            let equal = scalar_eq(d, live)
                || (quantity
                    && match (scalar_text(d), scalar_text(live)) {
                        (Some(a), Some(b)) => quantities_equal(&a, &b),
                        _ => false,
                    });
            if !equal {
                push(out, path, d, Some(live));
            }
        }
    }
}

fn walk_list(path: &str, key: &str, d: &[Value], l: &[Value], out: &mut Vec<FieldDiff>) {
    if d.is_empty() {
        return;
    }
    if !d.iter().all(Value::is_object) {
        let equal = d.len() == l.len() && d.iter().zip(l).all(|(a, b)| deep_eq(a, b));
        if !equal {
            push(
                out,
                path,
                &Value::Array(d.to_vec()),
                Some(&Value::Array(l.to_vec())),
            );
        }
        return;
    }
    match list_key(d) {
        Some(k) => {
            for elem in d {
                let kv = &elem[k];
                let elem_path = format!("{path}[{k}={}]", show(kv));
                let found = l
                    .iter()
                    .find(|le| le.get(k).is_some_and(|lv| scalar_eq(kv, lv)));
                match found {
                    Some(le) => walk(&elem_path, key, "", elem, Some(le), out),
                    None => push(out, &elem_path, elem, None),
                }
            }
        }
        None => {
            for (i, elem) in d.iter().enumerate() {
                walk(&format!("{path}[{i}]"), key, "", elem, l.get(i), out);
            }
        }
    }
}

/// The first candidate key every element has, as a scalar, with unique values.
fn list_key(d: &[Value]) -> Option<&'static str> {
    LIST_KEYS.iter().copied().find(|k| {
        let values: Vec<&Value> = d.iter().filter_map(|e| e.get(*k)).collect();
        values.len() == d.len()
            && values.iter().all(|v| v.is_string() || v.is_number())
            && values
                .iter()
                .enumerate()
                .all(|(i, v)| !values[..i].iter().any(|w| scalar_eq(v, w)))
    })
}

fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

fn deep_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| deep_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_eq(v, w)))
        }
        _ => scalar_eq(a, b),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Secret values: `stringData` counts as base64 `data` (and wins over it, as on the server);
/// values are compared decoded and shown masked.
fn secret_data(desired: &Value, live: Option<&Value>, out: &mut Vec<FieldDiff>) {
    let mut wanted: Map<String, Value> = Map::new();
    if let Some(data) = desired.get("data").and_then(Value::as_object) {
        wanted.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(string_data) = desired.get("stringData").and_then(Value::as_object) {
        for (k, v) in string_data {
            wanted.insert(k.clone(), string_data_as_base64(v));
        }
    }
    let live = live.and_then(Value::as_object);
    for (k, d) in &wanted {
        let l = live.and_then(|m| m.get(k)).filter(|v| !v.is_null());
        let equal = match l {
            None => is_zero(d),
            Some(l) => match (decode(d), decode(l)) {
                (Some(a), Some(b)) => a == b,
                _ => d == l,
            },
        };
        if !equal {
            out.push(FieldDiff {
                path: join("data", k),
                desired: Some(MASKED.to_string()),
                live: l.map(|_| MASKED.to_string()),
            });
        }
    }
}

fn decode(v: &Value) -> Option<Vec<u8>> {
    let s: String = v.as_str()?.chars().filter(|c| !c.is_whitespace()).collect();
    BASE64.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Diffs `desired` against `live`; expects `(path, desired, live)` triples.
    fn check(desired: Value, live: Value, expected: &[(&str, Option<&str>, Option<&str>)]) {
        let got = diff(&desired, &live);
        let expected: Vec<FieldDiff> = expected
            .iter()
            .map(|(p, d, l)| FieldDiff {
                path: p.to_string(),
                desired: d.map(str::to_string),
                live: l.map(str::to_string),
            })
            .collect();
        assert_eq!(got, expected, "\ndesired: {desired}\nlive: {live}");
    }

    fn deploy(spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}}, "spec": spec})
    }

    fn live_deploy(spec: Value) -> Value {
        let mut d = deploy(spec);
        d["metadata"]["resourceVersion"] = json!("123");
        d["metadata"]["uid"] = json!("u");
        d["metadata"]["labels"]["extra"] = json!("live-only");
        d["status"] = json!({"replicas": 1});
        d
    }

    #[test]
    fn scalars_maps_and_one_sidedness() {
        // Identical, plus live-only fields (defaults, status, server metadata): no diff.
        check(
            deploy(json!({"replicas": 3})),
            live_deploy(json!({"replicas": 3, "revisionHistoryLimit": 10})),
            &[],
        );
        check(
            deploy(json!({"replicas": 3})),
            live_deploy(json!({"replicas": 2})),
            &[("spec.replicas", Some("3"), Some("2"))],
        );
        let mut d = deploy(json!({}));
        d["metadata"]["labels"]["tier"] = json!("web");
        d["metadata"]["labels"]["app.kubernetes.io/name"] = json!("web");
        check(
            d,
            live_deploy(json!({})),
            &[
                (
                    "metadata.labels[\"app.kubernetes.io/name\"]",
                    Some("web"),
                    None,
                ),
                ("metadata.labels.tier", Some("web"), None),
            ],
        );
        // Status and server metadata in desired are not compared.
        let mut d = deploy(json!({}));
        d["status"] = json!({"replicas": 5});
        d["metadata"]["resourceVersion"] = json!("1");
        check(d, live_deploy(json!({})), &[]);
        // Zero values match missing fields; numbers compare by value.
        check(
            deploy(
                json!({"paused": false, "minReadySeconds": 0, "x": "", "y": [], "z": {}, "n": null, "f": 2.0}),
            ),
            live_deploy(json!({"f": 2})),
            &[],
        );
        // A missing subtree is one diff; type mismatches show both sides.
        check(
            deploy(json!({"strategy": {"type": "Recreate"}, "selector": "x"})),
            live_deploy(json!({"selector": {"matchLabels": {"app": "web"}}})),
            &[
                (
                    "spec.selector",
                    Some("x"),
                    Some(r#"{"matchLabels":{"app":"web"}}"#),
                ),
                ("spec.strategy", Some(r#"{"type":"Recreate"}"#), None),
            ],
        );
        // Not an object: nothing to compare.
        check(json!("x"), json!({}), &[]);
    }

    fn pod_template(containers: Value) -> Value {
        json!({"template": {"spec": {"containers": containers}}})
    }

    #[test]
    fn lists() {
        // Keyed by name, order-insensitive, live-only elements ignored.
        check(
            deploy(pod_template(
                json!([{"name": "web", "image": "web:2"}, {"name": "side", "image": "s:1"}]),
            )),
            live_deploy(pod_template(json!([
                {"name": "side", "image": "s:1", "imagePullPolicy": "IfNotPresent"},
                {"name": "injected", "image": "mesh:1"},
                {"name": "web", "image": "web:1"}]))),
            &[(
                "spec.template.spec.containers[name=web].image",
                Some("web:2"),
                Some("web:1"),
            )],
        );
        // A desired element missing live.
        check(
            deploy(pod_template(
                json!([{"name": "web", "env": [{"name": "A", "value": "1"}]}]),
            )),
            live_deploy(pod_template(
                json!([{"name": "web", "env": [{"name": "B", "value": "2"}]}]),
            )),
            &[(
                "spec.template.spec.containers[name=web].env[name=A]",
                Some(r#"{"name":"A","value":"1"}"#),
                None,
            )],
        );
        // Ports keyed by containerPort when unnamed; volume mounts by mountPath when names repeat.
        check(
            deploy(pod_template(json!([{"name": "web",
                "ports": [{"containerPort": 8080}, {"containerPort": 9090}],
                "volumeMounts": [{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/b", "readOnly": true}]}]))),
            live_deploy(pod_template(json!([{"name": "web",
                "ports": [{"containerPort": 9090, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}],
                "volumeMounts": [{"name": "v", "mountPath": "/b"}, {"name": "v", "mountPath": "/a"}]}]))),
            &[(
                "spec.template.spec.containers[name=web].volumeMounts[mountPath=/b].readOnly",
                Some("true"),
                None,
            )],
        );
        // Lists of maps without a key: by index.
        check(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
                   "spec": {"rules": [{"host": "a.example.com"}, {"host": "b.example.com"}]}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
                   "spec": {"rules": [{"host": "a.example.com"}]}}),
            &[("spec.rules[1]", Some(r#"{"host":"b.example.com"}"#), None)],
        );
        // Scalar lists: whole and in order.
        check(
            deploy(pod_template(
                json!([{"name": "web", "args": ["--a", "--b"]}]),
            )),
            live_deploy(pod_template(
                json!([{"name": "web", "args": ["--b", "--a"]}]),
            )),
            &[(
                "spec.template.spec.containers[name=web].args",
                Some(r#"["--a","--b"]"#),
                Some(r#"["--b","--a"]"#),
            )],
        );
        check(
            deploy(pod_template(json!([{"name": "web", "args": ["--a"]}]))),
            live_deploy(pod_template(json!([{"name": "web", "args": ["--a"]}]))),
            &[],
        );
    }

    #[test]
    fn quantities_in_diffs() {
        let res = |cpu: Value, mem: &str| {
            pod_template(
                json!([{"name": "web", "resources": {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": "1"}}}]),
            )
        };
        check(
            deploy(res(json!("500m"), "1Gi")),
            live_deploy(res(json!("0.5"), "1024Mi")),
            &[],
        );
        check(
            deploy(res(json!(0.5), "1G")),
            live_deploy(res(json!("500m"), "1000M")),
            &[],
        );
        check(
            deploy(res(json!("250m"), "1Gi")),
            live_deploy(res(json!("500m"), "1G")),
            &[
                (
                    "spec.template.spec.containers[name=web].resources.requests.cpu",
                    Some("250m"),
                    Some("500m"),
                ),
                (
                    "spec.template.spec.containers[name=web].resources.requests.memory",
                    Some("1Gi"),
                    Some("1G"),
                ),
            ],
        );
        // Outside quantity maps, strings compare exactly.
        check(
            deploy(json!({"note": "1k"})),
            live_deploy(json!({"note": "1000"})),
            &[("spec.note", Some("1k"), Some("1000"))],
        );
    }

    fn secret(data: Value, string_data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque",
               "data": data, "stringData": string_data})
    }

    #[test]
    fn decrypted_objects_are_masked_whatever_their_kind() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {ANNOTATION_DECRYPTED: "sops"}},
            "data": {"url": "plain-secret", "gone": "x"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {ANNOTATION_DECRYPTED: "sops"}},
            "data": {"url": "old-secret"}});
        let d = diff(&desired, &live);
        assert_eq!(d.len(), 2, "{d:?}");
        let text = format!("{d:?}");
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(d[0].desired.as_deref(), Some(MASKED));
    }

    #[test]
    fn secrets_are_masked() {
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque",
                          "data": {"user": BASE64.encode("admin"), "pass": BASE64.encode("old")}});
        check(
            secret(
                json!({"user": BASE64.encode("admin")}),
                json!({"pass": "old"}),
            ),
            live.clone(),
            &[],
        );
        check(
            secret(
                json!({"user": BASE64.encode("root")}),
                json!({"pass": "new", "token": "t"}),
            ),
            live.clone(),
            &[
                ("data.pass", Some(MASKED), Some(MASKED)),
                ("data.token", Some(MASKED), None),
                ("data.user", Some(MASKED), Some(MASKED)),
            ],
        );
        // Line-wrapped base64 in the source still matches.
        let wrapped = BASE64.encode("admin");
        let wrapped = format!("{}\n{}", &wrapped[..4], &wrapped[4..]);
        check(
            secret(json!({"user": wrapped}), json!({})),
            live.clone(),
            &[],
        );
        // stringData wins over data for the same key, like on the server.
        check(
            secret(json!({"pass": BASE64.encode("x")}), json!({"pass": "old"})),
            live.clone(),
            &[],
        );
        // The whole data map missing live still masks values.
        let bare = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque"});
        check(
            secret(json!({"k": BASE64.encode("v")}), json!(null)),
            bare,
            &[("data.k", Some(MASKED), None)],
        );
        // A ConfigMap's data is not masked.
        check(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "new"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "old"}}),
            &[("data.k", Some("new"), Some("old"))],
        );
    }
}
