//! Starting, stopping and failing: clean exits, dead mounts, clear errors, fd hand-over.

mod common;

use common::{
    can_mount, daemon_bin, force_unmount, is_mounted, platform_mount, wait_timeout, Mount,
    MountOptions, TempDir, UnmountOnDrop,
};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs fusegated to completion with `args`; returns (exit code, stderr).
fn run_daemon(
    args: &[&str],
    pre: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) -> (i32, String) {
    let mut cmd = Command::new(daemon_bin());
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: `pre` only makes async-signal-safe syscalls (setuid, unshare, mount).
    unsafe { cmd.pre_exec(pre) };
    let mut child = cmd.spawn().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(20)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("fusegated {args:?} did not exit");
    });
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status.code().unwrap_or(-1), err + &out)
}

fn nothing() -> std::io::Result<()> {
    Ok(())
}

#[test]
fn sigterm_with_open_files_leaves_no_mount_and_exits_zero() {
    if !can_mount() {
        return;
    }
    let mut m = Mount::new(MountOptions::default());
    std::fs::write(m.lower_path("held"), b"still readable").unwrap();
    let mut held = std::fs::File::open(m.path("held")).unwrap();
    let _dir = std::fs::read_dir(m.path("")).unwrap();
    let status = m.stop();
    assert!(status.success(), "exit {status}:\n{}", m.log_text());
    assert!(!is_mounted(m.mnt.path()), "mount left behind");
    // An already-open passthrough file keeps working after the daemon is gone.
    let mut s = String::new();
    held.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still readable");
    let log = m.log_text();
    assert!(log.contains("final stats"), "{log}");
    assert!(log.contains("released"), "{log}");
}

#[test]
fn after_sigkill_the_next_start_cleans_up_the_dead_mount() {
    if !can_mount() {
        return;
    }
    let mut m = Mount::new(MountOptions::default());
    std::fs::write(m.lower_path("f"), b"data").unwrap();
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let e = std::fs::metadata(m.path("f")).unwrap_err();
    assert!(
        fusegate::fuse::mount::is_dead_connection(&e),
        "a dead FUSE mount answers ENOTCONN (ECONNABORTED over io_uring): {e}"
    );
    m.start();
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"data");
    assert!(m.log_text().contains("dead FUSE mount"), "{}", m.log_text());
}

#[test]
fn an_external_unmount_ends_the_daemon_cleanly() {
    if !can_mount() {
        return;
    }
    let mut m = Mount::new(MountOptions::default());
    force_unmount(m.mnt.path());
    let mut child = m.child.take().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10))
        .expect("daemon did not notice the unmount");
    assert!(status.success(), "{status}");
}

#[test]
fn bad_invocations_get_a_clear_message_and_nonzero_exit() {
    if !can_mount() {
        return;
    }
    let lower = TempDir::lower("lower");
    let mnt = TempDir::new("mnt");
    let l = lower.path().to_str().unwrap().to_string();
    let mp = mnt.path().to_str().unwrap().to_string();

    let (code, out) = run_daemon(&["--help"], nothing);
    assert_eq!(code, 0);
    for flag in [
        "--lower",
        "--mount",
        "--fd",
        "--threads",
        "--no-passthrough",
        "--policy",
        "--cache-timeout",
    ] {
        assert!(out.contains(flag), "--help does not explain {flag}");
    }
    let (code, out) = run_daemon(&["--lower", &l, "--mount", &mp, "--bogus"], nothing);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("bogus"), "{out}");
    let (code, out) = run_daemon(&["--lower", "/nonexistent/lower", "--mount", &mp], nothing);
    assert_ne!(code, 0);
    assert!(
        out.contains("lower directory") && out.contains("does not exist"),
        "{out}"
    );
    let (code, out) = run_daemon(&["--lower", &l, "--mount", "/nonexistent/mnt"], nothing);
    assert_ne!(code, 0);
    assert!(
        out.contains("mount point") && out.contains("does not exist"),
        "{out}"
    );
    let (code, out) = run_daemon(&["--lower", &l], nothing);
    assert_eq!(code, 2, "{out}");

    // Already a mount point (a live one).
    let m = Mount::new(MountOptions::default());
    let busy = m.mnt.path().to_str().unwrap().to_string();
    let (code, out) = run_daemon(&["--lower", &l, "--mount", &busy], nothing);
    assert_ne!(code, 0);
    assert!(out.contains("already a mount point"), "{out}");
    drop(m);

    // Not root.
    let (code, out) = run_daemon(&["--lower", &l, "--mount", &mp], || {
        // SAFETY: async-signal-safe id changes in the forked child before exec.
        unsafe {
            libc::setgroups(0, std::ptr::null());
            libc::setresgid(65534, 65534, 65534);
            libc::setresuid(65534, 65534, 65534);
        }
        Ok(())
    });
    assert_ne!(code, 0);
    assert!(out.contains("must run as root"), "{out}");

    // No /dev/fuse: a private mount namespace whose /dev is an empty tmpfs.
    let (code, out) = run_daemon(&["--lower", &l, "--mount", &mp], || {
        // SAFETY: syscalls with static NUL-terminated strings, in the child before exec.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            );
            if libc::mount(
                c"tmpfs".as_ptr(),
                c"/dev".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    });
    assert_ne!(code, 0);
    assert!(out.contains("/dev/fuse does not exist"), "{out}");
    assert!(!is_mounted(mnt.path()));
}

#[test]
fn serves_an_already_mounted_fd_handed_over() {
    if !can_mount() {
        return;
    }
    let lower = TempDir::lower("lower");
    let mnt = TempDir::new("mnt");
    std::fs::write(lower.path().join("handed"), b"over").unwrap();
    // Play the platform (vold): open /dev/fuse, mount it, hand the fd to the daemon.
    let fd = platform_mount(mnt.path(), 0);
    let _unmount = UnmountOnDrop(mnt.path().to_path_buf());
    let mut child = Command::new(daemon_bin())
        .args([
            "--lower",
            lower.path().to_str().unwrap(),
            "--fd",
            &fd.to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // SAFETY: our copy of the fd; the child has its own.
    unsafe { libc::close(fd) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let data = loop {
        match std::fs::read(mnt.path().join("handed")) {
            Ok(d) => break d,
            Err(e) if Instant::now() > deadline => {
                panic!("no answer through the handed-over fd: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert_eq!(data, b"over");
    std::fs::write(mnt.path().join("new"), b"n").unwrap();
    assert_eq!(std::fs::read(lower.path().join("new")).unwrap(), b"n");
    // The platform unmounts; the daemon notices and exits 0.
    force_unmount(mnt.path());
    let status = wait_timeout(&mut child, Duration::from_secs(10))
        .expect("daemon did not exit after unmount");
    assert!(status.success());

    // A fd that is not /dev/fuse is refused.
    let (code, out) = run_daemon(
        &["--lower", lower.path().to_str().unwrap(), "--fd", "0"],
        nothing,
    );
    assert_ne!(code, 0);
    assert!(out.contains("not a /dev/fuse"), "{out}");
}

#[test]
fn stopping_an_attached_session_returns_while_the_platform_still_has_it_mounted() {
    if !can_mount() {
        return;
    }
    let lower = TempDir::lower("lower");
    let mnt = TempDir::new("mnt");
    std::fs::write(lower.path().join("f"), b"x").unwrap();
    let fd = platform_mount(mnt.path(), libc::O_CLOEXEC);
    let _unmount = UnmountOnDrop(mnt.path().to_path_buf());
    // SAFETY: fd is ours and nothing else uses it.
    let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let options = fusegate::Options {
        threads: 3,
        ..Default::default()
    };
    let mut daemon = fusegate::Daemon::attach(owned, lower.path(), options).unwrap();
    assert_eq!(std::fs::read(mnt.path().join("f")).unwrap(), b"x");
    // Workers are blocked in read(); nothing unmounts: stop must still return, promptly.
    let started = Instant::now();
    daemon.stop();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(!daemon.is_running());
    drop(daemon);
    // The platform's mount is now a dead connection; the platform cleans it up.
    let e = std::fs::metadata(mnt.path().join("f")).unwrap_err();
    assert!(fusegate::fuse::mount::is_dead_connection(&e), "{e}");
    force_unmount(mnt.path());
}
