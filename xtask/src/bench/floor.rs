//! The floor of the apply benchmarks: the fastest plain way found to create a set of objects and
//! see them Current, with no ordering beyond what the API server requires and no checks.
//!
//! What made the earlier floor slower than Headway itself (1,000 objects: 3.23 s against 1.63 s)
//! and what this one does instead:
//! - It polled: a full LIST of every Deployment every 500 ms, so it saw Current up to 500 ms late
//!   and spent API-server CPU on the lists. Now a watch (started before the first apply, so no
//!   event is missed) sees each Deployment become Current as it happens.
//! - It applied in file order, Deployments interleaved with everything else, so the slowest part
//!   (controller-manager and kwok creating ReplicaSets and Pods) started last for the last
//!   Deployments. Now Deployments go first within the second stage.
//! - The namespace step is kept (objects cannot be created in a missing namespace), but CRDs go
//!   with the namespaces and only their Established condition is awaited (polled every 25 ms).
//!
//! Connection reuse is the client's (one `kube::Client`, hyper's pool keeps up to
//! `concurrency` HTTP/1.1 connections alive); kube's client speaks HTTP/1.1 only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use futures::{StreamExt as _, TryStreamExt as _, stream};
use headway_model::health::{HealthStatus, health};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

/// When the floor was done.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Until the API server accepted every object.
    pub applied: Duration,
    /// Until every Deployment was Current (everything else is Current once created).
    pub total: Duration,
}

/// The resource of a built-in kind or a custom resource (plural: lower-case kind + `s`).
pub fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "CustomResourceDefinition" => "customresourcedefinitions".to_string(),
        _ => format!("{}s", kind.to_ascii_lowercase()),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural)
}

fn api_for(client: &kube::Client, o: &Value) -> Api<DynamicObject> {
    let ar = resource(
        o["apiVersion"].as_str().unwrap_or_default(),
        o["kind"].as_str().unwrap_or_default(),
    );
    match o["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Creates `objects` (server-side apply, `concurrency` in flight) and waits until every
/// Deployment among them, found by `selector` (a label selector every one of them carries), is
/// Current.
pub async fn recreate(
    client: &kube::Client,
    objects: &[Value],
    concurrency: usize,
    selector: &str,
    timeout: Duration,
) -> anyhow::Result<Floor> {
    let started = Instant::now();
    let expected: usize = objects.iter().filter(|o| o["kind"] == "Deployment").count();
    // The watch first: every Deployment's health, by namespace/name.
    let deployments: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("apps/v1", "Deployment"));
    let (tx, mut rx) = tokio::sync::watch::channel(0usize);
    let config = watcher::Config::default().labels(selector);
    let watching = tokio::spawn(async move {
        let mut current: HashMap<String, bool> = HashMap::new();
        let mut events = std::pin::pin!(watcher(deployments, config));
        while let Some(event) = events.try_next().await? {
            let objects = match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
                _ => continue,
            };
            for d in objects {
                let mut v = serde_json::to_value(&d)?;
                v["apiVersion"] = json!("apps/v1");
                v["kind"] = json!("Deployment");
                let key = format!(
                    "{}/{}",
                    d.metadata.namespace.as_deref().unwrap_or_default(),
                    d.metadata.name.as_deref().unwrap_or_default()
                );
                current.insert(key, health(&v).status == HealthStatus::Current);
            }
            let _ = tx.send(current.values().filter(|c| **c).count());
        }
        anyhow::Ok(())
    });

    let params = PatchParams::apply("floor").force();
    let (first, mut rest): (Vec<&Value>, Vec<&Value>) = objects.iter().partition(|o| {
        matches!(
            o["kind"].as_str(),
            Some("Namespace" | "CustomResourceDefinition")
        )
    });
    // Deployments first: their pods are the long pole.
    rest.sort_by_key(|o| o["kind"] != "Deployment");
    apply_all(client, &first, &params, concurrency).await?;
    for crd in first
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
    {
        wait_established(client, crd["metadata"]["name"].as_str().unwrap_or_default()).await?;
    }
    apply_all(client, &rest, &params, concurrency).await?;
    let applied = started.elapsed();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if *rx.borrow_and_update() >= expected {
            break;
        }
        ensure!(
            !watching.is_finished(),
            "the floor's Deployment watch ended"
        );
        tokio::time::timeout_at(deadline, rx.changed())
            .await
            .with_context(|| {
                format!(
                    "floor: {} of {expected} Deployments Current after {timeout:?}",
                    *rx.borrow()
                )
            })??;
    }
    watching.abort();
    Ok(Floor {
        applied,
        total: started.elapsed(),
    })
}

async fn apply_all(
    client: &kube::Client,
    objects: &[&Value],
    params: &PatchParams,
    concurrency: usize,
) -> anyhow::Result<()> {
    let errors: Vec<String> = stream::iter(objects)
        .map(|o| async move {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let api = api_for(client, o);
            // A custom resource right after its CRD is Established may briefly be a 404.
            let mut tries = 0;
            loop {
                match api.patch(name, params, &Patch::Apply(o)).await {
                    Ok(_) => return None,
                    Err(kube::Error::Api(s)) if s.code == 404 && tries < 40 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    Err(e) => return Some(format!("{} {name}: {e}", o["kind"])),
                }
            }
        })
        .buffer_unordered(concurrency)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    ensure!(
        errors.is_empty(),
        "floor apply failed for {} objects, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    Ok(())
}

async fn wait_established(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &resource("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let crd = api.get(name).await?;
        let established = crd.data["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            });
        if established {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "CRD {name} not Established after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
