//! Content digests: sha256 over a canonical JSON form (object keys sorted, no whitespace), so the
//! same object always has the same digest whatever the key order of its source file.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A sha256 digest, displayed as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Digest([u8; 32]);

impl Digest {
    /// Digest of the canonical JSON form of `value`.
    pub fn of_json(value: &serde_json::Value) -> Self {
        let mut hasher = Sha256::new();
        let mut buf = Vec::with_capacity(1024);
        write_canonical(value, &mut buf);
        hasher.update(&buf);
        Digest(hasher.finalize().into())
    }

    /// Digest of raw bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// The hex form, without the `sha256:` prefix.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_string()
    }
}

/// Error parsing a digest string.
#[derive(Debug, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
pub struct InvalidDigest(String);

impl TryFrom<String> for Digest {
    type Error = InvalidDigest;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for Digest {
    type Err = InvalidDigest;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| InvalidDigest(s.to_string()))?;
        Ok(Digest(out))
    }
}

/// Writes the canonical JSON form of `value`: object keys sorted by their UTF-8 bytes, no
/// insignificant whitespace. Independent of serde_json's `preserve_order` feature.
pub fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Serialising a string cannot fail.
                serde_json::to_writer(&mut *out, k).expect("string serialises");
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("scalar serialises"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_change_the_digest() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": "z"}});
        let b = json!({"b": {"y": "z", "x": [1, 2]}, "a": 1});
        assert_eq!(Digest::of_json(&a), Digest::of_json(&b));
    }

    #[test]
    fn content_changes_the_digest() {
        assert_ne!(
            Digest::of_json(&json!({"a": [1, 2]})),
            Digest::of_json(&json!({"a": [2, 1]}))
        );
        assert_ne!(
            Digest::of_json(&json!({"a": "1"})),
            Digest::of_json(&json!({"a": 1}))
        );
    }

    #[test]
    fn canonical_form_is_compact_and_sorted() {
        let mut out = Vec::new();
        write_canonical(&json!({"b": 1, "a": [true, null, "s"]}), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":[true,null,"s"],"b":1}"#
        );
    }

    #[test]
    fn display_and_parse_round_trip() {
        let d = Digest::of_bytes(b"headway");
        let s = d.to_string();
        assert!(s.starts_with("sha256:"));
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        assert!("sha256:zz".parse::<Digest>().is_err());
    }
}
