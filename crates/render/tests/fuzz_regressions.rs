//! Replays, on stable, every input of the `manifests` fuzz target's seeds and regressions
//! (`fuzz/seeds/manifests`, `fuzz/regressions/manifests`) with the target's checks: manifests
//! or errors naming the file, never a panic.

use headway_tests::fuzz_inputs as inputs;

#[test]
fn manifests_inputs_replay() {
    let inputs = inputs("manifests");
    assert!(
        !inputs.is_empty(),
        "no seeds found for the manifests target"
    );
    for (name, data) in inputs {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        match headway_render::parse_manifests(text, "fuzz.yaml") {
            Ok(manifests) => {
                for m in manifests {
                    assert!(!m.id.name.is_empty(), "{name}: a manifest without a name");
                }
            }
            Err(errors) => {
                let text = errors.to_string();
                assert!(
                    text.contains("fuzz.yaml"),
                    "{name}: error not naming the file: {text}"
                );
            }
        }
    }
}
