//! The SOPS file format, for files encrypted with age recipients:
//!
//! - the top-level `sops` mapping holds the metadata: `age` (one entry per recipient, `enc` the
//!   32-byte data key encrypted for it, ASCII-armored age), `lastmodified`, `mac`, and the rules
//!   that chose which values were encrypted (`encrypted_regex`, `unencrypted_regex`,
//!   `encrypted_suffix`, `unencrypted_suffix`, `mac_only_encrypted`);
//! - every encrypted value is `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<t>]`: AES-256-GCM
//!   under the data key with a 32-byte nonce, the additional data being the value's path of
//!   mapping keys joined by `:` with a trailing `:` (sequence items share their parent's path);
//! - the MAC is SHA-512 over every value in document order (each as SOPS prints it: strings as
//!   they are, integers and floats in decimal, booleans `True`/`False`; only the encrypted ones
//!   with `mac_only_encrypted`), upper-case hex, itself stored encrypted with `lastmodified` as
//!   additional data.
//!
//! A document is decrypted completely and its MAC verified before it is returned: a wrong key, a
//! changed ciphertext, value, key or order, or a removed value is an error, never a partial result.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use regex::Regex;
use serde_json::Value;
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

use crate::keys::Keys;
use crate::node::Node;

/// AES-256-GCM with SOPS's 32-byte nonces.
type Cipher = AesGcm<Aes256, U32>;

/// The first bytes of a MAC over the encrypted values only (`mac_only_encrypted`): SHA-256 of
/// `sops`, as SOPS defines it.
const MAC_ONLY_ENCRYPTED_PREFIX: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// Why a document cannot be decrypted. No variant carries a decrypted value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// The text does not parse.
    #[error("not valid {format}: {message}")]
    Parse {
        format: &'static str,
        message: String,
    },
    /// The `sops` metadata is missing or malformed.
    #[error("SOPS metadata: {0}")]
    Metadata(String),
    /// None of the keys opens the data key.
    #[error(
        "none of the given age keys ({have}) is a recipient of this file (recipients: {recipients})"
    )]
    NoMatchingKey { have: String, recipients: String },
    /// A value does not decrypt: it was changed, or the data key is not the file's.
    #[error(
        "the value at {path} cannot be decrypted ({reason}): the file was changed after it was encrypted"
    )]
    Value { path: String, reason: String },
    /// The original file of a document re-written by a tool cannot be decrypted.
    #[error("its original {file}: {source}")]
    Original {
        file: String,
        source: Box<DecryptError>,
    },
    /// The MAC does not match the values: something was changed, added or removed.
    #[error(
        "MAC mismatch: the file was changed after it was encrypted (values, keys or their order)"
    )]
    MacMismatch,
}

/// The rules that chose which values SOPS encrypted.
struct Rules {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<Regex>,
    encrypted_regex: Option<Regex>,
    mac_only_encrypted: bool,
}

impl Rules {
    /// Whether the value at `path` is encrypted (SOPS's order of precedence).
    fn encrypted(&self, path: &[String]) -> bool {
        let mut encrypted = true;
        if let Some(s) = &self.unencrypted_suffix
            && path.iter().any(|p| p.ends_with(s.as_str()))
        {
            encrypted = false;
        }
        if let Some(s) = &self.encrypted_suffix {
            encrypted = path.iter().any(|p| p.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex
            && path.iter().any(|p| r.is_match(p))
        {
            encrypted = false;
        }
        if let Some(r) = &self.encrypted_regex {
            encrypted = path.iter().any(|p| r.is_match(p));
        }
        encrypted
    }
}

/// Decrypts one SOPS document (YAML, or JSON when `json`) and verifies its MAC; returns it
/// without its `sops` metadata.
pub fn decrypt_document(text: &str, json: bool, keys: &Keys) -> Result<Value, DecryptError> {
    let (entries, _) = decrypt_tree(parse(text, json)?, keys)?;
    Ok(Node::Map(entries).into_json())
}

fn parse(text: &str, json: bool) -> Result<Node, DecryptError> {
    if json {
        Node::from_json(text).map_err(|message| DecryptError::Parse {
            format: "JSON",
            message,
        })
    } else {
        Node::from_yaml(text).map_err(|message| DecryptError::Parse {
            format: "YAML",
            message,
        })
    }
}

/// The `sops.mac` of a parsed document (its ciphertext: unique per encryption).
fn mac_of(tree: &Node) -> Option<&str> {
    tree.get("sops")?.get("mac")?.as_str()
}

/// The entries decrypted from one SOPS document, and the plaintext of each of its ciphertexts.
type Decrypted = (Vec<(String, Node)>, HashMap<String, Node>);

/// Decrypts a parsed document (without its `sops` mapping) and verifies its MAC.
fn decrypt_tree(tree: Node, keys: &Keys) -> Result<Decrypted, DecryptError> {
    let Node::Map(mut entries) = tree else {
        return Err(DecryptError::Metadata(
            "the document is not a mapping".into(),
        ));
    };
    let at = entries
        .iter()
        .position(|(k, _)| k == "sops")
        .ok_or_else(|| DecryptError::Metadata("no `sops` mapping".into()))?;
    let (_, meta) = entries.remove(at);
    let rules = rules(&meta)?;
    let data_key = data_key(&meta, keys)?;
    let mut w = Walk {
        rules: &rules,
        key: &data_key,
        hash: Sha512::new(),
        plain: HashMap::new(),
    };
    if rules.mac_only_encrypted {
        // SOPS starts such a MAC with a fixed prefix, so that it differs from a full one.
        w.hash.update(MAC_ONLY_ENCRYPTED_PREFIX);
    }
    let mut path = Vec::new();
    for (k, v) in entries.iter_mut() {
        path.push(k.clone());
        walk(v, &mut path, &mut w)?;
        path.pop();
    }
    let computed = hex::encode_upper(w.hash.finalize());
    let stored_mac = meta_str(&meta, "mac")?;
    let last_modified = meta_str(&meta, "lastmodified")?;
    let mac = decrypt_value(stored_mac, &data_key, last_modified).map_err(|reason| {
        DecryptError::Value {
            path: "sops.mac".into(),
            reason,
        }
    })?;
    if mac.as_str() != Some(computed.as_str()) {
        return Err(DecryptError::MacMismatch);
    }
    Ok((entries, w.plain))
}

/// Decrypts a document that a tool (kustomize, helm) re-wrote from a SOPS file of `tree`: tools
/// reorder keys and may change unencrypted fields (a name prefix, labels), which breaks the MAC
/// of the document as printed. The original is the file under `tree` whose document has the
/// same `sops.mac`; it is decrypted and its MAC verified as written, and each ciphertext of the
/// tool's output is replaced by the plaintext of the same ciphertext in the original. A
/// ciphertext the original does not have is refused.
pub fn decrypt_rewritten(
    text: &str,
    json: bool,
    keys: &Keys,
    tree: &Path,
) -> Result<Value, DecryptError> {
    let output = parse(text, json)?;
    let mac = mac_of(&output)
        .ok_or_else(|| DecryptError::Metadata("sops.mac is missing".into()))?
        .to_string();
    let (file, original) = find_original(tree, &mac).ok_or_else(|| {
        DecryptError::Metadata(
            "the tool changed the encrypted document and no file of the repository holds its \
             original (same sops.mac)"
                .into(),
        )
    })?;
    let (_, plain) = decrypt_tree(original, keys).map_err(|e| DecryptError::Original {
        file: file.clone(),
        source: Box::new(e),
    })?;
    let Node::Map(mut entries) = output else {
        return Err(DecryptError::Metadata(
            "the document is not a mapping".into(),
        ));
    };
    entries.retain(|(k, _)| k != "sops");
    let mut path = Vec::new();
    for (k, v) in entries.iter_mut() {
        path.push(k.clone());
        substitute(v, &mut path, &plain)?;
        path.pop();
    }
    Ok(Node::Map(entries).into_json())
}

/// Replaces every ciphertext by its verified plaintext.
fn substitute(
    node: &mut Node,
    path: &mut Vec<String>,
    plain: &HashMap<String, Node>,
) -> Result<(), DecryptError> {
    match node {
        Node::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                path.push(k.clone());
                substitute(v, path, plain)?;
                path.pop();
            }
        }
        Node::Seq(items) => {
            for item in items.iter_mut() {
                substitute(item, path, plain)?;
            }
        }
        Node::Str(text) if text.starts_with("ENC[AES256_GCM,") => {
            let value = plain
                .get(text.as_str())
                .cloned()
                .ok_or_else(|| DecryptError::Value {
                    path: path.join("."),
                    reason: "not a value of the original file".into(),
                })?;
            *node = value;
        }
        _ => {}
    }
    Ok(())
}

/// Largest file searched for the original of a re-written document.
const MAX_ORIGINAL_BYTES: u64 = 4 << 20;

/// The file (relative to `tree`) and the parsed document under `tree` whose `sops.mac` is `mac`.
fn find_original(tree: &Path, mac: &str) -> Option<(String, Node)> {
    let mut dirs = vec![tree.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Symlinks are not followed (the render already refused those leaving the tree).
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if entry.file_name() != ".git" {
                    dirs.push(path);
                }
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let json = name.ends_with(".json");
            if !meta.is_file()
                || !(json || name.ends_with(".yaml") || name.ends_with(".yml"))
                || meta.len() > MAX_ORIGINAL_BYTES
            {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if !text.contains(mac) {
                continue;
            }
            let rel = path
                .strip_prefix(tree)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let docs: Vec<&str> = if json {
                vec![text.as_str()]
            } else {
                split_yaml(&text)
            };
            for doc in docs {
                if let Ok(node) = parse(doc, json)
                    && mac_of(&node) == Some(mac)
                {
                    return Some((rel, node));
                }
            }
        }
    }
    None
}

/// The documents of a YAML stream, split at `---` lines.
fn split_yaml(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            docs.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    docs.push(&text[start..]);
    docs
}

fn meta_str<'a>(meta: &'a Node, key: &str) -> Result<&'a str, DecryptError> {
    meta.get(key)
        .and_then(Node::as_str)
        .ok_or_else(|| DecryptError::Metadata(format!("sops.{key} is missing")))
}

fn rules(meta: &Node) -> Result<Rules, DecryptError> {
    let text = |key: &str| {
        meta.get(key)
            .and_then(Node::as_str)
            .filter(|s| !s.is_empty())
    };
    for unsupported in ["encrypted_comment_regex", "unencrypted_comment_regex"] {
        if text(unsupported).is_some() {
            return Err(DecryptError::Metadata(format!(
                "sops.{unsupported} is not supported (comments are not read)"
            )));
        }
    }
    if matches!(meta.get("shamir_threshold"), Some(Node::Int(n)) if *n > 1) {
        return Err(DecryptError::Metadata(
            "sops.shamir_threshold above 1 (key groups) is not supported".into(),
        ));
    }
    let regex = |key: &str| -> Result<Option<Regex>, DecryptError> {
        text(key)
            .map(|r| Regex::new(r).map_err(|e| DecryptError::Metadata(format!("sops.{key}: {e}"))))
            .transpose()
    };
    Ok(Rules {
        unencrypted_suffix: text("unencrypted_suffix").map(str::to_string),
        encrypted_suffix: text("encrypted_suffix").map(str::to_string),
        unencrypted_regex: regex("unencrypted_regex")?,
        encrypted_regex: regex("encrypted_regex")?,
        mac_only_encrypted: matches!(meta.get("mac_only_encrypted"), Some(Node::Bool(true))),
    })
}

/// Opens the data key with the first key that is one of the file's age recipients.
fn data_key(meta: &Node, keys: &Keys) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    let Some(Node::Seq(entries)) = meta.get("age") else {
        return Err(DecryptError::Metadata(
            "no age recipients (sops.age): only files encrypted for age keys are supported".into(),
        ));
    };
    let mut recipients = Vec::new();
    for entry in entries {
        if let Some(r) = entry.get("recipient").and_then(Node::as_str) {
            recipients.push(r.to_string());
        }
        let Some(enc) = entry.get("enc").and_then(Node::as_str) else {
            continue;
        };
        let reader = age::armor::ArmoredReader::new(enc.as_bytes());
        let Ok(decryptor) = age::Decryptor::new(reader) else {
            continue;
        };
        let Ok(mut stream) = decryptor.decrypt(keys.identities()) else {
            continue;
        };
        let mut key = Zeroizing::new(Vec::new());
        if stream.read_to_end(&mut key).is_ok() && key.len() == 32 {
            return Ok(key);
        }
    }
    Err(DecryptError::NoMatchingKey {
        have: keys.recipients().join(", "),
        recipients: recipients.join(", "),
    })
}

/// What a walk needs besides the node: the rules, the data key, the MAC being computed, and
/// the plaintext of each ciphertext seen.
struct Walk<'a> {
    rules: &'a Rules,
    key: &'a [u8],
    hash: Sha512,
    plain: HashMap<String, Node>,
}

fn walk(node: &mut Node, path: &mut Vec<String>, w: &mut Walk<'_>) -> Result<(), DecryptError> {
    match node {
        Node::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                path.push(k.clone());
                walk(v, path, w)?;
                path.pop();
            }
        }
        Node::Seq(items) => {
            for item in items.iter_mut() {
                walk(item, path, w)?;
            }
        }
        leaf => {
            let encrypted = w.rules.encrypted(path);
            if encrypted && let Node::Str(text) = leaf {
                let aad = format!("{}:", path.join(":"));
                if !text.is_empty() {
                    let plain =
                        decrypt_value(text, w.key, &aad).map_err(|reason| DecryptError::Value {
                            path: path.join("."),
                            reason,
                        })?;
                    w.plain.insert(std::mem::take(text), plain.clone());
                    *leaf = plain;
                }
            }
            if !w.rules.mac_only_encrypted || encrypted {
                w.hash.update(mac_bytes(leaf).as_slice());
            }
        }
    }
    Ok(())
}

/// A value as SOPS feeds it to the MAC.
fn mac_bytes(node: &Node) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(match node {
        Node::Str(s) => s.as_bytes().to_vec(),
        Node::Int(i) => i.to_string().into_bytes(),
        Node::UInt(u) => u.to_string().into_bytes(),
        // Go's strconv.FormatFloat(f, 'f', -1, 64): shortest form, never an exponent.
        Node::Float(f) => format!("{f}").into_bytes(),
        Node::Bool(true) => b"True".to_vec(),
        Node::Bool(false) => b"False".to_vec(),
        Node::Null | Node::Seq(_) | Node::Map(_) => Vec::new(),
    })
}

/// Decrypts one `ENC[AES256_GCM,...]` value; the error says why without any plaintext.
fn decrypt_value(text: &str, key: &[u8], aad: &str) -> Result<Node, String> {
    let inner = text
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|t| t.strip_suffix(']'))
        .ok_or("not an ENC[AES256_GCM,...] value")?;
    let mut data = None;
    let mut iv = None;
    let mut tag = None;
    let mut kind = None;
    for part in inner.split(',') {
        match part.split_once(':') {
            Some(("data", v)) => data = Some(v),
            Some(("iv", v)) => iv = Some(v),
            Some(("tag", v)) => tag = Some(v),
            Some(("type", v)) => kind = Some(v),
            _ => return Err("malformed ENC value".into()),
        }
    }
    let (Some(data), Some(iv), Some(tag), Some(kind)) = (data, iv, tag, kind) else {
        return Err("malformed ENC value (data, iv, tag and type are needed)".into());
    };
    let b64 = |what: &str, v: &str| {
        STANDARD
            .decode(v)
            .map_err(|_| format!("its {what} is not base64"))
    };
    let mut sealed = b64("data", data)?;
    let iv = b64("iv", iv)?;
    sealed.extend(b64("tag", tag)?);
    let nonce = Nonce::<U32>::try_from(iv.as_slice())
        .map_err(|_| format!("its iv has {} bytes, not 32", iv.len()))?;
    let cipher = Cipher::new_from_slice(key).map_err(|_| "the data key is not 32 bytes")?;
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| "authentication failed".to_string())?,
    );
    let as_text = || String::from_utf8(plain.to_vec()).map_err(|_| "not UTF-8".to_string());
    Ok(match kind {
        "str" | "bytes" => Node::Str(as_text()?),
        "int" => Node::Int(as_text()?.parse().map_err(|_| "not an integer")?),
        "float" => Node::Float(as_text()?.parse().map_err(|_| "not a float")?),
        "bool" => match as_text()?.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Node::Bool(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Node::Bool(false),
            _ => return Err("not a boolean".into()),
        },
        "comment" => Node::Str(as_text()?),
        other => return Err(format!("unknown type {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_sops_precedence() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut r = Rules {
            unencrypted_suffix: None,
            encrypted_suffix: None,
            unencrypted_regex: None,
            encrypted_regex: None,
            mac_only_encrypted: false,
        };
        assert!(r.encrypted(&path(&["data", "x"])));
        r.unencrypted_suffix = Some("_unencrypted".into());
        assert!(!r.encrypted(&path(&["a_unencrypted", "x"])));
        assert!(r.encrypted(&path(&["data", "x"])));
        r.unencrypted_suffix = None;
        r.encrypted_regex = Some(Regex::new("^(data|stringData)$").unwrap());
        assert!(r.encrypted(&path(&["data", "x"])));
        assert!(!r.encrypted(&path(&["metadata", "name"])));
    }

    #[test]
    fn values_are_fed_to_the_mac_as_sops_prints_them() {
        assert_eq!(mac_bytes(&Node::Bool(true)).as_slice(), b"True");
        assert_eq!(mac_bytes(&Node::Int(-3)).as_slice(), b"-3");
        assert_eq!(mac_bytes(&Node::Float(1.5)).as_slice(), b"1.5");
        assert_eq!(mac_bytes(&Node::Float(2.0)).as_slice(), b"2");
        assert_eq!(mac_bytes(&Node::Str("x".into())).as_slice(), b"x");
    }

    #[test]
    fn malformed_values_are_named_without_content() {
        let key = [0u8; 32];
        assert!(decrypt_value("plain", &key, "a:").is_err());
        let e = decrypt_value(
            "ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]",
            &key,
            "a:",
        )
        .unwrap_err();
        assert!(e.contains("iv"), "{e}");
    }
}
