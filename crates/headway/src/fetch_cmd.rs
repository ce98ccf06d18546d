//! `headway fetch --repo URL [--ref REF]`: fetches a revision into the git cache (depth 1) and
//! prints what was fetched; for checking credentials and host keys, and for warming the cache.

use clap::Args;

use crate::input::InputArgs;

/// Arguments of `headway fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The repository (`--repo` is required; `--path` must exist in it).
    #[command(flatten)]
    pub input: InputArgs,
}

/// Fetches and prints the commit, its tree directory and the transfer statistics.
pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    if args.input.repo.is_none() {
        anyhow::bail!("headway fetch needs --repo URL");
    }
    let input = args.input.resolve()?;
    let revision = input
        .revision
        .expect("a repository input always has a revision");
    println!("commit {}", revision.sha);
    println!("author {}", revision.author);
    println!("message {}", revision.message.lines().next().unwrap_or(""));
    println!("tree {}", input.dir.display());
    println!(
        "files {} bytes {} received {} in {} ms",
        revision.stats.files,
        revision.stats.bytes,
        revision.stats.received_bytes,
        revision.stats.fetch_ms
    );
    Ok(())
}
