//! Location ranges cached per file version, within a memory budget, shared by all workers.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::ranges::Ranges;
use super::stats::RedactStats;
use super::RedactError;

/// One version of a file's content: any write changes size, mtime or ctime, so ranges cached
/// for an older version are never served for a newer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileVersion {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileVersion {
    /// The version of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileVersion {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
        }
    }
}

/// What one entry costs besides its ranges' heap (map slots, the Arc, the LRU index).
const ENTRY_OVERHEAD: usize = 128;

struct Entry {
    version: FileVersion,
    ranges: Arc<Ranges>,
    cost: usize,
    tick: u64,
}

#[derive(Default)]
struct Inner {
    by_ino: HashMap<u64, Entry>,
    /// Least recently used first.
    lru: BTreeMap<u64, u64>,
    used: usize,
    tick: u64,
}

pub struct RangeCache {
    inner: Mutex<Inner>,
    budget: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl RangeCache {
    /// A cache holding at most `budget_bytes` of entries (least recently used evicted first).
    pub fn new(budget_bytes: usize) -> Self {
        RangeCache {
            inner: Mutex::new(Inner::default()),
            budget: budget_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves a consistent map: keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ranges cached for exactly this version, counting a hit or a miss.
    pub fn get(&self, v: &FileVersion) -> Option<Arc<Ranges>> {
        let mut g = self.lock();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        match inner.by_ino.get_mut(&v.ino) {
            Some(e) if e.version == *v => {
                inner.lru.remove(&e.tick);
                e.tick = tick;
                inner.lru.insert(tick, v.ino);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(Arc::clone(&e.ranges))
            }
            _ => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Caches `ranges` for `v`, replacing any older version of the same inode. Ranges too big
    /// for the whole budget are not cached.
    pub fn insert(&self, v: FileVersion, ranges: Arc<Ranges>) {
        let cost = ENTRY_OVERHEAD + ranges.heap_bytes();
        let mut g = self.lock();
        let inner = &mut *g;
        inner.remove(v.ino);
        if cost > self.budget {
            return;
        }
        while inner.used + cost > self.budget {
            let Some((_, ino)) = inner.lru.pop_first() else {
                break;
            };
            inner.remove(ino);
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.lru.insert(tick, v.ino);
        inner.used += cost;
        inner.by_ino.insert(
            v.ino,
            Entry {
                version: v,
                ranges,
                cost,
                tick,
            },
        );
    }

    /// Forgets the inode (written, truncated or deleted).
    pub fn invalidate(&self, ino: u64) {
        self.lock().remove(ino);
    }

    /// The cached ranges of `v`, or runs `find` (outside the lock), records its time in `stats`
    /// and caches its result. A failed `find` is returned and not cached.
    pub fn get_or_find(
        &self,
        v: FileVersion,
        stats: &RedactStats,
        find: impl FnOnce() -> Result<Ranges, RedactError>,
    ) -> Result<Arc<Ranges>, RedactError> {
        if let Some(r) = self.get(&v) {
            return Ok(r);
        }
        let t = Instant::now();
        let result = find();
        stats.record_find(t.elapsed(), &result);
        let ranges = Arc::new(result?);
        self.insert(v, Arc::clone(&ranges));
        Ok(ranges)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Bytes of the budget in use.
    pub fn used_bytes(&self) -> usize {
        self.lock().used
    }

    pub fn len(&self) -> usize {
        self.lock().by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn remove(&mut self, ino: u64) {
        if let Some(e) = self.by_ino.remove(&ino) {
            self.lru.remove(&e.tick);
            self.used -= e.cost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ino: u64, mtime: i64) -> FileVersion {
        FileVersion {
            ino,
            size: 10,
            mtime_ns: mtime,
            ctime_ns: mtime,
        }
    }

    fn some() -> Ranges {
        crate::redact::find_in_bytes(&crate::redact::tests::jpeg_with_gps(true)).unwrap()
    }

    #[test]
    fn hit_only_for_the_same_version() {
        let c = RangeCache::new(1 << 20);
        let stats = RedactStats::default();
        let r = c.get_or_find(v(1, 5), &stats, || Ok(some())).unwrap();
        assert!(!r.is_empty());
        let again = c
            .get_or_find(v(1, 5), &stats, || panic!("must be cached"))
            .unwrap();
        assert!(Arc::ptr_eq(&r, &again));
        assert!(
            c.get(&v(1, 6)).is_none(),
            "a newer mtime is another version"
        );
        assert_eq!((c.hits(), c.misses()), (1, 2));
        let s = stats.snapshot(&c);
        assert_eq!((s.finder_runs, s.cache_hits), (1, 1));
    }

    #[test]
    fn budget_evicts_least_recently_used() {
        let one = ENTRY_OVERHEAD + some().heap_bytes();
        let c = RangeCache::new(3 * one);
        for ino in 0..3 {
            c.insert(v(ino, 0), Arc::new(some()));
        }
        assert!(c.get(&v(0, 0)).is_some()); // 0 is now the most recent
        c.insert(v(3, 0), Arc::new(some()));
        assert_eq!(c.len(), 3);
        assert!(c.used_bytes() <= 3 * one);
        assert!(c.get(&v(1, 0)).is_none(), "1 was least recently used");
        assert!(c.get(&v(0, 0)).is_some());
        c.invalidate(0);
        assert!(c.get(&v(0, 0)).is_none());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_write_makes_a_new_version() {
        let dir = std::env::temp_dir().join(format!("fusegate-cache-{}", std::process::id()));
        std::fs::write(&dir, b"one").unwrap();
        let before = FileVersion::of(&std::fs::metadata(&dir).unwrap());
        std::fs::write(&dir, b"two!").unwrap();
        let after = FileVersion::of(&std::fs::metadata(&dir).unwrap());
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(before.ino, after.ino);
        assert_ne!(before, after);
    }

    #[test]
    fn failed_find_is_not_cached() {
        let c = RangeCache::new(1 << 20);
        let stats = RedactStats::default();
        let err = c.get_or_find(v(1, 0), &stats, || Err(std::io::Error::other("x").into()));
        assert!(err.is_err());
        assert!(c.is_empty());
        assert_eq!(stats.snapshot(&c).finder_errors, 1);
    }
}
