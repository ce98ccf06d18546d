//! Plain directories: list the files, then read and parse them on a few threads; results are
//! merged back in file order, so the output does not depend on scheduling.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use headway_model::Manifest;

use crate::error::RenderError;
use crate::options::RenderOptions;
use crate::walk::{self, FileEntry};
use crate::{collect, decrypt, yaml};

/// Below this many bytes in total, more threads cost more than they save.
const PARALLEL_THRESHOLD: u64 = 256 * 1024;

/// What one file produced.
#[derive(Default)]
struct FileResult {
    manifests: Vec<Manifest>,
    errors: Vec<RenderError>,
}

fn render_file(file: &FileEntry, options: &RenderOptions) -> FileResult {
    let mut result = FileResult::default();
    let text = match walk::read_text(file, options.limits.max_file_bytes) {
        Ok(t) => t,
        Err(e) => {
            result.errors.push(e);
            return result;
        }
    };
    let mut docs = Vec::new();
    if file.rel.ends_with(".json") {
        yaml::parse_json_stream(&text, &file.rel, &mut docs, &mut result.errors);
    } else {
        yaml::parse_stream(&text, &file.rel, &mut docs, &mut result.errors);
    }
    decrypt::decrypt_documents(
        &mut docs,
        options.decryptor.as_ref(),
        None,
        &mut result.errors,
    );
    collect::to_manifests(docs, &mut result.manifests, &mut result.errors);
    result
}

pub(crate) fn render(
    dir: &Path,
    boundary: &Path,
    options: &RenderOptions,
    errors: &mut Vec<RenderError>,
) -> Vec<Manifest> {
    let files = walk::list_files(dir, boundary, &options.limits, errors);
    let total: u64 = files.iter().map(|f| f.size).sum();
    let threads = options
        .parallelism
        .map(|n| n.get())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(8)
        })
        .min(files.len());
    let threads = if total < PARALLEL_THRESHOLD {
        1
    } else {
        threads.max(1)
    };
    let results = parallel(&files, options, threads);
    let mut manifests = Vec::new();
    for r in results {
        manifests.extend(r.manifests);
        errors.extend(r.errors);
    }
    manifests
}

/// Renders files on `threads` scoped threads (with big stacks, even when there is one) that take the next file from a shared counter.
fn parallel(files: &[FileEntry], options: &RenderOptions, threads: usize) -> Vec<FileResult> {
    let next = AtomicUsize::new(0);
    let mut indexed: Vec<(usize, FileResult)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::Builder::new()
                    .stack_size(yaml::STACK_SIZE)
                    .spawn_scoped(s, || {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(file) = files.get(i) else { break };
                            done.push((i, render_file(file, options)));
                        }
                        done
                    })
                    .expect("spawn a parser thread")
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("parser thread panicked"))
            .collect()
    });
    indexed.sort_by_key(|(i, _)| *i);
    indexed.into_iter().map(|(_, r)| r).collect()
}
