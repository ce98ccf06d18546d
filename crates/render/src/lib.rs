//! Render: turns a directory (a file tree checked out from git) into validated, digested
//! [`Manifest`]s.
//!
//! # Source types and detection
//! [`SourceType::Auto`] looks at the rendered directory itself (not below it):
//! a `kustomization.yaml`, `kustomization.yml` or `Kustomization` file means Kustomize (it wins
//! over a `Chart.yaml`, since kustomize can inflate charts), a `Chart.yaml` means Helm, anything
//! else is a plain directory of YAML/JSON manifests. An explicit type overrides detection.
//!
//! # Plain directories
//! - Walked recursively; files ending in `.yaml`, `.yml` or `.json` are read, in byte order of
//!   their relative path (`/`-separated), so the result is deterministic.
//! - Hidden entries (name starting with `.`, e.g. `.git`, `.github`) are skipped.
//! - Tool configuration is not a Kubernetes object and is skipped by name anywhere in the tree:
//!   [`NOT_MANIFESTS`] (`kustomization.yaml`, `Chart.yaml`, `values.yaml`, ...).
//! - A subdirectory holding a kustomization or a `Chart.yaml` is skipped whole: it is a Kustomize
//!   or Helm source (templates are not YAML) and must be rendered on its own.
//! - Every other document must be a Kubernetes object: a mapping with a non-empty `apiVersion`,
//!   `kind` and `metadata.name`. Anything else is an error naming file, document and line.
//! - Empty documents (only comments, or `null`) are skipped but still count in document indexes.
//! - `kind: List` (and typed lists such as `ConfigMapList` with an `items` array) are flattened;
//!   items of a typed list may omit `kind`/`apiVersion`, which are taken from the list.
//!
//! # YAML semantics
//! YAML is read as kubectl reads it (go-yaml, YAML 1.1): `yes`/`no`/`on`/`off` are booleans,
//! `0755` is the octal number 493, anchors and merge keys are expanded. Documents are split at
//! lines starting with `---` (followed by nothing or whitespace) and after `...` lines, then
//! parsed one by one so that every broken document is reported. A duplicate mapping key is an
//! error (kubectl accepts it silently; Headway refuses the ambiguity). JSON files are read as JSON
//! streams, also refusing duplicate keys.
//!
//! # Kustomize and Helm
//! Run as child processes: `kustomize build DIR` (or `kubectl kustomize DIR` when `kustomize` is
//! not on `PATH`), and `helm template RELEASE DIR --namespace NS --values F... [--include-crds]`.
//! The environment is cleared except `PATH`; `HOME`, the Helm and XDG directories point into a
//! private temporary directory, `KUBECONFIG=/dev/null`, and HTTP(S) proxies point at a closed
//! local port so that remote bases and chart repositories cannot be fetched. Helm's
//! `dependency update` is never run: charts must vendor their dependencies under `charts/`.
//! A tool that runs longer than [`ToolOptions::timeout`] is killed with its process group; its
//! standard error is part of every tool error. Before running a tool, every symlink under the
//! boundary is checked.
//!
//! # Safety limits
//! [`Limits`] caps file size (16 MiB by default), total bytes, the number of files and objects, and
//! tool output. A symlink whose target leaves the boundary directory ([`RenderOptions::boundary`],
//! by default the rendered directory) is an error; symlinked files inside it are read; symlinked
//! directories are not followed.
//!
//! # Errors
//! [`render`] returns every problem at once as [`RenderErrors`]: invalid YAML (file, document,
//! line), documents that are not objects, objects defined twice (both places), size limits,
//! symlinks, tool failures with their stderr.
#![forbid(unsafe_code)]

mod collect;
mod error;
mod plain;
mod tool;
mod tools;
mod walk;
mod yaml;

pub mod output;

use std::ffi::OsString;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use error::{RenderError, RenderErrors};
use headway_model::Manifest;
pub use walk::{KUSTOMIZATION_FILES, NOT_MANIFESTS};

/// How a directory is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SourceType {
    /// Detect from the directory's contents (see the crate documentation).
    #[default]
    Auto,
    /// A directory of YAML/JSON manifests.
    Plain,
    /// `kustomize build`.
    Kustomize,
    /// `helm template`.
    Helm,
}

impl SourceType {
    /// The lower-case name, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Auto => "auto",
            SourceType::Plain => "plain",
            SourceType::Kustomize => "kustomize",
            SourceType::Helm => "helm",
        }
    }
}

impl fmt::Display for SourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(SourceType::Auto),
            "plain" => Ok(SourceType::Plain),
            "kustomize" => Ok(SourceType::Kustomize),
            "helm" => Ok(SourceType::Helm),
            other => Err(format!(
                "unknown source type `{other}` (expected auto, plain, kustomize or helm)"
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
}

impl Default for HelmOptions {
    fn default() -> Self {
        HelmOptions {
            release_name: "release".into(),
            namespace: "default".into(),
            values_files: Vec::new(),
            include_crds: true,
        }
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

/// Everything [`render`] needs besides the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// How to render; [`SourceType::Auto`] detects.
    pub source_type: SourceType,
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
}

/// Resolves [`SourceType::Auto`] for a directory: kustomization first, then `Chart.yaml`, else plain.
pub fn detect(dir: &Path) -> SourceType {
    if walk::is_kustomize_dir(dir) {
        SourceType::Kustomize
    } else if walk::is_helm_dir(dir) {
        SourceType::Helm
    } else {
        SourceType::Plain
    }
}

/// Renders `dir` into manifests, in source order (file order, then document order; the tool's
/// output order for kustomize and helm).
///
/// Every problem is reported: on failure the error lists all of them.
pub fn render(dir: &Path, options: &RenderOptions) -> Result<Vec<Manifest>, RenderErrors> {
    let dir = match std::fs::canonicalize(dir) {
        Ok(d) if d.is_dir() => d,
        _ => {
            return Err(RenderError::NotADirectory {
                path: dir.to_path_buf(),
            }
            .into());
        }
    };
    let boundary = match &options.boundary {
        None => dir.clone(),
        Some(b) => match std::fs::canonicalize(b) {
            Ok(b) if dir.starts_with(&b) => b,
            _ => {
                return Err(RenderError::InvalidOption(format!(
                    "the boundary {} does not contain {}",
                    b.display(),
                    dir.display()
                ))
                .into());
            }
        },
    };
    let source_type = match options.source_type {
        SourceType::Auto => detect(&dir),
        explicit => explicit,
    };
    let mut errors = Vec::new();
    let mut manifests = match source_type {
        SourceType::Plain | SourceType::Auto => {
            plain::render(&dir, &boundary, options, &mut errors)
        }
        SourceType::Kustomize => tools::kustomize(&dir, &boundary, options, &mut errors),
        SourceType::Helm => tools::helm(&dir, &boundary, options, &mut errors),
    };
    if manifests.len() > options.limits.max_objects {
        errors.push(RenderError::TooManyObjects {
            limit: options.limits.max_objects,
        });
        manifests.truncate(options.limits.max_objects);
    }
    collect::check_duplicates(&manifests, &mut errors);
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(RenderErrors(errors))
    }
}

/// Parses a YAML stream (e.g. saved `kubectl kustomize` output) into manifests, with the same
/// rules as a plain file: `file` names the stream in locations and errors.
pub fn parse_manifests(text: &str, file: &str) -> Result<Vec<Manifest>, RenderErrors> {
    let (manifests, mut errors) = yaml::with_big_stack(|| {
        let (mut docs, mut errors, mut manifests) = (Vec::new(), Vec::new(), Vec::new());
        yaml::parse_stream(text, file, &mut docs, &mut errors);
        collect::to_manifests(docs, &mut manifests, &mut errors);
        (manifests, errors)
    });
    collect::check_duplicates(&manifests, &mut errors);
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(RenderErrors(errors))
    }
}
