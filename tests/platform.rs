//! Which platform the suite runs on (kernel, page size, lower filesystem), said once uncaptured,
//! and what depends on it: the lower filesystem asked for (FUSEGATE_TEST_EXPECT_LOWER_FS), reads
//! larger than one FUSE request on any page size, and mmap of a passthrough file.

mod common;

use common::{can_mount, lower_base, Mount, MountOptions};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid utsname.
    assert_eq!(unsafe { libc::uname(&mut u) }, 0);
    // SAFETY: uname NUL-terminates release.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory arguments.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// The filesystem type of `p` by its statfs magic, named as `stat -f -c %T` names it.
fn fs_type(p: &Path) -> String {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: statfs is plain old data; statfs fills it.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a NUL-terminated path, s a valid statfs.
    assert_eq!(
        unsafe { libc::statfs(c.as_ptr(), &mut s) },
        0,
        "statfs {p:?}"
    );
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs
    match s.f_type as u64 {
        0xEF53 => "ext2/ext3".into(), // ext4 too: they share the magic
        0xF2F5_2010 => "f2fs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x9123_683E => "btrfs".into(),
        0x5846_5342 => "xfs".into(),
        0x794C_7630 => "overlayfs".into(),
        other => format!("UNKNOWN ({other:#x})"),
    }
}

/// The filesystem the lower directories live on, as FUSEGATE_TEST_EXPECT_LOWER_FS names it.
fn matches_expected(fs: &str, expected: &str) -> bool {
    match expected {
        "ext4" | "ext3" | "ext2" => fs == "ext2/ext3",
        other => fs == other,
    }
}

#[test]
fn platform_is_reported_and_the_lower_is_the_filesystem_asked_for() {
    let base = lower_base();
    std::fs::create_dir_all(&base).unwrap();
    let fs = fs_type(&base);
    let _ = writeln!(
        std::io::stderr(),
        "fusegate platform: uname -r {}, page size {}, lower {} is {fs}",
        kernel_release(),
        page_size(),
        base.display()
    );
    if let Ok(expected) = std::env::var("FUSEGATE_TEST_EXPECT_LOWER_FS") {
        assert!(
            matches_expected(&fs, &expected),
            "the lower base {base:?} is {fs}, not {expected} (was the lower disk mounted?)"
        );
    }
}

/// One read(2) of a regular file returns all it asked for. With O_DIRECT and no passthrough the
/// kernel splits it into READ requests of `max_pages` pages each: if the daemon offered more
/// pages than its buffer holds (256 pages of 16 KiB are 4 MiB), every request comes back short
/// and so does the read.
#[test]
fn a_direct_read_larger_than_one_request_is_whole_without_passthrough() {
    if !can_mount() {
        return;
    }
    const LEN: usize = 4 << 20;
    let m = Mount::new(MountOptions {
        passthrough: false,
        ..Default::default()
    });
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    std::fs::write(m.lower_path("big"), &data).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(m.path("big"))
        .unwrap();
    // O_DIRECT wants an aligned buffer: a fresh mapping is page aligned.
    // SAFETY: anonymous private mapping of LEN bytes, unmapped below.
    let buf = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(buf, libc::MAP_FAILED);
    // SAFETY: buf holds LEN writable bytes.
    let n = unsafe { libc::pread(f.as_raw_fd(), buf, LEN, 0) };
    // SAFETY: n <= LEN bytes of buf were filled.
    let same = n > 0
        && unsafe { std::slice::from_raw_parts(buf as *const u8, n as usize) }
            == &data[..n as usize];
    // SAFETY: buf was mapped above with LEN bytes.
    unsafe { libc::munmap(buf, LEN) };
    assert_eq!(
        n, LEN as isize,
        "one {LEN}-byte O_DIRECT read returned {n} bytes"
    );
    assert!(
        same,
        "the direct read returned other bytes than the file holds"
    );
}

/// mmap of a file opened with passthrough maps the backing file's pages: reads see the lower
/// file, and stores reach it, across several pages of whatever size the kernel uses.
#[test]
fn mmap_through_passthrough_reads_and_writes_the_lower_file() {
    if !can_mount() {
        return;
    }
    let page = page_size();
    let len = 3 * page + page / 2;
    let m = Mount::new(MountOptions::default());
    let data: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
    std::fs::write(m.lower_path("mapped"), &data).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("mapped"))
        .unwrap();
    // SAFETY: a shared mapping of len bytes of f, unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED, "mmap: errno {}", common::errno());
    // SAFETY: the mapping holds len bytes.
    let map = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len) };
    let read_ok = map[..] == data[..];
    // One byte in each page, the last one in the partial page.
    for p in 0..4 {
        map[(p * page + 7).min(len - 1)] = 0xEE;
    }
    // SAFETY: addr/len is the mapping above.
    let synced = unsafe { libc::msync(addr, len, libc::MS_SYNC) };
    // SAFETY: addr/len is the mapping above.
    unsafe { libc::munmap(addr, len) };
    drop(f);
    assert!(
        read_ok,
        "the mapping shows other bytes than the lower file holds"
    );
    assert_eq!(synced, 0, "msync: errno {}", common::errno());
    let lower = std::fs::File::open(m.lower_path("mapped")).unwrap();
    let mut back = vec![0u8; len];
    lower.read_exact_at(&mut back, 0).unwrap();
    let mut want = data;
    for p in 0..4 {
        want[(p * page + 7).min(len - 1)] = 0xEE;
    }
    assert!(
        back == want,
        "stores through the mapping did not reach the lower file"
    );
}
