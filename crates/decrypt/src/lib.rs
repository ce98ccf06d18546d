//! SOPS decryption of manifests, natively and in memory: files encrypted by the `sops` tool with
//! age recipients (YAML or JSON) are decrypted after rendering and before applying, and their
//! MAC is verified; the plaintext never touches the disk.
//!
//! - [`keys`]: age private keys ([`Keys`]), from `.agekey` entries of a Secret or a key file.
//! - [`node`]: the document as an ordered tree (the MAC depends on the order of the keys).
//! - [`sops`]: the SOPS format: metadata, the data key, `ENC[AES256_GCM,...]` values, the MAC.
//! - [`SopsDecryptor`]: the render crate's [`headway_render::DecryptDocument`] hook.
//!
//! Architecture invariant: no decrypted value is ever part of an error message, a log line or a
//! `Debug` output of this crate; errors name the file, the field path or the recipients only.
#![forbid(unsafe_code)]

pub mod keys;
pub mod node;
pub mod sops;

use std::sync::Arc;

pub use keys::{KeyError, Keys};
pub use sops::{DecryptError, decrypt_document};

/// Decrypts SOPS documents for the renderer with a set of age keys.
pub struct SopsDecryptor {
    keys: Keys,
}

impl SopsDecryptor {
    pub fn new(keys: Keys) -> Self {
        SopsDecryptor { keys }
    }

    /// The hook to put in [`headway_render::RenderOptions::decryptor`].
    pub fn into_render_hook(self) -> headway_render::Decryptor {
        headway_render::Decryptor(Arc::new(self))
    }
}

impl headway_render::DecryptDocument for SopsDecryptor {
    /// Decrypts and marks the object with the annotation `headway.dev/decrypted: sops`, so that
    /// diffs mask its values.
    /// A tool's output that no longer verifies as printed is decrypted from its original file
    /// ([`sops::decrypt_rewritten`]).
    fn decrypt(
        &self,
        text: &str,
        json: bool,
        tool_input: Option<&std::path::Path>,
    ) -> Result<serde_json::Value, String> {
        let decrypted = match (decrypt_document(text, json, &self.keys), tool_input) {
            (Err(DecryptError::MacMismatch | DecryptError::Value { .. }), Some(tree)) => {
                sops::decrypt_rewritten(text, json, &self.keys, tree)
            }
            (result, _) => result,
        };
        let mut value = decrypted.map_err(|e| e.to_string())?;
        mark_decrypted(&mut value);
        Ok(value)
    }
}

/// Adds the annotation `headway.dev/decrypted: sops` to a decrypted object.
pub fn mark_decrypted(value: &mut serde_json::Value) {
    let Some(object) = value.as_object_mut() else {
        return;
    };
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| serde_json::json!({}));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    if annotations.is_null() {
        *annotations = serde_json::json!({});
    }
    if let Some(a) = annotations.as_object_mut() {
        a.insert(
            headway_model::diff::ANNOTATION_DECRYPTED.to_string(),
            serde_json::Value::String("sops".into()),
        );
    }
}
