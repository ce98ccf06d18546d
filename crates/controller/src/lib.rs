//! Controller: the GitSync custom resource and its reconcile pipeline (fetch, render, apply, prune, wait, status). Filled by the controller issue.
#![forbid(unsafe_code)]
