//! The node table: FUSE node id -> what we know of the lower inode, with the kernel's lookup
//! count. Sharded by inode number so that a node and its inode index share one lock; no lock
//! is ever held across a system call.
//!
//! Memory matters here (one node per inode the kernel holds, millions on a phone): nodes live
//! in a slab per shard, names and handles are stored inline, the facts only app callers need
//! are allocated on first use, and a shard gives its memory back when the kernel forgets.

mod ino_index;
mod name_index;
mod node;
#[cfg(test)]
mod tests;

pub use node::{CachedVerdicts, Node, NodeName, Nomedia, OwnerFact};

use super::lower::Handle;
use super::recover::{self, Record, RecordedName};
use crate::fuse::abi::ROOT_ID;
use crate::policy::{names_match, Verdicts};
use crate::state::StateMap;
use ino_index::InoIndex;
use name_index::{name_key, NameShard};
use node::{CALLER_DEPENDENT, LINKED_NAME};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::sync::{Arc, OnceLock};

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Slots are allocated in chunks of this many: growing never copies nodes or leaves freed
/// buffers behind, and a shard's slack is at most one chunk.
const CHUNK: usize = 64;

type Chunk = Box<[Option<Node>; CHUNK]>;

/// Slots per shard: node ids stay below 2^32, so that a node and a restart record keep their
/// parent in 4 bytes. 4 billion nodes is more than any memory holds.
const MAX_SLOTS: usize = (1 << (32 - SHARD_BITS)) - 1;

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
    by_ino: InoIndex,
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

    /// The slot of the node found by inode `ino` alone.
    fn indexed(&self, ino: u64) -> Option<u32> {
        self.by_ino.get(ino, |s| ino_at(&self.chunks, s))
    }

    /// Indexes the node at `slot` (already in the slab) by its inode `ino`.
    fn index(&mut self, ino: u64, slot: u32) {
        let chunks = &self.chunks;
        self.by_ino.set(ino, slot, |s| ino_at(chunks, s));
    }

    /// Drops the index entry of `ino` if it is `slot` (before the node leaves the slab).
    fn unindex(&mut self, ino: u64, slot: u32) {
        let chunks = &self.chunks;
        self.by_ino.remove(ino, slot, |s| ino_at(chunks, s));
    }

    /// Places `node` in a free slot; `None` when the shard holds all it may (`MAX_SLOTS`).
    fn allocate(&mut self, node: Node) -> Option<u32> {
        while let Some(Reverse(slot)) = self.free.pop() {
            if let Some(s @ None) = self.slot_mut(slot as usize) {
                *s = Some(node);
                self.used += 1;
                return Some(slot);
            }
        }
        if self.len >= MAX_SLOTS {
            return None;
        }
        self.used += 1;
        if self.len == self.chunks.len() * CHUNK {
            self.chunks.push(Box::new(std::array::from_fn(|_| None)));
        }
        self.len += 1;
        let slot = self.len - 1;
        self.chunks[slot / CHUNK][slot % CHUNK] = Some(node);
        Some(slot as u32)
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
            let chunks = &self.chunks;
            self.by_ino.shrink_to_fit(|s| ino_at(chunks, s));
        }
        if self.chunks.capacity() > 2 * self.chunks.len() + 4 {
            self.chunks.shrink_to_fit();
        }
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
    /// Nodes held now, and the most held at once: the give-back period without restart state.
    held: AtomicU64,
    most_held: AtomicU64,
}

/// [`NodeTable::give_back_period`] for a table that has held or recorded `most` nodes.
fn give_back_period(most: u64) -> u64 {
    (most / 8).clamp(1024, 16 * 1024)
}

/// The inode number of the node in `slot`, if any.
fn ino_at(chunks: &[Chunk], slot: u32) -> Option<u64> {
    let slot = slot as usize;
    chunks.get(slot / CHUNK)?[slot % CHUNK]
        .as_ref()
        .map(|n| n.ino)
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

/// A restored node whose record did not keep its name whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unnamed {
    pub id: u64,
    pub parent: u64,
    pub ino: u64,
    /// The name's [`recover::name_hash`]; `None` when the record kept neither.
    pub hash: Option<u64>,
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
            held: AtomicU64::new(0),
            most_held: AtomicU64::new(0),
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
    /// does in proportion. Without restart state, an eighth of the most nodes ever held: at
    /// most that much freed memory waits for the next allocator trim.
    pub fn give_back_period(&self) -> u64 {
        give_back_period(match self.journal.get() {
            Some(j) => j.high_water(),
            None => self.most_held.load(Relaxed),
        })
    }

    fn node_added(&self) {
        let held = self.held.fetch_add(1, Relaxed) + 1;
        self.most_held.fetch_max(held, Relaxed);
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

    /// Fills an empty table with recorded nodes, at their ids. Returns the nodes whose names
    /// were not recorded whole: they stay unnamed, which [`Node::is_unnamed`] tells, until
    /// [`NodeTable::rename_restored`] names them.
    pub fn restore(&self, records: Vec<(u64, Record)>) -> Vec<Unnamed> {
        let mut unnamed = Vec::new();
        for (id, r) in records {
            let Some((si, slot)) = split(id) else {
                continue;
            };
            if si != shard_of_ino(r.ino) || r.parent == 0 || slot as usize >= MAX_SLOTS {
                continue;
            }
            let mut node = Node::new(r.parent, b"", r.handle, r.ino, u32::from(r.kind));
            node.set_nlookup(r.nlookup);
            node.flags = r.flags & (CALLER_DEPENDENT | LINKED_NAME);
            node.set_backing_id(r.backing);
            match r.name {
                RecordedName::Whole(n) => node.name = NodeName::new(&n),
                other => unnamed.push(Unnamed {
                    id,
                    parent: r.parent,
                    ino: r.ino,
                    hash: other.hash(),
                }),
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
            self.node_added();
            if linked {
                shard.linked.entry(r.ino).or_default().push(slot);
            } else {
                shard.index(r.ino, slot);
            }
            drop(shard);
            if !name.is_empty() {
                self.name_added(id, r.parent, &name);
            }
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
                let parent = node.parent();
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
            self.name_removed(id, node.parent(), node.name.as_bytes());
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
    /// name was looked up last. `None` when the table holds all the nodes it may.
    pub fn register(&self, found: Found<'_>, caller_dependent: bool) -> Option<Registered> {
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
                    .is_some_and(|n| n.handle() == handle && n.is_named(parent, name))
            };
            let primary = shard.indexed(ino).filter(|&s| named(&mut shard, s));
            primary.or_else(|| {
                let slots = shard.linked.get(&ino).cloned().unwrap_or_default();
                slots.into_iter().find(|&s| named(&mut shard, s))
            })
        } else {
            shard.indexed(ino).filter(|&slot| {
                shard
                    .get_mut(slot)
                    .is_some_and(|n| n.handle() == handle && !n.linked_name())
            })
        };
        if let Some(slot) = known {
            if let Some(node) = shard.get_mut(slot) {
                node.looked_up();
                self.move_node(join(si, slot), node, parent, name);
                node.set_caller_dependent(caller_dependent);
                self.persist(join(si, slot), node);
                return Some(Registered {
                    nodeid: join(si, slot),
                    caller_dependent,
                });
            }
        }
        // New inode, a new name of a linked one, or the number was reused by a new inode
        // (different handle): an old node stays until the kernel forgets it, but the index
        // points to the new one.
        let mut node = Node::new(parent, name, handle, ino, kind);
        node.set_nlookup(1);
        node.set_caller_dependent(caller_dependent);
        if by_name {
            node.flags |= LINKED_NAME;
        }
        let slot = shard.allocate(node)?;
        self.node_added();
        if let Some(node) = shard.get_mut(slot) {
            self.persist(join(si, slot), node);
        }
        if by_name {
            shard.linked.entry(ino).or_default().push(slot);
        } else {
            shard.index(ino, slot);
        }
        self.name_added(join(si, slot), parent, name);
        Some(Registered {
            nodeid: join(si, slot),
            caller_dependent,
        })
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
        if !node.forgotten(n) {
            self.persist(id, node);
            return None;
        }
        // Out of its index first: the inode index checks its entry against the node.
        let (ino, linked) = (node.ino, node.linked_name());
        if linked {
            if let Some(slots) = shard.linked.get_mut(&ino) {
                slots.retain(|&s| s != slot);
                if slots.is_empty() {
                    shard.linked.remove(&ino);
                }
            }
        } else {
            shard.unindex(ino, slot);
        }
        let node = shard.release(slot)?;
        self.held.fetch_sub(1, Relaxed);
        self.unpersist(id);
        self.name_removed(id, node.parent(), node.name.as_bytes());
        Some(Forgotten {
            backing_id: node.backing_id(),
        })
    }

    /// The node of a known inode (by inode alone: not one of several names).
    #[cfg(test)]
    pub fn find_ino(&self, ino: u64) -> Option<u64> {
        let si = shard_of_ino(ino);
        self.lock(si).indexed(ino).map(|slot| join(si, slot))
    }

    /// A rename moved the inode `ino` from `from` to `to`: moves the node of that name (the
    /// inode's node, or the node of that one name of a linked file). Only a node named `from`
    /// moves: the inode's first node may carry another of its names (it was looked up before
    /// a second link existed), and that name did not move.
    pub fn renamed(&self, ino: u64, from: (u64, &[u8]), to: (u64, &[u8])) {
        let si = shard_of_ino(ino);
        let mut shard = self.lock(si);
        let mut slots: Vec<u32> = shard.linked.get(&ino).cloned().unwrap_or_default();
        slots.extend(shard.indexed(ino));
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
                        out.push((n.parent(), n.name.as_bytes().to_vec()));
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
                n.parent() == parent && names_match(n.name.as_bytes(), name)
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
        let id = self
            .table
            .register(found, dependent)
            .expect("a bench table holds far fewer nodes than the cap")
            .nodeid;
        self.ids.push(id);
        id
    }

    /// Registers the file at `path` and its directories, as lookups would.
    pub fn add_file(&mut self, path: &[u8]) {
        self.add(path, libc::S_IFREG);
    }

    fn dir(&mut self, path: &[u8]) -> u64 {
        if let Some(&id) = self.dirs.get(path) {
            return id;
        }
        let id = self.add(path, libc::S_IFDIR);
        self.dirs.insert(path.to_vec(), id);
        id
    }

    /// Registers `path` of type `kind` under its (registered) parent, caller dependent as
    /// the rules say.
    fn add(&mut self, path: &[u8], kind: u32) -> u64 {
        let (up, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], path),
        };
        let parent = self.dir(up);
        let dependent = crate::policy::caller_dependent(&crate::policy::Target {
            path,
            is_dir: kind == libc::S_IFDIR,
            owner: None,
            under_nomedia: false,
        });
        self.register(parent, name, kind, dependent)
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
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).heap_bytes())
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
