//! Webhook authentication over the raw body, before anything parses it: HMAC-SHA256 checked
//! with `verify_slice` (constant time), GitLab's plain token compared in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::provider::Provider;

/// What a delivery carries to prove who sent it, read from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// An HMAC-SHA256 of the body (decoded from hex).
    Hmac(Vec<u8>),
    /// A shared token sent as is (GitLab).
    Token(Vec<u8>),
}

/// Why a delivery is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header {0}")]
    Missing(&'static str),
    #[error("malformed signature header {header}: {why}")]
    Malformed {
        header: &'static str,
        why: &'static str,
    },
    #[error("signature does not match any configured secret")]
    Mismatch,
    #[error(
        "no webhook secret is configured: webhooks are refused (set --webhook-secret-file or spec.webhook.secretRef)"
    )]
    NoSecret,
}

/// Header lookup, case-insensitive names (as `http::HeaderMap` does).
pub trait Headers {
    fn header(&self, name: &str) -> Option<&str>;
}

impl Headers for axum::http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Headers for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

fn non_empty<'a>(headers: &'a (impl Headers + ?Sized), name: &str) -> Option<&'a str> {
    headers
        .header(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn hex_digest(
    header: &'static str,
    value: &str,
    prefix: Option<&str>,
) -> Result<Proof, SignatureError> {
    let hex_part = match prefix {
        Some(p) => value.strip_prefix(p).ok_or(SignatureError::Malformed {
            header,
            why: "expected sha256=<hex>",
        })?,
        None => value,
    };
    let bytes = hex::decode(hex_part).map_err(|_| SignatureError::Malformed {
        header,
        why: "not hexadecimal",
    })?;
    if bytes.len() != 32 {
        return Err(SignatureError::Malformed {
            header,
            why: "not a SHA-256 digest (32 bytes)",
        });
    }
    Ok(Proof::Hmac(bytes))
}

/// Reads the proof a provider sends.
pub fn proof(
    provider: Provider,
    headers: &(impl Headers + ?Sized),
) -> Result<Proof, SignatureError> {
    match provider {
        Provider::Github => {
            const H: &str = "X-Hub-Signature-256";
            let v = non_empty(headers, H).ok_or(SignatureError::Missing(H))?;
            hex_digest(H, v, Some("sha256="))
        }
        Provider::Gitlab => {
            const H: &str = "X-Gitlab-Token";
            let v = headers
                .header(H)
                .filter(|v| !v.is_empty())
                .ok_or(SignatureError::Missing(H))?;
            Ok(Proof::Token(v.as_bytes().to_vec()))
        }
        Provider::Gitea => {
            // Forgejo sends both; Gitea sends the headers empty when no secret is set; Gogs,
            // which Gitea forked, sends its own.
            if let Some(v) = non_empty(headers, "X-Gitea-Signature") {
                hex_digest("X-Gitea-Signature", v, None)
            } else if let Some(v) = non_empty(headers, "X-Forgejo-Signature") {
                hex_digest("X-Forgejo-Signature", v, None)
            } else if let Some(v) = non_empty(headers, "X-Gogs-Signature") {
                hex_digest("X-Gogs-Signature", v, None)
            } else {
                Err(SignatureError::Missing("X-Gitea-Signature"))
            }
        }
        Provider::Bitbucket | Provider::BitbucketServer => {
            const H: &str = "X-Hub-Signature";
            let v = non_empty(headers, H).ok_or(SignatureError::Missing(H))?;
            hex_digest(H, v, Some("sha256="))
        }
        Provider::Generic => {
            const H: &str = "X-Signature";
            let v = non_empty(headers, H).ok_or(SignatureError::Missing(H))?;
            hex_digest(H, v, Some("sha256="))
        }
    }
}

/// Whether `proof` was made with `secret` over `body`; constant time in the proof's content.
pub fn verifies(proof: &Proof, secret: &[u8], body: &[u8]) -> bool {
    match proof {
        Proof::Hmac(tag) => {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                return false;
            };
            mac.update(body);
            mac.verify_slice(tag).is_ok()
        }
        Proof::Token(token) => {
            // Compare digests: equal lengths, so the comparison time says nothing about the secret's length.
            let a = Sha256::digest(token);
            let b = Sha256::digest(secret);
            bool::from(a.as_slice().ct_eq(b.as_slice()))
        }
    }
}

/// `sha256=<hex>` of the body with `secret` (what senders compute; used by tests and docs).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"ref":"refs/heads/main"}"#;

    fn check(
        provider: Provider,
        headers: &[(&str, &str)],
        secret: &[u8],
        expected: Result<bool, SignatureError>,
    ) {
        let got = proof(provider, headers).map(|p| verifies(&p, secret, BODY));
        assert_eq!(got, expected, "{provider} {headers:?}");
    }

    #[test]
    fn each_provider_scheme() {
        let sig = sign(b"s3cret", BODY);
        let bare = sig.strip_prefix("sha256=").unwrap();
        check(
            Provider::Github,
            &[("X-Hub-Signature-256", &sig)],
            b"s3cret",
            Ok(true),
        );
        check(
            Provider::Github,
            &[("x-hub-signature-256", &sig)],
            b"other",
            Ok(false),
        );
        check(
            Provider::Gitea,
            &[("X-Gitea-Signature", bare)],
            b"s3cret",
            Ok(true),
        );
        check(
            Provider::Gitea,
            &[("X-Gitea-Signature", ""), ("X-Forgejo-Signature", bare)],
            b"s3cret",
            Ok(true),
        );
        check(
            Provider::Gitea,
            &[("X-Gogs-Signature", bare)],
            b"s3cret",
            Ok(true),
        );
        check(
            Provider::Bitbucket,
            &[("X-Hub-Signature", &sig)],
            b"s3cret",
            Ok(true),
        );
        check(
            Provider::BitbucketServer,
            &[("X-Hub-Signature", &sig)],
            b"s3cret",
            Ok(true),
        );
        check(
            Provider::Generic,
            &[("X-Signature", &sig)],
            b"s3cret",
            Ok(true),
        );
        check(
            Provider::Gitlab,
            &[("X-Gitlab-Token", "s3cret")],
            b"s3cret",
            Ok(true),
        );
        check(
            Provider::Gitlab,
            &[("X-Gitlab-Token", "s3cre")],
            b"s3cret",
            Ok(false),
        );
        check(
            Provider::Gitlab,
            &[("X-Gitlab-Token", "s3cret ")],
            b"s3cret",
            Ok(false),
        );
    }

    #[test]
    fn missing_and_malformed() {
        let sig = sign(b"s3cret", BODY);
        check(
            Provider::Github,
            &[],
            b"s3cret",
            Err(SignatureError::Missing("X-Hub-Signature-256")),
        );
        // GitHub's legacy SHA-1 header alone is not accepted.
        check(
            Provider::Github,
            &[("X-Hub-Signature", "sha1=0123")],
            b"s3cret",
            Err(SignatureError::Missing("X-Hub-Signature-256")),
        );
        check(
            Provider::Gitea,
            &[("X-Gitea-Signature", "")],
            b"s3cret",
            Err(SignatureError::Missing("X-Gitea-Signature")),
        );
        check(
            Provider::Gitlab,
            &[("X-Gitlab-Token", "")],
            b"s3cret",
            Err(SignatureError::Missing("X-Gitlab-Token")),
        );
        assert!(matches!(
            proof(
                Provider::Github,
                &[("X-Hub-Signature-256", sig.strip_prefix("sha256=").unwrap())][..]
            ),
            Err(SignatureError::Malformed { .. })
        ));
        assert!(matches!(
            proof(Provider::Generic, &[("X-Signature", "sha256=zz")][..]),
            Err(SignatureError::Malformed {
                why: "not hexadecimal",
                ..
            })
        ));
        assert!(matches!(
            proof(Provider::Generic, &[("X-Signature", "sha256=00ff")][..]),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn a_changed_body_fails() {
        let sig = sign(b"s3cret", BODY);
        let p = proof(
            Provider::Github,
            &[("X-Hub-Signature-256", sig.as_str())][..],
        )
        .unwrap();
        assert!(verifies(&p, b"s3cret", BODY));
        assert!(!verifies(&p, b"s3cret", br#"{"ref":"refs/heads/prod"}"#));
        assert!(!verifies(&p, b"", BODY));
    }
}
