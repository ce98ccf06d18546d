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

/// The manifests `tool` printed for `dir`, in source locations named by [`label`]; a failed run
/// is its error and no manifests.
fn manifests_of(
    run: Result<String, RenderError>,
    tool: &str,
    dir: &Path,
    boundary: &Path,
    options: &RenderOptions,
    errors: &mut Vec<RenderError>,
) -> Vec<Manifest> {
    let text = match run {
        Ok(text) => text,
        Err(e) => {
            errors.push(e);
            return Vec::new();
        }
    };
    let file = label(tool, dir, boundary);
    yaml::with_big_stack(|| {
        let (mut docs, mut manifests) = (Vec::new(), Vec::new());
        yaml::parse_stream(&text, &file, &mut docs, errors);
        decrypt::decrypt_documents(
            &mut docs,
            options.decryptor.as_ref(),
            Some(boundary),
            errors,
        );
        collect::to_manifests(docs, &mut manifests, errors);
        manifests
    })
}

/// Runs `kustomize build [--enable-helm --helm-command HELM] DIR` (or `kubectl kustomize ...`).
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
    // `helmCharts` inflation through the same helm (offline: charts must be vendored under the
    // kustomization's chartHome, `charts/<name>` or `charts/<name>-<version>/<name>`).
    if let Some(helm) = options.tools.helm.clone().or_else(|| which("helm", &path)) {
        args.extend([
            "--enable-helm".into(),
            "--helm-command".into(),
            helm.into_os_string(),
        ]);
    }
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
    manifests_of(run, "kustomize", dir, boundary, options, errors)
}

/// Runs `helm template RELEASE DIR --namespace NS --values F... [--include-crds] --kube-version V
/// --api-versions A...`.
pub(crate) fn helm(
    dir: &Path,
    boundary: &Path,
    options: &RenderOptions,
    errors: &mut Vec<RenderError>,
) -> Vec<Manifest> {
    walk::check_symlinks(boundary, "", boundary, errors);
    let h = &options.helm;
    // Dependencies git does not carry, downloaded by the caller: rendered from a copy of the
    // chart whose `charts/` has them, so that the checkout (or the user's directory) is unchanged.
    let with_dependencies = if h.chart.is_none() && !h.dependencies.is_empty() && errors.is_empty()
    {
        match chart_with_dependencies(dir, &h.dependencies) {
            Ok(copy) => Some(copy),
            Err(source) => {
                errors.push(RenderError::Io {
                    file: format!("{} (copied to add its dependencies)", dir.display()),
                    source,
                });
                return Vec::new();
            }
        }
    } else {
        None
    };
    let chart = match (&h.chart, &with_dependencies) {
        (Some(archive), _) => archive.as_path(),
        (None, Some((_, copy))) => copy.as_path(),
        (None, None) => dir,
    };
    let mut args: Vec<OsString> = vec![
        "template".into(),
        h.release_name.clone().into(),
        chart.as_os_str().to_owned(),
        "--namespace".into(),
        h.namespace.clone().into(),
    ];
    // A fetched chart takes its values from the directory: its values.yaml unless files are named.
    let default_values = [PathBuf::from("values.yaml")];
    let values_files = if h.chart.is_some() && h.values_files.is_empty() {
        if dir.join("values.yaml").is_file() {
            &default_values[..]
        } else {
            &[]
        }
    } else {
        &h.values_files[..]
    };
    for v in values_files {
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
    // Inline values last, so they win; written as JSON (YAML's subset) to a private file.
    let inline = match &h.values {
        Some(values) if !values.is_object() => {
            errors.push(RenderError::InvalidOption(
                "inline Helm values must be a mapping".into(),
            ));
            None
        }
        Some(values) => match write_values(values) {
            Ok(file) => {
                args.extend(["--values".into(), file.path().as_os_str().to_owned()]);
                Some(file)
            }
            Err(source) => {
                errors.push(RenderError::Io {
                    file: "inline Helm values".into(),
                    source,
                });
                None
            }
        },
        None => None,
    };
    if h.include_crds {
        args.push("--include-crds".into());
    }
    // `helm.sh/hook: test` Pods are for `helm test`, not for the cluster: never applied (Argo CD
    // ignores them too).
    args.push("--skip-tests".into());
    match h.capabilities.validate() {
        Ok(()) => {
            args.extend([
                "--kube-version".into(),
                h.capabilities.kube_version.clone().into(),
            ]);
            for a in &h.capabilities.api_versions {
                args.extend(["--api-versions".into(), a.into()]);
            }
        }
        Err(e) => errors.push(RenderError::InvalidOption(e)),
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
    drop(inline);
    drop(with_dependencies);
    let mut manifests = manifests_of(run, "helm", dir, boundary, options, errors);
    manifests.retain(|m| !outside_sync(&m.object));
    manifests
}

/// A copy of the chart directory `dir` (symlinks followed: they were checked to stay inside the
/// repository) with the dependency archives added to its `charts/`.
fn chart_with_dependencies(
    dir: &Path,
    archives: &[PathBuf],
) -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::Builder::new()
        .prefix("headway-chart-")
        .tempdir()?;
    let name = dir
        .file_name()
        .unwrap_or_else(|| std::ffi::OsStr::new("chart"));
    let copy = tmp.path().join(name);
    let mut stack = vec![(dir.to_path_buf(), copy.clone())];
    while let Some((from, to)) = stack.pop() {
        std::fs::create_dir_all(&to)?;
        for entry in std::fs::read_dir(&from)? {
            let entry = entry?;
            let path = entry.path();
            let target = to.join(entry.file_name());
            if std::fs::metadata(&path)?.is_dir() {
                stack.push((path, target));
            } else {
                std::fs::copy(&path, &target)?;
            }
        }
    }
    let charts = copy.join("charts");
    std::fs::create_dir_all(&charts)?;
    for archive in archives {
        let file = archive
            .file_name()
            .unwrap_or_else(|| std::ffi::OsStr::new("dependency.tgz"));
        std::fs::copy(archive, charts.join(file))?;
    }
    Ok((tmp, copy))
}

/// Helm hook phases that run when a release is installed or upgraded: a hook naming one of them
/// is applied with the rest. (`crd-install` is Helm 2's, still found in old charts.)
const SYNC_HOOK_PHASES: &[&str] = &[
    "pre-install",
    "post-install",
    "pre-upgrade",
    "post-upgrade",
    "crd-install",
];

/// Whether an object is a Helm hook for deletion, rollback or tests only (`pre-delete`,
/// `post-delete`, `pre-rollback`, `post-rollback`, `test`): applying it at a sync would run it at
/// the wrong time (gatekeeper's `pre-delete` Job removes its webhook configurations), so it is
/// left out, as Argo CD leaves out the hooks it has no phase for.
fn outside_sync(object: &serde_json::Value) -> bool {
    let Some(phases) = object
        .pointer("/metadata/annotations/helm.sh~1hook")
        .and_then(serde_json::Value::as_str)
    else {
        return false;
    };
    !phases
        .split(',')
        .map(str::trim)
        .any(|phase| SYNC_HOOK_PHASES.contains(&phase))
}

/// Inline values in a temporary file, removed when dropped.
fn write_values(values: &serde_json::Value) -> std::io::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix("headway-values-")
        .suffix(".json")
        .tempfile()?;
    serde_json::to_writer(&mut file, values)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::outside_sync;
    use serde_json::json;

    fn hooked(phases: Option<&str>) -> serde_json::Value {
        let mut o = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}});
        if let Some(p) = phases {
            o["metadata"]["annotations"] = json!({"helm.sh/hook": p});
        }
        o
    }

    #[test]
    fn only_delete_rollback_and_test_hooks_are_left_out() {
        for kept in [
            None,
            Some("pre-install"),
            Some("post-upgrade"),
            Some("pre-install,pre-upgrade"),
            Some("pre-delete, post-install"),
            Some("crd-install"),
        ] {
            assert!(!outside_sync(&hooked(kept)), "{kept:?}");
        }
        for left_out in [
            "pre-delete",
            "post-delete",
            "pre-rollback,post-rollback",
            "test",
            "test-success",
        ] {
            assert!(outside_sync(&hooked(Some(left_out))), "{left_out}");
        }
    }
}
