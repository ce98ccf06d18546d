//! The options of a render: [`RenderType`] (how a directory is rendered), [`HelmOptions`] and
//! their builder, the target cluster's [`Capabilities`], [`ToolOptions`], [`Limits`], and
//! [`RenderOptions`] that holds them all.
//!
//! A leaf module: it imports nothing from the rest of the crate.

use std::ffi::OsString;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a directory is rendered: the one render-type enum of Headway, used by the library, the
/// CLI's `--type` and the GitSync CRD's `render.type`.
///
/// Names: [`FromStr`], [`Display`](fmt::Display) and clap (feature `clap`) use lower case
/// (`auto`, `plain`, `kustomize`, `helm`); serde and the JSON schema (feature `schemars`) use
/// the variant names (`Auto`, `Plain`, `Kustomize`, `Helm`), as the CRD always has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub enum RenderType {
    /// Detect from the directory.
    #[default]
    Auto,
    /// YAML/JSON files.
    Plain,
    /// `kustomize build` (or `kubectl kustomize`).
    Kustomize,
    /// `helm template`.
    Helm,
}

impl RenderType {
    /// The lower-case name, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            RenderType::Auto => "auto",
            RenderType::Plain => "plain",
            RenderType::Kustomize => "kustomize",
            RenderType::Helm => "helm",
        }
    }
}

impl fmt::Display for RenderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RenderType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RenderType::Auto),
            "plain" => Ok(RenderType::Plain),
            "kustomize" => Ok(RenderType::Kustomize),
            "helm" => Ok(RenderType::Helm),
            other => Err(format!(
                "unknown render type `{other}` (expected auto, plain, kustomize or helm)"
            )),
        }
    }
}

/// Size and count limits that protect the renderer from hostile or broken repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest file read, in bytes. Default 16 MiB.
    pub max_file_bytes: u64,
    /// Largest sum of manifest file sizes, in bytes. Default 256 MiB.
    pub max_total_bytes: u64,
    /// Most manifest files in a plain directory. Default 20,000.
    pub max_files: usize,
    /// Most objects rendered. Default 100,000.
    pub max_objects: usize,
    /// Largest output accepted from kustomize or helm, in bytes. Default 256 MiB.
    pub max_tool_output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 16 << 20,
            max_total_bytes: 256 << 20,
            max_files: 20_000,
            max_objects: 100_000,
            max_tool_output_bytes: 256 << 20,
        }
    }
}

/// The Kubernetes version Helm templates see when the target cluster is not known: the newest
/// minor the bundled tools support (the client-go minor of the pinned Helm, see
/// xtask/go/helm/go.mod; a test keeps the two equal). Helm's own built-in default is 1.20 unless
/// its build says otherwise.
pub const DEFAULT_KUBE_VERSION: &str = "v1.37.0";

/// The target cluster as Helm templates see it (`.Capabilities`): `helm template --kube-version
/// V --api-versions A...`, as Argo CD passes them from the destination cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// `.Capabilities.KubeVersion`: the API server's version (`v1.36.3`). Default
    /// [`DEFAULT_KUBE_VERSION`].
    pub kube_version: String,
    /// Added to `.Capabilities.APIVersions`: every `group/version` and `group/version/Kind` the
    /// server serves (core: `v1`, `v1/Pod`). Helm keeps its built-in list (the API versions its
    /// client library knows) beside them, so `Has` is never false for a built-in group/version.
    pub api_versions: Vec<String>,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            kube_version: DEFAULT_KUBE_VERSION.into(),
            api_versions: Vec::new(),
        }
    }
}

impl Capabilities {
    /// Checks the values before they reach Helm: a version `[v]MAJOR.MINOR[.PATCH][-pre][+build]`
    /// and API versions without spaces or commas (Helm would split them).
    pub fn validate(&self) -> Result<(), String> {
        let v = self.kube_version.trim_start_matches('v');
        let core = v.split(['-', '+']).next().unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        if !(2..=3).contains(&parts.len())
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!(
                "kube version `{}` is not a Kubernetes version such as v1.36.3",
                self.kube_version
            ));
        }
        if let Some(bad) = self
            .api_versions
            .iter()
            .find(|a| a.is_empty() || a.starts_with('/') || a.contains([',', ' ', '\t', '\n']))
        {
            return Err(format!(
                "API version `{bad}` is not of the form group/version or group/version/Kind"
            ));
        }
        Ok(())
    }
}

/// Options for `helm template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmOptions {
    /// Release name (`.Release.Name`). Default `release`.
    pub release_name: String,
    /// Release namespace (`--namespace`, `.Release.Namespace`). Default `default`.
    pub namespace: String,
    /// Values files, in order. Relative paths are relative to the chart directory and must stay
    /// inside the boundary; absolute paths are used as given (trusted callers only, e.g. the CLI).
    pub values_files: Vec<PathBuf>,
    /// Pass `--include-crds`. Default true.
    pub include_crds: bool,
    /// The target cluster's version and API versions (`--kube-version`, `--api-versions`).
    pub capabilities: Capabilities,
    /// A chart archive (or directory) to render instead of the rendered directory: a remote chart
    /// fetched by [`chart`](crate::chart). The rendered directory then only holds values files
    /// (its `values.yaml` is used when `values_files` is empty), so git stays the source of truth.
    pub chart: Option<PathBuf>,
    /// Inline values, given to Helm after the values files (they win).
    pub values: Option<serde_json::Value>,
    /// Archives of the chart's dependencies that git does not carry (see
    /// [`missing_dependencies`](crate::chart::missing_dependencies)), fetched by the caller: the
    /// chart is rendered from a copy whose `charts/` holds them, as `helm dependency build`
    /// would leave it (Helm reads every archive there, whatever its file name).
    pub dependencies: Vec<PathBuf>,
}

impl Default for HelmOptions {
    fn default() -> Self {
        HelmOptions {
            release_name: "release".into(),
            namespace: "default".into(),
            values_files: Vec::new(),
            include_crds: true,
            capabilities: Capabilities::default(),
            chart: None,
            values: None,
            dependencies: Vec::new(),
        }
    }
}

impl HelmOptions {
    /// Starts [`HelmOptions`] whose release name and namespace default to the given ones (the
    /// caller's context: the chart directory's name for the CLI, the GitSync's name and target
    /// namespace for the controller), with no values files and `--include-crds`.
    pub fn builder(
        default_release_name: impl Into<String>,
        default_namespace: impl Into<String>,
    ) -> HelmOptionsBuilder {
        HelmOptionsBuilder(HelmOptions {
            release_name: default_release_name.into(),
            namespace: default_namespace.into(),
            ..HelmOptions::default()
        })
    }
}

/// Builds [`HelmOptions`] from what a user set: each `None` keeps the default. The one place
/// where the CLI's flags and the GitSync's `render.helm` become Helm options.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct HelmOptionsBuilder(HelmOptions);

impl HelmOptionsBuilder {
    /// The release name, if the user set one.
    pub fn release_name(mut self, name: Option<String>) -> Self {
        if let Some(name) = name {
            self.0.release_name = name;
        }
        self
    }

    /// The release namespace, if the user set one.
    pub fn namespace(mut self, namespace: Option<String>) -> Self {
        if let Some(namespace) = namespace {
            self.0.namespace = namespace;
        }
        self
    }

    /// The values files, in order (see [`HelmOptions::values_files`] for relative paths).
    pub fn values_files<P: Into<PathBuf>>(mut self, files: impl IntoIterator<Item = P>) -> Self {
        self.0.values_files = files.into_iter().map(Into::into).collect();
        self
    }

    /// Whether to pass `--include-crds`, if the user said; default true.
    pub fn include_crds(mut self, include: Option<bool>) -> Self {
        if let Some(include) = include {
            self.0.include_crds = include;
        }
        self
    }

    /// The target cluster's capabilities, if known; default [`Capabilities::default`].
    pub fn capabilities(mut self, capabilities: Option<Capabilities>) -> Self {
        if let Some(capabilities) = capabilities {
            self.0.capabilities = capabilities;
        }
        self
    }

    /// A fetched chart archive to render instead of the directory, if any.
    pub fn chart(mut self, archive: Option<PathBuf>) -> Self {
        self.0.chart = archive;
        self
    }

    /// Inline values, if any (a mapping).
    pub fn values(mut self, values: Option<serde_json::Value>) -> Self {
        self.0.values = values;
        self
    }

    /// Archives of dependencies git does not carry ([`HelmOptions::dependencies`]).
    pub fn dependencies(mut self, archives: Vec<PathBuf>) -> Self {
        self.0.dependencies = archives;
        self
    }

    /// The options.
    pub fn build(self) -> HelmOptions {
        self.0
    }
}

/// How external tools are found and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOptions {
    /// Longest a tool may run before it is killed. Default 60 s.
    pub timeout: Duration,
    /// The `kustomize` binary; default: `kustomize` on `PATH`.
    pub kustomize: Option<PathBuf>,
    /// The `kubectl` binary, used as `kubectl kustomize` when there is no `kustomize`; default:
    /// `kubectl` on `PATH`.
    pub kubectl: Option<PathBuf>,
    /// The `helm` binary; default: `helm` on `PATH`.
    pub helm: Option<PathBuf>,
    /// The `PATH` used to find the tools and given to them; default: this process's `PATH`.
    pub path: Option<OsString>,
}

impl Default for ToolOptions {
    fn default() -> Self {
        ToolOptions {
            timeout: Duration::from_secs(60),
            kustomize: None,
            kubectl: None,
            helm: None,
            path: None,
        }
    }
}

/// Everything [`render`](crate::render) needs besides the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// How to render; [`RenderType::Auto`] detects.
    pub render_type: RenderType,
    /// Options for Helm charts.
    pub helm: HelmOptions,
    /// External tools.
    pub tools: ToolOptions,
    /// Size and count limits.
    pub limits: Limits,
    /// The directory no symlink may point out of (e.g. the git checkout); default: the rendered
    /// directory. It must contain the rendered directory.
    pub boundary: Option<PathBuf>,
    /// Threads used to parse plain files; default: the available parallelism (at most 8).
    pub parallelism: Option<NonZeroUsize>,
    /// Decrypts SOPS-encrypted documents; `None`: an encrypted document is an error.
    pub decryptor: Option<crate::Decryptor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_type_names() {
        for t in [
            RenderType::Auto,
            RenderType::Plain,
            RenderType::Kustomize,
            RenderType::Helm,
        ] {
            assert_eq!(t.as_str().parse::<RenderType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
            // serde keeps the CRD's names.
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{t:?}\""));
            assert_eq!(serde_json::from_str::<RenderType>(&json).unwrap(), t);
        }
        let err = "jsonnet".parse::<RenderType>().unwrap_err();
        assert!(
            err.contains("jsonnet") && err.contains("kustomize"),
            "{err}"
        );
    }

    #[test]
    fn helm_builder_keeps_defaults_for_unset_values() {
        let unset = HelmOptions::builder("web", "apps")
            .release_name(None)
            .namespace(None)
            .values_files(Vec::<PathBuf>::new())
            .include_crds(None)
            .build();
        assert_eq!(
            unset,
            HelmOptions {
                release_name: "web".into(),
                namespace: "apps".into(),
                values_files: vec![],
                include_crds: true,
                capabilities: Capabilities::default(),
                chart: None,
                values: None,
                dependencies: vec![],
            }
        );
        let set = HelmOptions::builder("web", "apps")
            .release_name(Some("api".into()))
            .namespace(Some("prod".into()))
            .values_files(["values-prod.yaml", "extra.yaml"])
            .include_crds(Some(false))
            .capabilities(Some(Capabilities {
                kube_version: "v1.33.1".into(),
                api_versions: vec!["policy/v1".into()],
            }))
            .build();
        assert_eq!(
            set,
            HelmOptions {
                release_name: "api".into(),
                namespace: "prod".into(),
                values_files: vec!["values-prod.yaml".into(), "extra.yaml".into()],
                include_crds: false,
                capabilities: Capabilities {
                    kube_version: "v1.33.1".into(),
                    api_versions: vec!["policy/v1".into()],
                },
                chart: None,
                values: None,
                dependencies: vec![],
            }
        );
    }

    #[test]
    fn capabilities_are_validated() {
        let caps = |v: &str, apis: &[&str]| Capabilities {
            kube_version: v.into(),
            api_versions: apis.iter().map(|a| a.to_string()).collect(),
        };
        for ok in ["v1.36.3", "1.36", "v1.36.3-rc.1", "v1.36.3+k3s1"] {
            assert_eq!(
                caps(ok, &["v1", "policy/v1/PodDisruptionBudget"]).validate(),
                Ok(())
            );
        }
        for bad in ["", "v1", "latest", "v1.x.0", "1..3"] {
            let err = caps(bad, &[]).validate().unwrap_err();
            assert!(err.contains("not a Kubernetes version"), "{bad}: {err}");
        }
        for bad in ["", "a,b", "policy/v1 x", "/v1"] {
            let err = caps("v1.36.0", &[bad]).validate().unwrap_err();
            assert!(err.contains("group/version"), "{bad}: {err}");
        }
    }

    /// The default Kubernetes version follows the Helm that xtask builds: its client-go minor.
    #[test]
    fn default_kube_version_is_the_tools_newest_minor() {
        let go_mod =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../xtask/go/helm/go.mod");
        let text = std::fs::read_to_string(&go_mod).unwrap();
        let client_go = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("k8s.io/client-go "))
            .expect("helm's go.mod requires k8s.io/client-go");
        let minor = client_go.trim_start_matches('v').split('.').nth(1).unwrap();
        assert_eq!(
            DEFAULT_KUBE_VERSION,
            format!("v1.{minor}.0"),
            "update DEFAULT_KUBE_VERSION with helm's client-go ({client_go})"
        );
    }
}
