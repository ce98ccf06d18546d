//! Child processes that cannot outlive the process that started them: servers and controllers
//! started by tests, benchmarks and the demo.
//!
//! A child is not killed when its parent exits, and a value held in a `static` (or leaked, or
//! left behind by `process::exit` or an abort) is never dropped, so a `Drop` guard alone leaves
//! processes behind. [`Guarded::spawn`] starts the command in a process group of its own and,
//! in the same group, a watchdog (`sh` blocked on reading a pipe whose only writer is this
//! process). When this process ends in any way (return, panic, `exit`, abort, SIGKILL) the
//! kernel closes the pipe, the watchdog reads end-of-file and kills the whole group, including
//! what the command forked (`git daemon` runs `git-daemon` as a child, lighttpd its CGI
//! programs). Dropping the guard does the same at once and reaps the command.
//!
//! No `unsafe` (no `pre_exec`, so no `PR_SET_PDEATHSIG`): process groups and a pipe suffice.

use std::io;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

/// What runs as the watchdog: waits for end-of-file on stdin, then kills the process group
/// given as `$1` (dash's `kill` takes `-9 -PGID`, not `--`).
const WATCHDOG: &str = "read -r _ || :; kill -9 -\"$1\"";

/// The environment variable that marks every process a `cargo xtask test` run starts (the run's
/// id); inherited by the test binaries and everything they start, so leftovers can be found.
pub const RUN_MARKER_ENV: &str = "HEADWAY_TEST_RUN";

/// A child process in a process group of its own, killed with everything it started when the
/// guard is dropped or when this process ends.
#[derive(Debug)]
pub struct Guarded {
    child: Child,
    watchdog: Option<(Child, ChildStdin)>,
}

impl Guarded {
    /// Spawns `command` as the leader of a new process group, with a watchdog in that group.
    pub fn spawn(command: &mut Command) -> io::Result<Guarded> {
        use std::os::unix::process::CommandExt as _;
        let mut child = command.process_group(0).spawn()?;
        let pgid = child.id();
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "headway-watchdog"])
            .arg(pgid.to_string())
            .process_group(i32::try_from(pgid).unwrap_or(0))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match watchdog {
            Ok(mut watchdog) => {
                let stdin = watchdog.stdin.take().expect("stdin is piped");
                Ok(Guarded {
                    child,
                    watchdog: Some((watchdog, stdin)),
                })
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::new(
                    e.kind(),
                    format!("starting the watchdog (sh): {e}"),
                ))
            }
        }
    }

    /// The command's process id (also its process group id).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The command's exit status if it has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// The child process itself (for its pipes, signals, waiting).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Kills the command and everything else in its process group now, and reaps them.
    pub fn kill(&mut self) {
        match self.watchdog.take() {
            Some((mut watchdog, stdin)) => {
                // End-of-file: the watchdog kills the group (the command is not reaped yet, so
                // its process group id cannot have been reused).
                drop(stdin);
                let _ = watchdog.wait();
            }
            None => {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }

    /// Leaves the command running after this guard is gone (e.g. `cargo xtask demo --keep`);
    /// returns its process id.
    pub fn detach(mut self) -> u32 {
        if let Some((mut watchdog, _stdin)) = self.watchdog.take() {
            // Killing the watchdog before closing its pipe keeps it from killing the group.
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let id = self.child.id();
        std::mem::forget(self);
        id
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `pid` runs: a zombie (exited, not yet reaped) or dead process does not.
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::{Duration, Instant};

    fn wait_gone(pids: &[u32]) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A shell that forks a grandchild and prints both pids.
    fn forking_command(out: &Path) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "sleep 300 & echo $$ $! > \"$1\"; wait",
            "forking",
            out.to_str().unwrap(),
        ]);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn read_pids(file: &Path) -> Vec<u32> {
        // Generous: the helper is this test binary started again, slow to load on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(file)
                && text.ends_with('\n')
            {
                return text
                    .split_whitespace()
                    .map(|p| p.parse().unwrap())
                    .collect();
            }
            assert!(Instant::now() < deadline, "no pids written to {file:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn dropping_the_guard_kills_the_command_and_what_it_forked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids");
        let guard = Guarded::spawn(&mut forking_command(&file)).unwrap();
        let pids = read_pids(&file);
        assert_eq!(pids[0], guard.id());
        assert!(pids.iter().all(|p| alive(*p)));
        drop(guard);
        assert_eq!(wait_gone(&pids), Vec::<u32>::new(), "left running");
    }

    /// The helper mode of the next test: starts a guarded command, prints its pids and leaves
    /// without dropping anything (as a `static` would), or is killed.
    #[test]
    fn helper_exits_without_dropping_its_guard() {
        let Some(file) = std::env::var_os("HEADWAY_GUARD_HELPER_FILE") else {
            return;
        };
        let file = Path::new(&file);
        let guard = Guarded::spawn(&mut forking_command(file)).unwrap();
        read_pids(file);
        std::mem::forget(guard);
        // Until the test has seen the processes running.
        while !file.with_extension("seen").exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::env::var_os("HEADWAY_GUARD_HELPER_HANG").is_some() {
            std::thread::sleep(Duration::from_secs(300));
        }
        std::process::exit(0);
    }

    #[test]
    fn the_group_dies_with_the_process_that_started_it() {
        for hang in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("pids");
            let mut helper = Command::new(std::env::current_exe().unwrap());
            helper
                .args([
                    "--exact",
                    "process::tests::helper_exits_without_dropping_its_guard",
                    "--nocapture",
                ])
                .env("HEADWAY_GUARD_HELPER_FILE", &file)
                .stdout(Stdio::null());
            if hang {
                helper.env("HEADWAY_GUARD_HELPER_HANG", "1");
            }
            let mut helper = helper.spawn().unwrap();
            let pids = read_pids(&file);
            assert!(pids.iter().all(|p| alive(*p)));
            std::fs::write(file.with_extension("seen"), "").unwrap();
            if hang {
                // SIGKILL: no destructor, no exit handler runs.
                helper.kill().unwrap();
            }
            helper.wait().unwrap();
            assert_eq!(
                wait_gone(&pids),
                Vec::<u32>::new(),
                "left running after the parent ended (hang: {hang})"
            );
        }
    }

    #[test]
    fn a_detached_command_keeps_running() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pids");
        let guard = Guarded::spawn(&mut forking_command(&file)).unwrap();
        let pids = read_pids(&file);
        let pid = guard.detach();
        std::thread::sleep(Duration::from_millis(200));
        assert!(pids.iter().all(|p| alive(*p)), "detached but killed");
        // Clean up by hand: the whole group.
        let _ = Command::new("sh")
            .args(["-c", "kill -9 -\"$1\"", "k", &pid.to_string()])
            .status();
        assert_eq!(wait_gone(&pids), Vec::<u32>::new());
    }
}
