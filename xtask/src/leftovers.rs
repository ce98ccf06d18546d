//! Processes a `cargo xtask test` run left behind: every process it starts carries the run's
//! marker in its environment ([`RUN_MARKER_ENV`], inherited by the test binaries and the servers,
//! controllers and tools they start); servers and `headway` processes started during the run
//! whose command line or working directory points into the workspace count too (in case one
//! was started with a cleared environment). Read from `/proc`; zombies do not count.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use headway_tests::process::RUN_MARKER_ENV;

/// Program names that count as left behind when they point into the workspace.
const WATCHED: [&str; 6] = [
    "git",
    "git-daemon",
    "sshd",
    "sshd-session",
    "lighttpd",
    "headway",
];

/// One process still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: u32,
    pub args: String,
    pub cwd: Option<PathBuf>,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}: {}", self.pid, self.args)?;
        if let Some(cwd) = &self.cwd {
            write!(f, " (cwd {})", cwd.display())?;
        }
        Ok(())
    }
}

/// What a run looks for: its marker, the workspace, and when it started (clock ticks since boot,
/// as in `/proc/PID/stat`).
#[derive(Debug, Clone)]
pub struct Run {
    pub marker: String,
    pub root: PathBuf,
    pub started: u64,
}

impl Run {
    /// A new run, starting now.
    pub fn new(root: &Path) -> Run {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Run {
            marker: format!("{}-{nanos}", std::process::id()),
            root: root.to_path_buf(),
            started: stat(std::process::id())
                .map(|s| s.start)
                .unwrap_or_default(),
        }
    }

    /// The processes of this run still running now.
    pub fn leftovers(&self) -> Vec<Leftover> {
        let me = std::process::id();
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Some(stat) = stat(pid) else { continue };
            if matches!(stat.state, 'Z' | 'X') || stat.start < self.started {
                continue;
            }
            let dir = entry.path();
            let args: Vec<String> = std::fs::read(dir.join("cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let cwd = std::fs::read_link(dir.join("cwd")).ok();
            let marked = std::fs::read(dir.join("environ"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .any(|v| v == format!("{RUN_MARKER_ENV}={}", self.marker).as_bytes());
            let program = args
                .first()
                .and_then(|a| Path::new(a).file_name())
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let watched = (WATCHED.contains(&program) || WATCHED.contains(&stat.comm.as_str()))
                && (args
                    .iter()
                    .any(|a| a.contains(self.root.to_str().unwrap_or("\0")))
                    || cwd.as_ref().is_some_and(|c| c.starts_with(&self.root)));
            if marked || watched {
                found.push(Leftover {
                    pid,
                    args: args.join(" "),
                    cwd,
                });
            }
        }
        found.sort_by_key(|l| l.pid);
        found
    }

    /// Waits up to `grace` for the run's processes to be gone (watchdogs kill server groups a
    /// moment after their test binary exits); returns those still running.
    pub fn wait_for_none(&self, grace: Duration) -> Vec<Leftover> {
        let deadline = Instant::now() + grace;
        loop {
            let left = self.leftovers();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

struct Stat {
    comm: String,
    state: char,
    start: u64,
}

/// `/proc/PID/stat`: the name, the state and the start time.
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the file, starttime field 22.
    Some(Stat {
        comm,
        state: fields.first()?.chars().next()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use headway_tests::process::Guarded;
    use std::process::{Command, Stdio};

    fn pids(left: &[Leftover]) -> Vec<u32> {
        left.iter().map(|l| l.pid).collect()
    }

    #[test]
    fn a_process_of_the_run_is_found_until_it_ends() {
        let root = tempfile::tempdir().unwrap();
        let run = Run::new(root.path());
        // Guarded: killed even when an assertion fails.
        let marked = Guarded::spawn(
            Command::new("sleep")
                .arg("60")
                .env(RUN_MARKER_ENV, &run.marker)
                .stdin(Stdio::null()),
        )
        .unwrap();
        let other = Guarded::spawn(
            Command::new("sleep")
                .arg("60")
                .env(RUN_MARKER_ENV, "another-run"),
        )
        .unwrap();
        // A server started with a cleared environment, working in the workspace.
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/sleep", bin.join("git-daemon")).unwrap();
        let server = Guarded::spawn(
            Command::new(bin.join("git-daemon"))
                .arg("60")
                .env_clear()
                .current_dir(root.path()),
        )
        .unwrap();
        // Right after exec, /proc/PID/cmdline may still be empty: wait until it is not.
        let deadline = Instant::now() + Duration::from_secs(30);
        let left = loop {
            let left = run.leftovers();
            if left
                .iter()
                .any(|l| l.pid == server.id() && !l.args.is_empty())
                || Instant::now() > deadline
            {
                break left;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(pids(&left).contains(&marked.id()), "{left:?}");
        assert!(pids(&left).contains(&server.id()), "{left:?}");
        assert!(!pids(&left).contains(&other.id()), "{left:?}");
        let line = left
            .iter()
            .find(|l| l.pid == server.id())
            .unwrap()
            .to_string();
        assert!(line.contains("git-daemon 60 (cwd "), "{line}");

        drop((marked, server, other));
        assert_eq!(run.wait_for_none(Duration::from_secs(30)), []);
    }

    #[test]
    fn processes_started_before_the_run_do_not_count() {
        let root = tempfile::tempdir().unwrap();
        let before =
            Guarded::spawn(Command::new("sleep").arg("60").env(RUN_MARKER_ENV, "x")).unwrap();
        // Clock ticks are 10 ms: start the run clearly later.
        std::thread::sleep(Duration::from_millis(50));
        let mut run = Run::new(root.path());
        run.marker = "x".into();
        run.started = stat(std::process::id())
            .unwrap()
            .start
            .max(stat(before.id()).unwrap().start + 1);
        assert!(!pids(&run.leftovers()).contains(&before.id()));
    }
}
