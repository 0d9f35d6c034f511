//! Nothing reached through the mount leaves the lower root: not a lower symlink to `/` or
//! `../..`, not a `..` name, not a directory swapped for a symlink while it is being used.

mod common;

use common::{can_mount, Mount, MountOptions, TempDir};
use fusegate::fuse::{Ctx, Filesystem, Name};
use fusegate::policy::{Policy, Table};
use fusegate::view::{StorageView, ViewConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("must fail").raw_os_error().unwrap()
}

#[test]
fn lower_symlinks_that_leave_the_root_are_not_followed() {
    if !can_mount() {
        return;
    }
    let outside = TempDir::new("outside");
    std::fs::write(outside.path().join("secret"), b"OUTSIDE").unwrap();
    let m = Mount::new(MountOptions::default());
    std::fs::create_dir(m.lower_path("d")).unwrap();
    std::fs::write(m.lower_path("file"), b"inside").unwrap();
    std::os::unix::fs::symlink("/", m.lower_path("toroot")).unwrap();
    std::os::unix::fs::symlink("../..", m.lower_path("up")).unwrap();
    std::os::unix::fs::symlink("../../..", m.lower_path("d/up3")).unwrap();
    std::os::unix::fs::symlink(outside.path(), m.lower_path("abs")).unwrap();
    std::os::unix::fs::symlink("../file", m.lower_path("d/ok")).unwrap();

    for link in ["toroot", "up", "d/up3", "abs"] {
        assert_eq!(
            errno_of(std::fs::read_link(m.path(link))),
            libc::EACCES,
            "readlink {link}"
        );
        assert_eq!(
            errno_of(std::fs::metadata(m.path(link))),
            libc::EACCES,
            "follow {link}"
        );
    }
    assert_eq!(errno_of(std::fs::read(m.path("abs/secret"))), libc::EACCES);
    assert_eq!(
        errno_of(std::fs::read(m.path("toroot/etc/passwd"))),
        libc::EACCES
    );
    assert_eq!(errno_of(std::fs::read_dir(m.path("up"))), libc::EACCES);
    // The symlinks themselves are visible as symlinks; an in-tree one works.
    assert!(std::fs::symlink_metadata(m.path("toroot"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(m.path("d/ok")).unwrap(), b"inside");
    // Creating an escaping symlink through the mount is refused and leaves nothing behind.
    for target in ["/etc", "../x", "a/../../b"] {
        assert_eq!(
            errno_of(std::os::unix::fs::symlink(target, m.path("new"))),
            libc::EPERM,
            "{target}"
        );
        assert!(std::fs::symlink_metadata(m.lower_path("new")).is_err());
    }
    std::os::unix::fs::symlink("../file", m.path("d/fine")).unwrap();
    assert_eq!(std::fs::read(m.path("d/fine")).unwrap(), b"inside");
}

#[test]
fn dot_dot_names_and_paths_stay_inside() {
    if !can_mount() {
        return;
    }
    let lower = TempDir::lower("view-lower");
    std::fs::create_dir(lower.path().join("d")).unwrap();
    std::fs::write(lower.path().join("f"), b"x").unwrap();
    let view = StorageView::new(
        lower.path(),
        Arc::new(Policy::new(Table::default())),
        ViewConfig::default(),
    )
    .unwrap();
    let ctx = Ctx {
        unique: 1,
        nodeid: 1,
        uid: 0,
        gid: 0,
        pid: 1,
        opcode: 1,
    };
    // A `..` or `.` name straight from the protocol names nothing.
    for bad in [&b".."[..], b"."] {
        assert_eq!(
            view.lookup(&ctx, 1, Name::new(bad).unwrap()).unwrap_err(),
            libc::ENOENT
        );
    }
    // A '/' can never even form a name.
    assert!(Name::new(b"../f").is_none());
    assert!(Name::new(b"d/../../etc").is_none());
    let d = view.lookup(&ctx, 1, Name::new(b"d").unwrap()).unwrap();
    assert_eq!(
        view.lookup(&ctx, d.nodeid, Name::new(b"..").unwrap())
            .unwrap_err(),
        libc::ENOENT
    );

    // Through a real mount, `..` is resolved by the VFS and stays in the tree.
    let m = Mount::new(MountOptions::default());
    std::fs::create_dir(m.lower_path("a")).unwrap();
    std::fs::write(m.lower_path("top"), b"top").unwrap();
    assert_eq!(std::fs::read(m.path("a/../top")).unwrap(), b"top");
    assert_eq!(
        std::fs::read(
            m.path("a/../../")
                .join(m.mnt.path().file_name().unwrap())
                .join("top")
        )
        .unwrap(),
        b"top"
    );
}

#[test]
fn swapping_a_directory_for_a_symlink_never_leads_outside() {
    if !can_mount() {
        return;
    }
    let outside = TempDir::new("outside");
    std::fs::write(outside.path().join("target"), b"OUTSIDE").unwrap();
    // No kernel caching: every access asks the daemon again, during the swaps.
    let m = Mount::new(MountOptions {
        cache_timeout: Some(0),
        ..Default::default()
    });
    std::fs::create_dir(m.lower_path("race")).unwrap();
    std::fs::write(m.lower_path("race/target"), b"inside").unwrap();
    std::os::unix::fs::symlink(outside.path(), m.lower_path("alt")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (a, b, stop) = (m.lower_path("race"), m.lower_path("alt"), stop.clone());
        std::thread::spawn(move || {
            let ca = std::ffi::CString::new(a.to_str().unwrap()).unwrap();
            let cb = std::ffi::CString::new(b.to_str().unwrap()).unwrap();
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: atomically exchanges two names in the lower directory.
                unsafe {
                    libc::syscall(
                        libc::SYS_renameat2,
                        libc::AT_FDCWD,
                        ca.as_ptr(),
                        libc::AT_FDCWD,
                        cb.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                swaps += 1;
            }
            swaps
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut inside, mut refused) = (0u64, 0u64);
    while Instant::now() < deadline {
        for path in [m.path("race/target"), m.path("alt/target")] {
            match std::fs::read(&path) {
                Ok(data) => {
                    assert_ne!(
                        data, b"OUTSIDE",
                        "read a file outside the lower root through {path:?}"
                    );
                    inside += 1;
                }
                Err(_) => refused += 1,
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(
        swaps > 100 && inside > 0 && refused > 0,
        "race not exercised: swaps {swaps}, inside {inside}, refused {refused}"
    );
}
