//! Which platform the suite runs on (kernel, page size, lower filesystem), said once uncaptured,
//! and what depends on it: the lower filesystem asked for (FUSEGATE_TEST_EXPECT_LOWER_FS), reads
//! larger than one FUSE request on any page size, and mmap of a passthrough file.

mod common;

use common::{can_mount, lower_base, Mount, MountOptions};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
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

fn errno_name(e: i32) -> String {
    match e {
        0 => "ok".into(),
        libc::EOPNOTSUPP => "EOPNOTSUPP".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::ENOSPC => "ENOSPC".into(),
        libc::E2BIG => "E2BIG".into(),
        libc::ERANGE => "ERANGE".into(),
        libc::ESTALE => "ESTALE".into(),
        other => format!("errno {other}"),
    }
}

/// `struct file_handle` with room for any handle (MAX_HANDLE_SZ is 128).
#[repr(C)]
struct Handle {
    bytes: u32,
    kind: i32,
    f_handle: [u8; 128],
}

fn handle_of(p: &Path) -> Handle {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut h = Handle {
        bytes: 128,
        kind: 0,
        f_handle: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: c is a NUL-terminated path, h has room for 128 handle bytes, mount_id is valid.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c.as_ptr(),
            &mut h as *mut Handle,
            &mut mount_id as *mut libc::c_int,
            0,
        )
    };
    assert_eq!(r, 0, "name_to_handle_at {p:?}: errno {}", common::errno());
    h
}

/// 0 if the handle still opens a file, else the errno.
fn open_by_handle(dir: &std::fs::File, h: &Handle) -> i32 {
    match inode_by_handle(dir, h) {
        Ok(_) => 0,
        Err(e) => e,
    }
}

/// The inode number of the file the handle opens, or the errno.
fn inode_by_handle(dir: &std::fs::File, h: &Handle) -> Result<u64, i32> {
    // SAFETY: dir is an open fd on the same filesystem; h is a handle name_to_handle_at filled.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            dir.as_raw_fd(),
            h as *const Handle,
            libc::O_RDONLY,
        )
    };
    if fd < 0 {
        return Err(common::errno());
    }
    // SAFETY: fd was just opened and is ours; from_raw_fd takes it over and closes it.
    let file = unsafe { std::fs::File::from_raw_fd(fd as i32) };
    use std::os::unix::fs::MetadataExt;
    Ok(file.metadata().map(|m| m.ino()).unwrap_or(0))
}

fn set_xattr(p: &Path, name: &std::ffi::CStr, value: &[u8]) -> i32 {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: c and name are NUL-terminated, value is a valid slice.
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        0
    } else {
        common::errno()
    }
}

/// What fusegate leans on that differs between lower filesystems: the file handles (size, type,
/// stability), how big an xattr may be, which fallocate modes exist, whether small files live
/// inline in the inode, and SEEK_HOLE. Said uncaptured for the README's platform notes; what
/// fusegate needs of it is asserted.
#[test]
fn lower_filesystem_facts_are_reported() {
    // SAFETY: geteuid takes no arguments; open_by_handle_at needs CAP_DAC_READ_SEARCH.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: open_by_handle_at needs root");
        return;
    }
    let dir = common::TempDir::lower("facts");
    let d = dir.path();
    let fs = fs_type(d);
    let mut facts = Vec::new();

    // File handles: fusegate keeps one per known inode and reopens by it.
    let p = d.join("f");
    std::fs::write(&p, b"x").unwrap();
    let h = handle_of(&p);
    let dirf = std::fs::File::open(d).unwrap();
    assert_eq!(open_by_handle(&dirf, &h), 0, "a fresh handle must open");
    std::fs::rename(&p, d.join("g")).unwrap();
    let after_rename = open_by_handle(&dirf, &h);
    assert_eq!(after_rename, 0, "a handle must survive a rename");
    std::fs::remove_file(d.join("g")).unwrap();
    std::fs::write(&p, b"y").unwrap();
    let h2 = handle_of(&p);
    // A deleted inode the kernel still caches may open by its handle (f2fs checks no link
    // count, and its eviction can lag the unlink); what must never happen is that the old
    // handle opens the new file.
    let successor = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&p).unwrap().ino()
    };
    let stale = match inode_by_handle(&dirf, &h) {
        Ok(ino) => {
            assert_ne!(
                ino, successor,
                "the handle of a deleted file must not open its successor"
            );
            0
        }
        Err(e) => e,
    };
    facts.push(format!(
        "file handle {} bytes type {:#x} (after rename: {}, after unlink: {}, new file same handle: {})",
        h.bytes,
        h.kind,
        errno_name(after_rename),
        errno_name(stale),
        h2.f_handle[..h2.bytes as usize] == h.f_handle[..h.bytes as usize]
    ));

    // The largest single user.* xattr value, and how many 1 KiB values fit on one inode.
    let x = d.join("x");
    std::fs::write(&x, b"").unwrap();
    let (mut lo, mut hi) = (0usize, 1 << 16);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if set_xattr(&x, c"user.big", &vec![b'v'; mid]) == 0 {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let too_big = set_xattr(&x, c"user.big", &vec![b'v'; lo + 1]);
    let _ = set_xattr(&x, c"user.big", b"");
    let y = d.join("y");
    std::fs::write(&y, b"").unwrap();
    let mut count = 0;
    let mut why = 0;
    while count < 256 {
        let name = CString::new(format!("user.n{count}")).unwrap();
        why = set_xattr(&y, &name, &[b'k'; 1024]);
        if why != 0 {
            break;
        }
        count += 1;
    }
    assert!(
        lo >= 256,
        "the owner xattr needs room; the lower takes only {lo} bytes"
    );
    facts.push(format!(
        "xattr: largest user.* value {lo} bytes (one more: {}), 1 KiB values per inode: {count} (then {})",
        errno_name(too_big),
        errno_name(why)
    ));

    // fallocate modes on a 1 MiB file, at 64 KiB-aligned ranges (any block size divides them).
    let modes: &[(&str, i32)] = &[
        ("plain", 0),
        ("KEEP_SIZE", libc::FALLOC_FL_KEEP_SIZE),
        (
            "PUNCH_HOLE",
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        ),
        ("ZERO_RANGE", libc::FALLOC_FL_ZERO_RANGE),
        ("COLLAPSE_RANGE", libc::FALLOC_FL_COLLAPSE_RANGE),
        ("INSERT_RANGE", libc::FALLOC_FL_INSERT_RANGE),
        ("UNSHARE_RANGE", libc::FALLOC_FL_UNSHARE_RANGE),
    ];
    let mut got = Vec::new();
    for &(name, mode) in modes {
        let f = d.join(format!("fa-{name}"));
        std::fs::write(&f, vec![1u8; 1 << 20]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&f)
            .unwrap();
        // SAFETY: fallocate on our own fd.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), mode, 1 << 16, 1 << 16) };
        got.push(format!(
            "{name} {}",
            errno_name(if r == 0 { 0 } else { common::errno() })
        ));
    }
    facts.push(format!("fallocate: {}", got.join(", ")));

    // A small file: inline in the inode (no data block) or not.
    let small = d.join("small");
    {
        let mut f = std::fs::File::create(&small).unwrap();
        f.write_all(&[b's'; 100]).unwrap();
        f.sync_all().unwrap();
    }
    let md = std::fs::metadata(&small).unwrap();
    use std::os::unix::fs::MetadataExt;
    facts.push(format!(
        "100-byte file: st_blocks {} (0 = inline data), st_blksize {}",
        md.blocks(),
        md.blksize()
    ));

    // SEEK_HOLE on a file with data at 0 and at 1 MiB.
    let sparse = d.join("sparse");
    let f = std::fs::File::create(&sparse).unwrap();
    f.write_all_at(b"a", 0).unwrap();
    f.write_all_at(b"b", 1 << 20).unwrap();
    f.sync_all().unwrap();
    // SAFETY: lseek on our own fd.
    let hole = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_HOLE) };
    // SAFETY: lseek on our own fd.
    let data = unsafe { libc::lseek(f.as_raw_fd(), 1, libc::SEEK_DATA) };
    facts.push(format!(
        "sparse file: SEEK_HOLE from 0 = {hole}, SEEK_DATA from 1 = {data}"
    ));

    let mut err = std::io::stderr().lock();
    for fact in facts {
        let _ = writeln!(
            err,
            "fusegate lower facts ({fs}, page {}): {fact}",
            page_size()
        );
    }
}
