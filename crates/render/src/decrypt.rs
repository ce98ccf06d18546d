//! The hook through which encrypted documents (SOPS) are decrypted while rendering: after the
//! files are read or the tool ran, before the documents become manifests. The render crate only
//! recognises an encrypted document (a top-level `sops` mapping with a `mac`) and keeps its text
//! as written, since the integrity check depends on the order of its keys; decrypting is the
//! business of whoever implements [`DecryptDocument`] (the `headway-decrypt` crate), so this
//! crate holds no key and no cipher.
//!
//! An encrypted document without a decryptor is an error naming it: it is never applied with
//! its ciphertext.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::error::RenderError;
use crate::yaml::Document;

/// Decrypts one encrypted document.
pub trait DecryptDocument: Send + Sync {
    /// Decrypts a document given its text (YAML, or JSON when `json`); returns the object
    /// without its encryption metadata, or why it cannot be decrypted (the message never
    /// contains a decrypted value). `tool_input` is `None` for a file read as written, and the
    /// directory a tool (kustomize, helm) read for the tool's output, which may have re-written
    /// the document (keys reordered, fields changed) from a file of that directory.
    fn decrypt(&self, text: &str, json: bool, tool_input: Option<&Path>) -> Result<Value, String>;
}

/// A shared [`DecryptDocument`], as [`RenderOptions::decryptor`](crate::RenderOptions::decryptor).
#[derive(Clone)]
pub struct Decryptor(pub Arc<dyn DecryptDocument>);

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decryptor(..)")
    }
}

impl PartialEq for Decryptor {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }
}

impl Eq for Decryptor {}

/// Whether a parsed document is SOPS-encrypted (a top-level `sops` mapping with a `mac`).
pub fn is_encrypted(value: &Value) -> bool {
    value
        .get("sops")
        .is_some_and(|s| s.is_object() && s.get("mac").is_some())
}

/// Decrypts the encrypted documents in place; a document that cannot be decrypted is removed
/// and reported.
pub(crate) fn decrypt_documents(
    docs: &mut Vec<Document>,
    decryptor: Option<&Decryptor>,
    tool_input: Option<&Path>,
    errors: &mut Vec<RenderError>,
) {
    docs.retain_mut(|doc| {
        let Some(text) = doc.encrypted.take() else {
            return true;
        };
        let result = match decryptor {
            None => Err("it is encrypted with SOPS but no decryption key was given \
                         (spec.decryption of the GitSync, --decrypt-key of the CLI)"
                .to_string()),
            Some(d) => d.0.decrypt(&text, doc.json, tool_input),
        };
        match result {
            Ok(value) => {
                doc.value = value;
                true
            }
            Err(message) => {
                errors.push(RenderError::Decrypt {
                    location: doc.location.clone(),
                    message,
                });
                false
            }
        }
    });
}
