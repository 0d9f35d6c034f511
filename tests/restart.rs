//! Issue 12 part 1: the FUSE session outlives its server. Under the supervisor (the daemon's
//! default), 8 app processes write, read back, rename, list, make and remove directories,
//! each holding a cwd, an open directory, an open log it appends to and an open file it
//! reads, while the serving process is killed with SIGKILL (or replaced with SIGUSR2) ten
//! times. Every call must succeed (no ENOTCONN, ECONNABORTED or any other errno), every read
//! must return what was written, and at the end the lower tree must hold exactly what each
//! app's own model says (names and checksums of contents). The longest single call is
//! printed: the stall an app sees while a server is replaced.

mod common;

use common::{as_uid, can_mount, Mount, MountOptions};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const APPS: u32 = 8;
/// Servers replaced per test; `FUSEGATE_RESTART_ROUNDS=0` gives the same run undisturbed, to
/// compare its longest call with.
fn disruptions() -> usize {
    std::env::var("FUSEGATE_RESTART_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}
/// Files an app keeps at most; older ones are removed.
const KEEP: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Disruption {
    /// SIGKILL the serving process: a crash.
    Kill,
    /// SIGUSR2 to the supervisor: a planned upgrade.
    Upgrade,
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The bytes of file `k` of app `app`.
fn content(app: u32, k: u64) -> Vec<u8> {
    let len = 1000 + (k as usize * 37 + app as usize * 11) % 9000;
    (0..len)
        .map(|i| (i as u64 ^ k.wrapping_mul(31) ^ (u64::from(app) * 7)) as u8)
        .collect()
}

fn log_line(app: u32, k: u64) -> Vec<u8> {
    format!("app {app} step {k}\n").into_bytes()
}

const FIXED_LEN: usize = 64 * 1024;

fn fixed(app: u32) -> Vec<u8> {
    (0..FIXED_LEN).map(|i| (i / 7) as u8 ^ app as u8).collect()
}

fn c(p: &str) -> CString {
    CString::new(p).unwrap()
}

fn err() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Step tags for failures: `step * 1000 + errno`.
const OPEN_W: i32 = 1;
const WRITE: i32 = 2;
const READ_BACK: i32 = 3;
const MISMATCH: i32 = 4;
const LIST: i32 = 5;
const LOG: i32 = 6;
const PREAD: i32 = 7;
const RENAME: i32 = 8;
const MKDIR: i32 = 9;
const RMDIR: i32 = 10;
const UNLINK: i32 = 11;
const STAT: i32 = 12;
const FSYNC: i32 = 13;
const SETUP: i32 = 14;

fn fail(step: i32, errno: i32) -> i32 {
    step * 1000 + errno
}

fn step_name(code: i32) -> String {
    let names = [
        "?",
        "open",
        "write",
        "read back",
        "content mismatch",
        "list",
        "log append",
        "pread",
        "rename",
        "mkdir",
        "rmdir",
        "unlink",
        "stat",
        "fsync",
        "setup",
    ];
    let (step, errno) = (code / 1000, code % 1000);
    format!(
        "{} failed: {}",
        names.get(step as usize).unwrap_or(&"?"),
        std::io::Error::from_raw_os_error(errno)
    )
}

fn write_all(fd: i32, data: &[u8]) -> Result<(), i32> {
    let mut done = 0;
    while done < data.len() {
        // SAFETY: writes from a live slice to an fd we opened.
        let n = unsafe { libc::write(fd, data[done..].as_ptr().cast(), data.len() - done) };
        if n <= 0 {
            return Err(err());
        }
        done += n as usize;
    }
    Ok(())
}

fn read_all(path: &CString) -> Result<Vec<u8>, i32> {
    // SAFETY: path is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(err());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16384];
    loop {
        // SAFETY: reads into our buffer from our fd.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = err();
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

/// Names in the open directory `fd`, read from its start.
fn list_fd(fd: i32) -> Result<Vec<String>, i32> {
    // SAFETY: lseek on our directory fd.
    if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
        return Err(err());
    }
    let mut names = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: getdents64 writes at most buf.len() bytes into buf.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            return Err(err());
        }
        if n == 0 {
            break;
        }
        let mut pos = 0usize;
        while pos < n as usize {
            let reclen = u16::from_ne_bytes([buf[pos + 16], buf[pos + 17]]) as usize;
            let name = &buf[pos + 19..pos + reclen];
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            let name = String::from_utf8_lossy(&name[..end]).into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
            pos += reclen;
        }
    }
    names.sort();
    Ok(names)
}

/// One app's run, in a process of its own as `uid`, with its cwd in `dir` (on the mount)
/// until `stop` exists. Returns its model: `name checksum` lines, then `#steps N` and
/// `#max_us N` (its longest call).
fn app_run(app: u32, dir: &Path, stop: &Path) -> Result<Vec<u8>, i32> {
    let cdir = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let cstop = CString::new(stop.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain syscalls on NUL-terminated paths.
    unsafe {
        if libc::mkdir(cdir.as_ptr(), 0o755) != 0 && err() != libc::EEXIST {
            return Err(fail(SETUP, err()));
        }
        if libc::chdir(cdir.as_ptr()) != 0 {
            return Err(fail(SETUP, err()));
        }
    }
    // Held for the whole run, across every restart.
    // SAFETY: open of NUL-terminated relative paths (cwd on the mount).
    let dirfd = unsafe { libc::open(c".".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    let logfd = unsafe {
        libc::open(
            c"log".as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
            0o644,
        )
    };
    if dirfd < 0 || logfd < 0 {
        return Err(fail(SETUP, err()));
    }
    let fixed_data = fixed(app);
    // SAFETY: as above.
    let wfd = unsafe {
        libc::open(
            c"fixed".as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    if wfd < 0 {
        return Err(fail(SETUP, err()));
    }
    write_all(wfd, &fixed_data).map_err(|e| fail(SETUP, e))?;
    // SAFETY: closing our fd.
    unsafe { libc::close(wfd) };
    // SAFETY: as above.
    let rfd = unsafe { libc::open(c"fixed".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if rfd < 0 {
        return Err(fail(SETUP, err()));
    }

    // name -> checksum, of the files this app has now.
    let mut files: std::collections::VecDeque<(String, u64)> = Default::default();
    let mut max = Duration::ZERO;
    let mut timed = |started: Instant| {
        max = max.max(started.elapsed());
    };
    let mut k = 0u64;
    loop {
        // SAFETY: stat of a NUL-terminated path into a local buffer.
        let stopped = unsafe {
            let mut st = std::mem::zeroed::<libc::stat>();
            libc::stat(cstop.as_ptr(), &mut st) == 0
        };
        if stopped {
            break;
        }
        let name = format!("f{k}");
        let cname = c(&name);
        let data = content(app, k);

        let t = Instant::now();
        // SAFETY: open of a NUL-terminated relative path.
        let fd = unsafe {
            libc::open(
                cname.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        };
        timed(t);
        if fd < 0 {
            let e = err();
            note(
                stop,
                app,
                &format!("step {k}: open of {name} for writing: errno {e}"),
            );
            return Err(fail(OPEN_W, e));
        }
        let t = Instant::now();
        let w = write_all(fd, &data);
        // SAFETY: closing our fd.
        unsafe { libc::close(fd) };
        timed(t);
        w.map_err(|e| fail(WRITE, e))?;

        let t = Instant::now();
        let back = read_all(&cname).map_err(|e| fail(READ_BACK, e))?;
        timed(t);
        if back != data {
            return Err(fail(MISMATCH, libc::EBADMSG));
        }
        let mut name = name;
        if k % 3 == 1 {
            let renamed = format!("r{k}");
            let t = Instant::now();
            // SAFETY: rename of NUL-terminated relative paths.
            let r = unsafe { libc::rename(cname.as_ptr(), c(&renamed).as_ptr()) };
            timed(t);
            if r != 0 {
                return Err(fail(RENAME, err()));
            }
            name = renamed;
        }
        files.push_back((name, fnv(&data)));
        if files.len() > KEEP {
            let (old, _) = files.pop_front().unwrap();
            let t = Instant::now();
            // SAFETY: unlink of a NUL-terminated relative path.
            let r = unsafe { libc::unlink(c(&old).as_ptr()) };
            timed(t);
            if r != 0 {
                return Err(fail(UNLINK, err()));
            }
        }
        if k % 5 == 2 {
            let t = Instant::now();
            // SAFETY: mkdir/rmdir of a NUL-terminated relative path.
            let r = unsafe { libc::mkdir(c"sub".as_ptr(), 0o755) };
            timed(t);
            if r != 0 {
                return Err(fail(MKDIR, err()));
            }
            let t = Instant::now();
            // SAFETY: as above.
            let r = unsafe { libc::rmdir(c"sub".as_ptr()) };
            timed(t);
            if r != 0 {
                return Err(fail(RMDIR, err()));
            }
        }

        // Through the held fds.
        let t = Instant::now();
        let listed = list_fd(dirfd).map_err(|e| fail(LIST, e))?;
        timed(t);
        let mut want: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        want.extend(["fixed".to_string(), "log".to_string()]);
        want.sort();
        if listed != want {
            note(
                stop,
                app,
                &format!("step {k}: listed {listed:?}, want {want:?}"),
            );
            return Err(fail(LIST, libc::EBADMSG));
        }
        let t = Instant::now();
        write_all(logfd, &log_line(app, k)).map_err(|e| fail(LOG, e))?;
        timed(t);
        let off = (k as usize * 4099) % (FIXED_LEN - 512);
        let mut buf = [0u8; 512];
        let t = Instant::now();
        // SAFETY: pread into a local buffer from our fd.
        let n = unsafe { libc::pread(rfd, buf.as_mut_ptr().cast(), 512, off as libc::off_t) };
        timed(t);
        if n != 512 {
            return Err(fail(PREAD, if n < 0 { err() } else { libc::EIO }));
        }
        if buf[..] != fixed_data[off..off + 512] {
            return Err(fail(MISMATCH, libc::EBADMSG));
        }
        let t = Instant::now();
        // SAFETY: stat of a NUL-terminated path into a local buffer.
        let r = unsafe {
            let mut st = std::mem::zeroed::<libc::stat>();
            libc::fstatat(
                libc::AT_FDCWD,
                c(&files.back().unwrap().0).as_ptr(),
                &mut st,
                0,
            )
        };
        timed(t);
        if r != 0 {
            return Err(fail(STAT, err()));
        }
        if k % 10 == 9 {
            let t = Instant::now();
            // SAFETY: fsync of our fd.
            let r = unsafe { libc::fsync(logfd) };
            timed(t);
            if r != 0 {
                return Err(fail(FSYNC, err()));
            }
        }
        k += 1;
    }
    // SAFETY: closing our fds.
    unsafe {
        libc::close(dirfd);
        libc::close(logfd);
        libc::close(rfd);
    }
    let mut out = String::new();
    for (name, sum) in &files {
        out.push_str(&format!("{name} {sum}\n"));
    }
    out.push_str(&format!("#steps {k}\n#max_us {}\n", max.as_micros()));
    Ok(out.into_bytes())
}

/// Leaves a detail of a failure next to the stop file, for the test's report.
fn note(stop: &Path, app: u32, text: &str) {
    let _ = std::fs::write(stop.with_file_name(format!("app{app}.txt")), text);
}

/// The serving process the supervisor `sup` runs now.
fn server_of(sup: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn wait_for_new_server(sup: u32, old: u32) -> (u32, Duration) {
    let started = Instant::now();
    loop {
        if let Some(pid) = server_of(sup).filter(|&p| p != old) {
            return (pid, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no new server after {old}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Kills the serving process (a crash) and waits for the supervisor's next one.
fn crash_server(m: &Mount) -> u32 {
    let old = server_of(m.pid()).expect("a serving process");
    // SAFETY: SIGKILL to the serving child of our own supervisor.
    unsafe { libc::kill(old as i32, libc::SIGKILL) };
    wait_for_new_server(m.pid(), old).0
}

/// Waits until the daemon has logged `text` `count` times.
fn wait_for_log(m: &Mount, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.log_text().matches(text).count() < count {
        assert!(Instant::now() < deadline, "{}", m.log_text());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until every one of `marks` exists (app processes leave them).
fn wait_for_marks(marks: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marks.iter().all(|m| m.exists()) {
        assert!(Instant::now() < deadline, "no mark from the app: {marks:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// In an app process: waits for the test's mark `go`. Bounded: if the test fails first, the
/// process must not wait forever.
fn wait_for_go(go: &Path) -> Result<(), i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !go.exists() {
        if Instant::now() > deadline {
            return Err(libc::ETIMEDOUT);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// In an app process: opens `p` read-only and closes it; 0, or the errno.
fn open_errno(p: &Path) -> u8 {
    match common::sys::open(p, libc::O_RDONLY, 0) {
        Ok(f) => {
            common::sys::close(f);
            0
        }
        Err(e) => e as u8,
    }
}

/// Steps each app has logged so far, read from the lower tree (each step appends a line).
fn steps_logged(m: &Mount) -> Vec<usize> {
    (0..APPS)
        .map(|i| {
            std::fs::read(m.lower_path(&format!("Download/app{i}/log")))
                .map(|log| log.iter().filter(|&&b| b == b'\n').count())
                .unwrap_or(0)
        })
        .collect()
}

/// Waits until every app has logged more steps than `before`.
fn wait_for_steps_past(m: &Mount, before: &[usize]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = steps_logged(m);
        if now.iter().zip(before).all(|(n, b)| n > b) {
            return;
        }
        // The daemon's log follows from the mount's drop.
        assert!(
            Instant::now() < deadline,
            "apps stalled: steps {now:?}, before {before:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(disruption: Disruption, passthrough: bool) {
    if !can_mount() {
        return;
    }
    let m = Mount::new(MountOptions {
        supervise: true,
        passthrough,
        io_uring: "off".into(),
        threads: 2,
        ..Default::default()
    });
    std::fs::create_dir_all(m.lower_path("Download")).unwrap();
    let stop_dir = common::TempDir::new("restart-stop");
    // SAFETY: chmod of a NUL-terminated path: the apps look for the stop file there, and
    // leave what went wrong.
    unsafe {
        libc::chmod(
            CString::new(stop_dir.path().as_os_str().as_bytes())
                .unwrap()
                .as_ptr(),
            0o777,
        )
    };
    let stop = stop_dir.path().join("stop");
    let sup = m.pid();
    let apps: Vec<_> = (0..APPS)
        .map(|i| {
            let dir: PathBuf = m.path(&format!("Download/app{i}"));
            let stop = stop.clone();
            std::thread::spawn(move || {
                let uid = 10057 + i;
                (uid, as_uid(uid, || app_run(i, &dir, &stop)))
            })
        })
        .collect();

    // Let every app get going (seconds in the arm64 guest), then disrupt.
    wait_for_steps_past(&m, &[0; APPS as usize]);
    let mut takeovers = Vec::new();
    for round in 0..disruptions() {
        let old = server_of(sup).expect("a serving process");
        match disruption {
            // SAFETY: kill with the pid of the supervisor's child (a test-owned process tree).
            Disruption::Kill => unsafe {
                libc::kill(old as i32, libc::SIGKILL);
            },
            Disruption::Upgrade => m.signal(libc::SIGUSR2),
        }
        let (_, took) = wait_for_new_server(sup, old);
        takeovers.push(took);
        std::thread::sleep(Duration::from_millis(200 + (round as u64 * 53) % 100));
    }
    if disruptions() == 0 {
        std::thread::sleep(Duration::from_millis(2500));
    }
    // Every app is served again after the last disruption: each makes a step more.
    wait_for_steps_past(&m, &steps_logged(&m));
    std::fs::write(&stop, b"").unwrap();

    let mut worst = Duration::ZERO;
    let mut steps = 0u64;
    let mut failures = Vec::new();
    for handle in apps {
        let (uid, result) = handle.join().unwrap();
        let i = uid - 10057;
        let text = match result {
            Ok(bytes) => String::from_utf8(bytes).unwrap(),
            Err(code) => {
                let detail = std::fs::read_to_string(stop.with_file_name(format!("app{i}.txt")))
                    .unwrap_or_default();
                failures.push(format!("app {uid}: {} {detail}", step_name(code)));
                continue;
            }
        };
        let mut want: Vec<String> = vec!["fixed".into(), "log".into()];
        let mut app_steps = 0;
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("#steps ") {
                app_steps = n.parse().unwrap();
            } else if let Some(us) = line.strip_prefix("#max_us ") {
                worst = worst.max(Duration::from_micros(us.parse().unwrap()));
            } else {
                let (name, sum) = line.split_once(' ').unwrap();
                let lower = std::fs::read(m.lower_path(&format!("Download/app{i}/{name}")))
                    .unwrap_or_else(|e| panic!("app {uid}: {name} is not on the lower: {e}"));
                assert_eq!(
                    fnv(&lower).to_string(),
                    sum,
                    "app {uid}: {name} on the lower is not what was written"
                );
                want.push(name.to_string());
            }
        }
        steps += app_steps;
        let mut have: Vec<String> = std::fs::read_dir(m.lower_path(&format!("Download/app{i}")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        have.sort();
        want.sort();
        assert_eq!(have, want, "app {uid}: the lower holds other files");
        let log: Vec<u8> = (0..app_steps).flat_map(|k| log_line(i, k)).collect();
        assert_eq!(
            std::fs::read(m.lower_path(&format!("Download/app{i}/log"))).unwrap(),
            log,
            "app {uid}: the log appended through a held fd lost or doubled lines"
        );
        assert_eq!(
            std::fs::read(m.lower_path(&format!("Download/app{i}/fixed"))).unwrap(),
            fixed(i)
        );
    }
    assert!(failures.is_empty(), "{failures:#?}\n{}", m.log_text());
    let log = m.log_text();
    let restarts = log.matches("starting another on the same session").count();
    let upgrades = log.matches("upgrade done").count();
    match disruption {
        Disruption::Kill => assert_eq!(restarts, disruptions(), "{log}"),
        Disruption::Upgrade => assert_eq!(upgrades, disruptions(), "{log}"),
    }
    assert!(steps > 0);
    let slowest = takeovers.iter().max().copied().unwrap_or_default();
    let fixed_up = log.matches("answered from the lower tree").count();
    for line in log
        .lines()
        .filter(|l| l.contains("resent request") || l.contains("handed over"))
    {
        println!("  {line}");
    }
    let tagged = log.matches("made by the previous server").count();
    println!(
        "restart ({disruption:?}, passthrough {passthrough}): {} servers replaced, \
         {APPS} apps, {steps} steps, no error; longest app call {worst:?}; \
         new server seen after at most {slowest:?}; resent requests answered from the lower \
         tree: {fixed_up} ({tagged} creators tagged)",
        disruptions()
    );
}

#[test]
fn apps_see_no_error_when_the_server_is_killed_repeatedly() {
    run(Disruption::Kill, true);
}

#[test]
fn apps_see_no_error_when_the_server_is_killed_without_passthrough() {
    run(Disruption::Kill, false);
}

#[test]
fn apps_see_no_error_across_planned_upgrades() {
    run(Disruption::Upgrade, true);
}

fn supervised() -> Mount {
    Mount::new(MountOptions {
        supervise: true,
        io_uring: "off".into(),
        ..Default::default()
    })
}

fn gone(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) != 0 }
}

#[test]
fn sigterm_to_the_supervisor_unmounts_and_ends_the_server() {
    if !can_mount() {
        return;
    }
    let mut m = supervised();
    std::fs::write(m.path("f"), b"x").unwrap();
    let server = server_of(m.pid()).expect("a serving process");
    let status = m.stop();
    assert!(status.success(), "{status}\n{}", m.log_text());
    assert!(!common::is_mounted(m.mnt.path()), "{}", m.log_text());
    assert!(gone(server), "the server outlived its supervisor");
    assert_eq!(std::fs::read(m.lower_path("f")).unwrap(), b"x");
}

#[test]
fn an_external_unmount_ends_supervisor_and_server() {
    if !can_mount() {
        return;
    }
    let mut m = supervised();
    let server = server_of(m.pid()).expect("a serving process");
    common::force_unmount(m.mnt.path());
    let mut child = m.child.take().unwrap();
    let status = common::wait_timeout(&mut child, Duration::from_secs(20)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the supervisor outlived its mount:\n{}", m.log_text())
    });
    assert!(status.success(), "{status}\n{}", m.log_text());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(server) {
        assert!(Instant::now() < deadline, "the server outlived its mount");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_new_server_takes_over_known_nodes_and_passthrough_files_without_a_lookup() {
    if !can_mount() {
        return;
    }
    let m = supervised();
    std::fs::create_dir_all(m.lower_path("a/b")).unwrap();
    std::fs::write(
        m.lower_path("a/b/long-name-of-more-than-forty-bytes-for-the-record.txt"),
        b"1",
    )
    .unwrap();
    // The kernel now holds node ids for a, a/b and the file; an open passthrough file too.
    let file = m.path("a/b/long-name-of-more-than-forty-bytes-for-the-record.txt");
    let held = std::fs::File::open(&file).unwrap();
    let dir = std::fs::File::open(m.path("a/b")).unwrap();
    for round in 1..=3 {
        crash_server(&m);
        // Each server takes over from the records of the one before (which logs that once
        // its workers run: they may answer first).
        wait_for_log(&m, "INIT already done, skipped", round);
    }
    // Served from the recorded nodes (the kernel does not look these up again: it trusts
    // its cached entries), including the name too long for a record.
    assert_eq!(std::fs::read(&file).unwrap(), b"1");
    let names: Vec<_> = std::fs::read_dir(m.path("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1);
    // SAFETY: fstat of an fd we hold into a local buffer.
    let st = unsafe {
        let mut st = std::mem::zeroed::<libc::stat>();
        assert_eq!(
            libc::fstat(std::os::fd::AsRawFd::as_raw_fd(&dir), &mut st),
            0
        );
        st
    };
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
    let mut again = String::new();
    std::io::Read::read_to_string(&mut &held, &mut again).unwrap();
    assert_eq!(again, "1");
    let log = m.log_text();
    assert_eq!(
        log.matches("1 of 1 long names found again").count(),
        3,
        "{log}"
    );
}

/// A redacted reader's open file outlives its server: the new server never saw that open, and
/// must still give zeros where the photo has location, never the original bytes.
#[test]
fn a_redacted_open_stays_redacted_across_a_restart() {
    if !can_mount() {
        return;
    }
    const READER: u32 = 10057; // read_images, no access_media_location
    let m = Mount::new(MountOptions {
        supervise: true,
        io_uring: "off".into(),
        policy: Some(
            "[[app]]\nuid = 10057\npackages = [\"com.a\"]\npermissions = [\"read_images\"]\n"
                .into(),
        ),
        ..Default::default()
    });
    let photo = common::media::gps_jpeg_bytes(64 * 1024);
    std::fs::create_dir_all(m.lower_path("DCIM")).unwrap();
    std::fs::write(m.lower_path("DCIM/gps.jpg"), &photo).unwrap();
    let flags = common::TempDir::new("restart-redacted");
    // SAFETY: chmod of our own scratch dir, so that the app process can leave a mark in it.
    unsafe { libc::chmod(c(flags.path().to_str().unwrap()).as_ptr(), 0o777) };
    let (ready, go) = (flags.path().join("ready"), flags.path().join("go"));
    std::fs::create_dir_all(m.lower_path("Download")).unwrap();
    let path = m.path("DCIM/gps.jpg");
    let copy = m.path("Download/copy.jpg");
    let len = photo.len();
    let reader = {
        let (ready, go) = (ready.clone(), go.clone());
        std::thread::spawn(move || {
            as_uid(READER, || {
                let fd = common::sys::open(&path, libc::O_RDONLY, 0)?;
                let pread = |fd: i32| -> Vec<u8> {
                    let mut buf = vec![0u8; len];
                    // SAFETY: reads at most len bytes into buf.
                    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), len, 0) };
                    buf.truncate(n.max(0) as usize);
                    buf
                };
                let before = pread(fd);
                std::fs::write(&ready, b"").map_err(|_| -1)?;
                wait_for_go(&go)?;
                let after = pread(fd);
                // copy_file_range from the same handle into the app's own file: the new
                // server must not copy the original bytes below the app's redacted reads.
                let out =
                    common::sys::open(&copy, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644)?;
                let (mut off_in, mut off_out) = (0i64, 0i64);
                while (off_in as usize) < len {
                    // SAFETY: two open fds and offsets in locals.
                    let n = unsafe {
                        libc::copy_file_range(fd, &mut off_in, out, &mut off_out, len, 0)
                    };
                    if n <= 0 {
                        break;
                    }
                }
                common::sys::close(out);
                common::sys::close(fd);
                let copied = common::sys::read_file(&copy)?;
                Ok([before, after, copied].concat())
            })
        })
    };
    wait_for_marks(&[ready]);
    crash_server(&m);
    std::fs::write(&go, b"").unwrap();
    let all = reader.join().unwrap().expect("the reader's calls");
    assert_eq!(
        all.len(),
        3 * len,
        "two reads and a copy of {len} bytes each"
    );
    let (before, rest) = all.split_at(len);
    let (after, copied) = rest.split_at(len);
    assert!(before != &photo[..], "the first server served the location");
    assert!(
        after == before,
        "after the restart the open read {} differing bytes (the original: {})",
        after.iter().zip(before).filter(|(a, b)| a != b).count(),
        after == &photo[..]
    );
    assert!(
        copied == before,
        "copy_file_range after the restart copied {} differing bytes (the original: {})",
        copied.iter().zip(before).filter(|(a, b)| a != b).count(),
        copied == &photo[..]
    );
}

/// Two long names of one file in one directory, readable by different apps: after a takeover
/// each node the kernel holds is judged by its own name, never by its sibling's. The records
/// keep neither name (too long), so the new server finds both in the directory by inode
/// number: the same for both names.
#[test]
fn each_long_name_of_a_linked_file_is_judged_as_itself_after_a_restart() {
    if !can_mount() {
        return;
    }
    const IMAGES: u32 = 10058; // read_images (and location: no redaction in the way)
    const AUDIO: u32 = 10059; // read_audio
    let m = Mount::new(MountOptions {
        supervise: true,
        io_uring: "off".into(),
        policy: Some(format!(
            "[[app]]\nuid = {IMAGES}\npackages = [\"com.images\"]\n\
             permissions = [\"read_images\", \"access_media_location\"]\n\
             [[app]]\nuid = {AUDIO}\npackages = [\"com.audio\"]\npermissions = [\"read_audio\"]\n"
        )),
        ..Default::default()
    });
    const JPG: &str = "Download/holiday-recording-from-the-beach.jpg";
    const MP3: &str = "Download/holiday-recording-from-the-beach.mp3";
    std::fs::create_dir_all(m.lower_path("Download")).unwrap();
    std::fs::write(m.lower_path(JPG), common::media::gps_jpeg_bytes(4096)).unwrap();
    std::fs::hard_link(m.lower_path(JPG), m.lower_path(MP3)).unwrap();
    let flags = common::TempDir::new("restart-linked");
    // SAFETY: chmod of our own scratch dir, so that the app processes can leave marks in it.
    unsafe { libc::chmod(c(flags.path().to_str().unwrap()).as_ptr(), 0o777) };
    let go = flags.path().join("go");
    let apps: Vec<_> = [IMAGES, AUDIO]
        .into_iter()
        .map(|app| {
            let ready = flags.path().join(format!("ready{app}"));
            let go = go.clone();
            let names = [m.path(JPG), m.path(MP3)];
            let thread = std::thread::spawn(move || {
                as_uid(app, || {
                    // O_PATH: a lookup, which the rules allow any app; no open is judged yet.
                    let held = [
                        common::sys::open(&names[0], libc::O_PATH, 0)?,
                        common::sys::open(&names[1], libc::O_PATH, 0)?,
                    ];
                    // Opening through /proc/self/fd reaches the held node id with no lookup:
                    // it is judged by the name the server has for that node.
                    let reopen =
                        |fd: i32| open_errno(&PathBuf::from(format!("/proc/self/fd/{fd}")));
                    let before = held.map(reopen);
                    std::fs::write(&ready, b"").map_err(|_| -1)?;
                    wait_for_go(&go)?;
                    let after = held.map(reopen);
                    Ok([before, after].concat())
                })
            });
            (app, flags.path().join(format!("ready{app}")), thread)
        })
        .collect();
    let marks: Vec<PathBuf> = apps.iter().map(|(_, ready, _)| ready.clone()).collect();
    wait_for_marks(&marks);
    crash_server(&m);
    wait_for_log(&m, "long names found again", 1);
    std::fs::write(&go, b"").unwrap();
    let denied = libc::EACCES as u8;
    for (app, _, thread) in apps {
        let got = thread.join().unwrap().expect("the app's calls");
        // [jpg, mp3] before the restart, then after it: 0 for an open, else its errno.
        let expected = if app == IMAGES {
            [0, denied, 0, denied]
        } else {
            [denied, 0, denied, 0]
        };
        assert_eq!(got, expected, "uid {app}\n{}", m.log_text());
    }
    assert!(
        m.log_text().contains("2 of 2 long names found again"),
        "{}",
        m.log_text()
    );
}

/// A file renamed on the lower filesystem while its name was recorded only as a hash: the new
/// server does not find that hash, but the inode has one name in the directory, so the node
/// the app holds takes it. The app's own file opens again through the held node, under the new
/// name.
#[test]
fn a_file_renamed_behind_the_servers_back_is_found_under_its_new_name() {
    if !can_mount() {
        return;
    }
    const APP: u32 = 10058; // no permissions: only its own files
    let m = Mount::new(MountOptions {
        supervise: true,
        io_uring: "off".into(),
        policy: Some(format!(
            "[[app]]\nuid = {APP}\npackages = [\"com.b\"]\npermissions = []\n"
        )),
        ..Default::default()
    });
    const OLD: &str = "Download/a-document-with-a-long-name.pdf";
    const NEW: &str = "Download/the-same-document-renamed.pdf";
    std::fs::create_dir_all(m.lower_path("Download")).unwrap();
    std::fs::write(m.lower_path(OLD), b"%PDF").unwrap();
    common::sys2::setxattr(&m.lower_path(OLD), "user.fusegate.owner", b"10058:com.b");
    let flags = common::TempDir::new("restart-renamed");
    // SAFETY: chmod of our own scratch dir, so that the app process can leave a mark in it.
    unsafe { libc::chmod(c(flags.path().to_str().unwrap()).as_ptr(), 0o777) };
    let (ready, go) = (flags.path().join("ready"), flags.path().join("go"));
    let (old, new) = (m.path(OLD), m.path(NEW));
    let app = {
        let (ready, go) = (ready.clone(), go.clone());
        std::thread::spawn(move || {
            as_uid(APP, || {
                let held = common::sys::open(&old, libc::O_PATH, 0)?;
                let reopen = PathBuf::from(format!("/proc/self/fd/{held}"));
                let before = open_errno(&reopen);
                std::fs::write(&ready, b"").map_err(|_| -1)?;
                wait_for_go(&go)?;
                Ok(vec![before, open_errno(&reopen), open_errno(&new)])
            })
        })
    };
    wait_for_marks(&[ready]);
    std::fs::rename(m.lower_path(OLD), m.lower_path(NEW)).unwrap();
    crash_server(&m);
    wait_for_log(&m, "long names found again", 1);
    std::fs::write(&go, b"").unwrap();
    let got = app.join().unwrap().expect("the app's calls");
    // The held node before and after, and the new name (ESTALE after, if the node stayed
    // unnamed). The old name may still open until the kernel's entry for it times out, as
    // after any rename behind a FUSE server's back.
    assert_eq!(got, [0, 0, 0], "{}", m.log_text());
    assert!(
        m.log_text().contains("1 of 1 long names found again"),
        "{}",
        m.log_text()
    );
}

/// Memory held by the restart state memfd the process `pid` has open, in KiB (what the
/// file has allocated, seen through `/proc/PID/fd`).
fn state_kib(pid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().contains("fusegate-state"))
        })
        .and_then(|e| std::fs::metadata(e.path()).ok())
        .map_or(0, |md| md.blocks() / 2)
}

/// Records of nodes the kernel forgot give their memory back, the nodes still held keep
/// theirs, and a new server reads them without faulting the freed pages back in.
#[test]
fn forgotten_nodes_give_their_restart_records_back() {
    if !can_mount() {
        return;
    }
    // The server gives back every eighth of its most nodes in forgets (at least 1,024): six
    // periods here. What the last period's forgets freed stays until the next give-back, and
    // node ids interleave the shards, so those records hold pages across the tail of the
    // file: about a quarter of it is left, never half. Few enough files for the arm64 guest.
    const FILES: usize = 6_000;
    const KEPT: usize = 50;
    let m = supervised();
    std::fs::create_dir(m.lower_path("d")).unwrap();
    for i in 0..FILES {
        std::fs::write(m.lower_path(&format!("d/f{i}")), i.to_string()).unwrap();
    }
    for i in 0..FILES {
        std::fs::symlink_metadata(m.path(&format!("d/f{i}"))).unwrap();
    }
    let server = server_of(m.pid()).unwrap();
    let full = state_kib(server);
    // One 48-byte record per node (src/view/recover.rs).
    assert!(full >= (FILES * 48 / 1024) as u64, "{full} KiB of records");
    // Unlinking through the mount makes the kernel forget each node (more than one
    // allocator-trim period of forgets).
    for i in KEPT..FILES {
        std::fs::remove_file(m.path(&format!("d/f{i}"))).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while state_kib(server) > full / 2 {
        assert!(
            Instant::now() < deadline,
            "records still hold {} of {full} KiB",
            state_kib(server)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let next = crash_server(&m);
    wait_for_log(&m, "INIT already done, skipped", 1);
    for i in 0..KEPT {
        assert_eq!(
            std::fs::read_to_string(m.path(&format!("d/f{i}"))).unwrap(),
            i.to_string()
        );
    }
    assert!(
        state_kib(next) < full / 2,
        "the new server's records take {} of {full} KiB again",
        state_kib(next)
    );
}
