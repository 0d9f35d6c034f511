//! Shared harness of the integration tests: a real fusegated process mounted over a temporary
//! lower directory, unmounted on drop even when the test fails; and running code as an app uid
//! in a forked child.
#![allow(dead_code)]

pub mod media;

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Whether this machine can run mount tests. Under CI=true a missing prerequisite is a
/// failure, never a silent skip.
pub fn can_mount() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let fuse = Path::new("/dev/fuse").exists();
    if root && fuse {
        return true;
    }
    let why = format!("mount tests need root and /dev/fuse (root: {root}, /dev/fuse: {fuse})");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    false
}

/// The daemon binary: FUSEGATE_BIN if set (e.g. inside an emulator), else the one cargo built.
pub fn daemon_bin() -> PathBuf {
    std::env::var_os("FUSEGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fusegated")))
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory removed on drop.
pub struct TempDir(pub PathBuf);

/// Where lower directories (and what tests compare them with) are made: FUSEGATE_TEST_LOWER_BASE
/// if set (the arm64 guest points it at an ext4 or f2fs disk), else the temp base.
pub fn lower_base() -> PathBuf {
    std::env::var_os("FUSEGATE_TEST_LOWER_BASE")
        .map(PathBuf::from)
        .unwrap_or_else(temp_base)
}

fn temp_base() -> PathBuf {
    std::env::var_os("FUSEGATE_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

impl TempDir {
    /// A scratch directory (mount points, logs, directories outside the lower).
    pub fn new(tag: &str) -> TempDir {
        Self::under(&temp_base(), tag)
    }

    /// A directory on the lower filesystem under test ([`lower_base`]).
    pub fn lower(tag: &str) -> TempDir {
        Self::under(&lower_base(), tag)
    }

    fn under(base: &Path, tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = base.join(format!("fusegate-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let want = canon.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Detaches what is mounted at its path when dropped, so a failing test leaves no mount behind.
pub struct UnmountOnDrop(pub PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            force_unmount(&self.0);
        }
    }
}

/// Lazily detaches whatever is mounted at `path`.
pub fn force_unmount(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a NUL-terminated path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// Plays the platform (vold): opens /dev/fuse (with `flags`) and mounts a FUSE session of it
/// on `mnt`, returning the fd that a daemon is then handed.
pub fn platform_mount(mnt: &Path, flags: i32) -> i32 {
    // SAFETY: plain open of the device; the caller owns the fd.
    let fd = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | flags) };
    assert!(fd >= 0);
    let target = std::ffi::CString::new(mnt.to_str().unwrap()).unwrap();
    let opts = std::ffi::CString::new(format!(
        "fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other"
    ))
    .unwrap();
    // SAFETY: NUL-terminated strings that live across the call.
    let r = unsafe {
        libc::mount(
            c"platform".as_ptr(),
            target.as_ptr(),
            c"fuse.platform".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            opts.as_ptr().cast(),
        )
    };
    assert_eq!(r, 0, "mount: {}", std::io::Error::last_os_error());
    fd
}

#[derive(Clone, Debug)]
pub struct MountOptions {
    pub passthrough: bool,
    pub threads: usize,
    pub policy: Option<String>,
    pub cache_timeout: Option<u64>,
    /// `--io-uring` mode: FUSEGATE_TEST_IO_URING (auto, on, off) if set, else `off`, so that
    /// a suite runs over one known transport; `FUSEGATE_TEST_IO_URING=on cargo test` runs it
    /// over io_uring.
    pub io_uring: String,
    pub extra: Vec<String>,
    /// Run under the supervisor (the daemon's default); the suites run one process
    /// (`--no-supervise`) so that `pid()` is the serving process.
    pub supervise: bool,
}

/// The transport the suites use unless a test asks for one.
pub fn default_io_uring() -> String {
    std::env::var("FUSEGATE_TEST_IO_URING").unwrap_or_else(|_| "off".into())
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            passthrough: true,
            threads: 2,
            policy: None,
            cache_timeout: None,
            io_uring: default_io_uring(),
            extra: vec![],
            supervise: false,
        }
    }
}

/// A running fusegated over `lower`, mounted on `mnt`.
pub struct Mount {
    pub lower: TempDir,
    pub mnt: TempDir,
    pub child: Option<Child>,
    pub log: PathBuf,
    pub policy_file: Option<PathBuf>,
    pub options: MountOptions,
}

impl Mount {
    pub fn new(options: MountOptions) -> Mount {
        let lower = TempDir::lower("lower");
        let mnt = TempDir::new("mnt");
        Self::over(lower, mnt, options)
    }

    /// Mounts over an existing lower dir (e.g. to restart on the same data).
    pub fn over(lower: TempDir, mnt: TempDir, options: MountOptions) -> Mount {
        let log = mnt.path().with_extension("log");
        let mut m = Mount {
            lower,
            mnt,
            child: None,
            log,
            policy_file: None,
            options,
        };
        m.start();
        m
    }

    pub fn start(&mut self) {
        let mut cmd = Command::new(daemon_bin());
        cmd.arg("--lower")
            .arg(self.lower.path())
            .arg("--mount")
            .arg(self.mnt.path());
        cmd.arg("--threads").arg(self.options.threads.to_string());
        if !self.options.passthrough {
            cmd.arg("--no-passthrough");
        }
        cmd.arg("--io-uring").arg(&self.options.io_uring);
        if let Some(t) = self.options.cache_timeout {
            cmd.arg("--cache-timeout").arg(t.to_string());
        }
        if let Some(text) = &self.options.policy {
            let p = self.mnt.path().with_extension("policy.toml");
            std::fs::write(&p, text).unwrap();
            cmd.arg("--policy").arg(&p);
            self.policy_file = Some(p);
        }
        if !self.options.supervise {
            cmd.arg("--no-supervise");
        }
        cmd.args(&self.options.extra);
        let log = std::fs::File::create(&self.log).unwrap();
        cmd.stdout(Stdio::null()).stderr(log).env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("info".into()),
        );
        let mut child = cmd.spawn().expect("spawning fusegated");
        let deadline = Instant::now() + Duration::from_secs(20);
        // Mounted, and served by *this* daemon (not a dead mount it is about to replace).
        while !(is_mounted(self.mnt.path()) && self.log_text().contains("serving")) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "fusegated exited with {status} before mounting:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "fusegated did not mount in time:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.mnt.path().to_path_buf()
        } else {
            self.mnt.path().join(rel)
        }
    }

    pub fn lower_path(&self, rel: &str) -> PathBuf {
        self.lower.path().join(rel)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with a pid of our own child and a valid signal number.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Rewrites the policy file and sends SIGHUP; waits until the daemon logged the reload.
    pub fn reload_policy(&self, text: &str) {
        let p = self.policy_file.as_ref().expect("mounted with a policy");
        std::fs::write(p, text).unwrap();
        let before = self.log_text().matches("policy reloaded").count();
        self.signal(libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log_text().matches("policy reloaded").count() == before {
            assert!(
                Instant::now() < deadline,
                "no reload logged:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's read counter (`rchar` of /proc/<pid>/io): bytes it read with read(2)-like calls.
    pub fn daemon_rchar(&self) -> u64 {
        proc_io_field(self.pid(), "rchar")
    }

    /// SIGTERM, wait for a clean exit (status 0), and check the mount is gone.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        // SAFETY: kill with our child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = wait_timeout(&mut child, Duration::from_secs(20)).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("fusegated did not exit on SIGTERM:\n{}", self.log_text())
        });
        status
    }

    /// Stops the daemon and restarts it on the same lower dir and mount point.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "exit status {status}:\n{}",
            self.log_text()
        );
        self.start();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill with our child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if is_mounted(self.mnt.path()) {
            force_unmount(self.mnt.path());
        }
        if std::thread::panicking() {
            eprintln!("--- fusegated log ---\n{}", self.log_text());
        }
        let _ = std::fs::remove_file(&self.log);
        if let Some(p) = &self.policy_file {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn proc_io_field(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)
                .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/io"))
}

/// The errno of the last failed libc call, as a positive number.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Runs `f` in a forked child with real, effective and saved uid and gid all `uid` and no
/// supplementary groups (like an Android app process). The closure's result (bytes, or an
/// errno) comes back through a pipe. Only plain syscalls should run in `f`.
pub fn as_uid<F: FnOnce() -> Result<Vec<u8>, i32>>(uid: u32, f: F) -> Result<Vec<u8>, i32> {
    as_uid_with(uid, &[], f)
}

/// [`as_uid`] with supplementary groups `groups`.
pub fn as_uid_with<F: FnOnce() -> Result<Vec<u8>, i32>>(
    uid: u32,
    groups: &[libc::gid_t],
    f: F,
) -> Result<Vec<u8>, i32> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe writes two fds into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fork in a test process; the child only makes syscalls and exits with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: in the child: drop groups and switch ids, then run f and report.
        unsafe {
            libc::close(fds[0]);
            let ok = libc::setgroups(groups.len(), groups.as_ptr()) == 0
                && libc::setresgid(uid, uid, uid) == 0
                && libc::setresuid(uid, uid, uid) == 0;
            let result = if ok { f() } else { Err(-1) };
            let mut msg = Vec::new();
            match result {
                Ok(data) => {
                    msg.push(0u8);
                    msg.extend_from_slice(&data);
                }
                Err(e) => {
                    msg.push(1u8);
                    msg.extend_from_slice(&e.to_ne_bytes());
                }
            }
            libc::write(fds[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
    }
    // SAFETY: close our copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut reader = unsafe {
        // SAFETY: fds[0] is the read end we own.
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0])
    };
    let mut buf = Vec::new();
    reader.read_to_end(&mut buf).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        !buf.is_empty(),
        "child as uid {uid} reported nothing (status {status})"
    );
    if buf[0] == 0 {
        Ok(buf[1..].to_vec())
    } else {
        let e = i32::from_ne_bytes(buf[1..5].try_into().unwrap());
        assert_ne!(e, -1, "could not switch to uid {uid}");
        Err(e)
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Syscall wrappers returning `Err(errno)`, safe to use inside `as_uid`.
pub mod sys {
    use super::*;

    pub fn read_file(p: &Path) -> Result<Vec<u8>, i32> {
        let c = cpath(p);
        // SAFETY: c is NUL-terminated.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(errno());
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            // SAFETY: reads into our stack buffer.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = errno();
                // SAFETY: closing our fd.
                unsafe { libc::close(fd) };
                return Err(e);
            }
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        // SAFETY: closing our fd.
        unsafe { libc::close(fd) };
        Ok(out)
    }

    pub fn open(p: &Path, flags: i32, mode: u32) -> Result<i32, i32> {
        let c = cpath(p);
        // SAFETY: c is NUL-terminated.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd < 0 {
            Err(errno())
        } else {
            Ok(fd)
        }
    }

    pub fn close(fd: i32) {
        // SAFETY: closing an fd we opened.
        unsafe { libc::close(fd) };
    }

    /// Opens with `flags` and closes again.
    pub fn try_open(p: &Path, flags: i32) -> Result<Vec<u8>, i32> {
        open(p, flags, 0o644).map(|fd| {
            close(fd);
            Vec::new()
        })
    }

    pub fn write_file(p: &Path, data: &[u8]) -> Result<Vec<u8>, i32> {
        let fd = open(p, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644)?;
        // SAFETY: writes from our slice.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        let e = errno();
        close(fd);
        if n < 0 {
            Err(e)
        } else {
            Ok(Vec::new())
        }
    }

    pub fn stat(p: &Path) -> Result<libc::stat, i32> {
        let c = cpath(p);
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: lstat fills st on success.
        if unsafe { libc::lstat(c.as_ptr(), st.as_mut_ptr()) } != 0 {
            return Err(errno());
        }
        // SAFETY: lstat succeeded.
        Ok(unsafe { st.assume_init() })
    }

    pub fn exists(p: &Path) -> Result<Vec<u8>, i32> {
        stat(p).map(|_| Vec::new())
    }

    pub fn unlink(p: &Path) -> Result<Vec<u8>, i32> {
        let c = cpath(p);
        // SAFETY: c is NUL-terminated.
        if unsafe { libc::unlink(c.as_ptr()) } != 0 {
            return Err(errno());
        }
        Ok(Vec::new())
    }

    pub fn mkdir(p: &Path) -> Result<Vec<u8>, i32> {
        let c = cpath(p);
        // SAFETY: c is NUL-terminated.
        if unsafe { libc::mkdir(c.as_ptr(), 0o755) } != 0 {
            return Err(errno());
        }
        Ok(Vec::new())
    }

    pub fn rmdir(p: &Path) -> Result<Vec<u8>, i32> {
        let c = cpath(p);
        // SAFETY: c is NUL-terminated.
        if unsafe { libc::rmdir(c.as_ptr()) } != 0 {
            return Err(errno());
        }
        Ok(Vec::new())
    }

    pub fn rename(a: &Path, b: &Path) -> Result<Vec<u8>, i32> {
        let (ca, cb) = (cpath(a), cpath(b));
        // SAFETY: both NUL-terminated.
        if unsafe { libc::rename(ca.as_ptr(), cb.as_ptr()) } != 0 {
            return Err(errno());
        }
        Ok(Vec::new())
    }

    pub fn truncate(p: &Path, len: i64) -> Result<Vec<u8>, i32> {
        let c = cpath(p);
        // SAFETY: c is NUL-terminated.
        if unsafe { libc::truncate(c.as_ptr(), len) } != 0 {
            return Err(errno());
        }
        Ok(Vec::new())
    }

    /// Names in a directory (sorted, without . and ..), newline-joined.
    pub fn list(p: &Path) -> Result<Vec<u8>, i32> {
        let c = cpath(p);
        // SAFETY: c is NUL-terminated; the DIR* is closed below.
        let dir = unsafe { libc::opendir(c.as_ptr()) };
        if dir.is_null() {
            return Err(errno());
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        loop {
            // SAFETY: dir is a valid DIR*.
            let ent = unsafe { libc::readdir(dir) };
            if ent.is_null() {
                break;
            }
            // SAFETY: d_name is a NUL-terminated array inside the entry.
            let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) }
                .to_bytes()
                .to_vec();
            if name != b"." && name != b".." {
                names.push(name);
            }
        }
        // SAFETY: closing the DIR* we opened.
        unsafe { libc::closedir(dir) };
        names.sort();
        Ok(names.join(&b'\n'))
    }
}

pub fn names(listing: &[u8]) -> Vec<String> {
    if listing.is_empty() {
        return vec![];
    }
    listing
        .split(|&b| b == b'\n')
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// More syscall wrappers for the soundness tests (issue 9), same conventions as [`sys`].
pub mod sys2 {
    use super::*;

    fn done(r: libc::c_int) -> Result<Vec<u8>, i32> {
        if r != 0 {
            Err(errno())
        } else {
            Ok(Vec::new())
        }
    }

    /// renameat2(2) with `flags` (RENAME_NOREPLACE, RENAME_EXCHANGE).
    pub fn rename2(a: &Path, b: &Path, flags: u32) -> Result<Vec<u8>, i32> {
        let (ca, cb) = (cpath(a), cpath(b));
        // SAFETY: both NUL-terminated; AT_FDCWD with paths.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                flags,
            )
        };
        done(r as libc::c_int)
    }

    pub fn link(a: &Path, b: &Path) -> Result<Vec<u8>, i32> {
        let (ca, cb) = (cpath(a), cpath(b));
        // SAFETY: both NUL-terminated.
        done(unsafe { libc::link(ca.as_ptr(), cb.as_ptr()) })
    }

    pub fn symlink(target: &str, p: &Path) -> Result<Vec<u8>, i32> {
        let ct = CString::new(target).unwrap();
        let cp = cpath(p);
        // SAFETY: both NUL-terminated.
        done(unsafe { libc::symlink(ct.as_ptr(), cp.as_ptr()) })
    }

    pub fn mkfifo(p: &Path) -> Result<Vec<u8>, i32> {
        let c = cpath(p);
        // SAFETY: NUL-terminated.
        done(unsafe { libc::mkfifo(c.as_ptr(), 0o644) })
    }

    pub fn chmod(p: &Path, mode: u32) -> Result<Vec<u8>, i32> {
        let c = cpath(p);
        // SAFETY: NUL-terminated.
        done(unsafe { libc::chmod(c.as_ptr(), mode) })
    }

    pub fn mkdir_mode(p: &Path, mode: u32) -> Result<Vec<u8>, i32> {
        let c = cpath(p);
        // SAFETY: NUL-terminated.
        done(unsafe { libc::mkdir(c.as_ptr(), mode) })
    }

    /// Opens with `flags`, writes `data`, closes; the first failing errno.
    pub fn open_write(p: &Path, flags: i32, data: &[u8]) -> Result<Vec<u8>, i32> {
        let fd = sys::open(p, flags, 0o644)?;
        // SAFETY: writes from our slice.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        let e = errno();
        sys::close(fd);
        if n < 0 {
            Err(e)
        } else {
            Ok(Vec::new())
        }
    }

    /// The mode (st_mode) of a path, not following a symlink.
    pub fn mode(p: &Path) -> Result<u32, i32> {
        sys::stat(p).map(|st| st.st_mode)
    }

    pub fn getxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
        let c = cpath(p);
        let n = CString::new(name).unwrap();
        let mut buf = [0u8; 256];
        // SAFETY: writes at most buf.len() bytes; lgetxattr does not follow a symlink.
        let r =
            unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        (r >= 0).then(|| buf[..r as usize].to_vec())
    }

    pub fn setxattr(p: &Path, name: &str, value: &[u8]) {
        let c = cpath(p);
        let n = CString::new(name).unwrap();
        // SAFETY: NUL-terminated names, value read for its length.
        let r = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(
            r,
            0,
            "setxattr {name} on {}: errno {}",
            p.display(),
            errno()
        );
    }
}

/// Runs a command as root and panics with its output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("running {cmd}: {e}");
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small ext4 image loop-mounted on a temporary directory (used as a lower dir); unmounted
/// and its loop device released on drop.
pub struct Ext4Image {
    pub image: PathBuf,
    pub dir: TempDir,
}

impl Ext4Image {
    /// `size_mib` MiB, `reserved_pct` percent reserved for root (`mkfs.ext4 -m`).
    pub fn new(size_mib: u64, reserved_pct: u32) -> Ext4Image {
        let dir = TempDir::new("ext4");
        let image = dir.path().with_extension("img");
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(size_mib << 20).unwrap();
        drop(f);
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-m",
                &reserved_pct.to_string(),
                image.to_str().unwrap(),
            ],
        );
        run(
            "mount",
            &[
                "-o",
                "loop",
                image.to_str().unwrap(),
                dir.path().to_str().unwrap(),
            ],
        );
        // A fresh ext4 holds lost+found, which the tests do not want to see.
        let _ = std::fs::remove_dir(dir.path().join("lost+found"));
        Ext4Image { image, dir }
    }

    pub fn remount(&self, opts: &str) {
        run(
            "mount",
            &[
                "-o",
                &format!("remount,{opts}"),
                self.dir.path().to_str().unwrap(),
            ],
        );
    }
}

impl Drop for Ext4Image {
    fn drop(&mut self) {
        if is_mounted(self.dir.path()) {
            // A plain umount releases the loop device that `mount -o loop` set up (autoclear).
            let c = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
            // SAFETY: c is a NUL-terminated path.
            if unsafe { libc::umount(c.as_ptr()) } != 0 {
                force_unmount(self.dir.path());
            }
        }
        let _ = std::fs::remove_file(&self.image);
    }
}

/// Runs `f` in a forked child as a plain POSIX user: uid and gid `uid`, supplementary groups
/// `groups` (unlike [`as_uid`], which gives none).
pub fn as_user<F: FnOnce() -> Result<Vec<u8>, i32>>(
    uid: u32,
    groups: &[u32],
    f: F,
) -> Result<Vec<u8>, i32> {
    let groups: Vec<libc::gid_t> = groups.to_vec();
    as_uid_with(uid, &groups, f)
}
