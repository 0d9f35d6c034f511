//! Denied accesses: counted always, logged at a bounded rate, and queued for an audit
//! listener (Java) that drains them in batches off the request path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At most this many denials are written to the log per second; the rest are only counted.
const LOG_PER_SECOND: u64 = 10;
/// Undelivered events beyond this are dropped (and counted) rather than growing memory.
const QUEUE_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub uid: u32,
    pub operation: &'static str,
    pub path: String,
    pub errno: i32,
}

#[derive(Debug, Default)]
pub struct DenialLog {
    window: AtomicU64,
    logged_in_window: AtomicU64,
    listening: AtomicBool,
    queue: Mutex<VecDeque<Denial>>,
    ready: Condvar,
    pub dropped: AtomicU64,
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
        let listening = self.listening.load(Relaxed);
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
        if listening {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= QUEUE_MAX {
                self.dropped.fetch_add(1, Relaxed);
            } else {
                q.push_back(Denial {
                    uid,
                    operation,
                    path,
                    errno,
                });
                self.ready.notify_one();
            }
        }
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
        self.listening.store(on, Relaxed);
        if !on {
            self.queue.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        self.ready.notify_all();
    }

    /// Waits up to `timeout` for denials and returns all that are queued (possibly none).
    pub fn drain(&self, timeout: Duration) -> Vec<Denial> {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let (mut q, _) = self
            .ready
            .wait_timeout_while(q, timeout, |q| q.is_empty() && self.listening.load(Relaxed))
            .unwrap_or_else(|e| e.into_inner());
        q.drain(..).collect()
    }

    /// Wakes a thread blocked in `drain` (used when stopping).
    pub fn wake(&self) {
        self.ready.notify_all();
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
        assert_eq!(log.dropped.load(Relaxed), 10);
    }
}
