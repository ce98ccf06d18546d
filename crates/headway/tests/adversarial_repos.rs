//! The memory `headway render` takes on hostile repositories: each case runs the binary as a
//! child process and samples its peak resident set (`VmHWM`) until it exits. The bound asserted
//! (and stated in docs/reliability.md) is 128 MiB for a debug build; every case must also fail
//! with an error naming the file. The cases themselves, with their exact errors, are tested in
//! `crates/render/tests/adversarial.rs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use headway_tests::process::Guarded;

/// Largest peak RSS accepted, in KiB.
const BOUND_KIB: u64 = 128 * 1024;

/// Runs `headway render dir`; `(peak RSS in KiB, exit success, stderr)`. A case that fails
/// at once (deep nesting is refused in well under a millisecond) can exit before its first
/// sample on a loaded machine (an exited child has no `VmHWM` any more): it is run again, up
/// to 20 times, until it was sampled at least once.
fn render_peak(dir: &Path) -> (u64, bool, String) {
    let mut run = render_once(dir);
    for _ in 1..20 {
        if run.0 > 0 {
            break;
        }
        run = render_once(dir);
    }
    run
}

/// One run of `headway render dir`, sampled every 5 ms; a peak of 0 means no sample.
fn render_once(dir: &Path) -> (u64, bool, String) {
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_headway"))
            .arg("render")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err.reopen().unwrap()),
    )
    .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = std::fs::read_to_string(err.path()).unwrap();
    (peak, status.success(), stderr)
}

/// What the case is, how to write its repository, and the file its error must name.
type Case = (&'static str, Box<dyn Fn(&Path)>, &'static str);

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn hostile_repositories_fail_naming_the_file_in_bounded_memory() {
    let cases: Vec<Case> = vec![
        (
            "alias bomb",
            Box::new(|d| {
                let mut lines = vec![
                    r#"  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]"#
                        .to_string(),
                ];
                for i in 1..10u8 {
                    let (prev, cur) = ((b'a' + i - 1) as char, (b'a' + i) as char);
                    lines.push(format!(
                        "  {cur}: &{cur} [{}]",
                        vec![format!("*{prev}"); 9].join(",")
                    ));
                }
                write(
                    d,
                    "bomb.yaml",
                    &format!(
                        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n{}\n",
                        lines.join("\n")
                    ),
                );
            }),
            "bomb.yaml",
        ),
        (
            "10,000 levels of nesting",
            Box::new(|d| {
                write(
                    d,
                    "deep.yaml",
                    &format!(
                        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\nx: {}{}\n",
                        "[".repeat(10_000),
                        "]".repeat(10_000)
                    ),
                );
            }),
            "deep.yaml",
        ),
        (
            "a 100 MiB document",
            Box::new(|d| {
                let body = format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  x: \"{}\"\n",
                    "a".repeat(100 << 20)
                );
                write(d, "big.yaml", &body);
            }),
            "big.yaml",
        ),
        (
            "100,000 tiny files",
            Box::new(|d| {
                for i in 0..100_000 {
                    write(
                        d,
                        &format!("f{i:06}.yaml"),
                        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\n"),
                    );
                }
            }),
            "f020000.yaml",
        ),
        (
            "a symlink to /etc/passwd and a loop",
            Box::new(|d| {
                std::os::unix::fs::symlink("/etc/passwd", d.join("passwd.yaml")).unwrap();
                std::os::unix::fs::symlink("loop.yaml", d.join("loop.yaml")).unwrap();
            }),
            "passwd.yaml",
        ),
    ];
    for (what, make, file) in cases {
        let dir = tempfile::tempdir().unwrap();
        make(dir.path());
        let (peak, ok, stderr) = render_peak(dir.path());
        println!("{what}: peak RSS {} MiB", peak / 1024);
        assert!(!ok, "{what}: rendered");
        assert!(
            stderr.contains(file),
            "{what}: the error does not name {file}: {stderr}"
        );
        assert!(peak > 0, "{what}: no memory sample");
        assert!(
            peak < BOUND_KIB,
            "{what}: peak RSS {peak} KiB over {BOUND_KIB} KiB"
        );
    }
}
