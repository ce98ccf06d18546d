//! The test git servers leave nothing behind: stopping a server kills every process of its
//! process group (`git daemon` runs `git-daemon` as a child; sshd and lighttpd fork per
//! connection). Gated by `HEADWAY_GIT_TESTS=1`.

use std::time::{Duration, Instant};

use headway_tests::git::{Server, Upstream, enabled, git_daemon, http_server, ssh_server};

/// Running (not zombie) processes whose process group is `pgid`, as `pid name`.
fn group(pgid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // state, ppid, pgrp
        if fields.len() > 2 && fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X") {
            found.push(format!(
                "{} {}",
                entry.file_name().to_string_lossy(),
                head.split_once('(').map(|(_, n)| n).unwrap_or_default()
            ));
        }
    }
    found
}

fn stop_and_check(server: Server, expect: &[&str]) {
    let pgid = server.pid();
    let running = group(pgid);
    for name in expect {
        assert!(
            running.iter().any(|p| p.ends_with(&format!(" {name}"))),
            "{name} not in the server's group: {running:?}"
        );
    }
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = group(pgid);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left running after stop: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stopped_servers_leave_no_process() {
    if !enabled("stopped_servers_leave_no_process") {
        return;
    }
    let up = Upstream::new();
    up.write("a.yaml", "a: 1\n");
    up.commit("first");
    let (daemon, _) = git_daemon(&up);
    // The `git` wrapper and the `git-daemon` it runs (the one a plain kill of the child missed).
    stop_and_check(daemon, &["git", "git-daemon"]);
    let (http, _) = http_server(&up, &[("u", "p")]);
    stop_and_check(http, &["lighttpd"]);
    let ssh = ssh_server(&up);
    stop_and_check(ssh.server, &["sshd"]);
}
