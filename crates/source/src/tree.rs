//! Writing a commit's tree to a directory, safely: every path is checked, every symlink must
//! resolve inside the checkout (following the tree's own symlinks, as the kernel would), and the
//! size and file-count limits are checked from object headers before a single file is written.
//!
//! Objects are written directly from the object database, so the cache repository stays bare
//! and the checkout holds no `.git`. A file whose blob and mode are the same as in a previous
//! checkout of the same cache entry is hard-linked from it instead of written: checkouts are
//! immutable, and a push that changes one file of a thousand then creates one new file, not a
//! thousand (creating files, not copying bytes, is what costs).

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::Path;

use git2::{ObjectType, Oid, Repository, Tree};
use tracing::debug;

use crate::error::SourceError;
use crate::types::Limits;

/// Why materializing failed: a refusal of the tree's content, or a fault of the local
/// repository (missing or unreadable objects: the cache is corrupt).
#[derive(Debug)]
pub(crate) enum TreeFailure {
    Refused(SourceError),
    Corrupt(String),
    Io(SourceError),
}

impl From<git2::Error> for TreeFailure {
    fn from(e: git2::Error) -> Self {
        TreeFailure::Corrupt(e.message().to_string())
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    File { executable: bool, size: u64 },
    Symlink,
}

#[derive(Debug)]
struct Entry {
    path: String,
    oid: Oid,
    /// The git file mode (`0o100644`, ...).
    mode: i32,
    kind: Kind,
}

/// A checkout written earlier from the same repository: the files it shares with the new tree
/// (same path, blob and mode) are hard-linked from it.
pub(crate) struct Previous<'r> {
    pub dir: std::path::PathBuf,
    pub tree: Tree<'r>,
}

/// A checked tree, ready to be written.
#[derive(Debug)]
pub(crate) struct Plan {
    dirs: Vec<String>,
    entries: Vec<Entry>,
    /// Symlink path to target.
    links: HashMap<String, String>,
    pub files: u64,
    pub bytes: u64,
    pub warnings: Vec<String>,
}

/// Walks `tree`, checking names, limits and symlinks.
pub(crate) fn plan(
    repo: &Repository,
    tree: &Tree<'_>,
    limits: &Limits,
) -> Result<Plan, TreeFailure> {
    let odb = repo.odb()?;
    let mut plan = Plan {
        dirs: Vec::new(),
        entries: Vec::new(),
        links: HashMap::new(),
        files: 0,
        bytes: 0,
        warnings: Vec::new(),
    };
    walk(repo, &odb, tree, "", limits, &mut plan)?;
    for (path, target) in &plan.links {
        if escapes(&plan.links, path, target) {
            return Err(TreeFailure::Refused(SourceError::SymlinkEscape {
                path: path.clone(),
                target: target.clone(),
            }));
        }
    }
    Ok(plan)
}

fn walk(
    repo: &Repository,
    odb: &git2::Odb<'_>,
    tree: &Tree<'_>,
    prefix: &str,
    limits: &Limits,
    plan: &mut Plan,
) -> Result<(), TreeFailure> {
    for entry in tree.iter() {
        let name = match std::str::from_utf8(entry.name_bytes()) {
            Ok(n) => n,
            Err(_) => {
                return Err(unsafe_path(
                    &format!("{prefix}{}", String::from_utf8_lossy(entry.name_bytes())),
                    "not UTF-8",
                ));
            }
        };
        let path = format!("{prefix}{name}");
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(unsafe_path(&path, "invalid path component"));
        }
        if name.eq_ignore_ascii_case(".git") {
            return Err(unsafe_path(&path, "a .git entry inside the tree"));
        }
        match entry.filemode() {
            0o040000 => {
                let sub = repo.find_tree(entry.id())?;
                plan.dirs.push(path.clone());
                walk(repo, odb, &sub, &format!("{path}/"), limits, plan)?;
            }
            0o160000 => plan.warnings.push(format!(
                "submodule {path} is not fetched (submodules are not supported)"
            )),
            mode @ (0o100644 | 0o100755 | 0o100664 | 0o120000) => {
                plan.files += 1;
                if plan.files > limits.max_files {
                    return Err(TreeFailure::Refused(SourceError::TooManyFiles {
                        limit: limits.max_files,
                    }));
                }
                let kind = if mode == 0o120000 {
                    let blob = repo.find_blob(entry.id())?;
                    let target = std::str::from_utf8(blob.content())
                        .map_err(|_| unsafe_path(&path, "symlink target is not UTF-8"))?;
                    plan.bytes += target.len() as u64;
                    plan.links.insert(path.clone(), target.to_string());
                    Kind::Symlink
                } else {
                    let (size, kind) = odb.read_header(entry.id())?;
                    if kind != ObjectType::Blob {
                        return Err(TreeFailure::Corrupt(format!("{path}: expected a blob")));
                    }
                    plan.bytes += size as u64;
                    Kind::File {
                        executable: mode == 0o100755,
                        size: size as u64,
                    }
                };
                if plan.bytes > limits.max_bytes {
                    return Err(TreeFailure::Refused(SourceError::TooLarge {
                        bytes: plan.bytes,
                        limit: limits.max_bytes,
                    }));
                }
                plan.entries.push(Entry {
                    path,
                    oid: entry.id(),
                    mode,
                    kind,
                });
            }
            other => {
                return Err(unsafe_path(
                    &path,
                    &format!("unsupported file mode {other:o}"),
                ));
            }
        }
    }
    Ok(())
}

fn unsafe_path(path: &str, reason: &str) -> TreeFailure {
    TreeFailure::Refused(SourceError::UnsafePath {
        path: path.to_string(),
        reason: reason.to_string(),
    })
}

/// Whether the symlink at `path` (relative to the checkout root) with `target` resolves outside
/// the root, following the other symlinks of the tree; loops count as escapes.
fn escapes(links: &HashMap<String, String>, path: &str, target: &str) -> bool {
    let mut current: Vec<&str> = path.split('/').collect();
    current.pop(); // the link's own name: resolution starts in its directory
    let mut pending: Vec<&str> = Vec::new(); // reversed: next component last
    if target.starts_with('/') {
        return true;
    }
    pending.extend(target.split('/').rev());
    let mut budget = 40; // the kernel's limit on symlinks followed in one lookup
    while let Some(component) = pending.pop() {
        match component {
            "" | "." => {}
            ".." => {
                if current.pop().is_none() {
                    return true;
                }
            }
            name => {
                current.push(name);
                if let Some(next) = links.get(&current.join("/")) {
                    budget -= 1;
                    if budget == 0 || next.starts_with('/') {
                        return true;
                    }
                    current.pop();
                    pending.extend(next.split('/').rev());
                }
            }
        }
    }
    false
}

/// Writes a checked tree into `dest` (which must not exist); files unchanged since `previous`
/// are hard-linked from it. Returns the number of files linked.
pub(crate) fn write(
    repo: &Repository,
    plan: &Plan,
    dest: &Path,
    previous: Option<&Previous<'_>>,
) -> Result<usize, TreeFailure> {
    let io = |path: &Path, e: std::io::Error| {
        TreeFailure::Io(SourceError::Cache {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    };
    fs::create_dir_all(dest).map_err(|e| io(dest, e))?;
    for dir in &plan.dirs {
        let p = dest.join(dir);
        fs::create_dir(&p).map_err(|e| io(&p, e))?;
    }
    let odb = repo.odb()?;
    let mut linked = 0;
    for entry in &plan.entries {
        let p = dest.join(&entry.path);
        match entry.kind {
            Kind::Symlink => {
                let target = &plan.links[&entry.path];
                symlink(target, &p).map_err(|e| io(&p, e))?;
            }
            Kind::File { executable, size } => {
                if previous.is_some_and(|prev| link_unchanged(prev, entry, executable, size, &p)) {
                    linked += 1;
                    continue;
                }
                let object = odb.read(entry.oid)?;
                let mut options = fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    options.mode(if executable { 0o755 } else { 0o644 });
                }
                #[cfg(not(unix))]
                let _ = executable;
                let mut file = options.open(&p).map_err(|e| io(&p, e))?;
                file.write_all(object.data()).map_err(|e| io(&p, e))?;
            }
        }
    }
    debug!(dest = %dest.display(), files = plan.entries.len(), linked, "tree written");
    Ok(linked)
}

/// Hard-links `entry` from the previous checkout when it is the same blob with the same mode
/// there, and the file there is still a regular file of the blob's size with the same
/// executable bit (checkouts are never modified, so this guards against outside tampering
/// only). Any doubt or error: `false`, and the file is written.
fn link_unchanged(
    previous: &Previous<'_>,
    entry: &Entry,
    executable: bool,
    size: u64,
    dest: &Path,
) -> bool {
    let Ok(old) = previous.tree.get_path(Path::new(&entry.path)) else {
        return false;
    };
    if old.id() != entry.oid || old.filemode() != entry.mode {
        return false;
    }
    let source = previous.dir.join(&entry.path);
    let Ok(meta) = fs::symlink_metadata(&source) else {
        return false;
    };
    if !meta.file_type().is_file() || meta.len() != size {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if (meta.permissions().mode() & 0o111 != 0) != executable {
            return false;
        }
    }
    #[cfg(not(unix))]
    let _ = executable;
    fs::hard_link(&source, dest).is_ok()
}

#[cfg(unix)]
fn symlink(target: &str, path: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(not(unix))]
fn symlink(_target: &str, _path: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("symlinks are only supported on Unix"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(links: &[(&str, &str)], path: &str, expected_escape: bool) {
        let map: HashMap<String, String> = links
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(
            escapes(&map, path, &map[path]),
            expected_escape,
            "{path} in {links:?}"
        );
    }

    #[test]
    fn symlink_resolution() {
        check(&[("a/l", "../b")], "a/l", false);
        check(&[("a/l", "../../b")], "a/l", true);
        check(&[("l", "/etc/passwd")], "l", true);
        check(&[("l", "a/./b/../c")], "l", false);
        // `d` points at the root, so `d/..` is above it although it looks inside lexically.
        check(&[("d", "."), ("x", "d/../etc")], "x", true);
        check(&[("sub/d", ".."), ("x", "sub/d/../etc")], "x", true);
        check(&[("sub/d", ".."), ("x", "sub/d/etc")], "x", false);
        check(&[("a", "b"), ("b", "a")], "a", true); // loop
    }
}
