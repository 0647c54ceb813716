//! The crates' dependencies point one way (ARCHITECTURE.md): this test reads
//! every `Cargo.toml` and fails when a crate depends on a Hail crate it may not.

use std::collections::BTreeMap;
use std::path::Path;

/// For each crate, the Hail crates it may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("hail-model", &[]),
    ("hail-store", &["hail-model"]),
    ("hail-runtime", &["hail-model"]),
    ("hail-objects", &["hail-model", "hail-store"]),
    ("hail-api", &[]),
    ("hail-gateway", &[]),
    (
        "hail-engine",
        &[
            "hail-model",
            "hail-store",
            "hail-api",
            "hail-runtime",
            "hail-gateway",
        ],
    ),
    (
        "hail",
        &[
            "hail-model",
            "hail-store",
            "hail-runtime",
            "hail-objects",
            "hail-api",
            "hail-gateway",
            "hail-engine",
        ],
    ),
];

/// The `hail-*` names in a manifest's `[dependencies]` table.
fn hail_dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps {
            if let Some(name) = line.split(['=', ' ', '.']).next() {
                if name.starts_with("hail") && !name.is_empty() {
                    out.push(name.to_owned());
                }
            }
        }
    }
    out
}

#[test]
fn dependencies_point_one_way() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&crates_dir).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some(permitted) = allowed.get(name.as_str()) else {
            panic!(
                "crate {name} has no place in the layering table of this test and ARCHITECTURE.md"
            );
        };
        for dep in hail_dependencies(&text) {
            assert!(
                permitted.contains(&dep.as_str()),
                "{name} depends on {dep}, which its layer may not (see ARCHITECTURE.md)"
            );
        }
        seen.push(name);
    }
    assert!(seen.len() >= 5, "found the crates: {seen:?}");
}

#[test]
fn the_parser_sees_dependencies_only() {
    let manifest = "[package]\nname = \"hail-x\"\n[dependencies]\nhail-model = { path = \"../hail-model\" }\nserde.workspace = true\n[dev-dependencies]\nhail-runtime = { path = \"../hail-runtime\" }\n";
    assert_eq!(hail_dependencies(manifest), vec!["hail-model"]);
}
