//! Against the real `sops` and `age-keygen` (built by `cargo xtask cluster build` from
//! xtask/go/sops; `HEADWAY_TOOL_TESTS=1` with both on PATH): files encrypted by sops with age
//! recipients (YAML and JSON, a Secret and a ConfigMap, the `encrypted_regex`,
//! `unencrypted_suffix` and `mac_only_encrypted` variants) decrypt to the original values, also
//! through the renderer; a wrong key and tampered files are refused naming the file, and no
//! error message contains a plaintext value.

use headway_decrypt::{DecryptError, Keys, SopsDecryptor, decrypt_document};
use headway_render::{RenderOptions, RenderType};
use headway_tests::sops::{enabled, encrypt, keygen};
use serde_json::{Value, json};

const SECRET_VALUE: &str = "s3cr3t-Plaintext-7a91";
const CONFIG_VALUE: &str = "c0nfig-Plaintext-55e2";

fn secret_yaml() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  labels:\n    tier: data\ntype: Opaque\nstringData:\n  password: {SECRET_VALUE}\n  port: \"5432\"\ndata:\n  token: c2VjcmV0\n"
    )
}

fn configmap_yaml() -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  url: {CONFIG_VALUE}\n  replicas: \"3\"\n  list_unencrypted: plain-visible\nbinaryData: {{}}\n"
    )
}

fn configmap_json() -> String {
    serde_json::to_string_pretty(&json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "from-json", "annotations": {"n": "1"}},
        "data": {"url": CONFIG_VALUE, "nested": "x"},
    }))
    .unwrap()
}

fn yaml_value(text: &str) -> Value {
    let m = headway_render::parse_manifests(text, "plain").unwrap();
    m[0].object.clone()
}

fn keys_of(text: &str) -> Keys {
    let mut keys = Keys::new();
    keys.add_text("key.agekey", text).unwrap();
    keys
}

#[test]
fn files_encrypted_by_sops_decrypt_to_their_values() {
    if !enabled("files_encrypted_by_sops_decrypt_to_their_values") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = keygen(dir.path(), "key.txt");
    let keys = keys_of(&key);
    let cases: Vec<(&str, String, Vec<&str>, bool)> = vec![
        ("secret.yaml", secret_yaml(), vec![], false),
        (
            "secret-regex.yaml",
            secret_yaml(),
            vec!["--encrypted-regex", "^(data|stringData)$"],
            false,
        ),
        (
            "configmap-suffix.yaml",
            configmap_yaml(),
            vec!["--unencrypted-suffix", "_unencrypted"],
            false,
        ),
        (
            "configmap-maconly.yaml",
            configmap_yaml(),
            vec!["--encrypted-regex", "^data$", "--mac-only-encrypted"],
            false,
        ),
        ("configmap.json", configmap_json(), vec![], true),
    ];
    for (name, plain, flags, json) in cases {
        let encrypted = encrypt(dir.path(), name, &plain, &recipient, &flags);
        assert!(
            !encrypted.contains(SECRET_VALUE) && !encrypted.contains(CONFIG_VALUE),
            "{name}: sops encrypted the values"
        );
        let decrypted = decrypt_document(&encrypted, json, &keys)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{encrypted}"));
        let expected: Value = if json {
            serde_json::from_str(&plain).unwrap()
        } else {
            yaml_value(&plain)
        };
        assert_eq!(decrypted, expected, "{name}");
    }
}

#[test]
fn the_renderer_decrypts_and_refuses_wrong_keys_and_tampered_files() {
    if !enabled("the_renderer_decrypts_and_refuses_wrong_keys_and_tampered_files") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (key, recipient) = keygen(work.path(), "key.txt");
    let (other_key, _) = keygen(work.path(), "other.txt");
    let repo = work.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let secret = encrypt(
        work.path(),
        "s.yaml",
        &secret_yaml(),
        &recipient,
        &["--encrypted-regex", "^(data|stringData)$"],
    );
    let config = encrypt(work.path(), "c.json", &configmap_json(), &recipient, &[]);
    std::fs::write(repo.join("secret.yaml"), &secret).unwrap();
    std::fs::write(repo.join("config.json"), &config).unwrap();
    std::fs::write(
        repo.join("plain.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n",
    )
    .unwrap();

    let render = |keys: Option<Keys>| {
        let options = RenderOptions {
            render_type: RenderType::Plain,
            decryptor: keys.map(|k| SopsDecryptor::new(k).into_render_hook()),
            ..RenderOptions::default()
        };
        headway_render::render(&repo, &options)
    };
    let manifests = render(Some(keys_of(&key))).expect("renders");
    let names: Vec<&str> = manifests.iter().map(|m| m.id.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let db = manifests.iter().find(|m| m.id.name == "db").unwrap();
    assert_eq!(db.object["stringData"]["password"], SECRET_VALUE);
    assert!(db.object.get("sops").is_none());
    assert_eq!(
        db.object["metadata"]["annotations"]["headway.dev/decrypted"], "sops",
        "decrypted objects are marked, so diffs mask them"
    );
    let plain = manifests.iter().find(|m| m.id.name == "plain").unwrap();
    assert!(plain.object["metadata"].get("annotations").is_none());
    let cm = manifests.iter().find(|m| m.id.name == "from-json").unwrap();
    assert_eq!(cm.object["data"]["url"], CONFIG_VALUE);

    let no_plaintext = |text: &str| {
        assert!(
            !text.contains(SECRET_VALUE) && !text.contains(CONFIG_VALUE),
            "an error shows a plaintext value: {text}"
        );
    };
    // No key, the wrong key: both files named, nothing rendered.
    for keys in [None, Some(keys_of(&other_key))] {
        let errors = render(keys).unwrap_err().to_string();
        assert!(errors.contains("secret.yaml"), "{errors}");
        assert!(errors.contains("config.json"), "{errors}");
        no_plaintext(&errors);
    }
    let errors = render(Some(keys_of(&other_key))).unwrap_err().to_string();
    assert!(errors.contains("none of the given age keys"), "{errors}");
    assert!(
        errors.contains(&recipient),
        "the file's recipient is named: {errors}"
    );

    // Tampering: an unencrypted value (covered by the MAC), a ciphertext, the MAC itself.
    let keys = keys_of(&key);
    let renamed = secret.replace("name: db", "name: dc");
    assert_eq!(
        decrypt_document(&renamed, false, &keys).unwrap_err(),
        DecryptError::MacMismatch
    );
    let at = secret.find("password: ENC[AES256_GCM,data:").unwrap() + 30;
    let mut flipped = secret.clone();
    let c = if &secret[at..at + 1] == "A" { "B" } else { "A" };
    flipped.replace_range(at..at + 1, c);
    let e = decrypt_document(&flipped, false, &keys).unwrap_err();
    assert!(
        matches!(&e, DecryptError::Value { path, .. } if path == "stringData.password"),
        "{e}"
    );
    no_plaintext(&e.to_string());
    // A value moved to another key fails its additional data.
    let swapped = secret.replacen("password:", "passwd:", 1);
    assert!(decrypt_document(&swapped, false, &keys).is_err());

    std::fs::write(repo.join("secret.yaml"), &renamed).unwrap();
    let errors = render(Some(keys_of(&key))).unwrap_err().to_string();
    assert!(
        errors.contains("secret.yaml") && errors.contains("MAC mismatch"),
        "{errors}"
    );
    no_plaintext(&errors);
}

#[test]
fn kustomize_output_decrypts_even_when_kustomize_rewrote_the_document() {
    if !enabled("kustomize_output_decrypts_even_when_kustomize_rewrote_the_document") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (key, recipient) = keygen(work.path(), "key.txt");
    let repo = work.path().join("repo");
    std::fs::create_dir_all(repo.join("base")).unwrap();
    let secret = encrypt(
        work.path(),
        "s.yaml",
        &secret_yaml(),
        &recipient,
        &["--encrypted-regex", "^(data|stringData)$"],
    );
    // Kustomize needs apiVersion, kind and metadata in the clear.
    let config = encrypt(
        work.path(),
        "c.yaml",
        &configmap_yaml(),
        &recipient,
        &["--encrypted-regex", "^data$"],
    );
    std::fs::write(repo.join("base/secret.yaml"), &secret).unwrap();
    std::fs::write(repo.join("base/config.yaml"), &config).unwrap();
    // kustomize sorts keys and renames: neither document verifies as printed.
    std::fs::write(
        repo.join("base/kustomization.yaml"),
        "resources:\n- secret.yaml\n- config.yaml\nnamePrefix: prod-\nlabels:\n- pairs:\n    team: a\n",
    )
    .unwrap();
    let render = || {
        let options = RenderOptions {
            render_type: RenderType::Kustomize,
            decryptor: Some(SopsDecryptor::new(keys_of(&key)).into_render_hook()),
            boundary: Some(repo.clone()),
            ..RenderOptions::default()
        };
        headway_render::render(&repo.join("base"), &options)
    };
    let manifests = render().unwrap_or_else(|e| panic!("{e}"));
    let db = manifests.iter().find(|m| m.id.name == "prod-db").unwrap();
    assert_eq!(db.object["stringData"]["password"], SECRET_VALUE);
    assert_eq!(db.object["metadata"]["labels"]["team"], "a");
    assert!(db.object.get("sops").is_none());
    let cm = manifests
        .iter()
        .find(|m| m.id.name == "prod-settings")
        .unwrap();
    assert_eq!(cm.object["data"]["url"], CONFIG_VALUE);
    assert_eq!(cm.object["data"]["replicas"], "3");

    // The original in the repository is tampered with: refused, naming it.
    std::fs::write(
        repo.join("base/secret.yaml"),
        secret.replace("type: Opaque", "type: Other"),
    )
    .unwrap();
    let errors = render().unwrap_err().to_string();
    assert!(
        errors.contains("secret.yaml") && errors.contains("MAC mismatch"),
        "{errors}"
    );
    assert!(!errors.contains(SECRET_VALUE), "{errors}");
}
