//! `--gitsync NAMESPACE/NAME` of `diff` and `render`: the GitSync is read from the cluster and
//! its settings used as the controller uses them (through `headway_controller::input`, the
//! controller's own mapping): repository URL and ref (the ref's newest commit, not the last
//! applied one), credentials and known_hosts of `spec.repository.secretRef`, `spec.path`, the
//! render type and Helm options, the cluster's capabilities, the SOPS keys of
//! `spec.decryption.secretRef`, `targetNamespace`, and the GitSync as the owner (its ownership
//! labels, its inventory). With a local DIR, DIR stands for `spec.path` (a change previewed
//! before it is pushed) and nothing is fetched from git.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use headway_apply::Engine;
use headway_controller::GitSync;
use headway_controller::input::{self, RenderDir, Renderer};
use headway_controller::outcome::Failure;
use headway_model::{RenderedSet, SyncOwner};
use headway_render::ToolOptions;
use headway_source::Cache;
use kube::api::Api;

use crate::cluster::Cluster;
use crate::input::{chart_cache_dir, default_cache_dir};

/// `--gitsync`, shared by `render` and `diff`. Every flag that says what to fetch or how to
/// render conflicts with it (a usage error, exit code 2): the GitSync says it.
#[derive(Debug, Clone, Args)]
pub struct GitSyncArgs {
    /// Take every setting from this GitSync in the cluster, as its controller does: repository,
    /// ref (its newest commit), credentials, path, render type, Helm options, decryption keys,
    /// target namespace, owner. With DIR: render DIR (standing for the GitSync's spec.path)
    /// instead of fetching the repository.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        value_parser = parse_key,
        group = "what_to_render",
        conflicts_with_all = [
            "repo", "reference", "repo_path", "username", "ssh_key", "known_hosts", "git_cache",
            "render_type", "helm_release", "helm_namespace", "helm_values", "helm_skip_crds",
            "kube_version", "api_versions", "cluster", "helm_repo", "chart", "chart_version",
            "helm_username", "helm_plain_http", "timeout", "decrypt_key",
        ]
    )]
    pub gitsync: Option<GitSyncKey>,
}

/// A GitSync's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSyncKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for GitSyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn parse_key(text: &str) -> Result<GitSyncKey, String> {
    match text.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(GitSyncKey {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(format!(
            "`{text}` is not NAMESPACE/NAME (the GitSync's namespace is part of the name)"
        )),
    }
}

/// A GitSync's objects, rendered as its controller renders them.
pub struct GitSyncRender {
    pub key: GitSyncKey,
    pub owner: SyncOwner,
    /// The namespace of namespaced objects that name none.
    pub default_namespace: String,
    /// `main@sha1:<sha>` (as the status names revisions), or `local DIR`.
    pub revision: String,
    pub set: RenderedSet,
}

/// A failure of the controller's mapping, as an error naming the GitSync.
fn failed(key: &GitSyncKey, failure: Failure) -> anyhow::Error {
    anyhow::anyhow!("GitSync {key}: {}", failure.message)
}

/// Reads the GitSync and renders it: from `dir` when given, else from its repository at the
/// newest commit of its ref.
pub async fn render(
    cluster: &Cluster,
    engine: &Engine,
    key: &GitSyncKey,
    dir: Option<&Path>,
) -> anyhow::Result<GitSyncRender> {
    let api: Api<GitSync> = Api::namespaced(cluster.client.clone(), &key.namespace);
    let obj = api
        .get_opt(&key.name)
        .await
        .with_context(|| format!("reading GitSync {key}"))?
        .ok_or_else(|| anyhow::anyhow!("GitSync {key} not found in the cluster"))?;
    let spec = obj
        .spec
        .effective()
        .map_err(|e| anyhow::anyhow!("GitSync {key}: {e}"))?;
    let owner = input::owner(&obj).map_err(|f| failed(key, f))?;
    let chart_cache = chart_cache_dir();
    let tools = ToolOptions::default();
    let renderer = Renderer {
        client: &cluster.client,
        engine,
        tools: &tools,
        chart_cache: &chart_cache,
    };
    let (render_dir, commit) = match dir {
        Some(dir) => (local_dir(dir)?, None),
        None => {
            let source = input::git_source(&cluster.client, &obj, &spec)
                .await
                .map_err(|f| failed(key, f))?;
            let cache_dir = default_cache_dir();
            let cache = Cache::new(&cache_dir)
                .with_context(|| format!("git cache {}", cache_dir.display()))?;
            let options = input::fetch_options(&spec);
            let revision =
                tokio::task::spawn_blocking(move || cache.fetch(&source, &options)).await?;
            let revision = revision.map_err(|e| failed(key, input::fetch_failure(&obj, &e)))?;
            for warning in &revision.warnings {
                eprintln!(
                    "warning: {}: {warning}",
                    headway_source::redact_url(&obj.spec.repository.url)
                );
            }
            (
                RenderDir::in_checkout(&revision.tree_dir, &spec),
                Some(revision.sha),
            )
        }
    };
    let chart = renderer
        .remote_chart(&obj, &spec)
        .await
        .map_err(|f| failed(key, f))?;
    // A local directory's set is revision `local`, as `diff DIR` names it.
    let (revision, shown) = match &commit {
        Some(sha) => {
            let text = input::revision_text(&spec, sha, chart.as_ref());
            (text.clone(), text)
        }
        None => ("local".to_string(), format!("local {}", render_dir.label)),
    };
    let set = renderer
        .render(&obj, &spec, &render_dir, &revision, chart.as_ref())
        .await
        .map_err(|f| failed(key, f))?;
    Ok(GitSyncRender {
        key: key.clone(),
        owner,
        default_namespace: input::default_namespace(&obj),
        revision: shown,
        set,
    })
}

/// A local directory standing for `spec.path`: its boundary is the git working tree it is in
/// (so `../base` and values files elsewhere in the repository resolve as in the checkout), or
/// the directory itself outside git.
fn local_dir(dir: &Path) -> anyhow::Result<RenderDir> {
    let canonical =
        std::fs::canonicalize(dir).with_context(|| format!("directory {}", dir.display()))?;
    if !canonical.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    let boundary = canonical
        .ancestors()
        .find(|d| d.join(".git").exists())
        .map_or_else(|| canonical.clone(), PathBuf::from);
    Ok(RenderDir {
        dir: canonical,
        boundary,
        label: dir.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespace_and_name() {
        assert_eq!(
            parse_key("apps/site").unwrap(),
            GitSyncKey {
                namespace: "apps".into(),
                name: "site".into()
            }
        );
        for bad in ["site", "/site", "apps/", "a/b/c", ""] {
            let err = parse_key(bad).unwrap_err();
            assert!(err.contains("NAMESPACE/NAME"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_local_directory_is_bounded_by_its_git_working_tree() {
        let root = tempfile::tempdir().unwrap();
        let repo = std::fs::canonicalize(root.path()).unwrap();
        std::fs::create_dir_all(repo.join("deploy/prod")).unwrap();
        let outside = local_dir(&repo.join("deploy/prod")).unwrap();
        assert_eq!(outside.boundary, repo.join("deploy/prod"));
        std::fs::create_dir(repo.join(".git")).unwrap();
        let inside = local_dir(&repo.join("deploy/prod")).unwrap();
        assert_eq!(inside.boundary, repo);
        assert_eq!(inside.dir, repo.join("deploy/prod"));
        let err = local_dir(&repo.join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }
}
