//! Health: whether one live object has reached the state its spec asks for, as a pure function of
//! the object (the kstatus rules), and the aggregate over a set of objects.
//!
//! Order of the checks: generic ones first (`deletionTimestamp`, `observedGeneration` lag,
//! `Reconciling`/`Stalled` conditions), then the rule of the object's group and kind. Kinds
//! without a rule are Current, unless they carry a `Ready` condition (custom resources).
//!
//! long because the kstatus rules of every built-in kind are one table read top to bottom, and
//! its tests (half the file) are one table per kind beside it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ObjectRef;
use crate::order::apply_cmp;

/// The status of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    /// Being reconciled: not yet what the spec asks for.
    InProgress,
    /// Fully reconciled.
    Current,
    /// Reconciliation failed and will not make progress without a change.
    Failed,
    /// Being deleted.
    Terminating,
    /// Does not exist.
    NotFound,
    /// Cannot be computed (malformed status).
    Unknown,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::InProgress => "InProgress",
            HealthStatus::Current => "Current",
            HealthStatus::Failed => "Failed",
            HealthStatus::Terminating => "Terminating",
            HealthStatus::NotFound => "NotFound",
            HealthStatus::Unknown => "Unknown",
        })
    }
}

/// The status of one object and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub message: String,
}

impl Health {
    fn new(status: HealthStatus, message: impl Into<String>) -> Self {
        Health {
            status,
            message: message.into(),
        }
    }

    fn in_progress(message: impl Into<String>) -> Self {
        Health::new(HealthStatus::InProgress, message)
    }

    fn current(message: impl Into<String>) -> Self {
        Health::new(HealthStatus::Current, message)
    }

    fn failed(message: impl Into<String>) -> Self {
        Health::new(HealthStatus::Failed, message)
    }

    /// The health of an object that does not exist.
    pub fn not_found() -> Self {
        Health::new(HealthStatus::NotFound, "object not found")
    }

    /// Whether the object is Current.
    pub fn is_current(&self) -> bool {
        self.status == HealthStatus::Current
    }
}

/// The health of a live object, or of a missing one (`None`: NotFound).
pub fn health_of(object: Option<&Value>) -> Health {
    match object {
        Some(o) => health(o),
        None => Health::not_found(),
    }
}

/// The health of one live object (as returned by the API server).
pub fn health(object: &Value) -> Health {
    if !object.is_object() {
        return Health::new(HealthStatus::Unknown, "not a Kubernetes object");
    }
    match compute(object) {
        Ok(h) => h,
        Err(e) => Health::new(HealthStatus::Unknown, e),
    }
}

type Rule = Result<Health, String>;

fn compute(o: &Value) -> Rule {
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return Ok(Health::new(
            HealthStatus::Terminating,
            "deletion in progress",
        ));
    }
    if let (Some(generation), Some(observed)) = (
        opt_int(o, "/metadata/generation")?,
        opt_int(o, "/status/observedGeneration")?,
    ) && generation != observed
    {
        return Ok(Health::in_progress(format!(
            "generation {generation} not observed yet (observed {observed})"
        )));
    }
    if let Some(c) = condition(o, "Reconciling")
        && c.is_true()
    {
        return Ok(Health::in_progress(c.describe("reconciling")));
    }
    if let Some(c) = condition(o, "Stalled")
        && c.is_true()
    {
        return Ok(Health::failed(c.describe("stalled")));
    }
    let api_version = o.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let kind = o.get("kind").and_then(Value::as_str).unwrap_or("");
    match (group, kind) {
        ("apps" | "extensions", "Deployment") => deployment(o),
        ("apps", "StatefulSet") => stateful_set(o),
        ("apps" | "extensions", "DaemonSet") => daemon_set(o),
        ("apps" | "extensions", "ReplicaSet") => replica_set(o),
        ("batch", "Job") => job(o),
        ("", "Pod") => pod(o),
        ("", "PersistentVolumeClaim") => pvc(o),
        ("", "Service") => service(o),
        ("", "Namespace") => namespace(o),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(o),
        ("apiregistration.k8s.io", "APIService") => api_service(o),
        ("", "Secret" | "ConfigMap") | ("batch", "CronJob") | ("policy", "PodDisruptionBudget") => {
            Ok(Health::current("resource is current"))
        }
        _ => generic(o),
    }
}

// ---------------------------------------------------------------------------------------------
// Field access.

/// An integer field; `Ok(None)` when missing, an error when present but not an integer.
fn opt_int(o: &Value, ptr: &str) -> Result<Option<i64>, String> {
    match o.pointer(ptr) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            format!(
                "field {} is not an integer: {v}",
                ptr.trim_start_matches('/').replace('/', ".")
            )
        }),
    }
}

/// An integer field, `default` when missing.
fn int(o: &Value, ptr: &str, default: i64) -> Result<i64, String> {
    Ok(opt_int(o, ptr)?.unwrap_or(default))
}

fn string<'a>(o: &'a Value, ptr: &str) -> Option<&'a str> {
    o.pointer(ptr).and_then(Value::as_str)
}

struct Condition<'a> {
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

impl Condition<'_> {
    fn is_true(&self) -> bool {
        self.status == "True"
    }

    fn is_false(&self) -> bool {
        self.status == "False"
    }

    /// `what: reason: message`, leaving out empty parts.
    fn describe(&self, what: &str) -> String {
        let mut s = what.to_string();
        for part in [self.reason, self.message] {
            if !part.is_empty() {
                s.push_str(": ");
                s.push_str(part);
            }
        }
        s
    }
}

/// The first condition of the given type in `status.conditions`.
fn condition<'a>(o: &'a Value, type_: &str) -> Option<Condition<'a>> {
    let conditions = o.pointer("/status/conditions")?.as_array()?;
    let c = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))?;
    let field = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
    Some(Condition {
        status: field("status"),
        reason: field("reason"),
        message: field("message"),
    })
}

// ---------------------------------------------------------------------------------------------
// Kind rules.

/// `spec.progressDeadlineSeconds` that means "no deadline": the Deployment controller then writes
/// no `Progressing` condition (it treats a missing field and `i32::MAX` alike).
const NO_PROGRESS_DEADLINE: i64 = i32::MAX as i64;

fn deployment(o: &Value) -> Rule {
    if let Some(c) = condition(o, "Progressing")
        && c.reason == "ProgressDeadlineExceeded"
    {
        return Ok(Health::failed(c.describe("progress deadline exceeded")));
    }
    // Without a progress deadline the controller never writes `Progressing`, so its absence says
    // nothing: only the replica counts and `Available` decide (kstatus does the same).
    let has_deadline =
        int(o, "/spec/progressDeadlineSeconds", NO_PROGRESS_DEADLINE)? != NO_PROGRESS_DEADLINE;
    let spec = int(o, "/spec/replicas", 1)?;
    let replicas = int(o, "/status/replicas", 0)?;
    let updated = int(o, "/status/updatedReplicas", 0)?;
    let ready = int(o, "/status/readyReplicas", 0)?;
    let available = int(o, "/status/availableReplicas", 0)?;
    if spec > replicas {
        return Ok(Health::in_progress(format!("replicas: {replicas}/{spec}")));
    }
    if spec > updated {
        return Ok(Health::in_progress(format!("updated: {updated}/{spec}")));
    }
    if replicas > spec {
        return Ok(Health::in_progress(format!(
            "pending termination: {}",
            replicas - spec
        )));
    }
    if updated > available {
        return Ok(Health::in_progress(format!(
            "available: {available}/{updated}"
        )));
    }
    if spec > ready {
        return Ok(Health::in_progress(format!("ready: {ready}/{spec}")));
    }
    let progressing = !has_deadline
        || condition(o, "Progressing")
            .is_some_and(|c| c.is_true() && c.reason == "NewReplicaSetAvailable");
    if !progressing {
        return Ok(Health::in_progress("new ReplicaSet not available yet"));
    }
    if !condition(o, "Available").is_some_and(|c| c.is_true()) {
        return Ok(Health::in_progress("Deployment not Available"));
    }
    Ok(Health::current(format!(
        "Deployment available, replicas: {spec}"
    )))
}

fn stateful_set(o: &Value) -> Rule {
    if string(o, "/spec/updateStrategy/type") == Some("OnDelete") {
        return Ok(Health::current(
            "StatefulSet uses the OnDelete update strategy",
        ));
    }
    let spec = int(o, "/spec/replicas", 1)?;
    let replicas = int(o, "/status/replicas", 0)?;
    let ready = int(o, "/status/readyReplicas", 0)?;
    let current = int(o, "/status/currentReplicas", 0)?;
    if spec > replicas {
        return Ok(Health::in_progress(format!("replicas: {replicas}/{spec}")));
    }
    if spec > ready {
        return Ok(Health::in_progress(format!("ready: {ready}/{spec}")));
    }
    if replicas > spec {
        return Ok(Health::in_progress(format!(
            "pending termination: {}",
            replicas - spec
        )));
    }
    if let Some(partition) = opt_int(o, "/spec/updateStrategy/rollingUpdate/partition")? {
        let updated = int(o, "/status/updatedReplicas", 0)?;
        let expected = (spec - partition).max(0);
        if updated < expected {
            return Ok(Health::in_progress(format!(
                "partitioned rollout: updated {updated}/{expected}"
            )));
        }
        return Ok(Health::current(format!(
            "partitioned rollout complete: {updated} updated"
        )));
    }
    if spec > current {
        return Ok(Health::in_progress(format!("current: {current}/{spec}")));
    }
    let current_rev = string(o, "/status/currentRevision").unwrap_or("");
    let update_rev = string(o, "/status/updateRevision").unwrap_or("");
    if current_rev != update_rev {
        return Ok(Health::in_progress(format!(
            "revision {update_rev} rolling out (current {current_rev})"
        )));
    }
    Ok(Health::current(format!(
        "all replicas ready at revision {current_rev}"
    )))
}

fn daemon_set(o: &Value) -> Rule {
    let Some(desired) = opt_int(o, "/status/desiredNumberScheduled")? else {
        return Ok(Health::in_progress(
            "status.desiredNumberScheduled not set yet",
        ));
    };
    for (field, what) in [
        ("currentNumberScheduled", "scheduled"),
        ("updatedNumberScheduled", "updated"),
        ("numberAvailable", "available"),
        ("numberReady", "ready"),
    ] {
        let n = int(o, &format!("/status/{field}"), 0)?;
        if desired > n {
            return Ok(Health::in_progress(format!("{what}: {n}/{desired}")));
        }
    }
    Ok(Health::current(format!("all {desired} pods ready")))
}

fn replica_set(o: &Value) -> Rule {
    if let Some(c) = condition(o, "ReplicaFailure")
        && c.is_true()
    {
        return Ok(Health::in_progress(c.describe("replica failure")));
    }
    let spec = int(o, "/spec/replicas", 1)?;
    for (field, what) in [
        ("fullyLabeledReplicas", "labelled"),
        ("availableReplicas", "available"),
        ("readyReplicas", "ready"),
    ] {
        let n = int(o, &format!("/status/{field}"), 0)?;
        if spec > n {
            return Ok(Health::in_progress(format!("{what}: {n}/{spec}")));
        }
    }
    let replicas = int(o, "/status/replicas", 0)?;
    if replicas > spec {
        return Ok(Health::in_progress(format!(
            "pending termination: {}",
            replicas - spec
        )));
    }
    Ok(Health::current(format!("all {spec} replicas ready")))
}

fn job(o: &Value) -> Rule {
    if let Some(c) = condition(o, "Complete")
        && c.is_true()
    {
        return Ok(Health::current("Job completed"));
    }
    if let Some(c) = condition(o, "Failed")
        && c.is_true()
    {
        return Ok(Health::failed(c.describe("Job failed")));
    }
    if o.pointer("/status/startTime").is_none_or(Value::is_null) {
        return Ok(Health::in_progress("Job not started"));
    }
    Ok(Health::current("Job running"))
}

fn pod(o: &Value) -> Rule {
    let phase = string(o, "/status/phase").unwrap_or("");
    match phase {
        "Succeeded" => return Ok(Health::current("Pod succeeded")),
        "Failed" => return Ok(Health::current("Pod completed unsuccessfully")),
        "Running" if condition(o, "Ready").is_some_and(|c| c.is_true()) => {
            return Ok(Health::current("Pod running and ready"));
        }
        _ => {}
    }
    for list in ["/status/initContainerStatuses", "/status/containerStatuses"] {
        let statuses = o
            .pointer(list)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for s in statuses {
            if s.pointer("/state/waiting/reason").and_then(Value::as_str)
                == Some("CrashLoopBackOff")
            {
                let name = s.get("name").and_then(Value::as_str).unwrap_or("?");
                return Ok(Health::failed(format!(
                    "container {name} in CrashLoopBackOff"
                )));
            }
        }
    }
    if phase == "Pending"
        && let Some(c) = condition(o, "PodScheduled")
        && c.is_false()
        && c.reason == "Unschedulable"
    {
        return Ok(Health::failed(c.describe("Pod unschedulable")));
    }
    let shown = if phase.is_empty() { "no phase" } else { phase };
    Ok(Health::in_progress(format!("Pod {shown}, not ready")))
}

fn pvc(o: &Value) -> Rule {
    match string(o, "/status/phase") {
        Some("Bound") => Ok(Health::current("PVC bound")),
        other => Ok(Health::in_progress(format!(
            "PVC phase {}",
            other.unwrap_or("unset")
        ))),
    }
}

fn service(o: &Value) -> Rule {
    let load_balancer = string(o, "/spec/type") == Some("LoadBalancer");
    if load_balancer && string(o, "/spec/clusterIP").is_none_or(str::is_empty) {
        return Ok(Health::in_progress(
            "LoadBalancer Service has no cluster IP yet",
        ));
    }
    Ok(Health::current("Service ready"))
}

fn namespace(o: &Value) -> Rule {
    match string(o, "/status/phase") {
        Some("Active") => Ok(Health::current("Namespace active")),
        Some("Terminating") => Ok(Health::new(
            HealthStatus::Terminating,
            "Namespace terminating",
        )),
        other => Ok(Health::in_progress(format!(
            "Namespace phase {}",
            other.unwrap_or("unset")
        ))),
    }
}

fn crd(o: &Value) -> Rule {
    if let Some(c) = condition(o, "NamesAccepted")
        && c.is_false()
    {
        return Ok(Health::failed(c.describe("names not accepted")));
    }
    match condition(o, "Established") {
        Some(c) if c.is_true() => Ok(Health::current("CRD established")),
        Some(c) if c.is_false() && c.reason != "Installing" => {
            Ok(Health::failed(c.describe("CRD not established")))
        }
        _ => Ok(Health::in_progress("CRD not established yet")),
    }
}

/// An aggregated API (`spec.service` set) is Current once the API server reaches it
/// (`Available=True`), as Argo CD's health check says; kstatus has no rule and calls it Current
/// at once. An unavailable one (metrics-server's `v1beta1.metrics.k8s.io` before its pods serve,
/// or never) breaks discovery of its group and blocks namespace deletion, so it is not healthy.
/// A local APIService (no `spec.service`: the API server's own groups) is always Current.
fn api_service(o: &Value) -> Rule {
    if o.pointer("/spec/service").is_none_or(Value::is_null) {
        return Ok(Health::current("local APIService"));
    }
    match condition(o, "Available") {
        Some(c) if c.is_true() => Ok(Health::current("APIService available")),
        Some(c) => Ok(Health::in_progress(c.describe("APIService not available"))),
        None => Ok(Health::in_progress(
            "APIService not checked by the API server yet",
        )),
    }
}

/// Kinds without a rule: Current, unless a `Ready` condition says otherwise. `Ready=False` is
/// Failed when its reason names a failure (ends in `Failed` or `Error`, e.g. Flux's
/// `ReconciliationFailed`), InProgress otherwise; `Ready=Unknown` is InProgress.
fn generic(o: &Value) -> Rule {
    match condition(o, "Ready") {
        None => Ok(Health::current("resource is current")),
        Some(c) if c.is_true() => Ok(Health::current(c.describe("ready"))),
        Some(c)
            if c.is_false() && (c.reason.ends_with("Failed") || c.reason.ends_with("Error")) =>
        {
            Ok(Health::failed(c.describe("not ready")))
        }
        Some(c) => Ok(Health::in_progress(c.describe("not ready"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Sets.

/// The status of a set: any Failed is Failed; else any Unknown is Unknown; all Current (or an
/// empty set) is Current; anything else (InProgress, Terminating, NotFound) is InProgress.
pub fn aggregate<I>(statuses: I) -> HealthStatus
where
    I: IntoIterator<Item = HealthStatus>,
{
    let mut result = HealthStatus::Current;
    for s in statuses {
        match s {
            HealthStatus::Failed => return HealthStatus::Failed,
            HealthStatus::Unknown => result = HealthStatus::Unknown,
            HealthStatus::Current => {}
            _ if result == HealthStatus::Current => result = HealthStatus::InProgress,
            _ => {}
        }
    }
    result
}

/// One line per object that is not Current, `Kind/namespace/name: status: message` (cluster
/// scope: `Kind/name: ...`), in apply order; empty when every object is Current.
pub fn format_not_current<'a, I>(objects: I) -> String
where
    I: IntoIterator<Item = (&'a ObjectRef, &'a Health)>,
{
    let mut pending: Vec<_> = objects
        .into_iter()
        .filter(|(_, h)| !h.is_current())
        .collect();
    pending.sort_by(|a, b| apply_cmp(a.0, b.0));
    let mut out = String::new();
    for (id, h) in pending {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&id.kind);
        if let Some(ns) = &id.namespace {
            out.push('/');
            out.push_str(ns);
        }
        out.push('/');
        out.push_str(&id.name);
        out.push_str(&format!(": {}: {}", h.status, h.message));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;
    use serde_json::json;

    /// Checks the status and that the message contains `message_part`.
    fn check(input: Value, expected: HealthStatus, message_part: &str) {
        let h = health(&input);
        assert_eq!(h.status, expected, "{input}\n -> {h:?}");
        assert!(
            h.message.contains(message_part),
            "{input}\n -> {h:?}, wanted {message_part:?}"
        );
    }

    fn cond(type_: &str, status: &str, reason: &str) -> Value {
        json!({"type": type_, "status": status, "reason": reason, "message": ""})
    }

    fn deploy(spec: Option<i64>, status: Value) -> Value {
        let mut o = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 2}, "spec": {}, "status": status});
        if let Some(r) = spec {
            o["spec"]["replicas"] = json!(r);
        }
        o
    }

    fn healthy_deploy_status(n: i64) -> Value {
        json!({"observedGeneration": 2, "replicas": n, "updatedReplicas": n, "readyReplicas": n,
               "availableReplicas": n, "conditions": [
                   cond("Progressing", "True", "NewReplicaSetAvailable"),
                   cond("Available", "True", "MinimumReplicasAvailable")]})
    }

    #[test]
    fn generic_checks() {
        let mut terminating = deploy(Some(1), healthy_deploy_status(1));
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        check(terminating, Terminating, "deletion");

        let mut lag = deploy(Some(1), healthy_deploy_status(1));
        lag["status"]["observedGeneration"] = json!(1);
        check(lag, InProgress, "generation 2 not observed");

        // No observedGeneration at all: no lag check.
        let mut no_observed = deploy(Some(1), healthy_deploy_status(1));
        no_observed["status"]
            .as_object_mut()
            .unwrap()
            .remove("observedGeneration");
        check(no_observed, Current, "available");

        let reconciling = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"},
            "status": {"conditions": [cond("Reconciling", "True", "Progressing"),
                                      cond("Ready", "True", "")]}});
        check(reconciling, InProgress, "reconciling: Progressing");
        let stalled = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"},
            "status": {"conditions": [cond("Stalled", "True", "BadSpec"),
                                      cond("Ready", "True", "")]}});
        check(stalled, Failed, "stalled: BadSpec");

        check(json!("nope"), Unknown, "not a Kubernetes object");
        check(
            deploy(None, json!({"replicas": "three"})),
            Unknown,
            "status.replicas is not an integer",
        );
        check(Value::Null, Unknown, "");
        assert_eq!(health_of(None).status, NotFound);
    }

    #[test]
    fn deployment_rules() {
        check(
            deploy(Some(3), healthy_deploy_status(3)),
            Current,
            "replicas: 3",
        );
        // spec.replicas defaults to 1.
        check(
            deploy(None, healthy_deploy_status(1)),
            Current,
            "replicas: 1",
        );
        let mut deadline = healthy_deploy_status(1);
        deadline["conditions"][0] = cond("Progressing", "False", "ProgressDeadlineExceeded");
        check(
            deploy(Some(1), deadline),
            Failed,
            "progress deadline exceeded",
        );
        let with = |field: &str, v: i64| {
            let mut s = healthy_deploy_status(3);
            s[field] = json!(v);
            deploy(Some(3), s)
        };
        check(with("replicas", 2), InProgress, "replicas: 2/3");
        check(with("updatedReplicas", 2), InProgress, "updated: 2/3");
        check(with("replicas", 4), InProgress, "pending termination: 1");
        check(with("availableReplicas", 2), InProgress, "available: 2/3");
        check(with("readyReplicas", 2), InProgress, "ready: 2/3");
        // Missing integers count as 0.
        check(deploy(Some(1), json!({})), InProgress, "replicas: 0/1");
        let mut not_progressing = deploy(Some(1), healthy_deploy_status(1));
        not_progressing["spec"]["progressDeadlineSeconds"] = json!(600);
        not_progressing["status"]["conditions"][0] =
            cond("Progressing", "True", "ReplicaSetUpdated");
        check(not_progressing, InProgress, "new ReplicaSet");
        let mut not_available = healthy_deploy_status(1);
        not_available["conditions"][1] = cond("Available", "False", "MinimumReplicasUnavailable");
        check(deploy(Some(1), not_available), InProgress, "not Available");
        // A Deployment in another group is a custom resource: no Deployment rule.
        check(
            json!({"apiVersion": "example.com/v1", "kind": "Deployment", "metadata": {"name": "x"}}),
            Current,
            "current",
        );
        // Scaled to zero is Current.
        check(
            deploy(
                Some(0),
                json!({"conditions": [
            cond("Progressing", "True", "NewReplicaSetAvailable"), cond("Available", "True", "")]}),
            ),
            Current,
            "replicas: 0",
        );
    }

    /// kstatus's Deployment rules as a table: `(progressDeadlineSeconds, paused, generation,
    /// observedGeneration, conditions as (type, status, reason), expected, message part)`, with
    /// every replica count at 2 of 2.
    #[test]
    fn deployment_kstatus_table() {
        type Row<'a> = (
            Option<i64>,
            bool,
            i64,
            i64,
            &'a [(&'a str, &'a str, &'a str)],
            HealthStatus,
            &'a str,
        );
        const AVAILABLE: (&str, &str, &str) = ("Available", "True", "MinimumReplicasAvailable");
        const COMPLETE: (&str, &str, &str) = ("Progressing", "True", "NewReplicaSetAvailable");
        const ROLLING: (&str, &str, &str) = ("Progressing", "True", "ReplicaSetUpdated");
        const PAUSED: (&str, &str, &str) = ("Progressing", "Unknown", "DeploymentPaused");
        const DEADLINE: (&str, &str, &str) = ("Progressing", "False", "ProgressDeadlineExceeded");
        const UNAVAILABLE: (&str, &str, &str) =
            ("Available", "False", "MinimumReplicasUnavailable");
        let rows: &[Row] = &[
            // No deadline (field unset, or i32::MAX): no Progressing condition is written.
            (None, false, 1, 1, &[AVAILABLE], Current, "available"),
            (
                Some(2147483647),
                false,
                1,
                1,
                &[AVAILABLE],
                Current,
                "available",
            ),
            (None, false, 1, 1, &[], InProgress, "not Available"),
            (
                None,
                false,
                1,
                1,
                &[UNAVAILABLE],
                InProgress,
                "not Available",
            ),
            (
                None,
                false,
                1,
                1,
                &[ROLLING, AVAILABLE],
                Current,
                "available",
            ),
            // With a deadline, the controller must have said NewReplicaSetAvailable.
            (
                Some(600),
                false,
                1,
                1,
                &[COMPLETE, AVAILABLE],
                Current,
                "available",
            ),
            (
                Some(600),
                false,
                1,
                1,
                &[AVAILABLE],
                InProgress,
                "new ReplicaSet",
            ),
            (
                Some(600),
                false,
                1,
                1,
                &[ROLLING, AVAILABLE],
                InProgress,
                "new ReplicaSet",
            ),
            (
                Some(600),
                false,
                1,
                1,
                &[COMPLETE],
                InProgress,
                "not Available",
            ),
            (
                Some(600),
                false,
                1,
                1,
                &[DEADLINE, AVAILABLE],
                Failed,
                "deadline",
            ),
            // The deadline condition fails even when no deadline is set any more.
            (
                None,
                false,
                1,
                1,
                &[DEADLINE, AVAILABLE],
                Failed,
                "deadline",
            ),
            // Paused: the controller replaces Progressing with Unknown/DeploymentPaused when a
            // deadline is set; kstatus has no paused rule, so that reads as in progress.
            (
                Some(600),
                true,
                1,
                1,
                &[PAUSED, AVAILABLE],
                InProgress,
                "new ReplicaSet",
            ),
            (None, true, 1, 1, &[AVAILABLE], Current, "available"),
            // observedGeneration behind generation: in progress, whatever the conditions say.
            (
                Some(600),
                false,
                3,
                2,
                &[COMPLETE, AVAILABLE],
                InProgress,
                "generation 3",
            ),
            (None, false, 3, 2, &[AVAILABLE], InProgress, "generation 3"),
            (None, true, 3, 2, &[AVAILABLE], InProgress, "generation 3"),
        ];
        for &(deadline, paused, generation, observed, conditions, expected, message) in rows {
            let conditions: Vec<Value> =
                conditions.iter().map(|&(t, s, r)| cond(t, s, r)).collect();
            let mut o = deploy(
                Some(2),
                json!({"observedGeneration": observed, "replicas": 2, "updatedReplicas": 2,
                       "readyReplicas": 2, "availableReplicas": 2, "conditions": conditions}),
            );
            o["metadata"]["generation"] = json!(generation);
            if let Some(d) = deadline {
                o["spec"]["progressDeadlineSeconds"] = json!(d);
            }
            if paused {
                o["spec"]["paused"] = json!(true);
            }
            check(o, expected, message);
        }
    }

    fn sts(spec: Value, status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
               "spec": spec, "status": status})
    }

    #[test]
    fn stateful_set_rules() {
        let ok = json!({"replicas": 2, "readyReplicas": 2, "currentReplicas": 2, "updatedReplicas": 2,
                        "currentRevision": "db-1", "updateRevision": "db-1"});
        check(
            sts(json!({"replicas": 2}), ok.clone()),
            Current,
            "revision db-1",
        );
        check(
            sts(
                json!({"replicas": 5, "updateStrategy": {"type": "OnDelete"}}),
                json!({}),
            ),
            Current,
            "OnDelete",
        );
        let with = |field: &str, v: Value| {
            let mut s = ok.clone();
            s[field] = v;
            sts(json!({"replicas": 2}), s)
        };
        check(with("replicas", json!(1)), InProgress, "replicas: 1/2");
        check(with("readyReplicas", json!(1)), InProgress, "ready: 1/2");
        check(
            with("replicas", json!(3)),
            InProgress,
            "pending termination: 1",
        );
        check(
            with("currentReplicas", json!(1)),
            InProgress,
            "current: 1/2",
        );
        check(
            with("updateRevision", json!("db-2")),
            InProgress,
            "revision db-2",
        );
        let partitioned = |updated: i64| {
            let mut s = ok.clone();
            s["updatedReplicas"] = json!(updated);
            s["updateRevision"] = json!("db-2");
            sts(
                json!({"replicas": 2, "updateStrategy": {"type": "RollingUpdate",
                      "rollingUpdate": {"partition": 1}}}),
                s,
            )
        };
        check(
            partitioned(0),
            InProgress,
            "partitioned rollout: updated 0/1",
        );
        check(partitioned(1), Current, "partitioned rollout complete");
    }

    #[test]
    fn daemon_set_rules() {
        let ds = |status: Value| json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"}, "status": status});
        let ok = json!({"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                        "updatedNumberScheduled": 3, "numberAvailable": 3, "numberReady": 3});
        check(ds(ok.clone()), Current, "3 pods");
        check(ds(json!({})), InProgress, "desiredNumberScheduled");
        for (field, msg) in [
            ("currentNumberScheduled", "scheduled: 2/3"),
            ("updatedNumberScheduled", "updated: 2/3"),
            ("numberAvailable", "available: 2/3"),
            ("numberReady", "ready: 2/3"),
        ] {
            let mut s = ok.clone();
            s[field] = json!(2);
            check(ds(s), InProgress, msg);
        }
    }

    #[test]
    fn replica_set_rules() {
        let rs = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"},
                   "spec": {"replicas": 2}, "status": status})
        };
        let ok = json!({"replicas": 2, "fullyLabeledReplicas": 2, "availableReplicas": 2, "readyReplicas": 2});
        check(rs(ok.clone()), Current, "2 replicas");
        let mut failure = ok.clone();
        failure["conditions"] = json!([cond("ReplicaFailure", "True", "FailedCreate")]);
        check(rs(failure), InProgress, "replica failure: FailedCreate");
        for (field, msg) in [
            ("fullyLabeledReplicas", "labelled: 1/2"),
            ("availableReplicas", "available: 1/2"),
            ("readyReplicas", "ready: 1/2"),
            ("replicas", "pending termination: 1"),
        ] {
            let mut s = ok.clone();
            s[field] = json!(if field == "replicas" { 3 } else { 1 });
            check(rs(s), InProgress, msg);
        }
    }

    #[test]
    fn job_rules() {
        let job = |status: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "status": status});
        check(
            job(json!({"startTime": "t", "conditions": [cond("Complete", "True", "")]})),
            Current,
            "completed",
        );
        check(
            job(
                json!({"startTime": "t", "conditions": [cond("Failed", "True", "BackoffLimitExceeded")]}),
            ),
            Failed,
            "BackoffLimitExceeded",
        );
        check(job(json!({})), InProgress, "not started");
        check(
            job(json!({"startTime": "t", "active": 1})),
            Current,
            "running",
        );
    }

    #[test]
    fn api_service_rules() {
        let svc = |service: Value, status: Value| {
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                   "metadata": {"name": "v1beta1.metrics.k8s.io"},
                   "spec": {"service": service, "group": "metrics.k8s.io", "version": "v1beta1"},
                   "status": status})
        };
        let backend = json!({"name": "metrics-server", "namespace": "kube-system"});
        check(svc(Value::Null, json!({})), Current, "local");
        check(
            svc(
                backend.clone(),
                json!({"conditions": [cond("Available", "True", "Passed")]}),
            ),
            Current,
            "available",
        );
        check(
            svc(
                backend.clone(),
                json!({"conditions": [cond("Available", "False", "FailedDiscoveryCheck")]}),
            ),
            InProgress,
            "APIService not available: FailedDiscoveryCheck",
        );
        check(svc(backend, json!({})), InProgress, "not checked");
    }

    #[test]
    fn pod_rules() {
        let pod = |status: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": status});
        check(pod(json!({"phase": "Succeeded"})), Current, "succeeded");
        check(pod(json!({"phase": "Failed"})), Current, "unsuccessfully");
        check(
            pod(json!({"phase": "Running", "conditions": [cond("Ready", "True", "")]})),
            Current,
            "ready",
        );
        check(
            pod(json!({"phase": "Running", "conditions": [cond("Ready", "False", "")]})),
            InProgress,
            "Running",
        );
        check(
            pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "web", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})),
            Failed,
            "container web in CrashLoopBackOff",
        );
        check(
            pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "init", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})),
            Failed,
            "container init",
        );
        check(
            pod(
                json!({"phase": "Pending", "conditions": [cond("PodScheduled", "False", "Unschedulable")]}),
            ),
            Failed,
            "unschedulable",
        );
        check(pod(json!({"phase": "Pending"})), InProgress, "Pending");
        check(pod(json!({})), InProgress, "no phase");
    }

    #[test]
    fn other_builtin_rules() {
        let obj = |api: &str, kind: &str, rest: Value| {
            let mut o = json!({"apiVersion": api, "kind": kind, "metadata": {"name": "x"}});
            for (k, v) in rest.as_object().unwrap() {
                o[k] = v.clone();
            }
            o
        };
        check(
            obj(
                "v1",
                "PersistentVolumeClaim",
                json!({"status": {"phase": "Bound"}}),
            ),
            Current,
            "bound",
        );
        check(
            obj(
                "v1",
                "PersistentVolumeClaim",
                json!({"status": {"phase": "Pending"}}),
            ),
            InProgress,
            "Pending",
        );
        check(
            obj("v1", "Service", json!({"spec": {"type": "LoadBalancer"}})),
            InProgress,
            "cluster IP",
        );
        check(
            obj(
                "v1",
                "Service",
                json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.5"}}),
            ),
            Current,
            "",
        );
        check(
            obj("v1", "Service", json!({"spec": {"type": "ClusterIP"}})),
            Current,
            "",
        );
        check(
            obj("v1", "Namespace", json!({"status": {"phase": "Active"}})),
            Current,
            "active",
        );
        check(obj("v1", "Namespace", json!({})), InProgress, "unset");
        check(
            obj(
                "v1",
                "Namespace",
                json!({"status": {"phase": "Terminating"}}),
            ),
            Terminating,
            "",
        );
        let crd = |conds: Value| {
            obj(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                json!({"status": {"conditions": conds}}),
            )
        };
        check(
            crd(json!([
                cond("NamesAccepted", "True", ""),
                cond("Established", "True", "")
            ])),
            Current,
            "established",
        );
        check(
            crd(json!([cond(
                "NamesAccepted",
                "False",
                "MultipleNamesConflict"
            )])),
            Failed,
            "MultipleNamesConflict",
        );
        check(
            crd(json!([cond("Established", "False", "Installing")])),
            InProgress,
            "",
        );
        check(
            crd(json!([cond("Established", "False", "Broken")])),
            Failed,
            "Broken",
        );
        check(crd(json!([])), InProgress, "");
        for (api, kind) in [
            ("v1", "Secret"),
            ("v1", "ConfigMap"),
            ("batch/v1", "CronJob"),
            ("policy/v1", "PodDisruptionBudget"),
        ] {
            check(obj(api, kind, json!({})), Current, "current");
        }
    }

    #[test]
    fn custom_resource_ready_condition() {
        let cr = |conds: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                   "status": {"conditions": conds}})
        };
        check(cr(json!([])), Current, "current");
        check(
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
            Current,
            "",
        );
        check(
            cr(json!([cond("Ready", "True", "Succeeded")])),
            Current,
            "ready",
        );
        check(
            cr(json!([cond("Ready", "False", "Progressing")])),
            InProgress,
            "Progressing",
        );
        check(
            cr(json!([cond("Ready", "Unknown", "")])),
            InProgress,
            "not ready",
        );
        check(
            cr(json!([cond("Ready", "False", "ReconciliationFailed")])),
            Failed,
            "ReconciliationFailed",
        );
        check(
            cr(json!([cond("Ready", "False", "InternalError")])),
            Failed,
            "InternalError",
        );
    }

    #[test]
    fn aggregation() {
        let check_agg = |input: &[HealthStatus], expected: HealthStatus| {
            assert_eq!(aggregate(input.iter().copied()), expected, "{input:?}");
        };
        check_agg(&[], Current);
        check_agg(&[Current, Current], Current);
        check_agg(&[Current, InProgress], InProgress);
        check_agg(&[Current, Terminating], InProgress);
        check_agg(&[NotFound], InProgress);
        check_agg(&[InProgress, Unknown, Current], Unknown);
        check_agg(&[Unknown, Failed], Failed);
        check_agg(&[Failed, InProgress], Failed);
    }

    #[test]
    fn not_current_listing() {
        let web = ObjectRef::new("apps/v1", "Deployment", Some("prod".into()), "web");
        let ns = ObjectRef::new("v1", "Namespace", None, "prod");
        let cm = ObjectRef::new("v1", "ConfigMap", Some("prod".into()), "cfg");
        let healths = [
            (web, Health::in_progress("ready: 1/3")),
            (cm, Health::current("")),
            (ns, Health::new(Terminating, "deletion in progress")),
        ];
        assert_eq!(
            format_not_current(healths.iter().map(|(r, h)| (r, h))),
            "Namespace/prod: Terminating: deletion in progress\nDeployment/prod/web: InProgress: ready: 1/3"
        );
        assert_eq!(
            format_not_current(healths[1..2].iter().map(|(r, h)| (r, h))),
            ""
        );
    }
}
