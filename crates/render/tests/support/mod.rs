//! Helpers shared by the render tests: golden files, fake tools, temporary trees.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use headway_model::Manifest;
use headway_render::{RenderErrors, RenderOptions};

/// `crates/render/testdata/<rel>`.
pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// Compares `actual` with the golden file `testdata/<name>`; with `UPDATE_GOLDEN=1`, rewrites it.
pub fn check_golden(name: &str, actual: &str) {
    let path = testdata(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(5)
            .map(|(i, (e, a))| format!("line {}:\n  expected: {e}\n  actual:   {a}", i + 1))
            .collect();
        panic!(
            "{} differs from the rendered output (UPDATE_GOLDEN=1 regenerates it)\n{}\n(expected {} lines, got {})\n--- actual ---\n{actual}",
            path.display(),
            diff.join("\n"),
            expected.lines().count(),
            actual.lines().count()
        );
    }
}

/// The golden form of a render: each object's identity, source and digest, then its YAML.
pub fn golden_form(manifests: &[Manifest]) -> String {
    let mut out = String::new();
    for m in manifests {
        out.push_str(&format!("--- # {} from {} {}\n", m.id, m.source, m.digest));
        out.push_str(&headway_render::output::object_to_yaml(&m.object));
    }
    out
}

/// The errors of a failed render, one per line.
pub fn error_lines(e: &RenderErrors) -> Vec<String> {
    e.errors().iter().map(ToString::to_string).collect()
}

/// Renders and expects failure.
pub fn render_err(dir: &Path, options: &RenderOptions) -> RenderErrors {
    match headway_render::render(dir, options) {
        Ok(m) => panic!("expected errors, rendered {} objects", m.len()),
        Err(e) => e,
    }
}

/// Writes files into a directory: `(relative path, contents)`.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
}

/// An executable shell script standing in for kustomize or helm.
pub fn fake_tool(dir: &Path, name: &str, script: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A ConfigMap as YAML.
pub fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: demo\n")
}

/// Whether tool tests run (`HEADWAY_TOOL_TESTS=1`); prints why not otherwise.
pub fn tool_tests_enabled(test: &str) -> bool {
    if std::env::var_os("HEADWAY_TOOL_TESTS").is_some_and(|v| v == "1") {
        true
    } else {
        eprintln!(
            "skipping: {test} needs HEADWAY_TOOL_TESTS=1 and kustomize, helm, kubectl on PATH"
        );
        false
    }
}

/// Finds a tool on PATH; a missing tool is a failure (tool tests are enabled).
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("HEADWAY_TOOL_TESTS=1 but `{name}` is not on PATH"))
}
