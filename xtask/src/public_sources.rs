//! Fetches the real public charts and kustomizations the tests read (`headway_tests::public_sources`)
//! from the Go module proxy into the module cache, once per version (the cache keeps them).

use std::path::PathBuf;

use anyhow::{Context, bail};
use headway_tests::public_sources::MODULES;

use crate::cluster::tools::go_command;
use crate::paths::Paths;

/// Downloads every pinned module not in the cache yet; returns the module cache to hand to the
/// tests (`HEADWAY_PUBLIC_SOURCES`).
pub fn fetch(paths: &Paths) -> anyhow::Result<PathBuf> {
    let modcache = paths.cache.join("go/mod");
    for module in MODULES {
        if module.dir(&modcache).is_dir() {
            continue;
        }
        let spec = module.spec();
        eprintln!("xtask: fetching {spec} (public charts and kustomizations for the tests)");
        let out = go_command(paths, &["mod", "download", "-json", &spec])
            .current_dir(&paths.cache)
            .output()
            .with_context(|| format!("running `go mod download {spec}`"))?;
        if !out.status.success() || !module.dir(&modcache).is_dir() {
            bail!(
                "`go mod download {spec}` failed (the Go module proxy serves the public charts the \
                 tests apply): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(modcache)
}
