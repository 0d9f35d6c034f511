//! The storage view: mirrors the lower directory through FUSE, asks the policy before every
//! access the kernel lets us see, and hands allowed file data to the kernel via passthrough.

mod access;
mod attrs;
mod create;
mod creds;
mod data;
mod denials;
mod dirfds;
mod dirs;
mod dirstream;
mod events;
mod feed;
mod files;
mod lookup;
mod lower;
mod nodes;
mod open_for_app;
mod ops;
mod prefetch;
mod privileges;
mod recover;
mod redaction;
mod releases;
mod remove;
mod rename;
mod stats;

pub use access::OWNER_XATTR;
pub use denials::{Denial, DenialLog};
pub use events::{EventFeed, FileEvent};
#[doc(hidden)]
pub use nodes::NodeBench;
pub use open_for_app::OPEN_FOR_APP_FLAGS;
pub use stats::ViewStats;

use crate::fuse::abi::ROOT_ID;
use crate::fuse::{Ctx, KernelHandle, Negotiated};
use crate::policy::{CallerClass, Policy};
use access::{Facts, Subject};
use creds::{ActAs, Creds};
use dirfds::DirFds;
use files::FileTable;
use lower::{io, Lower, Result};
use nodes::{Node, NodeTable};
use redaction::Redaction;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ViewConfig {
    /// Use passthrough when the kernel offers it.
    pub passthrough: bool,
    /// How long the kernel may cache names and attributes that do not depend on the caller.
    pub cache_ttl: Duration,
    /// Most files served in userspace (no passthrough) open at once; past it an open answers
    /// ENFILE. Each holds a lower fd, and the daemon's fds are bounded (hard limit 20,000).
    pub max_userspace_opens: usize,
    /// Which extended attributes the view offers apps.
    pub xattrs: XattrMode,
}

/// The extended attributes the storage view offers (`--xattrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrMode {
    /// None, as Android's emulated storage: the first xattr request of each kind answers
    /// ENOSYS and the kernel stops asking (apps get EOPNOTSUPP without a round trip), so
    /// `ls -l` no longer costs two GETXATTR round trips per file.
    #[default]
    None,
    /// `user.*` attributes of the lower files (the owner tag stays hidden and read-only);
    /// other namespaces are ENODATA to read and EOPNOTSUPP to write.
    User,
}

impl std::str::FromStr for XattrMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(XattrMode::None),
            "user" => Ok(XattrMode::User),
            _ => Err(format!("expected none or user, got {s:?}")),
        }
    }
}

impl Default for ViewConfig {
    fn default() -> Self {
        ViewConfig {
            passthrough: true,
            cache_ttl: Duration::from_secs(5),
            max_userspace_opens: 8192,
            xattrs: XattrMode::None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("lower directory {path}: {source}")]
    Lower {
        path: String,
        source: std::io::Error,
    },
    #[error("lower directory {path}: file handles are not usable ({source}); fusegate needs CAP_DAC_READ_SEARCH and a filesystem with export support (ext4, f2fs, tmpfs, btrfs, xfs)")]
    Handles {
        path: String,
        source: std::io::Error,
    },
}

pub struct StorageView {
    lower: Lower,
    /// Shared with the thread that gives memory back (`forgotten`).
    nodes: Arc<NodeTable>,
    files: FileTable,
    dir_fds: DirFds,
    policy: Arc<Policy>,
    kernel: OnceLock<Arc<KernelHandle>>,
    passthrough: AtomicBool,
    config: ViewConfig,
    /// The process umask: modes the kernel sends are already masked by the caller's umask,
    /// so ours must not mask them again.
    umask: u32,
    owner_warned: AtomicBool,
    /// Nodes forgotten since the allocator was last asked to give memory back.
    forgotten_since_trim: AtomicU64,
    /// The thread giving memory back, if one was started (at most one runs).
    giving_back: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Bumped whenever paths change under known nodes (a directory moved, a `.nomedia` came
    /// or went): cached decisions carry it and are void once it moves on.
    path_epoch: AtomicU64,
    pub stats: ViewStats,
    /// Location ranges by file version, and the redaction counters.
    redaction: Redaction,
    /// Reads lower inodes ahead of READDIRPLUS listings.
    prefetch: prefetch::Prefetch,
    /// Shared (not owned) so that a server started after this one on the same session (an
    /// in-process restart) keeps feeding the listeners of this one.
    pub denials: Arc<DenialLog>,
    pub events: Arc<EventFeed>,
    /// Held shared by every operation that makes a name (create, mkdir, mknod, symlink, link,
    /// rename) and exclusively by an app's move of a directory, from the walk that judges
    /// what lies below it to the rename itself: nothing moves in unjudged (`rename`).
    moves: RwLock<()>,
    /// Wakes a redacted open waiting for the passthrough opens of its file to be released.
    releases: releases::Releases,
}

/// A hold on [`StorageView::moves`], released when dropped.
pub(super) enum Moving<'a> {
    Shared { _guard: RwLockReadGuard<'a, ()> },
    Exclusive { _guard: RwLockWriteGuard<'a, ()> },
}

impl StorageView {
    pub fn new(
        lower_root: &Path,
        policy: Arc<Policy>,
        config: ViewConfig,
    ) -> std::result::Result<Self, ViewError> {
        let shown = lower_root.display().to_string();
        let lower = Lower::open(lower_root).map_err(|source| match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => ViewError::Handles {
                path: shown.clone(),
                source,
            },
            _ => ViewError::Lower {
                path: shown.clone(),
                source,
            },
        })?;
        let st = lower::stat_fd(lower.root()).map_err(|source| ViewError::Lower {
            path: shown,
            source,
        })?;
        let mut root = Node::new(ROOT_ID, b"", *lower.root_handle(), st.st_ino, libc::S_IFDIR);
        root.set_nlookup(1);
        Ok(StorageView {
            lower,
            nodes: Arc::new(NodeTable::new(root)),
            files: FileTable::default(),
            dir_fds: DirFds::new(dirfds::CAPACITY),
            policy,
            kernel: OnceLock::new(),
            passthrough: AtomicBool::new(false),
            config,
            umask: process_umask(),
            owner_warned: AtomicBool::new(false),
            forgotten_since_trim: AtomicU64::new(0),
            giving_back: Mutex::new(None),
            path_epoch: AtomicU64::new(0),
            stats: ViewStats::default(),
            redaction: Redaction::default(),
            prefetch: prefetch::Prefetch::default(),
            denials: Arc::new(DenialLog::default()),
            events: Arc::new(events::new_feed()),
            moves: RwLock::new(()),
            releases: releases::Releases::default(),
        })
    }

    /// Queues denials and file events into `previous`'s queues: a server that takes over from
    /// `previous` in the same process keeps its listeners fed.
    pub fn share_feeds_with(&mut self, previous: &StorageView) {
        self.denials = Arc::clone(&previous.denials);
        self.events = Arc::clone(&previous.events);
    }

    /// Whether opens are being answered with FOPEN_PASSTHROUGH.
    pub fn passthrough_active(&self) -> bool {
        self.passthrough.load(Relaxed)
    }

    /// Nodes the kernel currently holds.
    pub fn node_count(&self) -> usize {
        self.nodes.count()
    }

    pub fn open_files(&self) -> usize {
        self.files.count()
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    fn kernel(&self) -> Option<&Arc<KernelHandle>> {
        self.kernel.get()
    }

    /// Called by the session after INIT: decides whether passthrough is really on.
    fn start(&self, negotiated: &Negotiated, kernel: Arc<KernelHandle>) {
        let mut active = false;
        if negotiated.passthrough && self.config.passthrough {
            // Registering a directory is refused with EISDIR exactly when passthrough is on;
            // EPERM means the kernel dropped it (or we lack CAP_SYS_ADMIN).
            match kernel.backing_open(self.lower.root()) {
                Err(e) if e.raw_os_error() == Some(libc::EISDIR) => active = true,
                Ok(id) => {
                    let _ = kernel.backing_close(id);
                    active = true;
                }
                Err(e) => {
                    log::warn!("kernel accepted passthrough but the backing-file probe failed: {e}")
                }
            }
        }
        self.passthrough.store(active, Relaxed);
        let why = if active {
            "passthrough (file data never leaves the kernel)"
        } else if !self.config.passthrough {
            "userspace I/O (passthrough disabled by configuration)"
        } else {
            "userspace I/O (the kernel did not enable passthrough)"
        };
        log::info!(
            "FUSE protocol 7.{} negotiated; data path: {why}",
            negotiated.minor
        );
        let _ = self.kernel.set(kernel);
    }

    /// Counts a forgotten node; after many (`NodeTable::give_back_period`), gives memory back
    /// to the system (the kernel forgets in bulk under memory pressure, which is exactly when
    /// it matters).
    fn forgotten(&self) {
        if self.forgotten_since_trim.fetch_add(1, Relaxed) + 1 < self.nodes.give_back_period() {
            return;
        }
        self.forgotten_since_trim.store(0, Relaxed);
        self.give_back();
    }

    /// Gives memory back to the system: the restart state's pages of forgotten nodes, and the
    /// allocator's free heap (glibc keeps it otherwise; musl's allocator returns it by
    /// itself). On a thread of its own: the scan of the restart state reads every record (48
    /// MB at a million nodes) and the trim walks the whole heap, milliseconds that no request
    /// should wait for.
    fn give_back(&self) {
        let mut running = self.giving_back.lock().unwrap_or_else(|e| e.into_inner());
        if running.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let nodes = Arc::clone(&self.nodes);
        let started = std::thread::Builder::new()
            .name("fusegate-giveback".into())
            .spawn(move || {
                nodes.release_journal_pages();
                #[cfg(all(target_os = "linux", target_env = "gnu"))]
                // SAFETY: malloc_trim only walks the allocator's own free lists.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        match started {
            Ok(t) => *running = Some(t),
            Err(e) => log::warn!("giving memory back: no thread ({e})"),
        }
    }

    /// Waits for memory being given back (at shutdown, so that a server leaving its session
    /// to the next one never leaves a restart record half rewritten).
    pub fn finish_giving_back(&self) {
        let running = self
            .giving_back
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = running {
            let _ = t.join();
        }
    }

    /// Releases every backing id still registered (at shutdown, after the workers stopped).
    pub fn release_backing(&self) {
        let ids = self.nodes.take_backing_ids();
        if let Some(k) = self.kernel() {
            for id in ids {
                if k.backing_close(id).is_ok() {
                    self.stats.backing_released.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// Drops the kernel's caches for `path` (relative to the storage root) and every cached
    /// decision: for files changed behind the mount's back. Must not be called from a request
    /// thread. Costs the path's depth in node-table lookups (the (parent, name) index).
    pub fn invalidate(&self, path: &[u8]) {
        self.paths_changed();
        let Some(kernel) = self.kernel() else { return };
        let mut parents = vec![ROOT_ID];
        for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let mut next = Vec::new();
            for &p in &parents {
                let _ = kernel.inval_entry(p, comp);
                next.extend(self.nodes.children_named(p, comp));
            }
            parents = next;
            if parents.is_empty() {
                break;
            }
        }
        for id in parents {
            let _ = kernel.inval_inode(id, 0, 0);
        }
    }

    /// After a grant or revoke on `path`: drops the kernel's entry and caches of that one file
    /// (its ancestors' entries, and with them their whole cached subtrees, stay). Cached
    /// decisions need nothing: the uid's policy generation voids that uid's alone. Costs the
    /// path's depth.
    pub fn invalidate_grant(&self, path: &[u8]) {
        let Some(kernel) = self.kernel() else { return };
        let Some(name) = path.rsplit(|&b| b == b'/').find(|c| !c.is_empty()) else {
            return;
        };
        let (parents, nodes) = self.nodes.resolve(path);
        for p in parents {
            let _ = kernel.inval_entry(p, name);
        }
        for id in nodes {
            // The kernel knows the name as looked up: also the spelling on disk.
            let known = self
                .nodes
                .with(id, |n| (n.parent(), n.name.as_bytes().to_vec()));
            if let Some((parent, known)) = known.filter(|(_, n)| n[..] != *name) {
                let _ = kernel.inval_entry(parent, &known);
            }
            let _ = kernel.inval_inode(id, 0, 0);
        }
    }

    /// After an app change: drops the kernel entries that change can affect, the private app
    /// directories `Android/data/<pkg>` and `Android/obb/<pkg>` of its packages (old and new;
    /// dropping an entry drops its cached subtree too). These are the only caller-dependent
    /// entries, and their answers depend only on who holds the package. Costs a few index
    /// lookups per package, whatever the number of nodes.
    pub fn invalidate_packages<S: AsRef<[u8]>>(&self, packages: &[S]) {
        let Some(kernel) = self.kernel() else { return };
        if packages.is_empty() {
            return;
        }
        for (parent, name) in self.nodes.app_dir_entries(packages) {
            let _ = kernel.inval_entry(parent, &name);
        }
    }

    /// After a table-wide change: drop every kernel entry whose answer depends on the caller.
    /// (Cached decisions need no sweep: the policy's generations already void them.) Visits
    /// every node; for app and grant changes use the targeted calls above.
    pub fn invalidate_all(&self) {
        let Some(kernel) = self.kernel() else { return };
        for (parent, name) in self.nodes.caller_dependent_entries() {
            let _ = kernel.inval_entry(parent, &name);
        }
    }
}

/// Helpers every handler uses: node fds, cache lifetimes, who acts.
impl StorageView {
    /// Holds [`StorageView::moves`] shared, for an operation that makes a name. A panic while
    /// holding it leaves no state behind, so poisoning is ignored.
    pub(super) fn naming(&self) -> Moving<'_> {
        Moving::Shared {
            _guard: self.moves.read().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Holds [`StorageView::moves`] exclusively, for a directory's move: its walk must see
    /// every entry below, and no name is made meanwhile.
    pub(super) fn moving_tree(&self) -> Moving<'_> {
        Moving::Exclusive {
            _guard: self.moves.write().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// How long the kernel may cache an entry or attributes.
    pub(crate) fn ttl(&self, caller_dependent: bool) -> Duration {
        if caller_dependent {
            Duration::ZERO
        } else {
            self.config.cache_ttl
        }
    }

    pub(crate) fn open_node(&self, id: u64, flags: i32) -> Result<OwnedFd> {
        let handle = self.nodes.with(id, |n| n.handle()).ok_or(libc::ENOENT)?;
        io(self.lower.open_handle(&handle, flags))
    }

    /// An `O_PATH` fd of a directory node, from the bounded cache when it is hot.
    pub(crate) fn dir_fd(&self, id: u64) -> Result<Arc<OwnedFd>> {
        if let Some(fd) = self.dir_fds.get(id) {
            return Ok(fd);
        }
        let (handle, kind) = self
            .nodes
            .with(id, |n| (n.handle(), n.kind()))
            .ok_or(libc::ENOENT)?;
        if kind != libc::S_IFDIR {
            return Err(libc::ENOTDIR);
        }
        let fd = io(self.lower.open_handle(&handle, libc::O_PATH))?;
        Ok(self.dir_fds.insert(id, fd))
    }

    /// Directory entries whose lower inodes were read ahead of READDIRPLUS listings.
    pub fn prefetched_entries(&self) -> u64 {
        self.prefetch.counts.entries.load(Relaxed)
    }

    pub(crate) fn node_kind(&self, id: u64) -> Result<u32> {
        self.nodes.with(id, |n| n.kind()).ok_or(libc::ENOENT)
    }

    /// Facts of a directory node, computed once per call and shared by its children.
    pub(crate) fn dir_facts(&self, id: u64) -> Result<Facts> {
        self.facts(Subject::Node(id))
    }

    /// Records the creator of a new file or directory (apps only: files made by root, the
    /// platform or POSIX users have no owner tag).
    pub(crate) fn record_creator(&self, uid: u32, fd: BorrowedFd<'_>) {
        let snapshot = self.policy.snapshot();
        if snapshot.class(uid) == CallerClass::App {
            self.record_owner(fd, &snapshot.owner_tag(uid));
        }
    }

    /// The caller's credentials if it is a POSIX caller (the kernel judges it as itself).
    pub(crate) fn posix_creds(&self, ctx: &Ctx) -> Option<Creds> {
        (self.class(ctx.uid) == CallerClass::Posix).then(|| Creds::of(ctx))
    }

    /// Queues a file event if someone listens (the path work is skipped otherwise).
    pub(crate) fn emit(&self, event: impl FnOnce() -> Result<FileEvent>) {
        if self.events.listening() {
            if let Ok(e) = event() {
                self.events.push(|| e);
            }
        }
    }

    /// The relative path of `name` in the directory node `parent`, as event text.
    pub(crate) fn child_path_text(&self, parent: u64, name: &[u8]) -> Result<String> {
        let mut path = self.path_of(parent)?;
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        Ok(events::text(&path))
    }

    /// Acts as `creds` on this thread until the guard drops (nothing for other callers).
    pub(crate) fn act_as(&self, creds: Option<&Creds>) -> Result<Option<ActAs>> {
        creds.map(|c| io(ActAs::new(c))).transpose()
    }
}

/// Reads the umask without changing it (a JVM host must not see it flip).
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}
