//! Crash points for the crash-safety tests. Unset (always, outside those tests) they do nothing.
//!
//! - `BUCKETWIRE_CRASH_AT=<point>`: the process aborts at that named point, exactly like a
//!   `kill -9` at that instant.
//! - `BUCKETWIRE_STOP_AFTER_AWS_CALLS=<n>`: once the n-th cloud call (AWS or Alibaba Cloud) of
//!   this process has returned (before its caller sees the answer), the process says so on
//!   stderr and every thread that reaches a call boundary from then on stops dead, so that a
//!   test can `kill -9` it with the n-th call done and nothing after it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Aborts the process if `BUCKETWIRE_CRASH_AT` equals `point`.
pub fn crash_point(point: &str) {
    if std::env::var("BUCKETWIRE_CRASH_AT").is_ok_and(|wanted| wanted == point) {
        eprintln!("bucketwire: crashing at {point} (BUCKETWIRE_CRASH_AT)");
        std::process::abort();
    }
}

/// Called by the call counters (AWS's and Alibaba Cloud's) after every call, operator's and
/// workload's alike.
pub fn aws_call_returned() {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let Some(limit) = *LIMIT.get_or_init(|| {
        std::env::var("BUCKETWIRE_STOP_AFTER_AWS_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
    }) else {
        return;
    };
    let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if n < limit {
        return;
    }
    if n == limit {
        eprintln!("bucketwire: stopped after AWS call {n} (BUCKETWIRE_STOP_AFTER_AWS_CALLS)");
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
