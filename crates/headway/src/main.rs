//! The `headway` binary: command-line parsing and wiring only; the work lives in the library crates.
//! Each command is in `<command>_cmd.rs`; `cluster.rs` builds the client, runtime and engine from
//! the global flags, `input.rs` resolves and renders the source. Commands return an [`Outcome`]
//! or an error; only `main` turns them into an exit code and prints errors (one line each).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod apply_cmd;
mod cluster;
mod controller_cmd;
mod diff_cmd;
mod fetch_cmd;
#[cfg(test)]
mod fixtures;
mod gitsync_input;
mod health_cmd;
mod input;
mod live;
mod logs;
mod output;
mod owner;
mod rebuild_cmd;
mod render_cmd;
mod requests;
mod status_cmd;
mod sync_cmd;
mod watch;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (status: every selected GitSync Ready; sync/resume/rebuild --wait: every request
     handled and the GitSync Ready; diff: no difference; health: every object Current)
  1  error or failure, explained on stderr (status: some GitSync not Ready, or none selected;
     sync/resume/rebuild --wait: a request failed or timed out; apply: some step failed)
  2  diff: differences found; health: some object not Current; any command: bad usage";

/// Headway: a GitOps deployment controller for Kubernetes, built for fast recovery.
#[derive(Parser)]
#[command(name = "headway", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version and the git commit this binary was built from.
    Version,
    /// Render a directory or a git repository (plain YAML, Kustomize or Helm), or a GitSync as
    /// its controller does (--gitsync), and print its manifests in apply order.
    Render(input::RenderArgs),
    /// Fetch a revision of a git repository into the cache (depth 1) and print what was fetched.
    Fetch(fetch_cmd::FetchArgs),
    /// Show the selected GitSyncs: phase, reason or current stage, revision, objects, drift,
    /// last sync and last rebuild (exit 0: all Ready, 1: not, or none selected).
    #[command(after_help = EXIT_CODES)]
    Status(status_cmd::StatusArgs),
    /// Ask the controller to sync one GitSync now; with --wait, follow the sync to its end
    /// (exit 0: Ready, 1: failed or timed out).
    #[command(after_help = EXIT_CODES)]
    Sync(sync_cmd::SyncArgs),
    /// Stop syncing one GitSync (sets spec.suspend; field manager headway-suspend).
    #[command(after_help = EXIT_CODES)]
    Suspend(sync_cmd::SuspendArgs),
    /// Sync one suspended GitSync again (clears spec.suspend) and request a sync now.
    #[command(after_help = EXIT_CODES)]
    Resume(sync_cmd::ResumeArgs),
    /// Ask the controller to rebuild GitSyncs (fresh fetch, every object re-applied); with
    /// --wait, follow each one stage by stage and print the time to recover.
    #[command(after_help = EXIT_CODES)]
    Rebuild(rebuild_cmd::RebuildArgs),
    /// Show what `apply` would change in the cluster, or what a GitSync's controller would
    /// (--gitsync) (exit 0: none, 2: differences, 1: error).
    #[command(after_help = EXIT_CODES)]
    Diff(diff_cmd::DiffArgs),
    /// Apply a directory or a git repository to the cluster once, without a controller.
    #[command(after_help = EXIT_CODES)]
    Apply(apply_cmd::ApplyArgs),
    /// Print the kstatus of every object in a file of live objects (exit 0: all Current,
    /// 2: not).
    #[command(after_help = EXIT_CODES)]
    Health(health_cmd::HealthArgs),
    /// Run the GitSync controller (leader election, watch, sync) until SIGTERM; JSON logs.
    Controller(controller_cmd::ControllerArgs),
}

/// How a command ended, when it ran to its end (errors are returned instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Success,
    /// Exit code 1: the command ran but what it checked or did failed (not Ready, objects that
    /// failed to apply); it printed why.
    Failure,
    /// Exit code 2: `diff` found differences, `health` found an object not Current.
    Differs,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        match outcome {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Failure => ExitCode::from(1),
            Outcome::Differs => ExitCode::from(2),
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let cluster = &cli.cluster;
    match cli.command {
        Command::Render(args) => render_cmd::run(cluster, args).map(|()| Outcome::Success),
        Command::Fetch(args) => fetch_cmd::run(args).map(|()| Outcome::Success),
        Command::Status(args) => status_cmd::run(cluster, args),
        Command::Sync(args) => sync_cmd::sync(cluster, args),
        Command::Suspend(args) => sync_cmd::suspend(cluster, args),
        Command::Resume(args) => sync_cmd::resume(cluster, args),
        Command::Rebuild(args) => rebuild_cmd::run(cluster, args),
        Command::Controller(args) => controller_cmd::run(cluster, args).map(|()| Outcome::Success),
        Command::Diff(args) => diff_cmd::run(cluster, args),
        Command::Apply(args) => apply_cmd::run(cluster, args),
        Command::Health(args) => health_cmd::run(args),
        Command::Version => {
            println!(
                "headway {} (commit {})",
                env!("CARGO_PKG_VERSION"),
                env!("HEADWAY_GIT_COMMIT")
            );
            Ok(Outcome::Success)
        }
    }
}

/// An error as one line (several only where the error itself lists several problems, as a failed
/// render does): what each cause adds to the one before, once; the Kubernetes API server's
/// answer reduced to its message. No Debug form, no backtrace.
fn error_text(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        if let Some(kube::Error::Api(status)) = cause.downcast_ref::<kube::Error>()
            && !status.message.is_empty()
        {
            parts.push(status.message.clone());
            break;
        }
        let mut own = cause.to_string();
        // thiserror's `{source}` repeats the source's text at the end: keep only what is new.
        if let Some(source) = cause.source()
            && let Some(head) = own.strip_suffix(&source.to_string())
        {
            own = head.trim_end_matches([':', ' ']).to_string();
        }
        if !own.is_empty() && !parts.iter().any(|p| p.contains(&own)) {
            parts.push(own);
        }
    }
    parts.join(": ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(outcome) => outcome.into(),
        Err(e) => match e.downcast::<clap::Error>() {
            // A usage error found after parsing: clap's own message, exit code 2.
            Ok(usage) => usage.exit(),
            Err(e) => {
                eprintln!("error: {}", error_text(&e));
                ExitCode::from(1)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    /// An error whose text includes its source's, as thiserror's `{source}` does.
    #[derive(Debug)]
    struct Wrapping(String, Box<dyn std::error::Error + Send + Sync>);

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.0, self.1)
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.1.as_ref())
        }
    }

    #[test]
    fn errors_are_one_line_without_repetition() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 404, "reason": "NotFound",
            "message": "namespaces \"headway-system\" not found",
            "details": {"name": "headway-system", "kind": "namespaces"},
        }))
        .unwrap();
        let kube_error = kube::Error::Api(Box::new(status));
        let lease = Wrapping(
            "leader election on Lease headway-system/headway-controller".into(),
            Box::new(Wrapping("Kube error".into(), Box::new(kube_error))),
        );
        let error = anyhow::Error::from(lease).context("controller");
        let text = error_text(&error);
        assert_eq!(
            text,
            "controller: leader election on Lease headway-system/headway-controller: Kube error: \
             namespaces \"headway-system\" not found"
        );
        assert!(!text.contains('\n'));

        let plain = anyhow::anyhow!("no such file").context("reading kubeconfig /x");
        assert_eq!(error_text(&plain), "reading kubeconfig /x: no such file");
    }
}
