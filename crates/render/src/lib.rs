//! Render: turns a file tree (plain YAML, Kustomize, Helm) into validated, digested manifests. Filled by the render issue.
#![forbid(unsafe_code)]
