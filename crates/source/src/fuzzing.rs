//! Entry points for the fuzz targets (`fuzz/`) and their regression tests on stable: the URL
//! parser and the known_hosts check, which are private to the crate. Not a stable API.

use crate::error::SourceError;

/// Parses a repository URL as a fetch does; on success, its redacted form and its known_hosts
/// name (so a fuzzer exercises those too).
pub fn parse_url(url: &str) -> Result<(String, String), SourceError> {
    let parsed = crate::url::parse(url)?;
    Ok((parsed.redacted.clone(), parsed.known_hosts_name()))
}

/// Whether `known_hosts` accepts `key` (an SSH wire-format public key) for `host_name`; the
/// reason in words otherwise.
pub fn verify_host_key(known_hosts: &str, host_name: &str, key: &[u8]) -> Result<(), String> {
    crate::known_hosts::verify(known_hosts, host_name, key).map_err(|p| format!("{p:?}"))
}
