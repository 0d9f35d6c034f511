//! Denied accesses: counted always, logged at a bounded rate, and queued for an audit
//! listener (Java) that drains them in batches off the request path.

use super::feed::Feed;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At most this many denials are written to the log per second; the rest are only counted.
const LOG_PER_SECOND: u64 = 10;
/// Undelivered denials beyond this are dropped (and counted) rather than growing memory.
const QUEUE_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub uid: u32,
    pub operation: &'static str,
    pub path: String,
    pub errno: i32,
}

#[derive(Debug)]
pub struct DenialLog {
    window: AtomicU64,
    logged_in_window: AtomicU64,
    feed: Feed<Denial>,
}

impl Default for DenialLog {
    fn default() -> Self {
        DenialLog {
            window: AtomicU64::new(0),
            logged_in_window: AtomicU64::new(0),
            feed: Feed::new(QUEUE_MAX),
        }
    }
}

impl DenialLog {
    /// Logs (rate-limited) and, if a listener is registered, queues the denial.
    pub fn record(
        &self,
        uid: u32,
        operation: &'static str,
        path: impl FnOnce() -> String,
        errno: i32,
    ) {
        let listening = self.feed.listening();
        let log_it = self.may_log();
        if !listening && !log_it {
            return;
        }
        let path = path();
        if log_it {
            log::info!(
                "denied: uid {uid} {operation} {path:?}: {}",
                std::io::Error::from_raw_os_error(errno)
            );
        }
        self.feed.push(|| Denial {
            uid,
            operation,
            path,
            errno,
        });
    }

    fn may_log(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if self.window.swap(now, Relaxed) != now {
            self.logged_in_window.store(0, Relaxed);
        }
        self.logged_in_window.fetch_add(1, Relaxed) < LOG_PER_SECOND
    }

    pub fn set_listening(&self, on: bool) {
        self.feed.set_listening(on);
    }

    /// Waits up to `timeout` for denials and returns all that are queued (possibly none).
    pub fn drain(&self, timeout: Duration) -> Vec<Denial> {
        self.feed.drain(timeout)
    }

    /// Wakes a thread blocked in `drain` (used when stopping).
    pub fn wake(&self) {
        self.feed.wake();
    }

    /// Denials dropped because the listener fell behind.
    pub fn dropped(&self) -> u64 {
        self.feed.dropped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_only_while_listening_and_bounds_the_queue() {
        let log = DenialLog::default();
        log.record(10001, "open", || "a".into(), libc::EACCES);
        assert!(log.drain(Duration::ZERO).is_empty());
        log.set_listening(true);
        for _ in 0..QUEUE_MAX + 10 {
            log.record(10001, "open", || "a".into(), libc::EACCES);
        }
        assert_eq!(log.drain(Duration::ZERO).len(), QUEUE_MAX);
        assert_eq!(log.dropped(), 10);
    }
}
