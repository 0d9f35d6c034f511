//! One node: what the table knows of a lower inode the kernel holds under one name, kept
//! small (a node per inode the kernel holds, millions on a phone): the name inline when
//! short, and the facts only app callers need allocated on first use.

use super::super::lower::{CompactHandle, Handle};
use super::super::recover::{Record, RecordedName};
use crate::policy::Verdicts;
use std::num::NonZeroI32;

/// Who created a file or directory through the mount, read lazily from the lower xattr.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OwnerFact {
    #[default]
    Unknown,
    None,
    Tag(Box<[u8]>),
}

/// Whether a directory holds a `.nomedia` file, checked lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Nomedia {
    #[default]
    Unknown,
    No,
    Yes,
}

/// Every decision about a node for one caller, valid while `stamp` (the policy generation and
/// the view's path epoch) is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedVerdicts {
    pub uid: u32,
    pub stamp: u64,
    pub verdicts: Verdicts,
}

/// Callers remembered per node: enough that two apps alternating on a file, or one app's
/// getattr-then-open, never evict each other.
const DECISIONS: usize = 4;

/// What only app callers need: allocated on first use, so nodes that only root and system
/// services touch stay small.
#[derive(Debug, Default)]
pub(super) struct AppFacts {
    owner: OwnerFact,
    decisions: [Option<CachedVerdicts>; DECISIONS],
    /// The slot the next new caller takes (round robin).
    next: u8,
}

/// A name, inline when short (most are), on the heap otherwise.
#[derive(Clone, PartialEq, Eq)]
pub enum NodeName {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<[u8]>),
}

impl NodeName {
    pub fn new(name: &[u8]) -> Self {
        if name.len() <= 22 {
            let mut bytes = [0u8; 22];
            bytes[..name.len()].copy_from_slice(name);
            NodeName::Inline {
                len: name.len() as u8,
                bytes,
            }
        } else {
            NodeName::Heap(name.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            NodeName::Inline { len, bytes } => &bytes[..*len as usize],
            NodeName::Heap(b) => b,
        }
    }
}

impl std::fmt::Debug for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

pub(super) const CALLER_DEPENDENT: u8 = 1 << 0;
const NOMEDIA_KNOWN: u8 = 1 << 1;
const NOMEDIA_YES: u8 = 1 << 2;
/// One name of a multiply-linked file: found by (inode, parent, name), never by inode alone.
pub(super) const LINKED_NAME: u8 = 1 << 3;

#[derive(Debug)]
pub struct Node {
    pub ino: u64,
    pub name: NodeName,
    handle: CompactHandle,
    pub(super) app: Option<Box<AppFacts>>,
    /// The parent's node id: ids stay below 2^32 (`NodeTable`), which keeps a node at 80 bytes.
    parent: u32,
    /// The passthrough backing id registered for this inode, shared by all its opens.
    pub(super) backing: Option<NonZeroI32>,
    /// Kernel references. Sticks at `u32::MAX`: a node looked up that often stays until
    /// unmount, never goes while the kernel may still hold it.
    nlookup: u32,
    /// Opens currently answered with FOPEN_PASSTHROUGH / in userspace.
    pub passthrough_opens: u32,
    pub userspace_opens: u32,
    /// `st_mode & S_IFMT`, whose low 12 bits are zero, shifted right by 8.
    kind: u8,
    pub(super) flags: u8,
}

/// A parent's node id as a node keeps it. Every id the table hands out fits; anything else
/// (no node has it) becomes 0, which is no node's id either, so no path is built through it.
fn parent_id(id: u64) -> u32 {
    u32::try_from(id).unwrap_or(0)
}

impl Node {
    /// A node of `parent/name`; `parent` is a node id, below 2^32.
    pub fn new(parent: u64, name: &[u8], handle: Handle, ino: u64, kind: u32) -> Self {
        Node {
            parent: parent_id(parent),
            ino,
            name: NodeName::new(name),
            handle: CompactHandle::new(handle),
            app: None,
            backing: None,
            nlookup: 0,
            passthrough_opens: 0,
            userspace_opens: 0,
            kind: ((kind & libc::S_IFMT) >> 8) as u8,
            flags: 0,
        }
    }

    /// The lower file's handle.
    pub fn handle(&self) -> Handle {
        self.handle.get()
    }

    pub fn parent(&self) -> u64 {
        u64::from(self.parent)
    }

    pub fn nlookup(&self) -> u64 {
        u64::from(self.nlookup)
    }

    pub fn set_nlookup(&mut self, n: u64) {
        self.nlookup = u32::try_from(n).unwrap_or(u32::MAX);
    }

    pub(super) fn looked_up(&mut self) {
        self.nlookup = self.nlookup.saturating_add(1);
    }

    /// Drops `n` kernel references; returns whether none is left.
    pub(super) fn forgotten(&mut self, n: u64) -> bool {
        if self.nlookup != u32::MAX {
            self.nlookup = u32::try_from(u64::from(self.nlookup).saturating_sub(n)).unwrap_or(0);
        }
        self.nlookup == 0
    }

    /// `st_mode & S_IFMT`.
    pub fn kind(&self) -> u32 {
        u32::from(self.kind) << 8
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }

    pub fn backing_id(&self) -> Option<i32> {
        self.backing.map(NonZeroI32::get)
    }

    /// Records the inode's backing id (ids from the kernel are positive).
    pub fn set_backing_id(&mut self, id: i32) {
        self.backing = NonZeroI32::new(id);
    }

    pub fn take_backing_id(&mut self) -> Option<i32> {
        self.backing.take().map(NonZeroI32::get)
    }

    /// The kernel must not cache this entry: the answer depends on the caller.
    pub fn caller_dependent(&self) -> bool {
        self.flags & CALLER_DEPENDENT != 0
    }

    pub(super) fn set_caller_dependent(&mut self, on: bool) {
        self.flags = (self.flags & !CALLER_DEPENDENT) | if on { CALLER_DEPENDENT } else { 0 };
    }

    pub fn nomedia(&self) -> Nomedia {
        match (
            self.flags & NOMEDIA_KNOWN != 0,
            self.flags & NOMEDIA_YES != 0,
        ) {
            (false, _) => Nomedia::Unknown,
            (true, false) => Nomedia::No,
            (true, true) => Nomedia::Yes,
        }
    }

    pub fn set_nomedia(&mut self, fact: Nomedia) {
        self.flags &= !(NOMEDIA_KNOWN | NOMEDIA_YES);
        self.flags |= match fact {
            Nomedia::Unknown => 0,
            Nomedia::No => NOMEDIA_KNOWN,
            Nomedia::Yes => NOMEDIA_KNOWN | NOMEDIA_YES,
        };
    }

    pub fn owner(&self) -> OwnerFact {
        self.app
            .as_ref()
            .map(|a| a.owner.clone())
            .unwrap_or_default()
    }

    pub fn set_owner(&mut self, fact: OwnerFact) {
        self.app.get_or_insert_with(Default::default).owner = fact;
    }

    /// The cached verdicts for `uid`, if still valid under `stamp`.
    pub fn verdicts(&self, uid: u32, stamp: u64) -> Option<Verdicts> {
        let app = self.app.as_ref()?;
        app.decisions
            .iter()
            .flatten()
            .find(|c| c.uid == uid && c.stamp == stamp)
            .map(|c| c.verdicts)
    }

    pub fn set_verdicts(&mut self, entry: CachedVerdicts) {
        let app = self.app.get_or_insert_with(Default::default);
        let slot = app
            .decisions
            .iter()
            .position(|c| c.map_or(true, |c| c.uid == entry.uid || c.stamp != entry.stamp))
            .unwrap_or_else(|| {
                let slot = app.next as usize % DECISIONS;
                app.next = app.next.wrapping_add(1);
                slot
            });
        app.decisions[slot] = Some(entry);
    }

    pub fn clear_verdicts(&mut self) {
        if let Some(app) = &mut self.app {
            app.decisions = Default::default();
        }
    }

    /// What the restart state keeps of this node.
    pub(super) fn record(&self) -> Record {
        Record {
            parent: self.parent(),
            ino: self.ino,
            nlookup: self.nlookup(),
            backing: self.backing_id().unwrap_or(0),
            kind: self.kind() as u16,
            flags: self.flags & (CALLER_DEPENDENT | LINKED_NAME),
            handle: self.handle(),
            name: RecordedName::Whole(self.name.as_bytes().to_vec()),
        }
    }

    /// Restored by a new server without its name (the root's is empty too, but no path asks
    /// for it): no path can be built through it until the kernel looks it up again.
    pub fn is_unnamed(&self) -> bool {
        self.name.as_bytes().is_empty()
    }

    pub(super) fn linked_name(&self) -> bool {
        self.flags & LINKED_NAME != 0
    }

    pub(super) fn is_named(&self, parent: u64, name: &[u8]) -> bool {
        self.parent() == parent && self.name.as_bytes() == name
    }

    /// The node now lives at `parent/name` (a rename).
    pub(super) fn moved_to(&mut self, parent: u64, name: &[u8]) {
        if !self.is_named(parent, name) {
            self.parent = parent_id(parent);
            self.name = NodeName::new(name);
            self.clear_verdicts();
        }
    }
}
