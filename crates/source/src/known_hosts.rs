//! SSH host key verification against OpenSSH known_hosts text.
//!
//! Lines are parsed by the `ssh-key` crate (markers, host fields, key types and blobs); this
//! module decides which lines name the host and what the server's key is worth:
//!
//! - host fields: patterns (`host`, `[host]:port`, comma lists, `*` and `?` wildcards, `!`
//!   negation) and hashed names (`|1|salt|hash`, HMAC-SHA1 of the name, as `ssh-keygen -H` and
//!   Debian's default `HashKnownHosts yes` write them);
//! - `@revoked`: a key listed so for the host is refused, whatever other lines say;
//! - `@cert-authority`: host certificates are not checked, so these lines never make a key
//!   trusted; a host named only by such lines gets [`HostKeyProblem::CertificateOnly`], whose
//!   error says so.
//!
//! Like OpenSSH, a line that cannot be parsed is skipped (and logged with its line number):
//! one bad line in a user's known_hosts must not make every other host unknown.

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha1::Sha1;
use ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use ssh_key::{HashAlg, PublicKey};

/// Why a host key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostKeyProblem {
    /// No entry names this host.
    Unknown,
    /// Entries name this host, but none with this key.
    Changed,
    /// An `@revoked` entry for this host lists this key.
    Revoked,
    /// Only `@cert-authority` entries name this host; host certificates are not supported.
    CertificateOnly,
}

/// Checks the key the server presented (the raw SSH wire-format blob) against `known_hosts` for
/// `host_name` (`host`, or `[host]:port` when the port is not 22).
pub(crate) fn verify(known_hosts: &str, host_name: &str, key: &[u8]) -> Result<(), HostKeyProblem> {
    // A blob that does not decode cannot be equal to a listed key; the host may still be known.
    let presented = PublicKey::from_bytes(key).ok();
    let mut host_known = false;
    let mut certificate_authority = false;
    let mut accepted = false;
    for entry in entries(known_hosts) {
        if !host_matches(entry.host_patterns(), host_name) {
            continue;
        }
        let same_key = presented
            .as_ref()
            .is_some_and(|p| p.key_data() == entry.public_key().key_data());
        match entry.marker() {
            Some(Marker::Revoked) if same_key => return Err(HostKeyProblem::Revoked),
            Some(Marker::Revoked) => {}
            Some(Marker::CertAuthority) => certificate_authority = true,
            None => {
                host_known = true;
                accepted |= same_key;
            }
        }
    }
    match (accepted, host_known, certificate_authority) {
        (true, _, _) => Ok(()),
        (false, true, _) => Err(HostKeyProblem::Changed),
        (false, false, true) => Err(HostKeyProblem::CertificateOnly),
        (false, false, false) => Err(HostKeyProblem::Unknown),
    }
}

/// `SHA256:<base64 without padding>` of a raw key, as `ssh-keygen -lf` prints it.
pub(crate) fn fingerprint(key: &[u8]) -> String {
    match PublicKey::from_bytes(key) {
        Ok(key) => key.fingerprint(HashAlg::Sha256).to_string(),
        Err(e) => format!("(undecodable key: {e})"),
    }
}

/// The entries of known_hosts text, skipping comments, blank and unreadable lines.
fn entries(known_hosts: &str) -> impl Iterator<Item = Entry> + '_ {
    known_hosts.lines().enumerate().filter_map(|(index, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        // ssh-key expects single spaces between fields; OpenSSH accepts any whitespace.
        let normalized = line.split_whitespace().collect::<Vec<_>>().join(" ");
        match normalized.parse::<Entry>() {
            Ok(entry) => Some(entry),
            Err(e) => {
                let line = index + 1;
                tracing::warn!(line, error = %e, "skipping unreadable known_hosts line");
                None
            }
        }
    })
}

fn host_matches(patterns: &HostPatterns, host: &str) -> bool {
    match patterns {
        HostPatterns::Patterns(list) => patterns_match(list, host),
        HostPatterns::HashedName { salt, hash } => hashed_name_matches(salt, hash, host),
    }
}

/// A comma list of patterns: some pattern matches and no negated one does.
fn patterns_match(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
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

/// `|1|salt|hash`: `hash` is HMAC-SHA1 keyed by `salt` of the (lower-case) host name.
fn hashed_name_matches(salt: &[u8], hash: &[u8; 20], host: &str) -> bool {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
        return false;
    };
    mac.update(host.to_ascii_lowercase().as_bytes());
    mac.verify_slice(hash).is_ok()
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use headway_tests::git::hash_known_hosts;

    use super::*;

    /// A fresh ed25519 key made by the real `ssh-keygen`: (known_hosts key text, raw blob).
    fn keygen(dir: &Path, name: &str) -> (String, Vec<u8>) {
        let text = headway_tests::git::keygen(dir, name).public;
        let blob = PublicKey::from_openssh(&text).unwrap().to_bytes().unwrap();
        (text, blob)
    }

    #[test]
    fn hashed_entries_written_by_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let (key, blob) = keygen(dir.path(), "host");
        let (other, other_blob) = keygen(dir.path(), "other");
        let kh = hash_known_hosts(
            dir.path(),
            &format!("git.example.com {key}\n[git.example.com]:2222 {other}\n"),
        );
        for line in kh.lines() {
            assert!(line.starts_with("|1|"), "{line}");
        }
        assert_eq!(verify(&kh, "git.example.com", &blob), Ok(()));
        assert_eq!(verify(&kh, "GIT.example.com", &blob), Ok(()));
        assert_eq!(verify(&kh, "[git.example.com]:2222", &other_blob), Ok(()));
        // The port is part of the name: each port has its own key.
        assert_eq!(
            verify(&kh, "git.example.com", &other_blob),
            Err(HostKeyProblem::Changed)
        );
        assert_eq!(
            verify(&kh, "[git.example.com]:2222", &blob),
            Err(HostKeyProblem::Changed)
        );
        assert_eq!(
            verify(&kh, "[git.example.com]:2223", &blob),
            Err(HostKeyProblem::Unknown)
        );
        assert_eq!(
            verify(&kh, "example.com", &blob),
            Err(HostKeyProblem::Unknown)
        );
    }

    #[test]
    fn markers() {
        let dir = tempfile::tempdir().unwrap();
        let (key, blob) = keygen(dir.path(), "host");
        let (other, other_blob) = keygen(dir.path(), "other");
        let (ca, _) = keygen(dir.path(), "ca");
        // ssh-keygen -H leaves marked lines alone; a marker may still precede a hashed name.
        let revoked = hash_known_hosts(dir.path(), &format!("r.example {other}\n"));
        let authority = hash_known_hosts(dir.path(), &format!("ca.example {ca}\n"));
        let kh = hash_known_hosts(dir.path(), &format!("r.example {key}\nr.example {other}\n"))
            + &format!("@revoked {revoked}@cert-authority {authority}");
        assert_eq!(verify(&kh, "r.example", &blob), Ok(()));
        // Revoked wins over the plain line listing the same key.
        assert_eq!(
            verify(&kh, "r.example", &other_blob),
            Err(HostKeyProblem::Revoked)
        );
        assert_eq!(
            verify(&kh, "ca.example", &blob),
            Err(HostKeyProblem::CertificateOnly)
        );
        // Plain (unhashed) markers and patterns.
        let plain = format!(
            "@cert-authority *.example {ca}\n@revoked *.example {other}\nok.example {key}\n"
        );
        assert_eq!(verify(&plain, "ok.example", &blob), Ok(()));
        assert_eq!(
            verify(&plain, "ok.example", &other_blob),
            Err(HostKeyProblem::Revoked)
        );
        assert_eq!(
            verify(&plain, "new.example", &blob),
            Err(HostKeyProblem::CertificateOnly)
        );
    }

    #[test]
    fn plain_patterns_and_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (key, blob) = keygen(dir.path(), "host");
        let (other, other_blob) = keygen(dir.path(), "other");
        let kh = format!(
            "# comment\n\n  [h]:2222,alias\t{key}\nh {other}\nnot a key line\n|1|bad|hash {key}\n\
             *.example.com,!bad.example.com {key}\n"
        );
        assert_eq!(verify(&kh, "[h]:2222", &blob), Ok(()));
        assert_eq!(verify(&kh, "alias", &blob), Ok(()));
        assert_eq!(verify(&kh, "h", &other_blob), Ok(()));
        assert_eq!(verify(&kh, "h", &blob), Err(HostKeyProblem::Changed));
        assert_eq!(
            verify(&kh, "[h]:2222", &other_blob),
            Err(HostKeyProblem::Changed)
        );
        assert_eq!(verify(&kh, "git.example.com", &blob), Ok(()));
        assert_eq!(
            verify(&kh, "bad.example.com", &blob),
            Err(HostKeyProblem::Unknown)
        );
        assert_eq!(verify(&kh, "nobody", &blob), Err(HostKeyProblem::Unknown));
        assert_eq!(verify("", "h", &blob), Err(HostKeyProblem::Unknown));
        // An undecodable blob matches nothing.
        assert_eq!(verify(&kh, "h", b"junk"), Err(HostKeyProblem::Changed));
    }

    #[test]
    fn fingerprint_is_the_one_ssh_keygen_prints() {
        let dir = tempfile::tempdir().unwrap();
        let (_, blob) = keygen(dir.path(), "host");
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(dir.path().join("host.pub"))
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        let ours = fingerprint(&blob);
        assert!(ours.starts_with("SHA256:"), "{ours}");
        assert!(printed.contains(&ours), "{printed} vs {ours}");
    }

    #[test]
    fn globs() {
        assert!(glob("*.example.com", "git.example.com"));
        assert!(glob("[127.0.0.1]:22?2", "[127.0.0.1]:2222"));
        assert!(!glob("*.example.com", "example.org"));
        let list = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert!(patterns_match(&list("a,b,[c]:2"), "[c]:2"));
        assert!(!patterns_match(&list("*,!bad"), "bad"));
    }
}
