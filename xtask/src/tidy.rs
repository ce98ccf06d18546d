//! Tidy checks, run as ordinary tests (`cargo test -p xtask`, so `cargo xtask test` runs them):
//! the shape the architecture promises, read from `cargo metadata` and the sources.
//!
//! - `model` has no kube, tokio, git2 or axum in its dependency graph;
//! - `api` declares no dependency on apply, source, render or git2;
//! - every declared dependency is referenced in its crate's sources;
//! - every `.rs` file starts with a `//!` line saying what it holds;
//! - no `.rs` file is over [`MAX_LINES`] lines without a `//! long because …` line;
//! - docs/ARCHITECTURE.md's code map names only paths and modules that exist, and every crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Longest `.rs` file that needs no reason.
const MAX_LINES: usize = 800;

/// Files over [`MAX_LINES`] in crates other branches are reshaping right now (issue 12).
/// TEMPORARY: the lead empties this list once those branches are merged (each file split, or
/// given a `//! long because …` line); do not add to it.
const LONG_FILES_BEING_SPLIT: &[&str] = &[];

/// Declared dependencies that other branches are removing right now (issue 12). TEMPORARY: the
/// lead empties this list once those branches are merged; do not add to it.
const UNUSED_DEPS_BEING_REMOVED: &[(&str, &str)] = &[];

/// What `model` must never depend on, directly or not.
const NOT_IN_MODEL: &[&str] = &[
    "kube",
    "kube-client",
    "kube-runtime",
    "tokio",
    "git2",
    "axum",
];

/// What `api` must never declare: it sees the controller only through its read model and Handle.
const NOT_IN_API: &[&str] = &["headway-apply", "headway-source", "headway-render", "git2"];

/// One workspace package, from `cargo metadata`.
#[derive(Debug)]
struct Package {
    name: String,
    id: String,
    /// Relative to the workspace root, e.g. `crates/model`.
    dir: PathBuf,
    /// (the name the code uses, the package name, the kind: normal, dev or build).
    deps: Vec<(String, String, String)>,
    /// `[package.metadata.tidy] features-only`: dependencies declared only to choose features
    /// (k8s-openapi's version feature in test binaries), never referenced.
    features_only: Vec<String>,
}

struct Workspace {
    root: PathBuf,
    packages: Vec<Package>,
    /// package id -> ids of its normal (non-dev, non-build) dependencies.
    normal_deps: BTreeMap<String, Vec<String>>,
    /// package id -> package name, for every package in the graph.
    names: BTreeMap<String, String>,
}

fn workspace() -> Workspace {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(&root)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut packages = Vec::new();
    let mut names = BTreeMap::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        let id = p["id"].as_str().unwrap_or_default().to_string();
        let name = p["name"].as_str().unwrap_or_default().to_string();
        names.insert(id.clone(), name.clone());
        if !members.contains(id.as_str()) {
            continue;
        }
        let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
        let dir = manifest
            .parent()
            .and_then(|d| d.strip_prefix(&root).ok())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let deps = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let package = d["name"].as_str().unwrap_or_default().to_string();
                let used_as = d["rename"].as_str().unwrap_or(&package).replace('-', "_");
                let kind = d["kind"].as_str().unwrap_or("normal").to_string();
                (used_as, package, kind)
            })
            .collect();
        let features_only = p["metadata"]["tidy"]["features-only"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        packages.push(Package {
            name,
            id,
            dir,
            deps,
            features_only,
        });
    }
    let mut normal_deps = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().into_iter().flatten() {
        let id = node["id"].as_str().unwrap_or_default().to_string();
        let deps = node["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null())
            })
            .filter_map(|d| d["pkg"].as_str().map(String::from))
            .collect();
        normal_deps.insert(id, deps);
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Workspace {
        root,
        packages,
        normal_deps,
        names,
    }
}

impl Workspace {
    fn package(&self, name: &str) -> &Package {
        self.packages
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no package {name} in the workspace"))
    }

    /// Every `.rs` file of the workspace's packages (relative paths), sorted.
    fn rust_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for p in &self.packages {
            collect_rs(&self.root, &p.dir, &mut files);
        }
        files.sort();
        files.dedup();
        files
    }

    /// A package's sources: its `.rs` files, and files they include with `#[path = "…"]`.
    fn sources_of(&self, package: &Package) -> String {
        let mut files = Vec::new();
        collect_rs(&self.root, &package.dir, &mut files);
        let mut text = String::new();
        for file in &files {
            let content = read(&self.root.join(file));
            for line in content.lines() {
                if let Some(rest) = line.trim().strip_prefix("#[path = \"")
                    && let Some(included) = rest.split('"').next()
                    && let Some(dir) = self.root.join(file).parent()
                {
                    text.push_str(&std::fs::read_to_string(dir.join(included)).unwrap_or_default());
                }
            }
            text.push_str(&content);
            text.push('\n');
        }
        text
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `.rs` files under `root/dir` (relative to `root`), skipping `target` directories.
fn collect_rs(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let rel = dir.join(&name);
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                collect_rs(root, &rel, out);
            }
        } else if rel.extension().is_some_and(|e| e == "rs") {
            out.push(rel);
        }
    }
}

/// Fails with every violation, one per line.
fn check(rule: &str, violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "tidy: {rule}:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn model_has_no_kube_tokio_git2_or_axum_dependency() {
    let ws = workspace();
    let model = ws.package("headway-model");
    // Breadth-first over normal dependencies, remembering how each package was reached.
    let mut via: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = vec![model.id.clone()];
    let mut violations = Vec::new();
    while let Some(id) = queue.pop() {
        for dep in ws.normal_deps.get(&id).into_iter().flatten() {
            if via.contains_key(dep) || *dep == model.id {
                continue;
            }
            via.insert(dep.clone(), id.clone());
            let name = &ws.names[dep];
            if NOT_IN_MODEL.contains(&name.as_str()) {
                let mut path = vec![name.clone()];
                let mut at = id.clone();
                while at != model.id {
                    path.push(ws.names[&at].clone());
                    at = via[&at].clone();
                }
                path.push(model.name.clone());
                path.reverse();
                violations.push(format!(
                    "headway-model depends on {name} ({}): the model is pure, no Kubernetes client, \
                     async runtime, git or HTTP server",
                    path.join(" -> ")
                ));
            }
            queue.push(dep.clone());
        }
    }
    check("model's dependencies", violations);
}

#[test]
fn api_never_depends_on_apply_source_render_or_git2() {
    let ws = workspace();
    let violations = ws
        .package("headway-api")
        .deps
        .iter()
        .filter(|(_, package, _)| NOT_IN_API.contains(&package.as_str()))
        .map(|(_, package, kind)| {
            format!(
                "crates/api/Cargo.toml declares {package} ({kind}): the API sees the controller \
                 only through its read model and Handle"
            )
        })
        .collect();
    check("api's dependencies", violations);
}

/// Whether `text` uses the crate `ident` (`ident::`, `use ident`, `extern crate ident`, or a
/// macro `ident!`), as a whole word.
fn references(text: &str, ident: &str) -> bool {
    text.match_indices(ident).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = &text[at + ident.len()..];
        let starts_word = !before.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let ends_word = !after.starts_with(|c: char| c.is_alphanumeric() || c == '_');
        let prefix = text[..at].trim_end();
        starts_word
            && ends_word
            && (after.starts_with("::")
                || after.starts_with('!')
                || ends_with_word(prefix, "use")
                || ends_with_word(prefix, "extern crate"))
    })
}

/// Whether `text` ends with the word `word`.
fn ends_with_word(text: &str, word: &str) -> bool {
    text.strip_suffix(word)
        .is_some_and(|head| !head.ends_with(|c: char| c.is_alphanumeric() || c == '_'))
}

#[test]
fn every_declared_dependency_is_used() {
    let ws = workspace();
    let mut violations = Vec::new();
    for package in &ws.packages {
        let sources = ws.sources_of(package);
        for (ident, name, kind) in &package.deps {
            if package.features_only.contains(name)
                || UNUSED_DEPS_BEING_REMOVED.contains(&(package.name.as_str(), name.as_str()))
            {
                continue;
            }
            if !references(&sources, ident) {
                violations.push(format!(
                    "{}/Cargo.toml: {kind} dependency {name} is never used (no `{ident}::` in its \
                     sources): remove it, or list it in [package.metadata.tidy] features-only \
                     if it is there for its features",
                    package.dir.display()
                ));
            }
        }
    }
    check("unused dependencies", violations);
}

#[test]
fn every_module_starts_with_a_doc_line() {
    let ws = workspace();
    let violations = ws
        .rust_files()
        .into_iter()
        .filter(|file| !read(&ws.root.join(file)).starts_with("//!"))
        .map(|file| {
            format!(
                "{}:1: start the module with a `//!` line saying what it holds",
                file.display()
            )
        })
        .collect();
    check("module docs", violations);
}

#[test]
fn long_files_say_why() {
    let ws = workspace();
    let mut violations = Vec::new();
    for file in ws.rust_files() {
        let text = read(&ws.root.join(&file));
        let lines = text.lines().count();
        let rel = file.to_string_lossy();
        if lines <= MAX_LINES || LONG_FILES_BEING_SPLIT.contains(&rel.as_ref()) {
            continue;
        }
        let reason = text
            .lines()
            .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
            .any(|l| l.starts_with("//! long because "));
        if !reason {
            violations.push(format!(
                "{rel}: {lines} lines (more than {MAX_LINES}): split it by idea, or say why it \
                 is one in a `//! long because …` line of its module doc"
            ));
        }
    }
    check("long files", violations);
}

/// The code map: the lines of docs/ARCHITECTURE.md from `## Code map` to the next `## `.
fn code_map(text: &str) -> Vec<String> {
    let start = text
        .find("\n## Code map")
        .expect("docs/ARCHITECTURE.md has a `## Code map` section");
    let section = &text[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    // One entry per bullet (continuation lines joined).
    let mut bullets: Vec<String> = Vec::new();
    for line in section[..end].lines().skip(1) {
        if let Some(item) = line.strip_prefix("- ") {
            bullets.push(item.to_string());
        } else if line.starts_with("  ")
            && let Some(last) = bullets.last_mut()
        {
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    bullets
}

/// The `code` spans of a line, each with the text that follows it.
fn code_spans(text: &str) -> Vec<(&str, &str)> {
    let mut spans = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        let Some(len) = rest[open + 1..].find('`') else {
            break;
        };
        let span = &rest[open + 1..open + 1 + len];
        rest = &rest[open + 2 + len..];
        spans.push((span, rest));
    }
    spans
}

/// What in one code-map bullet does not exist: paths (`a/b`), files (`x.rs`, relative to the
/// crate's `src`), modules (a lowercase name followed by ` (`, i.e. described), doc links.
fn check_bullet(root: &Path, bullet: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let spans = code_spans(bullet);
    // The bullet's subject: a directory (a crate, the chart); paths may be relative to it.
    let base = spans
        .first()
        .map(|(s, _)| root.join(s))
        .filter(|d| d.is_dir());
    let crate_dir = base.clone().filter(|d| d.join("Cargo.toml").is_file());
    for (span, after) in spans.iter().skip(1) {
        let is_path = span.contains('/')
            && !span.contains([' ', '<', ':', '*', '='])
            && !span.starts_with(['/', '-']);
        let is_file = !span.contains('/') && span.ends_with(".rs");
        let is_module =
            span.chars().all(|c| c.is_ascii_lowercase() || c == '_') && after.starts_with(" (");
        if is_path
            && !root.join(span).exists()
            && !base.as_ref().is_some_and(|b| b.join(span).exists())
        {
            missing.push(format!("`{span}`: no such path"));
        } else if is_file || is_module {
            let Some(dir) = &crate_dir else { continue };
            let src = dir.join("src");
            let candidates = if is_file {
                vec![src.join(span)]
            } else {
                vec![
                    src.join(format!("{span}.rs")),
                    src.join(span).join("mod.rs"),
                ]
            };
            if !candidates.iter().any(|c| c.is_file()) {
                missing.push(format!(
                    "`{span}`: no {} in {}",
                    if is_file { "file" } else { "module" },
                    src.strip_prefix(root).unwrap_or(&src).display()
                ));
            }
        }
    }
    // Links to other documents, relative to docs/.
    let mut rest = bullet;
    while let Some(at) = rest.find("](") {
        let target = &rest[at + 2..];
        let Some(end) = target.find(')') else { break };
        let link = &target[..end];
        if !link.contains("://") && !root.join("docs").join(link).exists() {
            missing.push(format!("link {link}: no such file in docs/"));
        }
        rest = &target[end..];
    }
    missing
}

#[test]
fn the_code_map_names_what_exists_and_every_crate() {
    let ws = workspace();
    let text = read(&ws.root.join("docs/ARCHITECTURE.md"));
    let bullets = code_map(&text);
    let mut violations = Vec::new();
    for bullet in &bullets {
        let head: String = bullet.chars().take(40).collect();
        for problem in check_bullet(&ws.root, bullet) {
            violations.push(format!(
                "docs/ARCHITECTURE.md code map, \"{head}…\": {problem}"
            ));
        }
    }
    let described: BTreeSet<&str> = bullets
        .iter()
        .filter_map(|b| code_spans(b).first().map(|(s, _)| *s))
        .collect();
    for package in &ws.packages {
        let dir = package.dir.to_string_lossy();
        if !described.contains(dir.as_ref()) {
            violations.push(format!(
                "docs/ARCHITECTURE.md code map: no bullet starting with `{dir}` ({})",
                package.name
            ));
        }
    }
    check("the code map", violations);
}

#[test]
fn the_checks_themselves() {
    assert!(references("use kube::Api;", "kube"));
    assert!(references("let x = serde_json::json!({});", "serde_json"));
    assert!(references("extern crate kube;", "kube"));
    assert!(!references("use kube_lease_manager::X;", "kube"));
    assert!(!references("// tokio is not used", "tokio"));
    assert!(!references("because tokio;", "tokio"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("crates/a/src")).unwrap();
    std::fs::write(dir.path().join("crates/a/Cargo.toml"), "").unwrap();
    std::fs::write(dir.path().join("crates/a/src/order.rs"), "").unwrap();
    std::fs::create_dir_all(dir.path().join("docs")).unwrap();
    let problems = check_bullet(
        dir.path(),
        "`crates/a` (`headway-a`): `order` (ranks), `drift` (diff), `Engine` (`sync`, `x`), \
         `input.rs` reads, `crates/b` too; see [a.md](a.md).",
    );
    assert_eq!(
        problems,
        [
            "`drift`: no module in crates/a/src",
            "`input.rs`: no file in crates/a/src",
            "`crates/b`: no such path",
            "link a.md: no such file in docs/",
        ]
    );
}
