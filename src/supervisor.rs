//! The supervisor: holds a FUSE session (the `/dev/fuse` fd, one clone per worker and the
//! restart state) and runs one serving process on it at a time. It serves no request itself,
//! so nothing it does can crash with a request; when the server dies, whatever the cause, the
//! next one starts on the same fds and the mount never sees it go.
//!
//! Why the clones are made here: closing the last reference of a `/dev/fuse` file ends the
//! requests read from it with ECONNABORTED. Held here, they survive their reader; the next
//! server has the kernel send them again (FUSE_NOTIFY_RESEND).

use crate::fuse::{mount, Channel};
use crate::state;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// What a server's exit code says.
pub mod exit {
    /// The server could not start (bad configuration): starting another would fail the same.
    pub const CANNOT_START: i32 = 1;
}

/// Crash-loop guard: a server that dies this soon after it started (a request that kills
/// it, sent again to each new one) counts as a quick death; after `LOOP_DEATHS` in a row,
/// restarts slow down (doubling up to `MAX_BACKOFF`).
const QUICK_DEATH: Duration = Duration::from_millis(100);
const LOOP_DEATHS: usize = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a server told to stop may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Supervisor {
    session: Channel,
    workers: Vec<Channel>,
    state: OwnedFd,
    mountpoint: Option<PathBuf>,
    /// The binary to start: the path on disk (a replaced file is the new version).
    exe: PathBuf,
    /// The server's own flags (lower, policy, ...); the fd flags are added here.
    args: Vec<OsString>,
    child: Option<Child>,
    started: Instant,
    /// When to start the next server, if none runs.
    next_start: Option<Instant>,
    epoch: u16,
    /// Quick deaths in a row.
    quick_deaths: u32,
    restarts: u64,
}

/// What ended a wait for the server.
pub enum Event {
    /// Nothing (timeout): the caller checks its signals.
    Idle,
    /// The session ended (unmounted, aborted): time to go.
    SessionEnded,
    /// The server could not start; no point in trying again.
    CannotStart,
}

impl Supervisor {
    /// Takes over a mounted session (`mountpoint` if we mounted it, to unmount at the end) and
    /// makes `workers` clones of it.
    pub fn new(
        session: Channel,
        workers: usize,
        mountpoint: Option<PathBuf>,
        args: Vec<OsString>,
    ) -> io::Result<Supervisor> {
        let clones = (0..workers.max(1))
            .map(|_| session.clone_session())
            .collect::<io::Result<Vec<_>>>()?;
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
        Ok(Supervisor {
            session,
            workers: clones,
            state: state::create()?,
            mountpoint,
            exe,
            args,
            child: None,
            started: Instant::now(),
            next_start: None,
            epoch: 0,
            quick_deaths: 0,
            restarts: 0,
        })
    }

    pub fn child_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the next server.
    pub fn start(&mut self) -> io::Result<()> {
        self.epoch = self.epoch.wrapping_add(1).max(1);
        let fds: Vec<i32> = std::iter::once(self.session.raw_fd())
            .chain(self.workers.iter().map(Channel::raw_fd))
            .chain(std::iter::once(self.state.as_raw_fd()))
            .collect();
        let worker_list = self
            .workers
            .iter()
            .map(|w| w.raw_fd().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let spawn = |exe: &std::path::Path| {
            let mut cmd = Command::new(exe);
            cmd.args(&self.args)
                .arg("--serve-fd")
                .arg(self.session.raw_fd().to_string())
                .arg("--worker-fds")
                .arg(&worker_list)
                .arg("--state-fd")
                .arg(self.state.as_raw_fd().to_string())
                .arg("--epoch")
                .arg(self.epoch.to_string());
            let fds = fds.clone();
            // SAFETY: runs in the forked child before exec and only calls fcntl, which is
            // async-signal-safe; the fds are ours and open.
            unsafe {
                cmd.pre_exec(move || {
                    for &fd in &fds {
                        if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
            cmd.spawn()
        };
        let child = match spawn(&self.exe) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                spawn(std::path::Path::new("/proc/self/exe"))?
            }
            other => other?,
        };
        log::info!("server {} started (pid {})", self.epoch, child.id());
        self.child = Some(child);
        self.started = Instant::now();
        Ok(())
    }

    /// Whether the kernel still serves this session (not unmounted or aborted).
    pub fn session_alive(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.session.raw_fd(),
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        !(n > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0)
    }

    /// Reaps a server that ended and starts the next (after a pause if they keep dying, or
    /// if the last start failed). Called at least every 100 ms.
    pub fn check(&mut self) -> io::Result<Event> {
        let Some(child) = self.child.as_mut() else {
            if !self.session_alive() {
                return Ok(Event::SessionEnded);
            }
            if self.next_start.is_some_and(|t| Instant::now() >= t) {
                self.next_start = None;
                if let Err(e) = self.start() {
                    self.next_start = Some(Instant::now() + MAX_BACKOFF);
                    return Err(e);
                }
            }
            return Ok(Event::Idle);
        };
        let Some(status) = child.try_wait()? else {
            if !self.session_alive() {
                return Ok(Event::SessionEnded);
            }
            return Ok(Event::Idle);
        };
        let pid = child.id();
        self.child = None;
        if !self.session_alive() {
            log::info!("server {pid} ended with the session ({status})");
            return Ok(Event::SessionEnded);
        }
        if status.code() == Some(exit::CANNOT_START) && self.epoch == 1 {
            // The configuration is bad from the start: nothing was served yet, give up. A
            // later server that cannot start (a broken upgrade, a passing shortage) is retried
            // below, with the pause of a crash loop, while the session waits.
            log::error!("server {pid} could not start; giving up");
            return Ok(Event::CannotStart);
        }
        let how = match (status.signal(), status.code()) {
            (Some(sig), _) => format!("killed by signal {sig}"),
            (None, Some(exit::CANNOT_START)) => "could not start".to_string(),
            _ => format!("exited with {status}"),
        };
        if self.started.elapsed() < QUICK_DEATH || status.code() == Some(exit::CANNOT_START) {
            self.quick_deaths += 1;
        } else {
            self.quick_deaths = 0;
        }
        let pause = match self.quick_deaths.checked_sub(LOOP_DEATHS as u32) {
            Some(n) => {
                (Duration::from_millis(250) * 2u32.saturating_pow(n.min(8))).min(MAX_BACKOFF)
            }
            None => Duration::ZERO,
        };
        self.restarts += 1;
        log::warn!(
            "server {pid} {how}; starting another on the same session{} (restart {})",
            if pause.is_zero() {
                String::new()
            } else {
                format!(" in {pause:?}: it keeps dying")
            },
            self.restarts
        );
        self.next_start = Some(Instant::now() + pause);
        self.check()
    }

    /// A planned upgrade: the server stops reading and ends (leaving backing ids and the state
    /// to its successor), then the binary now on disk starts on the same session.
    pub fn upgrade(&mut self) -> io::Result<()> {
        let started = Instant::now();
        if let Some(child) = self.child.take() {
            let pid = child.id();
            stop_child(child, libc::SIGUSR2);
            log::info!("server {pid} handed over in {:?}", started.elapsed());
        }
        if let Err(e) = self.start() {
            self.next_start = Some(Instant::now() + MAX_BACKOFF);
            return Err(e);
        }
        log::info!("upgrade done in {:?}", started.elapsed());
        Ok(())
    }

    /// Passes a signal (HUP: reload the policy; USR1: statistics) on to the server.
    pub fn forward(&self, sig: libc::c_int) {
        if let Some(pid) = self.child_pid() {
            // SAFETY: kill with a pid we spawned and have not reaped.
            unsafe { libc::kill(pid as libc::pid_t, sig) };
        }
    }

    /// Unmounts (lazily if files are open), stops the server and lets the session go.
    pub fn shutdown(mut self) {
        if let Some(mp) = self.mountpoint.take() {
            if let Err(e) = mount::unmount(&mp) {
                if e.raw_os_error() != Some(libc::EINVAL) {
                    log::warn!("unmounting {}: {e}", mp.display());
                }
            }
        }
        if let Some(child) = self.child.take() {
            stop_child(child, libc::SIGTERM);
        }
        log::info!("supervisor done after {} restarts", self.restarts);
    }
}

/// Signals a server and waits for it; kills it if it takes longer than `STOP_GRACE`.
fn stop_child(mut child: Child, sig: libc::c_int) {
    // SAFETY: kill with a pid we spawned and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                log::warn!("server {} did not stop in time; killing it", child.id());
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}
