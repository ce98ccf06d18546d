//! Test support for cluster-backed tests: a kube client for the local control plane started by
//! `cargo xtask cluster up`, and an isolated namespace per test that is deleted afterwards.
//!
//! Cluster-backed tests are gated by the environment variable `HEADWAY_CLUSTER_TESTS=1`, which
//! `cargo xtask test` sets after bringing the cluster up. Without it, [`cluster`] returns `None`
//! and the test returns early, printing why; with it, a missing or unreachable cluster is a failure.
#![forbid(unsafe_code)]

pub mod charts;
pub mod controller;
pub mod faults;
pub mod git;
pub mod identity;
pub mod process;
pub mod public_sources;
pub mod sops;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// The environment variable that enables cluster-backed tests.
pub const CLUSTER_TESTS_ENV: &str = "HEADWAY_CLUSTER_TESTS";

/// Label put on every namespace a test creates, so leftovers can be found and removed.
pub const TEST_LABEL: &str = "headway.dev/test";

/// Whether cluster-backed tests are enabled in this run.
pub fn cluster_tests_enabled() -> bool {
    std::env::var(CLUSTER_TESTS_ENV).is_ok_and(|v| v == "1")
}

/// A client for the local cluster, or `None` when cluster tests are disabled (the caller returns).
///
/// Panics with the reason when cluster tests are enabled but the cluster cannot be reached: an
/// enabled suite must never pass without having run.
pub async fn cluster() -> Option<TestCluster> {
    if !cluster_tests_enabled() {
        eprintln!(
            "skipping: set {CLUSTER_TESTS_ENV}=1 (cargo xtask test does) to run cluster-backed tests"
        );
        return None;
    }
    match TestCluster::connect().await {
        Ok(c) => Some(c),
        Err(e) => panic!("{CLUSTER_TESTS_ENV}=1 but the local cluster is not usable: {e:#}"),
    }
}

/// A connection to the local cluster.
#[derive(Clone)]
pub struct TestCluster {
    /// A client with cluster-admin rights.
    pub client: Client,
    /// The configuration the client was built from (server URL, CA), for building other clients.
    pub config: Config,
}

impl TestCluster {
    /// Connects using `KUBECONFIG` (as written by `cargo xtask cluster up`) and checks the server answers.
    pub async fn connect() -> anyhow::Result<Self> {
        let path = std::env::var("KUBECONFIG").context("KUBECONFIG is not set")?;
        Self::connect_to(&path).await
    }

    /// Connects using the kubeconfig at `path` and checks the server answers.
    pub async fn connect_to(path: &str) -> anyhow::Result<Self> {
        let kubeconfig =
            Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {path}"))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading kubeconfig {path}"))?;
        let client = Client::try_from(config.clone()).context("building the kube client")?;
        client
            .apiserver_version()
            .await
            .with_context(|| format!("contacting the API server at {}", config.cluster_url))?;
        Ok(TestCluster { client, config })
    }

    /// Creates a fresh namespace named after the test, deleted when the guard is dropped.
    pub async fn namespace(&self, test_name: &str) -> anyhow::Result<TestNamespace> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut base: String = test_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        base.truncate(40);
        let name = format!("t-{}-{}-{}", base.trim_matches('-'), std::process::id(), n);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {TEST_LABEL: "true"}},
        }))?;
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(TestNamespace {
            name,
            client: self.client.clone(),
            config: self.config.clone(),
        })
    }
}

/// A namespace owned by one test; deleted (in the background) when dropped, after its GitSyncs
/// (see [`release_gitsyncs`]).
pub struct TestNamespace {
    /// The namespace's name.
    pub name: String,
    client: Client,
    config: Config,
}

impl TestNamespace {
    /// An `Api` for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates the ServiceAccount `name` in this namespace and returns a token for it (a
    /// TokenRequest valid for 10 minutes).
    pub async fn service_account(&self, name: &str) -> anyhow::Result<String> {
        let api: Api<ServiceAccount> = self.api();
        let account: ServiceAccount = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name},
        }))?;
        api.create(&PostParams::default(), &account)
            .await
            .with_context(|| format!("creating ServiceAccount {}/{name}", self.name))?;
        self.token(name).await
    }

    /// A token for the existing ServiceAccount `name` of this namespace (TokenRequest, 10 minutes).
    pub async fn token(&self, name: &str) -> anyhow::Result<String> {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(600),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = self
            .api::<ServiceAccount>()
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| {
                format!("requesting a token for ServiceAccount {}/{name}", self.name)
            })?;
        Ok(answer
            .status
            .context("the TokenRequest has no status")?
            .token)
    }

    /// Grants the ServiceAccount `account` of this namespace the `rules` (a JSON array of
    /// PolicyRules) in this namespace, through a Role and a RoleBinding both named `role`, and
    /// waits until the API server's authorizer allows what they grant (it learns of new RBAC
    /// objects through a watch, a moment after they are created).
    pub async fn grant(
        &self,
        account: &str,
        role: &str,
        rules: serde_json::Value,
    ) -> anyhow::Result<()> {
        let object: Role = serde_json::from_value(serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": role}, "rules": rules,
        }))?;
        self.api::<Role>()
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating Role {}/{role}", self.name))?;
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": self.name}],
        }))?;
        self.api::<RoleBinding>()
            .create(&PostParams::default(), &binding)
            .await
            .with_context(|| format!("creating RoleBinding {}/{role}", self.name))?;
        let user = format!("system:serviceaccount:{}:{account}", self.name);
        for rule in rules.as_array().into_iter().flatten() {
            let strings = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    for verb in strings("verbs") {
                        wait_allowed(&self.client, &user, &self.name, &group, &resource, &verb)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let config = self.config.clone();
        let name = std::mem::take(&mut self.name);
        // The test's runtime may be shutting down, so delete from a thread with its own runtime
        // and wait for the request (not for the namespace to be gone: that is asynchronous).
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a runtime for namespace cleanup");
            // A client is tied to the runtime that created it: build one on this runtime.
            rt.block_on(async {
                let client = Client::try_from(config).map_err(|e| e.to_string())?;
                if let Err(e) = release_gitsyncs(&client, &name).await {
                    eprintln!("{e}");
                }
                let api: Api<Namespace> = Api::all(client);
                api.delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| format!("deleting test namespace {name}: {e}"))
        })
        .join();
        if let Ok(Err(e)) = joined {
            eprintln!("{e}");
        }
    }
}

/// Deletes the GitSyncs of `namespace` and removes their finalizer, so that the namespace can go
/// once the test is over: the controller that would honour the finalizer (a child process, or a
/// task of the test's runtime) is usually gone by then, and a GitSync left with
/// `headway.dev/finalizer` keeps its namespace Terminating forever. Deleting first means no
/// controller still running can add the finalizer back (the API server refuses new finalizers
/// on an object being deleted). Without the GitSync CRD there is nothing to do.
pub async fn release_gitsyncs(client: &Client, namespace: &str) -> Result<(), String> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("headway.dev", "v1alpha1", "GitSync"),
        "gitsyncs",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let not_found = |e: &kube::Error| matches!(e, kube::Error::Api(a) if a.code == 404);
    let listed = match api.list_metadata(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(format!("listing the GitSyncs of {namespace}: {e}")),
    };
    for sync in listed {
        let name = sync.metadata.name.unwrap_or_default();
        if sync.metadata.deletion_timestamp.is_none() {
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(format!("deleting GitSync {namespace}/{name}: {e}")),
            }
        }
        let patch = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
        match api.patch(&name, &PatchParams::default(), &patch).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => {
                return Err(format!(
                    "removing the finalizer of GitSync {namespace}/{name}: {e}"
                ));
            }
        }
    }
    Ok(())
}

/// Waits (up to 60 s) until the API server allows `user` to `verb` the `resource` of API group
/// `group` in `namespace`, as a SubjectAccessReview says: RBAC objects just created take effect
/// a moment later.
pub async fn wait_allowed(
    client: &Client,
    user: &str,
    namespace: &str,
    group: &str,
    resource: &str,
    verb: &str,
) -> anyhow::Result<()> {
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_string()),
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                verb: Some(verb.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    wait_for(
        &format!("{user} to be allowed to {verb} {resource} in {namespace}"),
        Duration::from_secs(60),
        || {
            let (api, review) = (api.clone(), review.clone());
            async move {
                let answer = api.create(&PostParams::default(), &review).await?;
                Ok(match answer.status {
                    Some(s) if s.allowed => Ok(()),
                    other => Err(format!("{other:?}")),
                })
            }
        },
    )
    .await
}

/// Polls `check` every 250 ms until it returns `Ok(Some(value))`, or fails after `timeout` with the
/// last observation, so a failing test says what it saw.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(observed)) => observed,
            Err(e) => format!("error: {e:#}"),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Applies `crd` (server-side, field manager `headway-tests`, so every caller's apply of the same
/// content is idempotent) and waits until it is Established.
pub async fn install_crd(client: &Client, crd: &CustomResourceDefinition) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd
        .metadata
        .name
        .as_deref()
        .context("the CRD has no name")?;
    api.patch(
        name,
        &PatchParams::apply("headway-tests").force(),
        &Patch::Apply(crd),
    )
    .await
    .with_context(|| format!("applying the CRD {name}"))?;
    wait_for(
        &format!("the CRD {name} to be Established"),
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move {
                let crd = api.get(name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(if established {
                    Ok(())
                } else {
                    Err("not Established".into())
                })
            }
        },
    )
    .await
}

/// Every input of a `cargo fuzz` target's seeds and found regressions (`fuzz/seeds/TARGET`,
/// `fuzz/regressions/TARGET`), named `seeds/TARGET/FILE`, for the stable replay tests.
pub fn fuzz_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                let data = std::fs::read(e.path())
                    .unwrap_or_else(|err| panic!("reading {}: {err}", e.path().display()));
                out.push((format!("{dir}/{target}/{name}"), data));
            }
        }
    }
    out.sort();
    out
}
