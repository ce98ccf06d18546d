//! SSH host key verification against OpenSSH known_hosts text.
//!
//! Supported: plain host patterns (`host`, `[host]:port`, comma lists, `*` and `?` wildcards,
//! `!` negation), `@revoked` markers. Hashed entries (`|1|...`) and `@cert-authority` lines are
//! ignored: list hosts in clear text (`ssh-keyscan` without `-H`).

use sha2::{Digest as _, Sha256};

/// Why a host key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKeyProblem {
    /// No entry names this host.
    Unknown,
    /// Entries name this host, but none with this key (or the key is revoked).
    Changed,
}

/// Checks the key the server presented (`key_type` as in known_hosts, e.g. `ssh-ed25519`, and
/// the raw key blob) against `known_hosts` for `host_name` (`host` or `[host]:port`).
pub(crate) fn verify(
    known_hosts: &str,
    host_name: &str,
    key_type: &str,
    key: &[u8],
) -> Result<(), HostKeyProblem> {
    let key_b64 = base64(key, true);
    let mut host_known = false;
    let mut accepted = false;
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or("");
        let mut revoked = false;
        if let Some(marker) = first.strip_prefix('@') {
            match marker {
                "revoked" => revoked = true,
                _ => continue, // @cert-authority: certificates are not supported
            }
            first = fields.next().unwrap_or("");
        }
        let (Some(kt), Some(kb)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !hosts_match(first, host_name) {
            continue;
        }
        let same_key = kt == key_type && kb == key_b64;
        if revoked {
            if same_key {
                return Err(HostKeyProblem::Changed);
            }
            continue;
        }
        host_known = true;
        accepted |= same_key;
    }
    match (accepted, host_known) {
        (true, _) => Ok(()),
        (false, true) => Err(HostKeyProblem::Changed),
        (false, false) => Err(HostKeyProblem::Unknown),
    }
}

/// `SHA256:<base64 without padding>` of a raw key, as `ssh-keygen -lf` prints it.
pub(crate) fn fingerprint(key: &[u8]) -> String {
    format!("SHA256:{}", base64(&Sha256::digest(key), false))
}

fn hosts_match(patterns: &str, host: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        if pattern.starts_with('|') {
            continue; // hashed host names are not supported
        }
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated, host) {
                return false;
            }
        } else if glob(pattern, host) {
            matched = true;
        }
    }
    matched
}

/// `*` and `?` wildcards, ASCII case-insensitive (host names).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn base64(bytes: &[u8], pad: bool) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (input, padded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes(), true), padded);
            assert_eq!(
                base64(input.as_bytes(), false),
                padded.trim_end_matches('=')
            );
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*.example.com", "git.example.com"));
        assert!(glob("[127.0.0.1]:22?2", "[127.0.0.1]:2222"));
        assert!(!glob("*.example.com", "example.org"));
        assert!(hosts_match("a,b,[c]:2", "[c]:2"));
        assert!(!hosts_match("*,!bad", "bad"));
    }

    #[test]
    fn verifies_keys() {
        let key = b"key-one";
        let other = b"key-two";
        let kh = format!(
            "# comment\n[h]:2222,alias ssh-ed25519 {}\nh ssh-rsa {}\n@revoked r ssh-ed25519 {}\nr ssh-ed25519 {}\n",
            base64(key, true),
            base64(other, true),
            base64(key, true),
            base64(key, true)
        );
        assert_eq!(verify(&kh, "[h]:2222", "ssh-ed25519", key), Ok(()));
        assert_eq!(verify(&kh, "alias", "ssh-ed25519", key), Ok(()));
        assert_eq!(
            verify(&kh, "[h]:2222", "ssh-ed25519", other),
            Err(HostKeyProblem::Changed)
        );
        assert_eq!(
            verify(&kh, "h", "ssh-ed25519", key),
            Err(HostKeyProblem::Changed)
        );
        assert_eq!(
            verify(&kh, "nobody", "ssh-ed25519", key),
            Err(HostKeyProblem::Unknown)
        );
        assert_eq!(
            verify(&kh, "r", "ssh-ed25519", key),
            Err(HostKeyProblem::Changed)
        );
    }
}
