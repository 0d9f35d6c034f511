//! Kernel cache invalidation from the library (what Java's `invalidate` and policy changes use):
//! the daemon runs in this process, and a test thread (never a daemon thread) uses the mount.

mod common;

use common::{can_mount, TempDir};
use fusegate::{Daemon, Options};
use std::time::Duration;

#[test]
fn invalidate_drops_cached_attributes_and_names() {
    if !can_mount() {
        return;
    }
    fusegate::logging::init();
    let lower = TempDir::lower("lower");
    let mnt = TempDir::new("mnt");
    std::fs::create_dir(lower.path().join("dir")).unwrap();
    std::fs::write(lower.path().join("dir/f"), b"abc").unwrap();
    let options = Options {
        cache_ttl: Duration::from_secs(3600),
        ..Options::default()
    };
    let mut daemon = Daemon::mount(mnt.path(), lower.path(), options).unwrap();
    let f = mnt.path().join("dir/f");
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 3);

    // Changed behind the mount's back: the kernel still has the old size cached.
    std::fs::write(lower.path().join("dir/f"), b"abcdef").unwrap();
    assert_eq!(
        std::fs::metadata(&f).unwrap().len(),
        3,
        "attributes should be cached for an hour"
    );
    daemon.invalidate("dir/f");
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 6);

    // Renamed behind the mount's back: the cached name still resolves until invalidated.
    std::fs::rename(lower.path().join("dir/f"), lower.path().join("dir/g")).unwrap();
    assert!(
        std::fs::metadata(&f).is_ok(),
        "the name should be cached for an hour"
    );
    daemon.invalidate("dir/f");
    assert_eq!(
        std::fs::metadata(&f).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    assert_eq!(std::fs::read(mnt.path().join("dir/g")).unwrap(), b"abcdef");

    let stats = daemon.stats();
    assert!(stats.requests > 0 && stats.nodes > 0, "{stats}");
    daemon.stop();
    assert!(!common::is_mounted(mnt.path()));
    daemon.stop(); // idempotent
}

/// A grant drops the kernel's entry and attributes of that one file (found through the node
/// table's name index, case-insensitively, under the name the kernel knows), and nothing else.
#[test]
fn a_grant_drops_the_caches_of_its_file_only() {
    if !can_mount() {
        return;
    }
    fusegate::logging::init();
    let lower = TempDir::new("lower");
    let mnt = TempDir::new("mnt");
    std::fs::create_dir(lower.path().join("Download")).unwrap();
    for f in ["Doc.pdf", "other.pdf"] {
        std::fs::write(lower.path().join("Download").join(f), b"abc").unwrap();
    }
    let options = Options {
        cache_ttl: Duration::from_secs(3600),
        ..Options::default()
    };
    let mut daemon = Daemon::mount(mnt.path(), lower.path(), options).unwrap();
    let size = |f: &str| {
        std::fs::metadata(mnt.path().join("Download").join(f))
            .unwrap()
            .len()
    };
    assert_eq!((size("Doc.pdf"), size("other.pdf")), (3, 3));

    // Changed behind the mount's back: the kernel still has the old sizes cached.
    for f in ["Doc.pdf", "other.pdf"] {
        std::fs::write(lower.path().join("Download").join(f), b"abcdef").unwrap();
    }
    assert_eq!(
        size("Doc.pdf"),
        3,
        "attributes should be cached for an hour"
    );
    daemon
        .grant(10057, "download/DOC.PDF", fusegate::policy::Access::Read)
        .unwrap();
    assert_eq!(size("Doc.pdf"), 6, "the granted file's caches were dropped");
    assert_eq!(size("other.pdf"), 3, "no other file's caches were dropped");
    daemon.revoke(10057, "Download/other.pdf").unwrap();
    assert_eq!(size("other.pdf"), 6);
    daemon.stop();
}
