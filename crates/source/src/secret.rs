//! What must never be printed: [`Secret`] values, and the password inside a URL
//! ([`redact_url`]).
//!
//! The lowest module of the crate: it imports nothing from it, so every other module may use it.

use std::fmt;

/// A string that must never be printed: passwords, tokens, private keys, passphrases.
///
/// `Debug` prints `Secret(<redacted>)`; there is no `Display`. Read the value with
/// [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

/// The URL with the password of its user info replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("https://u:p4ss@h/x"), "https://u:***@h/x");
        assert_eq!(redact_url("https://u@h/x"), "https://u@h/x");
        assert_eq!(redact_url("git@h:org/x"), "git@h:org/x");
        assert_eq!(format!("{:?}", Secret::new("p4ss")), "Secret(<redacted>)");
    }
}
