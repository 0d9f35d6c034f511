//! Android scoped-storage policy: a pure function of (caller, operation, path, file facts,
//! app table, grants) to a decision. No I/O, no FUSE types, no JNI.
//!
//! STUB: the API below is the contract the storage view and the faces use; the rules are being
//! written (issue 3). Until then every decision is Allow.

use std::sync::{Arc, RwLock};

/// Permission bits; the numeric values are the Java API's constants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u32);

impl Permissions {
    pub const READ_IMAGES: u32 = 1;
    pub const READ_VIDEO: u32 = 2;
    pub const READ_AUDIO: u32 = 4;
    pub const ACCESS_MEDIA_LOCATION: u32 = 8;
    pub const WRITE_MEDIA: u32 = 16;
    pub const MANAGE_EXTERNAL_STORAGE: u32 = 32;
    pub const LEGACY_STORAGE: u32 = 64;
    pub const ALL: u32 = 127;

    /// `None` if an unknown bit is set.
    pub fn from_bits(bits: u32) -> Option<Self> {
        (bits & !Self::ALL == 0).then_some(Permissions(bits))
    }
    pub fn bits(self) -> u32 {
        self.0
    }
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub uid: u32,
    pub packages: Vec<String>,
    pub permissions: Permissions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

/// The whole configuration: what a policy file or Java pushes.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub apps: Vec<App>,
    /// (uid, normalized relative path, access)
    pub grants: Vec<(u32, String, Access)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("invalid path {0:?}: must be relative, without '..' or empty components")]
    BadPath(String),
    #[error("invalid uid {0}")]
    BadUid(i64),
    #[error("unknown permission bits {0:#x}")]
    BadPermissions(u32),
    #[error("line {line}: {message}")]
    Config { line: usize, message: String },
}

/// What the caller wants to do to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Resolve the name / read its attributes.
    Lookup,
    /// Open for reading.
    Read,
    /// Open for writing, truncate, chmod, utimes, set xattr.
    Write,
    /// Create a file (create, mknod, symlink, the new name of a link) at the target path.
    Create,
    /// Create a directory at the target path.
    Mkdir,
    /// Unlink a file or remove a directory (`Target::is_dir`).
    Delete,
    /// The old name of a rename.
    RenameFrom,
    /// The new name of a rename (the target facts describe the object being moved).
    RenameTo,
    /// Open a directory for listing.
    ListDir,
}

/// Facts about the object, gathered by the storage view (the only part that does I/O).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Relative to the storage root, components joined by '/', no leading or trailing '/';
    /// empty for the root itself. Raw bytes of the lower names.
    pub path: &'a [u8],
    pub is_dir: bool,
    /// The owner tag recorded on the lower file at creation (see `Snapshot::owner_tag`).
    pub owner: Option<&'a [u8]>,
    /// Some ancestor directory holds a `.nomedia` file.
    pub under_nomedia: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed, but location metadata must be redacted: never passthrough.
    AllowRedacted,
    /// Denied with this (positive) errno.
    Deny(i32),
}

/// An immutable view of the table, shared by all workers; replaced whole on every change.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub table: Table,
}

impl Snapshot {
    pub fn decide(&self, _uid: u32, _op: Op, _target: &Target<'_>) -> Decision {
        Decision::Allow
    }

    /// Whether a directory listing shows the target to this caller.
    pub fn listed(&self, uid: u32, target: &Target<'_>) -> bool {
        self.decide(uid, Op::Lookup, target) == Decision::Allow
    }

    /// What the view records on a file created by `uid` (the owner xattr value).
    pub fn owner_tag(&self, uid: u32) -> Vec<u8> {
        uid.to_string().into_bytes()
    }
}

/// Callers that bypass app rules entirely (root, system uids, shell): the view skips the
/// policy for them.
pub fn bypasses(uid: u32) -> bool {
    uid % 100_000 < 10_000
}

/// Whether the answer for this path can depend on who asks: the kernel must then not cache
/// the entry (entry timeout 0), since its caches are shared by all apps.
pub fn caller_dependent(_target: &Target<'_>) -> bool {
    false
}

/// The live policy: a snapshot swapped atomically on each change, and a generation counter.
#[derive(Debug, Default)]
pub struct Policy {
    current: RwLock<Arc<Snapshot>>,
    generation: std::sync::atomic::AtomicU64,
}

impl Policy {
    pub fn new(table: Table) -> Self {
        Policy {
            current: RwLock::new(Arc::new(Snapshot { table })),
            generation: Default::default(),
        }
    }
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
    fn update(&self, f: impl FnOnce(&mut Table)) {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut table = cur.table.clone();
        f(&mut table);
        *cur = Arc::new(Snapshot { table });
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
    pub fn set_app(&self, app: App) -> Result<(), PolicyError> {
        self.update(|t| {
            t.apps.retain(|a| a.uid != app.uid);
            t.apps.push(app)
        });
        Ok(())
    }
    pub fn remove_app(&self, uid: u32) {
        self.update(|t| t.apps.retain(|a| a.uid != uid));
    }
    pub fn grant(&self, uid: u32, path: &str, access: Access) -> Result<(), PolicyError> {
        let path = path.to_string();
        self.update(|t| t.grants.push((uid, path, access)));
        Ok(())
    }
    pub fn revoke(&self, uid: u32, path: &str) -> Result<(), PolicyError> {
        self.update(|t| t.grants.retain(|g| !(g.0 == uid && g.1 == path)));
        Ok(())
    }
    pub fn replace(&self, table: Table) {
        self.update(|t| *t = table);
    }
}

/// Parses a policy file (TOML). Errors carry the line number.
pub fn parse_config(_text: &str) -> Result<Table, PolicyError> {
    Ok(Table::default())
}
