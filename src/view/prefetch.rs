//! Prefetch for READDIRPLUS listings: the lower inodes of the entries a listing will reach
//! next are read ahead, on a thread of their own.
//!
//! A first `ls -l` of a large directory is bounded by the lower filesystem reading inodes from
//! disk, one `fstatat` per entry, done by the worker that serves the listing while the app
//! waits. The prefetch thread stats the entries ahead of the worker (up to `AHEAD` of them), so
//! the worker's own lookups find the inodes in the lower's cache and the two CPUs share the
//! work. The thread only stats: it decides nothing, records nothing and answers no one, so a
//! job that is dropped (queue full), late or overtaken changes nothing but the speed.

use super::dirstream::DirStream;
use super::lower;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

/// How far ahead of the entries a listing has served the inodes are read (entries).
const AHEAD: u64 = 1024;
/// A new job is queued when fewer than this many read-ahead entries are left.
const LOW_WATER: u64 = 512;
/// Entries of the first chunk left to the worker: the prefetch starts past them, where the
/// worker will be next rather than where it is now.
const FIRST_CHUNK: u64 = 32;
/// Jobs waiting; each holds one directory fd, so this also bounds the fds prefetch holds.
const QUEUE: usize = 2;

/// How far the prefetch of one listing was asked to go (kept with its stream).
#[derive(Debug, Default)]
pub struct ListingAhead {
    /// The count of the listing's entries (as its stream counts them) the prefetch was asked
    /// to reach.
    asked_until: u64,
}

impl ListingAhead {
    /// The listing was moved somewhere else: what was read ahead says nothing about it.
    pub fn moved(&mut self) {
        *self = ListingAhead::default();
    }
}

struct Job {
    /// A directory fd of its own: it must not share a file position with the listing's.
    dir: OwnedFd,
    /// The listing's position (a getdents cookie) when the job was made.
    from: u64,
    /// Entries past `from` (`.` and `..` included) the worker will reach on its own before the
    /// prefetch could help.
    skip: u64,
    /// Entries to stat after those.
    count: u64,
}

#[derive(Default)]
pub struct Prefetch {
    /// Dropping it (with the view) ends the thread.
    queue: OnceLock<Option<SyncSender<Job>>>,
    pub counts: Arc<PrefetchCounts>,
}

#[derive(Debug, Default)]
pub struct PrefetchCounts {
    /// Entries whose inodes were read ahead.
    pub entries: AtomicU64,
    /// Jobs not queued because the queue was full.
    pub dropped: AtomicU64,
}

impl Prefetch {
    /// Called by a READDIRPLUS past the listing's start (which `dirs::readdir` answers short,
    /// without prefetch) before it serves entries from `from` (the cookie the listing
    /// is at, after `served` entries): queues the next stretch to read ahead when the listing
    /// is close to the end of what was asked before. `dir` is the listing's fd.
    pub fn ahead_of(&self, dir: BorrowedFd<'_>, from: u64, served: u64, ahead: &mut ListingAhead) {
        if served + LOW_WATER < ahead.asked_until {
            return;
        }
        let start = ahead.asked_until.max(served + FIRST_CHUNK);
        let end = served + AHEAD;
        if start >= end {
            return;
        }
        let Some(queue) = self.queue() else {
            return;
        };
        let Ok(dir) = reopen_dir(dir) else {
            return;
        };
        let job = Job {
            dir,
            from,
            skip: start - served,
            count: end - start,
        };
        match queue.try_send(job) {
            Ok(()) => ahead.asked_until = end,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The job queue, with its thread started on first use (`None` if it cannot start).
    fn queue(&self) -> Option<&SyncSender<Job>> {
        self.queue
            .get_or_init(|| {
                let (tx, rx) = sync_channel::<Job>(QUEUE);
                let counts = Arc::clone(&self.counts);
                let spawned = std::thread::Builder::new()
                    .name("fusegate-prefetch".into())
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            let n = run(job);
                            counts.entries.fetch_add(n, Ordering::Relaxed);
                        }
                    });
                match spawned {
                    Ok(_) => Some(tx),
                    Err(e) => {
                        log::warn!("no READDIRPLUS prefetch: cannot start its thread: {e}");
                        None
                    }
                }
            })
            .as_ref()
    }
}

/// Stats the job's entries (counted as the listing's stream counts them, `.` and `..`
/// included, which are not stat'ed); returns how many it stat'ed.
fn run(job: Job) -> u64 {
    let mut stream = DirStream::new(job.dir);
    if stream.seek(job.from).is_err() {
        return 0;
    }
    let mut warmed = 0u64;
    while stream.consumed() < job.skip + job.count {
        let name = match stream.peek() {
            Ok(Some(e)) => e.name.to_vec(),
            _ => break,
        };
        if stream.consumed() >= job.skip && name != b"." && name != b".." {
            if let Ok(c) = lower::cname(&name) {
                let _ = lower::stat_at(stream.fd().as_fd(), &c);
            }
            warmed += 1;
        }
        stream.advance();
    }
    warmed
}

/// A new open file description of the same directory (a `dup` would share its position).
fn reopen_dir(dir: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    // SAFETY: openat of "." relative to a directory fd we borrow; the result is a new fd we own.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c".".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(n: usize) -> (std::path::PathBuf, std::fs::File) {
        let d = std::env::temp_dir().join(format!("fusegate-prefetch-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        for i in 0..n {
            std::fs::write(d.join(format!("f{i}")), b"").unwrap();
        }
        let f = std::fs::File::open(&d).unwrap();
        (d, f)
    }

    #[test]
    fn a_job_stats_the_stretch_past_its_skip() {
        let (d, f) = dir_with(50);
        let job = |skip, count| Job {
            dir: reopen_dir(f.as_fd()).unwrap(),
            from: 0,
            skip,
            count,
        };
        // 52 entries with `.` and `..`, which are counted but not stat'ed.
        let first = run(job(0, 10));
        assert!((8..=10).contains(&first), "{first}");
        assert_eq!(
            first + run(job(10, 100)),
            50,
            "two stretches cover all once"
        );
        assert_eq!(
            run(job(0, 45)) + run(job(45, 10)),
            50,
            "a stretch past 45 stats only the 7 entries left there"
        );
        assert_eq!(run(job(52, 10)), 0);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_listing_asks_ahead_once_per_stretch_and_from_where_the_last_ask_ended() {
        let prefetch = Prefetch::default();
        let (d, f) = dir_with(3000);
        let mut ahead = ListingAhead::default();
        prefetch.ahead_of(f.as_fd(), 0, 0, &mut ahead);
        assert_eq!(ahead.asked_until, AHEAD);
        prefetch.ahead_of(f.as_fd(), 0, 100, &mut ahead);
        assert_eq!(ahead.asked_until, AHEAD, "far from the end of the stretch");
        prefetch.ahead_of(f.as_fd(), 0, 600, &mut ahead);
        assert_eq!(ahead.asked_until, 600 + AHEAD);
        ahead.moved();
        assert_eq!(ahead.asked_until, 0);
        // The thread works through what was queued (or the queue was full and a job dropped).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let counts = &prefetch.counts;
        // The first job's stretch, less `.` and `..` if they fall in it.
        let first = AHEAD - FIRST_CHUNK - 2;
        while counts.entries.load(Ordering::Relaxed) < first && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(counts.entries.load(Ordering::Relaxed) >= first);
        std::fs::remove_dir_all(d).unwrap();
    }
}
