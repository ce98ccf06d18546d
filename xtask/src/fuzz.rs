//! `cargo xtask fuzz [--time S] [TARGET...]`: runs the cargo-fuzz targets of `fuzz/` (nightly,
//! libFuzzer) for `S` seconds each, starting from the committed seeds (`fuzz/seeds/TARGET`) and
//! regressions (`fuzz/regressions/TARGET`), and prints the executions per target. An input that
//! crashes, hangs or exhausts memory is copied to `fuzz/regressions/TARGET/`, which the stable
//! regression tests replay in the normal suite (`crates/render/tests/fuzz_regressions.rs`,
//! `crates/source/tests/fuzz_regressions.rs`, `crates/controller/tests/fuzz_regressions.rs`),
//! and the task fails.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// The targets, as `fuzz/Cargo.toml` names them.
pub const TARGETS: [&str; 4] = ["manifests", "repo_url", "known_hosts", "duration"];

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Seconds of fuzzing per target.
    #[arg(long, default_value_t = 60)]
    pub time: u64,
    /// Targets to run (default: all).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
}

/// What one target's run did.
struct Outcome {
    target: String,
    executions: u64,
    seconds: f64,
    findings: Vec<String>,
}

pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    let version = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .current_dir(root)
        .output()
        .context("running cargo +nightly fuzz --version")?;
    if !version.status.success() {
        bail!(
            "cargo-fuzz is not installed for the nightly toolchain: `cargo install cargo-fuzz` (and `rustup toolchain install nightly`)"
        );
    }
    let targets: Vec<String> = if opts.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        opts.targets.clone()
    };
    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(run_target(root, target, opts.time)?);
    }
    println!(
        "\n{:<12} {:>12} {:>8}  findings",
        "target", "executions", "seconds"
    );
    for o in &outcomes {
        println!(
            "{:<12} {:>12} {:>8.0}  {}",
            o.target,
            o.executions,
            o.seconds,
            if o.findings.is_empty() {
                "none".to_string()
            } else {
                o.findings.join(", ")
            }
        );
    }
    let found: usize = outcomes.iter().map(|o| o.findings.len()).sum();
    if found > 0 {
        bail!(
            "{found} input(s) crashed, hung or ran out of memory; copied to fuzz/regressions/ (replayed by the stable regression tests): fix them"
        );
    }
    Ok(())
}

fn run_target(root: &Path, target: &str, seconds: u64) -> anyhow::Result<Outcome> {
    let fuzz = root.join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    let artifacts = fuzz.join("artifacts").join(target);
    let regressions = fuzz.join("regressions").join(target);
    for dir in [&corpus, &artifacts, &regressions] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let before = listing(&artifacts);
    eprintln!("xtask: fuzzing {target} for {seconds} s...");
    let started = Instant::now();
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "run", target])
        .arg(&corpus)
        .arg(fuzz.join("seeds").join(target))
        .arg(&regressions)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // A hang or a 2 GiB allocation is a finding, like a crash.
        .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running cargo +nightly fuzz run {target}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = fuzz.join("artifacts").join(format!("{target}.log"));
    std::fs::write(&log, stderr.as_bytes())?;
    let executions = stderr
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let mut findings = Vec::new();
    for name in listing(&artifacts).difference(&before) {
        std::fs::copy(artifacts.join(name), regressions.join(name))?;
        findings.push(format!("fuzz/regressions/{target}/{name}"));
    }
    if !out.status.success() && findings.is_empty() {
        bail!(
            "fuzzing {target} failed without an artifact (build error?); log in {}:\n{}",
            log.display(),
            tail(&stderr, 30)
        );
    }
    Ok(Outcome {
        target: target.to_string(),
        executions,
        seconds: elapsed,
        findings,
    })
}

fn listing(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
