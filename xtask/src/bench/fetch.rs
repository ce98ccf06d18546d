//! `cargo xtask bench fetch`: Headway's depth-1 fetch (`headway fetch`, release build, cold
//! cache) against `git clone --depth 1`, both processes, both from the same `git daemon` on
//! 127.0.0.1.
//!
//! The repository is generated with `git fast-import`: `commits` commits over `files` files
//! (most of them large and rarely changed, a few small ones changed in every commit, like a
//! deployment repository with a busy history), repacked, then served. Each side runs `runs`
//! times into fresh directories; the medians and their ratio are printed (target: Headway at
//! most 1.2x git).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};

use super::{build_headway, median};
use crate::gitserve::{GitDaemon, git};
use crate::paths::Paths;

/// What to generate and how often to measure.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Params {
    /// Commits in the generated history.
    #[arg(long, default_value_t = 2_000)]
    pub commits: usize,
    /// Files in the tree.
    #[arg(long, default_value_t = 300)]
    pub files: usize,
    /// Measured runs per side; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

/// Generates the repository, serves it, measures both sides and prints the result.
pub fn run(paths: &Paths, params: Params) -> anyhow::Result<()> {
    ensure!(
        params.commits >= 1 && params.files >= 10 && params.runs >= 1,
        "bad parameters {params:?}"
    );
    let dir = tempfile::tempdir()?;
    let srv = dir.path().join("srv");
    let bare = srv.join("bench.git");
    std::fs::create_dir_all(&bare)?;

    let started = Instant::now();
    git(&bare, &["init", "-q", "--bare", "-b", "main"])?;
    let stream_bytes = fast_import(&bare, params)?;
    git(&bare, &["repack", "-adq"])?;
    let pack_bytes = dir_size(&bare.join("objects"))?;
    println!(
        "generated {} commits over {} files in {:.1?} (fast-import stream {:.1} MiB, packed repository {:.1} MiB)",
        params.commits,
        params.files,
        started.elapsed(),
        mib(stream_bytes),
        mib(pack_bytes)
    );

    let daemon = GitDaemon::start(&srv)?;
    let url = daemon.url("bench.git");

    // Warm the server's page cache once for both sides.
    git_clone(&url, &dir.path().join("warmup"))?;

    let headway_bin = build_headway(paths, true)?;
    let mut headway = Vec::new();
    let mut git_times = Vec::new();
    let mut last = String::new();
    for i in 0..params.runs {
        // Alternate so that neither side always runs on a warmer machine.
        let cache_dir = dir.path().join(format!("headway-{i}"));
        let t = Instant::now();
        let out = Command::new(&headway_bin)
            .args(["fetch", "--repo", &url, "--ref", "main", "--git-cache"])
            .arg(&cache_dir)
            .output()
            .context("run headway fetch")?;
        headway.push(t.elapsed());
        ensure!(
            out.status.success(),
            "headway fetch failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        std::fs::remove_dir_all(&cache_dir)?;

        let clone_dir = dir.path().join(format!("git-{i}"));
        let t = Instant::now();
        git_clone(&url, &clone_dir)?;
        git_times.push(t.elapsed());
        std::fs::remove_dir_all(&clone_dir)?;
    }
    let h = median(&mut headway);
    let g = median(&mut git_times);
    let stats = last.lines().find(|l| l.starts_with("files ")).unwrap_or("");
    println!("depth-1 fetch: {stats}");
    println!(
        "headway fetch (cold cache):    median {h:.3?} over {} runs {headway:.3?}",
        params.runs
    );
    println!(
        "git clone --depth 1:           median {g:.3?} over {} runs {git_times:.3?}",
        params.runs
    );
    let ratio = h.as_secs_f64() / g.as_secs_f64();
    println!(
        "ratio headway/git: {ratio:.2}x (target <= 1.2x){}",
        if ratio <= 1.2 { "" } else { "  ABOVE TARGET" }
    );
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn dir_size(path: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn git_clone(url: &str, dest: &Path) -> anyhow::Result<()> {
    let out = Command::new("git")
        .args(["clone", "-q", "--depth", "1", url])
        .arg(dest)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .context("run git clone")?;
    if !out.status.success() {
        bail!("git clone failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A small deterministic generator (xorshift64*), so every run builds the same repository.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn word(&mut self, out: &mut String, len: usize) {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
        for _ in 0..len {
            out.push(ALPHABET[(self.next() % ALPHABET.len() as u64) as usize] as char);
        }
    }

    /// A YAML-ish file of about `size` bytes.
    fn file(&mut self, size: usize) -> String {
        let mut s = String::with_capacity(size + 64);
        let mut n = 0;
        while s.len() < size {
            let _ = write!(s, "key-{n}: ");
            self.word(&mut s, 40);
            s.push('\n');
            n += 1;
        }
        s
    }
}

/// Writes the history through `git fast-import`; returns the stream's size.
///
/// One file in ten is "hot" (4 KiB, one or two changed per commit); the others are "cold"
/// (about 120 KiB, one rewritten every 50 commits).
fn fast_import(bare: &Path, params: Params) -> anyhow::Result<u64> {
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(bare)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("start git fast-import")?;
    let mut stdin = std::io::BufWriter::new(child.stdin.take().context("stdin")?);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let hot = (params.files / 10).max(1);
    let path = |i: usize| {
        if i < hot {
            format!("hot/app-{i:03}.yaml")
        } else {
            format!("cold/{:02}/manifest-{i:04}.yaml", i % 20)
        }
    };
    let mut written = 0u64;
    let mut emit = |w: &mut dyn std::io::Write, s: &str| -> std::io::Result<()> {
        written += s.len() as u64;
        w.write_all(s.as_bytes())
    };
    for c in 0..params.commits {
        let message = format!("commit {c}\n");
        let mut head = format!(
            "commit refs/heads/main\nmark :{}\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{}",
            c + 1,
            1_700_000_000 + c as u64 * 60,
            message.len(),
            message
        );
        if c > 0 {
            let _ = writeln!(head, "from :{c}");
        }
        emit(&mut stdin, &head)?;
        let changed: Vec<usize> = if c == 0 {
            (0..params.files).collect()
        } else {
            let mut v = vec![(rng.next() as usize) % hot, (rng.next() as usize) % hot];
            if c % 50 == 0 {
                v.push(hot + (rng.next() as usize) % (params.files - hot));
            }
            v
        };
        for i in changed {
            let content = rng.file(if i < hot { 4 * 1024 } else { 120 * 1024 });
            let cmd = format!("M 100644 inline {}\ndata {}\n", path(i), content.len());
            emit(&mut stdin, &cmd)?;
            emit(&mut stdin, &content)?;
            emit(&mut stdin, "\n")?;
        }
    }
    stdin.flush()?;
    drop(stdin);
    let status = child.wait()?;
    ensure!(status.success(), "git fast-import failed: {status}");
    Ok(written)
}
