//! Git for xtask's benchmarks and demo: running `git` with no user or system configuration and a
//! fixed identity, and a `git daemon` on a free port of 127.0.0.1, killed on drop and when xtask
//! ends in any way (its process group, through [`Guarded`]).

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use headway_tests::process::Guarded;

/// Runs `git ARGS` in `dir`; fails with git's stderr.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Headway xtask")
        .env("GIT_AUTHOR_EMAIL", "xtask@example.com")
        .env("GIT_COMMITTER_NAME", "Headway xtask")
        .env("GIT_COMMITTER_EMAIL", "xtask@example.com")
        .output()
        .with_context(|| format!("run git {args:?}"))?;
    ensure!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Creates the work tree `work` and the bare repository `bare` it pushes to, both on `main`.
pub fn init_pair(work: &Path, bare: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(work)?;
    std::fs::create_dir_all(bare)?;
    git(bare, &["init", "-q", "--bare", "-b", "main"])?;
    git(work, &["init", "-q", "-b", "main"])
}

/// Commits everything in `work` and pushes `main` to `bare`.
pub fn commit_all(work: &Path, bare: &Path, message: &str) -> anyhow::Result<()> {
    git(work, &["add", "-A"])?;
    git(work, &["commit", "-q", "-m", message])?;
    let bare = bare
        .to_str()
        .context("the bare repository's path is not UTF-8")?;
    git(work, &["push", "-q", bare, "main"])
}

/// `git daemon` exporting every repository under a directory; killed on drop unless kept.
pub struct GitDaemon {
    child: Option<Guarded>,
    pub port: u16,
}

impl GitDaemon {
    /// Starts it on a free port and returns once it accepts connections.
    pub fn start(base: &Path) -> anyhow::Result<Self> {
        Self::start_logged(base, None)
    }

    /// The same, with `--verbose` and its log written to `log` (one `Request upload-pack`
    /// line per fetch served).
    pub fn start_logged(base: &Path, log: Option<&Path>) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new("git");
        command
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        match log {
            Some(log) => {
                command
                    .arg("--verbose")
                    .stderr(std::fs::File::create(log).context("create the git daemon log")?);
            }
            None => {
                command.stderr(Stdio::null());
            }
        }
        command.arg(base);
        let child =
            Guarded::spawn(&mut command).context("start git daemon (Debian package git)")?;
        let mut daemon = GitDaemon {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = daemon
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("git daemon exited: {status}");
            }
            ensure!(
                Instant::now() < deadline,
                "git daemon not listening on {port} after 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(daemon)
    }

    /// The URL of the repository `name` (a directory under the base, e.g. `shop.git`).
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }

    /// Leaves the daemon running after this value is dropped; returns its PID.
    pub fn keep(mut self) -> u32 {
        self.child.take().map(Guarded::detach).unwrap_or_default()
    }
}
