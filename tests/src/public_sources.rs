//! Real public charts and kustomizations: pinned versions of the Go modules whose repositories
//! carry them (the Go module proxy serves a module's whole tree), fetched into the Go module
//! cache by `cargo xtask test`, and where a test finds them.

use std::path::{Path, PathBuf};

/// Set by `cargo xtask test` to the Go module cache holding [`MODULES`]; without it the tests
/// that read them return early, saying why.
pub const PUBLIC_SOURCES_ENV: &str = "HEADWAY_PUBLIC_SOURCES";

/// One module version of the Go module proxy.
#[derive(Debug, Clone, Copy)]
pub struct Module {
    /// Module path, e.g. `sigs.k8s.io/metrics-server`.
    pub path: &'static str,
    /// Exact version (a tag, or the proxy's pseudo-version for a repository without module tags).
    pub version: &'static str,
}

/// Every module the public-source tests read, each pinned.
pub const MODULES: &[Module] = &[
    METRICS_SERVER,
    INGRESS_NGINX,
    CERT_MANAGER,
    ARGO_CD,
    PROMETHEUS_OPERATOR,
    GATEKEEPER,
    KYVERNO,
];

/// `charts/metrics-server` (a chart with an aggregated APIService).
pub const METRICS_SERVER: Module = Module {
    path: "sigs.k8s.io/metrics-server",
    version: "v0.9.0",
};
/// `charts/ingress-nginx` (admission webhook and its certgen hook Jobs). The repository has no
/// module tags; this is the proxy's pseudo-version of its main branch in July 2024.
pub const INGRESS_NGINX: Module = Module {
    path: "k8s.io/ingress-nginx",
    version: "v0.0.0-20240708192948-52c50467d67d",
};
/// `deploy/charts/cert-manager`.
pub const CERT_MANAGER: Module = Module {
    path: "github.com/cert-manager/cert-manager",
    version: "v1.21.2",
};
/// `manifests/` (kustomizations: `cluster-install` builds on `../crds`, `../base`, ...).
pub const ARGO_CD: Module = Module {
    path: "github.com/argoproj/argo-cd/v2",
    version: "v2.14.21",
};
/// The root `kustomization.yaml` over `bundle.yaml` (CRDs of several hundred KiB each).
pub const PROMETHEUS_OPERATOR: Module = Module {
    path: "github.com/prometheus-operator/prometheus-operator",
    version: "v0.85.0",
};
/// `charts/gatekeeper` (Helm hooks, webhooks, CRDs in templates).
pub const GATEKEEPER: Module = Module {
    path: "github.com/open-policy-agent/gatekeeper/v3",
    version: "v3.23.1",
};
/// `charts/kyverno`, whose dependencies are not vendored in the repository.
pub const KYVERNO: Module = Module {
    path: "github.com/kyverno/kyverno",
    version: "v1.19.1",
};

impl Module {
    /// `path@version`, as `go mod download` takes it.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.path, self.version)
    }

    /// The module's extracted tree in the module cache `modcache`.
    pub fn dir(&self, modcache: &Path) -> PathBuf {
        modcache.join(format!("{}@{}", escape(self.path), escape(self.version)))
    }
}

/// The module cache's case encoding: an upper-case letter becomes `!` and the lower-case one.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The module cache holding [`MODULES`], or `None` (printing why) when `cargo xtask test` did
/// not fetch them.
pub fn modcache(test: &str) -> Option<PathBuf> {
    match std::env::var_os(PUBLIC_SOURCES_ENV) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            eprintln!(
                "{test}: skipped ({PUBLIC_SOURCES_ENV} is not set; `cargo xtask test` sets it)"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_dirs_use_the_cache_encoding() {
        let m = Module {
            path: "github.com/Shopify/toxiproxy/v2",
            version: "v2.5.0",
        };
        assert_eq!(
            m.dir(Path::new("/c")),
            Path::new("/c/github.com/!shopify/toxiproxy/v2@v2.5.0")
        );
        assert_eq!(m.spec(), "github.com/Shopify/toxiproxy/v2@v2.5.0");
    }
}
