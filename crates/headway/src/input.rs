//! Where a command's manifests come from: a local directory, or a directory of a git repository
//! fetched (depth 1) into the local cache. Shared by `render`, `diff` and `apply`.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use headway_source::{Auth, Cache, FetchOptions, GitRef, Revision, Secret, Source};

/// A local directory, or `--repo URL [--ref REF] [--path DIR]`.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// The local directory to read (or use --repo).
    #[arg(required_unless_present_any = ["repo", "helm_repo"], conflicts_with = "repo")]
    pub dir: Option<PathBuf>,
    /// A git repository to fetch instead of a local directory (https://, http://, ssh://, git://).
    #[arg(long)]
    pub repo: Option<String>,
    /// Branch, tag or commit: a 40-hex SHA is a commit, `refs/tags/NAME` or `tag:NAME` a tag,
    /// `refs/heads/NAME` or anything else a branch. Default: `main`.
    #[arg(long = "ref", requires = "repo")]
    pub reference: Option<String>,
    /// Directory inside the repository. Default: its root.
    #[arg(long = "path", requires = "repo")]
    pub repo_path: Option<PathBuf>,
    /// HTTPS user name (the password or token is read from HEADWAY_GIT_PASSWORD).
    #[arg(long, requires = "repo")]
    pub username: Option<String>,
    /// SSH private key file (its passphrase, if any, from HEADWAY_GIT_SSH_PASSPHRASE).
    #[arg(long, requires = "repo")]
    pub ssh_key: Option<PathBuf>,
    /// known_hosts file for SSH (default ~/.ssh/known_hosts). Unknown or changed host keys are
    /// refused.
    #[arg(long, requires = "repo")]
    pub known_hosts: Option<PathBuf>,
    /// Git cache directory (default $HEADWAY_GIT_CACHE, else ~/.cache/headway/git).
    #[arg(long, requires = "repo")]
    pub git_cache: Option<PathBuf>,
}

/// A directory ready to render, and the revision it came from when it came from git.
#[derive(Debug)]
pub struct Input {
    pub dir: PathBuf,
    pub revision: Option<Revision>,
}

impl InputArgs {
    /// The directory to render: the local one, or the fetched tree's `--path`.
    pub fn resolve(&self) -> anyhow::Result<Input> {
        let Some(url) = &self.repo else {
            if self.reference.is_some() || self.repo_path.is_some() {
                // clap's `requires` does not see through the flattened struct: same message and
                // exit code as its own usage errors.
                clap::Error::raw(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "--ref and --path need --repo (a local directory is read as it is)\n",
                )
                .exit();
            }
            // Without a directory (a remote chart with its own values): an empty one.
            let dir = match self.dir.clone() {
                Some(dir) => dir,
                None => {
                    let empty = std::env::temp_dir().join("headway-no-values");
                    std::fs::create_dir_all(&empty)
                        .with_context(|| format!("creating {}", empty.display()))?;
                    empty
                }
            };
            return Ok(Input {
                dir,
                revision: None,
            });
        };
        let cache_dir = match &self.git_cache {
            Some(dir) => dir.clone(),
            None => default_cache_dir(),
        };
        let cache =
            Cache::new(&cache_dir).with_context(|| format!("git cache {}", cache_dir.display()))?;
        let source = Source::new(
            url.as_str(),
            parse_ref(self.reference.as_deref().unwrap_or("main")),
        )
        .with_auth(self.auth()?);
        let revision = cache
            .fetch(&source, &FetchOptions::default())
            .with_context(|| format!("fetching {} of {url}", source.reference))?;
        let dir = subdir(
            &revision.tree_dir,
            self.repo_path.as_deref().unwrap_or(Path::new(".")),
        )?;
        Ok(Input {
            dir,
            revision: Some(revision),
        })
    }

    fn auth(&self) -> anyhow::Result<Auth> {
        if let Some(key) = &self.ssh_key {
            let private_key = std::fs::read_to_string(key)
                .with_context(|| format!("--ssh-key {}", key.display()))?;
            let known_hosts_file = match &self.known_hosts {
                Some(file) => file.clone(),
                None => home().join(".ssh/known_hosts"),
            };
            let known_hosts = std::fs::read_to_string(&known_hosts_file)
                .with_context(|| format!("known_hosts {}", known_hosts_file.display()))?;
            return Ok(Auth::Ssh {
                private_key: Secret::new(private_key),
                passphrase: std::env::var("HEADWAY_GIT_SSH_PASSPHRASE")
                    .ok()
                    .map(Secret::new),
                known_hosts,
            });
        }
        let password = std::env::var("HEADWAY_GIT_PASSWORD").ok();
        Ok(match (&self.username, password) {
            (Some(username), Some(password)) => Auth::Basic {
                username: username.clone(),
                password: Secret::new(password),
            },
            (Some(username), None) => {
                bail!("--username {username}: set the password or token in HEADWAY_GIT_PASSWORD")
            }
            (None, Some(token)) => Auth::Token(Secret::new(token)),
            (None, None) => Auth::None,
        })
    }
}

/// `--ref` to a [`GitRef`].
pub fn parse_ref(reference: &str) -> GitRef {
    if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        GitRef::Commit(reference.to_ascii_lowercase())
    } else if let Some(tag) = reference
        .strip_prefix("refs/tags/")
        .or_else(|| reference.strip_prefix("tag:"))
    {
        GitRef::Tag(tag.to_string())
    } else {
        GitRef::Branch(
            reference
                .strip_prefix("refs/heads/")
                .unwrap_or(reference)
                .to_string(),
        )
    }
}

/// `path` inside `root`, refusing absolute paths and `..`.
fn subdir(root: &Path, path: &Path) -> anyhow::Result<PathBuf> {
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        bail!(
            "--path {}: must be relative to the repository root, without `..`",
            path.display()
        );
    }
    let dir = root.join(path);
    if !dir.is_dir() {
        bail!(
            "--path {}: no such directory in the repository",
            path.display()
        );
    }
    Ok(dir)
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp".into())
}

fn default_cache_dir() -> PathBuf {
    std::env::var_os("HEADWAY_GIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/headway/git"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_classified() {
        let sha = "0123456789abcdef0123456789ABCDEF01234567";
        assert_eq!(parse_ref(sha), GitRef::Commit(sha.to_ascii_lowercase()));
        assert_eq!(parse_ref("0123abc"), GitRef::Branch("0123abc".into()));
        assert_eq!(parse_ref("refs/tags/v1"), GitRef::Tag("v1".into()));
        assert_eq!(parse_ref("tag:v1"), GitRef::Tag("v1".into()));
        assert_eq!(parse_ref("refs/heads/prod"), GitRef::Branch("prod".into()));
        assert_eq!(parse_ref("main"), GitRef::Branch("main".into()));
    }

    #[test]
    fn path_inside_the_tree_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("deploy/prod")).unwrap();
        assert_eq!(
            subdir(dir.path(), Path::new("deploy/prod")).unwrap(),
            dir.path().join("deploy/prod")
        );
        assert!(subdir(dir.path(), Path::new(".")).is_ok());
        for bad in ["../x", "/etc", "deploy/../../x"] {
            let err = subdir(dir.path(), Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains("without `..`"), "{bad}: {err}");
        }
        let err = subdir(dir.path(), Path::new("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such directory"), "{err}");
    }
}
