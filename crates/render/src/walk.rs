//! Directory walking for plain manifests: which files are read, in which order, and the
//! symlink and size rules that keep a hostile repository from reading outside itself.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::RenderError;
use crate::options::Limits;

/// Files at the root of a directory that mark it as a Kustomize directory.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// File names that are tool configuration, never Kubernetes objects, and are skipped in plain
/// directories.
pub const NOT_MANIFESTS: [&str; 8] = [
    "kustomization.yaml",
    "kustomization.yml",
    "Kustomization",
    "Chart.yaml",
    "Chart.lock",
    "values.yaml",
    "values.yml",
    "values.schema.json",
];

/// A file to read.
#[derive(Debug)]
pub(crate) struct FileEntry {
    /// Path relative to the rendered directory, with `/` separators.
    pub rel: String,
    /// Path to open.
    pub path: PathBuf,
    /// Size in bytes when it was listed.
    pub size: u64,
}

/// Whether `dir` holds a kustomization file.
pub(crate) fn is_kustomize_dir(dir: &Path) -> bool {
    KUSTOMIZATION_FILES.iter().any(|f| dir.join(f).is_file())
}

/// Whether `dir` holds a Helm chart.
pub(crate) fn is_helm_dir(dir: &Path) -> bool {
    dir.join("Chart.yaml").is_file()
}

fn is_manifest_name(name: &str) -> bool {
    let ext_ok = [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e));
    ext_ok && !NOT_MANIFESTS.contains(&name)
}

/// Lists the manifest files under `dir` (canonical), sorted by relative path.
///
/// Rules: hidden entries (`.git`, `.github`, `.x.yaml`) are skipped; subdirectories holding a
/// kustomization or a `Chart.yaml` are skipped (they are rendered by their tool, not read as
/// YAML); symlinked files are read when their target stays inside `boundary`; symlinked
/// directories are never followed (as `kubectl apply -R`); a symlink whose target leaves
/// `boundary` is an error.
pub(crate) fn list_files(
    dir: &Path,
    boundary: &Path,
    limits: &Limits,
    errors: &mut Vec<RenderError>,
) -> Vec<FileEntry> {
    let mut files = Vec::new();
    let mut total = 0u64;
    walk(dir, "", boundary, limits, &mut files, errors);
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    if files.len() > limits.max_files {
        errors.push(RenderError::TooManyFiles {
            limit: limits.max_files,
            first_over: files[limits.max_files].rel.clone(),
        });
        files.truncate(limits.max_files);
    }
    let mut kept = Vec::with_capacity(files.len());
    for f in files {
        if f.size > limits.max_file_bytes {
            errors.push(RenderError::FileTooLarge {
                file: f.rel,
                size: f.size,
                limit: limits.max_file_bytes,
            });
            continue;
        }
        total += f.size;
        if total > limits.max_total_bytes {
            errors.push(RenderError::TotalSizeExceeded {
                file: f.rel,
                limit: limits.max_total_bytes,
            });
            break;
        }
        kept.push(f);
    }
    kept
}

fn join_rel(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

fn walk(
    dir: &Path,
    rel: &str,
    boundary: &Path,
    limits: &Limits,
    files: &mut Vec<FileEntry>,
    errors: &mut Vec<RenderError>,
) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(source) => {
            errors.push(RenderError::Io {
                file: if rel.is_empty() {
                    ".".into()
                } else {
                    rel.into()
                },
                source,
            });
            return;
        }
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if files.len() > limits.max_files {
            return; // reported by the caller
        }
        let name = display_name(&entry.file_name());
        if name.starts_with('.') {
            continue;
        }
        let rel_path = join_rel(rel, &name);
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_symlink() {
            match resolve_symlink(&path, boundary) {
                Ok(target) => {
                    // Directories behind links are not followed.
                    if !is_manifest_name(&name) {
                        continue;
                    }
                    match fs::metadata(&target) {
                        Ok(meta) if meta.is_file() => files.push(FileEntry {
                            rel: rel_path,
                            path: target,
                            size: meta.len(),
                        }),
                        Ok(_) => {}
                        Err(source) => errors.push(RenderError::Io {
                            file: rel_path,
                            source,
                        }),
                    }
                }
                Err(mut e) => {
                    if let RenderError::SymlinkEscapes { file, .. } | RenderError::Io { file, .. } =
                        &mut e
                    {
                        *file = rel_path;
                    }
                    errors.push(e);
                }
            }
        } else if file_type.is_dir() {
            if is_kustomize_dir(&path) || is_helm_dir(&path) {
                continue;
            }
            walk(&path, &rel_path, boundary, limits, files, errors);
        } else if file_type.is_file() && is_manifest_name(&name) {
            match entry.metadata() {
                Ok(meta) => files.push(FileEntry {
                    rel: rel_path,
                    path,
                    size: meta.len(),
                }),
                Err(source) => errors.push(RenderError::Io {
                    file: rel_path,
                    source,
                }),
            }
        }
    }
}

/// A file name as errors and sources show it: control characters (a newline would forge a line
/// of an error list or a log) escaped as `\n`, `\u{1b}`, and bytes that are not UTF-8 as `\xFF`,
/// so that every name is one unambiguous line.
pub(crate) fn display_name(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// Resolves a symlink to its canonical target, which must lie inside `boundary` (canonical).
pub(crate) fn resolve_symlink(link: &Path, boundary: &Path) -> Result<PathBuf, RenderError> {
    let target = fs::read_link(link).unwrap_or_default();
    match fs::canonicalize(link) {
        Ok(canonical) if canonical.starts_with(boundary) => Ok(canonical),
        Ok(_) => Err(RenderError::SymlinkEscapes {
            file: link.display().to_string(),
            target,
        }),
        // A dangling link: judge the target as written, so an escaping one is named as such.
        Err(source) => {
            let joined = link.parent().unwrap_or(Path::new("/")).join(&target);
            if !lexically_inside(&joined, boundary) {
                Err(RenderError::SymlinkEscapes {
                    file: link.display().to_string(),
                    target,
                })
            } else {
                Err(RenderError::Io {
                    file: link.display().to_string(),
                    source,
                })
            }
        }
    }
}

/// Whether `path`, with `.` and `..` resolved lexically, lies inside `boundary`.
fn lexically_inside(path: &Path, boundary: &Path) -> bool {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.starts_with(boundary)
}

/// Checks every symlink under `dir` (skipping `.git`): each must resolve inside `boundary`.
/// Used before handing a directory to kustomize or helm, which follow links themselves.
pub(crate) fn check_symlinks(
    dir: &Path,
    rel: &str,
    boundary: &Path,
    errors: &mut Vec<RenderError>,
) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = display_name(&entry.file_name());
        if name == ".git" {
            continue;
        }
        let rel_path = join_rel(rel, &name);
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_symlink() {
            if let Err(RenderError::SymlinkEscapes { target, .. }) =
                resolve_symlink(&entry.path(), boundary)
            {
                errors.push(RenderError::SymlinkEscapes {
                    file: rel_path,
                    target,
                });
            }
        } else if file_type.is_dir() {
            check_symlinks(&entry.path(), &rel_path, boundary, errors);
        }
    }
}

/// Reads a listed file as UTF-8 text, never more than `limit` bytes.
pub(crate) fn read_text(file: &FileEntry, limit: u64) -> Result<String, RenderError> {
    let io = |source| RenderError::Io {
        file: file.rel.clone(),
        source,
    };
    let mut bytes = Vec::with_capacity(file.size.min(limit) as usize + 1);
    fs::File::open(&file.path)
        .map_err(io)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(RenderError::FileTooLarge {
            file: file.rel.clone(),
            size: bytes.len() as u64,
            limit,
        });
    }
    String::from_utf8(bytes).map_err(|_| RenderError::NotUtf8 {
        file: file.rel.clone(),
    })
}
