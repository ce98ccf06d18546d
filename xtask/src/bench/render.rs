//! `cargo xtask bench render`: `headway render --type plain` of generated plain manifests against
//! `kubectl kustomize` of the same files (listed in a kustomization.yaml), both as processes
//! writing their YAML output to a file, alternated run by run; target: Headway at least 3x faster.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use super::{build_headway, median};
use crate::paths::Paths;

/// What to generate and how often to measure.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Params {
    /// Objects generated (spread evenly over `--files` files).
    #[arg(long, default_value_t = 5_000)]
    pub objects: usize,
    /// Files generated.
    #[arg(long, default_value_t = 500)]
    pub files: usize,
    /// Measured runs per side; the median is reported.
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
}

/// Generates the files, measures both sides and prints the result.
pub fn run(paths: &Paths, params: Params) -> anyhow::Result<()> {
    ensure!(
        params.files >= 1 && params.objects >= params.files && params.runs >= 1,
        "bad parameters {params:?}"
    );
    let kubectl = paths.bin().join("kubectl");
    ensure!(
        kubectl.is_file(),
        "{} is missing: run `cargo xtask cluster build` first",
        kubectl.display()
    );
    let headway = build_headway(paths, true)?;
    let dir = tempfile::tempdir()?;
    let manifests = dir.path().join("manifests");
    let bytes = generate(&manifests, params)?;
    println!(
        "generated {} objects in {} files ({:.1} MiB)",
        params.objects,
        params.files,
        bytes as f64 / (1024.0 * 1024.0)
    );
    let out = dir.path().join("out.yaml");
    let headway_cmd = || {
        let mut c = Command::new(&headway);
        c.args(["render", "--type", "plain", "--output", "yaml"])
            .arg(&manifests);
        c
    };
    let kubectl_cmd = || {
        let mut c = Command::new(&kubectl);
        c.arg("kustomize").arg(&manifests);
        c
    };
    // Both outputs must hold every object before anything is timed.
    let h = count_objects(&time_to_file(headway_cmd(), &out)?.1)?;
    let k = count_objects(&time_to_file(kubectl_cmd(), &out)?.1)?;
    ensure!(
        h == params.objects && k == params.objects,
        "object counts differ: headway {h}, kubectl {k}, expected {}",
        params.objects
    );
    let mut headway_times = Vec::new();
    let mut kubectl_times = Vec::new();
    for _ in 0..params.runs {
        headway_times.push(time_to_file(headway_cmd(), &out)?.0);
        kubectl_times.push(time_to_file(kubectl_cmd(), &out)?.0);
    }
    let h = median(&mut headway_times);
    let k = median(&mut kubectl_times);
    println!(
        "headway render --type plain: median {h:.3?} over {} runs {headway_times:.3?}",
        params.runs
    );
    println!(
        "kubectl kustomize:           median {k:.3?} over {} runs {kubectl_times:.3?}",
        params.runs
    );
    let ratio = k.as_secs_f64() / h.as_secs_f64();
    println!(
        "headway is {ratio:.1}x faster than kubectl kustomize (target >= 3x){}",
        if ratio >= 3.0 { "" } else { "  BELOW TARGET" }
    );
    Ok(())
}

/// Runs the command with stdout to `out`; returns its wall time and its output.
fn time_to_file(mut command: Command, out: &Path) -> anyhow::Result<(Duration, String)> {
    let file = std::fs::File::create(out)?;
    let started = Instant::now();
    let output = command
        .stdout(file)
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("run {command:?}"))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((elapsed, std::fs::read_to_string(out)?))
}

/// Top-level documents in a YAML stream: lines that start with `apiVersion:`.
fn count_objects(yaml: &str) -> anyhow::Result<usize> {
    Ok(yaml
        .lines()
        .filter(|l| l.starts_with("apiVersion:"))
        .count())
}

/// Writes `objects` objects (Deployments, Services, ConfigMaps in 50 namespaces) into `files`
/// files and a kustomization.yaml listing them; returns the bytes written.
fn generate(dir: &Path, params: Params) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut kustomization = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    let mut total = 0u64;
    let mut next = 0usize;
    for f in 0..params.files {
        let count = params.objects / params.files + usize::from(f < params.objects % params.files);
        let mut text = String::new();
        for _ in 0..count {
            let i = next;
            next += 1;
            let ns = format!("bench-{:02}", i % 50);
            text.push_str("---\n");
            match i % 3 {
                0 => write!(
                    text,
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: {ns}\n  labels: {{app: app-{i}, tier: web}}\n  annotations:\n    description: \"generated object {i}\"\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: app-{i}}}\n  template:\n    metadata:\n      labels: {{app: app-{i}}}\n    spec:\n      containers:\n      - name: app\n        image: registry.example.com/app:1.{i}\n        ports:\n        - containerPort: 8080\n        env:\n        - {{name: MODE, value: \"on\"}}\n        - {{name: LEVEL, value: \"0755\"}}\n        resources:\n          requests: {{cpu: 100m, memory: 64Mi}}\n          limits: {{memory: 128Mi}}\n"
                )?,
                1 => write!(
                    text,
                    "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: {ns}\n  labels: {{app: app-{i}}}\nspec:\n  selector: {{app: app-{i}}}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n"
                )?,
                _ => write!(
                    text,
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg-{i}\n  namespace: {ns}\ndata:\n  feature: \"yes\"\n  retries: \"3\"\n  config.json: |\n    {{\"id\": {i}, \"enabled\": true, \"tags\": [\"a\", \"b\", \"c\"]}}\n"
                )?,
            }
        }
        let name = format!("objects-{f:04}.yaml");
        total += text.len() as u64;
        std::fs::write(dir.join(&name), text)?;
        writeln!(kustomization, "- {name}")?;
    }
    std::fs::write(dir.join("kustomization.yaml"), kustomization)?;
    Ok(total)
}
