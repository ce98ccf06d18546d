//! Apply: all Kubernetes I/O of a sync (discovery, staged server-side apply, prune, health waits, drift). Filled by the apply issue.
#![forbid(unsafe_code)]
