//! Developer tasks for Headway, run as `cargo xtask <task>`: the local control plane
//! (`cluster up|down|status|env`), the full test suite (`test`), benchmarks, fuzzing and the demo.
#![forbid(unsafe_code)]

mod bench;
mod cluster;
mod codegen;
mod demo;
mod fuzz;
mod gitserve;
mod image;
mod leftovers;
mod paths;
mod public_sources;
mod test;
#[cfg(test)]
mod tidy;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Headway developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build (once, cached) and run a real Kubernetes control plane on 127.0.0.1.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
        #[command(flatten)]
        opts: cluster::Options,
    },
    /// The recovery story on a local cluster: a git repository made from examples/demo, the chart
    /// installed, the controller as the chart's identity, a disaster and a timed rebuild
    /// (`--down` stops and removes it all).
    Demo(demo::Options),
    /// Benchmarks, each against a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        what: bench::BenchTask,
    },
    /// Build the container image with no container runtime (static musl `headway`, `helm`,
    /// `kustomize`; assembled and pushed by `crane` to a registry on 127.0.0.1).
    Image(image::Options),
    /// Write the files generated from Rust types (the GitSync CRD); `--check` fails when stale.
    Codegen(codegen::Options),
    /// Run every check CI runs: fmt, clippy, and the whole test suite against the local cluster.
    Test(test::Options),
    /// Run the cargo-fuzz targets of fuzz/ (nightly) for a while each; crashes become
    /// regression inputs that the stable tests replay.
    Fuzz(fuzz::Options),
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Build the tools if needed, start etcd, kube-apiserver, kube-controller-manager,
    /// kube-scheduler and kwok, register a node, and return when the cluster is ready.
    Up,
    /// Stop every process of the cluster (by its saved PID, or found by the state directory its
    /// command line names) and remove its state.
    Down,
    /// Say which components run and whether the API server is ready.
    Status,
    /// Print the `KUBECONFIG` and `PATH` exports for the cluster and its tools.
    Env,
    /// Only build (or verify the cache of) the Go tools, without starting anything.
    Build,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Cluster { action, opts } => {
            let cluster = cluster::Cluster::new(&opts);
            match action {
                ClusterAction::Up => cluster.up().map(|_| ()),
                ClusterAction::Down => cluster.down(),
                ClusterAction::Status => cluster.status(),
                ClusterAction::Env => cluster.print_env(),
                ClusterAction::Build => cluster::tools::ensure_built(&cluster.paths).map(|_| ()),
            }
        }
        Task::Test(opts) => test::run(&opts),
        Task::Demo(opts) => demo::run(&opts),
        Task::Bench { what } => bench::run(&paths::Paths::new(None), what),
        Task::Image(opts) => image::run(&paths::Paths::new(None), &opts),
        Task::Codegen(opts) => codegen::run(&paths::Paths::new(None).root, &opts),
        Task::Fuzz(opts) => fuzz::run(&paths::Paths::new(None).root, &opts),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
