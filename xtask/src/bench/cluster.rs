//! What the benchmarks on a cluster share: their runtime, their namespace, the GitSyncs they
//! create and the test of readiness they wait on.

use headway_controller::crd::GitSync;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

/// The field manager of what the benchmarks apply.
pub const MANAGER: &str = "headway-bench";

/// Runs `work` on a multi-threaded tokio runtime.
pub fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

/// Creates the namespace `name` (server-side apply: an existing one is kept).
pub async fn apply_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            ),
        )
        .await?;
    Ok(())
}

/// The GitSync `namespace/name` with `spec`.
pub fn gitsync(name: &str, namespace: &str, spec: Value) -> anyhow::Result<GitSync> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "headway.dev/v1alpha1",
        "kind": "GitSync",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }))?)
}

/// Whether the GitSync's `Ready` condition is `True`.
pub fn is_ready(sync: &GitSync) -> bool {
    sync.status
        .as_ref()
        .is_some_and(|s| headway_controller::conditions::is_true(&s.conditions, "Ready"))
}

/// How many of `syncs` are Ready; an error naming the first one that is Stalled (a render that
/// cannot succeed, e.g. `helm` missing from `PATH`), so that a benchmark stops at once instead
/// of waiting for its deadline.
pub fn ready_count(syncs: &[GitSync]) -> anyhow::Result<usize> {
    for sync in syncs {
        if let Some(status) = &sync.status
            && let Some(c) = headway_controller::conditions::get(&status.conditions, "Stalled")
            && c.status == "True"
        {
            anyhow::bail!(
                "GitSync {}/{} is stalled: {}",
                sync.metadata.namespace.as_deref().unwrap_or_default(),
                sync.metadata.name.as_deref().unwrap_or_default(),
                c.message
            );
        }
    }
    Ok(syncs.iter().filter(|g| is_ready(g)).count())
}

/// Deletes every GitSync of `api` (their objects are pruned) and waits until they are gone, for
/// `within` at the most.
pub async fn delete_gitsyncs(api: &Api<GitSync>, within: Duration) -> anyhow::Result<()> {
    api.delete_collection(&DeleteParams::default(), &Default::default())
        .await?;
    let deadline = Instant::now() + within;
    while !api.list(&Default::default()).await?.items.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}
