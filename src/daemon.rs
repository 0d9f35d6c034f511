//! The `Daemon`: one running fusegate instance (mounted by us, or attached to a mounted fd).
//! Both faces (command line, JNI) only configure and drive this type.

use crate::fuse::mount::{self, MountError, MountpointState};
use crate::fuse::session::{
    IoUringMode, Negotiated, Resume, Session, SessionConfig, SessionError, SessionStats,
};
use crate::fuse::Channel;
use crate::policy::{Access, App, Policy, PolicyError, Table};
use crate::state::StateMap;
pub use crate::view::Denial;
pub use crate::view::FileEvent;
pub use crate::view::OPEN_FOR_APP_FLAGS;
use crate::view::{DenialLog, StorageView, ViewConfig, ViewError, XattrMode};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    /// Worker threads, each on its own cloned /dev/fuse fd.
    pub threads: usize,
    /// Use kernel passthrough when the kernel offers it.
    pub passthrough: bool,
    /// Kernel cache lifetime of names and attributes that do not depend on the caller.
    pub cache_ttl: Duration,
    /// Serve requests over FUSE io_uring queues (auto: when the kernel offers them).
    pub io_uring: IoUringMode,
    /// Which extended attributes apps see (none by default, as on Android).
    pub xattrs: XattrMode,
    /// The initial app table and grants.
    pub policy: Table,
}

/// Worker threads when none are asked for: half the CPUs, 1 to 4. With blocking reads the
/// kernel hands each request to one idle worker; on a small machine more workers than that
/// only compete with the apps for the CPUs (measured: one worker beat two on 2 CPUs).
pub fn default_threads() -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    (cpus / 2).clamp(1, 4)
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: default_threads(),
            passthrough: true,
            cache_ttl: Duration::from_secs(5),
            io_uring: IoUringMode::Auto,
            xattrs: XattrMode::default(),
            policy: Table::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("fusegate must run as root (it mounts, and registers passthrough files)")]
    NotRoot,
    #[error("/dev/fuse does not exist: the kernel has no FUSE support or devtmpfs is not mounted")]
    NoFuseDevice,
    #[error("opening /dev/fuse: {0}")]
    FuseDevice(io::Error),
    #[error("the fd handed over is not a /dev/fuse session: {0}")]
    BadFd(io::Error),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("FUSE session: {0}")]
    Session(#[from] SessionError),
    #[error("restart state: {0}")]
    State(io::Error),
}

/// A snapshot of the counters, for logs and for Java.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests_by_opcode: Vec<(&'static str, u64)>,
    pub requests: u64,
    pub errors: u64,
    pub malformed: u64,
    pub interrupts: u64,
    pub passthrough_active: bool,
    pub passthrough_opens: u64,
    pub userspace_opens: u64,
    /// Userspace opens whose reads get zeros in the file's location ranges.
    pub redacted_opens: u64,
    /// Bytes served as zeros to redacted opens.
    pub bytes_zeroed: u64,
    /// Range-finder runs (cache misses that read a file) and their total time.
    pub finder_runs: u64,
    pub finder_nanos: u64,
    /// Finder runs that met a malformed file and redacted whole containers, or failed to read.
    pub finder_conservative: u64,
    pub finder_errors: u64,
    /// Opens that found their file version's location ranges cached / not cached.
    pub range_cache_hits: u64,
    pub range_cache_misses: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub denials: u64,
    /// Denials a slow listener never got (its queue was full).
    pub denials_dropped: u64,
    /// File events a slow listener never got (its queue was full): it should rescan.
    pub events_dropped: u64,
    /// Userspace opens refused with ENFILE (the daemon's fd budget was spent).
    pub userspace_refused: u64,
    pub backing_registered: u64,
    pub backing_released: u64,
    /// Directory entries whose lower inodes were read ahead of READDIRPLUS listings.
    pub prefetched_entries: u64,
    pub nodes: u64,
    pub open_files: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests {} (errors {}, malformed {}, interrupts {}); opens: passthrough {}, userspace {} ({} redacted); \
             userspace bytes: read {}, written {}; redaction: {} bytes zeroed, finder {} runs in {} us ({} conservative, {} failed), \
             range cache {} hits / {} misses; denials {}; backing ids {} registered / {} released; \
             listing prefetch {} entries; nodes {}; open files {}",
            self.requests,
            self.errors,
            self.malformed,
            self.interrupts,
            self.passthrough_opens,
            self.userspace_opens,
            self.redacted_opens,
            self.bytes_read,
            self.bytes_written,
            self.bytes_zeroed,
            self.finder_runs,
            self.finder_nanos / 1000,
            self.finder_conservative,
            self.finder_errors,
            self.range_cache_hits,
            self.range_cache_misses,
            self.denials,
            self.backing_registered,
            self.backing_released,
            self.prefetched_entries,
            self.nodes,
            self.open_files
        )?;
        let ops: Vec<String> = self
            .requests_by_opcode
            .iter()
            .map(|(n, c)| format!("{n}={c}"))
            .collect();
        if !ops.is_empty() {
            write!(f, "; by opcode: {}", ops.join(" "))?;
        }
        Ok(())
    }
}

pub struct Daemon {
    view: Arc<StorageView>,
    session: Option<Session>,
    /// Kept beyond the session so that final statistics survive `stop`.
    session_stats: Arc<SessionStats>,
    mountpoint: Option<PathBuf>,
}

fn require_root() -> Result<(), DaemonError> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(DaemonError::NotRoot);
    }
    Ok(())
}

fn open_fuse() -> Result<Channel, DaemonError> {
    Channel::open().map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => DaemonError::NoFuseDevice,
        _ => DaemonError::FuseDevice(e),
    })
}

impl Daemon {
    /// Mounts a new view of `lower` on `mountpoint` and starts serving it.
    pub fn mount(mountpoint: &Path, lower: &Path, options: Options) -> Result<Daemon, DaemonError> {
        require_root()?;
        let view = Self::make_view(lower, &options)?;
        let chan = Self::mount_session(mountpoint)?;
        match Self::serve(chan, view, &options) {
            Ok(mut d) => {
                log::info!("serving {} on {}", lower.display(), mountpoint.display());
                d.mountpoint = Some(mountpoint.to_path_buf());
                Ok(d)
            }
            Err(e) => {
                let _ = mount::unmount(mountpoint);
                Err(e)
            }
        }
    }

    /// Serves an already-mounted FUSE session `fd` (handed over by the platform, e.g. vold).
    /// Takes ownership of the fd. Unmounting stays the platform's job.
    pub fn attach(fd: OwnedFd, lower: &Path, options: Options) -> Result<Daemon, DaemonError> {
        require_root()?;
        let chan = Channel::from_fd(fd).map_err(DaemonError::BadFd)?;
        let view = Self::make_view(lower, &options)?;
        let d = Self::serve(chan, view, &options)?;
        log::info!(
            "serving {} on an attached /dev/fuse session",
            lower.display()
        );
        Ok(d)
    }

    fn make_view(lower: &Path, options: &Options) -> Result<Arc<StorageView>, DaemonError> {
        Ok(Arc::new(Self::new_view(lower, options)?))
    }

    fn new_view(lower: &Path, options: &Options) -> Result<StorageView, DaemonError> {
        let policy = Arc::new(Policy::new(options.policy.clone()));
        let config = ViewConfig {
            passthrough: options.passthrough,
            cache_ttl: options.cache_ttl,
            xattrs: options.xattrs,
            ..ViewConfig::default()
        };
        Ok(StorageView::new(lower, policy, config)?)
    }

    /// Opens a new FUSE session and mounts it on `mountpoint` (detaching a dead FUSE mount
    /// found there), for a holder that keeps the session while servers come and go.
    pub fn mount_session(mountpoint: &Path) -> Result<Channel, DaemonError> {
        require_root()?;
        match mount::inspect(mountpoint)? {
            MountpointState::Free => {}
            MountpointState::Mounted => {
                return Err(MountError::AlreadyMounted(mountpoint.display().to_string()).into())
            }
            MountpointState::DeadFuse => {
                log::warn!(
                    "{} is a dead FUSE mount (its daemon died); detaching it",
                    mountpoint.display()
                );
                mount::detach(mountpoint).map_err(|source| MountError::Inspect {
                    path: mountpoint.display().to_string(),
                    source,
                })?;
            }
        }
        let chan = open_fuse()?;
        mount::mount(mountpoint, chan.raw_fd(), "fusegate", "fusegate")?;
        Ok(chan)
    }

    /// Serves a session that a holder (the supervisor, or the Java side) keeps, as one of a
    /// line of servers: `session` and the `workers` fds (clones the holder made and keeps, so
    /// that requests a dying server read come back), `state` the holder's restart state
    /// (`crate::state`), `epoch` this server's number in the line (1 for the first). Nodes
    /// an earlier server recorded are served again; INIT is skipped if it happened; requests
    /// left unanswered are resent.
    pub fn resume(
        session: OwnedFd,
        workers: Vec<OwnedFd>,
        state: OwnedFd,
        epoch: u16,
        lower: &Path,
        options: Options,
    ) -> Result<Daemon, DaemonError> {
        require_root()?;
        let view = Self::new_view(lower, &options)?;
        Self::resume_view(session, workers, state, epoch, view, lower, &options)
    }

    /// [`Daemon::resume`] with a view already made (an in-process restart shares the old
    /// server's policy and listener queues with it).
    fn resume_view(
        session: OwnedFd,
        workers: Vec<OwnedFd>,
        state: OwnedFd,
        epoch: u16,
        mut view: StorageView,
        lower: &Path,
        options: &Options,
    ) -> Result<Daemon, DaemonError> {
        let chan = Channel::from_fd(session).map_err(DaemonError::BadFd)?;
        let workers = workers
            .into_iter()
            .map(Channel::from_fd)
            .collect::<io::Result<Vec<_>>>()
            .map_err(DaemonError::BadFd)?;
        let state = Arc::new(StateMap::map(state).map_err(DaemonError::State)?);
        let started = std::time::Instant::now();
        let restored = view.resume_nodes(state.clone());
        let saved = state.negotiated().and_then(|b| Negotiated::from_bytes(&b));
        let skipped_init = saved.is_some();
        let view = Arc::new(view);
        let config = SessionConfig {
            threads: workers.len().max(1),
            passthrough: options.passthrough,
            io_uring: IoUringMode::Off,
        };
        let keep = state.clone();
        let adopting = view.clone();
        let resume = Resume {
            adopt: Some(Box::new(move |uid, parent, name: &[u8]| {
                adopting.adopt_new(uid, parent, name)
            })),
            workers,
            saved,
            epoch,
            save: Box::new(move |n: &Negotiated| keep.set_negotiated(&n.to_bytes())),
        };
        let session = Session::resume(chan, view.clone(), &config, resume)?;
        log::info!(
            "server {epoch} serving {}: {restored} nodes taken over in {:?}; INIT {}; unanswered requests {}",
            lower.display(),
            started.elapsed(),
            if skipped_init { "already done, skipped" } else { "answered" },
            match (session.resent, session.negotiated.resend) {
                (Some(true), true) => "resent (FUSE_NOTIFY_RESEND)",
                (Some(true), false) => "resent (FUSE_NOTIFY_RESEND, though INIT did not offer FUSE_HAS_RESEND)",
                (Some(false), _) => "NOT resent (the kernel refused FUSE_NOTIFY_RESEND)",
                (None, _) => "none",
            }
        );
        Ok(Daemon {
            view,
            session_stats: session.stats.clone(),
            session: Some(session),
            mountpoint: None,
        })
    }

    /// Stops serving for a successor (a planned upgrade): the workers finish the request in
    /// hand and end; backing ids stay registered (the next server uses them); no unmount.
    pub fn stop_for_handoff(&mut self) {
        if let Some(mut session) = self.session.take() {
            session.stop();
            session.join();
            self.view.finish_giving_back();
            self.view.denials.wake();
            self.view.events.wake();
        }
    }

    fn serve(
        chan: Channel,
        view: Arc<StorageView>,
        options: &Options,
    ) -> Result<Daemon, DaemonError> {
        let config = SessionConfig {
            threads: options.threads.max(1),
            passthrough: options.passthrough,
            io_uring: options.io_uring,
        };
        let session = Session::start(chan, view.clone(), &config)?;
        Ok(Daemon {
            view,
            session_stats: session.stats.clone(),
            session: Some(session),
            mountpoint: None,
        })
    }

    /// Private: every policy change goes through a method below, which also drops what the
    /// kernel cached that the change may affect.
    fn policy(&self) -> &Arc<Policy> {
        self.view.policy()
    }

    /// The denial queue, for a face that hands denials to a listener.
    pub fn denials(&self) -> DenialFeed {
        DenialFeed(self.view.denials.clone())
    }

    /// The file-event queue, for a face that hands events to a listener or a stream.
    pub fn events(&self) -> EventFeed {
        EventFeed(self.view.events.clone())
    }

    pub fn mountpoint(&self) -> Option<&Path> {
        self.mountpoint.as_deref()
    }

    pub fn passthrough_active(&self) -> bool {
        self.view.passthrough_active()
    }

    /// Replaces the whole app table and grants, and drops what the kernel cached that the
    /// change may affect.
    pub fn replace_policy(&self, table: Table) {
        self.policy().replace(table);
        self.view.invalidate_all();
    }

    /// Adds or replaces an app; what the kernel cached that the change can affect (the app
    /// directories of its old and new packages) is dropped.
    pub fn set_app(&self, app: App) -> Result<(), PolicyError> {
        let mut packages = self.policy().snapshot().packages(app.uid);
        packages.extend(app.packages.iter().cloned());
        self.policy().set_app(app)?;
        self.view.invalidate_packages(&packages);
        Ok(())
    }

    pub fn remove_app(&self, uid: u32) {
        let packages = self.policy().snapshot().packages(uid);
        self.policy().remove_app(uid);
        self.view.invalidate_packages(&packages);
    }

    /// Grants `uid` access to one file (relative path) and drops the kernel's cache of it.
    /// Other uids' cached decisions stay valid.
    pub fn grant(&self, uid: u32, path: &str, access: Access) -> Result<(), PolicyError> {
        self.policy().grant(uid, path, access)?;
        self.view.invalidate_grant(path.as_bytes());
        Ok(())
    }

    pub fn revoke(&self, uid: u32, path: &str) -> Result<(), PolicyError> {
        self.policy().revoke(uid, path)?;
        self.view.invalidate_grant(path.as_bytes());
        Ok(())
    }

    /// Adds or replaces many apps as one policy generation, dropping the kernel entries of
    /// their packages' app directories (old and new); a later entry for the same uid wins.
    /// If one entry is bad nothing changes.
    pub fn set_apps(&self, apps: Vec<App>) -> Result<(), PolicyError> {
        let snapshot = self.policy().snapshot();
        let packages: Vec<String> = apps
            .iter()
            .flat_map(|a| {
                snapshot
                    .packages(a.uid)
                    .into_iter()
                    .chain(a.packages.clone())
            })
            .collect();
        drop(snapshot);
        self.policy().apply_batch(apps, Vec::new(), Vec::new())?;
        self.view.invalidate_packages(&packages);
        Ok(())
    }

    /// Many [`Daemon::grant`]s as one policy generation. If one entry is bad nothing changes.
    ///
    /// The kernel then holds nothing to drop: the entries it caches are those every caller
    /// gets alike (grants have no say in the caller-dependent app directories), opens always
    /// reach the daemon, and listings are never cached; the cached decisions of the uids
    /// concerned are void by their policy generations. (A single grant still drops its file's
    /// entry and attributes, at the cost of the path's depth; for 100,000 paths that would be
    /// 100,000 walks and notifications for nothing.)
    pub fn grant_all(&self, grants: Vec<(u32, String, Access)>) -> Result<(), PolicyError> {
        self.policy().apply_batch(Vec::new(), grants, Vec::new())?;
        Ok(())
    }

    /// Many [`Daemon::revoke`]s as one policy generation (nothing for the kernel to drop, as
    /// for [`Daemon::grant_all`]). If one entry is bad nothing changes.
    pub fn revoke_all(&self, revokes: Vec<(u32, String)>) -> Result<(), PolicyError> {
        self.policy().apply_batch(Vec::new(), Vec::new(), revokes)?;
        Ok(())
    }

    /// Opens `path` (relative to the storage root, normalized) for the app `uid`, decided by the
    /// same lookups and open checks as that uid's FUSE open of the path (see
    /// `view::open_for_app`); `flags` are an access mode with optionally `O_TRUNC` and
    /// `O_APPEND` ([`OPEN_FOR_APP_FLAGS`]). Never creates. The error is the errno that uid's
    /// `open` through the mount would get.
    pub fn open_for_app(&self, uid: u32, path: &str, flags: i32) -> Result<OwnedFd, i32> {
        self.view.open_for_app(uid, path.as_bytes(), flags)
    }

    /// Drops kernel caches for one path (relative to the storage root).
    pub fn invalidate(&self, path: &str) {
        self.view.invalidate(path.as_bytes());
    }

    /// False once the session ended (unmounted from outside, or stopped).
    pub fn is_running(&self) -> bool {
        self.session.as_ref().is_some_and(Session::is_running)
    }

    pub fn stats(&self) -> Stats {
        let v = &self.view.stats;
        let r = self.view.redaction_stats();
        let mut s = Stats {
            passthrough_active: self.view.passthrough_active(),
            passthrough_opens: v.passthrough_opens.load(Relaxed),
            userspace_opens: v.userspace_opens.load(Relaxed),
            redacted_opens: r.redacted_opens,
            bytes_zeroed: r.bytes_zeroed,
            finder_runs: r.finder_runs,
            finder_nanos: r.finder_nanos,
            finder_conservative: r.finder_conservative,
            finder_errors: r.finder_errors,
            range_cache_hits: r.cache_hits,
            range_cache_misses: r.cache_misses,
            bytes_read: v.bytes_read.load(Relaxed),
            bytes_written: v.bytes_written.load(Relaxed),
            denials: v.denials.load(Relaxed),
            denials_dropped: self.view.denials.dropped(),
            events_dropped: self.view.events.dropped(),
            userspace_refused: v.userspace_refused.load(Relaxed),
            backing_registered: v.backing_registered.load(Relaxed),
            backing_released: v.backing_released.load(Relaxed),
            prefetched_entries: self.view.prefetched_entries(),
            nodes: self.view.node_count() as u64,
            open_files: self.view.open_files() as u64,
            ..Stats::default()
        };
        let st = &self.session_stats;
        s.requests_by_opcode = st.by_opcode();
        s.requests = s.requests_by_opcode.iter().map(|(_, n)| n).sum();
        s.errors = st.errors.load(Relaxed);
        s.malformed = st.malformed.load(Relaxed);
        s.interrupts = st.interrupts.load(Relaxed);
        s
    }

    /// Unmounts (lazily if files are still open), stops the workers and releases every
    /// backing id. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mp) = self.mountpoint.take() {
            if let Err(e) = mount::unmount(&mp) {
                if e.raw_os_error() != Some(libc::EINVAL) {
                    log::warn!("unmounting {}: {e}", mp.display());
                }
            }
        }
        if let Some(mut session) = self.session.take() {
            session.stop();
            session.join();
            self.view.finish_giving_back();
            self.view.release_backing();
            self.view.denials.wake();
            self.view.events.wake();
        }
    }

    /// Blocks until the session ends on its own (external unmount).
    pub fn wait(&mut self) {
        if let Some(session) = self.session.as_mut() {
            session.join();
        }
    }
}

/// A face's handle on the denial queue of a daemon: one listener thread drains it in batches,
/// off the request path. Keeps the storage view alive, not the session: after the daemon
/// stops, `next_batch` returns at once with what is left.
#[derive(Clone)]
pub struct DenialFeed(Arc<DenialLog>);

impl DenialFeed {
    /// Starts or stops queueing denials. Stopping discards what is queued and wakes a thread
    /// waiting in [`DenialFeed::next_batch`].
    pub fn set_listening(&self, on: bool) {
        self.0.set_listening(on);
    }

    /// Waits up to `timeout` for denials and returns every one queued (possibly none).
    pub fn next_batch(&self, timeout: Duration) -> Vec<Denial> {
        self.0.drain(timeout)
    }
}

/// A face's handle on the file events of a daemon (see `view::FileEvent`): one consumer drains
/// them in batches, off the request path. When it falls behind, events are dropped and counted
/// (`dropped`, also in [`Stats::events_dropped`]): the consumer should then rescan.
#[derive(Clone)]
pub struct EventFeed(Arc<crate::view::EventFeed>);

impl EventFeed {
    /// Starts or stops queueing events; stopping discards what is queued.
    pub fn set_listening(&self, on: bool) {
        self.0.set_listening(on);
    }

    /// Waits up to `timeout` for events and returns every one queued (possibly none), in the
    /// order they happened.
    pub fn next_batch(&self, timeout: Duration) -> Vec<FileEvent> {
        self.0.drain(timeout)
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.0.dropped()
    }
}

/// A FUSE session held across servers inside one process: the Java service's side of crash
/// survival (the command line's is the supervisor). It keeps the session fd, one clone per
/// worker and the restart state, so that a server can be stopped and a new one started on the
/// same session (`Daemon::resume`) while apps keep their open files, directories and cwds. The
/// new server takes over the nodes, the policy (with every grant pushed to the old one) and
/// the listener queues.
pub struct HeldSession {
    session: Channel,
    workers: Vec<Channel>,
    state: OwnedFd,
    epoch: u16,
}

impl HeldSession {
    /// Holds the mounted session `fd` with `threads` worker clones.
    pub fn new(fd: OwnedFd, threads: usize) -> Result<HeldSession, DaemonError> {
        require_root()?;
        let session = Channel::from_fd(fd).map_err(DaemonError::BadFd)?;
        let workers = (0..threads.max(1))
            .map(|_| session.clone_session())
            .collect::<io::Result<Vec<_>>>()
            .map_err(DaemonError::BadFd)?;
        let state = crate::state::create().map_err(DaemonError::State)?;
        Ok(HeldSession {
            session,
            workers,
            state,
            epoch: 0,
        })
    }

    /// Starts the next server on the session. With `previous` (stopped for a handoff first),
    /// the new one keeps its policy and its listener queues.
    pub fn serve(
        &mut self,
        lower: &Path,
        options: &Options,
        previous: Option<&Daemon>,
    ) -> Result<Daemon, DaemonError> {
        let dup =
            |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map_err(DaemonError::BadFd);
        let session = dup(self.session.as_fd())?;
        let workers = self
            .workers
            .iter()
            .map(|w| dup(w.as_fd()))
            .collect::<Result<Vec<_>, _>>()?;
        let state = dup(self.state.as_fd())?;
        let mut options = options.clone();
        if let Some(previous) = previous {
            options.policy = previous.view.policy().snapshot().table().clone();
        }
        let mut view = Daemon::new_view(lower, &options)?;
        if let Some(previous) = previous {
            view.share_feeds_with(&previous.view);
        }
        self.epoch = self.epoch.wrapping_add(1).max(1);
        Daemon::resume_view(session, workers, state, self.epoch, view, lower, &options)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
