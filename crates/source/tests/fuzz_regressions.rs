//! Replays, on stable, every input of the `repo_url` and `known_hosts` fuzz targets' seeds and
//! regressions (`fuzz/seeds/*`, `fuzz/regressions/*`) with the targets' checks.

use headway_tests::fuzz_inputs as inputs;

#[test]
fn repo_url_inputs_replay() {
    let inputs = inputs("repo_url");
    assert!(!inputs.is_empty(), "no seeds found for the repo_url target");
    for (name, data) in inputs {
        let Ok(url) = std::str::from_utf8(&data) else {
            continue;
        };
        let _ = headway_source::redact_url(url);
        if let Ok((redacted, known_hosts_name)) = headway_source::fuzzing::parse_url(url) {
            let again = headway_source::fuzzing::parse_url(&redacted);
            assert_eq!(
                again.as_ref().ok().map(|(_, n)| n),
                Some(&known_hosts_name),
                "{name}: {url:?} redacted to {redacted:?}"
            );
        }
    }
}

#[test]
fn known_hosts_inputs_replay() {
    let inputs = inputs("known_hosts");
    assert!(
        !inputs.is_empty(),
        "no seeds found for the known_hosts target"
    );
    for (name, data) in inputs {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let (host, known_hosts) = text.split_once('\n').unwrap_or((text, ""));
        let key: &[u8] = if data.len() > 102 {
            &data[data.len() - 51..]
        } else {
            &[0u8; 51]
        };
        let verdict = headway_source::fuzzing::verify_host_key(known_hosts, host, key);
        if known_hosts.trim().is_empty() {
            assert!(
                verdict.is_err(),
                "{name}: an empty known_hosts accepted a key"
            );
        }
    }
}
