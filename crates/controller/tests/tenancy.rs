//! Multi-tenancy against the local cluster: a GitSync with `serviceAccountName` is applied as
//! that ServiceAccount (impersonation), so a ClusterRoleBinding and an object in another
//! namespace are refused by the API server (403) and reported with the object and the missing
//! permission, while its own objects are applied and nothing is pruned because of the refusal;
//! `--default-service-account` confines GitSyncs without one; `--no-cross-namespace-refs` stalls
//! a cross-namespace `dependsOn` or `targetNamespace` with InvalidSpec; a tenant cannot get
//! another tenant's object pruned.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1` and `HEADWAY_GIT_TESTS=1` (`cargo xtask test` sets both).

mod support;

use std::time::Duration;

use headway_controller::tenancy::Lockdown;
use headway_tests::git::{Upstream, git_daemon};
use headway_tests::{TestCluster, TestNamespace};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

/// A ServiceAccount `name` in `ns` that may do anything to ConfigMaps, Secrets, Services and
/// Deployments of `ns`, and nothing else.
async fn tenant_account(ns: &TestNamespace, name: &str) -> anyhow::Result<()> {
    let pp = PostParams::default();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    ns.api::<ServiceAccount>().create(&pp, &sa).await?;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{
            "apiGroups": ["", "apps"],
            "resources": ["configmaps", "secrets", "services", "deployments"],
            "verbs": ["*"],
        }],
    }))?;
    ns.api::<Role>().create(&pp, &role).await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns.name}],
    }))?;
    ns.api::<RoleBinding>().create(&pp, &binding).await?;
    Ok(())
}

async fn start(
    cluster: &TestCluster,
    ns: &str,
    identity: &str,
    lockdown: Lockdown,
) -> anyhow::Result<RunningController> {
    let cache = tempfile::tempdir()?;
    let mut o = options(ns, identity, cache.path());
    o.config = Some(cluster.config.clone());
    o.lockdown = lockdown;
    start_with(cluster, o, cache).await
}

fn configmap_in(name: &str, ns: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n  value: \"{value}\"\n"
    )
}

fn cluster_admin_binding(name: &str, ns: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {name}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n- kind: ServiceAccount\n  name: deployer\n  namespace: {ns}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_account_confines_a_sync_to_what_it_may_do() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("a_service_account_confines_a_sync_to_what_it_may_do") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("tenant-sa").await?;
    let other = cluster.namespace("tenant-sa-other").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();
    tenant_account(&ns, "deployer").await?;

    let upstream = Upstream::new();
    upstream
        .write("mine.yaml", &configmap_yaml("mine", "one"))
        .write("keep.yaml", &configmap_yaml("keep", "one"));
    let first = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);
    let _controller = start(&cluster, &ns.name, "tenant-a", Lockdown::default()).await?;
    create_gitsync(&ns, "site", &url, json!({"serviceAccountName": "deployer"})).await?;
    wait_ready_at(&ns, "site", &first, Duration::from_secs(90)).await?;

    // A ClusterRoleBinding to cluster-admin and an object in another namespace; `keep` removed.
    let binding = format!("escalate-{}", ns.name);
    upstream
        .write("mine.yaml", &configmap_yaml("mine", "two"))
        .write("escalate.yaml", &cluster_admin_binding(&binding, &ns.name))
        .write("theirs.yaml", &configmap_in("theirs", &other.name, "x"))
        .remove("keep.yaml");
    let second = upstream.commit("escalate");
    let message = wait_failed(&ns, "site", &second, "ApplyFailed").await?;
    assert!(message.contains(&binding), "{message}");
    assert!(message.contains("theirs"), "{message}");
    assert!(message.contains("forbidden"), "{message}");
    assert!(
        message.contains(&format!("system:serviceaccount:{}:deployer", ns.name)),
        "the identity is named: {message}"
    );
    assert!(
        message.contains("clusterrolebindings") && message.contains("cluster scope"),
        "the missing permission is named: {message}"
    );
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    assert!(crbs.get_opt(&binding).await?.is_none(), "not escalated");
    assert!(
        configmap_data(&client, &other.name, "theirs")
            .await?
            .is_none(),
        "nothing written in another namespace"
    );
    // Its own objects are applied; nothing is pruned because of the refusal.
    assert_eq!(
        configmap_data(&client, &ns.name, "mine").await?.unwrap()["value"],
        "two"
    );
    assert!(
        configmap_data(&client, &ns.name, "keep").await?.is_some(),
        "a refused apply prunes nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lockdown_flags_confine_gitsyncs_without_a_service_account() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("lockdown_flags_confine_gitsyncs_without_a_service_account") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("tenant-lockdown").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();
    tenant_account(&ns, "tenant").await?;

    let extra = format!("{}-extra", ns.name);
    let upstream = Upstream::new();
    upstream
        .write("mine.yaml", &configmap_yaml("mine", "one"))
        .write(
            "namespace.yaml",
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {extra}\n"),
        );
    let first = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);
    let _controller = start(
        &cluster,
        &ns.name,
        "tenant-lock",
        Lockdown {
            default_service_account: Some("tenant".into()),
            no_cross_namespace_refs: true,
        },
    )
    .await?;

    // Without serviceAccountName: impersonated as `tenant`, which may not create Namespaces.
    create_gitsync(&ns, "plain", &url, json!({})).await?;
    let message = wait_failed(&ns, "plain", &first, "ApplyFailed").await?;
    assert!(message.contains(&extra), "{message}");
    assert!(
        message.contains(&format!("system:serviceaccount:{}:tenant", ns.name)),
        "{message}"
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt(&extra).await?.is_none());

    // Cross-namespace references: InvalidSpec, stalled, nothing fetched.
    create_gitsync(
        &ns,
        "dep",
        &url,
        json!({"dependsOn": [{"name": "infra", "namespace": "default"}]}),
    )
    .await?;
    create_gitsync(&ns, "target", &url, json!({"targetNamespace": "default"})).await?;
    for (name, field) in [
        ("dep", "spec.dependsOn[0].namespace"),
        ("target", "spec.targetNamespace"),
    ] {
        let obj = wait_status(
            &ns,
            name,
            "Stalled/InvalidSpec",
            Duration::from_secs(60),
            |_, s| {
                condition(s, "Stalled").is_some_and(|(st, r, _)| st == "True" && r == "InvalidSpec")
            },
        )
        .await?;
        let (_, _, message) = condition(obj.status.as_ref().unwrap(), "Ready").unwrap();
        assert!(message.contains(field), "{message}");
        assert!(message.contains("--no-cross-namespace-refs"), "{message}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_cannot_get_another_tenant_s_object_pruned() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("a_tenant_cannot_get_another_tenant_s_object_pruned") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    // One controller namespace holding both tenants' GitSyncs would let the test watch only
    // one namespace; each tenant gets its own namespace and controller instead.
    let a = cluster.namespace("tenant-a").await?;
    let b = cluster.namespace("tenant-b").await?;
    let _janitor_a = Janitor::new(&cluster, &a);
    let _janitor_b = Janitor::new(&cluster, &b);
    let client = cluster.client.clone();
    tenant_account(&a, "deployer").await?;
    tenant_account(&b, "deployer").await?;

    // Tenant B owns `precious`.
    let upstream_b = Upstream::new();
    upstream_b.write("precious.yaml", &configmap_yaml("precious", "b"));
    let b_first = upstream_b.commit("b");
    let (_daemon_b, url_b) = git_daemon(&upstream_b);
    let _controller_b = start(&cluster, &b.name, "tenant-b", Lockdown::default()).await?;
    create_gitsync(&b, "b", &url_b, json!({"serviceAccountName": "deployer"})).await?;
    wait_ready_at(&b, "b", &b_first, Duration::from_secs(90)).await?;

    // Tenant A lists B's object in its repository: refused, nothing written.
    let upstream_a = Upstream::new();
    upstream_a
        .write("own.yaml", &configmap_yaml("own", "a"))
        .write("grab.yaml", &configmap_in("precious", &b.name, "stolen"));
    let a_first = upstream_a.commit("grab");
    let (_daemon_a, url_a) = git_daemon(&upstream_a);
    let _controller_a = start(&cluster, &a.name, "tenant-a", Lockdown::default()).await?;
    create_gitsync(&a, "a", &url_a, json!({"serviceAccountName": "deployer"})).await?;
    let message = wait_failed(&a, "a", &a_first, "ApplyFailed").await?;
    assert!(message.contains("precious"), "{message}");

    // Then removes it from its repository: the sync succeeds, B's object is untouched.
    upstream_a.remove("grab.yaml");
    let a_second = upstream_a.commit("drop");
    wait_ready_at(&a, "a", &a_second, Duration::from_secs(90)).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &b.name);
    let precious = cms.get("precious").await?;
    assert_eq!(precious.data.unwrap()["value"], "b");
    // B's own sync is still Ready at its revision (nothing of A's reached it).
    wait_ready_at(&b, "b", &b_first, Duration::from_secs(30)).await?;
    Ok(())
}

#[test]
fn the_tenant_example_is_a_namespace_an_account_a_role_and_a_confined_gitsync() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tenant/tenant.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let manifests = headway_render::parse_manifests(&text, "tenant.yaml").unwrap();
    let kinds: Vec<&str> = manifests.iter().map(|m| m.id.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "GitSync"
        ]
    );
    let gitsync: headway_controller::GitSync =
        serde_json::from_value(manifests[4].object.clone()).unwrap();
    assert_eq!(
        gitsync.spec.service_account_name.as_deref(),
        Some("deployer")
    );
    gitsync.spec.effective().unwrap();
    Lockdown {
        default_service_account: None,
        no_cross_namespace_refs: true,
    }
    .check(&gitsync.spec, "team-a")
    .unwrap();
}

/// `helm template` of the chart for release `release` in `namespace` with `sets`.
fn chart_objects(release: &str, namespace: &str, sets: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["template", release, "--namespace", namespace];
    for s in sets {
        args.extend(["--set", s]);
    }
    headway_render::parse_manifests(&chart_helm(&args), "chart")
        .expect("the chart renders")
        .into_iter()
        .map(|m| m.object)
        .collect()
}

/// Deletes the chart's cluster-scoped RBAC objects (named `name`) of a test when dropped.
struct ClusterRbac {
    name: String,
}

impl Drop for ClusterRbac {
    fn drop(&mut self) {
        let name = self.name.clone();
        // The test's runtime may be shutting down: delete from a thread with its own runtime
        // and a client built on it.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            rt.block_on(async {
                let Ok(cluster) = TestCluster::connect().await else {
                    return;
                };
                let dp = kube::api::DeleteParams::default();
                let _ = Api::<ClusterRoleBinding>::all(cluster.client.clone())
                    .delete(&name, &dp)
                    .await;
                let _ = Api::<ClusterRole>::all(cluster.client)
                    .delete(&name, &dp)
                    .await;
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_with_only_the_chart_s_rbac_syncs_a_tenant() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("a_controller_with_only_the_chart_s_rbac_syncs_a_tenant") {
        return Ok(());
    }
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("tenant-chart").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();
    tenant_account(&ns, "deployer").await?;

    // The chart's ServiceAccount and RBAC for a locked-down installation (release = namespace,
    // so the cluster-scoped names are unique), applied as they are.
    let release = ns.name.clone();
    let fullname = format!("{release}-headway");
    let _rbac = ClusterRbac {
        name: fullname.clone(),
    };
    let objects = chart_objects(
        &release,
        &ns.name,
        &[
            "rbac.clusterAdmin=false",
            "controller.defaultServiceAccount=deployer",
        ],
    );
    let pp = PatchParams::apply("headway-tests").force();
    for o in &objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        match kind {
            "ServiceAccount" => {
                ns.api::<ServiceAccount>()
                    .patch(name, &pp, &Patch::Apply(o))
                    .await?;
            }
            "ClusterRole" => {
                Api::<ClusterRole>::all(client.clone())
                    .patch(name, &pp, &Patch::Apply(o))
                    .await?;
            }
            "ClusterRoleBinding" => {
                Api::<ClusterRoleBinding>::all(client.clone())
                    .patch(name, &pp, &Patch::Apply(o))
                    .await?;
            }
            "Role" => {
                ns.api::<Role>().patch(name, &pp, &Patch::Apply(o)).await?;
            }
            "RoleBinding" => {
                ns.api::<RoleBinding>()
                    .patch(name, &pp, &Patch::Apply(o))
                    .await?;
            }
            _ => {}
        }
    }
    assert!(
        objects
            .iter()
            .all(|o| o["roleRef"]["name"] != "cluster-admin"),
        "locked down: no cluster-admin binding"
    );

    // The controller runs with a token of the chart's ServiceAccount, nothing else.
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))?;
    let token = ns
        .api::<ServiceAccount>()
        .create_subresource::<_, k8s_openapi::api::authentication::v1::TokenRequest>(
            "token",
            &fullname,
            &PostParams::default(),
            &request,
        )
        .await?
        .status
        .map(|s| s.token)
        .expect("a token");
    let mut config = cluster.config.clone();
    config.auth_info = serde_json::from_value(json!({"token": token}))?;
    let as_controller = TestCluster {
        client: kube::Client::try_from(config.clone())?,
        config,
    };
    let _controller = start(
        &as_controller,
        &ns.name,
        "chart-rbac",
        Lockdown {
            default_service_account: Some("deployer".into()),
            no_cross_namespace_refs: true,
        },
    )
    .await?;

    let upstream = Upstream::new();
    upstream
        .write("a.yaml", &configmap_yaml("a", "one"))
        .write("b.yaml", &configmap_yaml("b", "one"));
    let first = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);
    create_gitsync(&ns, "site", &url, json!({})).await?;
    wait_ready_at(&ns, "site", &first, Duration::from_secs(90)).await?;
    upstream.remove("b.yaml");
    let second = upstream.commit("prune b");
    wait_ready_at(&ns, "site", &second, Duration::from_secs(90)).await?;
    assert!(configmap_data(&client, &ns.name, "a").await?.is_some());
    assert!(
        configmap_data(&client, &ns.name, "b").await?.is_none(),
        "pruned as the tenant"
    );
    assert!(
        configmap_data(&client, &ns.name, "headway-inventory-site")
            .await?
            .is_some(),
        "the inventory is written by the controller's identity"
    );
    let events = events_of(&client, &ns.name, "site").await?;
    assert!(!events.is_empty(), "Events are written by the controller");

    Ok(())
}
