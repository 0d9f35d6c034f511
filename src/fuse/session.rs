//! A FUSE session: INIT negotiation, worker threads each reading from its own cloned fd, and
//! dispatch of decoded requests to a [`Filesystem`].

use super::abi::{self, init_flags as F, opcode};
use super::channel::Channel;
use super::filesystem::{Ctx, Filesystem, SetAttr, XattrReply};
use super::kernel::KernelHandle;
use super::reply::{DirWriter, ReplyBuf};
use super::request::{Operation, Request};
use super::resume::{Continuity, NOTIFY_RESEND, RESEND_BIT};
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
    fn count(&self, op: u32) {
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
    fn wait(&self, chan: &Channel) -> bool {
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

fn negotiate(
    chan: &Channel,
    stopper: &Stopper,
    config: &SessionConfig,
    stats: &SessionStats,
    save: Option<&(dyn Fn(&Negotiated) + Send + Sync)>,
) -> Result<(Negotiated, Option<uring::Pool>), SessionError> {
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut reply = ReplyBuf::new(4096);
    loop {
        let n = match chan.receive(&mut buf) {
            Ok(n) => n,
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) => {
                    if !stopper.wait(chan) {
                        return Err(SessionError::EndedBeforeInit);
                    }
                    continue;
                }
                Some(libc::EINTR) | Some(libc::ENOENT) => continue,
                Some(libc::ENODEV) => return Err(SessionError::EndedBeforeInit),
                _ => return Err(e.into()),
            },
        };
        let req = match Request::parse(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("malformed request before INIT: {e}");
                stats.malformed.fetch_add(1, Relaxed);
                continue;
            }
        };
        stats.count(req.header.opcode);
        let Operation::Init(init) = req.op else {
            reply.reset();
            let _ = chan.send(reply.finish(req.header.unique, -libc::EIO));
            continue;
        };
        if init.major < abi::KERNEL_VERSION {
            reply.reset();
            let _ = chan.send(reply.finish(req.header.unique, -libc::EPROTO));
            return Err(SessionError::Protocol(init.major, init.minor));
        }
        if init.major > abi::KERNEL_VERSION {
            // Tell the kernel our major; it sends a new INIT for it.
            reply.reset();
            reply.push(&abi::InitOut {
                major: abi::KERNEL_VERSION,
                minor: abi::KERNEL_MINOR_VERSION,
                ..Default::default()
            });
            let _ = chan.send(reply.finish(req.header.unique, 0));
            continue;
        }
        let (mut out, mut negotiated) = init_reply(&init, config);
        // A server that must survive restarts serves over read() only: io_uring queues die
        // with the process that registered them.
        let uring_mode = if save.is_some() {
            IoUringMode::Off
        } else {
            config.io_uring
        };
        let pool = match choose_uring(&init, chan, uring_mode) {
            Ok(pool) => pool,
            Err(reason) => {
                reply.reset();
                let _ = chan.send(reply.finish(req.header.unique, -libc::EPROTO));
                return Err(SessionError::IoUringUnavailable(reason));
            }
        };
        if let Some(pool) = &pool {
            out.flags2 |= (F::OVER_IO_URING >> 32) as u32;
            negotiated.flags |= F::OVER_IO_URING;
            negotiated.transport = Transport::IoUring {
                queues: pool.queue_count(),
                depth: uring::QUEUE_DEPTH,
            };
        }
        if let Some(save) = save {
            // Saved before the kernel hears the answer: a server that starts later must never
            // wait for an INIT that will not come.
            save(&negotiated);
        }
        reply.reset();
        reply.push(&out);
        // Kernels before 7.23 expect the 24-byte compat reply.
        let msg = reply.finish(req.header.unique, 0);
        let msg = if init.minor < 23 {
            &msg[..16 + 24]
        } else {
            msg
        };
        let mut msg = msg.to_vec();
        let len = msg.len() as u32;
        msg[..4].copy_from_slice(&len.to_ne_bytes());
        chan.send(&msg)?;
        return Ok((negotiated, pool));
    }
}

/// The io_uring queues to serve with, `None` for `read()`, or why `--io-uring on` cannot be
/// met. The rings are built before INIT is answered: once the kernel has accepted
/// FUSE_OVER_IO_URING, requests wait until every queue has registered.
fn choose_uring(
    init: &abi::InitIn,
    chan: &Channel,
    mode: IoUringMode,
) -> Result<Option<uring::Pool>, String> {
    if mode == IoUringMode::Off {
        return Ok(None);
    }
    let offered = init.flags as u64
        | if init.flags as u64 & F::INIT_EXT != 0 {
            (init.flags2 as u64) << 32
        } else {
            0
        };
    let built = match uring::unavailable(init.minor, offered) {
        Some(reason) => Err(reason),
        None => {
            // The kernel requires room for max(max_write, max_pages pages).
            // SAFETY: sysconf has no pointer arguments.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
            let payload = (MAX_WRITE as usize).max((MAX_WRITE as usize / 4096) * page);
            uring::Pool::new(chan, payload).map_err(|e| format!("setting up io_uring: {e}"))
        }
    };
    match built {
        Ok(pool) => Ok(Some(pool)),
        Err(reason) if mode == IoUringMode::On => Err(reason),
        Err(reason) => {
            log::info!("not using io_uring: {reason}");
            Ok(None)
        }
    }
}

/// The flags we want, limited to what the kernel offered.
fn init_reply(init: &abi::InitIn, config: &SessionConfig) -> (abi::InitOut, Negotiated) {
    let offered = init.flags as u64
        | if init.flags as u64 & F::INIT_EXT != 0 {
            (init.flags2 as u64) << 32
        } else {
            0
        };
    let minor = init.minor.min(abi::KERNEL_MINOR_VERSION);
    let mut wanted = F::ASYNC_READ
        | F::ATOMIC_O_TRUNC
        | F::BIG_WRITES
        | F::DO_READDIRPLUS
        | F::READDIRPLUS_AUTO
        | F::PARALLEL_DIROPS
        | F::MAX_PAGES
        | F::ASYNC_DIO
        | F::AUTO_INVAL_DATA
        | F::CACHE_SYMLINKS
        // The kernel then stops asking for security.capability before every write (one round
        // trip per write(2) otherwise, passthrough included) and leaves suid clearing to us.
        | F::HANDLE_KILLPRIV_V2
        | F::INIT_EXT;
    // Passthrough needs 7.40, and is silently dropped by the kernel with a writeback cache,
    // which we therefore never ask for.
    if config.passthrough && minor >= abi::MINOR_PASSTHROUGH {
        wanted |= F::PASSTHROUGH;
    }
    let flags = wanted & offered;
    let passthrough = flags & F::PASSTHROUGH != 0;
    let out = abi::InitOut {
        major: abi::KERNEL_VERSION,
        minor,
        max_readahead: init.max_readahead,
        flags: flags as u32,
        max_background: 64,
        congestion_threshold: 48,
        max_write: MAX_WRITE,
        time_gran: 1,
        max_pages: max_pages(page_size()),
        map_alignment: 0,
        flags2: (flags >> 32) as u32,
        // ext4/f2fs are at depth 0; 1 lets the kernel stack us on them.
        max_stack_depth: if passthrough { 1 } else { 0 },
        request_timeout: 0,
        unused: [0; 11],
    };
    let negotiated = Negotiated {
        major: abi::KERNEL_VERSION,
        minor,
        flags,
        max_write: MAX_WRITE,
        max_readahead: init.max_readahead,
        passthrough,
        resend: offered & F::HAS_RESEND != 0,
        transport: Transport::DevRead,
    };
    (out, negotiated)
}

/// The kernel builds READ (and direct I/O) requests of up to `max_pages` of its own pages, so
/// the offer must be counted in the running kernel's pages: 256 pages of 16 KiB would be 4 MiB,
/// four times what a request buffer holds.
fn max_pages(page_size: usize) -> u16 {
    (MAX_WRITE as usize / page_size.max(4096)).clamp(1, u16::MAX as usize) as u16
}

fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers; it cannot fail for _SC_PAGESIZE.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
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

/// Requests the kernel expects no reply to.
fn no_reply(op: u32) -> bool {
    matches!(
        op,
        opcode::FORGET | opcode::BATCH_FORGET | opcode::INTERRUPT | opcode::NOTIFY_REPLY
    )
}

/// Decodes one request, has the filesystem handle it and encodes the answer in `reply`.
/// Returns the reply message to send, or `None` when the kernel expects none. Shared by both
/// transports, which differ only in how the bytes come and go.
pub(super) fn process<'r, F: Filesystem + ?Sized>(
    fs: &F,
    buf: &[u8],
    reply: &'r mut ReplyBuf,
    stats: &SessionStats,
) -> Option<&'r [u8]> {
    dispatch_with(fs, buf, reply, stats, Continuity::none())
}

/// Decodes one request exactly as read from `/dev/fuse`, calls `fs` and returns the reply to
/// send (`None` when the kernel expects none). The worker loop and the fuzz targets share it,
/// so what is fuzzed is what serves.
pub fn dispatch_one<'r, F: Filesystem + ?Sized>(
    fs: &F,
    buf: &[u8],
    reply: &'r mut ReplyBuf,
    stats: &SessionStats,
) -> Option<&'r [u8]> {
    dispatch_with(fs, buf, reply, stats, Continuity::none())
}

/// [`dispatch_one`] for a server that names its file handles by `continuity`.
pub fn dispatch_with<'r, F: Filesystem + ?Sized>(
    fs: &F,
    buf: &[u8],
    reply: &'r mut ReplyBuf,
    stats: &SessionStats,
    continuity: &Continuity,
) -> Option<&'r [u8]> {
    reply.reset();
    let req = match Request::parse(buf) {
        Ok(r) => r,
        Err(e) => {
            stats.malformed.fetch_add(1, Relaxed);
            log::warn!("malformed request: {e}");
            let h = abi::read_pod::<abi::InHeader>(buf)?;
            return (!no_reply(h.opcode)).then(|| reply.finish(h.unique, -e.errno()));
        }
    };
    let h = &req.header;
    stats.count(h.opcode);
    let ctx = Ctx {
        unique: h.unique,
        nodeid: h.nodeid,
        uid: h.uid,
        gid: h.gid,
        pid: h.pid,
        opcode: h.opcode,
    };
    let retry = (h.unique & RESEND_BIT != 0).then(|| Retry::of(&req.op));
    let mut result = dispatch(fs, &ctx, req.op, reply, stats, continuity);
    if let (Err(errno), Some(retry)) = (result, retry) {
        reply.reset();
        result = resent_fixup(fs, &ctx, retry, errno, reply, continuity);
    }
    match result {
        Ok(true) => Some(reply.finish(h.unique, 0)),
        Ok(false) => None,
        Err(errno) => {
            stats.errors.fetch_add(1, Relaxed);
            Some(reply.finish(h.unique, -errno))
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

/// Calls the filesystem and encodes its answer into `reply`. `Ok(false)`: send nothing.
fn dispatch<F: Filesystem + ?Sized>(
    fs: &F,
    ctx: &Ctx,
    op: Operation<'_>,
    reply: &mut ReplyBuf,
    stats: &SessionStats,
    cont: &Continuity,
) -> Result<bool, i32> {
    let node = ctx.nodeid;
    use Operation as O;
    match op {
        O::Init(init) => {
            // Only a restarted server meets INIT here: the one its predecessor read and left
            // unanswered, sent again. The answer is the same as then.
            let passthrough = cont.late_init.ok_or(libc::EIO)?;
            let config = SessionConfig {
                threads: 1,
                passthrough,
                io_uring: IoUringMode::Off,
            };
            reply.push(&init_reply(&init, &config).0);
        }
        O::Destroy => {
            fs.destroy();
        }
        O::NotifyReply => return Ok(false),
        O::Interrupt { unique } => {
            // Every handler is a bounded local syscall, so the interrupted request gets its
            // normal reply promptly; that reply is what completes it in the kernel.
            stats.interrupts.fetch_add(1, Relaxed);
            log::trace!("interrupt for request {unique}");
            return Ok(false);
        }
        O::Lookup { name } => reply.push(&fs.lookup(ctx, node, name)?.to_abi()),
        O::Forget { nlookup } => {
            fs.forget(node, nlookup);
            return Ok(false);
        }
        O::BatchForget { items } => {
            for one in items {
                fs.forget(one.nodeid, one.nlookup);
            }
            return Ok(false);
        }
        O::Getattr { fh } => {
            let a = fs.getattr(ctx, node, cont.file_fh_opt(fh))?;
            reply.push(&attr_out(&a));
        }
        O::Setattr(arg) => {
            let mut set = SetAttr::from_abi(&arg);
            set.fh = cont.file_fh_opt(set.fh);
            let a = fs.setattr(ctx, node, &set)?;
            reply.push(&attr_out(&a));
        }
        O::Readlink => {
            let out = reply.spare(libc::PATH_MAX as usize);
            let n = fs.readlink(ctx, node, out)?;
            reply.commit(n);
        }
        O::Symlink { name, target } => reply.push(&fs.symlink(ctx, node, name, target)?.to_abi()),
        O::Mknod { arg, name } => reply.push(
            &fs.mknod(ctx, node, name, arg.mode, arg.rdev, arg.umask)?
                .to_abi(),
        ),
        O::Mkdir { arg, name } => {
            reply.push(&fs.mkdir(ctx, node, name, arg.mode, arg.umask)?.to_abi())
        }
        O::Unlink { name } => fs.unlink(ctx, node, name)?,
        O::Rmdir { name } => fs.rmdir(ctx, node, name)?,
        O::Rename {
            newdir,
            flags,
            name,
            newname,
        } => fs.rename(ctx, node, name, newdir, newname, flags)?,
        O::Link { oldnodeid, name } => reply.push(&fs.link(ctx, oldnodeid, node, name)?.to_abi()),
        O::Open { flags, open_flags } => {
            let mut opened = fs.open(ctx, node, flags, open_flags)?;
            opened.fh = cont.tag(opened.fh);
            reply.push(&opened.to_abi())
        }
        O::Create { arg, name } => {
            let (entry, mut opened) = fs.create(
                ctx,
                node,
                name,
                arg.mode,
                arg.umask,
                arg.flags,
                arg.open_flags,
            )?;
            opened.fh = cont.tag(opened.fh);
            reply.push(&entry.to_abi());
            reply.push(&opened.to_abi());
        }
        O::Read(arg) => {
            let out = reply.spare(arg.size as usize);
            let n = fs.read(ctx, node, cont.file_fh(arg.fh), arg.offset, out)?;
            reply.commit(n);
        }
        O::Write { arg, data } => {
            let n = fs.write(
                ctx,
                node,
                cont.file_fh(arg.fh),
                arg.offset,
                data,
                arg.write_flags,
            )?;
            reply.push(&abi::WriteOut {
                size: n,
                padding: 0,
            });
        }
        O::Flush(arg) => fs.flush(ctx, node, cont.file_fh(arg.fh))?,
        O::Release(arg) => fs.release(ctx, node, cont.file_fh(arg.fh), arg.flags)?,
        O::Fsync { fh, datasync } => fs.fsync(ctx, node, cont.file_fh(fh), datasync)?,
        O::Statfs => reply.push(&fs.statfs(ctx, node)?),
        O::Setxattr { flags, name, value } => fs.setxattr(ctx, node, name, value, flags)?,
        O::Getxattr { size, name } => {
            xattr_reply(reply, size, |out| fs.getxattr(ctx, node, name, out))?
        }
        O::Listxattr { size } => xattr_reply(reply, size, |out| fs.listxattr(ctx, node, out))?,
        O::Removexattr { name } => fs.removexattr(ctx, node, name)?,
        O::Opendir { flags } => {
            let mut opened = fs.opendir(ctx, node, flags)?;
            opened.fh = cont.tag(opened.fh);
            reply.push(&opened.to_abi())
        }
        O::Readdir(arg) | O::Readdirplus(arg) => {
            let fh = cont.dir_fh(fs, ctx, node, arg.fh)?;
            let plus = ctx.opcode == opcode::READDIRPLUS;
            let mut w = DirWriter::new(reply.spare(arg.size as usize), plus);
            fs.readdir(ctx, node, fh, arg.offset, &mut w)?;
            let n = w.len();
            reply.commit(n);
        }
        O::Releasedir(arg) => {
            if let Some(fh) = cont.release_dir_fh(arg.fh) {
                fs.releasedir(ctx, node, fh)?
            }
        }
        O::Fsyncdir { fh, datasync } => fs.fsyncdir(ctx, node, cont.file_fh(fh), datasync)?,
        O::Access { mask } => fs.access(ctx, node, mask)?,
        O::Fallocate(arg) => fs.fallocate(
            ctx,
            node,
            cont.file_fh(arg.fh),
            arg.offset,
            arg.length,
            arg.mode,
        )?,
        O::Lseek(arg) => {
            let offset = fs.lseek(ctx, node, cont.file_fh(arg.fh), arg.offset, arg.whence)?;
            reply.push(&abi::LseekOut { offset });
        }
        O::CopyFileRange(arg) => {
            let n = fs.copy_file_range(
                ctx,
                node,
                cont.file_fh(arg.fh_in),
                arg.off_in,
                arg.nodeid_out,
                cont.file_fh(arg.fh_out),
                arg.off_out,
                arg.len,
            )?;
            reply.push(&abi::WriteOut {
                size: n.min(u32::MAX as u64) as u32,
                padding: 0,
            });
        }
        O::Unsupported(_) => return Err(libc::ENOSYS),
    }
    Ok(true)
}

/// What answering a resent request needs if its first attempt was already applied.
enum Retry {
    /// MKDIR, MKNOD, SYMLINK, LINK: the name in the request's directory.
    Made(Vec<u8>),
    /// CREATE: the name, and how to open what is there now.
    Created {
        name: Vec<u8>,
        flags: u32,
        open_flags: u32,
    },
    /// UNLINK, RMDIR, RENAME: gone already.
    Removed,
    Other,
}

impl Retry {
    fn of(op: &Operation<'_>) -> Retry {
        use Operation as O;
        match op {
            O::Mkdir { name, .. }
            | O::Mknod { name, .. }
            | O::Symlink { name, .. }
            | O::Link { name, .. } => Retry::Made(name.as_bytes().to_vec()),
            O::Create { arg, name } => Retry::Created {
                name: name.as_bytes().to_vec(),
                flags: arg.flags,
                open_flags: arg.open_flags,
            },
            O::Unlink { .. } | O::Rmdir { .. } | O::Rename { .. } => Retry::Removed,
            _ => Retry::Other,
        }
    }
}

/// A resent request (the server that read it first died) may have been applied before: a
/// name made then is EEXIST now, one removed or moved then is ENOENT now. Such an error is
/// answered from what the lower tree shows now (the entry that is there; success), so the
/// app sees its one call succeed. A name another process made or removed in that window is
/// answered the same way: the price of not knowing what the dead server did.
fn resent_fixup<F: Filesystem + ?Sized>(
    fs: &F,
    ctx: &Ctx,
    retry: Retry,
    errno: i32,
    reply: &mut ReplyBuf,
    cont: &Continuity,
) -> Result<bool, i32> {
    fn name(n: &[u8], errno: i32) -> Result<super::request::Name<'_>, i32> {
        super::request::Name::new(n).ok_or(errno)
    }
    match (retry, errno) {
        (Retry::Made(n), libc::EEXIST) => {
            cont.adopt(ctx, &n);
            let entry = fs.lookup(ctx, ctx.nodeid, name(&n, errno)?)?;
            reply.push(&entry.to_abi());
        }
        // Without O_EXCL a CREATE of an existing name is an open of it, refused (EACCES) if
        // the dead server made the file but did not get to tag its creator.
        (
            Retry::Created {
                name: n,
                flags,
                open_flags,
            },
            libc::EEXIST | libc::EACCES,
        ) => {
            if !cont.adopt(ctx, &n) && errno == libc::EACCES {
                return Err(errno);
            }
            let entry = fs.lookup(ctx, ctx.nodeid, name(&n, errno)?)?;
            let flags = flags & !((libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC) as u32);
            let mut opened = fs.open(ctx, entry.nodeid, flags, open_flags)?;
            opened.fh = cont.tag(opened.fh);
            reply.push(&entry.to_abi());
            reply.push(&opened.to_abi());
        }
        (Retry::Removed, libc::ENOENT) => {}
        _ => return Err(errno),
    }
    log::info!(
        "resent request {} (opcode {}) answered from the lower tree as it is now",
        ctx.unique,
        ctx.opcode
    );
    Ok(true)
}

fn attr_out(a: &super::filesystem::AttrReply) -> abi::AttrOut {
    abi::AttrOut {
        attr_valid: a.ttl.as_secs(),
        attr_valid_nsec: a.ttl.subsec_nanos(),
        dummy: 0,
        attr: a.attr,
    }
}

fn xattr_reply(
    reply: &mut ReplyBuf,
    size: u32,
    call: impl FnOnce(&mut [u8]) -> super::filesystem::Result<XattrReply>,
) -> Result<(), i32> {
    match call(reply.spare(size as usize))? {
        XattrReply::Size(n) => reply.push(&abi::GetxattrOut {
            size: n,
            padding: 0,
        }),
        XattrReply::Data(n) => reply.commit(n),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init_in(flags: u64, minor: u32) -> abi::InitIn {
        abi::InitIn {
            major: 7,
            minor,
            max_readahead: 131072,
            flags: flags as u32,
            flags2: (flags >> 32) as u32,
            unused: [0; 11],
        }
    }

    #[test]
    fn init_negotiation_table() {
        let all = u64::MAX;
        let cfg_pt = SessionConfig {
            threads: 1,
            passthrough: true,
            io_uring: IoUringMode::Auto,
        };
        let cfg_nopt = SessionConfig {
            threads: 1,
            passthrough: false,
            io_uring: IoUringMode::Auto,
        };
        // (offered flags, kernel minor, config, expect passthrough, expect minor)
        let cases: &[(u64, u32, &SessionConfig, bool, u32)] = &[
            (all, 45, &cfg_pt, true, 45),
            (all, 50, &cfg_pt, true, 45),
            (all, 41, &cfg_pt, true, 41),
            (all, 39, &cfg_pt, false, 39),
            (all, 45, &cfg_nopt, false, 45),
            (all & !F::PASSTHROUGH, 45, &cfg_pt, false, 45),
            (all & !F::INIT_EXT, 45, &cfg_pt, false, 45),
        ];
        for &(offered, minor, cfg, pt, want_minor) in cases {
            let (out, neg) = init_reply(&init_in(offered, minor), cfg);
            assert_eq!(neg.passthrough, pt, "offered {offered:x} minor {minor}");
            assert_eq!(out.minor, want_minor);
            assert_eq!(out.max_stack_depth, if pt { 1 } else { 0 });
            let got = out.flags as u64 | (out.flags2 as u64) << 32;
            assert_eq!(got & F::WRITEBACK_CACHE, 0, "never a writeback cache");
            assert_eq!(got & !offered, 0, "only what the kernel offered");
            assert_eq!(out.max_write, MAX_WRITE);
        }
    }

    #[test]
    fn max_pages_never_exceed_a_request_buffer() {
        assert_eq!(max_pages(4096), 256);
        assert_eq!(max_pages(16384), 64);
        assert_eq!(max_pages(65536), 16);
        for page in [4096usize, 16384, 65536] {
            assert!(max_pages(page) as usize * page <= MAX_WRITE as usize);
        }
        let (out, _) = init_reply(
            &init_in(u64::MAX, 41),
            &SessionConfig {
                threads: 1,
                passthrough: true,
                io_uring: Default::default(),
            },
        );
        assert_eq!(out.max_pages, max_pages(page_size()));
    }

    #[test]
    fn nothing_is_asked_that_was_not_offered() {
        let (out, neg) = init_reply(
            &init_in(F::ASYNC_READ, 45),
            &SessionConfig {
                threads: 1,
                passthrough: true,
                io_uring: IoUringMode::Auto,
            },
        );
        assert_eq!(out.flags as u64, F::ASYNC_READ);
        assert_eq!(out.flags2, 0);
        assert!(!neg.passthrough);
    }
}
