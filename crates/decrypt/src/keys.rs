//! age private keys (X25519 identities, `AGE-SECRET-KEY-1...`), read from key files or from the
//! `.agekey` entries of a Kubernetes Secret. Keys are never printed: `Debug` shows their public
//! recipients only.

use std::str::FromStr;

use age::x25519;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A line is not an age private key.
    #[error("{source_name} line {line}: not an age private key (expected AGE-SECRET-KEY-1...)")]
    Invalid { source_name: String, line: usize },
    /// No key at all.
    #[error("{0}: no age private key found")]
    Empty(String),
}

/// A set of age private keys.
#[derive(Clone, Default)]
pub struct Keys {
    identities: Vec<x25519::Identity>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.recipients()).finish()
    }
}

impl Keys {
    /// An empty set.
    pub fn new() -> Self {
        Keys::default()
    }

    /// Adds the keys of a key file's text (`age-keygen` output: `#` comments and one
    /// `AGE-SECRET-KEY-1...` per line); `source_name` names it in errors.
    pub fn add_text(&mut self, source_name: &str, text: &str) -> Result<usize, KeyError> {
        let mut added = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity = x25519::Identity::from_str(line).map_err(|_| KeyError::Invalid {
                source_name: source_name.to_string(),
                line: i + 1,
            })?;
            self.identities.push(identity);
            added += 1;
        }
        if added == 0 {
            return Err(KeyError::Empty(source_name.to_string()));
        }
        Ok(added)
    }

    /// The public recipients (`age1...`) of the keys.
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    pub(crate) fn identities(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities.iter().map(|i| i as &dyn age::Identity)
    }
}
