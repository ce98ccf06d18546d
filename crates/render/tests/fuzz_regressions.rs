//! Replays, on stable, every input of the `manifests` fuzz target's seeds and regressions
//! (`fuzz/seeds/manifests`, `fuzz/regressions/manifests`) with the target's checks: manifests
//! or errors naming the file, never a panic.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                out.push((
                    format!("{dir}/{target}/{name}"),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    out
}

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
