//! One sequence of file operations, run in a plain directory and through the mount: the results
//! (contents, sizes, modes, times, errnos) must be the same, with and without passthrough.

mod common;

use common::{can_mount, Mount, MountOptions, TempDir};
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn err() -> String {
    format!(
        "Err({})",
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    )
}

fn res<T: std::fmt::Debug>(r: std::io::Result<T>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({})", e.raw_os_error().unwrap_or(0)),
    }
}

fn read(p: &Path) -> String {
    res(std::fs::read(p).map(|v| String::from_utf8_lossy(&v).into_owned()))
}

fn lstat(p: &Path) -> Result<libc::stat, String> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: lstat fills st on success.
    if unsafe { libc::lstat(c(p).as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(err());
    }
    // SAFETY: lstat succeeded.
    Ok(unsafe { st.assume_init() })
}

fn meta(p: &Path) -> String {
    match lstat(p) {
        Ok(st) => format!(
            "mode={:o} size={} nlink={}",
            st.st_mode, st.st_size, st.st_nlink
        ),
        Err(e) => e,
    }
}

fn rc(r: i32) -> String {
    if r < 0 {
        err()
    } else {
        format!("Ok({r})")
    }
}

fn open(p: &Path, flags: i32) -> i32 {
    // SAFETY: path is NUL-terminated.
    unsafe { libc::open(c(p).as_ptr(), flags | libc::O_CLOEXEC, 0o644) }
}

fn close(fd: i32) {
    if fd >= 0 {
        // SAFETY: closing an fd we opened.
        unsafe { libc::close(fd) };
    }
}

fn rename2(a: &Path, b: &Path, flags: u32) -> String {
    // SAFETY: both paths NUL-terminated; AT_FDCWD-relative (they are absolute).
    rc(unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            c(a).as_ptr(),
            libc::AT_FDCWD,
            c(b).as_ptr(),
            flags,
        )
    } as i32)
}

fn ls(p: &Path) -> String {
    match std::fs::read_dir(p) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            format!("{v:?}")
        }
        Err(e) => res::<()>(Err(e)),
    }
}

/// The sequence: every step appends one line describing its outcome.
fn run(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let p = |rel: &str| root.join(rel);
    let mut step = |name: &str, v: String| out.push(format!("{name}: {v}"));

    // create, write, read, append
    step("write", res(std::fs::write(p("f"), b"hello")));
    step("read", read(&p("f")));
    let fd = open(&p("f"), libc::O_WRONLY | libc::O_APPEND);
    // SAFETY: writing from a static buffer to our fd.
    step(
        "append",
        rc(unsafe { libc::write(fd, b" world".as_ptr().cast(), 6) } as i32),
    );
    close(fd);
    step("read appended", read(&p("f")));
    step("meta f", meta(&p("f")));
    // O_EXCL and O_TRUNC
    let fd = open(&p("f"), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL);
    step(
        "O_EXCL on existing",
        if fd < 0 { err() } else { "Ok".into() },
    );
    close(fd);
    let fd = open(&p("f"), libc::O_WRONLY | libc::O_TRUNC);
    step("O_TRUNC", meta(&p("f")));
    // SAFETY: as above.
    step(
        "write after trunc",
        rc(unsafe { libc::write(fd, b"abc".as_ptr().cast(), 3) } as i32),
    );
    close(fd);
    step("read after trunc", read(&p("f")));
    // truncate up and down
    // SAFETY: path is NUL-terminated.
    step(
        "truncate 10",
        rc(unsafe { libc::truncate(c(&p("f")).as_ptr(), 10) }),
    );
    step("read truncated", res(std::fs::read(p("f"))));
    // SAFETY: as above.
    step(
        "truncate 2",
        rc(unsafe { libc::truncate(c(&p("f")).as_ptr(), 2) }),
    );
    step("read truncated 2", read(&p("f")));

    // directories and renames
    step("mkdir d1", res(std::fs::create_dir(p("d1"))));
    step("mkdir d2", res(std::fs::create_dir(p("d2"))));
    step("mkdir existing", res(std::fs::create_dir(p("d2"))));
    step("write d1/a", res(std::fs::write(p("d1/a"), b"A")));
    step("write d2/b", res(std::fs::write(p("d2/b"), b"B")));
    step(
        "rename overwrite",
        res(std::fs::rename(p("d1/a"), p("d2/b"))),
    );
    step("ls d1", ls(&p("d1")));
    step("ls d2", ls(&p("d2")));
    step("read d2/b", read(&p("d2/b")));
    step("write d1/c", res(std::fs::write(p("d1/c"), b"C")));
    step(
        "rename noreplace",
        rename2(&p("d1/c"), &p("d2/b"), libc::RENAME_NOREPLACE),
    );
    step(
        "rename noreplace free",
        rename2(&p("d1/c"), &p("d1/c2"), libc::RENAME_NOREPLACE),
    );
    step(
        "rename exchange",
        rename2(&p("d1/c2"), &p("d2/b"), libc::RENAME_EXCHANGE),
    );
    step("read d1/c2", read(&p("d1/c2")));
    step("read d2/b", read(&p("d2/b")));
    step(
        "exchange missing",
        rename2(&p("d1/none"), &p("d2/b"), libc::RENAME_EXCHANGE),
    );
    step("rename across", res(std::fs::rename(p("d1/c2"), p("x"))));
    step("read x", read(&p("x")));
    step("rename dir", res(std::fs::rename(p("d2"), p("d1/d2"))));
    step("read moved", read(&p("d1/d2/b")));
    step("rename missing", res(std::fs::rename(p("nothing"), p("y"))));

    // links
    step("link", res(std::fs::hard_link(p("x"), p("x2"))));
    step("meta x", meta(&p("x")));
    step("read x2", read(&p("x2")));
    step("link existing", res(std::fs::hard_link(p("x"), p("x2"))));
    step("symlink", res(std::os::unix::fs::symlink("x", p("s"))));
    step("readlink", res(std::fs::read_link(p("s"))));
    step("read via symlink", read(&p("s")));
    step(
        "meta s",
        meta(&p("s")).split(' ').next().unwrap_or("").to_string(),
    );
    step("readlink regular", res(std::fs::read_link(p("x"))));
    step("unlink x2", res(std::fs::remove_file(p("x2"))));
    step("meta x after unlink", meta(&p("x")));
    step("unlink missing", res(std::fs::remove_file(p("x2"))));
    step("unlink dir", res(std::fs::remove_file(p("d1"))));

    // rmdir
    step("mkdir e", res(std::fs::create_dir(p("e"))));
    step("write e/f", res(std::fs::write(p("e/f"), b"")));
    step("rmdir non-empty", res(std::fs::remove_dir(p("e"))));
    step("rmdir file", res(std::fs::remove_dir(p("e/f"))));
    step("unlink e/f", res(std::fs::remove_file(p("e/f"))));
    step("rmdir empty", res(std::fs::remove_dir(p("e"))));
    step("rmdir missing", res(std::fs::remove_dir(p("e"))));
    step(
        "open dir for write",
        res(std::fs::OpenOptions::new().write(true).open(p("d1"))),
    );
    step("open missing", res(std::fs::File::open(p("missing"))));

    // readdir of 2,000 entries made through the view: a short first reply and about ten
    // more chunks (`long_listings_with_prefetch_are_complete_and_exact` lists 3,000 made on
    // the lower side; 10,000 creates through the view took minutes in the arm64 guest)
    step("mkdir big", res(std::fs::create_dir(p("big"))));
    for i in 0..2_000 {
        std::fs::File::create(p(&format!("big/entry-{i:05}"))).unwrap();
    }
    let listing = ls(&p("big"));
    step(
        "readdir 2000 count",
        format!("{}", listing.matches("entry-").count()),
    );
    step(
        "readdir 2000 names",
        format!("{:x}", fnv(listing.as_bytes())),
    );
    step(
        "readdir 2000 again",
        format!("{:x}", fnv(ls(&p("big")).as_bytes())),
    );

    // xattrs
    let set = |path: &Path, name: &str, v: &[u8], flags: i32| {
        let n = CString::new(name).unwrap();
        // SAFETY: NUL-terminated path and name; value read for v.len() bytes.
        rc(unsafe {
            libc::setxattr(
                c(path).as_ptr(),
                n.as_ptr(),
                v.as_ptr().cast(),
                v.len(),
                flags,
            )
        })
    };
    let get = |path: &Path, name: &str| {
        let n = CString::new(name).unwrap();
        let mut buf = [0u8; 256];
        // SAFETY: writes at most buf.len() bytes into buf.
        let r = unsafe {
            libc::getxattr(
                c(path).as_ptr(),
                n.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if r < 0 {
            err()
        } else {
            format!("Ok({:?})", String::from_utf8_lossy(&buf[..r as usize]))
        }
    };
    let list = |path: &Path| {
        let mut buf = [0u8; 1024];
        // SAFETY: writes at most buf.len() bytes into buf.
        let r = unsafe { libc::listxattr(c(path).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            return err();
        }
        let mut names: Vec<String> = buf[..r as usize]
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        names.sort();
        format!("{names:?}")
    };
    step("setxattr", set(&p("x"), "user.test", b"value", 0));
    step(
        "setxattr create existing",
        set(&p("x"), "user.test", b"v2", libc::XATTR_CREATE),
    );
    step(
        "setxattr replace missing",
        set(&p("x"), "user.other", b"v2", libc::XATTR_REPLACE),
    );
    step("getxattr", get(&p("x"), "user.test"));
    step("listxattr", list(&p("x")));
    // SAFETY: NUL-terminated strings; the size query writes nothing.
    let size = unsafe {
        libc::getxattr(
            c(&p("x")).as_ptr(),
            c"user.test".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    step("getxattr size", format!("{size}"));
    // SAFETY: NUL-terminated strings.
    step(
        "removexattr",
        rc(unsafe { libc::removexattr(c(&p("x")).as_ptr(), c"user.test".as_ptr()) }),
    );
    step("getxattr removed", get(&p("x"), "user.test"));

    // chmod and times
    // SAFETY: NUL-terminated path.
    step(
        "chmod",
        rc(unsafe { libc::chmod(c(&p("x")).as_ptr(), 0o640) }),
    );
    step("meta chmod", meta(&p("x")));
    // SAFETY: as above.
    step(
        "chmod dir",
        rc(unsafe { libc::chmod(c(&p("d1")).as_ptr(), 0o700) }),
    );
    step("meta dir", meta(&p("d1")));
    let times = [
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 500,
        },
        libc::timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 250_000,
        },
    ];
    // SAFETY: NUL-terminated path, array of two timespecs.
    step(
        "utimensat",
        rc(unsafe { libc::utimensat(libc::AT_FDCWD, c(&p("x")).as_ptr(), times.as_ptr(), 0) }),
    );
    let st = lstat(&p("x")).unwrap();
    step(
        "times",
        format!(
            "{}.{} {}.{}",
            st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec
        ),
    );
    let omit = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: 7,
            tv_nsec: 0,
        },
    ];
    // SAFETY: as above.
    step(
        "utimensat omit",
        rc(unsafe { libc::utimensat(libc::AT_FDCWD, c(&p("x")).as_ptr(), omit.as_ptr(), 0) }),
    );
    let st = lstat(&p("x")).unwrap();
    step(
        "times omit",
        format!(
            "{}.{} {}.{}",
            st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec
        ),
    );

    // fallocate
    let fd = open(&p("fa"), libc::O_RDWR | libc::O_CREAT);
    // SAFETY: fallocate on our fd.
    step(
        "fallocate",
        rc(unsafe { libc::fallocate(fd, 0, 0, 1 << 20) }),
    );
    step("meta fa", meta(&p("fa")));
    // SAFETY: as above.
    step(
        "fallocate keep size",
        rc(unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20) }),
    );
    let st = lstat(&p("fa")).unwrap();
    step(
        "fa blocks",
        format!("size={} blocks={}", st.st_size, st.st_blocks),
    );
    // SAFETY: as above.
    step(
        "punch hole",
        rc(unsafe {
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                65536,
            )
        }),
    );
    close(fd);

    // lseek SEEK_DATA / SEEK_HOLE on a sparse file
    let fd = open(&p("sparse"), libc::O_RDWR | libc::O_CREAT);
    // SAFETY: pwrite from static buffers to our fd.
    unsafe {
        libc::pwrite(fd, b"x".as_ptr().cast(), 1, 0);
        libc::pwrite(fd, b"y".as_ptr().cast(), 1, 4 << 20);
        libc::fsync(fd);
    }
    // SAFETY: lseek on our fd.
    step(
        "seek hole",
        format!("{}", unsafe { libc::lseek(fd, 0, libc::SEEK_HOLE) }),
    );
    // SAFETY: as above.
    step(
        "seek data",
        format!("{}", unsafe { libc::lseek(fd, 8192, libc::SEEK_DATA) }),
    );
    // SAFETY: as above.
    let past = unsafe { libc::lseek(fd, 8 << 20, libc::SEEK_DATA) };
    step(
        "seek data past end",
        if past < 0 { err() } else { past.to_string() },
    );
    close(fd);
    step("meta sparse", meta(&p("sparse")));

    // statfs
    let mut sf = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: statvfs fills sf on success.
    let r = unsafe { libc::statvfs(c(root).as_ptr(), sf.as_mut_ptr()) };
    // SAFETY: read only when statvfs succeeded.
    let sf = unsafe { sf.assume_init() };
    step(
        "statfs",
        if r == 0 {
            format!(
                "bsize={} blocks={} namemax={}",
                sf.f_bsize, sf.f_blocks, sf.f_namemax
            )
        } else {
            err()
        },
    );

    // mmap read and write
    let pattern: Vec<u8> = (0..16384u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(p("m"), &pattern).unwrap();
    let fd = open(&p("m"), libc::O_RDWR);
    // SAFETY: mapping 16 KiB of our fd shared; all accesses stay within the mapping; unmapped below.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            16384,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED);
        let slice = std::slice::from_raw_parts_mut(addr.cast::<u8>(), 16384);
        step("mmap read", format!("{:x}", fnv(slice)));
        slice[100..105].copy_from_slice(b"MMAP!");
        slice[9000] = 0xAA;
        libc::msync(addr, 16384, libc::MS_SYNC);
        libc::munmap(addr, 16384);
    }
    close(fd);
    step(
        "read after mmap write",
        format!("{:x}", fnv(&std::fs::read(p("m")).unwrap())),
    );

    // fifo via mknod
    // SAFETY: NUL-terminated path.
    step(
        "mkfifo",
        rc(unsafe { libc::mkfifo(c(&p("fifo")).as_ptr(), 0o600) }),
    );
    step("meta fifo", meta(&p("fifo")));
    step("final ls", ls(root));
    out
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn conformance(passthrough: bool) {
    if !can_mount() {
        return;
    }
    let reference = TempDir::lower("reference");
    let expected = run(reference.path());
    // xattrs are compared too: the view offers user.* when asked to.
    let mut m = Mount::new(MountOptions {
        passthrough,
        extra: vec!["--xattrs".into(), "user".into()],
        ..Default::default()
    });
    let got = run(&m.path(""));
    if std::env::var_os("FUSEGATE_SHOW").is_some() {
        eprintln!("{}", got.join("\n"));
    }
    let mut diffs = Vec::new();
    for (i, (e, g)) in expected.iter().zip(got.iter()).enumerate() {
        if e != g {
            diffs.push(format!("step {i}:\n  plain dir: {e}\n  mount:     {g}"));
        }
    }
    assert_eq!(expected.len(), got.len());
    assert!(
        diffs.is_empty(),
        "passthrough={passthrough}: {} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    // What was written through the mount is what the lower directory holds.
    assert_eq!(
        std::fs::read(m.lower_path("m")).unwrap(),
        std::fs::read(reference.path().join("m")).unwrap()
    );
    let log = m.log_text();
    if passthrough {
        assert!(log.contains("data path: passthrough"), "{log}");
        // Uncaptured on purpose: the emulator run reports which data path the guest kernel gave.
        let negotiated = log
            .lines()
            .find(|l| l.contains("negotiated"))
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "fusegate: FUSE passthrough active ({})",
            negotiated.trim()
        );
    } else {
        assert!(log.contains("passthrough disabled"), "{log}");
    }
    assert!(m.stop().success());
}

#[test]
fn same_results_as_the_lower_filesystem_with_passthrough() {
    conformance(true);
}

#[test]
fn same_results_as_the_lower_filesystem_without_passthrough() {
    conformance(false);
}

/// By default the view offers no xattrs, as Android's emulated storage: the first request of
/// each kind answers ENOSYS, the kernel remembers it, and every later xattr call by any app
/// gets EOPNOTSUPP without a round trip (so `ls -l` costs no GETXATTR per file).
#[test]
fn no_xattrs_by_default_and_the_kernel_stops_asking() {
    if !can_mount() {
        return;
    }
    let mut m = Mount::new(MountOptions::default());
    std::fs::write(m.lower_path("f"), b"x").unwrap();
    let f = CString::new(m.path("f").as_os_str().as_bytes()).unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..100 {
        // SAFETY: NUL-terminated strings and a buffer of buf.len() bytes.
        let get = unsafe {
            libc::getxattr(
                f.as_ptr(),
                c"security.selinux".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(get, -1);
        assert_eq!(errno(), libc::EOPNOTSUPP);
        // SAFETY: as above.
        let list = unsafe { libc::listxattr(f.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(list, -1);
        assert_eq!(errno(), libc::EOPNOTSUPP);
        // SAFETY: as above; the value is read for 1 byte.
        let set =
            unsafe { libc::setxattr(f.as_ptr(), c"user.x".as_ptr(), b"v".as_ptr().cast(), 1, 0) };
        assert_eq!(set, -1);
        assert_eq!(errno(), libc::EOPNOTSUPP);
    }
    let stats = stop_for_final_stats(&mut m);
    let count = |op: &str| -> u64 {
        stats
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{op}=")))
            .map_or(0, |n| n.trim_end_matches(',').parse().unwrap())
    };
    for op in ["getxattr", "listxattr", "setxattr"] {
        assert_eq!(count(op), 1, "{op} round trips after 100 calls: {stats}");
    }
}

/// Stops the daemon and returns the stats line it logs on the way out.
fn stop_for_final_stats(m: &mut Mount) -> String {
    assert!(m.stop().success());
    let log = m.log_text();
    log.lines()
        .find(|l| l.contains("final stats"))
        .unwrap_or_else(|| panic!("no final stats line:\n{log}"))
        .to_string()
}

/// The number a stats line gives after `label` (e.g. `"; nodes "`).
fn stats_count(stats: &str, label: &str) -> u64 {
    stats
        .split(label)
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in {stats}"))
}

/// Makes the lower directory `dir` with `files` files `f0`, `f1`, ..., file `i` holding
/// `contents(i)`.
fn lower_dir_of(m: &Mount, dir: &str, files: usize, contents: impl Fn(usize) -> Vec<u8>) {
    std::fs::create_dir(m.lower_path(dir)).unwrap();
    for i in 0..files {
        std::fs::write(m.lower_path(&format!("{dir}/f{i}")), contents(i)).unwrap();
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Names in a directory listed through libc's readdir, `rewind_after` entries in (then from
/// the start again, to the end).
fn list_with_rewind(dir: &Path, rewind_after: usize) -> Vec<Vec<u8>> {
    let cdir = c(dir);
    // SAFETY: cdir is NUL-terminated; the DIR is closed below.
    let d = unsafe { libc::opendir(cdir.as_ptr()) };
    assert!(!d.is_null(), "opendir {dir:?}: {}", err());
    let mut names = Vec::new();
    let mut rewound = false;
    loop {
        // SAFETY: d is an open DIR; the entry is valid until the next readdir on it.
        let e = unsafe { libc::readdir(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: d_name of a returned entry is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
        if !rewound && names.len() == rewind_after {
            rewound = true;
            names.clear();
            // SAFETY: d is an open DIR.
            unsafe { libc::rewinddir(d) };
        }
    }
    // SAFETY: d is an open DIR, closed once.
    unsafe { libc::closedir(d) };
    names
}

/// A plain listing (names only, as `ls` or `find -name` read it) looks up only the few
/// entries of the READDIRPLUS reply that starts it: the kernel asks for the rest with READDIR
/// until the caller looks entries up, so a long first PLUS reply would cost a lower lookup
/// and a kernel inode per entry that nobody asked about.
#[test]
fn a_plain_listing_looks_up_only_its_first_entries() {
    if !can_mount() {
        return;
    }
    const FILES: usize = 1000;
    let mut m = Mount::new(MountOptions::default());
    lower_dir_of(&m, "plain", FILES, |_| Vec::new());
    let names = list_with_rewind(&m.path("plain"), usize::MAX);
    assert_eq!(names.len(), FILES, "every entry once");

    let stats = stop_for_final_stats(&mut m);
    let nodes = stats_count(&stats, "; nodes ");
    assert!(
        nodes <= 40,
        "a plain listing of {FILES} entries made {nodes} nodes: {stats}"
    );
    assert!(
        stats.contains("listing prefetch 0 entries"),
        "a plain listing read inodes ahead: {stats}"
    );
}

/// A listing far longer than the prefetch reads ahead (READDIRPLUS chunks, with the lower
/// inodes read ahead by the prefetch thread) gives every entry once, with its own attributes,
/// also after a rewind, and while entries it has not reached yet are removed.
#[test]
fn long_listings_with_prefetch_are_complete_and_exact() {
    if !can_mount() {
        return;
    }
    const FILES: usize = 3000;
    let mut m = Mount::new(MountOptions::default());
    lower_dir_of(&m, "big", FILES, |i| vec![b'x'; i % 97]);
    let size_of = |name: &[u8]| -> usize {
        let i: usize = std::str::from_utf8(&name[1..]).unwrap().parse().unwrap();
        i % 97
    };

    // A first listing with a stat of every entry (what `ls -l` does), rewound on the way.
    let names = list_with_rewind(&m.path("big"), 700);
    let unique: std::collections::BTreeSet<_> = names.iter().cloned().collect();
    assert_eq!(names.len(), FILES, "every entry once");
    assert_eq!(unique.len(), FILES);
    for name in &names {
        let p = m.path("big").join(std::ffi::OsStr::from_bytes(name));
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(md.len() as usize, size_of(name), "{p:?}");
    }

    // Entries removed behind the listing's back, ahead of where it is: the others all come.
    lower_dir_of(&m, "big2", FILES, |i| vec![b'y'; i % 97]);
    let mut seen = std::collections::BTreeSet::new();
    let mut removed = std::collections::BTreeSet::new();
    for (n, e) in std::fs::read_dir(m.path("big2")).unwrap().enumerate() {
        let e = e.unwrap();
        let name = e.file_name().as_bytes().to_vec();
        if n == 100 {
            for i in (0..FILES).step_by(3) {
                let victim = format!("f{i}").into_bytes();
                if !seen.contains(&victim) && victim != name {
                    std::fs::remove_file(m.path("big2").join(format!("f{i}"))).unwrap();
                    removed.insert(victim);
                }
            }
        }
        match e.metadata() {
            Ok(md) => assert_eq!(md.len() as usize, size_of(&name), "{name:?}"),
            Err(e) => assert!(removed.contains(&name), "{name:?}: {e}"),
        }
        assert!(seen.insert(name), "an entry came twice");
    }
    for i in 0..FILES {
        let name = format!("f{i}").into_bytes();
        assert!(
            seen.contains(&name) || removed.contains(&name),
            "f{i} was never listed"
        );
    }

    let stats = stop_for_final_stats(&mut m);
    let prefetched = stats_count(&stats, "listing prefetch ");
    assert!(prefetched > 0, "the listings were read ahead: {stats}");
}
