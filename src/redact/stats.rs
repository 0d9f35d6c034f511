//! Counters of the redaction path, bumped by the storage view and read for the stats line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::cache::RangeCache;
use super::ranges::Ranges;
use super::RedactError;

#[derive(Default, Debug)]
pub struct RedactStats {
    /// Opens served with zeros in the location ranges.
    pub redacted_opens: AtomicU64,
    /// Bytes served as zeros.
    pub bytes_zeroed: AtomicU64,
    /// Finder runs (cache misses that read the file), their total time, and how many had to
    /// redact conservatively or failed to read.
    pub finder_runs: AtomicU64,
    pub finder_nanos: AtomicU64,
    pub finder_conservative: AtomicU64,
    pub finder_errors: AtomicU64,
}

/// A copy of the counters plus the cache's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedactSnapshot {
    pub redacted_opens: u64,
    pub bytes_zeroed: u64,
    pub finder_runs: u64,
    pub finder_nanos: u64,
    pub finder_conservative: u64,
    pub finder_errors: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
}

impl RedactStats {
    pub(crate) fn record_find(&self, took: Duration, result: &Result<Ranges, RedactError>) {
        self.finder_runs.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.finder_nanos.fetch_add(nanos, Ordering::Relaxed);
        match result {
            Ok(r) if r.is_conservative() => {
                self.finder_conservative.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => {
                self.finder_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts one redacted open.
    pub fn opened(&self) {
        self.redacted_opens.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts bytes zeroed by [`super::zero_ranges`].
    pub fn zeroed(&self, bytes: usize) {
        self.bytes_zeroed.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self, cache: &RangeCache) -> RedactSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedactSnapshot {
            redacted_opens: get(&self.redacted_opens),
            bytes_zeroed: get(&self.bytes_zeroed),
            finder_runs: get(&self.finder_runs),
            finder_nanos: get(&self.finder_nanos),
            finder_conservative: get(&self.finder_conservative),
            finder_errors: get(&self.finder_errors),
            cache_hits: cache.hits(),
            cache_misses: cache.misses(),
        }
    }
}
