//! Manifest parsing as a plain file is read (YAML/JSON multi-document, kubectl semantics): any
//! input gives manifests or errors naming the file, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match headway_render::parse_manifests(text, "fuzz.yaml") {
        Ok(manifests) => {
            for m in manifests {
                assert!(!m.id.name.is_empty(), "a manifest without a name: {m:?}");
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without a message");
            let text = errors.to_string();
            assert!(text.contains("fuzz.yaml"), "an error not naming the file: {text}");
        }
    }
});
