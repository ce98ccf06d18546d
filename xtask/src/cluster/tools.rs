//! Builds the control plane and tools from pinned Go modules (xtask/go/*), once: a stamp per
//! module (hash of go.mod, go.sum, the Go version and the build recipe, ldflags included) makes a
//! warm run skip Go. After its hash, a stamp records the version each built tool reports.

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
    /// Extra -X flags (version stamping), from the module's directory (its go.mod).
    ldflags: fn(&Path) -> anyhow::Result<String>,
    /// The arguments that make the first target print its version (recorded in the stamp).
    version_args: &'static [&'static str],
}

fn kube_ldflags(_dir: &Path) -> anyhow::Result<String> {
    let minor = KUBE_VERSION.split('.').nth(1).unwrap_or("0");
    let flags = [
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
    .join(" ");
    Ok(flags)
}

fn no_ldflags(_dir: &Path) -> anyhow::Result<String> {
    Ok(String::new())
}

/// The version a wrapper module's go.mod requires for `module` (e.g. `v3.22.0`).
fn required_version(dir: &Path, module: &str) -> anyhow::Result<String> {
    let go_mod = dir.join("go.mod");
    let text = std::fs::read_to_string(&go_mod)
        .with_context(|| format!("reading {}", go_mod.display()))?;
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let first = words.next()?;
            let (name, version) = if first == "require" {
                (words.next()?, words.next()?)
            } else {
                (first, words.next()?)
            };
            (name == module).then(|| version.to_string())
        })
        .next()
        .with_context(|| format!("{} requires no {module}", go_mod.display()))
}

/// Helm's release ldflags (its Makefile): the version, a clean tree, and the default Kubernetes
/// version of `.Capabilities` taken from the client-go minor Helm is built with (client-go
/// v0.37 means Kubernetes 1.37). Without them `helm version` prints `v3.22` and the default
/// capabilities claim Kubernetes 1.20.
fn helm_ldflags(dir: &Path) -> anyhow::Result<String> {
    let version = required_version(dir, "helm.sh/helm/v3")?;
    let client_go = required_version(dir, "k8s.io/client-go")?;
    let minor = client_go
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .with_context(|| format!("k8s.io/client-go version {client_go} has no minor"))?;
    let mut flags = format!(
        "-X helm.sh/helm/v3/internal/version.version={version} \
         -X helm.sh/helm/v3/internal/version.metadata= \
         -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    );
    for pkg in [
        "helm.sh/helm/v3/pkg/lint/rules",
        "helm.sh/helm/v3/pkg/chartutil",
    ] {
        flags.push_str(&format!(
            " -X {pkg}.k8sVersionMajor=1 -X {pkg}.k8sVersionMinor={minor}"
        ));
    }
    Ok(flags)
}

/// Kustomize's release ldflags: the version as its release tags spell it.
fn kustomize_ldflags(dir: &Path) -> anyhow::Result<String> {
    let version = required_version(dir, "sigs.k8s.io/kustomize/kustomize/v5")?;
    Ok(format!(
        "-X sigs.k8s.io/kustomize/api/provenance.version=kustomize/{version}"
    ))
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
        version_args: &["version", "--client"],
    },
    GoModule {
        dir: "kwok",
        targets: &[("sigs.k8s.io/kwok/cmd/kwok", "kwok")],
        ldflags: no_ldflags,
        version_args: &["--version"],
    },
    GoModule {
        dir: "helm",
        targets: &[("helm.sh/helm/v3/cmd/helm", "helm")],
        ldflags: helm_ldflags,
        version_args: &["version", "--short"],
    },
    GoModule {
        dir: "kustomize",
        targets: &[("sigs.k8s.io/kustomize/kustomize/v5", "kustomize")],
        ldflags: kustomize_ldflags,
        version_args: &["version"],
    },
    GoModule {
        dir: "crane",
        targets: &[("github.com/google/go-containerregistry/cmd/crane", "crane")],
        ldflags: no_ldflags,
        version_args: &["version"],
    },
    GoModule {
        dir: "sops",
        targets: &[
            ("github.com/getsops/sops/v3/cmd/sops", "sops"),
            ("filippo.io/age/cmd/age-keygen", "age-keygen"),
        ],
        ldflags: no_ldflags,
        // Without the flag, sops asks GitHub for its latest release.
        version_args: &["--version", "--disable-version-check"],
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
        // Prints `toxiproxy-server version git`: the release version is stamped by its Makefile
        // only, and an ldflag here would change the stamp of every built toxiproxy.
        version_args: &["-version"],
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
    h.update((module.ldflags)(&dir)?.as_bytes());
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
        let recorded = std::fs::read_to_string(&stamp_file).unwrap_or_default();
        if have_all && recorded.lines().next() == Some(stamp.as_str()) {
            continue;
        }
        build_module(paths, module, &bin)?;
        let version = tool_version(&bin, module);
        std::fs::write(&stamp_file, format!("{stamp}\n{version}\n"))
            .with_context(|| format!("writing {}", stamp_file.display()))?;
        eprintln!("xtask: {version}");
    }
    Ok(bin)
}

/// `<tool> <version>` as the first built tool prints it (its first line), for the stamp.
fn tool_version(bin: &Path, module: &GoModule) -> String {
    let name = module.targets[0].1;
    let printed = Command::new(bin.join(name))
        .args(module.version_args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        });
    format!(
        "{name} {}",
        printed.as_deref().unwrap_or("(version unknown)")
    )
}

/// The tool versions recorded in the stamps of `bin` (`<tool> <version>` lines), for reports.
pub fn recorded_versions(bin: &Path) -> Vec<String> {
    MODULES
        .iter()
        .filter_map(|m| std::fs::read_to_string(bin.join(format!(".stamp-{}", m.dir))).ok())
        .flat_map(|s| s.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .collect()
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
    let ldflags = format!("-s -w {}", (module.ldflags)(&dir)?);
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
