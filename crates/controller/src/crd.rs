//! The `GitSync` custom resource (`headway.dev/v1alpha1`): its spec, its status, the schema
//! validation the API server enforces, and the checks that only the controller can make.
//!
//! The CRD manifest in `charts/headway/crds/gitsync.yaml` is generated from these types by
//! `cargo xtask codegen` ([`crd_yaml`]); a test fails when the committed file is stale.
//!
//! long because the GitSync API is one object (spec, Helm and chart sources, status, and the
//! checks only the controller makes), read beside the CRD generated from it, with its tests.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;

/// API group of the custom resources.
pub const GROUP: &str = "headway.dev";
/// API version of `GitSync`.
pub const VERSION: &str = "v1alpha1";
/// The finalizer that prunes (or orphans) a deleted GitSync's objects.
pub const FINALIZER: &str = "headway.dev/finalizer";
/// Annotation asking for a sync now: any new value (by convention an RFC 3339 time) triggers one
/// sync; the handled value is recorded in `status.lastHandledSyncRequest`.
pub const ANNOTATION_SYNC_REQUESTED: &str = "headway.dev/sync-requested-at";
/// Annotation asking for a rebuild: a fresh fetch and a re-apply of every object, bypassing every
/// cache; the handled value is recorded in `status.lastHandledRebuildRequest`.
pub const ANNOTATION_REBUILD_REQUESTED: &str = "headway.dev/rebuild-requested-at";

/// Default `spec.interval`.
pub const DEFAULT_INTERVAL: &str = "5m";
/// Default `spec.timeout`.
pub const DEFAULT_TIMEOUT: &str = "5m";
/// Default `spec.maxPrunePercent`.
pub const DEFAULT_MAX_PRUNE_PERCENT: u8 = 50;
/// Default branch when `spec.repository.ref` is empty.
pub const DEFAULT_BRANCH: &str = "main";
/// Shortest accepted interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
const PATH_SEGMENT: &str = r"([^./][^/]*|\.|\.[^./][^/]*|\.\.[^/]+)";
const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const URL_PATTERN: &str = r"^((git|https?|ssh)://[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+)$";

fn path_pattern() -> String {
    format!("^({PATH_SEGMENT}(/{PATH_SEGMENT})*/?)?$")
}

/// Keeps a Kubernetes cluster equal to a path of a git repository: fetched, rendered (plain YAML,
/// Kustomize or Helm), applied with server-side apply, pruned and health-checked on every
/// interval, on demand, and rebuilt from scratch when asked.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "headway.dev",
    version = "v1alpha1",
    kind = "GitSync",
    plural = "gitsyncs",
    shortname = "gs",
    category = "headway",
    namespaced,
    status = "GitSyncStatus",
    doc = "GitSync keeps the objects of a path of a git repository applied to the cluster.",
    validation = Rule::new("self.metadata.name.size() <= 63").message("a GitSync name must be at most 63 characters: it is written into label values of every object it applies"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Revision", type_ = "string", json_path = ".status.lastAppliedRevision"),
    printcolumn(name = "Objects", type_ = "integer", json_path = ".status.objects.total"),
    printcolumn(name = "Drifted", type_ = "integer", json_path = ".status.drift.drifted"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Status", type_ = "string", priority = 1, json_path = ".status.conditions[?(@.type==\"Ready\")].message")
)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncSpec {
    /// The git repository and the revision to follow.
    pub repository: Repository,
    /// Directory inside the repository to render, relative to its root; empty or `.` means the
    /// root. It may not leave the repository (no `..` segment, no leading `/`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024), regex(pattern = path_pattern()))]
    pub path: String,
    /// How the directory is rendered.
    #[serde(default, skip_serializing_if = "RenderSpec::is_default")]
    pub render: RenderSpec,
    /// How often the repository is fetched and the cluster compared with it (Go duration, e.g.
    /// `30s`, `5m`, `1h`); default `5m`, at least `1s`. A jitter of up to 10% spreads the syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Bound on one sync's fetch, render, apply and health wait (Go duration); default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// Delete objects this GitSync applied earlier that the repository no longer has
    /// (default true). Objects annotated `headway.dev/prune: disabled` are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// Wait until every applied object is healthy (kstatus rules) before reporting Ready
    /// (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    /// Re-apply objects changed in the cluster by hand on every interval (default true); when
    /// false, changes are only reported (condition Drifted, `status.drift`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_heal: Option<bool>,
    /// Delete and recreate objects whose apply fails on an immutable field (default false; the
    /// annotation `headway.dev/force: enabled` opts in a single object).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// Namespace given to namespaced objects that name none; default: the GitSync's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), regex(pattern = DNS_LABEL))]
    pub target_namespace: Option<String>,
    /// GitSyncs that must be Ready (at their current generation) before this one syncs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub depends_on: Vec<DependencyRef>,
    /// Stop syncing; the objects stay as they are. A suspended GitSync deleted later orphans its
    /// objects.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Allow a revision that renders no object at all to prune every object applied before
    /// (default false: such a revision is refused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty: bool,
    /// Mass-deletion guard: a sync may prune at most this share of the objects it applied before,
    /// in percent (default 50; deleting up to 5 objects is always allowed). 100 disables the guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_prune_percent: Option<u8>,
    /// What deleting this GitSync does to its objects: `Prune` deletes them (default), `Orphan`
    /// leaves them in the cluster.
    #[serde(default, skip_serializing_if = "DeletionPolicy::is_default")]
    pub deletion_policy: DeletionPolicy,
    /// A ServiceAccount in the GitSync's namespace to apply, prune and read the objects as
    /// (Kubernetes impersonation of `system:serviceaccount:<namespace>:<name>`): what it may
    /// not do is refused by the API server. Default: the controller's `--default-service-account`,
    /// else the controller's own identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Decrypt SOPS-encrypted manifests after rendering and before applying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decryption: Option<Decryption>,
}

/// How encrypted manifests are decrypted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decryption {
    /// The encryption format; only `sops` (with age keys).
    pub provider: DecryptionProvider,
    /// A Secret in the GitSync's namespace whose keys ending in `.agekey` hold age private keys
    /// (`AGE-SECRET-KEY-1...` lines).
    pub secret_ref: LocalObjectReference,
}

/// Encryption formats.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DecryptionProvider {
    /// Mozilla SOPS files (YAML or JSON) encrypted for age recipients.
    #[serde(rename = "sops")]
    Sops,
}

/// A git repository and the revision to follow.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    /// `git://`, `http://`, `https://`, `ssh://` or scp-like `user@host:path` URL.
    #[schemars(length(min = 1, max = 2048), regex(pattern = URL_PATTERN))]
    pub url: String,
    /// The branch, tag or commit to check out; default: branch `main`.
    #[serde(default, rename = "ref", skip_serializing_if = "GitRefSpec::is_empty")]
    pub reference: GitRefSpec,
    /// A Secret in the GitSync's namespace with credentials: `username` and `password` (HTTP
    /// basic), `token` (HTTP token), or `identity` (SSH private key) with optional `passphrase`
    /// and `known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// known_hosts lines (OpenSSH format) for `ssh://` URLs; they are added to the Secret's
    /// `known_hosts`. Unknown host keys are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
}

/// A branch, a tag or a commit: at most one of them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.branch) ? 1 : 0) + (has(self.tag) ? 1 : 0) + (has(self.commit) ? 1 : 0) <= 1").message("set at most one of branch, tag and commit"))]
pub struct GitRefSpec {
    /// A branch name without `refs/heads/`, followed to its newest commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub branch: Option<String>,
    /// A tag name without `refs/tags/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub tag: Option<String>,
    /// A full commit id (40 hexadecimal digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{40}$"))]
    pub commit: Option<String>,
}

impl GitRefSpec {
    fn is_empty(&self) -> bool {
        *self == GitRefSpec::default()
    }
}

/// A Secret (or other object) in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct LocalObjectReference {
    /// The object's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Another GitSync.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub struct DependencyRef {
    /// Its name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Its namespace; default: this GitSync's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// How the directory becomes manifests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenderSpec {
    /// `Auto` (default) detects: a kustomization means Kustomize, a `Chart.yaml` Helm, anything
    /// else plain YAML/JSON files.
    #[serde(default, rename = "type", skip_serializing_if = "is_auto")]
    pub render_type: RenderType,
    /// Options for Helm charts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSpec>,
}

impl RenderSpec {
    fn is_default(&self) -> bool {
        *self == RenderSpec::default()
    }
}

/// The renderer: the render crate's own enum (serialized as `Auto`, `Plain`, `Kustomize`, `Helm`).
pub use headway_render::RenderType;

fn is_auto(render_type: &RenderType) -> bool {
    *render_type == RenderType::Auto
}

/// `helm template` options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmSpec {
    /// Release name; default: the GitSync's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 53))]
    pub release_name: Option<String>,
    /// Release namespace; default: the target namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// Values files, relative to the chart directory, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    /// Pass `--include-crds` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_crds: Option<bool>,
    /// A chart from a Helm repository or an OCI registry, rendered instead of a chart in git;
    /// the git path then holds its values (`values.yaml`, or `valuesFiles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<HelmChartSpec>,
    /// Inline values, applied after the values files (they win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "values_schema")]
    pub values: Option<serde_json::Value>,
}

/// Any mapping: inline Helm values.
fn values_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A chart in a Helm repository (`https://...`, serving `index.yaml`) or an OCI registry
/// (`oci://host/path`), pinned in git: an exact version or a range. The resolved version is part
/// of the revision (`main@sha1:<commit>+chart:<name>@<version>`), so a new chart version is a new
/// revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmChartSpec {
    /// `https://charts.example.com/stable`, `http://...` or `oci://registry.example.com/charts`.
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^(https?|oci)://[^\s]+$")
    )]
    pub repository: String,
    /// The chart's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub name: String,
    /// An exact version (`4.11.3`) or a range (`>=4.11.0 <5.0.0`, `^4.11`, `4.11.x`).
    #[schemars(length(min = 1, max = 255))]
    pub version: String,
    /// A Secret in the GitSync's namespace with `username` and `password` for the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Talk plain HTTP to an `oci://` registry (Helm's `--plain-http`); for local registries.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "plainHTTP")]
    pub plain_http: Option<bool>,
}

/// What deleting a GitSync does to the objects it applied.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete them (in reverse apply order).
    #[default]
    Prune,
    /// Leave them in the cluster.
    Orphan,
}

impl DeletionPolicy {
    fn is_default(&self) -> bool {
        *self == DeletionPolicy::Prune
    }
}

/// What the controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncStatus {
    /// The generation of the spec the last sync acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` and `Drifted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The revision (`<ref>@sha1:<commit>`) whose objects were all applied successfully last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The revision the last sync worked on, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The value of the annotation `headway.dev/sync-requested-at` handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_sync_request: Option<String>,
    /// The value of the annotation `headway.dev/rebuild-requested-at` handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_rebuild_request: Option<String>,
    /// The objects of the last applied revision by health (kstatus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectCounts>,
    /// The objects of the last sync that were not Current, with their health (the first
    /// [`MAX_UNHEALTHY_LISTED`]; `objects` has the counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealthy: Vec<UnhealthyObject>,
    /// Differences between git and the cluster found by the last drift check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftSummary>,
    /// The last sync: when, how long, what changed, per-stage timings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile: Option<ReconcileRecord>,
    /// The last rebuild; its duration is the time to recover from git (MTTR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rebuild: Option<ReconcileRecord>,
}

/// Object counts by health.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectCounts {
    /// All objects of the revision.
    pub total: u32,
    /// Healthy.
    pub current: u32,
    /// Still converging.
    pub in_progress: u32,
    /// Failed.
    pub failed: u32,
    /// Being deleted.
    pub terminating: u32,
    /// Missing from the cluster.
    pub not_found: u32,
    /// Not determined (e.g. not checked because `wait` is off).
    pub unknown: u32,
}

/// Longest `status.unhealthy` list.
pub const MAX_UNHEALTHY_LISTED: usize = 50;
/// Longest `status.drift.details` list.
pub const MAX_DRIFT_LISTED: usize = 20;
/// Most field paths kept per drifted object in `status.drift.details`.
pub const MAX_DRIFT_FIELDS: usize = 10;

/// An object that is not Current.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnhealthyObject {
    /// Its kind (with the group for non-core kinds, e.g. `Deployment.apps`).
    pub kind: String,
    /// Its namespace; absent for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// `InProgress`, `Failed`, `Terminating`, `NotFound` or `Unknown` (kstatus).
    pub health: String,
    /// Why, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One drifted object: where it differs from git (field paths only, never values).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftedObject {
    /// `Kind.group/namespace/name`.
    pub object: String,
    /// The differing field paths (the first [`MAX_DRIFT_FIELDS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// The object is missing from the cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
}

/// The result of a drift check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftSummary {
    /// Objects that differ from git or are missing.
    pub drifted: u32,
    /// When the check ran (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// The first drifted objects, `Kind.group/namespace/name: first differing fields`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// The first drifted objects with their differing field paths (at most
    /// [`MAX_DRIFT_LISTED`] objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<DriftedObject>,
}

/// One sync (or rebuild).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileRecord {
    /// The revision synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Start (RFC 3339, milliseconds).
    pub start: String,
    /// End (RFC 3339, milliseconds).
    pub end: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Wall time as text, e.g. `1.234s`.
    pub duration: String,
    /// `Succeeded` or the failure reason.
    pub result: String,
    /// What the sync did to the objects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changes: BTreeMap<String, u32>,
    /// Time per stage, in order: `fetch`, `render`, each apply stage, `prune`, `wait`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageTiming>,
}

/// Time spent in one stage of a sync.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageTiming {
    /// The stage.
    pub name: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// The CRD manifest as YAML, exactly as committed in `charts/headway/crds/gitsync.yaml`.
pub fn crd_yaml() -> String {
    let crd = serde_json::to_value(GitSync::crd()).expect("the CRD serialises to JSON");
    let mut out = String::from(
        "# Generated by `cargo xtask codegen` from crates/controller/src/crd.rs: do not edit.\n",
    );
    out.push_str(&headway_render::output::object_to_yaml(&crd));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A spec problem the schema cannot catch; the sync stalls with reason `InvalidSpec`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {message}")]
pub struct SpecError {
    /// The field, e.g. `interval`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn spec_error(field: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// The spec with every default applied and every value parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveSpec {
    pub interval: Duration,
    pub timeout: Duration,
    pub prune: bool,
    pub wait: bool,
    pub self_heal: bool,
    pub max_prune_percent: u8,
    /// `None` = the repository root.
    pub path: Option<String>,
    pub reference: headway_source::GitRef,
}

impl GitSyncSpec {
    /// Applies defaults and checks what the schema cannot (or what an older CRD let through).
    pub fn effective(&self) -> Result<EffectiveSpec, SpecError> {
        let interval = parse_duration(self.interval.as_deref().unwrap_or(DEFAULT_INTERVAL))
            .map_err(|m| spec_error("interval", m))?;
        if interval < MIN_INTERVAL {
            return Err(spec_error(
                "interval",
                format!("{interval:?} is shorter than the minimum of 1s"),
            ));
        }
        let timeout = parse_duration(self.timeout.as_deref().unwrap_or(DEFAULT_TIMEOUT))
            .map_err(|m| spec_error("timeout", m))?;
        if timeout.is_zero() {
            return Err(spec_error("timeout", "must be longer than zero"));
        }
        let max_prune_percent = self.max_prune_percent.unwrap_or(DEFAULT_MAX_PRUNE_PERCENT);
        if max_prune_percent > 100 {
            return Err(spec_error(
                "maxPrunePercent",
                format!("{max_prune_percent} is more than 100"),
            ));
        }
        let path = check_path(&self.path).map_err(|m| spec_error("path", m))?;
        let r = &self.repository.reference;
        let reference = match (&r.branch, &r.tag, &r.commit) {
            (None, None, None) => headway_source::GitRef::Branch(DEFAULT_BRANCH.into()),
            (Some(b), None, None) => headway_source::GitRef::Branch(b.clone()),
            (None, Some(t), None) => headway_source::GitRef::Tag(t.clone()),
            (None, None, Some(c)) => {
                if c.len() != 40 || !c.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(spec_error(
                        "repository.ref.commit",
                        format!("{c:?} is not a full commit id (40 hexadecimal digits)"),
                    ));
                }
                headway_source::GitRef::Commit(c.to_ascii_lowercase())
            }
            _ => {
                return Err(spec_error(
                    "repository.ref",
                    "set at most one of branch, tag and commit",
                ));
            }
        };
        if self.repository.url.trim().is_empty() {
            return Err(spec_error("repository.url", "is empty"));
        }
        if let Some(helm) = &self.render.helm {
            if let Some(chart) = &helm.chart {
                if matches!(
                    self.render.render_type,
                    RenderType::Plain | RenderType::Kustomize
                ) {
                    return Err(spec_error(
                        "render.helm.chart",
                        format!(
                            "a remote chart needs render.type Helm (or Auto), not {:?}",
                            self.render.render_type
                        ),
                    ));
                }
                headway_render::chart::Constraint::parse(&chart.version)
                    .map_err(|m| spec_error("render.helm.chart.version", m))?;
            }
            if helm.values.as_ref().is_some_and(|v| !v.is_object()) {
                return Err(spec_error("render.helm.values", "must be a mapping"));
            }
        }
        Ok(EffectiveSpec {
            interval,
            timeout,
            prune: self.prune.unwrap_or(true),
            wait: self.wait.unwrap_or(true),
            self_heal: self.self_heal.unwrap_or(true),
            max_prune_percent,
            path,
            reference,
        })
    }
}

/// Checks a repository-relative path; `None` for the root.
fn check_path(path: &str) -> Result<Option<String>, String> {
    if path.starts_with('/') {
        return Err(format!(
            "{path:?} is absolute; give a path relative to the repository root"
        ));
    }
    let mut parts = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(format!("{path:?} leaves the repository (`..`)")),
            s => parts.push(s),
        }
    }
    Ok(if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    })
}

/// Parses a Go-style duration: a sequence of decimal numbers with units `ms`, `s`, `m`, `h`
/// (`1h30m`, `1.5s`, `500ms`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 30s, 5m, 1h30m or 500ms");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if number_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let (unit, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else {
            return Err(bad());
        };
        total += number * unit;
        rest = &rest[len..];
    }
    if !total.is_finite() || total > 365.0 * 24.0 * 3600.0 {
        return Err(format!("{text:?} is longer than a year"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration for status and events: `850ms`, `1.234s`, `2m03s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    } else {
        let s = ms / 1000;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> GitSyncSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn durations_parse_like_go() {
        for (text, ms) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1_500),
            ("500ms", 500),
            ("2m3s", 123_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for text in ["", "5", "m", "5d", "1.2.3s", "-1s", "5 m", "99999999h"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.234s");
        assert_eq!(format_duration(Duration::from_millis(123_400)), "2m03s");
    }

    #[test]
    fn remote_charts_are_checked() {
        let spec = |render: serde_json::Value| -> GitSyncSpec {
            serde_json::from_value(serde_json::json!({
                "repository": {"url": "https://git.example.com/r.git"}, "render": render}))
            .unwrap()
        };
        let chart = serde_json::json!({"repository": "oci://r.example.com/charts", "name": "web", "version": "^1.2"});
        let ok = spec(serde_json::json!({"helm": {"chart": chart, "values": {"replicas": 2}}}));
        assert!(ok.effective().is_ok());
        let kustomize = spec(serde_json::json!({"type": "Kustomize", "helm": {"chart": chart}}));
        let err = kustomize.effective().unwrap_err();
        assert_eq!(err.field, "render.helm.chart");
        let mut bad = chart.clone();
        bad["version"] = serde_json::json!("newest");
        let err = spec(serde_json::json!({"helm": {"chart": bad}}))
            .effective()
            .unwrap_err();
        assert_eq!(err.field, "render.helm.chart.version");
        assert!(err.message.contains("`newest`"), "{}", err.message);
        let err = spec(serde_json::json!({"helm": {"values": [1]}}))
            .effective()
            .unwrap_err();
        assert_eq!(err.field, "render.helm.values");
    }

    #[test]
    fn defaults_apply_and_values_are_checked() {
        let s = spec(serde_json::json!({"repository": {"url": "git://h/r.git"}}));
        let e = s.effective().unwrap();
        assert_eq!(e.interval, Duration::from_secs(300));
        assert_eq!(e.timeout, Duration::from_secs(300));
        assert!(e.prune && e.wait && e.self_heal);
        assert_eq!(e.max_prune_percent, 50);
        assert_eq!(e.path, None);
        assert_eq!(e.reference, headway_source::GitRef::Branch("main".into()));
        assert_eq!(s.deletion_policy, DeletionPolicy::Prune);

        let s = spec(serde_json::json!({
            "repository": {"url": "git://h/r.git", "ref": {"tag": "v1"}},
            "path": "./apps//prod/", "interval": "1m", "prune": false, "selfHeal": false,
            "deletionPolicy": "Orphan", "render": {"type": "Helm", "helm": {"valuesFiles": ["v.yaml"]}},
        }));
        let e = s.effective().unwrap();
        assert_eq!(e.path.as_deref(), Some("apps/prod"));
        assert_eq!(e.reference, headway_source::GitRef::Tag("v1".into()));
        assert!(!e.prune && !e.self_heal);
        assert_eq!(s.render.render_type, RenderType::Helm);

        let err = |json: serde_json::Value| spec(json).effective().unwrap_err().to_string();
        assert_eq!(
            err(serde_json::json!({"repository": {"url": "git://h/r"}, "interval": "500ms"})),
            "spec.interval: 500ms is shorter than the minimum of 1s"
        );
        assert!(
            err(serde_json::json!({"repository": {"url": "git://h/r"}, "path": "a/../../etc"}))
                .starts_with("spec.path: \"a/../../etc\" leaves the repository")
        );
        assert!(
            err(serde_json::json!({"repository": {"url": "git://h/r"}, "path": "/etc"}))
                .starts_with("spec.path: \"/etc\" is absolute")
        );
        assert_eq!(
            err(
                serde_json::json!({"repository": {"url": "git://h/r", "ref": {"branch": "a", "tag": "b"}}})
            ),
            "spec.repository.ref: set at most one of branch, tag and commit"
        );
        assert!(
            err(serde_json::json!({"repository": {"url": "git://h/r", "ref": {"commit": "abc"}}}))
                .starts_with("spec.repository.ref.commit:")
        );
        assert!(
            err(serde_json::json!({"repository": {"url": "git://h/r"}, "timeout": "soon"}))
                .starts_with("spec.timeout: \"soon\" is not a duration")
        );
    }

    #[test]
    fn a_minimal_spec_serialises_minimally() {
        let s = spec(serde_json::json!({"repository": {"url": "git://h/r.git"}}));
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"repository": {"url": "git://h/r.git"}})
        );
    }

    #[test]
    fn the_crd_has_the_columns_and_validations() {
        let crd = serde_json::to_value(GitSync::crd()).unwrap();
        assert_eq!(crd["spec"]["group"], "headway.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(version["subresources"]["status"].is_object());
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            ["Ready", "Revision", "Objects", "Drifted", "Age", "Status"]
        );
        let schema = &version["schema"]["openAPIV3Schema"];
        let spec = &schema["properties"]["spec"];
        assert_eq!(spec["required"], serde_json::json!(["repository"]));
        assert_eq!(spec["properties"]["interval"]["pattern"], DURATION_PATTERN);
        assert_eq!(
            spec["properties"]["maxPrunePercent"]["maximum"].as_f64(),
            Some(100.0)
        );
        assert_eq!(
            spec["properties"]["deletionPolicy"]["enum"],
            serde_json::json!(["Prune", "Orphan"])
        );
        let text = crd.to_string();
        assert!(
            text.contains("set at most one of branch, tag and commit"),
            "{text}"
        );
        assert!(text.contains("self.metadata.name.size() <= 63"), "{text}");
        assert!(crd_yaml().starts_with("# Generated by `cargo xtask codegen`"));
    }
}
