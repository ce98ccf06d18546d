//! The `headway` binary: command-line parsing and wiring only; the work lives in the library crates.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
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
