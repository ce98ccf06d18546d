//! Fetches against real git servers on 127.0.0.1 (see `support`): git daemon, lighttpd with git
//! http-backend, sshd. Server tests run with `HEADWAY_GIT_TESTS=1`; the tests that need no
//! server binary (unreachable host, silent server, invalid sources) always run.

mod support;

use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use headway_source::{Auth, Cache, FetchOptions, GitRef, Limits, Secret, Source, SourceError};
use support::*;

fn new_cache() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache")).unwrap();
    (dir, cache)
}

fn opts() -> FetchOptions {
    FetchOptions {
        timeout: Duration::from_secs(60),
        ..FetchOptions::default()
    }
}

fn branch(url: &str, name: &str) -> Source {
    Source::new(url, GitRef::Branch(name.into()))
}

fn read(rev: &headway_source::Revision, path: &str) -> String {
    fs::read_to_string(rev.tree_dir.join(path)).unwrap()
}

/// An upstream with two commits on main, a lightweight tag on the first and an annotated tag on
/// the second. Returns (upstream, first sha, second sha).
fn two_commits() -> (Upstream, String, String) {
    let up = Upstream::new();
    up.write("app/deploy.yaml", "replicas: 1\n")
        .write("README.md", "hello\n");
    let first = up.commit("first");
    up.tag("v1", false);
    up.write("app/deploy.yaml", "replicas: 2\n")
        .symlink("app/current.yaml", "deploy.yaml")
        .write("bin/run.sh", "#!/bin/sh\n");
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(up.work.join("bin/run.sh"))
        .status()
        .unwrap();
    let second = up.commit("second\n\nwith a body");
    up.tag("v2", true);
    (up, first, second)
}

#[test]
fn git_daemon_branch_tag_and_commit() {
    if !enabled("git_daemon_branch_tag_and_commit") {
        return;
    }
    let (up, first, second) = two_commits();
    up.allow_sha_wants();
    let (_daemon, url) = git_daemon(&up);
    let (_d, cache) = new_cache();

    let rev = cache.fetch(&branch(&url, "main"), &opts()).unwrap();
    assert_eq!(rev.sha, second);
    assert_eq!(rev.author, "Ada Tester <ada@example.com>");
    assert_eq!(rev.message.trim_end(), "second\n\nwith a body");
    assert!(rev.time > 1_600_000_000);
    assert_eq!(read(&rev, "app/deploy.yaml"), "replicas: 2\n");
    assert_eq!(
        read(&rev, "app/current.yaml"),
        "replicas: 2\n",
        "internal symlink followed"
    );
    assert_eq!(rev.stats.files, 4);
    assert!(rev.stats.received_bytes > 0);
    assert!(rev.recovered_from.is_none());
    assert!(!rev.tree_dir.join(".git").exists());
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(rev.tree_dir.join("bin/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "executable bit kept");
    }

    let rev = cache
        .fetch(&Source::new(&url, GitRef::Tag("v1".into())), &opts())
        .unwrap();
    assert_eq!(rev.sha, first);
    assert_eq!(read(&rev, "app/deploy.yaml"), "replicas: 1\n");
    let rev = cache
        .fetch(&Source::new(&url, GitRef::Tag("v2".into())), &opts())
        .unwrap();
    assert_eq!(rev.sha, second, "annotated tag peeled to its commit");

    // A pinned commit, in a fresh cache so that it really comes from the server.
    let (_d2, cold) = new_cache();
    let pinned = Source::new(&url, GitRef::Commit(first.clone()));
    let rev = cold.fetch(&pinned, &opts()).unwrap();
    assert_eq!(rev.sha, first);
    assert_eq!(read(&rev, "README.md"), "hello\n");
    // Once cached, a pinned commit needs no server at all.
    drop(_daemon);
    let rev = cold.fetch(&pinned, &opts()).unwrap();
    assert_eq!(
        (rev.sha.as_str(), rev.stats.received_bytes),
        (first.as_str(), 0)
    );
}

#[test]
fn pinned_commit_when_server_refuses_fetch_by_id() {
    if !enabled("pinned_commit_when_server_refuses_fetch_by_id") {
        return;
    }
    let (up, first, _second) = two_commits();
    let (_daemon, url) = git_daemon(&up);
    let (_d, cache) = new_cache();
    // Make the cache shallow first, then ask for an older commit.
    cache.fetch(&branch(&url, "main"), &opts()).unwrap();
    let rev = cache
        .fetch(&Source::new(&url, GitRef::Commit(first.clone())), &opts())
        .unwrap();
    assert_eq!(rev.sha, first);
    assert_eq!(read(&rev, "app/deploy.yaml"), "replicas: 1\n");
}

#[test]
fn unknown_branch_tag_and_commit() {
    if !enabled("unknown_branch_tag_and_commit") {
        return;
    }
    let (up, _, _) = two_commits();
    up.allow_sha_wants();
    let (_daemon, url) = git_daemon(&up);
    let (_d, cache) = new_cache();
    for reference in [
        GitRef::Branch("nope".into()),
        GitRef::Tag("v9".into()),
        GitRef::Commit("0123456789abcdef0123456789abcdef01234567".into()),
    ] {
        let err = cache
            .fetch(&Source::new(&url, reference.clone()), &opts())
            .unwrap_err();
        assert!(
            matches!(&err, SourceError::UnknownRef { reference: r, .. } if *r == reference),
            "{reference}: {err:?}"
        );
        assert!(!err.is_transient());
        println!("{err}");
    }
    // A branch deleted upstream is unknown, even though the cache still has it.
    git(&up.work, &["push", "-q", "origin", "main:gone"]);
    cache.fetch(&branch(&url, "gone"), &opts()).unwrap();
    git(&up.work, &["push", "-q", "origin", ":gone"]);
    let err = cache.fetch(&branch(&url, "gone"), &opts()).unwrap_err();
    assert!(matches!(err, SourceError::UnknownRef { .. }), "{err:?}");
}

#[test]
fn incremental_fetch_after_new_commit() {
    if !enabled("incremental_fetch_after_new_commit") {
        return;
    }
    let up = Upstream::new();
    // Enough incompressible content that a full re-download would show.
    let big: String = (0..20_000u32)
        .map(|i| format!("{:08x}\n", i.wrapping_mul(2_654_435_761)))
        .collect();
    up.write("big.txt", &big).write("app.yaml", "v: 1\n");
    up.commit("one");
    let (_daemon, url) = git_daemon(&up);
    let (_d, cache) = new_cache();
    let first = cache.fetch(&branch(&url, "main"), &opts()).unwrap();

    let again = cache.fetch(&branch(&url, "main"), &opts()).unwrap();
    assert_eq!(again.sha, first.sha);
    assert_eq!(again.tree_dir, first.tree_dir);

    up.write("app.yaml", "v: 2\n");
    let new = up.commit("two");
    let second = cache.fetch(&branch(&url, "main"), &opts()).unwrap();
    assert_eq!(second.sha, new);
    assert_eq!(read(&second, "app.yaml"), "v: 2\n");
    assert!(
        second.stats.received_bytes < first.stats.received_bytes / 4,
        "incremental fetch received {} bytes, the first {}",
        second.stats.received_bytes,
        first.stats.received_bytes
    );
    assert!(
        first.tree_dir.exists(),
        "the previous tree is kept for its readers"
    );
}

#[test]
fn force_push_is_followed() {
    if !enabled("force_push_is_followed") {
        return;
    }
    let up = Upstream::new();
    up.write("a.yaml", "a: 1\n");
    up.commit("base");
    up.write("a.yaml", "a: 2\n");
    let before = up.commit("to be rewritten");
    let (_daemon, url) = git_daemon(&up);
    let (_d, cache) = new_cache();
    assert_eq!(
        cache.fetch(&branch(&url, "main"), &opts()).unwrap().sha,
        before
    );

    up.write("a.yaml", "a: 3\n");
    let after = up.amend_and_force_push("rewritten");
    assert_ne!(before, after);
    let rev = cache.fetch(&branch(&url, "main"), &opts()).unwrap();
    assert_eq!(rev.sha, after);
    assert_eq!(read(&rev, "a.yaml"), "a: 3\n");

    // And a history replaced wholesale (unrelated root commit).
    git(&up.work, &["checkout", "-q", "--orphan", "fresh"]);
    up.write("a.yaml", "a: 4\n");
    git(&up.work, &["add", "-A"]);
    git(&up.work, &["commit", "-q", "-m", "new root"]);
    git(&up.work, &["push", "-q", "--force", "origin", "fresh:main"]);
    let rev = cache.fetch(&branch(&url, "main"), &opts()).unwrap();
    assert_eq!(read(&rev, "a.yaml"), "a: 4\n");
}

#[test]
fn corrupted_cache_is_recovered() {
    if !enabled("corrupted_cache_is_recovered") {
        return;
    }
    let (up, _, second) = two_commits();
    let (_daemon, url) = git_daemon(&up);
    let (_d, cache) = new_cache();
    let source = branch(&url, "main");
    cache.fetch(&source, &opts()).unwrap();
    let repo = cache.entry_dir(&source).join("repo.git");
    fs::write(repo.join("config"), "[core\nthis is not a config").unwrap();
    fs::write(repo.join("HEAD"), "garbage").unwrap();
    let rev = cache.fetch(&source, &opts()).unwrap();
    assert_eq!(rev.sha, second);
    let why = rev.recovered_from.expect("recovery reported");
    println!("recovered from: {why}");

    // Objects gone from under the refs: a pinned commit is then missing and fetched again.
    let pinned = Source::new(&url, GitRef::Commit(second.clone()));
    up.allow_sha_wants();
    cache.fetch(&pinned, &opts()).unwrap();
    let repo = cache.entry_dir(&pinned).join("repo.git");
    for pack in fs::read_dir(repo.join("objects/pack")).unwrap().flatten() {
        fs::write(pack.path(), b"PACK truncated").unwrap();
    }
    fs::remove_dir_all(cache.entry_dir(&pinned).join("trees")).unwrap();
    let rev = cache.fetch(&pinned, &opts()).unwrap();
    assert_eq!(rev.sha, second);
    assert_eq!(read(&rev, "README.md"), "hello\n");
}

#[test]
fn symlink_escaping_the_checkout_is_refused() {
    if !enabled("symlink_escaping_the_checkout_is_refused") {
        return;
    }
    let up = Upstream::new();
    up.write("ok.yaml", "a: 1\n")
        .symlink("app/secrets.yaml", "../../../etc/passwd");
    up.commit("evil");
    let (_daemon, url) = git_daemon(&up);
    let (_d, cache) = new_cache();
    let err = cache.fetch(&branch(&url, "main"), &opts()).unwrap_err();
    match &err {
        SourceError::SymlinkEscape { path, target } => {
            assert_eq!(path, "app/secrets.yaml");
            assert_eq!(target, "../../../etc/passwd");
        }
        other => panic!("expected SymlinkEscape, got {other:?}"),
    }
    assert!(err.to_string().contains("app/secrets.yaml"), "{err}");

    // Through another symlink that looks harmless on its own.
    let up = Upstream::new();
    up.symlink("here", ".").symlink("sneaky", "here/../outside");
    up.commit("sneaky");
    let (_daemon, url) = git_daemon(&up);
    let err = cache.fetch(&branch(&url, "main"), &opts()).unwrap_err();
    assert!(
        matches!(&err, SourceError::SymlinkEscape { path, .. } if path == "sneaky"),
        "{err:?}"
    );
}

#[test]
fn size_and_file_count_limits() {
    if !enabled("size_and_file_count_limits") {
        return;
    }
    let up = Upstream::new();
    for i in 0..30 {
        up.write(&format!("f/{i}.txt"), &"x".repeat(1000 + i));
    }
    up.commit("thirty files");
    let (_daemon, url) = git_daemon(&up);
    let (_d, cache) = new_cache();
    let source = branch(&url, "main");

    let small = FetchOptions {
        limits: Limits {
            max_bytes: 10_000,
            max_files: 1000,
        },
        ..opts()
    };
    let err = cache.fetch(&source, &small).unwrap_err();
    assert!(
        matches!(err, SourceError::TooLarge { limit: 10_000, .. }),
        "{err:?}"
    );
    println!("{err}");

    let few = FetchOptions {
        limits: Limits {
            max_bytes: 1 << 30,
            max_files: 10,
        },
        ..opts()
    };
    let err = cache.fetch(&source, &few).unwrap_err();
    assert!(
        matches!(err, SourceError::TooManyFiles { limit: 10 }),
        "{err:?}"
    );
    println!("{err}");

    let trees = cache.entry_dir(&source).join("trees");
    assert_eq!(
        fs::read_dir(&trees).unwrap().count(),
        0,
        "nothing written for a refused tree"
    );
    let rev = cache.fetch(&source, &opts()).unwrap();
    assert_eq!(rev.stats.files, 30);
}

#[test]
fn http_basic_and_token_auth() {
    if !enabled("http_basic_and_token_auth") {
        return;
    }
    let (up, _, second) = two_commits();
    let (server, url) = http_server(
        &up,
        &[("alice", "s3cret-pw"), ("x-access-token", "tok-123456")],
    );
    let (_d, cache) = new_cache();

    let basic = |user: &str, pass: &str| {
        branch(&url, "main").with_auth(Auth::Basic {
            username: user.into(),
            password: Secret::new(pass),
        })
    };
    let rev = cache
        .fetch(&basic("alice", "s3cret-pw"), &opts())
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    assert_eq!(rev.sha, second);
    assert!(
        rev.warnings.iter().any(|w| w.contains("plain http")),
        "{:?}",
        rev.warnings
    );

    let rev = cache
        .fetch(
            &branch(&url, "main").with_auth(Auth::Token(Secret::new("tok-123456"))),
            &opts(),
        )
        .unwrap();
    assert_eq!(rev.sha, second);

    let wrong = basic("alice", "wrong-password");
    let err = cache.fetch(&wrong, &opts()).unwrap_err();
    assert!(matches!(err, SourceError::AuthFailed { .. }), "{err:?}");
    assert!(!err.is_transient());
    let text = format!("{err} {err:?} {wrong:?}");
    assert!(!text.contains("wrong-password"), "secret leaked: {text}");

    let err = cache.fetch(&branch(&url, "main"), &opts()).unwrap_err();
    assert!(matches!(err, SourceError::AuthFailed { .. }), "{err:?}");
    println!("{err}");

    // A password in the URL itself never shows either.
    let in_url = url.replace("http://", "http://alice:s3cret-pw@");
    let source = branch(&in_url, "nope");
    let err = cache.fetch(&source, &opts()).unwrap_err();
    let text = format!("{err} {err:?} {source:?}");
    assert!(!text.contains("s3cret-pw"), "secret leaked: {text}");
}

#[test]
fn ssh_key_auth_and_host_keys() {
    if !enabled("ssh_key_auth_and_host_keys") {
        return;
    }
    let (up, first, second) = two_commits();
    let ssh = ssh_server(&up);
    let (_d, cache) = new_cache();
    let auth = |key: &str, known_hosts: &str| Auth::Ssh {
        private_key: Secret::new(key),
        passphrase: None,
        known_hosts: known_hosts.into(),
    };
    let good = branch(&ssh.url, "main").with_auth(auth(&ssh.client.private, &ssh.known_hosts));
    let rev = cache
        .fetch(&good, &opts())
        .unwrap_or_else(|e| panic!("{e}\n{}", ssh.server.log_text()));
    assert_eq!(rev.sha, second);
    let rev = cache
        .fetch(
            &Source::new(&ssh.url, GitRef::Tag("v1".into()))
                .with_auth(auth(&ssh.client.private, &ssh.known_hosts)),
            &opts(),
        )
        .unwrap();
    assert_eq!(rev.sha, first);
    assert!(!format!("{good:?}").contains("PRIVATE KEY"));

    // A key the server does not know.
    let keys = tempfile::tempdir().unwrap();
    let stranger = keygen(keys.path(), "stranger");
    let err = cache
        .fetch(
            &branch(&ssh.url, "main").with_auth(auth(&stranger.private, &ssh.known_hosts)),
            &opts(),
        )
        .unwrap_err();
    assert!(matches!(err, SourceError::AuthFailed { .. }), "{err:?}");
    assert!(!format!("{err:?}").contains("PRIVATE KEY"));
    println!("{err}");

    // A host that is not in known_hosts.
    let other_host = format!("[127.0.0.1]:1 {}", ssh.host_key.public);
    let err = cache
        .fetch(
            &branch(&ssh.url, "main").with_auth(auth(&ssh.client.private, &other_host)),
            &opts(),
        )
        .unwrap_err();
    match &err {
        SourceError::HostKeyUnknown {
            host, fingerprint, ..
        } => {
            assert_eq!(*host, format!("[127.0.0.1]:{}", ssh.server.port));
            assert!(fingerprint.starts_with("SHA256:"));
        }
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
    println!("{err}");

    // The host is known with another key: the key changed.
    let impostor = keygen(keys.path(), "impostor");
    let changed = format!("[127.0.0.1]:{} {}", ssh.server.port, impostor.public);
    let err = cache
        .fetch(
            &branch(&ssh.url, "main").with_auth(auth(&ssh.client.private, &changed)),
            &opts(),
        )
        .unwrap_err();
    assert!(matches!(err, SourceError::HostKeyChanged { .. }), "{err:?}");
    assert!(err.to_string().contains("CHANGED"));
    println!("{err}");

    // The fingerprint is the one ssh-keygen prints.
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg("/dev/stdin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin
                .take()
                .unwrap()
                .write_all(ssh.host_key.public.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let SourceError::HostKeyChanged { fingerprint, .. } = err else {
        unreachable!()
    };
    let _ = fingerprint;
    let err = cache
        .fetch(
            &branch(&ssh.url, "main").with_auth(auth(&ssh.client.private, "")),
            &opts(),
        )
        .unwrap_err();
    let SourceError::HostKeyUnknown { fingerprint, .. } = err else {
        panic!("{err:?}")
    };
    assert!(printed.contains(&fingerprint), "{printed} vs {fingerprint}");
}

#[test]
fn ssh_with_hashed_known_hosts() {
    if !enabled("ssh_with_hashed_known_hosts") {
        return;
    }
    let (up, _first, second) = two_commits();
    let ssh = ssh_server(&up);
    let (_d, cache) = new_cache();
    let keys = tempfile::tempdir().unwrap();
    let auth = |known_hosts: String| Auth::Ssh {
        private_key: Secret::new(&ssh.client.private),
        passphrase: None,
        known_hosts,
    };

    // The server's own key, hashed (the name is `[127.0.0.1]:port`: not port 22).
    let hashed = hash_known_hosts(keys.path(), &format!("{}\n", ssh.known_hosts));
    let rev = cache
        .fetch(&branch(&ssh.url, "main").with_auth(auth(hashed)), &opts())
        .unwrap_or_else(|e| panic!("{e}\n{}", ssh.server.log_text()));
    assert_eq!(rev.sha, second);

    // A hashed entry for this host with another key: refused as changed.
    let impostor = keygen(keys.path(), "impostor");
    let changed = hash_known_hosts(
        keys.path(),
        &format!("[127.0.0.1]:{} {}\n", ssh.server.port, impostor.public),
    );
    let (_d2, fresh) = new_cache();
    let err = fresh
        .fetch(&branch(&ssh.url, "main").with_auth(auth(changed)), &opts())
        .unwrap_err();
    match &err {
        SourceError::HostKeyChanged { host, .. } => {
            assert_eq!(*host, format!("[127.0.0.1]:{}", ssh.server.port));
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    println!("{err}");

    // The server's key, hashed and marked @revoked beside a plain entry: refused as revoked.
    let revoked = format!(
        "{}\n@revoked {}",
        ssh.known_hosts,
        hash_known_hosts(keys.path(), &format!("{}\n", ssh.known_hosts))
    );
    let err = fresh
        .fetch(&branch(&ssh.url, "main").with_auth(auth(revoked)), &opts())
        .unwrap_err();
    assert!(matches!(err, SourceError::HostKeyRevoked { .. }), "{err:?}");
    println!("{err}");
}

#[test]
fn unreachable_host() {
    let port = free_port(); // nothing listens there
    let (_d, cache) = new_cache();
    let started = Instant::now();
    let err = cache
        .fetch(
            &branch(&format!("git://127.0.0.1:{port}/repo.git"), "main"),
            &opts(),
        )
        .unwrap_err();
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    // Refused at once, not after the 60 s timeout (generous for a loaded machine).
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    println!("{err}");
}

#[test]
fn silent_server_times_out() {
    // Never accepts: the kernel completes the TCP handshake from the backlog, and then nothing
    // is ever said. Dropping the listener at the end resets the connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_d, cache) = new_cache();
    let options = FetchOptions {
        timeout: Duration::from_secs(2),
        ..FetchOptions::default()
    };
    let started = Instant::now();
    let err = cache
        .fetch(
            &branch(&format!("git://127.0.0.1:{port}/repo.git"), "main"),
            &options,
        )
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, SourceError::Timeout { .. }), "{err:?}");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(12),
        "{elapsed:?}"
    );
    println!("{err}");
    drop(listener);
}

#[test]
fn invalid_sources_are_refused_before_any_io() {
    let (_d, cache) = new_cache();
    let cases = [
        Source::new("/tmp/some/repo", GitRef::Branch("main".into())),
        Source::new("file:///tmp/repo", GitRef::Branch("main".into())),
        Source::new("git://127.0.0.1:1/r.git", GitRef::Commit("abc123".into())),
        Source::new(
            "git://127.0.0.1:1/r.git",
            GitRef::Branch("refs/heads/main".into()),
        ),
        Source::new("git://127.0.0.1:1/r.git", GitRef::Branch("main".into()))
            .with_auth(Auth::Token(Secret::new("t"))),
        Source::new("ssh://git@127.0.0.1:1/r.git", GitRef::Branch("main".into())),
    ];
    for source in cases {
        let err = cache.fetch(&source, &opts()).unwrap_err();
        assert!(
            matches!(err, SourceError::Invalid(_)),
            "{source:?}: {err:?}"
        );
    }
    assert_eq!(fs::read_dir(cache.root()).unwrap().count(), 0);
}

#[test]
fn secrets_never_in_debug() {
    let source = Source::new(
        "https://bob:pw-in-url@example.com/r.git",
        GitRef::Branch("main".into()),
    )
    .with_auth(Auth::Ssh {
        private_key: Secret::new("-----BEGIN OPENSSH PRIVATE KEY-----xyz"),
        passphrase: Some(Secret::new("phrase-42")),
        known_hosts: String::new(),
    });
    let text = format!("{source:?}");
    for secret in ["pw-in-url", "PRIVATE KEY", "phrase-42"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let basic = Auth::Basic {
        username: "u".into(),
        password: Secret::new("hunter2"),
    };
    assert!(!format!("{basic:?}").contains("hunter2"));
}

#[cfg(unix)]
#[test]
fn unchanged_files_are_linked_from_the_previous_checkout() {
    use std::os::unix::fs::MetadataExt as _;
    if !enabled("unchanged_files_are_linked_from_the_previous_checkout") {
        return;
    }
    let up = Upstream::new();
    up.write("a/same.yaml", "same: 1\n")
        .write("changed.yaml", "v: 1\n")
        .write("mode.sh", "#!/bin/sh\n")
        .write("tampered.yaml", "t: 1\n");
    up.commit("first");
    let (_daemon, url) = git_daemon(&up);
    let (_d, cache) = new_cache();
    let source = branch(&url, "main");
    let first = cache.fetch(&source, &opts()).unwrap();

    up.write("changed.yaml", "v: 2\n");
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(up.work.join("mode.sh"))
        .status()
        .unwrap();
    up.commit("second");
    // A hand edit of the old checkout (never done by Headway) is not propagated.
    fs::write(first.tree_dir.join("tampered.yaml"), "t: 1 edited\n").unwrap();
    let second = cache.fetch(&source, &opts()).unwrap();
    assert_ne!(first.tree_dir, second.tree_dir);

    let inode = |rev: &headway_source::Revision, path: &str| {
        fs::metadata(rev.tree_dir.join(path)).unwrap().ino()
    };
    assert_eq!(
        inode(&first, "a/same.yaml"),
        inode(&second, "a/same.yaml"),
        "an unchanged file is a link to the previous checkout's"
    );
    for path in ["changed.yaml", "mode.sh", "tampered.yaml"] {
        assert_ne!(
            inode(&first, path),
            inode(&second, path),
            "{path} written anew"
        );
    }
    assert_eq!(read(&second, "a/same.yaml"), "same: 1\n");
    assert_eq!(read(&second, "changed.yaml"), "v: 2\n");
    assert_eq!(read(&second, "tampered.yaml"), "t: 1\n");
    assert_eq!(
        read(&first, "changed.yaml"),
        "v: 1\n",
        "the old checkout is intact"
    );
    let mode = fs::metadata(second.tree_dir.join("mode.sh"))
        .unwrap()
        .mode();
    assert_eq!(
        mode & 0o111,
        0o111,
        "the mode change is in the new checkout"
    );
}
