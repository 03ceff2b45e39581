//! Crash points for the crash-safety tests: when `BUCKETWIRE_CRASH_AT` names a point, the
//! process aborts there, exactly like a `kill -9` at that instant. Unset (always, outside those
//! tests) it does nothing.

/// Aborts the process if `BUCKETWIRE_CRASH_AT` equals `point`.
pub fn crash_point(point: &str) {
    if std::env::var("BUCKETWIRE_CRASH_AT").is_ok_and(|wanted| wanted == point) {
        eprintln!("bucketwire: crashing at {point} (BUCKETWIRE_CRASH_AT)");
        std::process::abort();
    }
}
