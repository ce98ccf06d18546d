//! The Helm chart `charts/headway`: it lints, renders the controller's Deployment, RBAC and Lease
//! rights, and, with `repository.url` set, a GitSync that the controller syncs (the GitSync the
//! chart renders is applied to the local cluster and reaches Ready at the repository's commit).
//!
//! Needs `helm` on `PATH` (`eval "$(cargo xtask cluster env)"`), `HEADWAY_CLUSTER_TESTS=1` and
//! `HEADWAY_GIT_TESTS=1`.

mod support;

use std::time::Duration;

use headway_controller::crd::GitSync;
use headway_tests::git::{Upstream, git_daemon};
use kube::api::{Api, Patch, PatchParams};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_chart_renders_a_controller_and_a_gitsync_that_syncs() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("the_chart_renders_a_controller_and_a_gitsync_that_syncs") {
        return Ok(());
    }
    chart_helm(&["lint"]);
    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-chart").await?;
    let _janitor = Janitor::new(&cluster, &ns);

    let upstream = Upstream::new();
    upstream.write("config.yaml", &configmap_yaml("from-chart", "yes"));
    let head = upstream.commit("first");
    let (_daemon, url) = git_daemon(&upstream);

    // Without a URL: no GitSync.
    let text = chart_helm(&["template", "hw", "--namespace", &ns.name]);
    let manifests = headway_render::parse_manifests(&text, "chart")?;
    assert!(manifests.iter().all(|m| m.id.kind != "GitSync"));

    let text = chart_helm(&[
        "template",
        "hw",
        "--namespace",
        &ns.name,
        "--set",
        &format!("repository.url={url}"),
        "--set",
        "sync.interval=3s",
    ]);
    let manifests = headway_render::parse_manifests(&text, "chart")?;
    let mut kinds: Vec<&str> = manifests.iter().map(|m| m.id.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "GitSync",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    let deployment = manifests
        .iter()
        .find(|m| m.id.kind == "Deployment")
        .unwrap();
    let args = &deployment.object["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args[0], "controller", "{args}");
    let role = manifests.iter().find(|m| m.id.kind == "Role").unwrap();
    assert_eq!(role.object["rules"][0]["resources"][0], "leases");

    // The rendered GitSync is valid for the CRD and gets synced; deleting it (as `helm
    // uninstall` does) leaves what it applied unless `sync.deletionPolicy=Prune` says otherwise.
    let gitsync = manifests.iter().find(|m| m.id.kind == "GitSync").unwrap();
    assert_eq!(gitsync.object["spec"]["deletionPolicy"], "Orphan");
    let pruning = chart_helm(&[
        "template",
        "hw",
        "--set",
        &format!("repository.url={url}"),
        "--set",
        "sync.deletionPolicy=Prune",
    ]);
    let pruning = headway_render::parse_manifests(&pruning, "chart")?;
    let pruning = pruning.iter().find(|m| m.id.kind == "GitSync").unwrap();
    assert_eq!(pruning.object["spec"]["deletionPolicy"], "Prune");
    let api: Api<GitSync> = ns.api();
    api.patch(
        "hw",
        &PatchParams::apply("helm-test").force(),
        &Patch::Apply(&gitsync.object),
    )
    .await?;
    let controller = start_controller(&cluster, &ns.name, "chart-a").await?;
    wait_ready_at(&ns, "hw", &head, Duration::from_secs(60)).await?;
    assert_eq!(
        configmap_data(&cluster.client, &ns.name, "from-chart")
            .await?
            .unwrap()["value"],
        "yes"
    );
    controller.stop().await
}

/// The `impersonate` rule of the controller's ClusterRole, if any.
fn impersonate_rule(text: &str) -> Option<serde_json::Value> {
    let manifests = headway_render::parse_manifests(text, "chart").expect("the chart renders");
    manifests
        .iter()
        .filter(|m| m.id.kind == "ClusterRole")
        .flat_map(|m| m.object["rules"].as_array().cloned().unwrap_or_default())
        .find(|r| {
            r["verbs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v == "impersonate"))
        })
}

/// Whether the tests that only need `helm` run; prints why not otherwise.
fn tools_enabled() -> bool {
    if std::env::var("HEADWAY_TOOL_TESTS").ok().as_deref() != Some("1")
        && !headway_tests::cluster_tests_enabled()
    {
        eprintln!("skipping: helm is needed (HEADWAY_TOOL_TESTS=1 or HEADWAY_CLUSTER_TESTS=1)");
        return false;
    }
    true
}

#[test]
fn the_chart_grants_impersonation_only_when_tenancy_needs_it() {
    if !tools_enabled() {
        return;
    }
    let default = chart_helm(&["template", "hw", "--namespace", "hw"]);
    assert!(
        impersonate_rule(&default).is_none(),
        "no impersonation by default"
    );
    assert!(!default.contains("--default-service-account"));
    assert!(!default.contains("--no-cross-namespace-refs"));

    let locked = chart_helm(&[
        "template",
        "hw",
        "--namespace",
        "hw",
        "--set",
        "rbac.clusterAdmin=false",
        "--set",
        "controller.defaultServiceAccount=tenant",
        "--set",
        "controller.noCrossNamespaceRefs=true",
    ]);
    assert!(
        locked.contains("- --default-service-account=tenant"),
        "{locked}"
    );
    assert!(locked.contains("- --no-cross-namespace-refs"), "{locked}");
    let rule = impersonate_rule(&locked).expect("an impersonate rule");
    assert_eq!(rule["resources"], serde_json::json!(["serviceaccounts"]));
    assert_eq!(rule["verbs"], serde_json::json!(["impersonate"]));
    assert!(!locked.contains("cluster-admin"), "{locked}");

    let explicit = chart_helm(&[
        "template",
        "hw",
        "--namespace",
        "hw",
        "--set",
        "rbac.clusterAdmin=false",
        "--set",
        "rbac.impersonateServiceAccounts=true",
    ]);
    assert!(impersonate_rule(&explicit).is_some());
}

/// `helm template hw --namespace hw [--set X]...` as JSON objects.
fn render(sets: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["template", "hw", "--namespace", "hw"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let text = chart_helm(&args);
    headway_render::parse_manifests(&text, "chart")
        .expect("the chart renders")
        .into_iter()
        .map(|m| m.object)
        .collect()
}

fn kinds(objects: &[serde_json::Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    kinds.sort();
    kinds
}

fn find<'a>(objects: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", kinds(objects)))
}

fn rules_of(objects: &[serde_json::Value], kind: &str) -> Vec<serde_json::Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .flat_map(|o| o["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn grants(rules: &[serde_json::Value], resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r["resources"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == resource))
            && r["verbs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == verb))
    })
}

#[test]
fn the_chart_defaults_two_replicas_a_budget_labels_and_a_locked_down_pod() {
    if !tools_enabled() {
        return;
    }
    chart_helm(&["lint", "--strict"]);
    let objects = render(&[]);
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    // The recommended labels on every object.
    for o in &objects {
        let labels = &o["metadata"]["labels"];
        for (key, value) in [
            ("app.kubernetes.io/name", "headway"),
            ("app.kubernetes.io/instance", "hw"),
            ("app.kubernetes.io/version", "0.1.0"),
            ("app.kubernetes.io/component", "controller"),
            ("app.kubernetes.io/part-of", "headway"),
            ("app.kubernetes.io/managed-by", "Helm"),
            ("helm.sh/chart", "headway-0.1.0"),
        ] {
            assert_eq!(
                labels[key], value,
                "{key} of {} {}",
                o["kind"], o["metadata"]["name"]
            );
        }
    }
    let deployment = find(&objects, "Deployment", "hw-headway");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let args = container["args"].as_array().unwrap();
    assert!(
        args.iter().any(|a| a == "--lease-name=headway-controller"),
        "{args:?}"
    );
    assert!(
        !args
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("--namespace")),
        "{args:?}"
    );
    // The pods carry the labels the Service and the budget select.
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let pdb = find(&objects, "PodDisruptionBudget", "hw-headway");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    for (key, value) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod_labels[key], value, "{key}");
    }
    for (key, value) in find(&objects, "Service", "hw-headway")["spec"]["selector"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&pod_labels[key], value, "{key}");
    }
    // Cluster-wide by default: the controller's own rules and the API's reviews.
    let rules = rules_of(&objects, "ClusterRole");
    for (resource, verb) in [
        ("gitsyncs", "watch"),
        ("gitsyncs/status", "patch"),
        ("secrets", "get"),
        ("configmaps", "create"),
        ("events", "create"),
        ("tokenreviews", "create"),
        ("subjectaccessreviews", "create"),
    ] {
        assert!(
            grants(&rules, resource, verb),
            "{resource} {verb}: {rules:?}"
        );
    }
    assert!(grants(&rules_of(&objects, "Role"), "leases", "update"));
    let admin = find(&objects, "ClusterRoleBinding", "hw-headway-cluster-admin");
    assert_eq!(admin["roleRef"]["name"], "cluster-admin");

    // One replica: no budget (it would block every drain); the budget can be turned off.
    assert!(!kinds(&render(&["replicas=1"])).contains(&"PodDisruptionBudget".to_string()));
    assert!(
        !kinds(&render(&["podDisruptionBudget.enabled=false"]))
            .contains(&"PodDisruptionBudget".to_string())
    );
    let pdb = render(&["podDisruptionBudget.maxUnavailable=50%", "replicas=4"]);
    assert_eq!(
        find(&pdb, "PodDisruptionBudget", "hw-headway")["spec"]["maxUnavailable"],
        "50%"
    );

    // The security contexts are the values'.
    let custom = render(&[
        "podSecurityContext.runAsUser=1234",
        "securityContext.readOnlyRootFilesystem=false",
    ]);
    let pod = &find(&custom, "Deployment", "hw-headway")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 1234);
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        false
    );
}

#[test]
fn the_chart_renders_ingress_and_prometheus_objects_on_request() {
    if !tools_enabled() {
        return;
    }
    let objects = render(&[
        "ingress.enabled=true",
        "ingress.className=nginx",
        "ingress.hosts[0]=headway.example.com",
        "ingress.tls[0].secretName=headway-tls",
        "ingress.tls[0].hosts[0]=headway.example.com",
        "ingress.annotations.a=b",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prom",
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.syncFailingMinutes=7",
        "metrics.prometheusRule.driftMinutes=45",
        "metrics.prometheusRule.rebuildSlowSeconds=120",
        "metrics.prometheusRule.noLeaderMinutes=3",
        "metrics.prometheusRule.severity=critical",
    ]);
    let ingress = find(&objects, "Ingress", "hw-headway");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress["metadata"]["annotations"]["a"], "b");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "headway-tls");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "headway.example.com");
    assert_eq!(rule["http"]["paths"][0]["path"], "/hooks");
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"]["name"],
        "hw-headway"
    );
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"]["port"]["name"],
        "http"
    );
    let all = render(&["ingress.enabled=true", "ingress.allPaths=true"]);
    let rule = &find(&all, "Ingress", "hw-headway")["spec"]["rules"][0];
    assert_eq!(rule["http"]["paths"][0]["path"], "/");
    assert!(rule.get("host").is_none(), "no host: every host");

    let monitor = find(&objects, "ServiceMonitor", "hw-headway");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let service = find(&objects, "Service", "hw-headway");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][key], value, "{key}");
    }

    let rule = find(&objects, "PrometheusRule", "hw-headway");
    let alerts: Vec<&serde_json::Value> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let alert = |name: &str| {
        *alerts
            .iter()
            .find(|a| a["alert"] == name)
            .unwrap_or_else(|| panic!("no alert {name}"))
    };
    let failing = alert("HeadwaySyncFailing");
    assert_eq!(failing["for"], "7m");
    assert!(
        failing["expr"]
            .as_str()
            .unwrap()
            .contains("headway_sync_ready")
    );
    assert_eq!(failing["labels"]["severity"], "critical");
    let drift = alert("HeadwayDrift");
    assert_eq!(drift["for"], "45m");
    assert!(
        drift["expr"]
            .as_str()
            .unwrap()
            .contains("headway_drifted_objects")
    );
    let slow = alert("HeadwayRebuildSlow");
    assert!(
        slow["expr"].as_str().unwrap().contains(
            "headway_last_rebuild_duration_seconds{job=\"hw-headway\",namespace=\"hw\"}) > 120"
        ),
        "{slow}"
    );
    let leader = alert("HeadwayNoLeader");
    assert_eq!(leader["for"], "3m");
    assert!(leader["expr"].as_str().unwrap().contains("headway_leader"));
    // Prometheus' own templates are left for Prometheus.
    assert!(
        failing["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("{{ $labels.sync }}")
    );
}

#[test]
fn the_chart_operates_namespaced_only_on_request() {
    if !tools_enabled() {
        return;
    }
    let objects = render(&["rbac.namespaced=true", "rbac.targetNamespaces[0]=apps"]);
    // The only cluster-wide rights left: the API's reviews.
    let cluster = rules_of(&objects, "ClusterRole");
    assert_eq!(cluster.len(), 2, "{cluster:?}");
    assert!(grants(&cluster, "tokenreviews", "create"));
    assert!(grants(&cluster, "subjectaccessreviews", "create"));
    let bindings: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding")
        .collect();
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0]["roleRef"]["name"], "hw-headway-auth");
    let own = find(&objects, "Role", "hw-headway");
    assert_eq!(own["metadata"]["namespace"], "hw");
    let rules = own["rules"].as_array().unwrap();
    assert!(grants(rules, "gitsyncs", "watch"));
    assert!(grants(rules, "secrets", "get"));
    assert!(grants(rules, "events", "create"));
    // cluster-admin bound in the release namespace and the listed ones only.
    let mut admin: Vec<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" && o["roleRef"]["name"] == "cluster-admin")
        .map(|o| o["metadata"]["namespace"].as_str().unwrap())
        .collect();
    admin.sort();
    assert_eq!(admin, ["apps", "hw"]);
    // The controller watches the release namespace only.
    let args = &find(&objects, "Deployment", "hw-headway")["spec"]["template"]["spec"]["containers"]
        [0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--namespace=$(POD_NAMESPACE)"),
        "{args}"
    );

    // Without cluster-admin: no admin binding at all.
    let bare = render(&["rbac.namespaced=true", "rbac.clusterAdmin=false"]);
    assert!(!bare.iter().any(|o| o["roleRef"]["name"] == "cluster-admin"));
    // Impersonation, when asked for, in the namespace's Role.
    let tenant = render(&[
        "rbac.namespaced=true",
        "rbac.clusterAdmin=false",
        "controller.defaultServiceAccount=tenant",
    ]);
    assert!(grants(
        &rules_of(&tenant, "Role"),
        "serviceaccounts",
        "impersonate"
    ));
    assert!(!grants(
        &rules_of(&tenant, "ClusterRole"),
        "serviceaccounts",
        "impersonate"
    ));
    // No RBAC at all.
    let none = render(&["rbac.create=false"]);
    assert!(
        none.iter()
            .all(|o| !o["kind"].as_str().unwrap().contains("Role"))
    );
}

#[test]
fn the_chart_refuses_values_its_schema_does_not_allow() {
    if !tools_enabled() {
        return;
    }
    for (set, expected) in [
        ("replicas=-1", "'/replicas': minimum: got -1, want 0"),
        ("replicas=two", "'/replicas': got string, want integer"),
        (
            "replicass=2",
            "additional properties 'replicass' not allowed",
        ),
        (
            "ingress.enabled=yes",
            "'/ingress/enabled': got string, want boolean",
        ),
        (
            "ingress.bogus=1",
            "at '/ingress': additional properties 'bogus' not allowed",
        ),
        (
            "controller.concurrency=0",
            "'/controller/concurrency': minimum: got 0, want 1",
        ),
        (
            "http.port=70000",
            "'/http/port': maximum: got 70,000, want 65,535",
        ),
        ("image.pullPolicy=Sometimes", "'/image/pullPolicy'"),
        (
            "podDisruptionBudget.maxUnavailable=half",
            "'/podDisruptionBudget/maxUnavailable'",
        ),
        (
            "metrics.prometheusRule.severity=page",
            "'/metrics/prometheusRule/severity'",
        ),
        (
            "metrics.prometheusRule.driftMinutes=0",
            "'/metrics/prometheusRule/driftMinutes'",
        ),
        (
            "rbac.namespaced=1",
            "'/rbac/namespaced': got number, want boolean",
        ),
        ("sync.interval=often", "'/sync/interval'"),
        ("sync.deletionPolicy=Delete", "'/sync/deletionPolicy'"),
    ] {
        for command in ["template", "lint"] {
            let args: &[&str] = if command == "template" {
                &["template", "hw", "--set", set]
            } else {
                &["lint", "--set", set]
            };
            let error = chart_helm_result(args).expect_err(set);
            assert!(error.contains(expected), "{command} --set {set}: {error}");
        }
    }
}
