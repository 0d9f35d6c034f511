//! The io_uring transport: chosen when asked for and offered, serving the usual operations and
//! userspace data through its ring buffers, refused clearly when unavailable, and torn down
//! cleanly by SIGTERM, an external unmount and an attached session's stop.
//!
//! The other mount suites run over io_uring with `FUSEGATE_TEST_IO_URING=on`, as
//! scripts/test.sh does when the kernel offers it.

mod common;

use common::{
    can_mount, daemon_bin, force_unmount, is_mounted, platform_mount, wait_timeout, Mount,
    MountOptions, TempDir, UnmountOnDrop,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// Tests here flip the kernel's `enable_uring`; they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The lock, and the parameter's value to put back afterwards (other suites and other users
/// of this machine's FUSE see the setting they had).
struct Enabled {
    before: String,
    _lock: MutexGuard<'static, ()>,
}

impl Drop for Enabled {
    fn drop(&mut self) {
        let _ = std::fs::write(PARAM, &self.before);
    }
}

/// Takes the lock and turns `fuse.enable_uring` on, or says why io_uring cannot be tested: a
/// kernel without FUSE over io_uring (before 6.14, or built without it, as the arm64 guest's
/// 6.12) is a skip; failing to switch it on where it exists is a failure.
fn uring() -> Option<Enabled> {
    if !can_mount() {
        return None;
    }
    let lock = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Ok(before) = std::fs::read_to_string(PARAM) else {
        eprintln!("SKIPPED: this kernel has no FUSE over io_uring ({PARAM} is missing)");
        return None;
    };
    set_enabled(true);
    Some(Enabled {
        before: before.trim().to_string(),
        _lock: lock,
    })
}

fn set_enabled(on: bool) {
    std::fs::write(PARAM, if on { "Y" } else { "N" })
        .unwrap_or_else(|e| panic!("writing {PARAM}: {e}"));
}

fn on() -> MountOptions {
    MountOptions {
        io_uring: "on".into(),
        ..Default::default()
    }
}

fn assert_uring_log(m: &Mount) {
    let log = m.log_text();
    assert!(log.contains("transport: io_uring"), "{log}");
}

/// The essentials of the conformance and data-path suites, as root through the mount:
/// namespace operations with their results checked on the lower tree, listings longer than one
/// READDIRPLUS reply, and data of every size up to several ring payloads.
fn essentials(m: &Mount) {
    let p = |rel: &str| m.path(rel);
    std::fs::create_dir(p("Download")).unwrap();
    std::fs::write(p("Download/a.txt"), b"alpha").unwrap();
    assert_eq!(std::fs::read(p("Download/a.txt")).unwrap(), b"alpha");
    assert_eq!(
        std::fs::read(m.lower_path("Download/a.txt")).unwrap(),
        b"alpha"
    );
    let md = std::fs::metadata(p("Download/a.txt")).unwrap();
    let lower = std::fs::metadata(m.lower_path("Download/a.txt")).unwrap();
    assert_eq!(
        (md.len(), md.ino(), md.mode()),
        (5, lower.ino(), lower.mode())
    );

    std::fs::rename(p("Download/a.txt"), p("Download/b.txt")).unwrap();
    assert!(!m.lower_path("Download/a.txt").exists());
    assert_eq!(
        std::fs::read(p("Download/a.txt"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOENT)
    );
    std::fs::set_permissions(p("Download/b.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        std::fs::metadata(m.lower_path("Download/b.txt"))
            .unwrap()
            .mode()
            & 0o777,
        0o600
    );
    std::os::unix::fs::symlink("b.txt", p("Download/link")).unwrap();
    assert_eq!(
        std::fs::read_link(p("Download/link")).unwrap(),
        std::path::Path::new("b.txt")
    );
    std::fs::remove_file(p("Download/link")).unwrap();
    std::fs::remove_file(p("Download/b.txt")).unwrap();
    assert!(!m.lower_path("Download/b.txt").exists());
    assert_eq!(
        std::fs::remove_dir(p("Download/none"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOENT)
    );

    // A listing of 2,000 entries spans many READDIRPLUS replies through the ring.
    std::fs::create_dir(p("Download/many")).unwrap();
    for i in 0..2000 {
        std::fs::write(m.lower_path(&format!("Download/many/f{i:04}")), b"").unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(p("Download/many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2000);
    assert_eq!(names[1999], "f1999");

    // Data of many sizes, up to 3 MiB: through the ring's payload buffers when not passed
    // through, in WRITE and READ requests of up to 1 MiB.
    for (i, size) in [0usize, 1, 4095, 4096, 65537, 1 << 20, 3 << 20]
        .into_iter()
        .enumerate()
    {
        let data: Vec<u8> = (0..size).map(|j| (j * 7 + i) as u8).collect();
        let name = format!("Download/data{i}");
        std::fs::write(p(&name), &data).unwrap();
        assert_eq!(std::fs::read(m.lower_path(&name)).unwrap(), data, "{size}");
        assert_eq!(std::fs::read(p(&name)).unwrap(), data, "{size}");
    }

    // Requests from every CPU at once: each queue's thread serves its own CPU's callers.
    let root = p("Download");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let f = root.join(format!("t{t}-{i}"));
                    std::fs::write(&f, format!("{t}:{i}")).unwrap();
                    assert_eq!(std::fs::read_to_string(&f).unwrap(), format!("{t}:{i}"));
                    std::fs::remove_file(&f).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn serves_over_io_uring_with_passthrough() {
    let Some(_lock) = uring() else { return };
    let mut m = Mount::new(on());
    assert_uring_log(&m);
    essentials(&m);
    let status = m.stop();
    assert!(status.success(), "{status}:\n{}", m.log_text());
}

#[test]
fn serves_over_io_uring_without_passthrough() {
    let Some(_lock) = uring() else { return };
    let mut m = Mount::new(MountOptions {
        passthrough: false,
        ..on()
    });
    assert_uring_log(&m);
    essentials(&m);
    let status = m.stop();
    assert!(status.success(), "{status}:\n{}", m.log_text());
}

#[test]
fn auto_picks_io_uring_when_offered_and_read_otherwise() {
    let Some(_lock) = uring() else { return };
    let auto = MountOptions {
        io_uring: "auto".into(),
        ..Default::default()
    };
    let mut m = Mount::new(auto.clone());
    assert_uring_log(&m);
    std::fs::write(m.path("x"), b"1").unwrap();
    assert!(m.stop().success());

    set_enabled(false);
    let mut m = Mount::new(auto);
    set_enabled(true);
    let log = m.log_text();
    assert!(log.contains("transport: /dev/fuse read()"), "{log}");
    assert!(log.contains("enable_uring is off"), "{log}");
    std::fs::write(m.path("x"), b"2").unwrap();
    assert_eq!(std::fs::read(m.lower_path("x")).unwrap(), b"2");
    assert!(m.stop().success());

    let mut m = Mount::new(MountOptions {
        io_uring: "off".into(),
        ..Default::default()
    });
    assert!(m.log_text().contains("transport: /dev/fuse read()"));
    assert!(m.stop().success());
}

#[test]
fn on_fails_clearly_when_the_kernel_does_not_offer_it() {
    let Some(_lock) = uring() else { return };
    let lower = TempDir::new("lower");
    let mnt = TempDir::new("mnt");
    let _unmount = UnmountOnDrop(mnt.path().to_path_buf());
    set_enabled(false);
    let mut child = Command::new(daemon_bin())
        .args(["--lower", lower.path().to_str().unwrap()])
        .args(["--mount", mnt.path().to_str().unwrap(), "--io-uring", "on"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    set_enabled(true);
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("fusegated --io-uring on did not exit");
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("io_uring") && err.contains("enable_uring"),
        "{err}"
    );
    assert!(!is_mounted(mnt.path()), "the failed start left its mount");
}

#[test]
fn an_external_unmount_ends_the_io_uring_daemon_cleanly() {
    let Some(_lock) = uring() else { return };
    let mut m = Mount::new(on());
    assert_uring_log(&m);
    std::fs::write(m.path("f"), b"x").unwrap();
    force_unmount(m.mnt.path());
    let mut child = m.child.take().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(20)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("daemon still running after unmount:\n{}", m.log_text());
    });
    assert!(status.success(), "{status}:\n{}", m.log_text());
    assert!(m.log_text().contains("the mount went away"));
}

#[test]
fn sigterm_with_open_files_ends_the_io_uring_daemon_cleanly() {
    let Some(_lock) = uring() else { return };
    let mut m = Mount::new(on());
    std::fs::write(m.path("f"), b"x").unwrap();
    let held = std::fs::File::open(m.path("f")).unwrap();
    let status = m.stop();
    assert!(status.success(), "{status}:\n{}", m.log_text());
    assert!(!is_mounted(m.mnt.path()));
    drop(held);
}

#[test]
fn stopping_an_attached_io_uring_session_returns_promptly() {
    let Some(_lock) = uring() else { return };
    let lower = TempDir::new("lower");
    let mnt = TempDir::new("mnt");
    std::fs::write(lower.path().join("f"), b"x").unwrap();
    // Play the platform: open /dev/fuse, mount it, hand the fd over.
    let fd = platform_mount(mnt.path(), libc::O_CLOEXEC);
    let _unmount = UnmountOnDrop(mnt.path().to_path_buf());
    // SAFETY: fd is ours and nothing else uses it.
    let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let options = fusegate::Options {
        io_uring: fusegate::fuse::IoUringMode::On,
        ..Default::default()
    };
    let mut daemon = fusegate::Daemon::attach(owned, lower.path(), options).unwrap();
    assert_eq!(std::fs::read(mnt.path().join("f")).unwrap(), b"x");
    // Queue threads wait in io_uring_enter and nothing unmounts: stop must still return.
    let started = Instant::now();
    daemon.stop();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(!daemon.is_running());
    drop(daemon);
    // The connection is dead, not hung: the rings let go of the device when their threads
    // ended, so closing our fds aborted it.
    let f = mnt.path().join("f");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(f).map(|_| ()));
    });
    let e = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a request to the stopped session hangs")
        .unwrap_err();
    assert!(fusegate::fuse::mount::is_dead_connection(&e), "{e}");
    force_unmount(mnt.path());
}

#[test]
fn after_sigkill_the_mount_is_dead_not_hung_and_a_restart_recovers() {
    let Some(_lock) = uring() else { return };
    let mut m = Mount::new(on());
    std::fs::write(m.lower_path("f"), b"data").unwrap();
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"data");
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let f = m.path("f");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(f).map(|_| ()));
    });
    let e = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a request to the killed daemon's mount hangs")
        .unwrap_err();
    assert!(fusegate::fuse::mount::is_dead_connection(&e), "{e}");
    m.start();
    assert_uring_log(&m);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"data");
    assert!(m.stop().success());
}

/// Keeps the calling thread on CPU 0, whose io_uring queue then serves its requests.
fn run_on_cpu0() {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU 0 is within it; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

#[test]
fn a_queue_kept_full_answers_every_request() {
    let Some(_lock) = uring() else { return };
    // Mounted afresh each time: the queues are busiest while their entries first register.
    for _ in 0..10 {
        keep_one_queue_full();
    }
}

fn keep_one_queue_full() {
    let m = Mount::new(on());
    assert_uring_log(&m);
    const CALLERS: usize = 8;
    const ROUNDS: usize = 500;
    for i in 0..CALLERS {
        std::fs::write(m.lower_path(&format!("f{i}")), b"x").unwrap();
    }
    // More callers on one CPU than its queue has entries: every answer arrives while others
    // wait, so each pass of the queue's loop hands several entries back at once.
    let (done, finished) = std::sync::mpsc::channel();
    for i in 0..CALLERS {
        let (p, done) = (m.path(&format!("f{i}")), done.clone());
        std::thread::spawn(move || {
            run_on_cpu0();
            for _ in 0..ROUNDS {
                std::fs::metadata(&p).unwrap();
                drop(std::fs::File::open(&p).unwrap());
            }
            let _ = done.send(());
        });
    }
    // An answer that never reaches the kernel leaves its caller waiting for good: a deadline,
    // then the mount's drop unmounts and the waiting calls end.
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0..CALLERS {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            finished.recv_timeout(left).is_ok(),
            "{} of {CALLERS} callers still waiting after 60 s:\n{}",
            CALLERS - n,
            m.log_text()
        );
    }
    let log = m.log_text();
    assert!(!log.contains("submission queue full"), "{log}");
}
