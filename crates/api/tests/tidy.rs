//! Architecture invariant, checked as a test: the API sees the controller only through its read
//! model, progress bus and `Handle`; it never depends on apply, source, render or git2.

const FORBIDDEN: [&str; 4] = ["headway-apply", "headway-source", "headway-render", "git2"];

#[test]
fn the_api_depends_on_no_pipeline_crate() {
    let manifest = include_str!("../Cargo.toml");
    let mut section = "";
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if !section.contains("dependencies") {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or("");
        assert!(
            !FORBIDDEN.contains(&name),
            "crates/api/Cargo.toml {section} lists {name}: the API may use only the controller's view, progress and Handle"
        );
    }
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for crate_name in FORBIDDEN {
            let ident = crate_name.replace('-', "_");
            assert!(
                !text.contains(&format!("{ident}::")),
                "{} uses {ident}",
                path.display()
            );
        }
    }
}
