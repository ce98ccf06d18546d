//! `headway render PATH|--repo URL`: renders a directory (plain YAML, Kustomize or Helm) and
//! prints the manifests in apply order, or every error found, with exit code 1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use headway_model::Manifest;
use headway_render::{HelmOptions, RenderOptions, RenderType, output};

use crate::input::InputArgs;

/// Arguments of `headway render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The directory to render, or the repository to fetch it from.
    #[command(flatten)]
    pub input: InputArgs,
    /// How to render it; `auto` detects a kustomization, then a Chart.yaml, else plain YAML.
    #[arg(long = "type", value_enum, default_value_t = RenderType::Auto)]
    pub render_type: RenderType,
    /// Output format: a YAML stream (`---` between documents) or one JSON `v1 List`
    /// (both can be piped to `kubectl apply -f -`).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
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
    /// Seconds kustomize or helm may run before they are killed.
    #[arg(long, default_value_t = 60)]
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

impl RenderArgs {
    /// The library options these arguments ask for.
    pub fn options(&self, dir: &Path) -> anyhow::Result<RenderOptions> {
        // Values files named on the command line are the user's own: make them absolute.
        let values_files = self
            .helm_values
            .iter()
            .map(|v| {
                std::fs::canonicalize(v).with_context(|| format!("--helm-values {}", v.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut options = RenderOptions {
            render_type: self.render_type,
            helm: HelmOptions::builder(chart_name(dir), "default")
                .release_name(self.helm_release.clone())
                .namespace(Some(self.helm_namespace.clone()))
                .values_files(values_files)
                .include_crds(Some(!self.helm_skip_crds))
                .build(),
            ..RenderOptions::default()
        };
        options.tools.timeout = Duration::from_secs(self.timeout);
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
}

/// The directory's name, as a release name (`release` when it has none, e.g. `/`).
fn chart_name(path: &Path) -> String {
    std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "release".into())
}

/// Renders and formats; the manifests are sorted in apply order.
pub fn render_to_string(args: &RenderArgs) -> anyhow::Result<String> {
    let input = args.input.resolve()?;
    if let Some(revision) = &input.revision {
        eprintln!(
            "headway: {} at commit {}",
            headway_source::redact_url(args.input.repo.as_deref().unwrap_or_default()),
            revision.sha
        );
    }
    let options = args.options(&input.dir)?;
    let mut manifests: Vec<Manifest> = headway_render::render(&input.dir, &options)?;
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

/// Runs `headway render`: prints the manifests on stdout. When rendering fails, prints every
/// problem on stderr and exits with code 1; other failures (bad flags) are returned.
pub fn run(args: RenderArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let text = match render_to_string(&args) {
        Ok(text) => text,
        Err(e) => match e.downcast_ref::<headway_render::RenderErrors>() {
            Some(errors) => {
                eprintln!("error: {errors}");
                std::process::exit(1);
            }
            None => return Err(e),
        },
    };
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
        let yaml = render_to_string(&args(&[p])).unwrap();
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

        let json = render_to_string(&args(&[p, "-o", "json"])).unwrap();
        let list: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"][2]["spec"]["paused"], true);
    }

    #[test]
    fn every_error_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", "kind: X\n---\nb: [\n");
        let err = render_to_string(&args(&[dir.path().to_str().unwrap()])).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with("rendering failed with 2 errors:"),
            "{text}"
        );
        assert!(text.contains("a.yaml (document 0, line 1)"), "{text}");
        assert!(text.contains("a.yaml (document 1, line 3)"), "{text}");
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
        let o = a.options(&chart).unwrap();
        assert_eq!(o.render_type, RenderType::Helm);
        assert_eq!(o.helm.release_name, "mychart");
        assert_eq!(o.helm.namespace, "apps");
        assert_eq!(
            o.helm.values_files,
            [std::fs::canonicalize(&values).unwrap()]
        );
        assert!(o.helm.include_crds);
        assert_eq!(o.tools.timeout, Duration::from_secs(5));
        let a = args(&[
            chart.to_str().unwrap(),
            "--helm-values",
            "/nonexistent.yaml",
        ]);
        assert!(a.options(&chart).is_err());
        assert!(Cli::try_parse_from(["render", "x", "--type", "jsonnet"]).is_err());
    }
}
