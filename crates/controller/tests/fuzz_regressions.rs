//! Replays, on stable, every input of the `duration` fuzz target's seeds and regressions
//! (`fuzz/seeds/duration`, `fuzz/regressions/duration`) with the target's checks: at most a
//! year, and the same duration after formatting and parsing again.

use std::time::Duration;

use headway_controller::crd::{format_duration, parse_duration};

#[test]
fn duration_inputs_replay() {
    let inputs = headway_tests::fuzz_inputs("duration");
    assert!(!inputs.is_empty(), "no seeds found for the duration target");
    for (name, data) in inputs {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        if let Ok(d) = parse_duration(text) {
            assert!(d <= Duration::from_secs(365 * 24 * 3600), "{name}: {d:?}");
            let formatted = format_duration(d);
            let again = parse_duration(&formatted)
                .unwrap_or_else(|e| panic!("{name}: {d:?} -> {formatted:?}: {e}"));
            let tolerance = if d < Duration::from_secs(60) {
                Duration::from_millis(1)
            } else {
                Duration::from_secs(1)
            };
            assert!(d.abs_diff(again) <= tolerance, "{name}: {d:?} -> {again:?}");
        }
    }
}
