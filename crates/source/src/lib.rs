//! Source: fetches a git ref (branch HEAD, tag or commit) with git2, shallow, into a local cache and yields the revision and its file tree. Filled by the source issue.
#![forbid(unsafe_code)]
