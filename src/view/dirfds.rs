//! A bounded cache of `O_PATH` fds of directories. A lookup, create or rename in a directory
//! needs an fd of it; reopening it by handle each time costs an `open_by_handle_at` and a
//! `close` per request. Bounded, so the daemon stays far below the open-file limit whatever the
//! size of the tree; least recently used goes first.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

pub const CAPACITY: usize = 256;

#[derive(Default)]
struct Inner {
    slots: HashMap<u64, (Arc<OwnedFd>, u64)>,
    clock: u64,
}

pub struct DirFds {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl DirFds {
    pub fn new(capacity: usize) -> Self {
        DirFds {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, node: u64) -> Option<Arc<OwnedFd>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let slot = inner.slots.get_mut(&node)?;
        slot.1 = now;
        Some(slot.0.clone())
    }

    /// Caches `fd` for `node` (keeping an existing entry if another thread won the race).
    pub fn insert(&self, node: u64, fd: OwnedFd) -> Arc<OwnedFd> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(slot) = inner.slots.get_mut(&node) {
            slot.1 = now;
            return slot.0.clone();
        }
        if inner.slots.len() >= self.capacity {
            if let Some(&oldest) = inner
                .slots
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k)
            {
                inner.slots.remove(&oldest);
            }
        }
        let fd = Arc::new(fd);
        inner.slots.insert(node, (fd.clone(), now));
        fd
    }

    pub fn remove(&self, node: u64) {
        self.lock().slots.remove(&node);
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        std::fs::File::open("/").unwrap().into()
    }

    #[test]
    fn bounded_and_least_recently_used_goes_first() {
        let c = DirFds::new(3);
        for n in 1..=3 {
            c.insert(n, fd());
        }
        assert!(c.get(1).is_some()); // 1 is now the most recent
        c.insert(4, fd());
        assert_eq!(c.count(), 3);
        assert!(c.get(2).is_none(), "2 was the least recently used");
        assert!(c.get(1).is_some() && c.get(3).is_some() && c.get(4).is_some());
        c.remove(3);
        assert!(c.get(3).is_none());
    }

    #[test]
    fn a_racing_insert_keeps_the_first_fd() {
        let c = DirFds::new(4);
        let a = c.insert(7, fd());
        let b = c.insert(7, fd());
        assert!(Arc::ptr_eq(&a, &b));
    }
}
