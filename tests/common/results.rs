//! Measured figures, written where the docs can cite them. Every figure in RELIABILITY.md and
//! docs/ comes from one of these files: a test records what it measured (and asserted) under
//! `target/reliability/<name>.json` (so `make test` writes only under target/); `make
//! reliability` runs the same tests with `BUCKETWIRE_RESULTS_DIR=reliability/results`, the
//! committed files the docs quote.

use std::path::PathBuf;

/// Writes `value` as `<name>.json` under `$BUCKETWIRE_RESULTS_DIR`, or else under
/// `target/reliability/` (pretty JSON, replacing an earlier run's).
pub fn record(name: &str, value: &serde_json::Value) {
    let dir = std::env::var_os("BUCKETWIRE_RESULTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/reliability"));
    std::fs::create_dir_all(&dir).expect("results dir");
    let text = serde_json::to_string_pretty(value).expect("results serialize");
    std::fs::write(dir.join(format!("{name}.json")), text + "\n").expect("results write");
}

/// The machine a figure was measured on: cores, CPU model, memory and the build profile of the
/// test binaries (the operator binary is built with the same profile).
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "cpu": cpu,
        "memory_gib": memory_gib,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}
