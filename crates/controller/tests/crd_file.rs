//! The committed CRD manifest (`charts/headway/crds/gitsync.yaml`) must be exactly what the Rust
//! types generate; `cargo xtask codegen` rewrites it.

use std::path::Path;

#[test]
fn committed_crd_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/headway/crds/gitsync.yaml");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}; run `cargo xtask codegen`", path.display()));
    let generated = headway_controller::crd::crd_yaml();
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{} is stale (first difference at line {}: committed {:?}, generated {:?}); run `cargo xtask codegen`",
            path.display(),
            first + 1,
            committed.lines().nth(first),
            generated.lines().nth(first)
        );
    }
}
