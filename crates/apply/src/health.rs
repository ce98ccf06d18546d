//! Reading the health of applied objects and waiting until they are Current.
//!
//! Objects are read in bulk: one list per resource (with the sync's ownership labels as
//! selector) when more than [`LIST_THRESHOLD`] objects share a resource, one GET per object
//! otherwise, and a GET for any object a list did not return. The status of each object is the
//! pure kstatus function [`health_of`]. While waiting, objects already seen Current are not read
//! again; a Failed object ends the wait at once.

use std::time::Duration;

use futures::{StreamExt, stream};
use headway_model::health::{Health, HealthStatus, format_not_current, health_of};
use headway_model::{Manifest, ObjectRef, SyncOwner};
use serde_json::Value;
use tokio::time::Instant;

use crate::calls::{Calls, Listing, list_by_resource, to_json};
use crate::discovery::{ApiCatalog, Resolved, ResourceGroups, group_by_resource};
use crate::error::error_message;
use crate::op::Op;
use crate::progress::{ProgressSender, ProgressStep, SyncProgress, report as report_progress};

/// More objects than this of one resource are read with one list.
pub(crate) const LIST_THRESHOLD: usize = 3;

/// Reads the live objects of `manifests` (whole objects; `None`: not found). Read errors are
/// returned per object.
pub(crate) async fn read_live(
    calls: &Calls,
    catalog: &ApiCatalog,
    owner: &SyncOwner,
    manifests: &[&Manifest],
    concurrency: usize,
) -> Vec<Result<Option<Value>, String>> {
    let mut out: Vec<Option<Result<Option<Value>, String>>> = vec![None; manifests.len()];
    // Group by resource.
    let mut served = Vec::new();
    for (i, m) in manifests.iter().enumerate() {
        match catalog.resolve(&m.api_version, &m.id.kind) {
            Some(r) => served.push((i, r)),
            None => {
                out[i] = Some(Err(format!(
                    "{} {} is not served by the API server",
                    m.api_version, m.id.kind
                )));
            }
        }
    }
    let mut singles: Vec<(usize, Resolved)> = Vec::new();
    let mut listed_groups = ResourceGroups::new();
    for (key, (resolved, indices)) in group_by_resource(served) {
        if indices.len() <= LIST_THRESHOLD {
            singles.extend(indices.into_iter().map(|i| (i, resolved.clone())));
        } else {
            listed_groups.insert(key, (resolved, indices));
        }
    }
    let listings = list_by_resource(
        owner,
        listed_groups,
        |i| &manifests[i].id,
        concurrency,
        move |resolved, selector, namespaces| async move {
            calls.list_objects(&resolved, &selector, &namespaces).await
        },
    )
    .await;
    for Listing {
        resolved,
        indices,
        found,
    } in listings
    {
        match found {
            Ok(items) => {
                for (i, item) in indices.into_iter().zip(items) {
                    match item {
                        Some(v) => out[i] = Some(Ok(Some(v))),
                        // Not labelled as ours (or gone): read it alone.
                        None => singles.push((i, resolved.clone())),
                    }
                }
            }
            Err(e) => {
                let message = format!(
                    "listing {}: {}",
                    resolved.resource.plural,
                    error_message(&e)
                );
                for i in indices {
                    out[i] = Some(Err(message.clone()));
                }
            }
        }
    }
    let fetched: Vec<(usize, Result<Option<Value>, String>)> = stream::iter(singles)
        .map(|(i, resolved)| async move {
            let id = &manifests[i].id;
            calls.count();
            let got = calls
                .api(&resolved, id.namespace.as_deref())
                .get_opt(&id.name)
                .await
                .map(|o| o.map(|o| to_json(&o)))
                .map_err(|e| format!("reading {id}: {}", error_message(&e)));
            (i, got)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for (i, r) in fetched {
        out[i] = Some(r);
    }
    out.into_iter().map(|r| r.unwrap_or(Ok(None))).collect()
}

/// The health of each object now; a read error is `Unknown` with the error as message.
pub(crate) async fn observe(
    calls: &Calls,
    catalog: &ApiCatalog,
    owner: &SyncOwner,
    manifests: &[&Manifest],
    concurrency: usize,
) -> Vec<Health> {
    read_live(calls, catalog, owner, manifests, concurrency)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(live) => health_of(live.as_ref()),
            Err(message) => Health {
                status: HealthStatus::Unknown,
                message,
            },
        })
        .collect()
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WaitOutcome {
    /// The last health seen of every object.
    pub health: Vec<(ObjectRef, Health)>,
    /// `None` when all are Current; else why the wait ended (every object not Current listed).
    pub failure: Option<String>,
}

/// Polls until every object is Current, one is Failed, or `timeout` passes.
pub(crate) async fn wait_current(
    op: &Op<'_>,
    catalog: &ApiCatalog,
    owner: &SyncOwner,
    manifests: &[&Manifest],
    timeout: Duration,
    progress: Option<&ProgressSender>,
) -> WaitOutcome {
    let (calls, poll, concurrency) = (&op.calls, op.poll_interval, op.concurrency);
    let deadline = Instant::now() + timeout;
    let mut health: Vec<Option<Health>> = vec![None; manifests.len()];
    let mut interval = poll.min(Duration::from_millis(100));
    loop {
        let pending: Vec<usize> = (0..manifests.len())
            .filter(|&i| !health[i].as_ref().is_some_and(Health::is_current))
            .collect();
        let subset: Vec<&Manifest> = pending.iter().map(|&i| manifests[i]).collect();
        let seen = observe(calls, catalog, owner, &subset, concurrency).await;
        for (i, h) in pending.into_iter().zip(seen) {
            health[i] = Some(h);
        }
        let pairs: Vec<(ObjectRef, Health)> = manifests
            .iter()
            .zip(&health)
            .map(|(m, h)| (m.id.clone(), h.clone().unwrap_or_else(Health::not_found)))
            .collect();
        let listed = || format_not_current(pairs.iter().map(|(id, h)| (id, h)));
        report_progress(
            progress,
            SyncProgress::Advanced {
                step: ProgressStep::Wait,
                done: pairs.iter().filter(|(_, h)| h.is_current()).count(),
                total: pairs.len(),
            },
        );
        if pairs.iter().all(|(_, h)| h.is_current()) {
            return WaitOutcome {
                health: pairs,
                failure: None,
            };
        }
        if pairs.iter().any(|(_, h)| h.status == HealthStatus::Failed) {
            let failure = Some(format!("objects failed:\n{}", listed()));
            return WaitOutcome {
                health: pairs,
                failure,
            };
        }
        let now = Instant::now();
        if now >= deadline {
            let failure = Some(format!(
                "timed out after {timeout:?} waiting for:\n{}",
                listed()
            ));
            return WaitOutcome {
                health: pairs,
                failure,
            };
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 2).min(poll);
    }
}
