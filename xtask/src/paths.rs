//! Where xtask keeps things: the repository root, the Go/tool cache and a cluster's state directory.

use std::path::{Path, PathBuf};

/// The fixed locations xtask uses.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The repository root (the workspace directory).
    pub root: PathBuf,
    /// Cache shared by every checkout and cluster: Go modules, Go build cache, built binaries.
    /// `HEADWAY_CACHE_DIR`, default `$HOME/.cache/headway`.
    pub cache: PathBuf,
    /// One cluster's state: PKI, kubeconfig, etcd data, logs, PIDs.
    pub state: PathBuf,
}

impl Paths {
    pub fn new(state: Option<PathBuf>) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace")
            .to_path_buf();
        let cache = std::env::var_os("HEADWAY_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "/tmp".into());
                home.join(".cache/headway")
            });
        let state = state.unwrap_or_else(|| root.join("target/cluster"));
        Paths { root, cache, state }
    }

    /// Directory of the built tools (kube-apiserver, etcd, kubectl, kwok, helm, kustomize...).
    pub fn bin(&self) -> PathBuf {
        self.cache.join("bin")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.state.join("kubeconfig")
    }
}
