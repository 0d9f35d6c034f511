//! A FUSE session: INIT (`init.rs`), then worker threads each reading from its own cloned fd
//! or serving an io_uring queue, each request handed to `dispatch.rs`.

use super::abi::{self, opcode};
use super::channel::Channel;
use super::dispatch::dispatch_with;
use super::filesystem::Filesystem;
use super::init::negotiate;
use super::kernel::KernelHandle;
use super::reply::ReplyBuf;
use super::resume::{Continuity, NOTIFY_RESEND};
use super::uring;
use super::wake;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use thiserror::Error;

/// Largest WRITE payload we accept, and largest READ we serve (256 pages of 4 KiB, 64 of 16 KiB).
pub const MAX_WRITE: u32 = 1 << 20;
/// A request buffer holds the biggest WRITE plus its headers; a page of slack.
pub(super) const BUFFER_SIZE: usize = MAX_WRITE as usize + 4096;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("reading /dev/fuse: {0}")]
    Io(#[from] io::Error),
    #[error("kernel FUSE protocol {0}.{1} is not supported (need 7.x)")]
    Protocol(u32, u32),
    #[error("the session ended before INIT")]
    EndedBeforeInit,
    #[error("cloning the /dev/fuse fd for a worker: {0}")]
    Clone(io::Error),
    #[error("FUSE over io_uring was required but is unavailable: {0}")]
    IoUringUnavailable(String),
}

/// Whether to serve requests over io_uring (`--io-uring`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoUringMode {
    /// io_uring when the kernel offers it, else `read()` on /dev/fuse.
    #[default]
    Auto,
    /// io_uring or fail.
    On,
    /// Always `read()` on /dev/fuse.
    Off,
}

impl std::str::FromStr for IoUringMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IoUringMode::Auto),
            "on" => Ok(IoUringMode::On),
            "off" => Ok(IoUringMode::Off),
            _ => Err(format!("expected auto, on or off, got {s:?}")),
        }
    }
}

/// How requests reach the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Workers blocked in `read()` on cloned /dev/fuse fds.
    #[default]
    DevRead,
    /// FUSE over io_uring: one pinned thread per CPU queue (FORGET and INTERRUPT still come
    /// over /dev/fuse).
    IoUring { queues: usize, depth: usize },
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::DevRead => write!(f, "/dev/fuse read()"),
            Transport::IoUring { queues, depth } => {
                write!(f, "io_uring ({queues} queues x {depth} entries)")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub threads: usize,
    /// Ask for passthrough (it is used only if the kernel offers it).
    pub passthrough: bool,
    pub io_uring: IoUringMode,
}

/// What the kernel agreed to at INIT.
#[derive(Debug, Clone, Default)]
pub struct Negotiated {
    pub major: u32,
    pub minor: u32,
    pub flags: u64,
    pub max_write: u32,
    pub max_readahead: u32,
    /// The kernel accepted FUSE_PASSTHROUGH (a backing-open probe still confirms it).
    pub passthrough: bool,
    /// The kernel offered FUSE_HAS_RESEND: it understands FUSE_NOTIFY_RESEND.
    pub resend: bool,
    pub transport: Transport,
}

/// What a server started on a session another process may have served needs (see
/// `resume.rs`): the worker fds (cloned and held by that process, so that requests read by a
/// server that dies are not lost with its fds), what INIT negotiated if it happened, the
/// server's epoch, and where to save INIT's outcome before answering it.
pub struct Resume {
    pub workers: Vec<Channel>,
    pub saved: Option<Negotiated>,
    pub epoch: u16,
    pub save: Box<dyn Fn(&Negotiated) + Send + Sync>,
    /// For a resent CREATE or MKDIR: finishes what the dead server may have left half done
    /// to the name `(caller uid, parent, name)` it made (see `resent_fixup`).
    pub adopt: Option<crate::fuse::resume::Adopt>,
}

impl Negotiated {
    pub fn has(&self, flag: u64) -> bool {
        self.flags & flag != 0
    }
}

/// Protocol-level counters; the storage view keeps its own beside these.
#[derive(Debug)]
pub struct SessionStats {
    pub requests: [AtomicU64; opcode::COUNTED + 1],
    pub errors: AtomicU64,
    pub malformed: AtomicU64,
    pub interrupts: AtomicU64,
}

impl Default for SessionStats {
    fn default() -> Self {
        SessionStats {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            interrupts: AtomicU64::new(0),
        }
    }
}

impl SessionStats {
    pub(super) fn count(&self, op: u32) {
        let slot = (op as usize).min(opcode::COUNTED);
        self.requests[slot].fetch_add(1, Relaxed);
    }

    /// (opcode name, count) for every opcode seen at least once.
    pub fn by_opcode(&self) -> Vec<(&'static str, u64)> {
        (0..opcode::COUNTED as u32)
            .map(|op| (opcode::name(op), self.requests[op as usize].load(Relaxed)))
            .chain(std::iter::once((
                "unknown",
                self.requests[opcode::COUNTED].load(Relaxed),
            )))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// Tells the session to stop. Workers block in `read()` (the kernel then wakes exactly one
/// per request); a stop sets the flag and interrupts them (see `wake.rs`). The eventfd serves
/// the wait for INIT, before workers exist.
#[derive(Debug)]
pub struct Stopper {
    efd: OwnedFd,
    stopping: AtomicBool,
}

impl Stopper {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd has no pointer arguments; a non-negative return is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by eventfd and is owned by nobody else.
        Ok(Stopper {
            efd: unsafe { OwnedFd::from_raw_fd(fd) },
            stopping: AtomicBool::new(false),
        })
    }

    /// Marks the session as stopping; the eventfd stays readable, so an INIT wait sees it.
    pub fn stop(&self) {
        self.stopping.store(true, Relaxed);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local u64 to our eventfd. A failure (counter overflow)
        // still leaves it readable, which is all we need.
        unsafe { libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(super) fn raw_fd(&self) -> std::os::fd::RawFd {
        self.efd.as_raw_fd()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    /// Blocks until `chan` is readable (true) or a stop was requested (false).
    pub(super) fn wait(&self, chan: &Channel) -> bool {
        let mut fds = [
            libc::pollfd {
                fd: chan.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.efd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: fds is a valid array of two pollfds for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return fds[1].revents == 0;
        }
    }
}

/// A running session: its workers, and the handle to stop it.
pub struct Session {
    pub negotiated: Negotiated,
    pub kernel: Arc<KernelHandle>,
    pub stats: Arc<SessionStats>,
    stopper: Arc<Stopper>,
    workers: Vec<JoinHandle<()>>,
    alive: Arc<AtomicUsize>,
    /// Ring entry memory handed back by io_uring queue threads; freed only after they exited.
    held: Arc<Mutex<Vec<uring::Held>>>,
    /// Whether the kernel was asked to send again what an earlier server left unanswered.
    pub resent: Option<bool>,
}

impl Session {
    /// Answers INIT on `chan` (waiting for it if need be), then starts the workers.
    pub fn start<F: Filesystem>(
        chan: Channel,
        fs: Arc<F>,
        config: &SessionConfig,
    ) -> Result<Session, SessionError> {
        Self::start_inner(chan, fs, config, None)
    }

    /// Serves a session that other processes may have served before (and may serve after):
    /// skips INIT if it already happened, tags file handles with `resume.epoch`, and asks the
    /// kernel to send again the requests an earlier server read but never answered.
    pub fn resume<F: Filesystem>(
        chan: Channel,
        fs: Arc<F>,
        config: &SessionConfig,
        resume: Resume,
    ) -> Result<Session, SessionError> {
        Self::start_inner(chan, fs, config, Some(resume))
    }

    fn start_inner<F: Filesystem>(
        chan: Channel,
        fs: Arc<F>,
        config: &SessionConfig,
        resume: Option<Resume>,
    ) -> Result<Session, SessionError> {
        let stopper = Arc::new(Stopper::new()?);
        chan.set_nonblocking()?;
        let chan = Arc::new(chan);
        let stats = Arc::new(SessionStats::default());
        let (mut workers, saved, save, epoch, adopt) = match resume {
            Some(r) => (Some(r.workers), r.saved, Some(r.save), r.epoch, r.adopt),
            None => (None, None, None, 0, None),
        };
        let resuming = workers.is_some();
        if resuming && saved.is_none() {
            // An earlier server may have read INIT and died before answering it.
            let _ = send_resend(&chan);
        }
        let (negotiated, pool) = match saved {
            Some(n) => (n, None),
            None => negotiate(&chan, &stopper, config, &stats, save.as_deref())?,
        };
        log::info!("transport: {}", negotiated.transport);
        let continuity = Arc::new(if resuming {
            Continuity::new(epoch, config.passthrough, adopt)
        } else {
            Continuity::untagged()
        });
        let kernel = Arc::new(KernelHandle::new(chan.clone()));
        fs.init(&negotiated, kernel.clone());
        // Built before the workers so that, if one cannot start, dropping the session stops
        // and joins those already running.
        let mut session = Session {
            negotiated,
            kernel,
            stats,
            stopper,
            workers: Vec::new(),
            alive: Arc::new(AtomicUsize::new(0)),
            held: Arc::new(Mutex::new(Vec::new())),
            resent: None,
        };
        for queue in pool.map(uring::Pool::into_queues).unwrap_or_default() {
            let (fs, stopper, stats, alive, held) = (
                fs.clone(),
                session.stopper.clone(),
                session.stats.clone(),
                session.alive.clone(),
                session.held.clone(),
            );
            alive.fetch_add(1, Relaxed);
            let handle = std::thread::Builder::new()
                .name(format!("fuse-ring-{}", queue.qid()))
                .spawn(move || {
                    wake::unblock_in_this_thread();
                    fs.worker_started();
                    let memory = queue.serve(&*fs, &stopper, &stats);
                    if let Ok(mut h) = held.lock() {
                        h.push(memory);
                    } else {
                        // Never free what the kernel may still write to.
                        std::mem::forget(memory);
                    }
                    alive.fetch_sub(1, Relaxed);
                });
            match handle {
                Ok(h) => session.workers.push(h),
                Err(e) => {
                    session.alive.fetch_sub(1, Relaxed);
                    return Err(e.into());
                }
            }
        }
        if resuming {
            // Requests an earlier server read and never answered wait on the fds it read them
            // from (held by the supervisor); this puts them back in the queue, marked. Sent
            // before our own workers read anything: a request of ours in flight would be sent
            // again too, and served twice at once.
            session.resent = Some(match send_resend(&chan) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!(
                        "FUSE_NOTIFY_RESEND refused ({e}; kernel {}resend support): requests \
                         the previous server left unanswered stay unanswered",
                        if session.negotiated.resend {
                            "offers "
                        } else {
                            "offers no "
                        }
                    );
                    false
                }
            });
        }
        let count = workers
            .as_ref()
            .map_or(config.threads.max(1), |w| w.len().max(1));
        for i in 0..count {
            // Blocking reads: the kernel wakes exactly one waiting reader per request, where
            // poll() would wake them all (and cost two more system calls per request).
            let worker_chan = match workers.as_mut().and_then(|w| w.pop()) {
                Some(c) => c,
                None => chan.clone_session().map_err(SessionError::Clone)?,
            };
            let (fs, stopper, stats, alive, continuity) = (
                fs.clone(),
                session.stopper.clone(),
                session.stats.clone(),
                session.alive.clone(),
                continuity.clone(),
            );
            alive.fetch_add(1, Relaxed);
            let handle = std::thread::Builder::new()
                .name(format!("fuse-worker-{i}"))
                .spawn(move || {
                    wake::unblock_in_this_thread();
                    fs.worker_started();
                    serve(worker_chan, &*fs, &stopper, &stats, &continuity);
                    alive.fetch_sub(1, Relaxed);
                });
            match handle {
                Ok(h) => session.workers.push(h),
                Err(e) => {
                    session.alive.fetch_sub(1, Relaxed);
                    return Err(e.into());
                }
            }
        }
        Ok(session)
    }

    /// False once every worker has ended (the mount went away or `stop` was called).
    pub fn is_running(&self) -> bool {
        self.alive.load(Relaxed) > 0
    }

    /// Asks every worker to end: sets the flag and interrupts their blocking reads. Requests
    /// being handled finish first. Call [`Session::join`] to wait. (After an unmount the
    /// workers end by themselves.)
    pub fn stop(&self) {
        self.stopper.stop();
        for w in &self.workers {
            wake::kick(w.as_pthread_t() as libc::pthread_t);
        }
    }

    /// Waits until every worker has ended (unmount, connection abort, or `stop`). A worker
    /// that was between two reads when it was interrupted is interrupted again.
    pub fn join(&mut self) {
        if !self.stopper.is_stopped() {
            // Nothing to re-interrupt: the workers end on their own (unmount, abort).
            for w in self.workers.drain(..) {
                if w.join().is_err() {
                    log::error!("a FUSE worker panicked");
                }
            }
            return;
        }
        while !self.workers.is_empty() {
            let (done, running): (Vec<_>, Vec<_>) =
                self.workers.drain(..).partition(|w| w.is_finished());
            for w in done {
                if w.join().is_err() {
                    log::error!("a FUSE worker panicked");
                }
            }
            self.workers = running;
            if !self.workers.is_empty() {
                std::thread::sleep(std::time::Duration::from_millis(5));
                for w in &self.workers {
                    wake::kick(w.as_pthread_t() as libc::pthread_t);
                }
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
        self.join();
    }
}

/// Asks the kernel to queue again every request read from this connection's fds and not yet
/// answered (`FUSE_NOTIFY_RESEND`, protocol 7.40).
fn send_resend(chan: &Channel) -> io::Result<()> {
    let header = abi::OutHeader {
        len: std::mem::size_of::<abi::OutHeader>() as u32,
        error: NOTIFY_RESEND,
        unique: 0,
    };
    chan.send(abi::as_bytes(&header))
}

fn serve<F: Filesystem + ?Sized>(
    chan: Channel,
    fs: &F,
    stopper: &Stopper,
    stats: &SessionStats,
    continuity: &Continuity,
) {
    let mut inbuf = vec![0u8; BUFFER_SIZE];
    // A server that may be killed and replaced faults every page in now (1 MiB of memory per
    // worker): the kernel copies a request into this buffer inside read(), and a fault there
    // while the process is being killed fails the copy, which ends the request with EIO for
    // the app; with the pages present the copy completes, and the request waits to be resent
    // to the next server.
    if continuity.epoch() != 0 {
        for i in (0..inbuf.len()).step_by(4096) {
            inbuf[i] = 1;
        }
    }
    let mut reply = ReplyBuf::new(BUFFER_SIZE);
    loop {
        // Under a steady stream of requests a blocking read is never interrupted: without
        // this check a stop would wait for a lull (seconds, while a successor waits).
        if stopper.is_stopped() {
            break;
        }
        match chan.receive(&mut inbuf) {
            Ok(n) => {
                if let Some(msg) = dispatch_with(fs, &inbuf[..n], &mut reply, stats, continuity) {
                    send(&chan, msg);
                }
            }
            Err(e) => match e.raw_os_error() {
                // The wake signal, or another: stop if asked to.
                Some(libc::EINTR) if stopper.is_stopped() => break,
                // ENOENT: the request was interrupted before we read it.
                Some(libc::EINTR) | Some(libc::ENOENT) | Some(libc::EAGAIN) => {}
                // ENODEV: unmounted or aborted, the normal end.
                Some(libc::ENODEV) => break,
                _ => {
                    log::error!("reading /dev/fuse: {e}");
                    break;
                }
            },
        }
    }
}

fn send(chan: &Channel, msg: &[u8]) {
    if let Err(e) = chan.send(msg) {
        // ENOENT: the request was interrupted and the kernel no longer waits for it.
        if e.raw_os_error() != Some(libc::ENOENT) {
            log::warn!("writing reply: {e}");
        }
    }
}
