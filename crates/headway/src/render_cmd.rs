//! `headway render PATH|--repo URL|--gitsync NS/NAME [DIR]`: renders a directory (plain YAML,
//! Kustomize or Helm), or a GitSync as its controller does, and prints the manifests in apply
//! order, or every error found, with exit code 1.

use headway_model::Manifest;
use headway_render::output;

use crate::cluster::{ClusterArgs, runtime};
use crate::gitsync_input;
use crate::input::{OutputFormat, RenderArgs};

/// Renders and formats; the manifests are sorted in apply order. `cluster` is only talked to
/// with `--cluster`.
pub fn render_to_string(cluster: &ClusterArgs, args: &RenderArgs) -> anyhow::Result<String> {
    let mut manifests: Vec<Manifest> = match &args.gitsync.gitsync {
        Some(key) => {
            let rendered = runtime()?.block_on(async {
                let cluster = cluster.connect().await?;
                let engine = cluster.engine().await?;
                gitsync_input::render(&cluster, &engine, key, args.input.dir.as_deref()).await
            })?;
            eprintln!("headway: GitSync {key} at {}", rendered.revision);
            rendered.set.into_manifests()
        }
        None => {
            let input = args.input.resolve()?;
            if let Some(revision) = &input.revision {
                eprintln!(
                    "headway: {} at commit {}",
                    headway_source::redact_url(args.input.repo.as_deref().unwrap_or_default()),
                    revision.sha
                );
            }
            let options = args.options(&input.dir, cluster)?;
            headway_render::render(&input.dir, &options)?
        }
    };
    headway_model::order::sort_for_apply(&mut manifests);
    Ok(match args.output {
        OutputFormat::Yaml => output::to_yaml_stream(&manifests),
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&output::to_list(&manifests))?;
            s.push('\n');
            s
        }
    })
}

/// Runs `headway render`: prints the manifests on stdout. When rendering fails, every problem
/// is in the returned error.
pub fn run(cluster: &ClusterArgs, args: RenderArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let text = render_to_string(cluster, &args)?;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `headway render . | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;

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
    fn prints_yaml_in_apply_order_and_json_lists() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: demo}\nspec: {paused: yes}\n",
        );
        write(
            dir.path(),
            "b.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: demo}\ndata: {flag: \"on\"}\n",
        );
        let p = dir.path().to_str().unwrap();
        let yaml = render_to_string(&ClusterArgs::default(), &args(&[p])).unwrap();
        let kinds: Vec<&str> = yaml
            .lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .collect();
        assert_eq!(kinds, ["Namespace", "ConfigMap", "Deployment"]);
        assert!(
            yaml.starts_with("---\napiVersion: v1\nkind: Namespace\n"),
            "{yaml}"
        );
        assert!(yaml.contains("flag: \"on\""), "{yaml}");
        assert!(yaml.contains("paused: true"), "{yaml}");

        let json = render_to_string(&ClusterArgs::default(), &args(&[p, "-o", "json"])).unwrap();
        let list: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"][2]["spec"]["paused"], true);
    }

    #[test]
    fn every_error_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", "kind: X\n---\nb: [\n");
        let err = render_to_string(
            &ClusterArgs::default(),
            &args(&[dir.path().to_str().unwrap()]),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with("rendering failed with 2 errors:"),
            "{text}"
        );
        assert!(text.contains("a.yaml (document 0, line 1)"), "{text}");
        assert!(text.contains("a.yaml (document 1, line 3)"), "{text}");
    }
}
