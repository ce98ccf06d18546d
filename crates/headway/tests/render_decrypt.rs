//! `headway render --decrypt-key FILE` with files encrypted by the real `sops` for an age key
//! (`HEADWAY_TOOL_TESTS=1`, `sops` and `age-keygen` on PATH): the decrypted manifests are
//! printed; without the key, or with the wrong one, exit code 1 and an error naming the file,
//! never a plaintext value; the key file itself is named when it is not a key.

use std::process::{Command, Output};

use headway_tests::sops;

const VALUE: &str = "render-Plaintext-42e1";

fn headway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_headway"))
        .args(args)
        .output()
        .expect("running headway")
}

#[test]
fn render_decrypts_with_a_key_file_and_refuses_without_it() {
    if !sops::enabled("render_decrypts_with_a_key_file_and_refuses_without_it") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (_, recipient) = sops::keygen(work.path(), "key.txt");
    sops::keygen(work.path(), "wrong.txt");
    let encrypted = sops::encrypt(
        work.path(),
        "plain.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  v: {VALUE}\n"),
        &recipient,
        &["--encrypted-regex", "^stringData$"],
    );
    let plain = work.path().join("plain.yaml");
    let repo = work.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("secret.yaml"), encrypted).unwrap();
    let repo_arg = repo.to_str().unwrap();
    let key = work.path().join("key.txt");

    let out = headway(&["render", repo_arg, "--decrypt-key", key.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(VALUE), "{stdout}");
    assert!(!stdout.contains("sops:"), "{stdout}");
    assert!(stdout.contains("headway.dev/decrypted"), "{stdout}");

    for args in [
        vec!["render", repo_arg],
        vec![
            "render",
            repo_arg,
            "--decrypt-key",
            work.path().join("wrong.txt").to_str().unwrap(),
        ],
    ] {
        let out = headway(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("secret.yaml"), "{stderr}");
        assert!(!stderr.contains(VALUE), "{stderr}");
        assert!(out.stdout.is_empty());
    }

    let out = headway(&["render", repo_arg, "--decrypt-key", plain.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("plain.yaml line 1"), "{stderr}");
    assert!(
        !stderr.contains(VALUE),
        "a bad key file is not echoed: {stderr}"
    );
}
