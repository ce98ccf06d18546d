//! `headway controller` as a child process, as tests, benchmarks and the demo start it: one
//! builder for the flags every such process needs (its own namespace and Lease, its own cache
//! directory, an HTTP API on an ephemeral loopback port so that several can run at once), its log
//! in a file, and the questions asked of it (the log, its ERROR lines, the address its API bound).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::process::Guarded;

/// How to start one `headway controller` process.
#[derive(Debug, Clone)]
pub struct ControllerSpec {
    binary: PathBuf,
    dir: PathBuf,
    identity: String,
    namespace: Option<String>,
    lease_namespace: Option<String>,
    kubeconfig: Option<PathBuf>,
    http_address: String,
    log_level: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl ControllerSpec {
    /// The `headway` binary at `binary`, identity `identity`; its log and cache go in `dir`.
    ///
    /// Defaults: every namespace watched, the Lease in the kubeconfig's namespace, the HTTP API on
    /// `127.0.0.1:0` (several controllers on one machine must never fight over `:8080`), log
    /// level `info`.
    pub fn new(binary: impl Into<PathBuf>, dir: &Path, identity: &str) -> ControllerSpec {
        ControllerSpec {
            binary: binary.into(),
            dir: dir.to_path_buf(),
            identity: identity.to_string(),
            namespace: None,
            lease_namespace: None,
            kubeconfig: None,
            http_address: "127.0.0.1:0".to_string(),
            log_level: "info".to_string(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Watch only `ns`, and keep the Lease there too.
    pub fn namespace(mut self, ns: &str) -> ControllerSpec {
        self.namespace = Some(ns.to_string());
        self.lease_namespace = Some(ns.to_string());
        self
    }

    /// `--kubeconfig FILE` (a proxied API server, another identity).
    pub fn kubeconfig(mut self, file: &Path) -> ControllerSpec {
        self.kubeconfig = Some(file.to_path_buf());
        self
    }

    /// `--http-address ADDR` instead of an ephemeral loopback port.
    pub fn http_address(mut self, address: SocketAddr) -> ControllerSpec {
        self.http_address = address.to_string();
        self
    }

    /// `RUST_LOG` (default `info`).
    pub fn log_level(mut self, level: &str) -> ControllerSpec {
        self.log_level = level.to_string();
        self
    }

    /// `--lease-duration SECONDS`.
    pub fn lease_seconds(self, seconds: u64) -> ControllerSpec {
        self.args(["--lease-duration", &seconds.to_string()])
    }

    /// More arguments after `controller`.
    pub fn args<I, S>(mut self, args: I) -> ControllerSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable of the process.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> ControllerSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The log file: `<dir>/<identity>.log`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.identity))
    }

    /// The command this spec runs (for a caller that must run it in another way).
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        if let Some(kubeconfig) = &self.kubeconfig {
            command.arg("--kubeconfig").arg(kubeconfig);
        }
        command.arg("controller");
        if let Some(ns) = &self.namespace {
            command.args(["--namespace", ns]);
        }
        if let Some(ns) = &self.lease_namespace {
            command.args(["--lease-namespace", ns]);
        }
        command
            .args(["--identity", &self.identity])
            .args(["--http-address", &self.http_address])
            .arg("--cache-dir")
            .arg(self.dir.join(format!("cache-{}", self.identity)))
            .args(&self.args)
            .env("RUST_LOG", &self.log_level)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Starts the process; its output is appended to [`ControllerSpec::log_path`] (a restart
    /// of the same identity keeps the earlier lines).
    pub fn start(&self) -> anyhow::Result<ControllerProcess> {
        let log = self.log_path();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = Guarded::spawn(
            self.command()
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file),
        )
        .with_context(|| format!("starting headway controller ({})", self.binary.display()))?;
        Ok(ControllerProcess {
            child,
            log,
            identity: self.identity.clone(),
        })
    }
}

/// A running `headway controller`; killed with everything it started on drop, and when the
/// process that started it ends.
#[derive(Debug)]
pub struct ControllerProcess {
    child: Guarded,
    log: PathBuf,
    identity: String,
}

impl ControllerProcess {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its identity (`--identity`).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The ERROR lines it logged so far.
    pub fn error_lines(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("\"level\":\"ERROR\""))
            .map(str::to_string)
            .collect()
    }

    /// Its exit status if it has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// An error with its log when it has exited (for loops that wait on something it should do).
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "headway controller {} exited with {status}:\n{}",
                self.identity,
                self.log_text()
            );
        }
        Ok(())
    }

    /// SIGKILL, with everything it started: no chance to release the Lease or finish anything.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGTERM, then waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM {} failed", self.child.id());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?} after SIGTERM:\n{}",
                self.identity,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The address its HTTP API bound, read from its log line "HTTP API listening"; waits up
    /// to `timeout` for the line.
    pub fn http_address(&mut self, timeout: Duration) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(address) = listening_address(&self.log_text()) {
                return Ok(address);
            }
            self.ensure_running()?;
            ensure!(
                Instant::now() < deadline,
                "{} logged no \"HTTP API listening\" line within {timeout:?}:\n{}",
                self.identity,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `address` field of the first JSON log line (the controller logs flattened events) whose
/// message is "HTTP API listening".
fn listening_address(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|v| v["message"].as_str() == Some("HTTP API listening"))
        .and_then(|v| v["address"].as_str().and_then(|a| a.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_address_is_read_from_the_json_log() {
        let log = concat!(
            "not json\n",
            r#"{"level":"INFO","message":"starting"}"#,
            "\n",
            r#"{"level":"INFO","message":"HTTP API listening","address":"127.0.0.1:41234"}"#,
            "\n",
        );
        assert_eq!(
            listening_address(log),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        assert_eq!(listening_address("{\"message\":\"x\"}"), None);
    }

    #[test]
    fn the_command_has_an_ephemeral_api_port_and_its_own_cache() {
        let spec = ControllerSpec::new("/bin/headway", Path::new("/d"), "a")
            .namespace("ns")
            .lease_seconds(6);
        let args: Vec<String> = spec
            .command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "controller",
                "--namespace",
                "ns",
                "--lease-namespace",
                "ns",
                "--identity",
                "a",
                "--http-address",
                "127.0.0.1:0",
                "--cache-dir",
                "/d/cache-a",
                "--lease-duration",
                "6"
            ]
        );
    }
}
