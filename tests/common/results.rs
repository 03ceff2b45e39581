//! Measured figures, written where the docs can cite them. Every figure in RELIABILITY.md and
//! docs/ comes from one of these files: a test records what it measured (and asserted) under
//! `target/reliability/<name>.json`; `make reliability` runs the tests and copies the files to
//! `reliability/results/`, which is what the docs quote.

use std::path::PathBuf;

/// Writes `value` as `target/reliability/<name>.json` (pretty JSON, replacing an earlier run's).
pub fn record(name: &str, value: &serde_json::Value) {
    let dir = std::env::var_os("BUCKETWIRE_RESULTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/reliability"));
    std::fs::create_dir_all(&dir).expect("results dir");
    let text = serde_json::to_string_pretty(value).expect("results serialize");
    std::fs::write(dir.join(format!("{name}.json")), text + "\n").expect("results write");
}
