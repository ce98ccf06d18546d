//! The `headway` binary: command-line parsing and wiring only; the work lives in the library crates.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

mod apply_cmd;
mod controller_cmd;
mod diff_cmd;
mod fetch_cmd;
mod health_cmd;
mod input;
mod rebuild_cmd;
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
    /// Fetch a revision of a git repository into the cache (depth 1) and print what was fetched.
    Fetch(fetch_cmd::FetchArgs),
    /// Show every GitSync: Ready, revision, objects, drift, last sync and last rebuild
    /// (exit 0: all Ready, 1: not).
    Status(rebuild_cmd::StatusArgs),
    /// Ask the controller to rebuild GitSyncs (fresh fetch, every object re-applied); with
    /// --wait, wait until they are Ready and print the recovery time.
    Rebuild(rebuild_cmd::RebuildArgs),
    /// Show what `apply` would change in the cluster (exit 0: none, 2: differences, 1: error).
    Diff(diff_cmd::DiffArgs),
    /// Apply a directory or a git repository to the cluster once, without a controller.
    Apply(apply_cmd::ApplyArgs),
    /// Print the kstatus of every object in a file of live objects (exit 0: all Current).
    Health(health_cmd::HealthArgs),
    /// Run the GitSync controller (leader election, watch, sync) until SIGTERM; JSON logs.
    Controller(controller_cmd::ControllerArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Render(args) => render_cmd::run(args)?,
        Command::Fetch(args) => fetch_cmd::run(args)?,
        Command::Status(args) => std::process::exit(rebuild_cmd::status(args)?),
        Command::Rebuild(args) => std::process::exit(rebuild_cmd::rebuild(args)?),
        Command::Controller(args) => controller_cmd::run(args)?,
        Command::Diff(args) => std::process::exit(diff_cmd::run(args)?),
        Command::Apply(args) => std::process::exit(apply_cmd::run(args)?),
        Command::Health(args) => std::process::exit(health_cmd::run(args)?),
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
