//! Builds the control plane and tools from pinned Go modules (xtask/go/*), once: a stamp per
//! module (hash of go.mod, go.sum, the Go version and the build recipe) makes a warm run skip Go.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::paths::Paths;

/// Kubernetes release the control plane is built from; must match xtask/go/kube/go.mod.
pub const KUBE_VERSION: &str = "v1.36.3";

/// Bump to force a rebuild when the recipe below changes in a way the stamp cannot see.
const RECIPE: &str = "2";

/// One Go wrapper module and what to build from it.
struct GoModule {
    /// Directory under xtask/go.
    dir: &'static str,
    /// (package, output binary name)
    targets: &'static [(&'static str, &'static str)],
    /// Extra -X flags (version stamping).
    ldflags: fn() -> String,
}

fn kube_ldflags() -> String {
    let minor = KUBE_VERSION.split('.').nth(1).unwrap_or("0");
    [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ]
    .iter()
    .map(|pkg| {
        format!(
            "-X {pkg}.gitVersion={KUBE_VERSION} -X {pkg}.gitMajor=1 -X {pkg}.gitMinor={minor} \
                 -X {pkg}.gitTreeState=clean"
        )
    })
    .collect::<Vec<_>>()
    .join(" ")
}

fn no_ldflags() -> String {
    String::new()
}

const MODULES: &[GoModule] = &[
    GoModule {
        dir: "kube",
        targets: &[
            ("go.etcd.io/etcd/server/v3", "etcd"),
            ("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
            (
                "k8s.io/kubernetes/cmd/kube-controller-manager",
                "kube-controller-manager",
            ),
            ("k8s.io/kubernetes/cmd/kube-scheduler", "kube-scheduler"),
            ("k8s.io/kubernetes/cmd/kubectl", "kubectl"),
        ],
        ldflags: kube_ldflags,
    },
    GoModule {
        dir: "kwok",
        targets: &[("sigs.k8s.io/kwok/cmd/kwok", "kwok")],
        ldflags: no_ldflags,
    },
    GoModule {
        dir: "helm",
        targets: &[("helm.sh/helm/v3/cmd/helm", "helm")],
        ldflags: no_ldflags,
    },
    GoModule {
        dir: "kustomize",
        targets: &[("sigs.k8s.io/kustomize/kustomize/v5", "kustomize")],
        ldflags: no_ldflags,
    },
    // The fault proxy of the fault tests (`crates/headway/tests/faults.rs`).
    GoModule {
        dir: "toxiproxy",
        targets: &[
            (
                "github.com/Shopify/toxiproxy/v2/cmd/server",
                "toxiproxy-server",
            ),
            ("github.com/Shopify/toxiproxy/v2/cmd/cli", "toxiproxy-cli"),
        ],
        ldflags: no_ldflags,
    },
];

/// The environment every `go` command runs with: fixed caches, no toolchain switching, static binaries.
pub fn go_command(paths: &Paths, args: &[&str]) -> Command {
    let mut cmd = Command::new("go");
    cmd.args(args)
        .env("GOMODCACHE", paths.cache.join("go/mod"))
        .env("GOCACHE", paths.cache.join("go/build"))
        .env("GOFLAGS", "-modcacherw -buildvcs=false")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
    cmd
}

fn go_version(paths: &Paths) -> anyhow::Result<String> {
    let out = go_command(paths, &["version"]).output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run `go` ({e}): Go 1.26 is needed to build the local control plane; \
             install it and put it on PATH"
        )
    })?;
    if !out.status.success() {
        bail!(
            "`go version` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn stamp_of(paths: &Paths, module: &GoModule, go_version: &str) -> anyhow::Result<String> {
    let dir = paths.root.join("xtask/go").join(module.dir);
    let mut h = Sha256::new();
    for file in ["go.mod", "go.sum"] {
        let p = dir.join(file);
        h.update(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?);
    }
    h.update(go_version.as_bytes());
    h.update((module.ldflags)().as_bytes());
    for (pkg, bin) in module.targets {
        h.update(pkg.as_bytes());
        h.update(bin.as_bytes());
    }
    h.update(RECIPE.as_bytes());
    Ok(hex::encode(h.finalize()))
}

/// Builds every tool whose stamp is stale and returns the bin directory.
pub fn ensure_built(paths: &Paths) -> anyhow::Result<PathBuf> {
    let bin = paths.bin();
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let go_version = go_version(paths)?;
    for module in MODULES {
        let stamp = stamp_of(paths, module, &go_version)?;
        let stamp_file = bin.join(format!(".stamp-{}", module.dir));
        let have_all = module.targets.iter().all(|(_, b)| bin.join(b).is_file());
        if have_all && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str())
        {
            continue;
        }
        build_module(paths, module, &bin)?;
        std::fs::write(&stamp_file, &stamp)
            .with_context(|| format!("writing {}", stamp_file.display()))?;
    }
    Ok(bin)
}

fn build_module(paths: &Paths, module: &GoModule, bin: &Path) -> anyhow::Result<()> {
    let dir = paths.root.join("xtask/go").join(module.dir);
    let names: Vec<&str> = module.targets.iter().map(|(_, b)| *b).collect();
    eprintln!(
        "xtask: building {} from xtask/go/{} (Go; cached after the first build)...",
        names.join(", "),
        module.dir
    );
    let started = std::time::Instant::now();
    let ldflags = format!("-s -w {}", (module.ldflags)());
    for (pkg, name) in module.targets {
        // One binary per `go build` so each gets its explicit name (etcd's package is `server`).
        let out_path = bin.join(name);
        let tmp = bin.join(format!(".{name}.tmp"));
        let out = go_command(
            paths,
            &[
                "build",
                "-trimpath",
                "-ldflags",
                &ldflags,
                "-o",
                tmp.to_str().unwrap_or_default(),
                pkg,
            ],
        )
        .current_dir(&dir)
        .output()
        .with_context(|| format!("running go build {pkg}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let hint = if stderr.contains("proxy.golang.org")
                || stderr.contains("410 Gone")
                || stderr.contains("404 Not Found")
                || stderr.contains("unrecognized import path")
            {
                "\nhint: a module could not be downloaded from the Go module proxy (GOPROXY); \
                 check the network and that the pinned version in go.mod is served"
            } else {
                ""
            };
            bail!(
                "go build {pkg} (in xtask/go/{}) failed:\n{}{hint}",
                module.dir,
                tail(&stderr, 40)
            );
        }
        std::fs::rename(&tmp, &out_path)
            .with_context(|| format!("moving {} into place", out_path.display()))?;
    }
    eprintln!(
        "xtask: built {} in {:.1}s",
        names.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Where kwok's stage definitions live in the module cache (downloading the module if needed).
pub fn kwok_module_dir(paths: &Paths) -> anyhow::Result<PathBuf> {
    let out = go_command(paths, &["list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"])
        .current_dir(paths.root.join("xtask/go/kwok"))
        .output()
        .context("running go list for kwok")?;
    if !out.status.success() {
        bail!(
            "go list -m sigs.k8s.io/kwok failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.is_dir() {
        bail!("kwok module directory {} does not exist", dir.display());
    }
    Ok(dir)
}
