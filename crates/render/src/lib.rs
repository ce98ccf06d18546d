//! Render: turns a directory (a file tree checked out from git) into validated, digested
//! [`Manifest`]s.
//!
//! # Render types and detection
//! [`RenderType::Auto`] looks at the rendered directory itself (not below it):
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
//! Run as child processes: `kustomize build --enable-helm --helm-command HELM DIR` (or `kubectl
//! kustomize ...` when `kustomize` is not on `PATH`; `helmCharts` must be vendored), and `helm template RELEASE DIR --namespace NS --values F... [--include-crds]
//! --kube-version V --api-versions A...` with the target cluster's [`Capabilities`] (or
//! [`DEFAULT_KUBE_VERSION`] when the cluster is not known).
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

pub mod chart;
mod collect;
mod decrypt;
mod error;
mod options;
mod plain;
mod tool;
mod tools;
mod walk;
mod yaml;

pub mod output;

use std::path::Path;

pub use decrypt::{DecryptDocument, Decryptor, is_encrypted};
pub use error::{RenderError, RenderErrors};
use headway_model::Manifest;
pub use options::{
    Capabilities, DEFAULT_KUBE_VERSION, HelmOptions, HelmOptionsBuilder, Limits, RenderOptions,
    RenderType, ToolOptions,
};
pub use walk::{KUSTOMIZATION_FILES, NOT_MANIFESTS};

/// Resolves [`RenderType::Auto`] for a directory: kustomization first, then `Chart.yaml`, else plain.
pub fn detect(dir: &Path) -> RenderType {
    if walk::is_kustomize_dir(dir) {
        RenderType::Kustomize
    } else if walk::is_helm_dir(dir) {
        RenderType::Helm
    } else {
        RenderType::Plain
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
    let render_type = match options.render_type {
        // A fetched chart is rendered with the directory's values.
        _ if options.helm.chart.is_some() => RenderType::Helm,
        RenderType::Auto => detect(&dir),
        explicit => explicit,
    };
    let mut errors = Vec::new();
    let mut manifests = match render_type {
        RenderType::Plain | RenderType::Auto => {
            plain::render(&dir, &boundary, options, &mut errors)
        }
        RenderType::Kustomize => tools::kustomize(&dir, &boundary, options, &mut errors),
        RenderType::Helm => tools::helm(&dir, &boundary, options, &mut errors),
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
