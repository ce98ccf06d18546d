//! known_hosts parsing and host key verification: the first line of the input is the host
//! name, the rest the known_hosts text; the key presented is a fixed ed25519 key or, when the
//! input is long enough, its last 51 bytes. No panic; a key is accepted only if listed.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// `ssh-ed25519` wire-format key blob (51 bytes).
const KEY: [u8; 51] = {
    let mut k = [0u8; 51];
    let prefix: [u8; 19] = [
        0, 0, 0, 11, b's', b's', b'h', b'-', b'e', b'd', b'2', b'5', b'5', b'1', b'9', 0, 0, 0, 32,
    ];
    let mut i = 0;
    while i < 19 {
        k[i] = prefix[i];
        i += 1;
    }
    while i < 51 {
        k[i] = i as u8;
        i += 1;
    }
    k
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (host, known_hosts) = text.split_once('\n').unwrap_or((text, ""));
    let key: &[u8] = if data.len() > 51 * 2 {
        &data[data.len() - 51..]
    } else {
        &KEY
    };
    let verdict = headway_source::fuzzing::verify_host_key(known_hosts, host, key);
    if known_hosts.trim().is_empty() {
        assert!(verdict.is_err(), "an empty known_hosts accepted a key");
    }
});
