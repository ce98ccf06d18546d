//! What a GitSync's spec asks to fetch and how it is rendered: the git source with the
//! credentials of `spec.repository.secretRef`, the fetch options, the remote chart, the render
//! options (render type, Helm release, namespace, values, CRDs, the cluster's capabilities, the
//! SOPS keys of `spec.decryption`), the owner of its objects and their default namespace.
//!
//! The one mapping from a spec to the libraries' options, used by the pipeline's steps and by
//! `headway diff --gitsync` and `headway render --gitsync`, so that what the CLI shows is what
//! the controller applies. Every problem is a [`Failure`] with the controller's wording.

use std::path::{Path, PathBuf};

use headway_apply::Engine;
use headway_model::{RenderedSet, SyncOwner};
use headway_render::chart::{ChartCache, ChartRef, FetchChartOptions, ResolvedChart};
use headway_render::{Capabilities, HelmOptions, RenderOptions, RenderType, ToolOptions};
use headway_source::{FetchOptions, GitRef, Source, SourceError};

use crate::conditions::Reason;
use crate::context::key_of;
use crate::crd::{EffectiveSpec, GitSync};
use crate::credentials::{chart_credentials, credentials};
use crate::outcome::Failure;
use crate::progress::Stage;

/// The owner of a GitSync's objects: its namespace and name (the ownership labels and the
/// inventory `headway-inventory-<name>` in its namespace).
pub fn owner(obj: &GitSync) -> Result<SyncOwner, Failure> {
    let (ns, name) = key_of(obj);
    SyncOwner::new(&ns, &name).map_err(|e| Failure::new(Reason::InvalidSpec, e.to_string(), false))
}

/// The namespace of namespaced objects that name none: `spec.targetNamespace`, else the
/// GitSync's own.
pub fn default_namespace(obj: &GitSync) -> String {
    obj.spec
        .target_namespace
        .clone()
        .unwrap_or_else(|| key_of(obj).0)
}

/// The git source of `spec.repository`: URL, ref, and the credentials of its `secretRef`
/// (read with `client`) with `knownHosts`.
pub async fn git_source(
    client: &kube::Client,
    obj: &GitSync,
    spec: &EffectiveSpec,
) -> Result<Source, Failure> {
    let (ns, _) = key_of(obj);
    let auth = credentials(client, &ns, &obj.spec.repository).await?;
    Ok(Source::new(obj.spec.repository.url.clone(), spec.reference.clone()).with_auth(auth))
}

/// The options of the git fetch.
pub fn fetch_options(spec: &EffectiveSpec) -> FetchOptions {
    FetchOptions {
        timeout: spec.timeout,
        ..FetchOptions::default()
    }
}

/// A failed git fetch of the GitSync's repository.
pub fn fetch_failure(obj: &GitSync, e: &SourceError) -> Failure {
    Failure::at(
        Stage::Fetch,
        format!("fetching {}: {e}", obj.spec.repository.url),
        e.is_transient(),
    )
}

/// `main@sha1:<sha>`, `v1.2@sha1:<sha>` or `sha1:<sha>`.
pub fn revision_name(reference: &GitRef, sha: &str) -> String {
    match reference {
        GitRef::Branch(b) => format!("{b}@sha1:{sha}"),
        GitRef::Tag(t) => format!("{t}@sha1:{sha}"),
        GitRef::Commit(_) => format!("sha1:{sha}"),
    }
}

/// The revision as the status names it: the commit's ([`revision_name`]), with the remote
/// chart's version when there is one (`main@sha1:<sha>+chart:<name>@<version>`).
pub fn revision_text(spec: &EffectiveSpec, sha: &str, chart: Option<&ResolvedChart>) -> String {
    let commit = revision_name(&spec.reference, sha);
    match chart {
        Some(chart) => format!("{commit}+chart:{}", chart.revision()),
        None => commit,
    }
}

/// The directory a GitSync renders and the directory no symlink or values file may leave.
#[derive(Debug, Clone)]
pub struct RenderDir {
    /// The directory rendered.
    pub dir: PathBuf,
    /// The boundary: the checkout's root; it contains `dir`.
    pub boundary: PathBuf,
    /// How render errors name it: `spec.path` (`.` for the root), or a local directory.
    pub label: String,
}

impl RenderDir {
    /// `spec.path` of a checked-out tree.
    pub fn in_checkout(tree: &Path, spec: &EffectiveSpec) -> Self {
        RenderDir {
            dir: match &spec.path {
                Some(p) => tree.join(p),
                None => tree.to_path_buf(),
            },
            boundary: tree.to_path_buf(),
            label: spec.path.clone().unwrap_or_else(|| ".".into()),
        }
    }
}

/// What rendering a GitSync needs besides its spec: the client its Secrets are read with, the
/// engine that reads the cluster's capabilities, the tools, and the chart cache.
pub struct Renderer<'a> {
    pub client: &'a kube::Client,
    pub engine: &'a Engine,
    pub tools: &'a ToolOptions,
    /// The directory of the remote chart cache.
    pub chart_cache: &'a Path,
}

impl Renderer<'_> {
    /// The remote chart of `spec.render.helm.chart`, resolved, downloaded (unless cached) and
    /// verified; `None` when the chart is in git.
    pub async fn remote_chart(
        &self,
        obj: &GitSync,
        spec: &EffectiveSpec,
    ) -> Result<Option<ResolvedChart>, Failure> {
        let Some(chart) = obj.spec.render.helm.as_ref().and_then(|h| h.chart.as_ref()) else {
            return Ok(None);
        };
        let (ns, _) = key_of(obj);
        let credentials = chart_credentials(self.client, &ns, chart.secret_ref.as_ref()).await?;
        let reference = ChartRef {
            repository: chart.repository.clone(),
            name: chart.name.clone(),
            version: chart.version.clone(),
        };
        let options = FetchChartOptions {
            credentials,
            plain_http: chart.plain_http.unwrap_or(false),
            timeout: spec.timeout,
            ..FetchChartOptions::default()
        };
        let failed = |message: String, transient: bool| {
            Failure::at(
                Stage::Fetch,
                format!(
                    "fetching chart {} {} from {}: {message}",
                    chart.name, chart.version, chart.repository
                ),
                transient,
            )
        };
        let cache = ChartCache::new(self.chart_cache)
            .map_err(|e| failed(e.to_string(), e.is_transient()))?;
        cache
            .fetch(&reference, &options)
            .await
            .map(Some)
            .map_err(|e| failed(e.to_string(), e.is_transient()))
    }

    /// The dependencies of the chart in `dir` that git does not carry, downloaded (or found in
    /// the chart cache) and verified like a remote chart: their archives, for the render.
    async fn dependencies(
        &self,
        dir: &RenderDir,
        spec: &EffectiveSpec,
    ) -> Result<Vec<PathBuf>, Failure> {
        let path = &dir.label;
        let missing = headway_render::chart::missing_dependencies(&dir.dir)
            .map_err(|e| Failure::at(Stage::Render, format!("chart {path}: {e}"), false))?;
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let failed = |dep: &ChartRef, e: headway_render::chart::ChartError| {
            Failure::at(
                Stage::Render,
                format!(
                    "chart {path}: fetching its dependency {} {} from {}: {e}",
                    dep.name, dep.version, dep.repository
                ),
                e.is_transient(),
            )
        };
        let cache = ChartCache::new(self.chart_cache)
            .map_err(|e| Failure::at(Stage::Render, e.to_string(), e.is_transient()))?;
        let options = FetchChartOptions {
            timeout: spec.timeout,
            ..FetchChartOptions::default()
        };
        let mut archives = Vec::with_capacity(missing.len());
        for dep in &missing {
            let resolved = cache
                .fetch(dep, &options)
                .await
                .map_err(|e| failed(dep, e))?;
            archives.push(resolved.archive);
        }
        Ok(archives)
    }

    /// The render options of the GitSync for `dir`: render type, Helm options (release name
    /// default: the GitSync's name; namespace default: [`default_namespace`]; the cluster's
    /// capabilities for a chart, as Argo CD and Flux render them), the tools with the spec's
    /// timeout, and the decryptor of `spec.decryption`.
    pub async fn options(
        &self,
        obj: &GitSync,
        spec: &EffectiveSpec,
        dir: &RenderDir,
        chart: Option<&ResolvedChart>,
    ) -> Result<RenderOptions, Failure> {
        let (ns, name) = key_of(obj);
        let decryptor =
            crate::decryption::decryptor(self.client, &ns, obj.spec.decryption.as_ref()).await?;
        let helm = obj.spec.render.helm.clone().unwrap_or_default();
        let render_type = match obj.spec.render.render_type {
            _ if chart.is_some() => RenderType::Helm,
            RenderType::Auto => headway_render::detect(&dir.dir),
            explicit => explicit,
        };
        let capabilities = if render_type == RenderType::Helm {
            let caps = self.engine.capabilities().await.map_err(|e| {
                Failure::at(
                    Stage::Render,
                    format!("reading the cluster's version and API versions for Helm: {e}"),
                    true,
                )
            })?;
            Some(Capabilities {
                kube_version: caps.kube_version,
                api_versions: caps.api_versions,
            })
        } else {
            None
        };
        // Dependencies the chart's Chart.yaml names but git does not carry: downloaded, as Flux
        // and Argo CD build them (not for a remote chart: its archive holds its dependencies).
        let dependencies = if render_type == RenderType::Helm && chart.is_none() {
            self.dependencies(dir, spec).await?
        } else {
            Vec::new()
        };
        let mut options = RenderOptions {
            render_type: obj.spec.render.render_type,
            helm: HelmOptions::builder(name, default_namespace(obj))
                .release_name(helm.release_name)
                .namespace(helm.namespace)
                .values_files(helm.values_files)
                .include_crds(helm.include_crds)
                .capabilities(capabilities)
                .chart(chart.map(|c| c.archive.clone()))
                .values(helm.values)
                .dependencies(dependencies)
                .build(),
            tools: self.tools.clone(),
            boundary: Some(dir.boundary.clone()),
            decryptor,
            ..RenderOptions::default()
        };
        options.tools.timeout = spec.timeout;
        Ok(options)
    }

    /// Renders the GitSync's `dir`: the complete set of manifests of `revision` (named so in the
    /// set and in errors), or every error.
    pub async fn render(
        &self,
        obj: &GitSync,
        spec: &EffectiveSpec,
        dir: &RenderDir,
        revision: &str,
        chart: Option<&ResolvedChart>,
    ) -> Result<RenderedSet, Failure> {
        let options = self.options(obj, spec, dir, chart).await?;
        let path = dir.dir.clone();
        let rendered =
            tokio::task::spawn_blocking(move || headway_render::render(&path, &options)).await;
        let manifests = match rendered {
            Ok(Ok(m)) => m,
            Ok(Err(errors)) => {
                return Err(Failure::at(
                    Stage::Render,
                    format!("rendering {} at {revision}: {errors}", dir.label),
                    false,
                ));
            }
            Err(e) => {
                return Err(Failure::at(
                    Stage::Render,
                    format!("render task: {e}"),
                    true,
                ));
            }
        };
        RenderedSet::from_complete_render(revision.to_string(), manifests)
            .map_err(|e| Failure::at(Stage::Render, e.to_string(), false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_named_after_the_ref() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            revision_name(&GitRef::Branch("main".into()), sha),
            format!("main@sha1:{sha}")
        );
        assert_eq!(
            revision_name(&GitRef::Tag("v1".into()), sha),
            format!("v1@sha1:{sha}")
        );
        assert_eq!(
            revision_name(&GitRef::Commit(sha.into()), sha),
            format!("sha1:{sha}")
        );
    }

    fn gitsync(spec: serde_json::Value) -> GitSync {
        let mut obj = GitSync::new("site", serde_json::from_value(spec).unwrap());
        obj.metadata.namespace = Some("apps".into());
        obj
    }

    #[test]
    fn the_owner_and_the_default_namespace_come_from_the_gitsync() {
        let obj = gitsync(serde_json::json!({"repository": {"url": "git://h/r"}}));
        assert_eq!(
            owner(&obj).unwrap(),
            SyncOwner::new("apps", "site").unwrap()
        );
        assert_eq!(default_namespace(&obj), "apps");
        let obj = gitsync(serde_json::json!({
            "repository": {"url": "git://h/r"}, "targetNamespace": "web"
        }));
        assert_eq!(default_namespace(&obj), "web");
    }

    #[test]
    fn a_checkout_renders_spec_path_inside_its_root() {
        let obj = gitsync(serde_json::json!({
            "repository": {"url": "git://h/r", "ref": {"tag": "v1"}}, "path": "deploy/prod"
        }));
        let spec = obj.spec.effective().unwrap();
        let dir = RenderDir::in_checkout(Path::new("/cache/tree"), &spec);
        assert_eq!(dir.dir, Path::new("/cache/tree/deploy/prod"));
        assert_eq!(dir.boundary, Path::new("/cache/tree"));
        assert_eq!(dir.label, "deploy/prod");
        assert_eq!(revision_text(&spec, "abc", None), "v1@sha1:abc");
        let root = RenderDir::in_checkout(
            Path::new("/t"),
            &gitsync(serde_json::json!({"repository": {"url": "git://h/r"}}))
                .spec
                .effective()
                .unwrap(),
        );
        assert_eq!(
            (root.dir.as_path(), root.label.as_str()),
            (Path::new("/t"), ".")
        );
    }
}
