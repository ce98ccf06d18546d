//! The engine: the facade the controller and the CLI call. One [`Engine`] per process, shared
//! (`Arc<Engine>`) by every sync; its methods take `&self` and may run concurrently for different
//! syncs (discovery sits behind a lock, the memory of applied objects behind a mutex).
//!
//! A sync ([`Engine::sync`]) is a pipeline with one failure step each:
//! 1. prepare the rendered set (scopes, namespaces, normalisation, ownership labels); a set that
//!    cannot be prepared is an error and nothing is written;
//! 2. read the previous inventory from the cluster;
//! 3. apply stage by stage ([`SyncStep::Apply`]);
//! 4. record the inventory: the previous one plus everything applied, each with the stamp of what
//!    the apply left (so a restarted engine skips unchanged objects too);
//! 5. prune, when asked and when the apply succeeded ([`SyncStep::Prune`]), and record the
//!    inventory without the objects deleted or left alone;
//! 6. wait until every desired object is Current, when asked ([`SyncStep::Health`]).
//!
//! Identity: a sync may act as another identity ([`SyncRequest::acting_as`], a client that
//! impersonates a tenant's service account). Every request about the sync's objects (apply,
//! prune, health and drift reads) then goes through it, so the API server decides what the
//! tenant may touch; discovery and the inventory stay with the engine's own client. A refused
//! apply fails the apply step, so nothing is pruned; a refused deletion is a failed deletion and
//! the object stays in the inventory.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use headway_model::changeset::{Action, ChangeSet};
use headway_model::health::Health;
use headway_model::inventory::{DigestPrefix, Inventory, InventoryEntry, LiveStamp};
use headway_model::prune::{PrunePolicy, PruneRefused, plan_prune};
use headway_model::{Manifest, ObjectRef, RenderedSet, SyncOwner};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::apply::{ApplyInput, Detect, apply_set};
use crate::breaker::Breaker;
use crate::calls::Calls;
use crate::discovery::{ApiCatalog, Discovered, ServerCapabilities};
use crate::drift::{DriftReport, compare};
use crate::error::ApplyError;
use crate::health::wait_current;
use crate::memory::Memory;
use crate::op::Op;
use crate::prepare::{PrepareError, Target, prepare};
use crate::progress::{ProgressSender, ProgressStep, SyncProgress, report as report_progress};
use crate::prune::delete_objects;
use crate::store;

/// Tuning of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Requests in flight at once within one sync (applies, deletes, reads).
    pub concurrency: usize,
    /// Longest wait for the Definitions and Classes stages to become Current.
    pub stage_timeout: Duration,
    /// Longest interval between two health reads while waiting (the first reads are faster).
    pub poll_interval: Duration,
    /// Largest inventory shard, in bytes of text (below the API server's 1 MiB ConfigMap limit).
    pub inventory_shard_bytes: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            concurrency: 32,
            stage_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            inventory_shard_bytes: store::DEFAULT_SHARD_BYTES,
        }
    }
}

/// An identity other than the engine's own that a sync's objects are written and read with.
#[derive(Clone)]
pub struct Identity {
    /// Who it is, for messages (e.g. `system:serviceaccount:team-a:deployer`).
    pub user: String,
    /// A client acting as it (e.g. impersonating it).
    pub client: kube::Client,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("user", &self.user)
            .finish()
    }
}

/// One sync to perform.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// The sync: its ownership labels go on every object, its inventory lives in its namespace.
    pub owner: SyncOwner,
    /// Namespace of namespaced objects that name none.
    pub default_namespace: String,
    /// The complete render of the source (a failed render has no `RenderedSet`, so it cannot be
    /// synced, and nothing is pruned).
    pub set: RenderedSet,
    /// Delete objects of the previous inventory that left the set.
    pub prune: bool,
    /// Wait until every object is Current (at most `timeout`).
    pub wait: bool,
    /// Longest health wait.
    pub timeout: Duration,
    /// Delete and recreate objects whose apply fails on an immutable field (per object: the
    /// annotation `headway.dev/force: enabled`).
    pub force: bool,
    /// Allow an empty set to prune everything previously applied.
    pub allow_empty: bool,
    /// Largest share (0.0 to 1.0) of the previous inventory one prune may delete; `None`: the
    /// default of one half (deleting up to 5 objects is always allowed). `Some(1.0)` disables the
    /// guard.
    pub max_prune_fraction: Option<f64>,
    /// Bypass every cache: re-run discovery and apply every object.
    pub rebuild: bool,
    /// Re-apply objects changed or deleted by hand (drift) even when the source did not change.
    /// Off: only objects whose desired state changed since the last apply are applied.
    pub self_heal: bool,
    /// Where to report progress as the sync runs; `None`: nowhere.
    pub progress: Option<ProgressSender>,
    /// The identity the sync's objects are applied, pruned and read with (e.g. a client that
    /// impersonates a tenant's service account); `None`: the engine's own client. Discovery
    /// and the inventory always use the engine's own client.
    pub acting_as: Option<Identity>,
}

impl SyncRequest {
    /// A request with the safe defaults: no prune, no wait (timeout 5 minutes), no force, empty
    /// sets refused, the mass-deletion guard on, caches used, self-heal on.
    pub fn new(owner: SyncOwner, default_namespace: impl Into<String>, set: RenderedSet) -> Self {
        SyncRequest {
            owner,
            default_namespace: default_namespace.into(),
            set,
            prune: false,
            wait: false,
            timeout: Duration::from_secs(300),
            force: false,
            allow_empty: false,
            max_prune_fraction: None,
            rebuild: false,
            self_heal: true,
            progress: None,
            acting_as: None,
        }
    }

    fn prune_policy(&self) -> PrunePolicy {
        let mut policy = PrunePolicy {
            enabled: self.prune,
            allow_empty: self.allow_empty,
            ..PrunePolicy::default()
        };
        if let Some(f) = self.max_prune_fraction {
            if f >= 1.0 {
                policy.allow_mass_delete = true;
            } else {
                policy.max_delete_percent = (f.max(0.0) * 100.0).round() as u8;
            }
        }
        policy
    }
}

/// The step of a sync that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncStep {
    Apply,
    Prune,
    Health,
}

impl std::fmt::Display for SyncStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncStep::Apply => "apply",
            SyncStep::Prune => "prune",
            SyncStep::Health => "health",
        })
    }
}

/// Why a sync did not fully succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFailure {
    pub step: SyncStep,
    /// What went wrong; lists every object concerned (failed applies, objects not Current).
    pub message: String,
    /// Set when the prune was refused as a whole by a guard (empty set, mass deletion): it
    /// repeats until the source or the policy changes, unlike failed deletions.
    pub refused: Option<PruneRefused>,
    /// Set when the step was cut short because the API server became unreachable (the
    /// operation's breaker tripped): the failure is transient, retry with backoff.
    pub unavailable: bool,
    /// Set when every object that failed to apply was refused by the API server as it is
    /// (invalid, too large, an immutable field changed): retrying the same source soon fails
    /// the same way.
    pub refused_by_server: bool,
}

impl SyncFailure {
    /// A failure of `step` with no further marks.
    pub fn new(step: SyncStep, message: String) -> Self {
        SyncFailure {
            step,
            message,
            refused: None,
            unavailable: false,
            refused_by_server: false,
        }
    }
}

impl std::fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.step, self.message)
    }
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// Per object: applied (created, configured, unchanged, failed, skipped), then pruned.
    pub changes: ChangeSet,
    /// Duration of each step: `apply definitions`, `apply classes`, `apply workloads`, `prune`,
    /// `wait`.
    pub timings: Vec<(String, Duration)>,
    /// The last health seen of each desired object (only when waited).
    pub health: Vec<(ObjectRef, Health)>,
    /// The first step that failed, if any.
    pub failure: Option<SyncFailure>,
    /// API requests made by this sync.
    pub requests: u64,
    /// Entries of the inventory recorded at the end.
    pub inventory_len: usize,
}

impl SyncReport {
    /// Whether every step succeeded.
    pub fn is_ok(&self) -> bool {
        self.failure.is_none() && self.changes.is_ok()
    }
}

/// The apply engine (see the module documentation).
pub struct Engine {
    client: kube::Client,
    discovery: Discovered,
    /// What this engine applied, per sync and object (see the `apply` module for its use).
    memory: Memory,
    options: EngineOptions,
}

impl Engine {
    /// An engine with fresh discovery.
    pub async fn new(client: kube::Client, options: EngineOptions) -> Result<Engine, ApplyError> {
        let catalog = ApiCatalog::load(client.clone())
            .await
            .map_err(ApplyError::Discovery)?;
        Ok(Engine {
            client,
            discovery: Discovered::new(catalog),
            memory: Memory::default(),
            options,
        })
    }

    /// The client the engine uses.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The engine's options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The server's version (one request) and the API versions of the current discovery: what
    /// Helm templates are rendered against (`--kube-version`, `--api-versions`).
    pub async fn capabilities(&self) -> Result<ServerCapabilities, ApplyError> {
        let version = self
            .client
            .apiserver_version()
            .await
            .map_err(ApplyError::Discovery)?;
        Ok(ServerCapabilities {
            kube_version: version.git_version,
            api_versions: self.discovery.current().api_versions(),
        })
    }

    /// Forgets what was applied for every sync, as a restart does: the next syncs apply the
    /// objects that the stamps of their inventories cannot prove unchanged (a rebuild applies
    /// every object).
    pub fn clear_cache(&self) {
        self.memory.clear();
    }

    /// A new operation: its own request count, the engine's discovery and memory; the objects
    /// through `acting_as` when given, else through the engine's client.
    fn op(&self, acting_as: Option<&Identity>) -> Op<'_> {
        let calls = match acting_as {
            Some(identity) => Calls::acting(self.client.clone(), identity.client.clone()),
            None => Calls::new(self.client.clone()),
        };
        Op {
            calls,
            discovery: &self.discovery,
            memory: &self.memory,
            concurrency: self.options.concurrency,
            stage_timeout: self.options.stage_timeout,
            poll_interval: self.options.poll_interval,
            breaker: Breaker::default(),
            refused: Default::default(),
        }
    }

    /// Applies, prunes and waits for one sync; never prunes unless the set is a complete render
    /// (a [`RenderedSet`]), the apply succeeded, and the guards allow it.
    ///
    /// Errors are for what prevents any per-object result (discovery, an unpreparable set, the
    /// inventory); everything else is in the report.
    pub async fn sync(&self, req: &SyncRequest) -> Result<SyncReport, ApplyError> {
        let op = self.op(req.acting_as.as_ref());
        let target = Target {
            default_namespace: req.default_namespace.clone(),
            owner: req.owner.clone(),
        };
        let prepared = prepare_set(&op, &req.set, &target, req.rebuild).await?;
        let previous = store::read(&op.calls, &req.owner).await?;
        let creates_home = || {
            prepared.manifests().iter().any(|m| {
                m.id.group.is_empty()
                    && m.id.kind == "Namespace"
                    && m.id.name == req.owner.namespace()
            })
        };
        if previous.is_empty() && !creates_home() {
            store::require_home(&op.calls, &req.owner).await?;
        }
        let mut report = SyncReport {
            changes: ChangeSet::new(),
            timings: Vec::new(),
            health: Vec::new(),
            failure: None,
            requests: 0,
            inventory_len: previous.len(),
        };

        // Apply.
        let input = ApplyInput {
            owner: &req.owner,
            detect: if req.rebuild {
                Detect::All
            } else if req.self_heal {
                Detect::Live(&previous)
            } else {
                Detect::Inventory(&previous)
            },
            force: req.force,
            timeout: req.timeout,
            progress: req.progress.as_ref(),
        };
        let applied = apply_set(&op, &input, prepared.manifests()).await;
        report.timings.extend(applied.timings);
        if let Some(message) = applied.failure {
            report.failure = Some(match op.breaker.tripped() {
                // One line, not one per object skipped.
                Some(_) => SyncFailure {
                    unavailable: true,
                    ..SyncFailure::new(SyncStep::Apply, message)
                },
                None => SyncFailure {
                    refused_by_server: applied.refused_by_server,
                    ..SyncFailure::new(SyncStep::Apply, with_failures(message, &applied.changes))
                },
            });
        }
        let results: HashMap<&ObjectRef, &Action> = applied
            .changes
            .changes
            .iter()
            .map(|c| (&c.id, &c.action))
            .collect();
        report.changes = applied.changes.clone();

        // Inventory: everything previously applied, plus what is applied now.
        let mut inventory = previous.clone();
        for m in prepared.manifests() {
            let ok = matches!(
                results.get(&m.id),
                Some(Action::Created | Action::Configured | Action::Unchanged)
            );
            if ok {
                // The stamp of what the apply left; for an object not applied now (self-heal off,
                // unchanged source) the one recorded before.
                let live = self.memory.stamp(&req.owner, m).or_else(|| {
                    previous
                        .entries
                        .get(&m.id)
                        .filter(|e| e.api_version == m.api_version && e.digest.matches(&m.digest))
                        .and_then(|e| e.live)
                });
                inventory.insert(m.id.clone(), entry_of(m, live));
            }
        }
        // Even after an outage cut the apply short: the objects applied before it belong in the
        // inventory (the server may be back already; if not, this one request fails too).
        if let Err(e) = self
            .record(&op.calls, &req.owner, &previous, &inventory)
            .await
        {
            return Err(match op.breaker.tripped() {
                Some(first) => ApplyError::Unavailable(first),
                None => e,
            });
        }

        // Prune.
        if req.prune && report.failure.is_none() {
            let started = Instant::now();
            match plan_prune(&previous, &prepared, &req.prune_policy()) {
                Err(refused) => {
                    warn!(sync = %req.owner, %refused, "prune refused");
                    report.failure = Some(SyncFailure {
                        step: SyncStep::Prune,
                        message: refused.to_string(),
                        refused: Some(refused),
                        unavailable: false,
                        refused_by_server: false,
                    });
                }
                Ok(plan) => {
                    report_progress(
                        req.progress.as_ref(),
                        SyncProgress::Started {
                            step: ProgressStep::Prune,
                            name: "prune".into(),
                            total: plan.candidates.len(),
                        },
                    );
                    let pruned = delete_objects(&op, &req.owner, plan.candidates).await;
                    report_progress(
                        req.progress.as_ref(),
                        SyncProgress::Finished {
                            step: ProgressStep::Prune,
                            name: "prune".into(),
                            count: pruned.counts().deleted,
                            duration: started.elapsed(),
                            ok: pruned.is_ok(),
                        },
                    );
                    let before = inventory.clone();
                    for c in &pruned.changes {
                        if !matches!(c.action, Action::Failed(_)) {
                            inventory.entries.remove(&c.id);
                        }
                    }
                    self.record(&op.calls, &req.owner, &before, &inventory)
                        .await?;
                    if let Some(first) = op.breaker.tripped() {
                        report.failure = Some(SyncFailure {
                            unavailable: true,
                            ..SyncFailure::new(
                                SyncStep::Prune,
                                format!("the API server became unreachable while pruning: {first}"),
                            )
                        });
                    } else if !pruned.is_ok() {
                        let message = with_failures(
                            String::from("some objects could not be deleted"),
                            &pruned,
                        );
                        report.failure = Some(SyncFailure::new(SyncStep::Prune, message));
                    }
                    report.changes.extend(pruned);
                }
            }
            report.timings.push(("prune".into(), started.elapsed()));
        }
        report.inventory_len = inventory.len();

        // Health.
        if req.wait && report.failure.is_none() {
            let started = Instant::now();
            let refs: Vec<&Manifest> = prepared.manifests().iter().collect();
            let catalog = op.catalog();
            report_progress(
                req.progress.as_ref(),
                SyncProgress::Started {
                    step: ProgressStep::Wait,
                    name: "wait".into(),
                    total: refs.len(),
                },
            );
            let waited = wait_current(
                &op,
                &catalog,
                &req.owner,
                &refs,
                req.timeout,
                req.progress.as_ref(),
            )
            .await;
            report_progress(
                req.progress.as_ref(),
                SyncProgress::Finished {
                    step: ProgressStep::Wait,
                    name: "wait".into(),
                    count: waited.health.iter().filter(|(_, h)| h.is_current()).count(),
                    duration: started.elapsed(),
                    ok: waited.failure.is_none(),
                },
            );
            report.health = waited.health;
            if let Some(message) = waited.failure {
                report.failure = Some(SyncFailure::new(SyncStep::Health, message));
            }
            report.timings.push(("wait".into(), started.elapsed()));
        }
        report.requests = op.calls.requests();
        info!(sync = %req.owner, changes = %report.changes, requests = report.requests, failure = ?report.failure.as_ref().map(|f| f.step), "sync done");
        Ok(report)
    }

    async fn record(
        &self,
        calls: &Calls,
        owner: &SyncOwner,
        before: &Inventory,
        after: &Inventory,
    ) -> Result<(), ApplyError> {
        if before == after {
            return Ok(());
        }
        store::write(calls, owner, after, self.options.inventory_shard_bytes).await
    }

    /// Live versus desired without writing (for `headway diff` and drift checks): per desired
    /// object in sync, drifted (field paths, Secret values masked) or missing, and the objects
    /// of the inventory the set no longer has.
    pub async fn drift(
        &self,
        owner: &SyncOwner,
        set: &RenderedSet,
        default_namespace: &str,
    ) -> Result<DriftReport, ApplyError> {
        self.drift_as(None, owner, set, default_namespace).await
    }

    /// [`Engine::drift`], reading the live objects through `acting_as` (see
    /// [`SyncRequest::acting_as`]).
    pub async fn drift_as(
        &self,
        acting_as: Option<&Identity>,
        owner: &SyncOwner,
        set: &RenderedSet,
        default_namespace: &str,
    ) -> Result<DriftReport, ApplyError> {
        let op = self.op(acting_as);
        let target = Target {
            default_namespace: default_namespace.to_string(),
            owner: owner.clone(),
        };
        let prepared = prepare_set(&op, set, &target, false).await?;
        let previous = store::read(&op.calls, owner).await?;
        Ok(compare(&op, owner, &prepared, &previous).await)
    }

    /// Deletes everything in the inventory of `owner` (whose namespace is `namespace`), in
    /// reverse apply order, only objects still carrying its ownership labels and not opted out;
    /// then deletes the inventory itself, unless a deletion failed (then the failed objects stay
    /// in it, to be retried).
    pub async fn delete_all(
        &self,
        owner: &SyncOwner,
        namespace: &str,
    ) -> Result<ChangeSet, ApplyError> {
        self.delete_all_as(None, owner, namespace).await
    }

    /// [`Engine::delete_all`], deleting through `acting_as` (see [`SyncRequest::acting_as`]):
    /// what that identity may not delete stays, and stays in the inventory.
    pub async fn delete_all_as(
        &self,
        acting_as: Option<&Identity>,
        owner: &SyncOwner,
        namespace: &str,
    ) -> Result<ChangeSet, ApplyError> {
        if owner.namespace() != namespace {
            return Err(ApplyError::Inventory {
                owner: owner.to_string(),
                message: format!(
                    "the inventory lives in the sync's namespace {}, not {namespace}",
                    owner.namespace()
                ),
            });
        }
        let op = self.op(acting_as);
        let previous = store::read(&op.calls, owner).await?;
        let candidates = previous.stale(&Inventory::new());
        let changes = delete_objects(&op, owner, candidates).await;
        let failed: BTreeSet<&ObjectRef> = changes.failures().map(|c| &c.id).collect();
        if failed.is_empty() {
            store::remove(&op.calls, owner).await?;
        } else {
            let mut left = Inventory::new();
            for (id, entry) in &previous.entries {
                if failed.contains(id) {
                    left.insert(id.clone(), entry.clone());
                }
            }
            self.record(&op.calls, owner, &previous, &left).await?;
        }
        info!(sync = %owner, changes = %changes, requests = op.calls.requests(), "sync deleted");
        Ok(changes)
    }

    /// Forgets the inventory of `owner`, leaving its objects in the cluster (a sync deleted with
    /// the orphan policy): deletes the inventory's ConfigMaps and the engine's memory of the
    /// sync, so that a new sync of the same name starts afresh.
    pub async fn forget_inventory(&self, owner: &SyncOwner) -> Result<(), ApplyError> {
        let op = self.op(None);
        store::remove(&op.calls, owner).await?;
        self.memory.forget_owner(owner);
        info!(sync = %owner, requests = op.calls.requests(), "inventory forgotten");
        Ok(())
    }

    /// Replaces the inventory recorded for `owner` (migrations, repairs, tests).
    pub async fn replace_inventory(
        &self,
        owner: &SyncOwner,
        inventory: &Inventory,
    ) -> Result<(), ApplyError> {
        store::write(
            &Calls::new(self.client.clone()),
            owner,
            inventory,
            self.options.inventory_shard_bytes,
        )
        .await
    }

    /// The inventory recorded for `owner` (empty when none).
    pub async fn inventory(&self, owner: &SyncOwner) -> Result<Inventory, ApplyError> {
        store::read(&Calls::new(self.client.clone()), owner).await
    }
}

/// Prepares a set, re-running discovery once if some kind is unknown (first, when `rediscover`).
async fn prepare_set(
    op: &Op<'_>,
    set: &RenderedSet,
    target: &Target,
    rediscover: bool,
) -> Result<RenderedSet, ApplyError> {
    let mut catalog = op.catalog();
    if rediscover {
        catalog = op.rediscover().await?;
    }
    match prepare(set.clone(), &catalog, target) {
        Err(PrepareError::UnknownKinds(_)) if !rediscover => {
            let catalog = op.rediscover().await?;
            Ok(prepare(set.clone(), &catalog, target)?)
        }
        other => Ok(other?),
    }
}

fn entry_of(m: &Manifest, live: Option<LiveStamp>) -> InventoryEntry {
    InventoryEntry {
        api_version: m.api_version.clone(),
        digest: DigestPrefix::of(&m.digest),
        live,
    }
}

/// `message` followed by one line per failed object.
fn with_failures(message: String, changes: &ChangeSet) -> String {
    let mut out = message;
    for c in changes.failures() {
        out.push('\n');
        out.push_str(&c.to_string());
    }
    out
}

/// Compile-time guard: the engine's futures are `Send`, so callers can `tokio::spawn` them (kube's
/// `Controller` does). Never called.
#[allow(dead_code)]
fn futures_are_send(engine: &Engine, req: &SyncRequest, owner: &SyncOwner, set: &RenderedSet) {
    fn assert_send<T: Send>(_: &T) {}
    assert_send(&engine.sync(req));
    assert_send(&engine.drift(owner, set, "default"));
    assert_send(&engine.delete_all(owner, "default"));
    assert_send(&engine.drift_as(None, owner, set, "default"));
    assert_send(&engine.delete_all_as(None, owner, "default"));
    assert_send(&engine.inventory(owner));
    assert_send(&engine.forget_inventory(owner));
    assert_send(&engine.replace_inventory(owner, &Inventory::new()));
}
