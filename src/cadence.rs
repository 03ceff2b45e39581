//! When a steady integration's checks run (issue 18): spread by a per-integration phase, so
//! that N integrations cost the same every minute instead of all at once.
//!
//! - **The restart spread.** A process that starts (a restart, a new leader) sees every
//!   integration at once. One that is steady (Ready for its generation) waits
//!   `phase(uid, spread)` before its first check; changed specs and not-Ready ones go first.
//! - **The bucket's full read.** A steady resync reads one bucket setting (the public access
//!   block); all of them (tags, ownership controls, encryption, policy, versioning) once per
//!   `--bucket-settings-interval`, at the integration's own phase of that interval, so the
//!   full reads of N buckets are spread over it rather than bunched after a restart.
//!
//! The phase is a pure function of the uid: the same in every process, so restarts neither
//! bunch the checks nor postpone them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Pure: the integration's phase within `period`, in [0, period): evenly spread over uids.
pub fn phase(uid: &str, period: Duration) -> Duration {
    let millis = period.as_millis().min(u128::from(u64::MAX)) as u64;
    if millis == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::digest(uid.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Duration::from_millis(u64::from_be_bytes(first) % millis)
}

/// Pure: what the process's per-integration maps key an integration by: 16 bytes of its uid's
/// SHA-256, instead of the 36-character uid (a `String` of 24 bytes and a 48-byte allocation),
/// in maps that hold every integration. A collision needs about 2^64 uids.
pub fn uid_key(uid: &str) -> u128 {
    let digest = Sha256::digest(uid.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

/// Pure: the integration's most recent phase point at or before `now` (milliseconds since the
/// Unix epoch): the latest `t <= now` with `t ≡ phase(uid, period) (mod period)`.
pub fn latest_phase_point(now_ms: u64, uid: &str, period: Duration) -> u64 {
    let period_ms = period.as_millis().min(u128::from(u64::MAX)) as u64;
    if period_ms == 0 {
        return now_ms;
    }
    let offset = phase(uid, period).as_millis() as u64;
    let since = (now_ms + period_ms - offset) % period_ms;
    now_ms - since.min(now_ms)
}

/// Pure: whether a steady resync at `now_ms` reads all of the bucket's settings: when the
/// interval is at most the resync interval (every resync does), or when the last full read
/// (`None`: none in this process, which counts as done when the process started) is older than
/// the integration's latest phase point.
pub fn full_bucket_read_due(
    now_ms: u64,
    uid: &str,
    settings_interval: Duration,
    resync_interval: Duration,
    last_full_ms: Option<u64>,
    process_started_ms: u64,
) -> bool {
    if settings_interval <= resync_interval {
        return true;
    }
    last_full_ms.unwrap_or(process_started_ms) < latest_phase_point(now_ms, uid, settings_interval)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The process's memory of when each integration (by uid) last read all its bucket settings.
pub struct BucketReads {
    started_ms: u64,
    /// By `uid_key`.
    last_full: Mutex<HashMap<u128, u64>>,
}

impl Default for BucketReads {
    fn default() -> Self {
        Self {
            started_ms: now_ms(),
            last_full: Mutex::default(),
        }
    }
}

impl BucketReads {
    /// Whether this steady resync reads all the bucket's settings.
    pub fn full_due(&self, uid: &str, settings_interval: Duration, resync_interval: Duration) -> bool {
        let last = self
            .last_full
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid_key(uid))
            .copied();
        full_bucket_read_due(
            now_ms(),
            uid,
            settings_interval,
            resync_interval,
            last,
            self.started_ms,
        )
    }

    /// Records a full read of the bucket's settings, made now.
    pub fn record_full(&self, uid: &str) {
        self.last_full
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid_key(uid), now_ms());
    }

    /// Forgets an integration that is gone.
    pub fn forget(&self, uid: &str) {
        self.last_full
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uid_key(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn phases_are_stable_within_the_period_and_spread() {
        let uids: Vec<String> = (0..1000).map(|i| format!("0000-uid-{i}")).collect();
        for uid in &uids {
            assert_eq!(phase(uid, HOUR), phase(uid, HOUR), "stable");
            assert!(phase(uid, HOUR) < HOUR);
        }
        // Spread: each quarter of the hour gets about a quarter of the uids.
        let mut quarters = [0usize; 4];
        for uid in &uids {
            quarters[(phase(uid, HOUR).as_secs() / 900) as usize] += 1;
        }
        assert!(quarters.iter().all(|q| (200..300).contains(q)), "{quarters:?}");
        assert_eq!(phase("x", Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn uid_keys_are_stable_and_distinct() {
        let keys: std::collections::HashSet<u128> =
            (0..10_000).map(|i| uid_key(&format!("uid-{i}"))).collect();
        assert_eq!(keys.len(), 10_000);
        assert_eq!(uid_key("uid-1"), uid_key("uid-1"));
    }

    #[test]
    fn a_forgotten_integration_counts_as_read_when_the_process_started() {
        let reads = BucketReads::default();
        let (six_hours, hour) = (6 * HOUR, HOUR);
        reads.record_full("uid-1");
        assert!(!reads.full_due("uid-1", six_hours, hour), "just read");
        reads.forget("uid-1");
        assert_eq!(
            reads.full_due("uid-1", six_hours, hour),
            full_bucket_read_due(now_ms(), "uid-1", six_hours, hour, None, reads.started_ms)
        );
    }

    #[test]
    fn the_latest_phase_point_is_at_most_one_period_back_and_at_the_phase() {
        let period = Duration::from_secs(6 * 3600);
        let uid = "a-uid";
        let offset = phase(uid, period).as_millis() as u64;
        for now in [1_700_000_000_000u64, 1_700_000_123_456, 1_700_021_600_000] {
            let point = latest_phase_point(now, uid, period);
            assert!(
                point <= now && now - point < period.as_millis() as u64,
                "{now} {point}"
            );
            assert_eq!(point % period.as_millis() as u64, offset);
        }
    }

    #[test]
    fn the_full_bucket_read_comes_once_per_interval_at_the_phase() {
        let settings = Duration::from_secs(6 * 3600);
        let uid = "b-uid";
        let start = 1_700_000_000_000u64;
        // A process that started just now has nothing due until the uid's next phase point.
        let point = latest_phase_point(start, uid, settings);
        let next = point + settings.as_millis() as u64;
        assert!(!full_bucket_read_due(start, uid, settings, HOUR, None, start));
        assert!(!full_bucket_read_due(next - 1, uid, settings, HOUR, None, start));
        assert!(full_bucket_read_due(next, uid, settings, HOUR, None, start));
        // Done at the phase point (or later), it is not due again until the next one.
        assert!(!full_bucket_read_due(
            next + 3_600_000,
            uid,
            settings,
            HOUR,
            Some(next + 5),
            start
        ));
        assert!(full_bucket_read_due(
            next + settings.as_millis() as u64,
            uid,
            settings,
            HOUR,
            Some(next + 5),
            start
        ));
        // Resyncs that skip past a phase point still find it due (no window to miss).
        assert!(full_bucket_read_due(
            next + 7_200_000,
            uid,
            settings,
            HOUR,
            Some(point),
            start
        ));
        // An interval no longer than the resync: every resync reads everything.
        assert!(full_bucket_read_due(start, uid, HOUR, HOUR, Some(start), start));
        assert!(full_bucket_read_due(
            start,
            uid,
            Duration::ZERO,
            HOUR,
            Some(start),
            start
        ));
    }
}
