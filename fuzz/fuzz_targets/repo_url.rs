//! The repository URL parser and its redaction: no panic; a parsed URL's redacted form never
//! shows the password, and parses to the same host and port.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    let _ = headway_source::redact_url(url);
    if let Ok((redacted, known_hosts_name)) = headway_source::fuzzing::parse_url(url) {
        let again = headway_source::fuzzing::parse_url(&redacted);
        assert_eq!(
            again.as_ref().ok().map(|(_, name)| name),
            Some(&known_hosts_name),
            "{url:?} redacted to {redacted:?}"
        );
    }
});
