//! Kustomize and Helm directories: build the command line, run the tool, parse its output.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use headway_model::Manifest;

use crate::error::RenderError;
use crate::options::RenderOptions;
use crate::tool::{Invocation, search_path, which};
use crate::{collect, decrypt, walk, yaml};

/// `kustomize:<dir>` / `helm:<dir>`: the name tool output carries in source locations, with the
/// directory relative to the boundary (`.` when it is the boundary).
fn label(tool: &str, dir: &Path, boundary: &Path) -> String {
    let rel = dir.strip_prefix(boundary).unwrap_or(dir);
    let rel = rel.to_string_lossy();
    format!("{tool}:{}", if rel.is_empty() { "." } else { &rel })
}

fn parse_output(
    text: &str,
    file: &str,
    input: &Path,
    options: &RenderOptions,
    errors: &mut Vec<RenderError>,
) -> Vec<Manifest> {
    yaml::with_big_stack(|| {
        let (mut docs, mut manifests) = (Vec::new(), Vec::new());
        yaml::parse_stream(text, file, &mut docs, errors);
        decrypt::decrypt_documents(&mut docs, options.decryptor.as_ref(), Some(input), errors);
        collect::to_manifests(docs, &mut manifests, errors);
        manifests
    })
}

/// Runs `kustomize build DIR` (or `kubectl kustomize DIR`).
pub(crate) fn kustomize(
    dir: &Path,
    boundary: &Path,
    options: &RenderOptions,
    errors: &mut Vec<RenderError>,
) -> Vec<Manifest> {
    walk::check_symlinks(boundary, "", boundary, errors);
    if !errors.is_empty() {
        return Vec::new();
    }
    let t = &options.tools;
    let path = search_path(t);
    let (program, mut args): (PathBuf, Vec<OsString>) =
        match t.kustomize.clone().or_else(|| which("kustomize", &path)) {
            Some(p) => (p, vec!["build".into()]),
            None => match t.kubectl.clone().or_else(|| which("kubectl", &path)) {
                Some(p) => (p, vec!["kustomize".into()]),
                None => {
                    errors.push(RenderError::ToolNotFound {
                        tool: "kustomize",
                        tried: vec!["kustomize".into(), "kubectl".into()],
                    });
                    return Vec::new();
                }
            },
        };
    args.push(dir.as_os_str().to_owned());
    let run = Invocation {
        tool: "kustomize",
        program: &program,
        args,
        cwd: dir,
        timeout: t.timeout,
        max_output: options.limits.max_tool_output_bytes,
        path,
    }
    .run();
    match run {
        Ok(out) => parse_output(
            &out,
            &label("kustomize", dir, boundary),
            boundary,
            options,
            errors,
        ),
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    }
}

/// Runs `helm template RELEASE DIR --namespace NS --values F... [--include-crds]`.
pub(crate) fn helm(
    dir: &Path,
    boundary: &Path,
    options: &RenderOptions,
    errors: &mut Vec<RenderError>,
) -> Vec<Manifest> {
    walk::check_symlinks(boundary, "", boundary, errors);
    let h = &options.helm;
    let mut args: Vec<OsString> = vec![
        "template".into(),
        h.release_name.clone().into(),
        dir.as_os_str().to_owned(),
        "--namespace".into(),
        h.namespace.clone().into(),
    ];
    for v in &h.values_files {
        if v.is_absolute() {
            args.extend(["--values".into(), v.as_os_str().to_owned()]);
            continue;
        }
        match std::fs::canonicalize(dir.join(v)) {
            Ok(p) if p.starts_with(boundary) => {
                args.extend(["--values".into(), p.into_os_string()]);
            }
            Ok(_) => errors.push(RenderError::InvalidOption(format!(
                "values file {} is outside the repository",
                v.display()
            ))),
            Err(source) => errors.push(RenderError::Io {
                file: v.display().to_string(),
                source,
            }),
        }
    }
    if h.include_crds {
        args.push("--include-crds".into());
    }
    if !errors.is_empty() {
        return Vec::new();
    }
    let path = search_path(&options.tools);
    let Some(program) = options.tools.helm.clone().or_else(|| which("helm", &path)) else {
        errors.push(RenderError::ToolNotFound {
            tool: "helm",
            tried: vec!["helm".into()],
        });
        return Vec::new();
    };
    let run = Invocation {
        tool: "helm",
        program: &program,
        args,
        cwd: dir,
        timeout: options.tools.timeout,
        max_output: options.limits.max_tool_output_bytes,
        path,
    }
    .run();
    match run {
        Ok(out) => parse_output(
            &out,
            &label("helm", dir, boundary),
            boundary,
            options,
            errors,
        ),
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    }
}
