//! The local control plane behaves like a real cluster: workloads converge on kwok's simulated
//! node, CRDs become Established, and RBAC is enforced. Gated by `HEADWAY_CLUSTER_TESTS=1`.

use std::time::Duration;

use anyhow::Context;
use headway_tests::{cluster, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::{Api, Client};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(90);

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("test object is well-formed")
}

#[tokio::test]
async fn deployment_of_three_replicas_becomes_available() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("deployment").await?;
    let api: Api<Deployment> = ns.api();
    api.create(
        &PostParams::default(),
        &from_json(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}
                }
            }
        })),
    )
    .await?;
    wait_for(
        "deployment web to have 3 available replicas",
        TIMEOUT,
        || async {
            let d = api.get("web").await?;
            let available = d
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            Ok(if available == 3 {
                Ok(())
            } else {
                Err(format!("availableReplicas={available}: {:?}", d.status))
            })
        },
    )
    .await?;
    // The pods really exist, are bound to the kwok node and have an IP.
    let pods: Api<Pod> = ns.api();
    let list = pods.list(&ListParams::default().labels("app=web")).await?;
    assert_eq!(list.items.len(), 3, "three pods");
    for pod in &list.items {
        let spec = pod.spec.as_ref().context("pod spec")?;
        assert_eq!(spec.node_name.as_deref(), Some("kwok-node-0"));
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        assert!(ip.is_some(), "pod {:?} has an IP", pod.metadata.name);
    }
    Ok(())
}

#[tokio::test]
async fn job_completes() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("job").await?;
    let api: Api<Job> = ns.api();
    api.create(
        &PostParams::default(),
        &from_json(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "once"},
            "spec": {
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "once", "image": "registry.invalid/once:1"}]
                }}
            }
        })),
    )
    .await?;
    wait_for("job once to be Complete", TIMEOUT, || async {
        let j = api.get("once").await?;
        let complete = j
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True")
            });
        Ok(if complete {
            Ok(())
        } else {
            Err(format!("{:?}", j.status))
        })
    })
    .await
}

#[tokio::test]
async fn statefulset_of_two_replicas_becomes_ready() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("statefulset").await?;
    let api: Api<StatefulSet> = ns.api();
    api.create(
        &PostParams::default(),
        &from_json(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 2,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "registry.invalid/db:1"}]}
                }
            }
        })),
    )
    .await?;
    wait_for(
        "statefulset db to have 2 ready replicas",
        TIMEOUT,
        || async {
            let s = api.get("db").await?;
            let ready = s
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            Ok(if ready == 2 {
                Ok(())
            } else {
                Err(format!("readyReplicas={ready}: {:?}", s.status))
            })
        },
    )
    .await
}

#[tokio::test]
async fn crd_becomes_established_and_accepts_a_custom_resource() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("crd").await?;
    // A group unique to this run, so parallel or repeated runs do not collide.
    let group = format!("t{}.headway.test", std::process::id());
    let crd_name = format!("widgets.{group}");
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    crds.create(
        &PostParams::default(),
        &from_json(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name},
            "spec": {
                "group": group,
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                    }}}
                }]
            }
        })),
    )
    .await?;
    let result = async {
        wait_for("the CRD to be Established", TIMEOUT, || async {
            let crd = crds.get(&crd_name).await?;
            let established = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            Ok(if established {
                Ok(())
            } else {
                Err(format!("{:?}", crd.status))
            })
        })
        .await?;
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&group, "v1", "Widget"),
            "widgets",
        );
        let widgets: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &ns.name, &ar);
        let widget: DynamicObject = from_json(json!({
            "apiVersion": format!("{group}/v1"), "kind": "Widget",
            "metadata": {"name": "w1"}, "spec": {"size": 3}
        }));
        widgets.create(&PostParams::default(), &widget).await?;
        let got = widgets.get("w1").await?;
        assert_eq!(got.data["spec"]["size"], json!(3));
        // The schema is enforced: a string where an integer belongs is rejected.
        let bad: DynamicObject = from_json(json!({
            "apiVersion": format!("{group}/v1"), "kind": "Widget",
            "metadata": {"name": "w2"}, "spec": {"size": "big"}
        }));
        let err = widgets
            .create(&PostParams::default(), &bad)
            .await
            .expect_err("schema violation");
        assert!(
            err.to_string().contains("spec.size"),
            "error names the field: {err}"
        );
        anyhow::Ok(())
    }
    .await;
    crds.delete(&crd_name, &DeleteParams::default()).await?;
    result
}

#[tokio::test]
async fn rbac_denies_a_service_account_without_rights() -> anyhow::Result<()> {
    let Some(c) = cluster().await else {
        return Ok(());
    };
    let ns = c.namespace("rbac").await?;
    let sas: Api<ServiceAccount> = ns.api();
    sas.create(
        &PostParams::default(),
        &from_json(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody"}}),
        ),
    )
    .await?;
    let token = sas
        .create_token_request(
            "nobody",
            &PostParams::default(),
            &from_json::<TokenRequest>(json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 600}
            })),
        )
        .await?
        .status
        .context("token request status")?
        .token;
    let mut config = c.config.clone();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let client = Client::try_from(config)?;
    // Authenticated (the token is valid: the server knows who we are) ...
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let err = pods
        .list(&ListParams::default())
        .await
        .expect_err("listing pods must be forbidden");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "forbidden, not {status:?}");
            assert!(
                status
                    .message
                    .contains(&format!("system:serviceaccount:{}:nobody", ns.name)),
                "the server identified the service account: {}",
                status.message
            );
        }
        other => panic!("expected a 403 from the API server, got {other:?}"),
    }
    // ... and the admin client, with rights, can list the same pods.
    let admin: Api<Pod> = ns.api();
    admin.list(&ListParams::default()).await?;
    Ok(())
}
