//! Duration parsing (`interval`, `timeout`, ...): no panic; a parsed duration is at most a year
//! and survives formatting and parsing again (to the millisecond below a minute, to the
//! second above).
#![no_main]

use std::time::Duration;

use headway_controller::crd::{format_duration, parse_duration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(text) {
        assert!(d <= Duration::from_secs(365 * 24 * 3600), "{text:?} -> {d:?}");
        let formatted = format_duration(d);
        let again = parse_duration(&formatted)
            .unwrap_or_else(|e| panic!("{text:?} -> {d:?} -> {formatted:?}: {e}"));
        let tolerance = if d < Duration::from_secs(60) {
            Duration::from_millis(1)
        } else {
            Duration::from_secs(1)
        };
        assert!(
            d.abs_diff(again) <= tolerance,
            "{text:?} -> {d:?} -> {formatted:?} -> {again:?}"
        );
    }
});
