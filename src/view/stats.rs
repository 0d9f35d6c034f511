//! Counters of the storage view, read by the faces (log, Java) as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct ViewStats {
    pub passthrough_opens: AtomicU64,
    pub userspace_opens: AtomicU64,
    /// Userspace opens refused (ENFILE) because the daemon's budget of lower fds was spent.
    pub userspace_refused: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub denials: AtomicU64,
    pub backing_registered: AtomicU64,
    pub backing_released: AtomicU64,
}

impl ViewStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}
