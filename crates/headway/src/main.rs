//! The `headway` binary: command-line parsing and wiring only; the work lives in the library crates.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

mod input;
mod render_cmd;

/// Headway: a GitOps deployment controller for Kubernetes, built for fast recovery.
#[derive(Parser)]
#[command(name = "headway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version and the git commit this binary was built from.
    Version,
    /// Render a directory or a git repository (plain YAML, Kustomize or Helm) and print its
    /// manifests in apply order.
    Render(render_cmd::RenderArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Render(args) => render_cmd::run(args)?,
        Command::Version => {
            println!(
                "headway {} (commit {})",
                env!("CARGO_PKG_VERSION"),
                env!("HEADWAY_GIT_COMMIT")
            );
        }
    }
    Ok(())
}
