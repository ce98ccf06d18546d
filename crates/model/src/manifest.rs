//! A rendered manifest: one desired Kubernetes object with its identity, origin and digest.

use serde::{Deserialize, Serialize};

use crate::{Digest, ObjectRef};

/// Where a manifest came from: a file (relative to the rendered root), the 0-based index of the
/// YAML document in that file, and the 1-based line the document starts on, when known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceLocation {
    /// Path relative to the rendered directory, with `/` separators; for kustomize and helm output,
    /// the tool's name and the directory it rendered (e.g. `kustomize:overlays/prod`).
    pub file: String,
    /// 0-based index of the document within the file (or within the tool's output stream).
    pub document: usize,
    /// 1-based line where the document starts, when known.
    pub line: Option<usize>,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (document {}", self.file, self.document)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        write!(f, ")")
    }
}

/// One desired object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `apiVersion` as written, e.g. `apps/v1`.
    pub api_version: String,
    /// Identity of the object.
    pub id: ObjectRef,
    /// Where it was rendered from.
    pub source: SourceLocation,
    /// sha256 of the canonical JSON form of `object`.
    pub digest: Digest,
    /// The object itself, as JSON.
    pub object: serde_json::Value,
}

impl Manifest {
    /// Builds a manifest from a parsed object, computing its identity and digest.
    ///
    /// Returns a description of what is missing when the value is not a Kubernetes object
    /// (no `apiVersion`, `kind` or `metadata.name`).
    pub fn from_object(
        object: serde_json::Value,
        source: SourceLocation,
    ) -> Result<Self, NotAnObject> {
        let str_field = |ptr: &str| object.pointer(ptr).and_then(|v| v.as_str());
        if !object.is_object() {
            return Err(NotAnObject::NotAMapping);
        }
        let api_version = str_field("/apiVersion")
            .filter(|s| !s.is_empty())
            .ok_or(NotAnObject::Missing("apiVersion"))?
            .to_string();
        let kind = str_field("/kind")
            .filter(|s| !s.is_empty())
            .ok_or(NotAnObject::Missing("kind"))?
            .to_string();
        let name = str_field("/metadata/name")
            .filter(|s| !s.is_empty())
            .ok_or(NotAnObject::Missing("metadata.name"))?
            .to_string();
        let namespace = str_field("/metadata/namespace").map(str::to_string);
        let id = ObjectRef::new(&api_version, kind, namespace, name);
        let digest = Digest::of_json(&object);
        Ok(Manifest {
            api_version,
            id,
            source,
            digest,
            object,
        })
    }

    /// Recomputes the digest after `object` was changed (e.g. a namespace was defaulted).
    pub fn refresh_digest(&mut self) {
        self.digest = Digest::of_json(&self.object);
    }
}

/// Why a parsed value is not a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnObject {
    /// The document is a scalar or a sequence, not a mapping.
    #[error("the document is not a mapping")]
    NotAMapping,
    /// A required field is missing or empty.
    #[error("missing or empty field `{0}`")]
    Missing(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn loc() -> SourceLocation {
        SourceLocation {
            file: "apps/web.yaml".into(),
            document: 1,
            line: Some(12),
        }
    }

    #[test]
    fn identity_and_digest_come_from_the_object() {
        let m = Manifest::from_object(
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "prod"}}),
            loc(),
        )
        .unwrap();
        assert_eq!(m.id.to_string(), "Deployment.apps/prod/web");
        assert_eq!(m.digest, Digest::of_json(&m.object));
        assert_eq!(m.source.to_string(), "apps/web.yaml (document 1, line 12)");
    }

    #[test]
    fn missing_fields_are_named() {
        let cases = [
            (json!("scalar"), NotAnObject::NotAMapping),
            (
                json!({"kind": "X", "metadata": {"name": "a"}}),
                NotAnObject::Missing("apiVersion"),
            ),
            (
                json!({"apiVersion": "v1", "metadata": {"name": "a"}}),
                NotAnObject::Missing("kind"),
            ),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
                NotAnObject::Missing("metadata.name"),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Manifest::from_object(input.clone(), loc()).unwrap_err(),
                expected,
                "{input}"
            );
        }
    }
}
