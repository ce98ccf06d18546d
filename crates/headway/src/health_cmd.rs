//! `headway health -f FILE`: the kstatus of every object in a file of live objects (YAML or JSON,
//! e.g. `kubectl get deploy,sts -o yaml`; `-` reads stdin), one line per object:
//! `Kind/namespace/name: Status: message`. Exit code 0 when every object is Current, 2 when some
//! is not, 1 when the file cannot be read.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use headway_model::health::{HealthStatus, aggregate, health};

use crate::Outcome;

/// Arguments of `headway health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// File of live objects (`-`: stdin).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

/// Runs `headway health`.
pub fn run(args: HealthArgs) -> anyhow::Result<Outcome> {
    let (text, name) = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        (s, "stdin".to_string())
    } else {
        let s = std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?;
        (s, args.file.display().to_string())
    };
    let manifests = headway_render::parse_manifests(&text, &name)?;
    let mut statuses = Vec::new();
    for m in &manifests {
        let h = health(&m.object);
        let mut line = m.id.kind.clone();
        if let Some(ns) = &m.id.namespace {
            line.push('/');
            line.push_str(ns);
        }
        println!("{line}/{}: {}: {}", m.id.name, h.status, h.message);
        statuses.push(h.status);
    }
    let overall = aggregate(statuses);
    Ok(if overall == HealthStatus::Current {
        Outcome::Success
    } else {
        Outcome::Differs
    })
}
