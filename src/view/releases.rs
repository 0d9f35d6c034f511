//! Waiting, briefly, for the passthrough opens of a file to be released.
//!
//! A redacted open cannot join passthrough opens of a file that has location (they read the
//! original bytes), so while one is held it answers EBUSY. But `close()` returns before the
//! kernel's RELEASE reaches us: it is sent without waiting for the answer, and another worker
//! (or, over io_uring, the queue of another CPU) may still have it in hand when an app opens
//! the file the moment the writer is done. That open waits for the release, up to
//! [`RELEASE_GRACE`], instead of failing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Long enough for a release another worker already holds, or that waits in another queue
/// behind a request or two; short enough that a real holder costs the waiting worker little.
pub(super) const RELEASE_GRACE: Duration = Duration::from_millis(50);

#[derive(Default)]
pub(super) struct Releases {
    /// Held by the waiter between its check and its sleep, and by a release to wake it, so
    /// that no release falls between the two.
    lock: Mutex<()>,
    released: Condvar,
    /// One waiter at a time: a second redacted open meanwhile answers EBUSY at once, so that
    /// apps that keep a file open cannot put more than one worker to sleep.
    waiting: AtomicBool,
    /// Threads serving requests: with only one, the release cannot come while it waits (and
    /// a single reader of `/dev/fuse` has already served it: the kernel queues it first).
    workers: AtomicUsize,
}

impl Releases {
    pub(super) fn worker_started(&self) {
        self.workers.fetch_add(1, SeqCst);
    }

    /// Called after a passthrough open was released (its node's count already lowered).
    pub(super) fn released(&self) {
        // SeqCst pairs with the waiter's store: either the waiter sees the lowered count
        // when it checks under the lock, or we see it waiting and wake it.
        if self.waiting.load(SeqCst) {
            let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.released.notify_all();
        }
    }

    /// Waits until `free()` holds, up to `grace`; true if it does. False at once when another
    /// wait is in progress or no other worker could serve the release.
    pub(super) fn wait_until(&self, grace: Duration, free: impl Fn() -> bool) -> bool {
        if self.workers.load(SeqCst) < 2
            || self
                .waiting
                .compare_exchange(false, true, SeqCst, SeqCst)
                .is_err()
        {
            return free();
        }
        let deadline = Instant::now() + grace;
        let mut held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let free_now = loop {
            if free() {
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            held = match self.released.wait_timeout(held, left) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        };
        drop(held);
        self.waiting.store(false, SeqCst);
        free_now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    fn with_workers(n: usize) -> Releases {
        let r = Releases::default();
        for _ in 0..n {
            r.worker_started();
        }
        r
    }

    #[test]
    fn a_release_from_another_worker_ends_the_wait() {
        let r = Arc::new(with_workers(2));
        let opens = Arc::new(AtomicU32::new(1));
        let (r2, opens2) = (r.clone(), opens.clone());
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            opens2.store(0, SeqCst);
            r2.released();
        });
        let t = Instant::now();
        assert!(r.wait_until(Duration::from_secs(10), || opens.load(SeqCst) == 0));
        assert!(t.elapsed() < Duration::from_secs(10));
        releaser.join().unwrap();
    }

    #[test]
    fn a_held_open_ends_the_wait_at_the_grace() {
        let r = with_workers(2);
        let t = Instant::now();
        assert!(!r.wait_until(Duration::from_millis(20), || false));
        assert!(t.elapsed() >= Duration::from_millis(20));
        // And the next wait may begin.
        assert!(r.wait_until(Duration::from_millis(20), || true));
    }

    #[test]
    fn a_single_worker_or_a_second_waiter_does_not_wait() {
        let r = with_workers(1);
        let t = Instant::now();
        assert!(!r.wait_until(Duration::from_secs(10), || false));
        assert!(r.wait_until(Duration::from_secs(10), || true));
        let r = with_workers(2);
        r.waiting.store(true, SeqCst);
        assert!(!r.wait_until(Duration::from_secs(10), || false));
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
