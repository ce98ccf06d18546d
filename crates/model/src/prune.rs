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

use serde_json::Value;

use crate::ObjectRef;
use crate::changeset::Action;
use crate::inventory::{Inventory, InventoryEntry};
use crate::meta::{annotation, label};
use crate::owner::{LABEL_MANAGED_BY, MANAGED_BY_VALUE, Ownership, SyncOwner};
use crate::rendered_set::RenderedSet;

/// Annotation that opts an object out of prune: with the value [`PRUNE_DISABLED`], the object is
/// left in the cluster when it leaves the desired set (it is still dropped from the inventory).
pub const ANNOTATION_PRUNE: &str = "headway.dev/prune";
/// Value of [`ANNOTATION_PRUNE`] that disables prune.
pub const PRUNE_DISABLED: &str = "disabled";

/// Whether an object opts out of prune ([`ANNOTATION_PRUNE`]` = disabled`, also honoured as a
/// label).
pub fn prune_disabled(object: &Value) -> bool {
    annotation(object, ANNOTATION_PRUNE) == Some(PRUNE_DISABLED)
        || label(object, ANNOTATION_PRUNE) == Some(PRUNE_DISABLED)
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
    use crate::owner::{LABEL_SYNC_NAME, LABEL_SYNC_NAMESPACE};
    use crate::{Manifest, SourceLocation};
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
        // The opt-out is honoured as a label too.
        assert!(prune_disabled(
            &json!({"metadata": {"labels": {ANNOTATION_PRUNE: "disabled"}}})
        ));
    }
}
