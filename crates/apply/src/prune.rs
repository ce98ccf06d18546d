//! Deleting objects that left the desired set (prune) or a whole sync (its finalizer).
//!
//! Candidates come from the inventory, in deletion order (reverse apply order); they are deleted
//! stage by stage (workloads, then classes, then definitions), concurrently within a stage. Each
//! candidate is read first and deleted only when [`decide`] says so: it still carries this sync's
//! ownership labels and does not opt out. The delete has the read uid as precondition, so an
//! object recreated in between by someone else is not deleted. Not found counts as deleted.
//! Once the API server is unreachable (the operation's breaker), nothing more is sent: the
//! candidates left fail, so they stay in the inventory for the next sync.

use futures::{StreamExt, stream};
use headway_model::changeset::{Action, ChangeSet};
use headway_model::inventory::InventoryEntry;
use headway_model::order::Stage;
use headway_model::prune::{PruneDecision, decide};
use headway_model::{ObjectRef, SyncOwner};
use kube::api::{DeleteParams, Preconditions};

use crate::calls::to_json;
use crate::discovery::Resolved;
use crate::error::error_message;
use crate::op::Op;

/// Deletes `candidates` (in deletion order) that are still ours.
pub(crate) async fn delete_objects(
    op: &Op<'_>,
    owner: &SyncOwner,
    candidates: Vec<(ObjectRef, InventoryEntry)>,
) -> ChangeSet {
    let catalog = op.catalog();
    let mut changes = ChangeSet::new();
    for stage in [Stage::Workloads, Stage::Classes, Stage::Definitions] {
        let batch: Vec<&(ObjectRef, InventoryEntry)> = candidates
            .iter()
            .filter(|(id, _)| Stage::of(&id.kind) == stage)
            .collect();
        let catalog = &catalog;
        let mut results: Vec<(usize, Action)> = stream::iter(0..batch.len())
            .map(|i| {
                let (id, entry) = batch[i];
                async move {
                    let action = match catalog.resolve_any_version(&entry.api_version, &id.kind) {
                        // The kind is gone (its CRD was deleted), and its objects with it.
                        None => Action::Deleted,
                        Some(resolved) => delete_one(op, owner, id, resolved).await,
                    };
                    (i, action)
                }
            })
            .buffer_unordered(op.concurrency.max(1))
            .collect()
            .await;
        results.sort_by_key(|(i, _)| *i);
        for (i, action) in results {
            let id = batch[i].0.clone();
            op.memory.forget(owner, &id);
            changes.push(id, action);
        }
    }
    changes
}

async fn delete_one(op: &Op<'_>, owner: &SyncOwner, id: &ObjectRef, resolved: &Resolved) -> Action {
    let calls = &op.calls;
    // Failed, not skipped: an object not deleted stays in the inventory.
    if let Some(reason) = op.breaker.skip_reason() {
        return Action::Failed(reason);
    }
    let api = calls.api(resolved, id.namespace.as_deref());
    calls.count();
    let live = match api.get_metadata_opt(&id.name).await {
        Ok(live) => live,
        Err(e) if op.breaker.observe(&e) => {
            return Action::Failed(op.breaker.skip_reason().unwrap_or_default());
        }
        Err(e) => {
            return Action::Failed(format!("reading before deleting: {}", error_message(&e)));
        }
    };
    let uid = live.as_ref().and_then(|l| l.metadata.uid.clone());
    let live = live.map(|l| to_json(&l));
    match decide(owner, live.as_ref()) {
        PruneDecision::Delete => {}
        other => {
            return other
                .action_without_call()
                .expect("only Delete needs a call");
        }
    }
    let mut dp = DeleteParams::background();
    dp.preconditions = Some(Preconditions {
        uid,
        resource_version: None,
    });
    calls.count();
    match api.delete(&id.name, &dp).await {
        Ok(_) => Action::Deleted,
        Err(kube::Error::Api(s)) if s.code == 404 => Action::Deleted,
        Err(kube::Error::Api(s)) if s.code == 409 => Action::Skipped(format!(
            "replaced while pruning ({}); not deleted",
            s.message
        )),
        Err(e) if op.breaker.observe(&e) => {
            Action::Failed(op.breaker.skip_reason().unwrap_or_default())
        }
        Err(e) => Action::Failed(format!("deleting: {}", error_message(&e))),
    }
}
