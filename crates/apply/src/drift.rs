//! Drift: the live objects of a sync compared with the desired ones, without writing anything
//! (for `headway diff` and the controller's drift checks), and the text the CLI prints of it.
//!
//! The live objects are read as the health waits read them (one list per resource, GETs for the
//! rest); each is compared field by field with
//! [`headway_model::diff::diff`] (one-sided, Kubernetes-aware, Secret values masked).

use std::fmt::Write as _;

use headway_model::diff::{FieldDiff, diff};
use headway_model::inventory::Inventory;
use headway_model::{Manifest, ObjectRef, RenderedSet, SyncOwner};

use crate::health::read_live;
use crate::op::Op;

/// The drift of one desired object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftState {
    /// The live object has every desired field.
    InSync,
    /// Fields that differ (desired vs live).
    Drifted(Vec<FieldDiff>),
    /// The object does not exist.
    Missing,
    /// It could not be read.
    Error(String),
}

/// Live versus desired, per object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftReport {
    /// Every desired object, in apply order.
    pub objects: Vec<(ObjectRef, DriftState)>,
    /// Objects of the inventory that the set no longer has (a prune would delete them).
    pub stale: Vec<ObjectRef>,
    /// API requests made.
    pub requests: u64,
}

impl DriftReport {
    /// Whether anything differs (drifted or missing objects, stale ones).
    pub fn has_drift(&self) -> bool {
        !self.stale.is_empty()
            || self
                .objects
                .iter()
                .any(|(_, s)| matches!(s, DriftState::Drifted(_) | DriftState::Missing))
    }

    /// Whether some object could not be read.
    pub fn has_errors(&self) -> bool {
        self.objects
            .iter()
            .any(|(_, s)| matches!(s, DriftState::Error(_)))
    }

    /// The differences for the CLI: one block per drifted object, a line per missing, stale or
    /// unreadable one; empty when everything is in sync.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for (id, state) in &self.objects {
            match state {
                DriftState::InSync => {}
                DriftState::Drifted(diffs) => out.push_str(&render_diffs(id, diffs)),
                DriftState::Missing => out.push_str(&render_missing(id)),
                DriftState::Error(e) => out.push_str(&format!("{id}: cannot be read: {e}\n")),
            }
        }
        for id in &self.stale {
            out.push_str(&format!(
                "{id}: no longer in the source (prune would delete it)\n"
            ));
        }
        out
    }
}

/// Compares the live objects of `prepared` (a set prepared for `owner`) with it; `previous` is
/// the sync's inventory, for the stale objects.
pub(crate) async fn compare(
    op: &Op<'_>,
    owner: &SyncOwner,
    prepared: &RenderedSet,
    previous: &Inventory,
) -> DriftReport {
    let mut manifests: Vec<&Manifest> = prepared.manifests().iter().collect();
    manifests.sort_by(|a, b| headway_model::order::apply_cmp(&a.id, &b.id));
    let catalog = op.catalog();
    let live = read_live(&op.calls, &catalog, owner, &manifests, op.concurrency).await;
    let objects = manifests
        .iter()
        .zip(live)
        .map(|(m, live)| {
            let state = match live {
                Err(e) => DriftState::Error(e),
                Ok(None) => DriftState::Missing,
                Ok(Some(live)) => {
                    let diffs = diff(&m.object, &live);
                    if diffs.is_empty() {
                        DriftState::InSync
                    } else {
                        DriftState::Drifted(diffs)
                    }
                }
            };
            (m.id.clone(), state)
        })
        .collect();
    let stale = previous
        .stale(&prepared.inventory())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    DriftReport {
        objects,
        stale,
        requests: op.calls.requests(),
    }
}

/// The differences of one object for the CLI:
///
/// ```text
/// Deployment.apps/prod/web: 1 field differs
///   spec.replicas
///     desired: 3
///     live:    2
/// ```
fn render_diffs(id: &ObjectRef, diffs: &[FieldDiff]) -> String {
    let mut out = String::new();
    match diffs.len() {
        0 => {
            let _ = writeln!(out, "{id}: in sync");
        }
        1 => {
            let _ = writeln!(out, "{id}: 1 field differs");
        }
        n => {
            let _ = writeln!(out, "{id}: {n} fields differ");
        }
    }
    let missing = "(missing)".to_string();
    for d in diffs {
        let _ = writeln!(out, "  {}", d.path);
        let _ = writeln!(
            out,
            "    desired: {}",
            d.desired.as_ref().unwrap_or(&missing)
        );
        let _ = writeln!(out, "    live:    {}", d.live.as_ref().unwrap_or(&missing));
    }
    out
}

/// The CLI line for a desired object that does not exist in the cluster.
fn render_missing(id: &ObjectRef) -> String {
    format!("{id}: missing from the cluster\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_rendering() {
        let id = ObjectRef::new("apps/v1", "Deployment", Some("prod".into()), "web");
        let diffs = diff(
            &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "prod"}, "spec": {"replicas": 3, "paused": true}}),
            &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "prod", "uid": "u"}, "spec": {"replicas": 2}}),
        );
        assert_eq!(
            render_diffs(&id, &diffs),
            "Deployment.apps/prod/web: 2 fields differ\n  spec.paused\n    desired: true\n    live:    (missing)\n  spec.replicas\n    desired: 3\n    live:    2\n"
        );
        assert_eq!(
            render_diffs(&id, &[]),
            "Deployment.apps/prod/web: in sync\n"
        );
        assert_eq!(
            render_missing(&id),
            "Deployment.apps/prod/web: missing from the cluster\n"
        );
        let report = DriftReport {
            objects: vec![
                (id.clone(), DriftState::Drifted(diffs)),
                (
                    ObjectRef::new("v1", "ConfigMap", Some("prod".into()), "a"),
                    DriftState::InSync,
                ),
                (
                    ObjectRef::new("v1", "ConfigMap", Some("prod".into()), "b"),
                    DriftState::Missing,
                ),
                (
                    ObjectRef::new("v1", "ConfigMap", Some("prod".into()), "c"),
                    DriftState::Error("forbidden".into()),
                ),
            ],
            stale: vec![ObjectRef::new(
                "v1",
                "ConfigMap",
                Some("prod".into()),
                "old",
            )],
            requests: 3,
        };
        assert!(report.has_drift() && report.has_errors());
        assert_eq!(
            report.render_text(),
            "Deployment.apps/prod/web: 2 fields differ\n  spec.paused\n    desired: true\n    live:    (missing)\n  spec.replicas\n    desired: 3\n    live:    2\n\
             ConfigMap/prod/b: missing from the cluster\n\
             ConfigMap/prod/c: cannot be read: forbidden\n\
             ConfigMap/prod/old: no longer in the source (prune would delete it)\n"
        );
    }
}
