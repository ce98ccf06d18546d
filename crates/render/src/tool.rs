//! Running kustomize, kubectl and helm as child processes: a clean environment, a private
//! temporary home, no network (best effort), a timeout that kills the process group, and capped
//! output.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::error::RenderError;
use crate::options::ToolOptions;

/// The proxy every renderer is given: a closed local port, so that nothing is fetched.
const NO_NETWORK_PROXY: &str = "http://127.0.0.1:9";
/// Said after a renderer's error when it tried the network anyway.
const NO_NETWORK_HINT: &str = "\n(renderers get no network: a URL in a kustomization (a remote base or \
     resource) is not fetched; vendor it into the repository, as a GitSync renders what git holds)";

/// How much of a tool's standard error is kept for the error message (its tail).
const STDERR_KEEP: usize = 16 * 1024;

/// The `PATH` tools are found in and run with.
pub(crate) fn search_path(tools: &ToolOptions) -> OsString {
    tools
        .path
        .clone()
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default()
}

/// Finds `program` in the directories of `path` (a `PATH` value).
pub(crate) fn which(program: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// One tool invocation.
pub(crate) struct Invocation<'a> {
    pub tool: &'static str,
    pub program: &'a Path,
    pub args: Vec<OsString>,
    pub cwd: &'a Path,
    pub timeout: Duration,
    pub max_output: u64,
    /// `PATH` for the child.
    pub path: OsString,
}

impl Invocation<'_> {
    /// The command line for messages; the (often hundreds of) `--api-versions` values are
    /// counted, not listed.
    fn command_line(&self) -> String {
        let mut s = self.program.file_name().map_or_else(
            || self.program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut api_versions = 0;
        let mut args = self.args.iter();
        while let Some(a) = args.next() {
            if a == "--api-versions" {
                api_versions += 1;
                args.next();
                continue;
            }
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        if api_versions > 0 {
            s.push_str(&format!(" --api-versions ({api_versions} values)"));
        }
        s
    }

    /// Runs the tool and returns its standard output.
    pub(crate) fn run(&self) -> Result<String, RenderError> {
        let command = self.command_line();
        let home = tempfile::Builder::new()
            .prefix("headway-render-")
            .tempdir()
            .map_err(|source| RenderError::ToolSpawn {
                tool: self.tool,
                program: self.program.to_path_buf(),
                source,
            })?;
        let h = home.path();
        let mut cmd = Command::new(self.program);
        cmd.args(&self.args)
            .current_dir(self.cwd)
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", h)
            .env("TMPDIR", h)
            .env("XDG_CACHE_HOME", h.join("cache"))
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env("HELM_CACHE_HOME", h.join("helm/cache"))
            .env("HELM_CONFIG_HOME", h.join("helm/config"))
            .env("HELM_DATA_HOME", h.join("helm/data"))
            .env("HELM_PLUGINS", h.join("helm/plugins"))
            .env("KUBECONFIG", "/dev/null")
            // No network: every HTTP(S) client in Go and git honours these, and the port is closed.
            .env("HTTP_PROXY", NO_NETWORK_PROXY)
            .env("HTTPS_PROXY", NO_NETWORK_PROXY)
            .env("ALL_PROXY", NO_NETWORK_PROXY)
            .env("http_proxy", NO_NETWORK_PROXY)
            .env("https_proxy", NO_NETWORK_PROXY)
            .env("NO_PROXY", "")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout kills whatever it started too.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| RenderError::ToolSpawn {
            tool: self.tool,
            program: self.program.to_path_buf(),
            source,
        })?;
        let (out_tx, out_rx) = mpsc::channel();
        let (err_tx, err_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let max = self.max_output;
        thread::spawn(move || {
            let mut buf = Vec::new();
            let r = stdout.take(max + 1).read_to_end(&mut buf);
            let _ = out_tx.send(r.map(|_| buf));
        });
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.take(4 * 1024 * 1024).read_to_end(&mut buf);
            let _ = err_tx.send(buf);
        });

        let deadline = Instant::now() + self.timeout;
        let mut stdout_buf: Option<std::io::Result<Vec<u8>>> = None;
        let status = loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                break Some(status);
            }
            if stdout_buf.is_none()
                && let Ok(r) = out_rx.try_recv()
            {
                let too_large = matches!(&r, Ok(b) if b.len() as u64 > max);
                stdout_buf = Some(r);
                if too_large {
                    kill(&mut child);
                    return Err(RenderError::ToolOutputTooLarge {
                        command,
                        limit: max,
                    });
                }
            }
            let now = Instant::now();
            if now >= deadline {
                break None;
            }
            thread::sleep((deadline - now).min(Duration::from_millis(5)));
        };
        let Some(status) = status else {
            kill(&mut child);
            let stderr = err_rx
                .recv_timeout(Duration::from_secs(1))
                .unwrap_or_default();
            return Err(RenderError::ToolTimedOut {
                command,
                timeout: self.timeout,
                stderr: tail(&stderr),
            });
        };
        // The tool exited; its pipes close unless it left children behind (then give up on them).
        let stdout = match stdout_buf {
            Some(r) => r,
            None => out_rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| Ok(Vec::new())),
        };
        let stderr = err_rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        if !status.success() {
            let mut stderr = tail(&stderr);
            if stderr.contains(NO_NETWORK_PROXY.trim_start_matches("http://")) {
                stderr.push_str(NO_NETWORK_HINT);
            }
            return Err(RenderError::ToolFailed {
                command,
                status: describe(status),
                stderr,
            });
        }
        let stdout = stdout.map_err(|source| RenderError::Io {
            file: format!("{} output", self.tool),
            source,
        })?;
        if stdout.len() as u64 > max {
            return Err(RenderError::ToolOutputTooLarge {
                command,
                limit: max,
            });
        }
        String::from_utf8(stdout).map_err(|_| RenderError::NotUtf8 {
            file: format!("{} output", self.tool),
        })
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Kills the child and its process group, and reaps it.
fn kill(child: &mut Child) {
    kill_group(child);
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL to the child's whole process group (the child leads it: `process_group(0)`), so
/// whatever the tool started dies with it. A library call (`killpg(2)` through rustix), not the
/// `kill` program, which a minimal image may lack. Only called while the child is not yet
/// reaped, so its pid (the group id) cannot have been reused; the only possible error is a group
/// already gone (`ESRCH`), which is what we want.
fn kill_group(child: &Child) {
    let _ = kill_process_group(Pid::from_child(child), Signal::KILL);
}

/// The tail of a tool's standard error, as text.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.len() <= STDERR_KEEP {
        return text.to_string();
    }
    let mut start = text.len() - STDERR_KEEP;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]{}", &text[start..])
}
