//! SOPS decryption end to end, against the local cluster, a local `git daemon` and the real
//! `sops` and `age-keygen` (built by `cargo xtask cluster build`): a repository with a Secret and
//! a ConfigMap encrypted by sops for an age key syncs to the decrypted values; a tampered file
//! and the wrong key fail with RenderFailed naming the problem and change nothing (nothing
//! applied, nothing pruned); no plaintext value appears in the controller's logs, its Events, the
//! GitSync's status, or the diff text `headway diff` prints.
//!
//! Needs `HEADWAY_CLUSTER_TESTS=1`, `HEADWAY_GIT_TESTS=1` and `HEADWAY_TOOL_TESTS=1`.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headway_apply::{Engine, EngineOptions};
use headway_controller::crd::GitSync;
use headway_decrypt::{Keys, SopsDecryptor};
use headway_model::{RenderedSet, SyncOwner};
use headway_render::{RenderOptions, RenderType};
use headway_tests::git::{Upstream, git_daemon};
use headway_tests::sops::{encrypt, keygen};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::*;

const SECRET_VALUE: &str = "db-Passw0rd-plaintext-31f7";
const CONFIG_VALUE: &str = "https://internal-plaintext-8c2d.example";

/// Log lines of this test process, captured from the in-process controller.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn no_plaintext(what: &str, text: &str) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET_VALUE);
    for needle in [SECRET_VALUE, CONFIG_VALUE, encoded.as_str()] {
        assert!(
            !text.contains(needle),
            "{what} contains the plaintext {needle:?}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sops_files_sync_decrypted_and_their_plaintext_leaks_nowhere() -> anyhow::Result<()> {
    let Some(cluster) = headway_tests::cluster().await else {
        return Ok(());
    };
    if !git_enabled("sops_files_sync_decrypted_and_their_plaintext_leaks_nowhere") {
        return Ok(());
    }
    if !headway_tests::sops::enabled("sops_files_sync_decrypted_and_their_plaintext_leaks_nowhere")
    {
        return Ok(());
    }
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,headway_controller=debug,headway_apply=debug,headway_render=debug",
        ))
        .with_writer(move || writer.clone())
        .try_init()
        .ok();

    install_crd(&cluster.client).await?;
    let ns = cluster.namespace("ctl-sops").await?;
    let _janitor = Janitor::new(&cluster, &ns);
    let client = cluster.client.clone();
    let work = tempfile::tempdir()?;
    let (key, recipient) = keygen(work.path(), "key.txt");
    let (wrong_key, _) = keygen(work.path(), "wrong.txt");
    let secrets: Api<Secret> = ns.api();
    // The age key the controller decrypts with: the Secret `sops-keys`, created or replaced.
    let use_key = async |text: &str| {
        secrets
            .patch(
                "sops-keys",
                &PatchParams::apply("headway-tests").force(),
                &Patch::Apply(json!({
                    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sops-keys"},
                    "data": {"identity.agekey": ByteString(text.as_bytes().to_vec())},
                })),
            )
            .await
    };
    use_key(&key).await?;

    let secret_plain = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\nstringData:\n  password: {SECRET_VALUE}\n"
    );
    let config_plain = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: endpoints\ndata:\n  url: {CONFIG_VALUE}\n"
    );
    let secret_enc = encrypt(
        work.path(),
        "secret.yaml",
        &secret_plain,
        &recipient,
        &["--encrypted-regex", "^(data|stringData)$"],
    );
    let config_enc = encrypt(
        work.path(),
        "config.yaml",
        &config_plain,
        &recipient,
        &["--encrypted-regex", "^data$"],
    );
    no_plaintext("the encrypted files", &format!("{secret_enc}{config_enc}"));

    let upstream = Upstream::new();
    upstream
        .write("app/secret.yaml", &secret_enc)
        .write("app/config.yaml", &config_enc)
        .write("app/keep.yaml", &configmap_yaml("keep", "plain"));
    let first = upstream.commit("encrypted");
    let (_daemon, url) = git_daemon(&upstream);
    let _controller = start_controller(&cluster, &ns.name, "sops").await?;
    create_gitsync(
        &ns,
        "site",
        &url,
        json!({"path": "app", "decryption": {"provider": "sops", "secretRef": {"name": "sops-keys"}}}),
    )
    .await?;
    wait_ready_at(&ns, "site", &first, Duration::from_secs(90)).await?;
    let db = secrets.get("db").await?;
    assert_eq!(
        db.data.unwrap()["password"].0,
        SECRET_VALUE.as_bytes(),
        "the Secret holds the decrypted value"
    );
    assert_eq!(
        configmap_data(&client, &ns.name, "endpoints")
            .await?
            .unwrap()["url"],
        CONFIG_VALUE
    );

    // A tampered file (an unencrypted field covered by the MAC), with keep.yaml removed in the
    // same commit: RenderFailed naming the file; nothing applied, nothing pruned.
    upstream
        .write(
            "app/secret.yaml",
            &secret_enc.replace("type: Opaque", "type: Opaque2"),
        )
        .remove("app/keep.yaml");
    let tampered = upstream.commit("tampered");
    let message = wait_failed(&ns, "site", &tampered, "RenderFailed").await?;
    assert!(message.contains("secret.yaml"), "{message}");
    assert!(message.contains("MAC mismatch"), "{message}");
    assert!(configmap_data(&client, &ns.name, "keep").await?.is_some());

    // The wrong key: the file is restored, but no key opens it.
    use_key(&wrong_key).await?;
    upstream.write("app/secret.yaml", &secret_enc);
    let wrong = upstream.commit("restored, wrong key");
    let message = wait_failed(&ns, "site", &wrong, "RenderFailed").await?;
    assert!(message.contains("none of the given age keys"), "{message}");
    assert!(message.contains(&recipient), "{message}");
    assert!(configmap_data(&client, &ns.name, "keep").await?.is_some());
    assert_eq!(
        secrets.get("db").await?.data.unwrap()["password"].0,
        SECRET_VALUE.as_bytes()
    );

    // The right key again: synced, keep.yaml pruned now that the render is complete.
    use_key(&key).await?;
    upstream.write("app/touch.txt", "retry\n");
    let fixed = upstream.commit("right key");
    wait_ready_at(&ns, "site", &fixed, Duration::from_secs(90)).await?;
    assert!(configmap_data(&client, &ns.name, "keep").await?.is_none());

    // The diff text `headway diff` prints, after a hand edit of both objects: paths, no values.
    let cms: Api<ConfigMap> = ns.api();
    cms.patch(
        "endpoints",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"url": "hand-edited"}})),
    )
    .await?;
    secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "hand-edited"}})),
        )
        .await?;
    let repo_dir = work.path().join("checkout");
    std::fs::create_dir(&repo_dir)?;
    std::fs::write(repo_dir.join("secret.yaml"), &secret_enc)?;
    std::fs::write(repo_dir.join("config.yaml"), &config_enc)?;
    let mut keys = Keys::new();
    keys.add_text("key", &key)?;
    let options = RenderOptions {
        render_type: RenderType::Plain,
        decryptor: Some(SopsDecryptor::new(keys).into_render_hook()),
        ..RenderOptions::default()
    };
    let manifests = headway_render::render(&repo_dir, &options)?;
    let set = RenderedSet::from_complete_render("local", manifests)?;
    let engine = Engine::new(client.clone(), EngineOptions::default()).await?;
    let owner = SyncOwner::new(&ns.name, "site")?;
    let drift = engine.drift(&owner, &set, &ns.name).await?;
    let text = drift.render_text();
    assert!(drift.has_drift(), "{text}");
    assert!(text.contains("url"), "{text}");
    no_plaintext("the diff text", &text);
    assert!(!text.contains("hand-edited"), "{text}");

    // Status, Events, logs.
    let api: Api<GitSync> = ns.api();
    let status = serde_json::to_string(&api.get("site").await?.status)?;
    no_plaintext("the GitSync status", &status);
    let events = events_of(&client, &ns.name, "site").await?;
    assert!(!events.is_empty());
    no_plaintext("the Events", &format!("{events:?}"));
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logged.contains("sync"), "logs were captured: {logged}");
    no_plaintext("the controller's logs", &logged);
    Ok(())
}
