//! Decryption keys of a GitSync: the age private keys in the `.agekey` entries of the Secret
//! named by `spec.decryption.secretRef`, read with the controller's identity. Every problem is a
//! render failure naming the Secret and the key; no key material is ever logged.

use headway_decrypt::{Keys, SopsDecryptor};
use headway_render::Decryptor;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::crd::{Decryption, DecryptionProvider};
use crate::outcome::Failure;
use crate::progress::Stage;

/// The decryptor of `spec.decryption`, or `None` when the GitSync decrypts nothing.
pub async fn decryptor(
    client: &kube::Client,
    namespace: &str,
    decryption: Option<&Decryption>,
) -> Result<Option<Decryptor>, Failure> {
    let Some(decryption) = decryption else {
        return Ok(None);
    };
    match decryption.provider {
        DecryptionProvider::Sops => {}
    }
    let name = &decryption.secret_ref.name;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match api.get_opt(name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(Failure::at(
                Stage::Render,
                format!("spec.decryption.secretRef: Secret {namespace}/{name} not found"),
                true,
            ));
        }
        Err(e) => {
            return Err(Failure::at(
                Stage::Render,
                format!(
                    "reading Secret {namespace}/{name}: {}",
                    headway_apply::error_message(&e)
                ),
                true,
            ));
        }
    };
    let mut keys = Keys::new();
    for (key, bytes) in secret.data.unwrap_or_default() {
        if !key.ends_with(".agekey") {
            continue;
        }
        let source = format!("Secret {namespace}/{name} key {key}");
        let text = String::from_utf8(bytes.0)
            .map_err(|_| Failure::at(Stage::Render, format!("{source}: not UTF-8"), false))?;
        keys.add_text(&source, &text)
            .map_err(|e| Failure::at(Stage::Render, e.to_string(), false))?;
    }
    if keys.is_empty() {
        return Err(Failure::at(
            Stage::Render,
            format!(
                "spec.decryption.secretRef: Secret {namespace}/{name} has no key ending in .agekey"
            ),
            false,
        ));
    }
    Ok(Some(SopsDecryptor::new(keys).into_render_hook()))
}
