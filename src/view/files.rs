//! Open files and directories, named by the `fh` we hand to the kernel. Passthrough opens hold
//! no fd at all (the kernel has the backing file); userspace opens hold one lower fd each,
//! only while open.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::dirstream::DirStream;
use super::redaction::RedactedView;

#[derive(Debug)]
pub enum OpenFile {
    /// Data flows through the kernel's backing file; we only track the open for RELEASE.
    Passthrough {
        node: u64,
        /// The caller, when the open could write (a file event at its close).
        writer: Option<u32>,
    },
    /// Data is served by us from this lower fd.
    Userspace {
        node: u64,
        fd: OwnedFd,
        writer: Option<u32>,
        /// Set for a reader that must get zeros in the location ranges (opened read-only).
        redact: Option<RedactedView>,
    },
    Dir {
        node: u64,
        stream: Mutex<DirStream>,
        /// Where the listing's READDIRPLUS prefetch stands (locked after `stream`).
        ahead: Mutex<super::prefetch::ListingAhead>,
    },
}

impl OpenFile {
    /// Who opened it for writing, if it was.
    pub fn writer(&self) -> Option<u32> {
        match self {
            OpenFile::Passthrough { writer, .. } | OpenFile::Userspace { writer, .. } => *writer,
            OpenFile::Dir { .. } => None,
        }
    }

    pub fn node(&self) -> u64 {
        match self {
            OpenFile::Passthrough { node, .. }
            | OpenFile::Userspace { node, .. }
            | OpenFile::Dir { node, .. } => *node,
        }
    }
}

const SHARDS: usize = 16;

type Shard = Mutex<HashMap<u64, Arc<OpenFile>>>;

pub struct FileTable {
    next: AtomicU64,
    shards: Box<[Shard]>,
    /// Userspace opens held or being made (each holds a lower fd).
    userspace: AtomicUsize,
}

impl Default for FileTable {
    fn default() -> Self {
        FileTable {
            next: AtomicU64::new(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            userspace: AtomicUsize::new(0),
        }
    }
}

impl FileTable {
    fn shard(&self, fh: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<OpenFile>>> {
        self.shards[fh as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, file: OpenFile) -> u64 {
        let fh = self.next.fetch_add(1, Relaxed);
        self.shard(fh).insert(fh, Arc::new(file));
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Arc<OpenFile>> {
        self.shard(fh).get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<OpenFile>> {
        self.shard(fh).remove(&fh)
    }

    /// Takes one of at most `limit` userspace slots; false when all are taken.
    /// How many userspace opens may hold an fd: `configured`, but never more than three
    /// quarters of the daemon's fd limit as it is now (it can be changed from outside, with
    /// prlimit), so that the rest stays for directories, backing-file registration and the
    /// channel, and a flood of opens gets ENFILE rather than EMFILE in every other request.
    pub fn userspace_budget(configured: usize) -> usize {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(u64::MAX, |(soft, _)| soft);
        configured.min(usize::try_from(soft / 4 * 3).unwrap_or(usize::MAX))
    }

    pub fn reserve_userspace(&self, limit: usize) -> bool {
        self.userspace
            .fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1))
            .is_ok()
    }

    pub fn unreserve_userspace(&self) {
        let _ = self
            .userspace
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }

    pub fn count(&self) -> usize {
        (0..SHARDS)
            .map(|i| {
                self.shards[i]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .len()
            })
            .sum()
    }
}
