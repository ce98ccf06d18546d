//! The [`Cache`]: one directory per (URL, credentials) holding a bare repository and the
//! checked-out trees, and [`Cache::fetch`], which runs the fetch on a worker thread bounded by
//! the timeout.
//!
//! Layout of an entry `<root>/<key>/`:
//! - `lock`: held (advisory file lock) while a fetch uses the entry, across threads and processes;
//! - `repo.git/`: bare, shallow repository; deleted and fetched again when found corrupted;
//! - `trees/<sha>/`: immutable checkouts, written under `trees/.tmp-*` then renamed;
//!   the newest [`FetchOptions::keep_trees`] are kept (older ones are removed after the fetch
//!   has returned its revision). Files unchanged since the newest previous checkout (same path,
//!   blob and mode) are hard links to it, so a small push writes only what it changed.
//!
//! The key is a hash of the URL and of the credentials' identity, so sources with different
//! credentials never share objects: a commit fetched with one token is not served to a source
//! without it.

use std::fs;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use git2::Repository;
use sha2::{Digest as _, Sha256};

use crate::error::SourceError;
use crate::git::{self, Control, Ctx, Failure};
use crate::tree::{self, TreeFailure};
use crate::types::{Auth, FetchOptions, FetchStats, GitRef, Revision, Source};
use crate::url::{self, GitUrl, Scheme};

/// A directory of cached repositories and checkouts. Cheap to clone; safe to share between
/// threads and processes (entries are locked while in use).
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root`, created if missing.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, SourceError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| cache_err(&root, e))?;
        Ok(Cache { root })
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the entry used for `source` (it may not exist yet).
    pub fn entry_dir(&self, source: &Source) -> PathBuf {
        let mut hasher = Sha256::new();
        hasher.update(b"headway-source-v1\0");
        hasher.update(source.url.as_bytes());
        hasher.update(b"\0");
        match &source.auth {
            Auth::None => hasher.update(b"none"),
            Auth::Basic { username, password } => {
                hasher.update(b"basic\0");
                hasher.update(username.as_bytes());
                hasher.update(b"\0");
                hasher.update(Sha256::digest(password.expose().as_bytes()));
            }
            Auth::Token(token) => {
                hasher.update(b"token\0");
                hasher.update(Sha256::digest(token.expose().as_bytes()));
            }
            Auth::Ssh { private_key, .. } => {
                hasher.update(b"ssh\0");
                hasher.update(Sha256::digest(private_key.expose().as_bytes()));
            }
        }
        self.root.join(hex::encode(&hasher.finalize()[..16]))
    }

    /// Fetches `source` and checks its commit out; see the crate documentation.
    ///
    /// **Blocking**: this does network and disk I/O for up to `options.timeout`; from async code
    /// call it through `tokio::task::spawn_blocking`. The work runs on a worker thread; when the
    /// timeout passes, this returns [`SourceError::Timeout`] and the worker is told to stop at
    /// its next chance (it may stay blocked on a silent socket until the OS gives up; it holds
    /// the entry's lock meanwhile, so it cannot race a later fetch of the same source).
    pub fn fetch(&self, source: &Source, options: &FetchOptions) -> Result<Revision, SourceError> {
        let started = Instant::now();
        let parsed = validate(source)?;
        let control = Control {
            cancel: Arc::new(AtomicBool::new(false)),
            deadline: started + options.timeout,
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let job = Job {
            entry: self.entry_dir(source),
            source: source.clone(),
            url: parsed.clone(),
            options: options.clone(),
            control: control.clone(),
        };
        std::thread::Builder::new()
            .name("headway-fetch".into())
            .spawn(move || {
                job.run(|result| {
                    let _ = tx.send(result);
                });
            })
            .map_err(|e| cache_err(&self.root, e))?;
        let timeout = || SourceError::Timeout {
            url: parsed.redacted.clone(),
            after: options.timeout,
        };
        let result = match rx
            .recv_timeout(control.deadline.saturating_duration_since(Instant::now()))
        {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                control.cancel.store(true, Ordering::Relaxed);
                return Err(timeout());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Failure::Fatal(SourceError::Git {
                url: parsed.redacted.clone(),
                message: "the fetch worker thread panicked".into(),
            })),
        };
        match result {
            Ok(mut revision) => {
                revision.stats.fetch_ms = started.elapsed().as_millis() as u64;
                Ok(revision)
            }
            Err(Failure::Stopped) => Err(timeout()),
            Err(Failure::Fatal(e)) => Err(e),
            Err(Failure::Corrupt(reason)) => Err(SourceError::Cache {
                path: self.entry_dir(source),
                reason: format!("corrupted even after a fresh fetch: {reason}"),
            }),
        }
    }
}

fn cache_err(path: &Path, e: io::Error) -> SourceError {
    SourceError::Cache {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Checks the source before any I/O.
fn validate(source: &Source) -> Result<GitUrl, SourceError> {
    let parsed = url::parse(&source.url)?;
    match (&source.auth, parsed.scheme) {
        (Auth::Ssh { .. }, Scheme::Ssh) | (Auth::None, _) => {}
        (Auth::Basic { .. } | Auth::Token(_), Scheme::Http | Scheme::Https) => {}
        (Auth::Ssh { .. }, _) => {
            return Err(SourceError::Invalid(format!(
                "SSH credentials need an ssh:// or user@host:path URL, not {}",
                parsed.redacted
            )));
        }
        (_, _) => {
            return Err(SourceError::Invalid(format!(
                "user name/password and token credentials need an http(s) URL, not {}",
                parsed.redacted
            )));
        }
    }
    if parsed.scheme == Scheme::Ssh && !matches!(source.auth, Auth::Ssh { .. }) {
        return Err(SourceError::Invalid(
            "ssh URLs need Auth::Ssh (a private key and known_hosts)".into(),
        ));
    }
    match &source.reference {
        GitRef::Commit(sha) => {
            if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(SourceError::Invalid(format!(
                    "commit {sha:?} is not a full commit id (40 hex digits)"
                )));
            }
        }
        GitRef::Branch(name) | GitRef::Tag(name) => {
            if name.is_empty() || name.starts_with("refs/") {
                return Err(SourceError::Invalid(format!(
                    "{}: give the short name, without refs/",
                    source.reference
                )));
            }
        }
    }
    Ok(parsed)
}

/// Everything the worker thread needs, owned.
struct Job {
    entry: PathBuf,
    source: Source,
    url: GitUrl,
    options: FetchOptions,
    control: Control,
}

impl Job {
    /// Fetches and checks out, hands the result to `deliver`, then (still holding the entry's
    /// lock, so that no concurrent fetch is handed a tree being removed) removes the checkouts
    /// beyond [`FetchOptions::keep_trees`]: the caller does not wait for that.
    fn run(&self, deliver: impl FnOnce(Result<Revision, Failure>)) {
        if let Err(e) = fs::create_dir_all(self.entry.join("trees")) {
            deliver(Err(cache_err(&self.entry, e).into()));
            return;
        }
        let lock = match self.lock() {
            Ok(lock) => lock,
            Err(f) => {
                deliver(Err(f));
                return;
            }
        };
        self.clean_temporaries();
        let result = self.fetch_locked();
        let current = result.as_ref().ok().map(|r| r.tree_dir.clone());
        deliver(result);
        if let Some(current) = current {
            self.prune_trees(&current);
        }
        drop(lock);
    }

    fn fetch_locked(&self) -> Result<Revision, Failure> {
        let mut recovered_from = None;
        loop {
            match self.attempt() {
                Err(Failure::Corrupt(reason)) if recovered_from.is_none() => {
                    let repo_dir = self.entry.join("repo.git");
                    tracing::warn!(
                        url = %self.url.redacted,
                        %reason,
                        "corrupted cache entry, deleting it and fetching again"
                    );
                    if repo_dir.exists() {
                        fs::remove_dir_all(&repo_dir).map_err(|e| cache_err(&repo_dir, e))?;
                    }
                    recovered_from = Some(reason);
                }
                Ok(mut revision) => {
                    revision.recovered_from = recovered_from;
                    return Ok(revision);
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Takes the entry's lock, polling so that cancellation is noticed.
    fn lock(&self) -> Result<fs::File, Failure> {
        let path = self.entry.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| cache_err(&path, e))?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(fs::TryLockError::WouldBlock) => {
                    if self.control.stopped() {
                        return Err(Failure::Stopped);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(fs::TryLockError::Error(e)) => return Err(cache_err(&path, e).into()),
            }
        }
    }

    /// Removes checkouts left half-written by a crash (we hold the lock: nobody writes them).
    fn clean_temporaries(&self) {
        if let Ok(dir) = fs::read_dir(self.entry.join("trees")) {
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }

    fn open_repo(&self) -> Result<Repository, Failure> {
        let dir = self.entry.join("repo.git");
        if dir.exists() {
            Repository::open_bare(&dir).map_err(|e| {
                Failure::Corrupt(format!(
                    "cannot open the cached repository: {}",
                    e.message()
                ))
            })
        } else {
            Repository::init_bare(&dir).map_err(|e| {
                Failure::Fatal(SourceError::Cache {
                    path: dir.clone(),
                    reason: e.message().to_string(),
                })
            })
        }
    }

    fn attempt(&self) -> Result<Revision, Failure> {
        self.preflight_if_needed()?;
        let repo = self.open_repo()?;
        let ctx = Ctx {
            source: &self.source,
            url: &self.url,
            control: &self.control,
        };
        let fetched = git::fetch(&repo, &ctx, &self.options)?;
        if self.control.stopped() {
            return Err(Failure::Stopped);
        }
        let commit = repo
            .find_commit(fetched.commit)
            .map_err(|e| Failure::Corrupt(e.message().to_string()))?;
        let tree_obj = commit
            .tree()
            .map_err(|e| Failure::Corrupt(e.message().to_string()))?;
        let plan = tree::plan(&repo, &tree_obj, &self.options.limits).map_err(tree_failure)?;
        let sha = commit.id().to_string();
        let trees = self.entry.join("trees");
        let tree_dir = trees.join(&sha);
        if !tree_dir.is_dir() {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let tmp = trees.join(format!(".tmp-{sha}-{}-{nanos}", std::process::id()));
            let previous = self.previous_tree(&repo, &tree_dir);
            if let Err(e) = tree::write(&repo, &plan, &tmp, previous.as_ref()) {
                let _ = fs::remove_dir_all(&tmp);
                return Err(tree_failure(e));
            }
            fs::rename(&tmp, &tree_dir).map_err(|e| cache_err(&tree_dir, e))?;
        } else if let Ok(f) = fs::File::open(&tree_dir) {
            let _ = f.set_modified(SystemTime::now()); // newest: pruned last
        }

        let author = commit.author();
        let mut warnings = plan.warnings.clone();
        if self.url.scheme == Scheme::Http && !matches!(self.source.auth, Auth::None) {
            warnings.push("credentials were sent over plain http (not encrypted)".into());
        }
        Ok(Revision {
            sha,
            author: format!(
                "{} <{}>",
                String::from_utf8_lossy(author.name_bytes()),
                String::from_utf8_lossy(author.email_bytes())
            ),
            time: commit.time().seconds(),
            message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
            tree_dir,
            stats: FetchStats {
                files: plan.files,
                bytes: plan.bytes,
                fetch_ms: 0,
                received_bytes: fetched.received_bytes,
            },
            recovered_from: None,
            warnings,
        })
    }

    /// Checks that a TCP connection to the server can be made within the connect timeout, so an
    /// unreachable host is reported quickly and clearly. Skipped for a commit already cached.
    fn preflight_if_needed(&self) -> Result<(), Failure> {
        if let GitRef::Commit(sha) = &self.source.reference
            && let Ok(repo) = Repository::open_bare(self.entry.join("repo.git"))
            && let Ok(oid) = git2::Oid::from_str(sha)
            && repo.find_commit(oid).is_ok()
        {
            return Ok(());
        }
        let unreachable = |reason: String| {
            Failure::Fatal(SourceError::Unreachable {
                url: self.url.redacted.clone(),
                reason,
            })
        };
        let target = format!("{}:{}", self.url.host, self.url.port);
        let addrs: Vec<_> = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("cannot resolve {}: {e}", self.url.host)))?
            .collect();
        let mut last = None;
        for addr in addrs {
            let remaining = self
                .control
                .deadline
                .saturating_duration_since(Instant::now());
            let budget = self.options.connect_timeout.min(remaining);
            if budget.is_zero() {
                return Err(Failure::Stopped);
            }
            match TcpStream::connect_timeout(&addr, budget) {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(unreachable(match last {
            Some(e) if e.kind() == io::ErrorKind::TimedOut => format!(
                "connecting to {target} timed out after {:?}",
                self.options.connect_timeout
            ),
            Some(e) => format!("cannot connect to {target}: {e}"),
            None => format!("{} resolves to no address", self.url.host),
        }))
    }

    /// The newest checkout other than `current` whose commit is in `repo` (to link unchanged
    /// files from); `None` when there is none.
    fn previous_tree<'r>(
        &self,
        repo: &'r Repository,
        current: &Path,
    ) -> Option<tree::Previous<'r>> {
        let dir = fs::read_dir(self.entry.join("trees")).ok()?;
        let mut trees: Vec<(SystemTime, PathBuf, git2::Oid)> = dir
            .flatten()
            .filter(|e| e.path() != current)
            .filter_map(|e| {
                let oid = git2::Oid::from_str(e.file_name().to_str()?).ok()?;
                let t = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((t, e.path(), oid))
            })
            .collect();
        trees.sort_by_key(|t| std::cmp::Reverse(t.0));
        trees.into_iter().find_map(|(_, dir, oid)| {
            let tree = repo.find_commit(oid).ok()?.tree().ok()?;
            Some(tree::Previous { dir, tree })
        })
    }

    /// Keeps the newest `keep_trees` checkouts (always including `current`).
    fn prune_trees(&self, current: &Path) {
        let Ok(dir) = fs::read_dir(self.entry.join("trees")) else {
            return;
        };
        let mut trees: Vec<(SystemTime, PathBuf)> = dir
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| e.path() != current)
            .map(|e| {
                let t = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (t, e.path())
            })
            .collect();
        trees.sort_by_key(|b| std::cmp::Reverse(b.0));
        for (_, path) in trees.into_iter().skip(self.options.keep_trees.max(1) - 1) {
            let _ = fs::remove_dir_all(path);
        }
    }
}

fn tree_failure(f: TreeFailure) -> Failure {
    match f {
        TreeFailure::Refused(e) | TreeFailure::Io(e) => Failure::Fatal(e),
        TreeFailure::Corrupt(reason) => Failure::Corrupt(reason),
    }
}

impl From<SourceError> for TreeFailure {
    fn from(e: SourceError) -> Self {
        TreeFailure::Io(e)
    }
}
