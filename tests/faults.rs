//! Faults of the lower filesystem, through a real mount over a loop-mounted ext4 image, seen by
//! an app uid: the errno the app gets, the state after, and that the daemon keeps serving.
//!
//! | fault | the app gets | after |
//! |---|---|---|
//! | ENOSPC (full image) | ENOSPC from write | size = bytes reported written, content exact, fsync 0, space back after unlink |
//! | EROFS (remount ro while serving) | EROFS for create/write-open/unlink/mkdir/rename | reads and listings work; rw again after remount |
//! | EIO (device shrunk under the fs) | EIO from read of lost blocks, EIO from fsync of a write there | other files read intact |
//! | EMFILE in the daemon | EMFILE or ENFILE from open | everything works once the app closes its files |
//! | lower dir renamed/removed | new name works, old ENOENT | no stale confusion, same name reusable |
//! | lower file replaced behind an open | old fd reads old data | the path opens the new file |
//! | a mount inside the lower tree | EXDEV for the mount point and below | files of the two filesystems never confused |
//!
//! Every case also checks that fsync results are honest and that the daemon still serves.
//! The tests share loop devices and fork app processes, so they run one at a time.

mod common;

use common::*;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

/// The app of these tests may touch every file (so files made as root are usable), except
/// where a test needs a plain app (`PLAIN`).
const APP: u32 = 10057;
const PLAIN: u32 = 10058; // may read images, holds no private dir of these tests
const POLICY: &str = r#"
[[app]]
uid = 10057
packages = ["com.example.files"]
permissions = ["manage_external_storage"]

[[app]]
uid = 10058
packages = ["com.example.plain"]
permissions = ["read_images"]
"#;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// An ext4 image on a loop device, mounted on a fresh directory; all undone on drop.
struct Image {
    img: PathBuf,
    dev: String,
    dir: PathBuf,
}

impl Image {
    fn new(tag: &str, mb: u64) -> Image {
        Self::with_options(tag, mb, "errors=continue")
    }

    fn with_options(tag: &str, mb: u64, options: &str) -> Image {
        let base = std::env::var_os("FUSEGATE_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let name = format!("fusegate-fault-{tag}-{}", std::process::id());
        let img = base.join(format!("{name}.img"));
        let dir = base.join(name);
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(mb << 20).unwrap();
        drop(f);
        let img_s = img.to_str().unwrap();
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-b",
                "4096",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                img_s,
            ],
        );
        let dev = run("losetup", &["--find", "--show", img_s])
            .trim()
            .to_string();
        std::fs::create_dir_all(&dir).unwrap();
        let image = Image { img, dev, dir };
        run(
            "mount",
            &["-o", options, &image.dev, image.dir.to_str().unwrap()],
        );
        image
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Remounts the lower filesystem read-only or read-write while the daemon serves it.
    fn remount(&self, read_only: bool) -> Result<(), i32> {
        let flags = libc::MS_REMOUNT | if read_only { libc::MS_RDONLY } else { 0 };
        let dir = cpath(&self.dir);
        // SAFETY: dir is NUL-terminated; the other pointers may be null for a remount.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                dir.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(errno())
        }
    }

    /// Makes ext4 record an error, as on corrupted metadata (with errors=remount-ro it turns
    /// read-only at once, whatever is open, until unmounted).
    fn trigger_error(&self) {
        let dev = Path::new(&self.dev).file_name().unwrap().to_str().unwrap();
        std::fs::write(format!("/sys/fs/ext4/{dev}/trigger_fs_error"), "1").unwrap();
    }

    /// Shrinks the block device to `blocks` 4 KiB blocks: everything above answers EIO, as a
    /// failing disk would.
    fn cut_device(&self, blocks: u64) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.img)
            .unwrap();
        f.set_len(blocks * 4096).unwrap();
        run("losetup", &["-c", &self.dev]);
    }

    /// Physical 4 KiB extents of a lower file: (logical start, physical start, length).
    fn extents(&self, rel: &str) -> Vec<(u64, u64, u64)> {
        let out = run(
            "filefrag",
            &["-v", "-b4096", self.path(rel).to_str().unwrap()],
        );
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split([':', ' ', '.']).filter(|s| !s.is_empty()).collect();
                let n = |i: usize| f.get(i)?.parse::<u64>().ok();
                Some((n(1)?, n(3)?, n(5)?))
            })
            .collect()
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let dir = cpath(&self.dir);
        // SAFETY: dir is NUL-terminated.
        unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) };
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_file(&self.img);
    }
}

/// fusegated over the image; dropped before the image (declare it after).
fn serve(image: &Image, passthrough: bool) -> Mount {
    let options = MountOptions {
        passthrough,
        policy: Some(POLICY.into()),
        // Every lookup reaches the daemon, so changes behind its back are seen at once.
        cache_timeout: Some(0),
        ..Default::default()
    };
    std::fs::create_dir_all(image.path("Download")).unwrap();
    let mnt = TempDir::new("fault-mnt");
    Mount::over(TempDir(image.dir.clone()), mnt, options)
}

fn assert_serving(m: &mut Mount) {
    let child = m.child.as_mut().expect("daemon started");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon died:\n{}",
        m.log_text()
    );
    assert!(is_mounted(m.mnt.path()), "the mount is gone");
}

/// Inside an app process: switch the effective uid to root for an action on the lower
/// filesystem (the saved uid stays 0), then back to the app.
struct AppProc {
    uid: u32,
}

impl AppProc {
    fn root<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: plain id switches; the saved uid is 0, so both are allowed.
        assert_eq!(unsafe { libc::seteuid(0) }, 0, "seteuid(0)");
        let r = f();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::seteuid(self.uid) }, 0, "seteuid(app)");
        r
    }
}

/// Runs `f` in a forked child as app `uid` (real and effective uid/gid, no groups), able to
/// step back to root for lower-filesystem actions with [`AppProc::root`]. A failed assertion
/// inside `f` fails the test with its message.
fn as_app(uid: u32, f: impl FnOnce(&AppProc)) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the tests of this file run one at a time (SERIAL), and glibc's allocator is
    // fork-safe; the child ends with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: id switches in the child; the saved ids stay 0.
            let ok = unsafe {
                libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setresgid(uid, uid, 0) == 0
                    && libc::setresuid(uid, uid, 0) == 0
            };
            assert!(ok, "could not become uid {uid}");
            f(&AppProc { uid });
        }));
        let msg = match outcome {
            Ok(()) => String::new(),
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        };
        let msg = format!("done{msg}");
        // SAFETY: writes our message to the pipe and exits without running destructors.
        unsafe {
            libc::write(fds[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
    }
    // SAFETY: close our copy of the write end.
    unsafe { libc::close(fds[1]) };
    // SAFETY: fds[0] is the read end, ours.
    let mut reader = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
    let mut msg = String::new();
    std::io::Read::read_to_string(&mut reader, &mut msg).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let msg = msg
        .strip_prefix("done")
        .unwrap_or_else(|| panic!("the app process died (status {status}): {msg}"));
    assert!(msg.is_empty(), "as uid {uid}: {msg}");
}

/// One line of figures for the CI log, written straight to stderr (an app process's output is
/// not captured by the test harness, which lives in the parent).
fn note(line: &str) {
    let line = format!("fault: {line}\n");
    // SAFETY: writes our buffer to fd 2.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// Plain syscalls on fds, returning `Err(errno)`.
mod fd {
    use super::*;

    pub fn open(p: &Path, flags: i32) -> Result<i32, i32> {
        sys::open(p, flags, 0o644)
    }

    pub fn pread(fd: i32, len: usize, off: u64) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; len];
        // SAFETY: reads into our buffer of len bytes.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), len, off as i64) };
        if n < 0 {
            return Err(errno());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    pub fn pwrite(fd: i32, data: &[u8], off: u64) -> Result<usize, i32> {
        // SAFETY: writes from our slice.
        let n = unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), off as i64) };
        if n < 0 {
            Err(errno())
        } else {
            Ok(n as usize)
        }
    }

    pub fn write(fd: i32, data: &[u8]) -> Result<usize, i32> {
        // SAFETY: writes from our slice.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            Err(errno())
        } else {
            Ok(n as usize)
        }
    }

    pub fn fsync(fd: i32) -> Result<(), i32> {
        // SAFETY: fsync on our fd.
        if unsafe { libc::fsync(fd) } != 0 {
            Err(errno())
        } else {
            Ok(())
        }
    }

    pub fn read_all(fd: i32) -> Result<Vec<u8>, i32> {
        let mut out = Vec::new();
        loop {
            let chunk = pread(fd, 1 << 16, out.len() as u64)?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }
}

/// A byte pattern that differs per 4 KiB block, so a misplaced block shows.
fn pattern(off: u64, len: usize, seed: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x = off + i;
            ((x / 4096).wrapping_mul(2_654_435_761) ^ seed ^ (x % 4096).wrapping_mul(31)) as u8
        })
        .collect()
}

fn start() -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    can_mount().then_some(guard)
}

/// A full lower filesystem: the app's write fails with ENOSPC, and what was reported written
/// is exactly what is in the file, durably (fsync succeeds). Unlinking gives the space back.
#[test]
fn enospc_reports_exactly_what_was_written() {
    let Some(_serial) = start() else { return };
    for passthrough in [true, false] {
        let image = Image::new("enospc", 24);
        let mut m = serve(&image, passthrough);
        let file = m.path("Download/fill.bin");
        as_app(APP, |_| {
            let fd = fd::open(&file, libc::O_WRONLY | libc::O_CREAT).unwrap();
            let mut written = 0u64;
            let err = loop {
                let chunk = pattern(written, 256 << 10, 7);
                match fd::write(fd, &chunk) {
                    Ok(0) => break 0,
                    Ok(n) => written += n as u64,
                    Err(e) => break e,
                }
            };
            note(&format!(
                "ENOSPC passthrough={passthrough}: {written} bytes written, then errno {err}"
            ));
            assert_eq!(err, libc::ENOSPC, "passthrough={passthrough}: write error");
            assert!(written > 1 << 20, "only {written} bytes fit");
            assert_eq!(fd::fsync(fd), Ok(()), "fsync after ENOSPC");
            sys::close(fd);
            let st = sys::stat(&file).unwrap();
            assert_eq!(st.st_size as u64, written, "size vs bytes reported written");
            let data = sys::read_file(&file).unwrap();
            assert!(
                data == pattern(0, written as usize, 7),
                "content differs from what was written"
            );
            // Space comes back; the daemon serves new writes.
            sys::unlink(&file).unwrap();
            let again = m.path("Download/after.txt");
            sys::write_file(&again, b"after").unwrap();
            assert_eq!(sys::read_file(&again).unwrap(), b"after");
        });
        assert_serving(&mut m);
    }
}

/// ext4 hits an error (errors=remount-ro) while the app writes: it goes read-only at once.
/// Every change is refused with EROFS (the open file's write and fsync too, never success),
/// reading and listing go on, and the daemon keeps serving.
#[test]
fn erofs_when_the_lower_fails_read_only() {
    let Some(_serial) = start() else { return };
    let image = Image::with_options("erofs", 32, "errors=remount-ro");
    let mut m = serve(&image, true);
    let (a, b) = (m.path("Download/a.txt"), m.path("Download/b.txt"));
    as_app(APP, |app| {
        sys::write_file(&a, b"hello").unwrap();
        let fd = fd::open(&m.path("Download/open.txt"), libc::O_WRONLY | libc::O_CREAT).unwrap();
        app.root(|| image.trigger_error());
        let wrote = fd::write(fd, b"after the error").and_then(|_| fd::fsync(fd));
        assert!(
            wrote == Err(libc::EROFS) || wrote == Err(libc::EIO),
            "write+fsync on an fs that went read-only: {wrote:?}"
        );
        sys::close(fd);
        let seen = [
            ("create", sys::write_file(&b, b"x").map(drop)),
            (
                "open for write",
                sys::try_open(&a, libc::O_WRONLY).map(drop),
            ),
            ("truncate", sys::truncate(&a, 0).map(drop)),
            ("unlink", sys::unlink(&a).map(drop)),
            ("mkdir", sys::mkdir(&m.path("Download/d")).map(drop)),
            ("rename", sys::rename(&a, &b).map(drop)),
        ];
        note(&format!(
            "EROFS (ext4 error, remount-ro): held fd {wrote:?}; {seen:?}"
        ));
        assert!(
            seen.iter().all(|(_, got)| *got == Err(libc::EROFS)),
            "every change must fail with EROFS (30): {seen:?}"
        );
        assert_eq!(
            sys::read_file(&a).unwrap(),
            b"hello",
            "read on a read-only lower"
        );
        assert_eq!(
            names(&sys::list(&m.path("Download")).unwrap()),
            ["a.txt", "open.txt"]
        );
    });
    assert_serving(&mut m);
}

/// The administrator remounts the lower read-only while it is served and no app has a file
/// open for writing: that must succeed (the daemon holds no writable lower file of its own),
/// changes then fail with EROFS, and after a read-write remount they work again.
#[test]
fn lower_remounted_read_only_while_serving() {
    let Some(_serial) = start() else { return };
    for passthrough in [false, true] {
        let image = Image::new("remount", 32);
        let mut m = serve(&image, passthrough);
        let (a, b) = (m.path("Download/a.txt"), m.path("Download/b.txt"));
        as_app(APP, |app| {
            sys::write_file(&a, b"hello").unwrap();
            let fd = fd::open(&a, libc::O_RDWR).unwrap();
            assert_eq!(fd::pwrite(fd, b"H", 0), Ok(1));
            sys::close(fd);
            // Every app file is closed now.
            // RELEASE reaches the daemon after close() returns: allow it a moment.
            let ro = app.root(|| {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                loop {
                    match image.remount(true) {
                        Err(libc::EBUSY) if std::time::Instant::now() < deadline => {
                            std::thread::sleep(std::time::Duration::from_millis(20))
                        }
                        other => break other,
                    }
                }
            });
            assert_eq!(ro, Ok(()), "passthrough={passthrough}: remount read-only");
            assert_eq!(sys::write_file(&b, b"x"), Err(libc::EROFS), "create");
            assert_eq!(
                sys::try_open(&a, libc::O_WRONLY),
                Err(libc::EROFS),
                "open for write"
            );
            assert_eq!(sys::read_file(&a).unwrap(), b"Hello");
            app.root(|| image.remount(false)).unwrap();
            sys::write_file(&b, b"again").unwrap();
            assert_eq!(sys::read_file(&b).unwrap(), b"again");
        });
        assert_serving(&mut m);
    }
}

/// The device under the lower filesystem fails (blocks past a point answer EIO): reading the
/// lost blocks gives EIO, a write there is not reported durable (fsync gives EIO), and other
/// files still read intact.
#[test]
fn eio_from_a_failing_device() {
    let Some(_serial) = start() else { return };
    for passthrough in [true, false] {
        let image = Image::new("eio", 64);
        let mut m = serve(&image, passthrough);
        let (small, big) = (m.path("Download/small.bin"), m.path("Download/big.bin"));
        as_app(APP, |_| {
            sys::write_file(&small, &pattern(0, 1 << 20, 1)).unwrap();
            sys::write_file(&big, &pattern(0, 40 << 20, 2)).unwrap();
        });
        // SAFETY: sync has no arguments.
        unsafe { libc::sync() };
        // Cut the device inside the last extent of big.bin: its tail is lost.
        let ext = image.extents("Download/big.bin");
        let &(logical, physical, len) = ext.iter().max_by_key(|e| e.1).expect("extents");
        assert!(len > 64, "last extent too short: {ext:?}");
        let keep = len - 64;
        image.cut_device(physical + keep);
        let lost_at = (logical + keep) * 4096;
        // Drop the lower page cache of big.bin, so reads go to the device.
        let lower = std::fs::File::open(image.path("Download/big.bin")).unwrap();
        // SAFETY: advice on our own fd.
        unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&lower),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        drop(lower);
        as_app(APP, |_| {
            let fd = fd::open(&big, libc::O_RDONLY).unwrap();
            assert_eq!(
                fd::pread(fd, 4096, 0).unwrap(),
                pattern(0, 4096, 2),
                "a block before the damage"
            );
            assert_eq!(
                fd::pread(fd, 4096, lost_at).map(|_| ()),
                Err(libc::EIO),
                "lost block"
            );
            sys::close(fd);
            let fd = fd::open(&big, libc::O_WRONLY).unwrap();
            let wrote = fd::pwrite(fd, &[0x55; 4096], lost_at + 8192);
            let synced = fd::fsync(fd);
            sys::close(fd);
            note(&format!(
                "EIO passthrough={passthrough}: read of a lost block EIO; write {wrote:?}, \
                 fsync {synced:?}"
            ));
            assert!(
                wrote.is_err() || synced == Err(libc::EIO),
                "passthrough={passthrough}: a write to a failed device reported durable \
                 (write {wrote:?}, fsync {synced:?})"
            );
            assert_eq!(sys::read_file(&small).unwrap(), pattern(0, 1 << 20, 1));
            assert!(names(&sys::list(&m.path("Download")).unwrap()).contains(&"big.bin".into()));
        });
        assert_serving(&mut m);
    }
}

/// fsync through the mount puts the data on the device: right after it returns, the blocks
/// are in the image file (what the loop device wrote), with no other sync in between.
#[test]
fn fsync_reaches_the_device() {
    let Some(_serial) = start() else { return };
    for passthrough in [true, false] {
        let image = Image::new("fsync", 32);
        let mut m = serve(&image, passthrough);
        let file = m.path("Download/durable.bin");
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let data = pattern(0, 256 << 10, seed);
        as_app(APP, |_| {
            let fd = fd::open(&file, libc::O_WRONLY | libc::O_CREAT).unwrap();
            assert_eq!(fd::write(fd, &data), Ok(data.len()));
            assert_eq!(fd::fsync(fd), Ok(()));
            sys::close(fd);
        });
        let on_device = std::fs::read(&image.img).unwrap();
        let blocks: std::collections::HashSet<&[u8]> = on_device.chunks(4096).collect();
        let missing = data.chunks(4096).filter(|b| !blocks.contains(b)).count();
        assert_eq!(
            missing, 0,
            "passthrough={passthrough}: {missing} of 64 fsynced blocks not on the device"
        );
        assert_serving(&mut m);
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn set_nofile(pid: u32, limit: u64) -> libc::rlimit {
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit.max(20_000),
    };
    let mut old = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: prlimit on our child daemon with valid pointers.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, old.as_mut_ptr()) };
    assert_eq!(rc, 0, "prlimit: errno {}", errno());
    // SAFETY: prlimit succeeded and filled old.
    unsafe { old.assume_init() }
}

/// The daemon runs out of file descriptors: while the app walks into many directories and
/// holds many files open (the daemon keeps an fd per hot directory, and per open file in
/// userspace mode), a lookup or open fails with EMFILE or ENFILE (never a crash, never a hang),
/// and everything works again once the limit is back and the app closed its files.
#[test]
fn fd_exhaustion_in_the_daemon() {
    let Some(_serial) = start() else { return };
    for passthrough in [true, false] {
        let image = Image::new("emfile", 32);
        for i in 0..100 {
            let d = image.path(&format!("Download/d{i}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("f.txt"), format!("{i}")).unwrap();
        }
        let mut m = serve(&image, passthrough);
        let pid = m.pid();
        let files: Vec<PathBuf> = (0..100)
            .map(|i| m.path(&format!("Download/d{i}/f.txt")))
            .collect();
        let fds_before = open_fds(pid);
        // A few spare fds (the limit bounds fd numbers; the low ones are in use).
        let old = set_nofile(pid, fds_before as u64 + 4);
        let listing = m.path("Download");
        as_app(APP, |_| {
            let mut held = Vec::new();
            let mut failure = None;
            for f in &files {
                match fd::open(f, libc::O_RDONLY) {
                    Ok(fd) => held.push(fd),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            note(&format!(
                "EMFILE passthrough={passthrough}: {} opens held, then {failure:?}",
                held.len()
            ));
            for fd in held {
                sys::close(fd);
            }
            let e = failure.expect("no fd pressure reached");
            assert!(
                e == libc::EMFILE || e == libc::ENFILE,
                "passthrough={passthrough}: open under fd pressure gave errno {e}"
            );
        });
        set_nofile(pid, old.rlim_cur);
        as_app(APP, |_| {
            for (i, f) in files.iter().enumerate() {
                assert_eq!(sys::read_file(f).unwrap(), format!("{i}").into_bytes());
            }
            assert_eq!(names(&sys::list(&listing).unwrap()).len(), 100);
        });
        // What stays open is the cache of hot directories (one per directory walked), not
        // the app's files.
        let fds_after = open_fds(pid);
        assert!(
            fds_after <= fds_before + 100 + 4,
            "the daemon kept fds after the app closed its files: {fds_before} -> {fds_after}"
        );
        assert_serving(&mut m);
    }
}

/// A lower directory is renamed, then removed, while the kernel knows its nodes and the app
/// holds it open: the new name serves the same files, the old name is gone, an fd on the
/// removed directory finds nothing, and a new directory of the same name is a new one.
#[test]
fn lower_directory_renamed_then_removed() {
    let Some(_serial) = start() else { return };
    let image = Image::new("rmdir", 32);
    let mut m = serve(&image, true);
    let mnt = m.path("");
    let lower = image.dir.clone();
    as_app(APP, |app| {
        sys::mkdir(&mnt.join("Download/sub")).unwrap();
        sys::write_file(&mnt.join("Download/sub/f.txt"), b"hello").unwrap();
        let dirfd = fd::open(
            &mnt.join("Download/sub"),
            libc::O_RDONLY | libc::O_DIRECTORY,
        )
        .unwrap();
        app.root(|| {
            std::fs::rename(lower.join("Download/sub"), lower.join("Download/sub2")).unwrap()
        });
        assert_eq!(sys::exists(&mnt.join("Download/sub")), Err(libc::ENOENT));
        assert_eq!(
            sys::read_file(&mnt.join("Download/sub2/f.txt")).unwrap(),
            b"hello"
        );
        let via_fd = PathBuf::from(format!("/proc/self/fd/{dirfd}/f.txt"));
        assert_eq!(
            sys::read_file(&via_fd).unwrap(),
            b"hello",
            "held fd after rename"
        );

        app.root(|| std::fs::remove_dir_all(lower.join("Download/sub2")).unwrap());
        assert_eq!(sys::exists(&mnt.join("Download/sub2")), Err(libc::ENOENT));
        let gone = sys::read_file(&via_fd);
        note(&format!(
            "lower dir removed: held dir fd lookup gives {gone:?}"
        ));
        assert!(
            gone == Err(libc::ENOENT) || gone == Err(libc::ESTALE),
            "held fd on a removed dir: {gone:?}"
        );
        // The same name again is a new directory, and the old fd does not see into it.
        app.root(|| {
            std::fs::create_dir(lower.join("Download/sub")).unwrap();
            std::fs::write(lower.join("Download/sub/f.txt"), "new").unwrap();
        });
        assert_eq!(
            sys::read_file(&mnt.join("Download/sub/f.txt")).unwrap(),
            b"new"
        );
        let old = sys::read_file(&via_fd);
        assert!(
            old != Ok(b"new".to_vec()),
            "the removed dir's fd sees the new dir"
        );
        sys::close(dirfd);
        assert_eq!(names(&sys::list(&mnt.join("Download")).unwrap()), ["sub"]);
    });
    assert_serving(&mut m);
}

/// A lower file is replaced while the app has it open (atomic rename over it, then unlink and
/// re-create, which reuses the inode number on ext4): the open file keeps its data, and the
/// path opens the new file, never an error and never the old data.
#[test]
fn lower_file_replaced_behind_an_open() {
    let Some(_serial) = start() else { return };
    for passthrough in [true, false] {
        let image = Image::new("replace", 32);
        let mut m = serve(&image, passthrough);
        let path = m.path("Download/r.txt");
        let lower = image.path("Download/r.txt");
        let tmp = image.path("Download/r.tmp");
        as_app(APP, |app| {
            sys::write_file(&path, b"old").unwrap();
            let fd = fd::open(&path, libc::O_RDONLY).unwrap();
            app.root(|| {
                std::fs::write(&tmp, "new!").unwrap();
                std::fs::rename(&tmp, &lower).unwrap();
            });
            assert_eq!(
                fd::read_all(fd).unwrap(),
                b"old",
                "pt={passthrough}: open file"
            );
            assert_eq!(
                sys::read_file(&path).unwrap(),
                b"new!",
                "pt={passthrough}: path"
            );

            let fd2 = fd::open(&path, libc::O_RDONLY).unwrap();
            app.root(|| {
                std::fs::remove_file(&lower).unwrap();
                std::fs::write(&lower, "newer").unwrap();
            });
            assert_eq!(
                sys::read_file(&path).unwrap(),
                b"newer",
                "pt={passthrough}: reused"
            );
            assert_eq!(sys::stat(&path).unwrap().st_size, 5);
            assert_eq!(
                fd::read_all(fd2).unwrap(),
                b"new!",
                "pt={passthrough}: 2nd open"
            );
            assert_eq!(fd::read_all(fd).unwrap(), b"old");
            sys::close(fd);
            sys::close(fd2);
            assert_eq!(sys::read_file(&path).unwrap(), b"newer");
        });
        assert_serving(&mut m);
    }
}

/// The lower tree contains other mounts: a tmpfs (whose first file has inode 2, the lower
/// root's inode number) and a bind mount of an app's private directory. The view refuses to
/// cross into them (EXDEV, as an app sees a cross-device boundary), so files of two
/// filesystems are never confused and a bind mount cannot bypass the private-dir rule.
#[test]
fn mounts_inside_the_lower_tree_are_not_crossed() {
    let Some(_serial) = start() else { return };
    let image = Image::new("nested", 32);
    let secret = image.path("Android/data/com.example.secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("p.jpg"), "private").unwrap();
    std::fs::create_dir_all(image.path("Download/inner")).unwrap();
    std::fs::create_dir_all(image.path("Download/bind")).unwrap();
    std::fs::write(image.path("Download/x.txt"), "ext4 file").unwrap();
    let inner = image.path("Download/inner");
    run("mount", &["-t", "tmpfs", "inner", inner.to_str().unwrap()]);
    let _inner = UnmountOnDrop(inner.clone());
    // First file of a fresh tmpfs: inode 2, like the ext4 root.
    std::fs::write(inner.join("a.txt"), "tmpfs file").unwrap();
    let bind = image.path("Download/bind");
    run(
        "mount",
        &["--bind", secret.to_str().unwrap(), bind.to_str().unwrap()],
    );
    let _bind = UnmountOnDrop(bind.clone());

    let mut m = serve(&image, true);
    let mnt = m.path("");
    // Both checks run (and note what they saw) before either failure is raised.
    let plain = catch_unwind(AssertUnwindSafe(|| {
        as_app(PLAIN, |_| {
            let direct = sys::exists(&mnt.join("Android/data/com.example.secret/p.jpg"));
            assert_eq!(direct, Err(libc::ENOENT), "another app's private dir");
            let leak = sys::read_file(&mnt.join("Download/bind/p.jpg"));
            note(&format!(
                "bind mount of a private dir, read by another app: {leak:?}"
            ));
            assert!(
                leak.is_err(),
                "another app's private file via a bind mount: {leak:?}"
            );
        });
    }));
    as_app(APP, |_| {
        let seen: Vec<_> = [
            "Download/inner",
            "Download/inner/a.txt",
            "Download/bind",
            "Download/bind/p.jpg",
        ]
        .iter()
        .map(|p| (p, sys::exists(&mnt.join(p)).map(drop)))
        .collect();
        note(&format!("nested mounts: {seen:?}"));
        assert!(
            seen.iter().all(|(_, got)| *got == Err(libc::EXDEV)),
            "mount points and below must answer EXDEV (18): {seen:?}"
        );
        assert_eq!(
            sys::read_file(&mnt.join("Download/x.txt")).unwrap(),
            b"ext4 file"
        );
        let root = sys::stat(&mnt).unwrap();
        assert_eq!(
            root.st_mode & libc::S_IFMT,
            libc::S_IFDIR,
            "the root is still a dir"
        );
        assert!(names(&sys::list(&mnt).unwrap()).contains(&"Download".into()));
    });
    if let Err(p) = plain {
        std::panic::resume_unwind(p);
    }
    assert_serving(&mut m);
}
