//! Prune decisions: which objects that left the desired set may be deleted, and the guards that
//! keep a broken source or a slip of the keyboard from deleting a cluster's workloads.
//!
//! The guards, in the order they are checked:
//! 1. Only a [`RenderedSet`] (a desired set that was fetched and rendered completely) can produce
//!    a [`PrunePlan`]: a fetch or render error leaves the caller without one, so nothing is
//!    pruned on failure. There is no constructor from a partial result.
//! 2. An empty desired set never prunes a non-empty inventory unless [`PrunePolicy::allow_empty`].
//! 3. Mass deletion: more than [`PrunePolicy::max_delete_percent`] of the previous inventory at
//!    once is refused unless [`PrunePolicy::allow_mass_delete`] (small deletions up to
//!    [`PrunePolicy::mass_delete_floor`] objects are always allowed).
//! 4. Per object, against the live object: it must still carry our ownership labels for this
//!    very sync, and not the opt-out annotation [`ANNOTATION_PRUNE`]`: disabled`.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::changeset::Action;
use crate::inventory::{Inventory, InventoryEntry};
use crate::{Manifest, ObjectRef};

/// Standard label naming the tool that manages an object; we set it to [`MANAGED_BY_VALUE`].
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] on objects Headway applied.
pub const MANAGED_BY_VALUE: &str = "headway";
/// Label holding the name of the sync that owns the object. Label values cannot contain `/`, so
/// the owner's namespace and name are two labels rather than one `namespace/name` value.
pub const LABEL_SYNC_NAME: &str = "headway.dev/sync-name";
/// Label holding the namespace of the sync that owns the object.
pub const LABEL_SYNC_NAMESPACE: &str = "headway.dev/sync-namespace";
/// Annotation that opts an object out of prune: with the value [`PRUNE_DISABLED`], the object is
/// left in the cluster when it leaves the desired set (it is still dropped from the inventory).
pub const ANNOTATION_PRUNE: &str = "headway.dev/prune";
/// Value of [`ANNOTATION_PRUNE`] that disables prune.
pub const PRUNE_DISABLED: &str = "disabled";
/// Annotation (on the desired object) that opts in to delete-and-recreate when an apply fails on
/// an immutable field, with the value [`FORCE_ENABLED`].
pub const ANNOTATION_FORCE: &str = "headway.dev/force";
/// Value of [`ANNOTATION_FORCE`] that enables recreation.
pub const FORCE_ENABLED: &str = "enabled";

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

fn label<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o.pointer("/metadata/labels")?.get(key)?.as_str()
}

fn annotation<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o.pointer("/metadata/annotations")?.get(key)?.as_str()
}

/// Whether an object opts out of prune ([`ANNOTATION_PRUNE`]` = disabled`, also honoured as a
/// label).
pub fn prune_disabled(object: &Value) -> bool {
    annotation(object, ANNOTATION_PRUNE) == Some(PRUNE_DISABLED)
        || label(object, ANNOTATION_PRUNE) == Some(PRUNE_DISABLED)
}

/// Whether a desired object opts in to delete-and-recreate on immutable-field errors
/// ([`ANNOTATION_FORCE`]` = enabled`, also honoured as a label).
pub fn force_enabled(object: &Value) -> bool {
    annotation(object, ANNOTATION_FORCE) == Some(FORCE_ENABLED)
        || label(object, ANNOTATION_FORCE) == Some(FORCE_ENABLED)
}

/// Whether an apply error means the object must be recreated to change: HTTP 409 Conflict,
/// reason `Invalid` (HTTP 422), or a message saying a field is immutable.
pub fn is_immutable_error(http_status: u16, reason: &str, message: &str) -> bool {
    http_status == 409
        || reason == "Invalid"
        || message.contains("is immutable")
        || message.contains("immutable field")
}

/// Whether an apply error can only be resolved by deleting and recreating the object: the server
/// rejected the change (HTTP 422 or 409, or reason `Invalid`) and says a field cannot change
/// (`field is immutable`, `immutable field`, `may not change once set`, as the API server words
/// it for Job templates, selectors and Service cluster IPs).
///
/// Narrower than [`is_immutable_error`]: a plain validation error (reason `Invalid` for a bad
/// value) would fail again after the deletion, leaving the object deleted.
pub fn is_recreate_error(http_status: u16, reason: &str, message: &str) -> bool {
    let rejected = http_status == 422 || http_status == 409 || reason == "Invalid";
    let says_immutable =
        message.contains("immutable") || message.contains("may not change once set");
    rejected && says_immutable
}

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

/// Prune settings of a sync.
#[derive(Debug, Clone, PartialEq)]
pub struct PrunePolicy {
    /// Whether prune runs at all.
    pub enabled: bool,
    /// Allow an empty desired set to prune everything previously applied.
    pub allow_empty: bool,
    /// Maximal share of the previous inventory deleted in one sync, in percent.
    pub max_delete_percent: u8,
    /// Deleting at most this many objects is never a mass deletion.
    pub mass_delete_floor: usize,
    /// Disable the mass-deletion guard.
    pub allow_mass_delete: bool,
}

impl Default for PrunePolicy {
    /// Prune on, empty sets refused, at most half of the inventory (or 5 objects) at once.
    fn default() -> Self {
        PrunePolicy {
            enabled: true,
            allow_empty: false,
            max_delete_percent: 50,
            mass_delete_floor: 5,
            allow_mass_delete: false,
        }
    }
}

/// Why a prune was refused as a whole. Nothing is deleted; the sync reports the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PruneRefused {
    #[error(
        "refusing to prune: revision {revision} renders no objects, which would delete all {previous} objects previously applied; allow empty sets to do this on purpose"
    )]
    EmptyDesiredSet { revision: String, previous: usize },
    #[error(
        "refusing to prune {stale} of {previous} objects at once (more than {max_percent}%) at revision {revision}; allow mass deletion to do this on purpose"
    )]
    MassDeletion {
        revision: String,
        stale: usize,
        previous: usize,
        max_percent: u8,
    },
}

/// The objects to consider for deletion, in deletion order. Each still needs a per-object
/// [`decide`] against the live object.
#[derive(Debug, Clone, PartialEq)]
pub struct PrunePlan {
    pub candidates: Vec<(ObjectRef, InventoryEntry)>,
}

/// Plans the prune of a sync: the objects of the `previous` inventory that `desired` no longer
/// has, after the set-level guards. With prune disabled, the plan is empty.
pub fn plan_prune(
    previous: &Inventory,
    desired: &RenderedSet,
    policy: &PrunePolicy,
) -> Result<PrunePlan, PruneRefused> {
    if !policy.enabled {
        return Ok(PrunePlan {
            candidates: Vec::new(),
        });
    }
    let stale = previous.stale(&desired.inventory());
    if stale.is_empty() {
        return Ok(PrunePlan { candidates: stale });
    }
    if desired.is_empty() && !policy.allow_empty {
        return Err(PruneRefused::EmptyDesiredSet {
            revision: desired.revision().to_string(),
            previous: previous.len(),
        });
    }
    let over_share = stale.len() * 100 > previous.len() * usize::from(policy.max_delete_percent);
    if over_share && stale.len() > policy.mass_delete_floor && !policy.allow_mass_delete {
        return Err(PruneRefused::MassDeletion {
            revision: desired.revision().to_string(),
            stale: stale.len(),
            previous: previous.len(),
            max_percent: policy.max_delete_percent,
        });
    }
    Ok(PrunePlan { candidates: stale })
}

/// What to do with one prune candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneDecision {
    /// Delete it (background propagation).
    Delete,
    /// It is already gone: counts as deleted.
    AlreadyGone,
    /// Leave it in place, for the given reason.
    Skip(String),
}

impl PruneDecision {
    /// The change-set action of a decision that needs no API call (`None` for [`Delete`], whose
    /// action depends on the outcome of the delete).
    ///
    /// [`Delete`]: PruneDecision::Delete
    pub fn action_without_call(&self) -> Option<Action> {
        match self {
            PruneDecision::Delete => None,
            PruneDecision::AlreadyGone => Some(Action::Deleted),
            PruneDecision::Skip(reason) => Some(Action::Skipped(reason.clone())),
        }
    }
}

/// Decides about one prune candidate from its live state (`None`: not found).
pub fn decide(owner: &SyncOwner, live: Option<&Value>) -> PruneDecision {
    let Some(live) = live else {
        return PruneDecision::AlreadyGone;
    };
    if live
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return PruneDecision::AlreadyGone;
    }
    match owner.ownership_of(live) {
        Ownership::Ours => {}
        Ownership::OtherSync(other) => {
            return PruneDecision::Skip(format!("now owned by sync {other}"));
        }
        Ownership::NotManaged => {
            return PruneDecision::Skip(format!(
                "no longer labelled {LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"
            ));
        }
    }
    if prune_disabled(live) {
        return PruneDecision::Skip(format!("{ANNOTATION_PRUNE}: {PRUNE_DISABLED}"));
    }
    PruneDecision::Delete
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceLocation;
    use serde_json::json;

    fn owner() -> SyncOwner {
        SyncOwner::new("flux-system", "apps").unwrap()
    }

    fn cm(name: &str) -> Manifest {
        Manifest::from_object(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}),
            SourceLocation { file: format!("{name}.yaml"), document: 0, line: Some(1) },
        )
        .unwrap()
    }

    fn set(names: &[&str]) -> RenderedSet {
        RenderedSet::from_complete_render("abc123", names.iter().map(|n| cm(n)).collect()).unwrap()
    }

    fn inventory(names: &[&str]) -> Inventory {
        set(names).inventory()
    }

    /// Plans a prune from `previous` names to `desired` names; expects the stale names (in
    /// deletion order, the reverse of the names' order) or the refusal message.
    fn check(
        previous: &[&str],
        desired: &[&str],
        policy: PrunePolicy,
        expected: Result<&[&str], &str>,
    ) {
        let got = plan_prune(&inventory(previous), &set(desired), &policy)
            .map(|p| {
                p.candidates
                    .into_iter()
                    .map(|(id, _)| id.name)
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_string());
        let expected = expected
            .map(|n| n.iter().rev().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(str::to_string);
        assert_eq!(got, expected, "{previous:?} -> {desired:?}");
    }

    #[test]
    fn set_level_guards() {
        let d = PrunePolicy::default;
        check(&["a", "b", "c"], &["a", "b"], d(), Ok(&["c"]));
        check(&["a"], &["a", "b"], d(), Ok(&[]));
        check(&[], &[], d(), Ok(&[]));
        check(
            &["a", "b"],
            &[],
            d(),
            Err(
                "refusing to prune: revision abc123 renders no objects, which would delete all 2 objects previously applied; allow empty sets to do this on purpose",
            ),
        );
        check(
            &["a", "b"],
            &[],
            PrunePolicy {
                allow_empty: true,
                ..d()
            },
            Ok(&["a", "b"]),
        );
        check(
            &["a", "b"],
            &[],
            PrunePolicy {
                enabled: false,
                ..d()
            },
            Ok(&[]),
        );
        // Up to the floor (5) is always allowed, even when it is more than half.
        check(
            &["a", "b", "c", "d", "e", "f"],
            &["f"],
            d(),
            Ok(&["a", "b", "c", "d", "e"]),
        );
        let many: Vec<String> = (0..20).map(|i| format!("o{i:02}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        // 10 of 20 is exactly 50%: allowed; 11 of 20 is refused.
        check(&many, &many[..10], d(), Ok(&many[10..]));
        check(
            &many,
            &many[..9],
            d(),
            Err(
                "refusing to prune 11 of 20 objects at once (more than 50%) at revision abc123; allow mass deletion to do this on purpose",
            ),
        );
        check(
            &many,
            &many[..9],
            PrunePolicy {
                allow_mass_delete: true,
                ..d()
            },
            Ok(&many[9..]),
        );
        check(
            &many,
            &many[..9],
            PrunePolicy {
                max_delete_percent: 60,
                ..d()
            },
            Ok(&many[9..]),
        );
    }

    #[test]
    fn rendered_set_refuses_duplicates() {
        let err = RenderedSet::from_complete_render("r", vec![cm("a"), cm("a")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap/ns/a is defined twice: in a.yaml (document 0, line 1) and in a.yaml (document 0, line 1)"
        );
    }

    fn live(labels: Value, annotations: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "a", "namespace": "ns", "labels": labels, "annotations": annotations}})
    }

    fn ours() -> Value {
        json!({LABEL_MANAGED_BY: "headway", LABEL_SYNC_NAME: "apps", LABEL_SYNC_NAMESPACE: "flux-system"})
    }

    #[test]
    fn per_object_decisions() {
        let check = |input: Option<Value>, expected: PruneDecision| {
            assert_eq!(decide(&owner(), input.as_ref()), expected, "{input:?}");
        };
        check(None, PruneDecision::AlreadyGone);
        check(Some(live(ours(), json!({}))), PruneDecision::Delete);
        let mut deleting = live(ours(), json!({}));
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        check(Some(deleting), PruneDecision::AlreadyGone);
        check(
            Some(live(ours(), json!({ANNOTATION_PRUNE: "disabled"}))),
            PruneDecision::Skip("headway.dev/prune: disabled".into()),
        );
        check(
            Some(live(ours(), json!({ANNOTATION_PRUNE: "enabled"}))),
            PruneDecision::Delete,
        );
        check(
            Some(live(json!({"app": "x"}), json!({}))),
            PruneDecision::Skip("no longer labelled app.kubernetes.io/managed-by=headway".into()),
        );
        check(
            Some(live(
                json!({LABEL_MANAGED_BY: "headway", LABEL_SYNC_NAME: "other", LABEL_SYNC_NAMESPACE: "team-a"}),
                json!({}),
            )),
            PruneDecision::Skip("now owned by sync team-a/other".into()),
        );
        check(
            Some(json!({"metadata": {"name": "a"}})),
            PruneDecision::Skip("no longer labelled app.kubernetes.io/managed-by=headway".into()),
        );
        assert_eq!(
            PruneDecision::AlreadyGone.action_without_call(),
            Some(Action::Deleted)
        );
        assert_eq!(PruneDecision::Delete.action_without_call(), None);
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

    #[test]
    fn force_and_immutable() {
        assert!(force_enabled(
            &json!({"metadata": {"annotations": {ANNOTATION_FORCE: "enabled"}}})
        ));
        assert!(!force_enabled(
            &json!({"metadata": {"annotations": {ANNOTATION_FORCE: "true"}}})
        ));
        assert!(force_enabled(
            &json!({"metadata": {"labels": {ANNOTATION_FORCE: "enabled"}}})
        ));
        assert!(prune_disabled(
            &json!({"metadata": {"labels": {ANNOTATION_PRUNE: "disabled"}}})
        ));
        for (status, reason, message, expected) in [
            (409, "Conflict", "", true),
            (422, "Invalid", "spec.selector: Invalid value", true),
            (422, "Other", "field is immutable", true),
            (
                500,
                "",
                "spec.clusterIP: Invalid value: \"\": immutable field",
                true,
            ),
            (422, "Other", "bad value", false),
            (404, "NotFound", "", false),
        ] {
            assert_eq!(
                is_immutable_error(status, reason, message),
                expected,
                "{status} {reason} {message}"
            );
        }
        for (status, reason, message, expected) in [
            (
                422,
                "Invalid",
                "Job.batch \"j\" is invalid: spec.template: Invalid value: ...: field is immutable",
                true,
            ),
            (
                422,
                "Invalid",
                "spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.9\"}: may not change once set",
                true,
            ),
            (409, "Conflict", "spec.selector: immutable field", true),
            (
                422,
                "Invalid",
                "spec.replicas: Invalid value: -1: must be >= 0",
                false,
            ),
            (500, "InternalError", "field is immutable", false),
            (404, "NotFound", "", false),
        ] {
            assert_eq!(
                is_recreate_error(status, reason, message),
                expected,
                "{status} {reason} {message}"
            );
        }
    }
}
