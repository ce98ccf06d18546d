//! Real git servers on 127.0.0.1 for the integration tests, each in its own temp dir on a free
//! port: `git daemon` (git://), `lighttpd` running `git http-backend` as CGI behind basic auth
//! (http://), and `sshd` with its own config, host key and authorized key (ssh://).
//!
//! Servers are [`Guarded`] child processes: each runs in a process group of its own, killed with
//! everything it forked when the [`Server`] is dropped or when the test binary ends in any way
//! (see [`crate::process`]), so no server outlives its test binary. The tests that need them
//! run only when `HEADWAY_GIT_TESTS=1`; then a missing binary is a failure, not a skip.
//! Used by the source tests, the CLI's `--repo` tests and the controller's end-to-end tests.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::Guarded;

/// Whether the server tests should run; prints why not otherwise.
pub fn enabled(test: &str) -> bool {
    if std::env::var("HEADWAY_GIT_TESTS").as_deref() == Ok("1") {
        true
    } else {
        println!("skipping: {test} needs HEADWAY_GIT_TESTS=1 (starts git daemon, lighttpd, sshd)");
        false
    }
}

/// Finds a server binary, failing the test when it is missing.
pub fn require(binary: &str) -> PathBuf {
    let candidates = [
        PathBuf::from(binary),
        Path::new("/usr/sbin").join(binary),
        Path::new("/usr/bin").join(binary),
        Path::new("/usr/lib/git-core").join(binary),
    ];
    for c in &candidates {
        if c.is_absolute() && c.is_file() {
            return c.clone();
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(binary);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{binary} not found: install the packages of .ci/packages-git.txt");
}

/// A port nobody listens on right now, and never handed out before in this process: the servers
/// of tests running in parallel bind their port a moment after this returns, so two of them
/// must not be given the same one (the kernel may offer a port again once it is released).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Runs git with a fixed identity and no user or system configuration; panics with its output
/// on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ada Tester")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Tester")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An upstream repository: a work tree to commit in, pushed to a bare repository under
/// `srv/repo.git` that the servers export.
pub struct Upstream {
    pub dir: TempDir,
    pub srv: PathBuf,
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl Default for Upstream {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstream {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let srv = dir.path().join("srv");
        let bare = srv.join("repo.git");
        let work = dir.path().join("work");
        fs::create_dir_all(&bare).unwrap();
        fs::create_dir_all(&work).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Upstream {
            dir,
            srv,
            bare,
            work,
        }
    }

    pub fn write(&self, path: &str, content: &str) -> &Self {
        let p = self.work.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
        self
    }

    /// Copies the directory `from` (recursively, bytes as they are; symlinks are not followed
    /// and not copied) to `to` in the work tree.
    pub fn copy_tree(&self, from: &Path, to: &str) -> &Self {
        let mut stack = vec![(from.to_path_buf(), self.work.join(to))];
        while let Some((src, dest)) = stack.pop() {
            fs::create_dir_all(&dest).unwrap();
            for entry in fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
                let entry = entry.unwrap();
                let kind = entry.file_type().unwrap();
                let target = dest.join(entry.file_name());
                if kind.is_dir() {
                    stack.push((entry.path(), target));
                } else if kind.is_file() {
                    fs::copy(entry.path(), &target).unwrap();
                    // The module cache's files are read-only; the work tree's must be writable.
                    let mut perms = fs::metadata(&target).unwrap().permissions();
                    #[allow(clippy::permissions_set_readonly_false)]
                    perms.set_readonly(false);
                    fs::set_permissions(&target, perms).unwrap();
                }
            }
        }
        self
    }

    /// Removes a file (or directory) from the work tree; the next commit deletes it.
    pub fn remove(&self, path: &str) -> &Self {
        let p = self.work.join(path);
        if p.is_dir() {
            fs::remove_dir_all(p).unwrap();
        } else {
            fs::remove_file(p).unwrap();
        }
        self
    }

    pub fn symlink(&self, path: &str, target: &str) -> &Self {
        let p = self.work.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }

    /// Commits everything and pushes `main`; returns the new commit id.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "-q", "--force", "origin", "main"]);
        self.head()
    }

    /// Rewrites the last commit and force-pushes it; returns the new commit id.
    pub fn amend_and_force_push(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "--amend", "-m", message]);
        git(&self.work, &["push", "-q", "--force", "origin", "main"]);
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn tag(&self, name: &str, annotated: bool) {
        if annotated {
            git(
                &self.work,
                &["tag", "-a", name, "-m", &format!("release {name}")],
            );
        } else {
            git(&self.work, &["tag", name]);
        }
        git(
            &self.work,
            &["push", "-q", "origin", &format!("refs/tags/{name}")],
        );
    }

    /// Lets clients fetch any reachable commit by id (as GitHub and GitLab do).
    pub fn allow_sha_wants(&self) {
        git(
            &self.bare,
            &["config", "uploadpack.allowReachableSHA1InWant", "true"],
        );
    }
}

/// A server child process, killed (with its process group) on drop.
pub struct Server {
    child: Guarded,
    pub port: u16,
    log: PathBuf,
    _dir: Option<TempDir>,
}

impl Server {
    fn spawn(mut command: Command, port: u16, log: PathBuf, dir: Option<TempDir>) -> Self {
        let log_file = fs::File::create(&log).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let child =
            Guarded::spawn(&mut command).unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let mut server = Server {
            child,
            port,
            log,
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        // Generous: it costs nothing when the server starts fast, as it does on an idle machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited with {status}:\n{}", self.log_text());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "server not listening on {} after 60 s:\n{}",
            self.port,
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many fetches `git daemon` served so far: the `Request upload-pack` lines of its log
    /// (it runs with `--verbose`).
    pub fn upload_packs(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains("Request upload-pack"))
            .count()
    }

    /// The server's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server now (same as dropping it).
    pub fn stop(self) {}
}

/// `git daemon` exporting `upstream.srv`: URL `git://127.0.0.1:<port>/repo.git`.
pub fn git_daemon(upstream: &Upstream) -> (Server, String) {
    require("git-daemon");
    let port = free_port();
    let mut cmd = Command::new("git");
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .arg("daemon")
        .arg("--verbose")
        .arg("--reuseaddr")
        .arg("--export-all")
        .arg("--listen=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", upstream.srv.display()))
        .arg(&upstream.srv);
    let log = upstream.dir.path().join(format!("git-daemon-{port}.log"));
    let server = Server::spawn(cmd, port, log, None);
    (server, format!("git://127.0.0.1:{port}/repo.git"))
}

/// lighttpd running `git http-backend` for `upstream.srv` behind basic auth with the given
/// users (`user:password`): URL `http://127.0.0.1:<port>/git/repo.git`.
pub fn http_server(upstream: &Upstream, users: &[(&str, &str)]) -> (Server, String) {
    let lighttpd = require("lighttpd");
    let backend = require("git-http-backend");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let www = dir.path().join("www");
    fs::create_dir_all(&www).unwrap();
    let userfile = dir.path().join("users");
    let lines: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
    fs::write(&userfile, lines).unwrap();
    let conf = dir.path().join("lighttpd.conf");
    fs::write(
        &conf,
        format!(
            r#"server.modules = ("mod_alias", "mod_setenv", "mod_cgi", "mod_auth", "mod_authn_file")
server.document-root = "{www}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{dir}/error.log"
alias.url = ("/git" => "{backend}")
$HTTP["url"] =~ "^/git" {{
    cgi.assign = ("" => "")
    setenv.add-environment = ("GIT_PROJECT_ROOT" => "{srv}", "GIT_HTTP_EXPORT_ALL" => "1", "GIT_CONFIG_NOSYSTEM" => "1")
}}
auth.backend = "plain"
auth.backend.plain.userfile = "{userfile}"
auth.require = ("/git" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
"#,
            www = www.display(),
            dir = dir.path().display(),
            backend = backend.display(),
            srv = upstream.srv.display(),
            userfile = userfile.display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(lighttpd);
    cmd.arg("-D").arg("-f").arg(&conf);
    let log = dir.path().join("stderr.log");
    let server = Server::spawn(cmd, port, log, Some(dir));
    (server, format!("http://127.0.0.1:{port}/git/repo.git"))
}

/// An ssh key pair made by ssh-keygen.
pub struct KeyPair {
    pub private: String,
    /// `ssh-ed25519 AAAA... comment`
    pub public: String,
}

pub fn keygen(dir: &Path, name: &str) -> KeyPair {
    let path = dir.join(name);
    let out = Command::new(require("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    KeyPair {
        private: fs::read_to_string(&path).unwrap(),
        public: fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string(),
    }
}

/// known_hosts `lines` (one `host key` each) hashed by the real `ssh-keygen -H` in
/// `dir/known_hosts` (as Debian's ssh writes them), read back.
pub fn hash_known_hosts(dir: &Path, lines: &str) -> String {
    let file = dir.join("known_hosts");
    fs::write(&file, lines).unwrap();
    let out = Command::new(require("ssh-keygen"))
        .arg("-H")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen -H: {out:?}");
    let hashed = fs::read_to_string(&file).unwrap();
    assert!(
        hashed.lines().all(|l| l.starts_with("|1|")),
        "not hashed: {hashed}"
    );
    hashed
}

/// sshd as the current user on a free port with its own config, host key and authorized key.
pub struct Ssh {
    pub server: Server,
    /// `ssh://<user>@127.0.0.1:<port>/<abs path>/repo.git`
    pub url: String,
    /// The known_hosts line for this server.
    pub known_hosts: String,
    /// The authorized client key.
    pub client: KeyPair,
    pub host_key: KeyPair,
}

pub fn ssh_server(upstream: &Upstream) -> Ssh {
    let sshd = require("sshd");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let host_key = keygen(dir.path(), "host_ed25519");
    let client = keygen(dir.path(), "client_ed25519");
    fs::write(
        dir.path().join("authorized_keys"),
        format!("{}\n", client.public),
    )
    .unwrap();
    // sshd insists on its privilege separation directory.
    let _ = fs::create_dir_all("/run/sshd");
    let conf = dir.path().join("sshd_config");
    fs::write(
        &conf,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_ed25519\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\nPermitRootLogin yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             LogLevel VERBOSE\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let user = Command::new("id").arg("-un").output().unwrap();
    let user = String::from_utf8_lossy(&user.stdout).trim().to_string();
    let mut cmd = Command::new(sshd);
    cmd.arg("-D").arg("-e").arg("-f").arg(&conf);
    let log = dir.path().join("sshd.log");
    let server = Server::spawn(cmd, port, log, Some(dir));
    let known_hosts = format!("[127.0.0.1]:{port} {}", host_key.public);
    Ssh {
        server,
        url: format!("ssh://{user}@127.0.0.1:{port}{}", upstream.bare.display()),
        known_hosts,
        client,
        host_key,
    }
}
