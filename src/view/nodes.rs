//! The node table: FUSE node id -> what we know of the lower inode, with the kernel's lookup
//! count. Sharded by inode number so that a node and its inode index share one lock; no lock
//! is ever held across a system call.
//!
//! Memory matters here (one node per inode the kernel holds, millions on a phone): nodes live
//! in a slab per shard, names and handles are stored inline, the facts only app callers need
//! are allocated on first use, and a shard gives its memory back when the kernel forgets.

use super::lower::Handle;
use super::recover::{self, Record};
use crate::fuse::abi::ROOT_ID;
use crate::policy::{name_hash, names_match, Verdicts};
use crate::state::StateMap;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroI32;
use std::sync::Mutex;
use std::sync::{Arc, OnceLock};

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

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
struct AppFacts {
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

const CALLER_DEPENDENT: u8 = 1 << 0;
const NOMEDIA_KNOWN: u8 = 1 << 1;
const NOMEDIA_YES: u8 = 1 << 2;
/// One name of a multiply-linked file: found by (inode, parent, name), never by inode alone.
const LINKED_NAME: u8 = 1 << 3;

#[derive(Debug)]
pub struct Node {
    pub parent: u64,
    pub ino: u64,
    pub name: NodeName,
    pub handle: Handle,
    app: Option<Box<AppFacts>>,
    /// The passthrough backing id registered for this inode, shared by all its opens.
    backing: Option<NonZeroI32>,
    pub nlookup: u64,
    /// Opens currently answered with FOPEN_PASSTHROUGH / in userspace.
    pub passthrough_opens: u32,
    pub userspace_opens: u32,
    /// `st_mode & S_IFMT` (which fits 16 bits).
    kind: u16,
    flags: u8,
}

impl Node {
    pub fn new(parent: u64, name: &[u8], handle: Handle, ino: u64, kind: u32) -> Self {
        Node {
            parent,
            ino,
            name: NodeName::new(name),
            handle,
            app: None,
            backing: None,
            nlookup: 0,
            passthrough_opens: 0,
            userspace_opens: 0,
            kind: kind as u16,
            flags: 0,
        }
    }

    /// `st_mode & S_IFMT`.
    pub fn kind(&self) -> u32 {
        self.kind as u32
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

    fn set_caller_dependent(&mut self, on: bool) {
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
    fn record(&self) -> Record {
        Record {
            parent: self.parent,
            ino: self.ino,
            nlookup: self.nlookup,
            backing: self.backing_id().unwrap_or(0),
            kind: self.kind,
            flags: self.flags & (CALLER_DEPENDENT | LINKED_NAME),
            handle: self.handle,
            name: Some(self.name.as_bytes().to_vec()),
        }
    }

    fn linked_name(&self) -> bool {
        self.flags & LINKED_NAME != 0
    }

    fn is_named(&self, parent: u64, name: &[u8]) -> bool {
        self.parent == parent && self.name.as_bytes() == name
    }

    /// The node now lives at `parent/name` (a rename).
    fn moved_to(&mut self, parent: u64, name: &[u8]) {
        if !self.is_named(parent, name) {
            self.parent = parent;
            self.name = NodeName::new(name);
            self.clear_verdicts();
        }
    }
}

/// Slots are allocated in chunks of this many: growing never copies nodes or leaves freed
/// buffers behind, and a shard's slack is at most one chunk.
const CHUNK: usize = 64;

type Chunk = Box<[Option<Node>; CHUNK]>;

/// One shard: a slab of nodes (slot i is node id `(i + 1) << SHARD_BITS | shard`) and the
/// index from inode number to slot.
#[derive(Default)]
struct Shard {
    chunks: Vec<Chunk>,
    /// Slots in use lie below this; the chunks beyond it are given back.
    len: usize,
    /// Free slots below `len`, lowest first so the slab stays dense and its tail can go.
    /// Entries at or above `len` are stale and skipped.
    free: BinaryHeap<Reverse<u32>>,
    by_ino: HashMap<u64, u32>,
    /// Nodes of the names of multiply-linked files, by inode: a decision is about a path, so
    /// each name the kernel knows is its own node (sharing the inode number in `stat`).
    linked: HashMap<u64, Vec<u32>>,
    used: usize,
}

impl Shard {
    fn slot_mut(&mut self, slot: usize) -> Option<&mut Option<Node>> {
        if slot >= self.len {
            return None;
        }
        self.chunks
            .get_mut(slot / CHUNK)
            .map(|c| &mut c[slot % CHUNK])
    }

    fn get_mut(&mut self, slot: u32) -> Option<&mut Node> {
        self.slot_mut(slot as usize)?.as_mut()
    }

    fn allocate(&mut self, node: Node) -> u32 {
        self.used += 1;
        while let Some(Reverse(slot)) = self.free.pop() {
            if let Some(s @ None) = self.slot_mut(slot as usize) {
                *s = Some(node);
                return slot;
            }
        }
        if self.len == self.chunks.len() * CHUNK {
            self.chunks.push(Box::new(std::array::from_fn(|_| None)));
        }
        self.len += 1;
        let slot = self.len - 1;
        self.chunks[slot / CHUNK][slot % CHUNK] = Some(node);
        slot as u32
    }

    fn release(&mut self, slot: u32) -> Option<Node> {
        let node = self.slot_mut(slot as usize)?.take()?;
        self.used -= 1;
        self.free.push(Reverse(slot));
        self.give_back();
        Some(node)
    }

    /// Returns memory as the kernel forgets: free slots at the end are cut off with their
    /// chunks, and the index and free list shrink once mostly empty. Each step is amortized.
    fn give_back(&mut self) {
        while self.len > 0 && matches!(self.slot_mut(self.len - 1), Some(None)) {
            self.len -= 1;
        }
        self.chunks.truncate(self.len.div_ceil(CHUNK));
        if self.free.len() > 2 * (self.len - self.used) + CHUNK {
            let len = self.len as u32;
            self.free.retain(|Reverse(s)| *s < len);
            self.free.shrink_to_fit();
        }
        if self.by_ino.capacity() > 4 * self.used + CHUNK {
            self.by_ino.shrink_to_fit();
        }
        if self.chunks.capacity() > 2 * self.chunks.len() + 4 {
            self.chunks.shrink_to_fit();
        }
    }
}

/// Hashes a key that is already a hash: one multiply, so that the map's bucket and tag bits
/// both see well-mixed bits.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyBuild = BuildHasherDefault<KeyHasher>;

/// Which shard of the name index and which key in it a (parent, folded name) has.
fn name_key(parent: u64, name: &[u8]) -> (usize, u32) {
    let mut k = (parent.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ name_hash(name))
        .wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 29;
    ((k >> 40) as usize & (SHARDS - 1), k as u32)
}

/// One shard of the (parent, folded name) -> nodes index: 8 bytes a node in the common case
/// (memory: RSS after 100,000 lookups must stay under 20 MiB). A key is a 32-bit hash, so a
/// hit is only a candidate: callers check the node's real parent and name.
#[derive(Default)]
struct NameShard {
    /// The first node of each key, as a 32-bit node id.
    first: HashMap<u32, u32, KeyBuild>,
    /// Further nodes of a key (case variants, hash collisions, a reused inode number's old
    /// node) and ids too large for 32 bits: rare.
    more: HashMap<u32, Vec<u64>, KeyBuild>,
}

impl NameShard {
    fn add(&mut self, key: u32, id: u64) {
        if let Ok(small) = u32::try_from(id) {
            if let std::collections::hash_map::Entry::Vacant(e) = self.first.entry(key) {
                e.insert(small);
                return;
            }
        }
        self.more.entry(key).or_default().push(id);
    }

    fn remove(&mut self, key: u32, id: u64) {
        if self.first.get(&key).is_some_and(|&f| u64::from(f) == id) {
            self.first.remove(&key);
        } else if let Some(ids) = self.more.get_mut(&key) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.more.remove(&key);
            }
        }
        if self.first.capacity() > 4 * self.first.len() + CHUNK {
            self.first.shrink_to_fit();
        }
    }

    fn get(&self, key: u32, out: &mut Vec<u64>) {
        out.extend(self.first.get(&key).map(|&f| u64::from(f)));
        out.extend(self.more.get(&key).into_iter().flatten());
    }
}

pub struct NodeTable {
    root: Mutex<Node>,
    shards: Box<[Mutex<Shard>]>,
    /// (parent, folded name) -> nodes, kept in step by register, forget and renamed. Locked
    /// only after a node shard (never the other way round), and never held while one is taken.
    names: Box<[Mutex<NameShard>]>,
    /// Where every node change is recorded for a server that takes over after this one
    /// (`recover.rs`); `None` when nothing outlives this process.
    journal: OnceLock<Arc<StateMap>>,
}

fn shard_of_ino(ino: u64) -> usize {
    // Fibonacci hashing spreads sequential inode numbers over the shards.
    (ino.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARD_BITS)) as usize
}

fn split(id: u64) -> Option<(usize, u32)> {
    let slot = (id >> SHARD_BITS).checked_sub(1)?;
    Some(((id as usize) & (SHARDS - 1), u32::try_from(slot).ok()?))
}

fn join(shard: usize, slot: u32) -> u64 {
    ((slot as u64 + 1) << SHARD_BITS) | shard as u64
}

/// What a lookup found on the lower filesystem.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub parent: u64,
    pub name: &'a [u8],
    pub handle: Handle,
    pub ino: u64,
    /// `st_mode & S_IFMT`.
    pub kind: u32,
    pub nlink: u64,
}

/// What a lookup found in the table.
pub struct Registered {
    pub nodeid: u64,
    pub caller_dependent: bool,
}

/// A node the kernel forgot whose backing id must now be closed.
pub struct Forgotten {
    pub backing_id: Option<i32>,
}

impl NodeTable {
    pub fn new(root: Node) -> Self {
        NodeTable {
            root: Mutex::new(root),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            names: (0..SHARDS)
                .map(|_| Mutex::new(NameShard::default()))
                .collect(),
            journal: OnceLock::new(),
        }
    }

    /// Records every node change in `state` from now on (and every node known now).
    pub fn attach_journal(&self, state: Arc<StateMap>) {
        if self.journal.set(state).is_err() {
            log::error!("the node table already records into a restart state");
            return;
        }
        self.each(|id, n| {
            if let Some(j) = self.journal.get() {
                recover::write(j, id, &n.record())
            }
        });
    }

    /// Called with the node's shard locked, after every change of what a record holds.
    fn persist(&self, id: u64, node: &Node) {
        if let Some(j) = self.journal.get() {
            recover::write(j, id, &node.record());
        }
    }

    fn unpersist(&self, id: u64) {
        if let Some(j) = self.journal.get() {
            recover::clear(j, id);
        }
    }

    /// After how many forgets memory is given back: an eighth of the most nodes ever
    /// recorded, so that the scan of the records (one read per record ever written) costs at
    /// most eight record reads per forget, and a small table gives back as soon as a big one
    /// does in proportion. Without restart state only the allocator trim runs, whose cost
    /// does not depend on the nodes.
    pub fn give_back_period(&self) -> u64 {
        const LEAST: u64 = 1024;
        const MOST: u64 = 16 * 1024;
        match self.journal.get() {
            Some(j) => (j.high_water() / 8).clamp(LEAST, MOST),
            None => MOST,
        }
    }

    /// Gives back the restart state's pages whose nodes the kernel all forgot (called with
    /// the allocator trim).
    pub fn release_journal_pages(&self) {
        let Some(j) = self.journal.get() else {
            return;
        };
        // The scan reads every record: worth it only once most of them are empty.
        if self.count() as u64 * 2 > j.high_water() {
            return;
        }
        // A node registered into a freed page meanwhile may have lost its record: write the
        // live nodes of those pages again, each under its shard's lock.
        for range in recover::release_empty(j) {
            for id in range {
                let Some((si, slot)) = split(id) else {
                    continue;
                };
                let mut shard = self.lock(si);
                if let Some(node) = shard.get_mut(slot) {
                    recover::write(j, id, &node.record());
                }
            }
        }
    }

    /// Fills an empty table with recorded nodes, at their ids. Returns `(id, parent, ino)` of
    /// the nodes whose names were not recorded (see [`NodeTable::rename_restored`]).
    pub fn restore(&self, records: Vec<(u64, Record)>) -> Vec<(u64, u64, u64)> {
        let mut unnamed = Vec::new();
        for (id, r) in records {
            let Some((si, slot)) = split(id) else {
                continue;
            };
            if si != shard_of_ino(r.ino) || r.parent == 0 {
                continue;
            }
            let mut node = Node::new(r.parent, b"", r.handle, r.ino, u32::from(r.kind));
            node.nlookup = r.nlookup;
            node.flags = r.flags & (CALLER_DEPENDENT | LINKED_NAME);
            node.set_backing_id(r.backing);
            match &r.name {
                Some(n) => node.name = NodeName::new(n),
                None => unnamed.push((id, r.parent, r.ino)),
            }
            let mut shard = self.lock(si);
            let slot_us = slot as usize;
            while shard.chunks.len() * CHUNK <= slot_us {
                shard.chunks.push(Box::new(std::array::from_fn(|_| None)));
            }
            if shard.len <= slot_us {
                shard.len = slot_us + 1;
            }
            let linked = node.linked_name();
            let name = node.name.as_bytes().to_vec();
            shard.chunks[slot_us / CHUNK][slot_us % CHUNK] = Some(node);
            shard.used += 1;
            if linked {
                shard.linked.entry(r.ino).or_default().push(slot);
            } else {
                shard.by_ino.insert(r.ino, slot);
            }
            drop(shard);
            self.name_added(id, r.parent, &name);
        }
        for i in 0..SHARDS {
            let mut shard = self.lock(i);
            let len = shard.len;
            let free: Vec<u32> = (0..len as u32)
                .filter(|&s| matches!(shard.slot_mut(s as usize), Some(None)))
                .collect();
            shard.free.extend(free.into_iter().map(Reverse));
        }
        unnamed
    }

    /// Gives restored nodes the names found for them.
    pub fn rename_restored(&self, found: &[(u64, Vec<u8>)]) {
        for (id, name) in found {
            let Some((si, slot)) = split(*id) else {
                continue;
            };
            let mut shard = self.lock(si);
            if let Some(node) = shard.get_mut(slot) {
                let parent = node.parent;
                self.move_node(*id, node, parent, name);
                self.persist(*id, node);
            }
        }
    }

    fn names(&self, parent: u64, name: &[u8]) -> (std::sync::MutexGuard<'_, NameShard>, u32) {
        let (i, key) = name_key(parent, name);
        (self.names[i].lock().unwrap_or_else(|e| e.into_inner()), key)
    }

    fn name_added(&self, id: u64, parent: u64, name: &[u8]) {
        let (mut shard, key) = self.names(parent, name);
        shard.add(key, id);
    }

    fn name_removed(&self, id: u64, parent: u64, name: &[u8]) {
        let (mut shard, key) = self.names(parent, name);
        shard.remove(key, id);
    }

    /// Moves node `id` to `parent/name`, keeping the name index in step.
    fn move_node(&self, id: u64, node: &mut Node, parent: u64, name: &[u8]) {
        if !node.is_named(parent, name) {
            self.name_removed(id, node.parent, node.name.as_bytes());
            node.moved_to(parent, name);
            self.name_added(id, parent, name);
        }
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard lock cannot leave a node half-written in a way later
        // readers trip over (every update is a plain field store), so poisoning is ignored.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the node, or `None` if the id is unknown (a stale or bogus id from the
    /// kernel is an error reply, never a crash).
    pub fn with<R>(&self, id: u64, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        if id == ROOT_ID {
            return Some(f(&mut self.root.lock().unwrap_or_else(|e| e.into_inner())));
        }
        let (shard, slot) = split(id)?;
        let mut shard = self.lock(shard);
        let node = shard.get_mut(slot)?;
        let backing = node.backing;
        let r = f(node);
        if node.backing != backing {
            self.persist(id, node);
        }
        Some(r)
    }

    /// Records one more kernel reference to the inode `ino` reached as `parent/name`, reusing
    /// its node if the inode is already known (same handle), else creating one. A file with
    /// several names (`nlink > 1`) gets a node per name, so that no decision depends on which
    /// name was looked up last.
    pub fn register(&self, found: Found<'_>, caller_dependent: bool) -> Registered {
        let Found {
            parent,
            name,
            handle,
            ino,
            kind,
            nlink,
        } = found;
        let si = shard_of_ino(ino);
        let mut shard = self.lock(si);
        let by_name = kind != libc::S_IFDIR && nlink > 1;
        let known = if by_name {
            let named = |shard: &mut Shard, slot: u32| {
                shard
                    .get_mut(slot)
                    .is_some_and(|n| n.handle == handle && n.is_named(parent, name))
            };
            let primary = shard
                .by_ino
                .get(&ino)
                .copied()
                .filter(|&s| named(&mut shard, s));
            primary.or_else(|| {
                let slots = shard.linked.get(&ino).cloned().unwrap_or_default();
                slots.into_iter().find(|&s| named(&mut shard, s))
            })
        } else {
            shard.by_ino.get(&ino).copied().filter(|&slot| {
                shard
                    .get_mut(slot)
                    .is_some_and(|n| n.handle == handle && !n.linked_name())
            })
        };
        if let Some(slot) = known {
            if let Some(node) = shard.get_mut(slot) {
                node.nlookup += 1;
                self.move_node(join(si, slot), node, parent, name);
                node.set_caller_dependent(caller_dependent);
                self.persist(join(si, slot), node);
                return Registered {
                    nodeid: join(si, slot),
                    caller_dependent,
                };
            }
        }
        // New inode, a new name of a linked one, or the number was reused by a new inode
        // (different handle): an old node stays until the kernel forgets it, but the index
        // points to the new one.
        let mut node = Node::new(parent, name, handle, ino, kind);
        node.nlookup = 1;
        node.set_caller_dependent(caller_dependent);
        if by_name {
            node.flags |= LINKED_NAME;
        }
        let slot = shard.allocate(node);
        if let Some(node) = shard.get_mut(slot) {
            self.persist(join(si, slot), node);
        }
        if by_name {
            shard.linked.entry(ino).or_default().push(slot);
        } else {
            shard.by_ino.insert(ino, slot);
        }
        self.name_added(join(si, slot), parent, name);
        Registered {
            nodeid: join(si, slot),
            caller_dependent,
        }
    }

    /// Drops `n` kernel references. Returns the node's resources when it is gone; its id may
    /// then be handed out again (the kernel no longer knows it).
    pub fn forget(&self, id: u64, n: u64) -> Option<Forgotten> {
        if id == ROOT_ID {
            return None;
        }
        let (si, slot) = split(id)?;
        let mut shard = self.lock(si);
        let node = shard.get_mut(slot)?;
        node.nlookup = node.nlookup.saturating_sub(n);
        if node.nlookup > 0 {
            self.persist(id, node);
            return None;
        }
        let node = shard.release(slot)?;
        self.unpersist(id);
        self.name_removed(id, node.parent, node.name.as_bytes());
        if node.linked_name() {
            if let Some(slots) = shard.linked.get_mut(&node.ino) {
                slots.retain(|&s| s != slot);
                if slots.is_empty() {
                    shard.linked.remove(&node.ino);
                }
            }
        } else if shard.by_ino.get(&node.ino) == Some(&slot) {
            shard.by_ino.remove(&node.ino);
        }
        Some(Forgotten {
            backing_id: node.backing_id(),
        })
    }

    /// The node of a known inode (by inode alone: not one of several names).
    #[cfg(test)]
    pub fn find_ino(&self, ino: u64) -> Option<u64> {
        let si = shard_of_ino(ino);
        self.lock(si).by_ino.get(&ino).map(|&slot| join(si, slot))
    }

    /// A rename moved the inode `ino` from `from` to `to`: moves the node of that name (the
    /// inode's node, or the node of that one name of a linked file). Only a node named `from`
    /// moves: the inode's first node may carry another of its names (it was looked up before
    /// a second link existed), and that name did not move.
    pub fn renamed(&self, ino: u64, from: (u64, &[u8]), to: (u64, &[u8])) {
        let si = shard_of_ino(ino);
        let mut shard = self.lock(si);
        let mut slots: Vec<u32> = shard.linked.get(&ino).cloned().unwrap_or_default();
        slots.extend(shard.by_ino.get(&ino).copied());
        for slot in slots {
            if let Some(node) = shard.get_mut(slot) {
                if node.is_named(from.0, from.1) {
                    self.move_node(join(si, slot), node, to.0, to.1);
                    self.persist(join(si, slot), node);
                }
            }
        }
    }

    /// Number of nodes the kernel holds (root excluded).
    pub fn count(&self) -> usize {
        (0..SHARDS).map(|i| self.lock(i).used).sum()
    }

    fn each(&self, mut f: impl FnMut(u64, &mut Node)) {
        for i in 0..SHARDS {
            let mut shard = self.lock(i);
            let len = shard.len;
            for (slot, node) in shard
                .chunks
                .iter_mut()
                .flat_map(|c| c.iter_mut())
                .enumerate()
                .take(len)
            {
                if let Some(node) = node {
                    f(join(i, slot as u32), node);
                }
            }
        }
    }

    /// Every registered backing id (for the final release at shutdown), cleared.
    pub fn take_backing_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = Vec::new();
        ids.extend(
            self.root
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take_backing_id(),
        );
        self.each(|id, n| {
            if let Some(b) = n.take_backing_id() {
                ids.push(b);
                self.persist(id, n);
            }
        });
        ids
    }

    /// (parent, name) of every entry whose lookup answer depends on the caller. Visits every
    /// node, a bounded run at a time so that no worker waits long for a shard.
    pub fn caller_dependent_entries(&self) -> Vec<(u64, Vec<u8>)> {
        const RUN: usize = 1024;
        let mut out = Vec::new();
        for i in 0..SHARDS {
            let mut start = 0;
            loop {
                let shard = self.lock(i);
                let end = shard.len.min(start + RUN);
                for slot in start..end {
                    let node = shard.chunks[slot / CHUNK][slot % CHUNK].as_ref();
                    if let Some(n) = node.filter(|n| n.caller_dependent()) {
                        out.push((n.parent, n.name.as_bytes().to_vec()));
                    }
                }
                if end >= shard.len {
                    break;
                }
                start = end;
            }
        }
        out
    }

    /// Node ids of the children the kernel may have cached under `parent` named `name`
    /// (case-insensitively, as the policy compares names), for invalidation after a policy
    /// change. Costs a hash lookup, not a walk of the table.
    pub fn children_named(&self, parent: u64, name: &[u8]) -> Vec<u64> {
        let mut candidates = Vec::new();
        {
            let (shard, key) = self.names(parent, name);
            shard.get(key, &mut candidates);
        }
        candidates.retain(|&id| {
            self.with(id, |n| {
                n.parent == parent && names_match(n.name.as_bytes(), name)
            })
            .unwrap_or(false)
        });
        candidates
    }

    /// The nodes the kernel may know at `path` (components compared case-insensitively) and
    /// those of its parent directory, `(parents, nodes)`: one index lookup per component.
    pub fn resolve(&self, path: &[u8]) -> (Vec<u64>, Vec<u64>) {
        let mut parents = Vec::new();
        let mut nodes = vec![ROOT_ID];
        for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            if nodes.is_empty() {
                return (Vec::new(), Vec::new());
            }
            parents = std::mem::take(&mut nodes);
            for &p in &parents {
                nodes.extend(self.children_named(p, comp));
            }
        }
        (parents, nodes)
    }

    /// The kernel entries an app change can affect, `(parent, name)`: `Android/data/<pkg>`
    /// and `Android/obb/<pkg>` of each package, as given and as spelled on disk (the kernel
    /// knows names as they were looked up). A few index lookups per package.
    pub fn app_dir_entries<S: AsRef<[u8]>>(&self, packages: &[S]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        if packages.is_empty() {
            return out;
        }
        for dir in [&b"Android/data"[..], b"Android/obb"] {
            for parent in self.resolve(dir).1 {
                for package in packages {
                    let package = package.as_ref();
                    out.push((parent, package.to_vec()));
                    for child in self.children_named(parent, package) {
                        let name = self.with(child, |n| n.name.as_bytes().to_vec());
                        out.extend(name.filter(|n| n[..] != *package).map(|n| (parent, n)));
                    }
                }
            }
        }
        out
    }
}

/// A node table filled without a kernel, for `examples/policy_change_bench.rs`: what a policy
/// change costs the view at a million known nodes (a million real files and lookups would
/// take the bench minutes). Not an API.
#[doc(hidden)]
pub struct NodeBench {
    table: NodeTable,
    handle: Handle,
    dirs: HashMap<Vec<u8>, u64>,
    ids: Vec<u64>,
    next_ino: u64,
}

#[doc(hidden)]
impl NodeBench {
    /// An empty table; every node gets the file handle of `dir` (handles only tell inodes
    /// apart when numbers are reused, which the bench never does).
    pub fn new(dir: &std::path::Path) -> std::io::Result<Self> {
        use std::os::fd::AsFd;
        let handle = super::lower::handle_of(std::fs::File::open(dir)?.as_fd())?;
        Ok(NodeBench {
            table: NodeTable::new(Node::new(ROOT_ID, b"", handle, 1, libc::S_IFDIR)),
            handle,
            dirs: HashMap::from([(Vec::new(), ROOT_ID)]),
            ids: Vec::new(),
            next_ino: 2,
        })
    }

    fn register(&mut self, parent: u64, name: &[u8], kind: u32, dependent: bool) -> u64 {
        self.next_ino += 1;
        let found = Found {
            parent,
            name,
            handle: self.handle,
            ino: self.next_ino,
            kind,
            nlink: 1,
        };
        let id = self.table.register(found, dependent).nodeid;
        self.ids.push(id);
        id
    }

    /// Registers the file at `path` and its directories, as lookups would.
    pub fn add_file(&mut self, path: &[u8]) {
        let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], path),
        };
        let parent = self.dir(dir);
        let dependent = crate::policy::caller_dependent(&crate::policy::Target {
            path,
            is_dir: false,
            owner: None,
            under_nomedia: false,
        });
        self.register(parent, name, libc::S_IFREG, dependent);
    }

    fn dir(&mut self, path: &[u8]) -> u64 {
        if let Some(&id) = self.dirs.get(path) {
            return id;
        }
        let (up, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], path),
        };
        let parent = self.dir(up);
        let dependent = crate::policy::caller_dependent(&crate::policy::Target {
            path,
            is_dir: true,
            owner: None,
            under_nomedia: false,
        });
        let id = self.register(parent, name, libc::S_IFDIR, dependent);
        self.dirs.insert(path.to_vec(), id);
        id
    }

    pub fn count(&self) -> usize {
        self.table.count()
    }

    /// What `StorageView::invalidate_grant` looks up: the path's nodes and parents.
    pub fn grant_entries(&self, path: &[u8]) -> usize {
        let (parents, nodes) = self.table.resolve(path);
        parents.len() + nodes.len()
    }

    /// What `StorageView::invalidate_packages` looks up.
    pub fn package_entries<S: AsRef<[u8]>>(&self, packages: &[S]) -> usize {
        self.table.app_dir_entries(packages).len()
    }

    /// Heap bytes the (parent, name) index holds (its tables, by capacity).
    pub fn name_index_bytes(&self) -> usize {
        self.table
            .names
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.first.capacity() * 9
                    + s.more.capacity() * 29
                    + s.more.values().map(|v| v.capacity() * 8).sum::<usize>()
            })
            .sum()
    }

    /// What `StorageView::invalidate_all` visits.
    pub fn caller_dependent_entries(&self) -> usize {
        self.table.caller_dependent_entries().len()
    }

    /// A worker's cache-hit check of the `i`th node registered: the cached verdicts under
    /// `stamp`, stored first if absent.
    pub fn cached_check(&self, i: usize, uid: u32, stamp: u64, verdicts: Verdicts) -> bool {
        let id = self.ids[i % self.ids.len()];
        self.table
            .with(id, |n| {
                n.verdicts(uid, stamp).is_some() || {
                    n.set_verdicts(CachedVerdicts {
                        uid,
                        stamp,
                        verdicts,
                    });
                    false
                }
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(n: u8) -> Handle {
        super::super::lower::tests_support::fake_handle(n)
    }

    fn found(
        parent: u64,
        name: &'static [u8],
        handle: Handle,
        ino: u64,
        nlink: u64,
    ) -> Found<'static> {
        Found {
            parent,
            name,
            handle,
            ino,
            kind: libc::S_IFREG,
            nlink,
        }
    }

    fn table() -> NodeTable {
        NodeTable::new(Node::new(ROOT_ID, b"", handle(0), 2, libc::S_IFDIR))
    }

    #[test]
    fn nodes_stay_small() {
        // One per inode the kernel holds: 100,000 of them must fit in well under 20 MiB.
        assert!(
            std::mem::size_of::<Node>() <= 96,
            "{}",
            std::mem::size_of::<Node>()
        );
        assert_eq!(
            std::mem::size_of::<Option<Node>>(),
            std::mem::size_of::<Node>()
        );
        assert_eq!(std::mem::size_of::<NodeName>(), 24);
    }

    #[test]
    fn names_inline_and_on_the_heap() {
        for name in [
            &b""[..],
            b"a",
            b"IMG_0001.jpg",
            &[b'x'; 22],
            &[b'y'; 23],
            &[b'z'; 255],
        ] {
            assert_eq!(NodeName::new(name).as_bytes(), name);
        }
        assert!(matches!(
            NodeName::new(&[b'x'; 22]),
            NodeName::Inline { .. }
        ));
        assert!(matches!(NodeName::new(&[b'x'; 23]), NodeName::Heap(_)));
    }

    #[test]
    fn lookup_counts_follow_the_kernel() {
        let t = table();
        let a = t
            .register(found(ROOT_ID, b"a", handle(1), 100, 1), false)
            .nodeid;
        assert_eq!(
            t.register(found(ROOT_ID, b"a", handle(1), 100, 1), false)
                .nodeid,
            a
        );
        assert_eq!(t.with(a, |n| n.nlookup), Some(2));
        assert!(t.forget(a, 1).is_none());
        assert!(t.forget(a, 1).is_some());
        assert!(t.with(a, |_| ()).is_none(), "forgotten node is gone");
        assert_eq!(t.find_ino(100), None);
    }

    #[test]
    fn batch_forget_of_more_than_held_and_bogus_ids_are_safe() {
        let t = table();
        let a = t
            .register(found(ROOT_ID, b"a", handle(1), 100, 1), false)
            .nodeid;
        assert!(t.forget(a, 99).is_some());
        assert!(t.forget(a, 1).is_none());
        for bogus in [0, 2, 63, 12345, u64::MAX, 1 << 40] {
            assert!(t.forget(bogus, 1).is_none());
            assert!(t.with(bogus, |_| ()).is_none());
        }
        assert!(t.forget(ROOT_ID, 1).is_none());
    }

    #[test]
    fn reused_inode_number_with_new_handle_is_a_new_node() {
        let t = table();
        let a = t
            .register(found(ROOT_ID, b"a", handle(1), 100, 1), false)
            .nodeid;
        let b = t
            .register(found(ROOT_ID, b"b", handle(2), 100, 1), false)
            .nodeid;
        assert_ne!(a, b);
        assert_eq!(t.find_ino(100), Some(b));
        // Forgetting the old node must not unhook the new one.
        assert!(t.forget(a, 1).is_some());
        assert_eq!(t.find_ino(100), Some(b));
    }

    #[test]
    fn each_name_of_a_linked_file_is_its_own_node() {
        let t = table();
        let a = t
            .register(found(ROOT_ID, b"a", handle(1), 100, 2), false)
            .nodeid;
        let b = t
            .register(found(7, b"other", handle(1), 100, 2), false)
            .nodeid;
        assert_ne!(
            a, b,
            "a decision must not depend on the name looked up last"
        );
        assert_eq!(
            t.register(found(ROOT_ID, b"a", handle(1), 100, 2), false)
                .nodeid,
            a
        );
        assert_eq!(
            t.with(a, |n| (n.parent, n.name.as_bytes().to_vec())),
            Some((ROOT_ID, b"a".to_vec()))
        );
        t.renamed(100, (7, b"other"), (8, b"moved"));
        assert_eq!(
            t.with(b, |n| (n.parent, n.name.as_bytes().to_vec())),
            Some((8, b"moved".to_vec()))
        );
        assert_eq!(t.with(a, |n| n.parent), Some(ROOT_ID));
        assert!(t.forget(a, 2).is_some());
        assert!(t.forget(b, 1).is_some());
        assert_eq!(t.count(), 0);
    }

    #[test]
    fn renaming_a_second_link_leaves_the_first_name_alone() {
        let t = table();
        // Looked up while it had one name: the inode's own node.
        let a = t
            .register(found(ROOT_ID, b"a", handle(1), 100, 1), false)
            .nodeid;
        // A second link appeared, then was looked up: a node for that name.
        let b = t
            .register(found(ROOT_ID, b"b", handle(1), 100, 2), false)
            .nodeid;
        assert_ne!(a, b);
        t.renamed(100, (ROOT_ID, b"b"), (ROOT_ID, b"c"));
        let name = |id| t.with(id, |n| n.name.as_bytes().to_vec());
        assert_eq!(name(a), Some(b"a".to_vec()), "the first name did not move");
        assert_eq!(name(b), Some(b"c".to_vec()));
    }

    #[test]
    fn decisions_of_several_callers_live_side_by_side() {
        let mut n = Node::new(ROOT_ID, b"f", handle(1), 5, libc::S_IFREG);
        let v = |uid| CachedVerdicts {
            uid,
            stamp: 7,
            verdicts: crate::policy::Snapshot::default().decide_all(
                uid,
                &crate::policy::Target {
                    path: b"Download/x.pdf",
                    is_dir: false,
                    owner: None,
                    under_nomedia: false,
                },
            ),
        };
        for uid in [10057, 10058, 10059, 10060] {
            n.set_verdicts(v(uid));
        }
        for uid in [10057, 10058, 10059, 10060] {
            assert!(n.verdicts(uid, 7).is_some(), "{uid}");
            assert!(n.verdicts(uid, 8).is_none());
        }
        n.set_verdicts(v(10061));
        assert!(n.verdicts(10061, 7).is_some());
        assert_eq!(
            (10057..=10061)
                .filter(|&u| n.verdicts(u, 7).is_some())
                .count(),
            4
        );
    }

    #[test]
    fn ids_never_collide_with_root_and_the_table_gives_memory_back() {
        let t = table();
        let mut ids = Vec::new();
        for ino in 0..10_000u64 {
            let id = t
                .register(
                    found(ROOT_ID, b"x", handle((ino % 200) as u8), ino, 1),
                    false,
                )
                .nodeid;
            assert!(id > ROOT_ID);
            assert_eq!(split(id).unwrap().0, shard_of_ino(ino));
            ids.push(id);
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "live ids are unique");
        assert_eq!(t.count(), 10_000);
        for &id in &ids {
            assert!(t.forget(id, 1).is_some());
        }
        assert_eq!(t.count(), 0);
        let held: usize = (0..SHARDS).map(|i| t.lock(i).chunks.len()).sum();
        assert_eq!(
            held, 0,
            "{held} chunks still allocated after everything was forgotten"
        );
    }

    #[test]
    fn freed_slots_are_reused_lowest_first_and_live_ids_stay_unique() {
        let t = table();
        let ids: Vec<u64> = (0..2000u64)
            .map(|ino| {
                t.register(found(ROOT_ID, b"x", handle(1), ino, 1), false)
                    .nodeid
            })
            .collect();
        for (i, &id) in ids.iter().enumerate() {
            if i % 2 == 1 {
                assert!(t.forget(id, 1).is_some());
            }
        }
        let again: Vec<u64> = (2000..3000u64)
            .map(|ino| {
                t.register(found(ROOT_ID, b"y", handle(2), ino, 1), false)
                    .nodeid
            })
            .collect();
        let mut live: Vec<u64> = ids.iter().step_by(2).copied().chain(again).collect();
        assert_eq!(t.count(), live.len());
        for &id in &live {
            assert!(t.with(id, |_| ()).is_some());
        }
        live.sort();
        live.dedup();
        assert_eq!(live.len(), 2000);
        let chunks: usize = (0..SHARDS).map(|i| t.lock(i).chunks.len()).sum();
        assert!(
            chunks <= 2000 / CHUNK + SHARDS,
            "{chunks} chunks for 2000 nodes"
        );
    }

    fn sorted(mut v: Vec<u64>) -> Vec<u64> {
        v.sort();
        v
    }

    #[test]
    fn the_name_index_follows_register_rename_and_forget() {
        let t = table();
        let dir = t
            .register(
                Found {
                    kind: libc::S_IFDIR,
                    ..found(ROOT_ID, b"DCIM", handle(1), 10, 1)
                },
                false,
            )
            .nodeid;
        let a = t
            .register(found(dir, b"a.jpg", handle(2), 11, 1), false)
            .nodeid;
        // A case variant on a case-sensitive lower tree: both are candidates.
        let b = t
            .register(found(dir, b"A.JPG", handle(3), 12, 1), false)
            .nodeid;
        let e = t
            .register(found(dir, "Été.jpg".as_bytes(), handle(4), 13, 1), false)
            .nodeid;
        assert_eq!(t.children_named(ROOT_ID, b"dcim"), vec![dir]);
        assert_eq!(sorted(t.children_named(dir, b"a.Jpg")), sorted(vec![a, b]));
        assert_eq!(t.children_named(dir, "éTÉ.JPG".as_bytes()), vec![e]);
        assert_eq!(t.children_named(ROOT_ID, b"a.jpg"), Vec::<u64>::new());
        assert_eq!(t.resolve(b"dcim/A.jpg").0, vec![dir]);
        assert_eq!(sorted(t.resolve(b"dcim/A.jpg").1), sorted(vec![a, b]));
        assert_eq!(t.resolve(b""), (vec![], vec![ROOT_ID]));
        assert_eq!(t.resolve(b"Music/x"), (vec![], vec![]));

        // Renamed: found under the new name only.
        t.renamed(11, (dir, b"a.jpg"), (ROOT_ID, b"moved.jpg"));
        assert_eq!(t.children_named(dir, b"a.jpg"), vec![b]);
        assert_eq!(t.children_named(ROOT_ID, b"MOVED.jpg"), vec![a]);
        // Looked up again under another name (moved behind our back): the same.
        t.register(found(dir, b"back.jpg", handle(2), 11, 1), false);
        assert_eq!(t.children_named(ROOT_ID, b"moved.jpg"), Vec::<u64>::new());
        assert_eq!(t.children_named(dir, b"back.jpg"), vec![a]);

        // Forgotten: gone from the index, and a new node reusing the id is found by its name.
        assert!(t.forget(b, 1).is_some());
        assert_eq!(t.children_named(dir, b"a.jpg"), Vec::<u64>::new());
        let c = t
            .register(found(dir, b"c.jpg", handle(5), 12, 1), false)
            .nodeid;
        assert_eq!(t.children_named(dir, b"c.jpg"), vec![c]);
        assert_eq!(t.children_named(dir, b"a.jpg"), Vec::<u64>::new());
    }

    #[test]
    fn the_name_index_keeps_colliding_keys_apart_and_gives_memory_back() {
        let mut shard = NameShard::default();
        shard.add(7, 100);
        shard.add(7, 200);
        shard.add(7, 1 << 40);
        let mut out = Vec::new();
        shard.get(7, &mut out);
        assert_eq!(sorted(out), vec![100, 200, 1 << 40]);
        shard.remove(7, 100);
        shard.remove(7, 1 << 40);
        let mut out = Vec::new();
        shard.get(7, &mut out);
        assert_eq!(out, vec![200]);
        shard.remove(7, 200);
        assert!(shard.first.is_empty() && shard.more.is_empty());

        let t = table();
        let ids: Vec<u64> = (0..3_000u64)
            .map(|ino| {
                t.register(found(ROOT_ID, b"same", handle(1), ino, 1), false)
                    .nodeid
            })
            .collect();
        assert_eq!(t.children_named(ROOT_ID, b"SAME").len(), 3_000);
        for id in ids {
            t.forget(id, 1);
        }
        assert!(t.children_named(ROOT_ID, b"same").is_empty());
        let names: usize = t
            .names
            .iter()
            .map(|s| {
                let s = s.lock().unwrap();
                s.first.capacity() + s.more.capacity()
            })
            .sum();
        assert!(names <= SHARDS * (CHUNK + 4), "{names} slots kept");
    }

    #[test]
    fn app_changes_find_only_their_packages_dirs() {
        let t = table();
        let dir = |parent, name: &'static [u8], ino| {
            t.register(
                Found {
                    kind: libc::S_IFDIR,
                    ..found(parent, name, handle(1), ino, 1)
                },
                false,
            )
            .nodeid
        };
        let android = dir(ROOT_ID, b"Android", 10);
        let data = dir(android, b"data", 11);
        dir(data, b"Com.Example.A", 12);
        dir(data, b"com.example.b", 13);
        // Android/obb was never looked up: nothing known there, nothing to drop.
        let mut got = t.app_dir_entries(&["com.example.a"]);
        got.sort();
        assert_eq!(
            got,
            vec![
                (data, b"Com.Example.A".to_vec()),
                (data, b"com.example.a".to_vec())
            ]
        );
        assert_eq!(
            t.app_dir_entries(&["com.example.c"]),
            vec![(data, b"com.example.c".to_vec())]
        );
        assert!(t.app_dir_entries::<&str>(&[]).is_empty());
        let obb = dir(android, b"OBB", 14);
        assert_eq!(
            t.app_dir_entries(&["com.example.c"]),
            vec![
                (data, b"com.example.c".to_vec()),
                (obb, b"com.example.c".to_vec())
            ]
        );
    }

    #[test]
    fn caller_dependent_entries_are_found_across_runs() {
        let t = table();
        for ino in 0..5000u64 {
            t.register(found(ROOT_ID, b"x", handle(1), ino, 1), ino % 1000 == 0);
        }
        assert_eq!(t.caller_dependent_entries().len(), 5);
    }

    #[test]
    fn memory_is_given_back_every_eighth_of_the_most_recorded_nodes() {
        let t = table();
        assert_eq!(
            t.give_back_period(),
            16 * 1024,
            "no restart state: trim only"
        );
        t.attach_journal(Arc::new(
            StateMap::map(crate::state::create().unwrap()).unwrap(),
        ));
        let mut ino = 2u64;
        // Record indexes follow node ids, which leave a few gaps between shards.
        for (nodes, period) in [
            (100, 1024..=1024),
            (16_000, 2000..=2100),
            (200_000, 16384..=16384),
        ] {
            while t.count() < nodes {
                let name = format!("f{ino}");
                let f = found(ROOT_ID, b"f", handle((ino % 250) as u8), ino, 1);
                t.register(
                    Found {
                        name: name.as_bytes(),
                        ..f
                    },
                    false,
                );
                ino += 1;
            }
            let p = t.give_back_period();
            assert!(period.contains(&p), "{p} after {nodes} nodes recorded");
        }
    }

    #[test]
    fn forgotten_nodes_give_their_restart_records_back_and_survivors_keep_theirs() {
        let fd = crate::state::create().unwrap();
        let probe = fd.try_clone().unwrap();
        let blocks = || {
            nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&probe))
                .unwrap()
                .st_blocks
        };
        let state = Arc::new(StateMap::map(fd).unwrap());
        let t = table();
        t.attach_journal(state.clone());
        let keep = t
            .register(found(ROOT_ID, b"keep", handle(1), 1, 1), false)
            .nodeid;
        // Distinct names: 20,000 nodes of one name would make the test about the (parent,
        // name) index's collision list instead (quadratic, minutes in the arm64 guest).
        let ids: Vec<u64> = (2..20_002u64)
            .map(|ino| {
                let name = format!("f{ino}");
                t.register(
                    Found {
                        name: name.as_bytes(),
                        ..found(ROOT_ID, b"f", handle((ino % 250) as u8), ino, 1)
                    },
                    false,
                )
                .nodeid
            })
            .collect();
        let full = blocks();
        for id in ids {
            t.forget(id, 1);
        }
        t.release_journal_pages();
        assert!(blocks() < full / 20, "{} of {full} blocks left", blocks());
        let again = t
            .register(found(ROOT_ID, b"new", handle(9), 99_999, 1), false)
            .nodeid;
        let fresh = table();
        fresh.restore(recover::read_all(&state, ROOT_ID + 1));
        assert_eq!(fresh.count(), 2);
        let name = |id| fresh.with(id, |n| n.name.as_bytes().to_vec());
        assert_eq!(name(keep), Some(b"keep".to_vec()));
        assert_eq!(name(again), Some(b"new".to_vec()));
    }

    #[test]
    fn a_new_table_takes_over_the_recorded_nodes_at_their_ids() {
        let state = Arc::new(StateMap::map(crate::state::create().unwrap()).unwrap());
        let t = table();
        t.attach_journal(state.clone());
        let dir = t
            .register(
                Found {
                    kind: libc::S_IFDIR,
                    ..found(ROOT_ID, b"DCIM", handle(1), 10, 1)
                },
                true,
            )
            .nodeid;
        let a = t
            .register(found(dir, b"a.jpg", handle(2), 11, 1), false)
            .nodeid;
        t.register(found(dir, b"a.jpg", handle(2), 11, 1), false);
        let long: &'static [u8] = b"a-name-longer-than-a-record-holds-0123456789.jpg";
        let l = t.register(found(dir, long, handle(3), 12, 1), false).nodeid;
        let gone = t
            .register(found(dir, b"gone", handle(4), 13, 1), false)
            .nodeid;
        let x = t
            .register(found(ROOT_ID, b"x", handle(5), 14, 2), false)
            .nodeid;
        let y = t.register(found(dir, b"y", handle(5), 14, 2), false).nodeid;
        t.with(a, |n| n.set_backing_id(7));
        t.renamed(11, (dir, b"a.jpg"), (ROOT_ID, b"b.jpg"));
        assert!(t.forget(gone, 1).is_some());

        let fresh = table();
        let unnamed = fresh.restore(recover::read_all(&state, ROOT_ID + 1));
        assert_eq!(unnamed, vec![(l, dir, 12)]);
        fresh.rename_restored(&[(l, long.to_vec())]);
        assert_eq!(fresh.count(), 5);
        let node = |id| fresh.with(id, |n| (n.parent, n.name.as_bytes().to_vec(), n.nlookup));
        assert_eq!(node(a), Some((ROOT_ID, b"b.jpg".to_vec(), 2)));
        assert_eq!(node(l), Some((dir, long.to_vec(), 1)));
        assert_eq!(node(gone), None);
        assert_eq!(fresh.with(a, |n| n.backing_id()), Some(Some(7)));
        assert_eq!(fresh.with(dir, |n| n.caller_dependent()), Some(true));
        // The indexes are rebuilt: the same lookups find the same ids.
        assert_eq!(
            fresh
                .register(found(ROOT_ID, b"b.jpg", handle(2), 11, 1), false)
                .nodeid,
            a
        );
        assert_eq!(
            fresh
                .register(found(dir, b"y", handle(5), 14, 2), false)
                .nodeid,
            y
        );
        assert_ne!(y, x);
        assert_eq!(fresh.children_named(ROOT_ID, b"dcim"), vec![dir]);
        // A new node takes a free slot, never a restored one.
        let new = fresh
            .register(found(dir, b"new", handle(6), 15, 1), false)
            .nodeid;
        assert!(![dir, a, l, x, y].contains(&new));
        // A FORGET of more than is held is harmless.
        assert!(fresh.forget(l, 100).is_some());
        assert!(fresh.forget(l, 1).is_none());
    }

    #[test]
    fn app_facts_are_allocated_only_when_used() {
        let mut n = Node::new(ROOT_ID, b"f", handle(1), 5, libc::S_IFREG);
        n.clear_verdicts();
        assert!(n.app.is_none());
        n.set_owner(OwnerFact::Tag(b"10057".to_vec().into()));
        assert_eq!(n.owner(), OwnerFact::Tag(b"10057".to_vec().into()));
        n.set_nomedia(Nomedia::Yes);
        assert_eq!(n.nomedia(), Nomedia::Yes);
        n.set_caller_dependent(true);
        assert!(n.caller_dependent() && n.nomedia() == Nomedia::Yes);
    }
}
