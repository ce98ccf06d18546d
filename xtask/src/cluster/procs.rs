//! A cluster's processes found without their PID files: every component runs one of the
//! component binaries and names a file of its state directory on its command line (etcd's data
//! dir, the apiserver's certificates, the others' kubeconfig), so `/proc` tells which processes
//! belong to which state directory, and two clusters side by side are never mixed up.

use std::path::{Path, PathBuf};

/// A running process of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The component (the binary's file name).
    pub name: &'static str,
    pub pid: u32,
    /// The binary it runs, as `/proc/PID/exe` shows it (without a " (deleted)" suffix).
    pub exe: PathBuf,
}

/// The processes running one of the binaries `names` whose command line names `state` or a
/// path inside it (compared path component by path component: `/x/cluster` does not match
/// `/x/cluster2`). Zombies and this process are left out.
pub fn of_state_dir(state: &Path, names: &[&'static str]) -> Vec<Found> {
    let forms = state_forms(state);
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = entry.path();
        let Ok(link) = std::fs::read_link(dir.join("exe")) else {
            continue;
        };
        let exe = PathBuf::from(
            link.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string(),
        );
        let Some(name) = exe
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| names.iter().copied().find(|c| *c == n))
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let cwd = std::fs::read_link(dir.join("cwd")).ok();
        let names_state = cmdline
            .split(|b| *b == 0)
            .map(String::from_utf8_lossy)
            .any(|arg| names_path_in(&arg, cwd.as_deref(), &forms));
        if names_state && super::is_alive(pid, &exe) {
            found.push(Found { name, pid, exe });
        }
    }
    found.sort_by_key(|f| f.pid);
    found
}

/// `state` as an absolute path, and its canonical form when it exists (a symlinked temp dir).
fn state_forms(state: &Path) -> Vec<PathBuf> {
    let absolute = std::path::absolute(state).unwrap_or_else(|_| state.to_path_buf());
    let mut forms = vec![absolute];
    if let Ok(canonical) = state.canonicalize()
        && !forms.contains(&canonical)
    {
        forms.push(canonical);
    }
    forms
}

/// Whether the argument `arg` (`--flag=PATH` or `PATH`; a relative path is taken from the
/// process's `cwd`) is one of `forms` or inside one.
fn names_path_in(arg: &str, cwd: Option<&Path>, forms: &[PathBuf]) -> bool {
    let value = match arg.split_once('=') {
        Some((flag, value)) if flag.starts_with('-') => value,
        _ => arg,
    };
    if value.is_empty() {
        return false;
    }
    let path = Path::new(value);
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match cwd {
            Some(cwd) => cwd.join(path),
            None => return false,
        }
    };
    forms.iter().any(|f| path.starts_with(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Cluster, Options};
    use headway_tests::process::Guarded;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// `tail -f FILE...` under the name `name` (a copy of the binary in `bin`): a process that
    /// runs until signalled and whose command line names files.
    fn fake(bin: &Path, name: &str, cwd: &Path, files: &[&Path]) -> Guarded {
        let exe = bin.join(name);
        if !exe.exists() {
            let tail = ["/usr/bin/tail", "/bin/tail"]
                .into_iter()
                .find(|p| Path::new(p).exists())
                .expect("tail");
            std::fs::copy(tail, &exe).unwrap();
        }
        Guarded::spawn(
            Command::new(&exe)
                .arg("-f")
                .args(files)
                .current_dir(cwd)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap()
    }

    #[test]
    fn down_stops_the_processes_of_its_state_dir_without_pid_files_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        let state = root.path().join("cluster");
        let other = root.path().join("cluster2");
        for d in [
            &bin,
            &state.join("pids"),
            &state.join("etcd"),
            &other.join("etcd"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        let data = state.join("etcd/data");
        let other_data = other.join("etcd/data");
        std::fs::write(&data, "").unwrap();
        std::fs::write(&other_data, "").unwrap();

        let mut etcd = fake(&bin, "etcd", root.path(), &[&data]);
        // A relative path, from the process's working directory.
        let mut apiserver = fake(
            &bin,
            "kube-apiserver",
            root.path(),
            &[Path::new("cluster/etcd/data")],
        );
        // Another cluster's etcd, and a process of no component naming this state dir.
        let mut other_etcd = fake(&bin, "etcd", root.path(), &[&other_data]);
        let mut not_a_component = fake(&bin, "tail", root.path(), &[&data]);
        // A stale PID file pointing at the other cluster's etcd (as a recycled PID would).
        std::fs::write(
            state.join("pids/kwok.pid"),
            format!("{}\n{}\n", other_etcd.id(), bin.join("kwok").display()),
        )
        .unwrap();
        // Right after the fork, /proc shows the parent's binary: wait for the exec.
        let execed = |g: &Guarded| {
            std::fs::read_link(format!("/proc/{}/exe", g.id())).is_ok_and(|l| l.starts_with(&bin))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ![&etcd, &apiserver, &other_etcd, &not_a_component]
            .iter()
            .all(|g| execed(g))
        {
            assert!(
                Instant::now() < deadline,
                "the fake components did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let found: Vec<(&str, u32)> = of_state_dir(&state, &crate::cluster::COMPONENTS)
            .iter()
            .map(|f| (f.name, f.pid))
            .collect();
        let mut expected = vec![("etcd", etcd.id()), ("kube-apiserver", apiserver.id())];
        expected.sort_by_key(|e| e.1);
        assert_eq!(found, expected);

        let cluster = Cluster::new(&Options {
            state_dir: Some(state.clone()),
            port_base: 1,
        });
        cluster.down().unwrap();
        // `down` returns once they are gone; only the reaping (their parent is this test) may
        // lag behind.
        let reaped = |g: &mut Guarded| {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if g.try_wait().unwrap().is_some() {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        assert!(reaped(&mut etcd), "etcd still runs");
        assert!(reaped(&mut apiserver), "kube-apiserver still runs");
        assert!(
            other_etcd.try_wait().unwrap().is_none(),
            "another cluster's etcd was stopped"
        );
        assert!(
            not_a_component.try_wait().unwrap().is_none(),
            "a process of no component was stopped"
        );
        assert!(!state.exists(), "the state directory was removed");
    }

    #[test]
    fn a_path_argument_matches_its_state_dir_only() {
        let forms = [PathBuf::from("/x/cluster")];
        let check = |arg: &str, cwd: Option<&str>| names_path_in(arg, cwd.map(Path::new), &forms);
        assert!(check("--data-dir=/x/cluster/etcd", None));
        assert!(check("--kubeconfig=/x/cluster/kubeconfig", None));
        assert!(check("/x/cluster", None));
        assert!(check("--config=cluster/kwok.yaml", Some("/x")));
        assert!(!check("--data-dir=/x/cluster2/etcd", None));
        assert!(!check("--data-dir=/x/clusterish", None));
        assert!(!check("--config=cluster/kwok.yaml", None));
        assert!(!check("--config=cluster/kwok.yaml", Some("/y")));
        assert!(!check("--secure-port=16443", None));
        assert!(!check("", None));
    }
}
