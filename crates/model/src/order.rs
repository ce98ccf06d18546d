//! Apply ordering: the rank of each kind, the sort used for apply and (reversed) for deletion, and
//! the split of a desired set into the stages that are applied one after the other.
//!
//! The rank is by kind only, in the order users of Flux know: definitions first (CRDs, namespaces,
//! classes), then access control and configuration, then workloads, every other kind after those,
//! and admission webhooks last so a webhook never blocks the objects it would validate. Ties are
//! broken by group, kind, namespace (cluster-scoped first) and name, so the order is total and
//! stable across runs.

use std::cmp::Ordering;

use crate::{Manifest, ObjectRef};

/// Kinds applied first, in this order. Every kind not listed ranks after them, except the two
/// admission webhook kinds in [`LAST_KINDS`].
pub const FIRST_KINDS: &[&str] = &[
    "CustomResourceDefinition",
    "Namespace",
    "ClusterClass",
    "RuntimeClass",
    "PriorityClass",
    "StorageClass",
    "VolumeSnapshotClass",
    "IngressClass",
    "GatewayClass",
    "ResourceQuota",
    "ServiceAccount",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "LimitRange",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];

/// Kinds applied last, in this order (after every other kind).
pub const LAST_KINDS: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// The apply rank of a kind: lower is applied earlier. Kinds not in [`FIRST_KINDS`] or
/// [`LAST_KINDS`] share the rank `FIRST_KINDS.len()`.
pub fn kind_rank(kind: &str) -> usize {
    if let Some(i) = FIRST_KINDS.iter().position(|k| *k == kind) {
        return i;
    }
    match LAST_KINDS.iter().position(|k| *k == kind) {
        Some(i) => FIRST_KINDS.len() + 1 + i,
        None => FIRST_KINDS.len(),
    }
}

/// The apply order of two objects: kind rank, then group, kind, namespace (cluster-scoped
/// first) and name.
pub fn apply_cmp(a: &ObjectRef, b: &ObjectRef) -> Ordering {
    kind_rank(&a.kind)
        .cmp(&kind_rank(&b.kind))
        .then_with(|| a.group.cmp(&b.group))
        .then_with(|| a.kind.cmp(&b.kind))
        .then_with(|| a.namespace.cmp(&b.namespace))
        .then_with(|| a.name.cmp(&b.name))
}

/// Sorts manifests into apply order (used by `headway render` and by the apply engine).
pub fn sort_for_apply(manifests: &mut [Manifest]) {
    manifests.sort_by(|a, b| apply_cmp(&a.id, &b.id));
}

/// Sorts object references into apply order.
pub fn sort_refs_for_apply(refs: &mut [ObjectRef]) {
    refs.sort_by(apply_cmp);
}

/// Sorts object references into deletion order: the exact reverse of the apply order, so
/// webhooks go first and namespaces and CRDs last.
pub fn sort_for_delete(refs: &mut [ObjectRef]) {
    refs.sort_by(|a, b| apply_cmp(b, a));
}

/// The stages of an apply. Each stage is applied completely, and waited for when
/// [`Stage::waits`] says so, before the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// CustomResourceDefinitions, Namespaces and ClusterRoles: what later objects need to exist
    /// (a custom resource needs its CRD Established, a namespaced object its Namespace).
    Definitions,
    /// Kinds whose name ends in `Class` (StorageClass, IngressClass, GatewayClass, ...), which
    /// other objects refer to by name.
    Classes,
    /// Everything else.
    Workloads,
}

impl Stage {
    /// All stages, in the order they are applied.
    pub const ALL: [Stage; 3] = [Stage::Definitions, Stage::Classes, Stage::Workloads];

    /// The stage an object of this kind belongs to (by kind only, like the rank).
    pub fn of(kind: &str) -> Stage {
        match kind {
            "CustomResourceDefinition" | "Namespace" | "ClusterRole" => Stage::Definitions,
            k if k.ends_with("Class") => Stage::Classes,
            _ => Stage::Workloads,
        }
    }

    /// Whether the apply must wait for this stage's objects to be Current (CRDs Established,
    /// Namespaces Active) before starting the next stage.
    pub fn waits(self) -> bool {
        !matches!(self, Stage::Workloads)
    }

    /// Whether API discovery must be refreshed after this stage: custom resources of a CRD
    /// applied in the same sync cannot be resolved before the CRD is Established.
    pub fn rediscover_after(self) -> bool {
        matches!(self, Stage::Definitions)
    }

    /// A lowercase name for logs and events.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Definitions => "definitions",
            Stage::Classes => "classes",
            Stage::Workloads => "workloads",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Splits a desired set into its stages, in stage order, each sorted into apply order. Stages
/// without objects are left out.
pub fn into_stages(manifests: Vec<Manifest>) -> Vec<(Stage, Vec<Manifest>)> {
    let mut stages: Vec<(Stage, Vec<Manifest>)> =
        Stage::ALL.iter().map(|s| (*s, Vec::new())).collect();
    for m in manifests {
        let stage = Stage::of(&m.id.kind);
        stages[stage as usize].1.push(m);
    }
    stages.retain(|(_, ms)| !ms.is_empty());
    for (_, ms) in &mut stages {
        sort_for_apply(ms);
    }
    stages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceLocation;
    use serde_json::json;

    /// `"group/Kind/namespace/name"` with `-` for the core group and for cluster scope.
    fn r(spec: &str) -> ObjectRef {
        let parts: Vec<&str> = spec.split('/').collect();
        let [group, kind, ns, name] = parts[..] else {
            panic!("bad ref spec {spec}")
        };
        ObjectRef {
            group: if group == "-" {
                String::new()
            } else {
                group.into()
            },
            kind: kind.into(),
            namespace: (ns != "-").then(|| ns.to_string()),
            name: name.into(),
        }
    }

    fn show(refs: &[ObjectRef]) -> Vec<String> {
        refs.iter().map(|r| r.to_string()).collect()
    }

    fn check(input: &[&str], expected_apply: &[&str]) {
        let mut refs: Vec<ObjectRef> = input.iter().map(|s| r(s)).collect();
        sort_refs_for_apply(&mut refs);
        assert_eq!(show(&refs), expected_apply, "apply order of {input:?}");
        sort_for_delete(&mut refs);
        let mut reversed: Vec<&str> = expected_apply.to_vec();
        reversed.reverse();
        assert_eq!(show(&refs), reversed, "delete order of {input:?}");
    }

    #[test]
    fn ordering_table() {
        // The full first-kinds list, shuffled, comes out in the documented order.
        check(
            &[
                "policy/PodDisruptionBudget/a/p",
                "batch/CronJob/a/c",
                "apps/StatefulSet/a/s",
                "apps/Deployment/a/d",
                "-/LimitRange/a/l",
                "-/Service/a/s",
                "-/Secret/a/s",
                "-/ConfigMap/a/c",
                "rbac.authorization.k8s.io/ClusterRoleBinding/-/crb",
                "rbac.authorization.k8s.io/RoleBinding/a/rb",
                "rbac.authorization.k8s.io/ClusterRole/-/cr",
                "rbac.authorization.k8s.io/Role/a/r",
                "-/ServiceAccount/a/sa",
                "-/ResourceQuota/a/q",
                "gateway.networking.k8s.io/GatewayClass/-/g",
                "networking.k8s.io/IngressClass/-/i",
                "snapshot.storage.k8s.io/VolumeSnapshotClass/-/v",
                "storage.k8s.io/StorageClass/-/s",
                "scheduling.k8s.io/PriorityClass/-/p",
                "node.k8s.io/RuntimeClass/-/r",
                "cluster.x-k8s.io/ClusterClass/a/c",
                "-/Namespace/-/a",
                "apiextensions.k8s.io/CustomResourceDefinition/-/widgets.example.com",
            ],
            &[
                "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com",
                "Namespace/a",
                "ClusterClass.cluster.x-k8s.io/a/c",
                "RuntimeClass.node.k8s.io/r",
                "PriorityClass.scheduling.k8s.io/p",
                "StorageClass.storage.k8s.io/s",
                "VolumeSnapshotClass.snapshot.storage.k8s.io/v",
                "IngressClass.networking.k8s.io/i",
                "GatewayClass.gateway.networking.k8s.io/g",
                "ResourceQuota/a/q",
                "ServiceAccount/a/sa",
                "Role.rbac.authorization.k8s.io/a/r",
                "ClusterRole.rbac.authorization.k8s.io/cr",
                "RoleBinding.rbac.authorization.k8s.io/a/rb",
                "ClusterRoleBinding.rbac.authorization.k8s.io/crb",
                "ConfigMap/a/c",
                "Secret/a/s",
                "Service/a/s",
                "LimitRange/a/l",
                "Deployment.apps/a/d",
                "StatefulSet.apps/a/s",
                "CronJob.batch/a/c",
                "PodDisruptionBudget.policy/a/p",
            ],
        );
        // Other kinds after the list, sorted by group then kind; webhooks last, mutating first.
        check(
            &[
                "admissionregistration.k8s.io/ValidatingWebhookConfiguration/-/v",
                "admissionregistration.k8s.io/MutatingWebhookConfiguration/-/m",
                "example.com/Widget/a/w",
                "networking.k8s.io/Ingress/a/i",
                "batch/Job/a/j",
                "apps/DaemonSet/a/d",
                "autoscaling/HorizontalPodAutoscaler/a/h",
                "policy/PodDisruptionBudget/a/p",
            ],
            &[
                "PodDisruptionBudget.policy/a/p",
                "DaemonSet.apps/a/d",
                "HorizontalPodAutoscaler.autoscaling/a/h",
                "Job.batch/a/j",
                "Widget.example.com/a/w",
                "Ingress.networking.k8s.io/a/i",
                "MutatingWebhookConfiguration.admissionregistration.k8s.io/m",
                "ValidatingWebhookConfiguration.admissionregistration.k8s.io/v",
            ],
        );
        // Ties: group, kind, namespace (cluster scope first), name.
        check(
            &[
                "b.example.com/Thing/a/x",
                "a.example.com/Thing/b/y",
                "a.example.com/Thing/a/y",
                "a.example.com/Thing/a/x",
                "a.example.com/Other/-/z",
                "a.example.com/Thing/-/z",
            ],
            &[
                "Other.a.example.com/z",
                "Thing.a.example.com/z",
                "Thing.a.example.com/a/x",
                "Thing.a.example.com/a/y",
                "Thing.a.example.com/b/y",
                "Thing.b.example.com/a/x",
            ],
        );
    }

    fn manifest(api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> Manifest {
        let mut metadata = json!({"name": name});
        if let Some(ns) = ns {
            metadata["namespace"] = json!(ns);
        }
        Manifest::from_object(
            json!({"apiVersion": api_version, "kind": kind, "metadata": metadata}),
            SourceLocation {
                file: "t.yaml".into(),
                document: 0,
                line: None,
            },
        )
        .unwrap()
    }

    fn check_stages(input: Vec<Manifest>, expected: &[(Stage, &[&str])]) {
        let got: Vec<(Stage, Vec<String>)> = into_stages(input)
            .into_iter()
            .map(|(s, ms)| (s, ms.iter().map(|m| m.id.to_string()).collect()))
            .collect();
        let expected: Vec<(Stage, Vec<String>)> = expected
            .iter()
            .map(|(s, ids)| (*s, ids.iter().map(|i| i.to_string()).collect()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn stages_table() {
        check_stages(
            vec![
                manifest("apps/v1", "Deployment", Some("a"), "web"),
                manifest("example.com/v1", "Widget", Some("a"), "w"),
                manifest("storage.k8s.io/v1", "StorageClass", None, "fast"),
                manifest(
                    "rbac.authorization.k8s.io/v1",
                    "ClusterRole",
                    None,
                    "reader",
                ),
                manifest(
                    "rbac.authorization.k8s.io/v1",
                    "ClusterRoleBinding",
                    None,
                    "reader",
                ),
                manifest("v1", "Namespace", None, "a"),
                manifest(
                    "apiextensions.k8s.io/v1",
                    "CustomResourceDefinition",
                    None,
                    "widgets.example.com",
                ),
                manifest("networking.k8s.io/v1", "IngressClass", None, "nginx"),
            ],
            &[
                (
                    Stage::Definitions,
                    &[
                        "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com",
                        "Namespace/a",
                        "ClusterRole.rbac.authorization.k8s.io/reader",
                    ],
                ),
                (
                    Stage::Classes,
                    &[
                        "StorageClass.storage.k8s.io/fast",
                        "IngressClass.networking.k8s.io/nginx",
                    ],
                ),
                (
                    Stage::Workloads,
                    &[
                        "ClusterRoleBinding.rbac.authorization.k8s.io/reader",
                        "Deployment.apps/a/web",
                        "Widget.example.com/a/w",
                    ],
                ),
            ],
        );
        // Empty stages are left out.
        check_stages(
            vec![manifest("v1", "ConfigMap", Some("a"), "c")],
            &[(Stage::Workloads, &["ConfigMap/a/c"])],
        );
        check_stages(vec![], &[]);
    }

    #[test]
    fn stage_properties() {
        assert!(Stage::Definitions.waits() && Stage::Classes.waits() && !Stage::Workloads.waits());
        assert!(Stage::Definitions.rediscover_after() && !Stage::Classes.rediscover_after());
        assert_eq!(Stage::Classes.to_string(), "classes");
    }
}
