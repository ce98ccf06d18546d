//! Where a command's manifests come from and how they are rendered, shared by `render`, `fetch`,
//! `diff` and `apply`: a local directory, or a directory of a git repository fetched (depth 1)
//! into the local cache (its warnings printed on stderr); the render options (`--type`, Helm,
//! timeout, the capabilities Helm charts see, a remote chart, the age keys that decrypt SOPS
//! files: [`SourceArgs`]); `render`'s output format ([`RenderArgs`]); and the rendered set that
//! `diff` and `apply` work on.

use crate::cluster::duration_secs;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use headway_model::RenderedSet;
use headway_render::chart::{ChartCache, ChartRef, Credentials, FetchChartOptions, ResolvedChart};
use headway_render::{Capabilities, HelmOptions, RenderOptions, RenderType};
use headway_source::{Auth, Cache, FetchOptions, GitRef, Revision, Secret, Source};

use crate::cluster::{ClusterArgs, runtime};
use crate::owner::label_value;

/// A local directory, or `--repo URL [--ref REF] [--path DIR]`.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// The local directory to read (or use --repo). `render`, `diff` and `apply` need one of
    /// it, --repo or --helm-repo ([`SourceArgs`]), or `render` and `diff` --gitsync (then DIR
    /// stands for the GitSync's spec.path); `fetch` needs --repo.
    #[arg(conflicts_with = "repo")]
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
    /// The directory to render: the local one, or the fetched tree's `--path`. The fetch's
    /// warnings (credentials over plain http, skipped submodules) are printed on stderr.
    pub fn resolve(&self) -> anyhow::Result<Input> {
        let Some(url) = &self.repo else {
            if self.reference.is_some() || self.repo_path.is_some() {
                // clap's `requires` does not see through the flattened struct: a usage error
                // like its own (main prints it and exits with code 2).
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "--ref and --path need --repo (a local directory is read as it is)\n",
                )
                .into());
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
        for warning in &revision.warnings {
            eprintln!(
                "warning: {}: {warning}",
                headway_source::redact_url(url.as_str())
            );
        }
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

/// Arguments of `headway render`: the source and render options, and the output format. It
/// dereferences to its [`SourceArgs`].
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub gitsync: crate::gitsync_input::GitSyncArgs,
    /// Output format: a YAML stream (`---` between documents) or one JSON `v1 List`
    /// (both can be piped to `kubectl apply -f -`).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
}

impl std::ops::Deref for RenderArgs {
    type Target = SourceArgs;

    fn deref(&self) -> &SourceArgs {
        &self.source
    }
}

/// The source and render options of `render`, `diff` and `apply` (`diff` and `apply` have an
/// `-o` of their own: what they print, not the manifests).
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("what_to_render")
        .args(["dir", "repo", "helm_repo"])
        .required(true)
        .multiple(true)
))]
pub struct SourceArgs {
    /// The directory to render, or the repository to fetch it from.
    #[command(flatten)]
    pub input: InputArgs,
    /// How to render it; `auto` detects a kustomization, then a Chart.yaml, else plain YAML.
    #[arg(long = "type", value_enum, default_value_t = RenderType::Auto)]
    pub render_type: RenderType,
    /// Helm release name; default: the chart directory's name.
    #[arg(long)]
    pub helm_release: Option<String>,
    /// Helm release namespace.
    #[arg(long, default_value = "default")]
    pub helm_namespace: String,
    /// Helm values files, in order (relative to the current directory).
    #[arg(long, num_args = 1..)]
    pub helm_values: Vec<PathBuf>,
    /// Do not pass `--include-crds` to helm.
    #[arg(long)]
    pub helm_skip_crds: bool,
    /// Kubernetes version Helm charts see (`.Capabilities.KubeVersion`); default: the
    /// cluster's with `--cluster` and for `diff` and `apply`, else the newest minor the bundled
    /// tools support (headway_render::DEFAULT_KUBE_VERSION).
    #[arg(long, conflicts_with = "cluster")]
    pub kube_version: Option<String>,
    /// API versions Helm charts see as served (`.Capabilities.APIVersions`), `group/version` or
    /// `group/version/Kind`, comma-separated or repeated; added to Helm's built-in list.
    #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with = "cluster")]
    pub api_versions: Vec<String>,
    /// Read the Kubernetes version and API versions from the cluster (--kubeconfig/--context),
    /// as the controller does (`diff` and `apply` always do for charts, unless --kube-version
    /// or --api-versions is given).
    #[arg(long)]
    pub cluster: bool,
    /// A Helm chart repository (`https://...` serving index.yaml, or `oci://host/path`) to fetch
    /// `--chart` from; the directory then only holds values (its values.yaml, or --helm-values).
    #[arg(long, requires_all = ["chart", "chart_version"])]
    pub helm_repo: Option<String>,
    /// The chart's name in --helm-repo.
    #[arg(long, requires = "helm_repo")]
    pub chart: Option<String>,
    /// The chart version: exact (`4.11.3`) or a range (`>=4.11.0 <5.0.0`, `^4.11`).
    #[arg(long = "version", requires = "helm_repo")]
    pub chart_version: Option<String>,
    /// User name for --helm-repo (the password is read from HEADWAY_HELM_PASSWORD).
    #[arg(long, requires = "helm_repo")]
    pub helm_username: Option<String>,
    /// Talk plain HTTP to an `oci://` --helm-repo (a local registry).
    #[arg(long, requires = "helm_repo")]
    pub helm_plain_http: bool,
    /// How long kustomize or helm may run before they are killed: seconds, or a duration such
    /// as `90s`, `2m`.
    #[arg(long, default_value_t = 60, value_parser = duration_secs)]
    pub timeout: u64,
    /// age private key file (`age-keygen` output) to decrypt SOPS-encrypted manifests with, in
    /// memory; repeatable. Without it, an encrypted manifest is an error.
    #[arg(long, value_name = "FILE")]
    pub decrypt_key: Vec<PathBuf>,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A YAML stream.
    Yaml,
    /// A JSON `v1 List`.
    Json,
}

impl SourceArgs {
    /// The library options these arguments ask for; `cluster` is only talked to with
    /// `--cluster`.
    pub fn options(&self, dir: &Path, cluster: &ClusterArgs) -> anyhow::Result<RenderOptions> {
        // Values files named on the command line are the user's own: make them absolute.
        let values_files = self
            .helm_values
            .iter()
            .map(|v| {
                std::fs::canonicalize(v).with_context(|| format!("--helm-values {}", v.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let chart = self.remote_chart()?;
        let default_release = match &chart {
            Some(c) => c.name.clone(),
            None => chart_name(dir),
        };
        let mut options = RenderOptions {
            render_type: self.render_type,
            helm: HelmOptions::builder(default_release, "default")
                .release_name(self.helm_release.clone())
                .namespace(Some(self.helm_namespace.clone()))
                .values_files(values_files)
                .include_crds(Some(!self.helm_skip_crds))
                .capabilities(self.capabilities(cluster)?)
                .chart(chart.map(|c| c.archive))
                .build(),
            ..RenderOptions::default()
        };
        options.tools.timeout = Duration::from_secs(self.timeout);
        let is_helm = match self.render_type {
            RenderType::Auto => headway_render::detect(dir),
            explicit => explicit,
        } == RenderType::Helm;
        if is_helm && options.helm.chart.is_none() {
            options.helm.dependencies = fetch_dependencies(dir, options.tools.timeout)?;
        }
        if !self.decrypt_key.is_empty() {
            let mut keys = headway_decrypt::Keys::new();
            for file in &self.decrypt_key {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("--decrypt-key {}", file.display()))?;
                keys.add_text(&format!("--decrypt-key {}", file.display()), &text)?;
            }
            options.decryptor = Some(headway_decrypt::SopsDecryptor::new(keys).into_render_hook());
        }
        Ok(options)
    }

    /// The chart of `--helm-repo`/`--chart`/`--version`, fetched into the chart cache
    /// (`$HEADWAY_CHART_CACHE`, else ~/.cache/headway/charts) and verified; printed on stderr.
    pub fn remote_chart(&self) -> anyhow::Result<Option<ResolvedChart>> {
        let (Some(repository), Some(name), Some(version)) =
            (&self.helm_repo, &self.chart, &self.chart_version)
        else {
            return Ok(None);
        };
        let credentials = match &self.helm_username {
            Some(username) => Some(Credentials {
                username: username.clone(),
                password: std::env::var("HEADWAY_HELM_PASSWORD")
                    .context("--helm-username needs the password in HEADWAY_HELM_PASSWORD")?,
            }),
            None => None,
        };
        let cache = ChartCache::new(chart_cache_dir())?;
        let reference = ChartRef {
            repository: repository.clone(),
            name: name.clone(),
            version: version.clone(),
        };
        let options = FetchChartOptions {
            credentials,
            plain_http: self.helm_plain_http,
            timeout: Duration::from_secs(self.timeout),
            ..FetchChartOptions::default()
        };
        let resolved = runtime()?
            .block_on(cache.fetch(&reference, &options))
            .with_context(|| format!("fetching chart {name} {version} from {repository}"))?;
        eprintln!(
            "headway: chart {} {} ({}) from {repository}",
            resolved.name, resolved.version, resolved.digest
        );
        Ok(Some(resolved))
    }

    /// The capabilities Helm charts see: `--kube-version`/`--api-versions`, or read from the
    /// cluster with `--cluster`; `None` for the default.
    pub fn capabilities(&self, cluster: &ClusterArgs) -> anyhow::Result<Option<Capabilities>> {
        if self.cluster {
            return cluster_capabilities(cluster).map(Some);
        }
        if !self.explicit_capabilities() {
            return Ok(None);
        }
        let caps = Capabilities {
            kube_version: self
                .kube_version
                .clone()
                .unwrap_or_else(|| headway_render::DEFAULT_KUBE_VERSION.into()),
            api_versions: self.api_versions.clone(),
        };
        caps.validate()
            .map_err(|e| anyhow::anyhow!("--kube-version/--api-versions: {e}"))?;
        Ok(Some(caps))
    }

    /// Whether `--kube-version` or `--api-versions` is given.
    fn explicit_capabilities(&self) -> bool {
        self.kube_version.is_some() || !self.api_versions.is_empty()
    }
}

/// The server's version and API versions, read from the cluster (one discovery).
fn cluster_capabilities(cluster: &ClusterArgs) -> anyhow::Result<Capabilities> {
    let caps = runtime()?.block_on(async {
        let engine = cluster.connect().await?.engine().await?;
        anyhow::Ok(
            engine
                .capabilities()
                .await
                .context("reading the cluster's version")?,
        )
    })?;
    Ok(Capabilities {
        kube_version: caps.kube_version,
        api_versions: caps.api_versions,
    })
}

/// The directory's name, as a release name (`release` when it has none, e.g. `/`).
fn chart_name(path: &Path) -> String {
    std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "release".into())
}

/// A rendered source and the sync name derived from it.
pub struct Rendered {
    pub set: RenderedSet,
    pub default_name: String,
}

/// Renders the source for `diff` and `apply`. Render errors are returned (all of them, as
/// `headway_render::RenderErrors`), so nothing is applied or pruned after a failed render. A
/// chart sees the target cluster's capabilities unless --kube-version or --api-versions says
/// otherwise.
pub fn render_source(args: &SourceArgs, cluster: &ClusterArgs) -> anyhow::Result<Rendered> {
    let input = args.input.resolve()?;
    let mut options = args.options(&input.dir, cluster)?;
    let is_helm = options.helm.chart.is_some()
        || match options.render_type {
            RenderType::Auto => headway_render::detect(&input.dir),
            explicit => explicit,
        } == RenderType::Helm;
    if is_helm && !args.cluster && !args.explicit_capabilities() {
        options.helm.capabilities = cluster_capabilities(cluster)?;
    }
    let manifests = headway_render::render(&input.dir, &options)?;
    let (revision, name_from) = match (&input.revision, &args.input.repo) {
        (Some(rev), Some(url)) => (
            rev.sha.clone(),
            url.trim_end_matches('/')
                .trim_end_matches(".git")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        _ => ("local".to_string(), dir_name(&input.dir)),
    };
    let set = RenderedSet::from_complete_render(revision, manifests)?;
    Ok(Rendered {
        set,
        default_name: label_value(&name_from),
    })
}

/// The dependencies of the chart in `dir` that `charts/` lacks, downloaded into the chart cache
/// as a GitSync's are (see docs/render.md): the chart renders as its controller would render it,
/// with no `helm dependency build` first.
fn fetch_dependencies(dir: &Path, timeout: Duration) -> anyhow::Result<Vec<PathBuf>> {
    let missing = headway_render::chart::missing_dependencies(dir)?;
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let cache = ChartCache::new(chart_cache_dir())?;
    let options = FetchChartOptions {
        timeout,
        ..FetchChartOptions::default()
    };
    let runtime = runtime()?;
    missing
        .iter()
        .map(|dep| {
            let resolved = runtime
                .block_on(cache.fetch(dep, &options))
                .with_context(|| {
                    format!(
                        "chart {}: fetching its dependency {} {} from {}",
                        dir.display(),
                        dep.name,
                        dep.version,
                        dep.repository
                    )
                })?;
            eprintln!(
                "dependency {} {} of {} (not in its charts/) from {}",
                resolved.name,
                resolved.version,
                dir.display(),
                dep.repository
            );
            Ok(resolved.archive)
        })
        .collect()
}

fn dir_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
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

/// The git cache: `$HEADWAY_GIT_CACHE`, else ~/.cache/headway/git.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("HEADWAY_GIT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/headway/git"))
}

/// The remote chart cache: `$HEADWAY_CHART_CACHE`, else ~/.cache/headway/charts.
pub fn chart_cache_dir() -> PathBuf {
    std::env::var_os("HEADWAY_CHART_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/headway/charts"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RenderArgs,
    }

    fn args(argv: &[&str]) -> RenderArgs {
        Cli::try_parse_from(std::iter::once("render").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        std::fs::create_dir_all(dir.join(rel).parent().unwrap()).unwrap();
        std::fs::write(dir.join(rel), text).unwrap();
    }

    #[test]
    fn options_follow_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "mychart/values-prod.yaml", "a: 1\n");
        let chart = dir.path().join("mychart");
        let values = chart.join("values-prod.yaml");
        let a = args(&[
            chart.to_str().unwrap(),
            "--type",
            "helm",
            "--helm-namespace",
            "apps",
            "--helm-values",
            values.to_str().unwrap(),
            "--timeout",
            "5",
        ]);
        let o = a.options(&chart, &ClusterArgs::default()).unwrap();
        assert_eq!(o.render_type, RenderType::Helm);
        assert_eq!(o.helm.release_name, "mychart");
        assert_eq!(o.helm.namespace, "apps");
        assert_eq!(
            o.helm.values_files,
            [std::fs::canonicalize(&values).unwrap()]
        );
        assert!(o.helm.include_crds);
        assert_eq!(o.tools.timeout, Duration::from_secs(5));
        assert_eq!(o.helm.capabilities, Capabilities::default());
        let a = args(&[
            chart.to_str().unwrap(),
            "--kube-version",
            "v1.31.2",
            "--api-versions",
            "policy/v1,policy/v1/PodDisruptionBudget",
            "--api-versions",
            "example.com/v1",
        ]);
        let o = a.options(&chart, &ClusterArgs::default()).unwrap();
        assert_eq!(o.helm.capabilities.kube_version, "v1.31.2");
        assert_eq!(
            o.helm.capabilities.api_versions,
            [
                "policy/v1",
                "policy/v1/PodDisruptionBudget",
                "example.com/v1"
            ]
        );
        let err = args(&[chart.to_str().unwrap(), "--kube-version", "latest"])
            .options(&chart, &ClusterArgs::default())
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("`latest` is not a Kubernetes version"),
            "{err:#}"
        );
        assert!(
            Cli::try_parse_from(["render", "x", "--cluster", "--kube-version", "v1.30.0"]).is_err()
        );
        let a = args(&[
            chart.to_str().unwrap(),
            "--helm-values",
            "/nonexistent.yaml",
        ]);
        assert!(a.options(&chart, &ClusterArgs::default()).is_err());
        // --decrypt-key is a source argument: every key file is read, a missing one named.
        let a = args(&[chart.to_str().unwrap()]);
        assert!(
            a.options(&chart, &ClusterArgs::default())
                .unwrap()
                .decryptor
                .is_none()
        );
        let a = args(&[
            chart.to_str().unwrap(),
            "--decrypt-key",
            "/nonexistent.agekey",
        ]);
        let err = a.options(&chart, &ClusterArgs::default()).unwrap_err();
        assert!(
            format!("{err:#}").contains("--decrypt-key /nonexistent.agekey"),
            "{err:#}"
        );
        assert!(Cli::try_parse_from(["render", "x", "--type", "jsonnet"]).is_err());
        // Something to render: a directory, --repo or --helm-repo.
        let err = Cli::try_parse_from(["render"]).err().unwrap().to_string();
        assert!(err.contains("--helm-repo"), "{err}");
        let a = args(&[
            "--helm-repo",
            "oci://r/c",
            "--chart",
            "c",
            "--version",
            "^1",
        ]);
        assert!(a.input.dir.is_none());
        assert!(Cli::try_parse_from(["render", "--helm-repo", "oci://r/c"]).is_err());
    }

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
