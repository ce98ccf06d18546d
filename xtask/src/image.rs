//! `cargo xtask image`: the container image built with no container runtime. A statically linked
//! `headway` (the `x86_64-unknown-linux-musl` target, see docs/decisions.md), the static Go-built
//! `helm` and `kustomize` of the tool cache (built with `CGO_ENABLED=0`), CA certificates and an
//! `/etc/passwd` naming the non-root user go into one layer; `crane` (go-containerregistry, built
//! by `cargo xtask cluster build`) appends it to an empty OCI base, sets the entrypoint, the user
//! 65532 and the OCI labels, and pushes it to a registry on 127.0.0.1. With no `--registry`,
//! xtask serves one (`crane registry serve`) for the run, saves the image as a tarball under
//! `target/image/` (`docker load -i` reads it) and stops the registry.
//!
//! The `Dockerfile` at the root builds the same image for people who have Docker.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use headway_tests::process::Guarded;

use crate::paths::Paths;

/// The Rust target of the static binary.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// The user the image runs as (distroless's `nonroot`).
pub const USER: &str = "65532:65532";
/// Where the binaries are in the image.
pub const BIN_DIR: &str = "/usr/local/bin";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Options {
    /// Push to this registry (`host:port`, plain HTTP) instead of one xtask serves for the run.
    #[arg(long)]
    pub registry: Option<String>,
    /// Repository name in the registry.
    #[arg(long, default_value = "headway")]
    pub repository: String,
    /// Tag (default: the workspace version).
    #[arg(long)]
    pub tag: Option<String>,
}

/// The pushed image.
#[derive(Debug, Clone)]
pub struct Built {
    /// `host:port/repository:tag`.
    pub reference: String,
    /// `host:port/repository@sha256:...`.
    pub digest_reference: String,
    /// The git commit of the `org.opencontainers.image.revision` label.
    pub revision: String,
}

/// `cargo xtask image`.
pub fn run(paths: &Paths, opts: &Options) -> anyhow::Result<()> {
    match &opts.registry {
        Some(_) => {
            let built = build(paths, opts)?;
            println!(
                "pushed {} (revision {})\n       {}",
                built.reference, built.revision, built.digest_reference
            );
        }
        None => {
            let registry = Registry::start(&paths.bin().join("crane"))?;
            let opts = Options {
                registry: Some(registry.address.clone()),
                ..opts.clone()
            };
            let built = build(paths, &opts)?;
            let out = paths.root.join("target/image");
            std::fs::create_dir_all(&out)?;
            let tarball = out.join(format!("{}.tar", opts.repository));
            crane(paths, &["pull", &built.reference])
                .arg(&tarball)
                .run()
                .context("saving the image")?;
            println!(
                "built {} (registry stopped)\nsaved {} (docker load -i / crane push)",
                built.digest_reference,
                tarball.display()
            );
        }
    }
    Ok(())
}

/// Builds the static binary and the image and pushes it to `opts.registry`.
pub fn build(paths: &Paths, opts: &Options) -> anyhow::Result<Built> {
    let registry = opts.registry.as_deref().context("build needs a registry")?;
    let version = env!("CARGO_PKG_VERSION");
    let tag = opts.tag.clone().unwrap_or_else(|| version.to_string());
    let reference = format!("{registry}/{}:{tag}", opts.repository);
    let revision = git_revision(&paths.root)?;

    let headway = build_static_headway(paths)?;
    let helm = paths.bin().join("helm");
    let kustomize = paths.bin().join("kustomize");
    for bin in [&headway, &helm, &kustomize] {
        ensure!(
            bin.is_file(),
            "{} is missing (run `cargo xtask cluster build`)",
            bin.display()
        );
        ensure!(
            is_static(bin)?,
            "{} is dynamically linked (it names an ELF interpreter); the image has no libraries",
            bin.display()
        );
    }

    let work = tempfile::tempdir()?;
    let root = work.path().join("rootfs");
    let bin_dir = root.join(BIN_DIR.trim_start_matches('/'));
    std::fs::create_dir_all(&bin_dir)?;
    for (from, name) in [
        (&headway, "headway"),
        (&helm, "helm"),
        (&kustomize, "kustomize"),
    ] {
        std::fs::copy(from, bin_dir.join(name))
            .with_context(|| format!("copying {}", from.display()))?;
        set_mode(&bin_dir.join(name), 0o755)?;
    }
    let etc = root.join("etc");
    std::fs::create_dir_all(etc.join("ssl/certs"))?;
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )?;
    std::fs::write(etc.join("group"), "root:x:0:\nnonroot:x:65532:\n")?;
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    ensure!(
        ca.is_file(),
        "{} is missing: the image needs CA certificates for https repositories",
        ca.display()
    );
    std::fs::copy(ca, etc.join("ssl/certs/ca-certificates.crt"))?;
    std::fs::create_dir_all(root.join("tmp"))?;
    set_mode(&root.join("tmp"), 0o1777)?;
    std::fs::create_dir_all(root.join("home/nonroot"))?;

    let layer = work.path().join("layer.tar");
    let status = Command::new("tar")
        .args([
            "--create",
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "--file",
        ])
        .arg(&layer)
        .arg("-C")
        .arg(&root)
        .args(["etc", "home", "tmp", "usr"])
        .status()
        .context("running tar")?;
    ensure!(status.success(), "tar of the image layer failed");

    println!("pushing {reference}...");
    crane(paths, &["append", "--oci-empty-base", "-f"])
        .arg(&layer)
        .args(["-t", &reference])
        .run()?;
    let labels = [
        (
            "org.opencontainers.image.source",
            "https://github.com/headway-dev/headway".to_string(),
        ),
        ("org.opencontainers.image.revision", revision.clone()),
        ("org.opencontainers.image.version", version.to_string()),
        ("org.opencontainers.image.title", "headway".to_string()),
    ];
    let mut args: Vec<String> = [
        "mutate",
        &reference,
        "--entrypoint",
        &format!("{BIN_DIR}/headway"),
        "--cmd",
        "controller",
        "--user",
        USER,
        "--workdir",
        "/tmp",
        "--env",
        "HOME=/tmp",
        "--env",
        &format!("PATH={BIN_DIR}"),
        "--env",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        "--set-platform",
        "linux/amd64",
        "-t",
        &reference,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (k, v) in &labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mutate = crane(paths, &args);
    let digest_reference = mutate.run()?.trim().to_string();
    Ok(Built {
        reference,
        digest_reference,
        revision,
    })
}

/// `cargo build --release --target x86_64-unknown-linux-musl -p headway`; the binary's path.
fn build_static_headway(paths: &Paths) -> anyhow::Result<PathBuf> {
    println!("building headway (release, {TARGET})...");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args = [
        "build",
        "--quiet",
        "--release",
        "--target",
        TARGET,
        "-p",
        "headway",
    ];
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(&paths.root)
        .status()
        .context("running cargo build")?;
    ensure!(
        status.success(),
        "cargo {} failed (needs `rustup target add {TARGET}` and musl-gcc, e.g. the musl-tools package)",
        args.join(" ")
    );
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => paths.root.join(dir),
        None => paths.root.join("target"),
    };
    Ok(target.join(TARGET).join("release/headway"))
}

fn git_revision(root: &Path) -> anyhow::Result<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .context("running git rev-parse")?;
    ensure!(out.status.success(), "git rev-parse HEAD failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Whether an ELF executable is statically linked: it names no program interpreter (no
/// `PT_INTERP` program header), so the kernel loads it with no dynamic loader and no library.
pub fn is_static(path: &Path) -> anyhow::Result<bool> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(1 << 20)
        .read_to_end(&mut bytes)?;
    ensure!(
        bytes.len() >= 64 && bytes[..4] == *b"\x7fELF" && bytes[4] == 2 && bytes[5] == 1,
        "{} is not a 64-bit little-endian ELF file",
        path.display()
    );
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        ensure!(
            at + 4 <= bytes.len(),
            "{}: program headers beyond the first MiB",
            path.display()
        );
        const PT_INTERP: u32 = 3;
        if u32::from_le_bytes(bytes[at..at + 4].try_into()?) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A `crane` command line.
struct Crane(Command);

fn crane(paths: &Paths, args: &[&str]) -> Crane {
    let mut cmd = Command::new(paths.bin().join("crane"));
    cmd.arg("--insecure").args(args);
    Crane(cmd)
}

impl Crane {
    fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.0.arg(a);
        self
    }
    fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, a: I) -> Self {
        self.0.args(a);
        self
    }
    /// Runs it; its stdout, or an error with its command line and stderr.
    fn run(mut self) -> anyhow::Result<String> {
        let out = self.0.output().context("running crane")?;
        if !out.status.success() {
            bail!(
                "{:?} failed ({}): {}",
                self.0,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

/// `crane registry serve` on a free port of 127.0.0.1, stopped when dropped.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub address: String,
    _process: Guarded,
}

impl Registry {
    pub fn start(crane: &Path) -> anyhow::Result<Registry> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = format!("127.0.0.1:{port}");
        let mut process = Guarded::spawn(
            Command::new(crane)
                .args(["registry", "serve", "--address", &address])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .with_context(|| format!("starting {} registry serve", crane.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&address).is_err() {
            if let Some(status) = process.try_wait()? {
                bail!("crane registry serve on {address} exited: {status}");
            }
            ensure!(
                Instant::now() < deadline,
                "crane registry serve on {address} not listening after 20s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Registry {
            address,
            _process: process,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The image pulled back from a registry and run from its unpacked root filesystem alone
    //! (`HEADWAY_IMAGE_TESTS=1`; needs `cargo xtask cluster build`, the musl target, musl-gcc).

    use super::*;

    fn enabled() -> bool {
        let on = std::env::var("HEADWAY_IMAGE_TESTS").is_ok_and(|v| v == "1");
        if !on {
            eprintln!("skipping: the image test needs HEADWAY_IMAGE_TESTS=1");
        }
        on
    }

    fn find_on_path(name: &str) -> PathBuf {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{name} is not on PATH"))
    }

    #[test]
    fn elf_static_check_tells_static_from_dynamic() {
        // The test binary itself is dynamically linked (glibc); /proc/self/exe is it.
        assert!(!is_static(Path::new("/proc/self/exe")).unwrap());
        let err = is_static(Path::new("Cargo.toml")).unwrap_err().to_string();
        assert!(err.contains("Cargo.toml is not a 64-bit"), "{err}");
    }

    #[test]
    fn the_image_runs_from_its_own_root_filesystem() {
        if !enabled() {
            return;
        }
        let paths = Paths::new(None);
        let registry = Registry::start(&paths.bin().join("crane")).unwrap();
        let built = build(
            &paths,
            &Options {
                registry: Some(registry.address.clone()),
                repository: "headway-test".into(),
                tag: Some("image-test".into()),
            },
        )
        .unwrap();

        // The config: non-root user, entrypoint, labels.
        let config: serde_json::Value = serde_json::from_str(
            &crane(&paths, &["config", &built.digest_reference])
                .run()
                .unwrap(),
        )
        .unwrap();
        let c = &config["config"];
        assert_eq!(c["User"], USER, "{config:#}");
        assert_eq!(
            c["Entrypoint"],
            serde_json::json!(["/usr/local/bin/headway"]),
            "{config:#}"
        );
        assert_eq!(config["os"], "linux");
        assert_eq!(config["architecture"], "amd64");
        let labels = &c["Labels"];
        assert_eq!(
            labels["org.opencontainers.image.revision"], built.revision,
            "{config:#}"
        );
        assert_eq!(
            labels["org.opencontainers.image.version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(
            labels["org.opencontainers.image.source"],
            "https://github.com/headway-dev/headway"
        );

        // Pulled back and unpacked: only what the image holds.
        let dir = tempfile::tempdir().unwrap();
        let fs_tar = dir.path().join("fs.tar");
        crane(&paths, &["export", &built.digest_reference])
            .arg(&fs_tar)
            .run()
            .unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&fs_tar)
            .arg("-C")
            .arg(&root)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(
            !root.join("bin/sh").exists() && !root.join("lib").exists(),
            "the image has a shell or libraries"
        );

        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        for (name, args, expect) in [
            ("headway", &["version"][..], env!("CARGO_PKG_VERSION")),
            ("helm", &["version", "--short"][..], "v3."),
            ("kustomize", &["version"][..], "v5."),
        ] {
            let inside = format!("{BIN_DIR}/{name}");
            let on_host = root.join(inside.trim_start_matches('/'));
            assert!(is_static(&on_host).unwrap(), "{inside} is not static");
            // chroot when we can (then nothing of the host's filesystem is reachable), else
            // run it from the unpacked tree with an empty library path and environment.
            let mut cmd = if as_root {
                // By its full path: the child's environment is cleared, PATH included.
                let mut c = Command::new(find_on_path("chroot"));
                c.arg(format!("--userspec={USER}"))
                    .arg(&root)
                    .arg(&inside)
                    .args(args);
                c
            } else {
                let mut c = Command::new(&on_host);
                c.args(args);
                c
            };
            let out = cmd
                .env_clear()
                .env("LD_LIBRARY_PATH", "")
                .env("HOME", "/tmp")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains(expect),
                "{cmd:?} (as root: {as_root}): {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("{inside}: {}", stdout.trim());
        }
    }
}
