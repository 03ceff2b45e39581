//! The Dockerfile's build stage copies everything Cargo needs to load the manifest: Cargo
//! refuses a manifest whose declared targets (the `[[bench]]`) have no source file ("can't find
//! `operator` bench at `benches/operator.rs`"), so a Dockerfile that copies only `src/` cannot
//! build (issue 15). No Docker engine runs here; this
//! checks the file against the manifest.

use std::path::Path;

/// The sources (first path segment) the Dockerfile copies into its build stage.
fn copied_sources(dockerfile: &str) -> Vec<String> {
    dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().skip(1).collect();
            // Every argument but the last is a source.
            parts[..parts.len().saturating_sub(1)]
                .iter()
                .map(|p| {
                    p.trim_start_matches("./")
                        .split('/')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_build_stage_copies_every_target_the_manifest_declares() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let copied = copied_sources(&dockerfile);
    let mut needed = vec![
        "Cargo.toml".to_string(),
        "Cargo.lock".to_string(),
        "src".to_string(),
    ];
    for (section, dir) in [
        ("[[bench]]", "benches"),
        ("[[example]]", "examples"),
        ("[[test]]", "tests"),
    ] {
        if manifest.lines().any(|l| l.trim() == section) {
            needed.push(dir.to_string());
        }
    }
    assert!(
        needed.iter().any(|n| n == "benches"),
        "the manifest declares the operator bench"
    );
    for item in &needed {
        assert!(
            copied.iter().any(|c| c == item),
            "the Dockerfile's build stage does not copy {item} (it copies {copied:?}); cargo cannot load the manifest without it"
        );
    }
}
