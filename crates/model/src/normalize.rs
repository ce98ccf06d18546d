//! Normalisation of a desired object before it is applied and digested, so that it compares equal
//! to what the API server returns and is accepted as a server-side apply body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

/// what the server returns and is accepted as an apply body:
/// - `protocol: TCP` defaulted on container ports of built-in pod-carrying kinds (Pod,
///   PodTemplate, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job,
///   CronJob) and on Service ports;
/// - Secret `stringData` merged into `data` as base64 (stringData wins) and removed;
/// - `status` dropped, except on CustomResourceDefinitions;
/// - `metadata.managedFields`, `resourceVersion`, `uid` and `creationTimestamp` removed (the
///   server rejects an apply with managedFields; a resourceVersion would become a precondition).
pub fn normalize_for_apply(object: &mut Value) {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let Some(obj) = object.as_object_mut() else {
        return;
    };

    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
        ] {
            meta.remove(k);
        }
    }
    if !(group == "apiextensions.k8s.io" && kind == "CustomResourceDefinition") {
        obj.remove("status");
    }

    let pod_spec_path: Option<&[&str]> = match (group, kind.as_str()) {
        ("", "Pod") => Some(&["spec"]),
        ("", "PodTemplate") => Some(&["template", "spec"]),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => Some(&["spec", "template", "spec"]),
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    };
    if let Some(path) = pod_spec_path
        && let Some(pod_spec) = get_path_mut(obj, path)
    {
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            for c in pod_spec
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                default_protocols(c.get_mut("ports"));
            }
        }
    }
    if group.is_empty() && kind == "Service" {
        default_protocols(obj.get_mut("spec").and_then(|s| s.get_mut("ports")));
    }
    if group.is_empty() && kind == "Secret" {
        merge_string_data(obj);
    }
}

fn get_path_mut<'a>(obj: &'a mut Map<String, Value>, path: &[&str]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let mut cur = obj.get_mut(*first)?;
    for k in rest {
        cur = cur.get_mut(*k)?;
    }
    Some(cur)
}

fn default_protocols(ports: Option<&mut Value>) {
    for p in ports.and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(p) = p.as_object_mut()
            && p.get("protocol").is_none_or(Value::is_null)
        {
            p.insert("protocol".into(), Value::String("TCP".into()));
        }
    }
}

fn merge_string_data(obj: &mut Map<String, Value>) {
    let Some(string_data) = obj.remove("stringData") else {
        return;
    };
    let Value::Object(string_data) = string_data else {
        return;
    };
    if string_data.is_empty() {
        return;
    }
    let data = obj
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    let data = data.as_object_mut().expect("just made an object");
    for (k, v) in string_data {
        data.insert(k, string_data_as_base64(&v));
    }
}

/// A `stringData` value as the `data` value the API server makes of it: the base64 of its text
/// (numbers as written, anything else as empty).
pub(crate) fn string_data_as_base64(v: &Value) -> Value {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    Value::String(BASE64.encode(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Normalises `input` and expects `expected`.
    fn check_normalize(input: Value, expected: Value) {
        let mut got = input.clone();
        normalize_for_apply(&mut got);
        assert_eq!(got, expected, "\ninput: {input}");
    }

    #[test]
    fn normalisation_table() {
        let meta_in = json!({"name": "x", "managedFields": [{}], "resourceVersion": "1", "uid": "u",
                             "creationTimestamp": null, "labels": {"a": "b"}});
        let meta_out = json!({"name": "x", "labels": {"a": "b"}});
        check_normalize(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta_in, "status": {"replicas": 1},
                   "spec": {"template": {"spec": {
                       "initContainers": [{"name": "i", "ports": [{"containerPort": 1}]}],
                       "containers": [{"name": "c", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]}]}}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta_out,
                   "spec": {"template": {"spec": {
                       "initContainers": [{"name": "i", "ports": [{"containerPort": 1, "protocol": "TCP"}]}],
                       "containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]}]}}}}),
        );
        check_normalize(
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                   "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 1}]}]}}}}}}),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                   "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 1, "protocol": "TCP"}]}]}}}}}}),
        );
        check_normalize(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 1}]}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 1, "protocol": "TCP"}]}]}}),
        );
        check_normalize(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}),
        );
        // Custom resources keep their containers untouched (their schema may not have protocol).
        let cr = json!({"apiVersion": "example.com/v1", "kind": "Deployment", "metadata": {"name": "x"},
                        "spec": {"template": {"spec": {"containers": [{"ports": [{"containerPort": 1}]}]}}}, "status": {}});
        let mut cr_out = cr.clone();
        cr_out.as_object_mut().unwrap().remove("status");
        check_normalize(cr, cr_out);
        // CRDs keep their status.
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                         "metadata": {"name": "w"}, "status": {"storedVersions": ["v1"]}});
        check_normalize(crd.clone(), crd);
        // Secrets: stringData merged into data, winning over it.
        check_normalize(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                   "data": {"a": BASE64.encode("1"), "b": BASE64.encode("old")}, "stringData": {"b": "new", "c": "3"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                   "data": {"a": BASE64.encode("1"), "b": BASE64.encode("new"), "c": BASE64.encode("3")}}),
        );
        check_normalize(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": BASE64.encode("v")}}),
        );
        check_normalize(json!("scalar"), json!("scalar"));
    }
}
