//! `cargo xtask codegen [--check]`: writes the files generated from Rust types, today the
//! `GitSync` CRD (`charts/headway/crds/gitsync.yaml`, from `headway_controller::crd`). With
//! `--check`, writes nothing and fails when a committed file is stale.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// Options of `cargo xtask codegen`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Fail if a generated file differs from what is committed, instead of writing it.
    #[arg(long)]
    pub check: bool,
}

/// The generated files: path relative to the workspace root, and content.
pub fn generated() -> Vec<(PathBuf, String)> {
    vec![(
        PathBuf::from("charts/headway/crds/gitsync.yaml"),
        headway_controller::crd::crd_yaml(),
    )]
}

/// Runs the task from the workspace root `root`.
pub fn run(root: &Path, options: &Options) -> anyhow::Result<()> {
    let mut stale = Vec::new();
    for (rel, content) in generated() {
        let path = root.join(&rel);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(content.as_str()) {
            println!("up to date: {}", rel.display());
            continue;
        }
        if options.check {
            stale.push(rel.display().to_string());
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", rel.display());
    }
    if !stale.is_empty() {
        bail!(
            "stale generated files: {}; run `cargo xtask codegen`",
            stale.join(", ")
        );
    }
    Ok(())
}
