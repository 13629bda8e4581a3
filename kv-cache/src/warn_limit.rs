//! Rate limiting of repeated warnings, so a misbehaving peer cannot flood
//! the logs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Lets one warning through per interval and counts the ones held back.
#[derive(Debug)]
pub(crate) struct WarnLimit {
    start: Instant,
    interval_ms: u64,
    /// Milliseconds since `start` of the last warning let through, plus one
    /// (0: none yet).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl WarnLimit {
    pub(crate) fn new(interval: Duration) -> WarnLimit {
        WarnLimit {
            start: Instant::now(),
            interval_ms: interval.as_millis() as u64,
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a warning may be logged now, `n` being how many were
    /// held back since the previous one.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now - last < self.interval_ms {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval() {
        let limit = WarnLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        let open = WarnLimit::new(Duration::ZERO);
        assert_eq!(open.allow(), Some(0));
        assert_eq!(open.allow(), Some(0));
    }
}
