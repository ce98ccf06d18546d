//! Render errors: one typed error per problem, collected into [`RenderErrors`] so that every
//! problem in a tree is reported at once, not only the first.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use headway_model::manifest::NotAnObject;
use headway_model::{ObjectRef, SourceLocation};

/// One problem found while rendering.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The rendered path does not exist or is not a directory.
    #[error("{}: not a directory", path.display())]
    NotADirectory {
        /// The path given to render.
        path: PathBuf,
    },
    /// A file or directory could not be read.
    #[error("{file}: {source}")]
    Io {
        /// Path relative to the rendered directory (or the absolute path when outside it).
        file: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A symbolic link points outside the boundary directory.
    #[error("{file}: symbolic link points outside the repository ({})", target.display())]
    SymlinkEscapes {
        /// The link, relative to the rendered directory (or to the boundary).
        file: String,
        /// Where it points (as read from the link).
        target: PathBuf,
    },
    /// A file is larger than [`Limits::max_file_bytes`](crate::Limits::max_file_bytes).
    #[error("{file}: file is {size} bytes, over the limit of {limit} bytes per file")]
    FileTooLarge {
        /// The file, relative to the rendered directory.
        file: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The files read add up to more than [`Limits::max_total_bytes`](crate::Limits::max_total_bytes).
    #[error("the manifests add up to more than {limit} bytes (limit reached at {file})")]
    TotalSizeExceeded {
        /// The file at which the limit was crossed.
        file: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// More files than [`Limits::max_files`](crate::Limits::max_files).
    #[error("more than {limit} manifest files (the first over the limit: {first_over})")]
    TooManyFiles {
        /// The limit.
        limit: usize,
        /// The first file (in path order) over the limit.
        first_over: String,
    },
    /// More objects than [`Limits::max_objects`](crate::Limits::max_objects).
    #[error("more than {limit} objects")]
    TooManyObjects {
        /// The limit.
        limit: usize,
    },
    /// A file is not valid UTF-8.
    #[error("{file}: not valid UTF-8 text")]
    NotUtf8 {
        /// The file, relative to the rendered directory.
        file: String,
    },
    /// A document is not valid YAML (or JSON), including duplicate mapping keys.
    #[error("{location}: invalid YAML: {message}")]
    InvalidYaml {
        /// File, document index and line of the error.
        location: SourceLocation,
        /// What the parser said.
        message: String,
    },
    /// An encrypted document could not be decrypted (no key, wrong key, tampered file).
    #[error("{location}: cannot decrypt: {message}")]
    Decrypt {
        /// File, document index and the line the document starts on.
        location: SourceLocation,
        /// Why (never a decrypted value).
        message: String,
    },
    /// A document parsed but is not a Kubernetes object.
    #[error("{location}: not a Kubernetes object: {reason}{}", item_suffix(*item))]
    NotAnObject {
        /// File, document index and the line the document starts on.
        location: SourceLocation,
        /// Index within a `kind: List` document, when the offending value is a list item.
        item: Option<usize>,
        /// What is missing.
        reason: NotAnObject,
    },
    /// Two documents describe the same object.
    #[error("{id} is defined twice: in {first} and in {second}")]
    DuplicateObject {
        /// The identity both documents share.
        id: Box<ObjectRef>,
        /// The first definition.
        first: SourceLocation,
        /// The later definition.
        second: SourceLocation,
    },
    /// A rendering tool (kustomize, kubectl, helm) is not installed.
    #[error("{tool} not found on PATH (looked for {})", tried.join(", "))]
    ToolNotFound {
        /// What was needed (`kustomize`, `helm`).
        tool: &'static str,
        /// Program names that were looked for.
        tried: Vec<String>,
    },
    /// A rendering tool could not be started.
    #[error("{tool}: cannot run {}: {source}", program.display())]
    ToolSpawn {
        /// The tool.
        tool: &'static str,
        /// The program that failed to start.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A rendering tool exited unsuccessfully.
    #[error("{command} failed ({status}):\n{}", indent(stderr))]
    ToolFailed {
        /// The command line that was run, for the reader.
        command: String,
        /// Exit status, as text.
        status: String,
        /// The tool's standard error (its tail when long).
        stderr: String,
    },
    /// A rendering tool ran longer than the timeout and was killed.
    #[error(
        "{command} timed out after {:.1?} and was killed{}",
        timeout,
        stderr_suffix(stderr)
    )]
    ToolTimedOut {
        /// The command line that was run.
        command: String,
        /// The timeout.
        timeout: Duration,
        /// What it wrote to standard error before it was killed.
        stderr: String,
    },
    /// A rendering tool wrote more than [`Limits::max_tool_output_bytes`](crate::Limits::max_tool_output_bytes).
    #[error("{command} wrote more than {limit} bytes and was killed")]
    ToolOutputTooLarge {
        /// The command line that was run.
        command: String,
        /// The limit.
        limit: u64,
    },
    /// An option is invalid (e.g. a Helm values file outside the chart).
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

fn item_suffix(item: Option<usize>) -> String {
    item.map(|i| format!(" (List item {i})"))
        .unwrap_or_default()
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", indent(stderr))
    }
}

fn indent(text: &str) -> String {
    let text = text.trim_end();
    if text.is_empty() {
        return "    (no output on stderr)".to_string();
    }
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every problem found while rendering one directory; never empty.
///
/// `Display` lists them all, one per line.
#[derive(Debug)]
pub struct RenderErrors(pub Vec<RenderError>);

impl RenderErrors {
    /// The individual errors, in a deterministic order (file order, then document order).
    pub fn errors(&self) -> &[RenderError] {
        &self.0
    }
}

impl From<RenderError> for RenderErrors {
    fn from(e: RenderError) -> Self {
        RenderErrors(vec![e])
    }
}

impl fmt::Display for RenderErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "rendering failed: {one}"),
            many => {
                write!(f, "rendering failed with {} errors:", many.len())?;
                for e in many {
                    write!(f, "\n  - {}", e.to_string().replace('\n', "\n    "))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for RenderErrors {}
