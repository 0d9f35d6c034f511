//! A bounded queue from the request path to one consumer (a Java dispatcher thread, the CLI's
//! event writer): pushing never blocks a worker; while nobody listens nothing is queued; when the
//! queue is full the item is dropped and counted, so the consumer knows to rescan.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Debug)]
pub struct Feed<T> {
    capacity: usize,
    listening: AtomicBool,
    queue: Mutex<VecDeque<T>>,
    ready: Condvar,
    dropped: AtomicU64,
}

impl<T> Feed<T> {
    pub fn new(capacity: usize) -> Self {
        Feed {
            capacity,
            listening: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn listening(&self) -> bool {
        self.listening.load(Relaxed)
    }

    /// Queues `item` if someone listens; drops and counts it when the queue is full.
    pub fn push(&self, item: impl FnOnce() -> T) {
        if !self.listening() {
            return;
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.capacity {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        q.push_back(item());
        drop(q);
        self.ready.notify_one();
    }

    /// Starts or stops queueing; stopping discards what is queued and wakes the consumer.
    pub fn set_listening(&self, on: bool) {
        self.listening.store(on, Relaxed);
        if !on {
            self.queue.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        self.ready.notify_all();
    }

    /// Waits up to `timeout` for items and returns all that are queued (possibly none).
    pub fn drain(&self, timeout: Duration) -> Vec<T> {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let (mut q, _) = self
            .ready
            .wait_timeout_while(q, timeout, |q| q.is_empty() && self.listening())
            .unwrap_or_else(|e| e.into_inner());
        q.drain(..).collect()
    }

    /// Wakes a thread blocked in `drain` (used when stopping).
    pub fn wake(&self) {
        self.ready.notify_all();
    }

    /// Items dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_only_while_listening_and_counts_what_it_drops() {
        let feed = Feed::new(100);
        feed.push(|| 1);
        assert!(feed.drain(Duration::ZERO).is_empty());
        feed.set_listening(true);
        for i in 0..110 {
            feed.push(|| i);
        }
        let got = feed.drain(Duration::ZERO);
        assert_eq!(
            got,
            (0..100).collect::<Vec<_>>(),
            "in order, the first ones kept"
        );
        assert_eq!(feed.dropped(), 10);
        feed.set_listening(false);
        feed.push(|| 7);
        assert!(feed.drain(Duration::ZERO).is_empty());
    }
}
