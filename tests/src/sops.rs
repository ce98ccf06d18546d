//! The real `sops` and `age-keygen` (built by `cargo xtask cluster build`) for the decryption
//! tests: whether they run (`HEADWAY_TOOL_TESTS=1`), fresh age keys, files encrypted for them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the sops tests run; prints why not otherwise. Enabled, a missing `sops` or
/// `age-keygen` is a failure.
pub fn enabled(test: &str) -> bool {
    if std::env::var_os("HEADWAY_TOOL_TESTS").is_none_or(|v| v != "1") {
        eprintln!("skipping: {test} needs HEADWAY_TOOL_TESTS=1 and sops, age-keygen on PATH");
        return false;
    }
    tool("sops");
    tool("age-keygen");
    true
}

/// A tool on PATH; missing, the test fails.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("HEADWAY_TOOL_TESTS=1 but `{name}` is not on PATH (cargo xtask cluster build)")
        })
}

/// Runs the command; its stdout, or the test fails with its stderr.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fresh age key written to `dir/name`: (the key file's text, its recipient).
pub fn keygen(dir: &Path, name: &str) -> (String, String) {
    let file = dir.join(name);
    run(Command::new(tool("age-keygen")).arg("-o").arg(&file));
    let recipient = run(Command::new(tool("age-keygen")).arg("-y").arg(&file));
    (
        std::fs::read_to_string(&file).unwrap(),
        recipient.trim().to_string(),
    )
}

/// `sops --encrypt --age RECIPIENT FLAGS... dir/name` of `plain` (written as `dir/name`): the
/// encrypted text.
pub fn encrypt(dir: &Path, name: &str, plain: &str, recipient: &str, flags: &[&str]) -> String {
    let file = dir.join(name);
    std::fs::write(&file, plain).unwrap();
    run(Command::new(tool("sops"))
        .current_dir(dir)
        .env_remove("SOPS_AGE_KEY_FILE")
        .arg("--encrypt")
        .arg("--age")
        .arg(recipient)
        .args(flags)
        .arg(&file))
}
