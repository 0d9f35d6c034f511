//! The node table: FUSE node id -> what we know of the lower inode, with the kernel's lookup
//! count. Sharded by inode number so that a node and its inode index share one lock; no lock
//! is ever held across a system call.

use super::lower::Handle;
use crate::fuse::abi::ROOT_ID;
use std::collections::HashMap;
use std::sync::Mutex;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Who created a regular file through the mount, read lazily from the lower file's xattr.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedDecision {
    pub uid: u32,
    pub generation: u64,
    pub op: crate::policy::Op,
    pub decision: crate::policy::Decision,
}

#[derive(Debug)]
pub struct Node {
    pub parent: u64,
    pub name: Box<[u8]>,
    pub handle: Handle,
    pub ino: u64,
    /// `st_mode & S_IFMT`.
    pub kind: u32,
    pub nlookup: u64,
    /// The passthrough backing id registered for this inode, shared by all its opens.
    pub backing_id: Option<i32>,
    /// Opens currently answered with FOPEN_PASSTHROUGH / in userspace.
    pub passthrough_opens: u32,
    pub userspace_opens: u32,
    /// The kernel must not cache this entry: the answer depends on the caller.
    pub caller_dependent: bool,
    pub owner: OwnerFact,
    pub nomedia: Nomedia,
    /// The last policy decision for this node, valid while the policy generation matches.
    pub decision: Option<CachedDecision>,
}

impl Node {
    pub fn new(parent: u64, name: &[u8], handle: Handle, ino: u64, kind: u32) -> Self {
        Node {
            parent,
            name: name.into(),
            handle,
            ino,
            kind,
            nlookup: 0,
            backing_id: None,
            passthrough_opens: 0,
            userspace_opens: 0,
            caller_dependent: false,
            owner: OwnerFact::Unknown,
            nomedia: Nomedia::Unknown,
            decision: None,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }
}

#[derive(Default)]
struct Shard {
    nodes: HashMap<u64, Node>,
    by_ino: HashMap<u64, u64>,
    next_seq: u64,
}

pub struct NodeTable {
    root: Mutex<Node>,
    shards: Box<[Mutex<Shard>]>,
}

fn shard_of_ino(ino: u64) -> usize {
    // Fibonacci hashing spreads sequential inode numbers over the shards.
    (ino.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARD_BITS)) as usize
}

fn shard_of_id(id: u64) -> usize {
    (id as usize) & (SHARDS - 1)
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
        let mut shard = self.lock(shard_of_id(id));
        shard.nodes.get_mut(&id).map(f)
    }

    /// Records one more kernel reference to the inode `ino` reached as `parent/name`, reusing
    /// its node if the inode is already known (same handle), else creating one.
    pub fn register(
        &self,
        parent: u64,
        name: &[u8],
        handle: Handle,
        ino: u64,
        kind: u32,
        caller_dependent: bool,
    ) -> Registered {
        let si = shard_of_ino(ino);
        let mut shard = self.lock(si);
        if let Some(&id) = shard.by_ino.get(&ino) {
            if let Some(node) = shard.nodes.get_mut(&id) {
                if node.handle == handle {
                    node.nlookup += 1;
                    if node.parent != parent || *node.name != *name {
                        node.parent = parent;
                        node.name = name.into();
                        node.decision = None;
                    }
                    node.caller_dependent = caller_dependent;
                    return Registered {
                        nodeid: id,
                        caller_dependent,
                    };
                }
            }
        }
        // New inode, or the number was reused by a new inode (different handle): the old
        // node stays until the kernel forgets it, but the index points to the new one.
        shard.next_seq += 1;
        let id = (shard.next_seq << SHARD_BITS) | si as u64;
        let mut node = Node::new(parent, name, handle, ino, kind);
        node.nlookup = 1;
        node.caller_dependent = caller_dependent;
        shard.nodes.insert(id, node);
        shard.by_ino.insert(ino, id);
        Registered {
            nodeid: id,
            caller_dependent,
        }
    }

    /// Drops `n` kernel references. Returns the node's resources when it is gone.
    pub fn forget(&self, id: u64, n: u64) -> Option<Forgotten> {
        if id == ROOT_ID {
            return None;
        }
        let mut shard = self.lock(shard_of_id(id));
        let node = shard.nodes.get_mut(&id)?;
        node.nlookup = node.nlookup.saturating_sub(n);
        if node.nlookup > 0 {
            return None;
        }
        let node = shard.nodes.remove(&id)?;
        if shard.by_ino.get(&node.ino) == Some(&id) {
            shard.by_ino.remove(&node.ino);
        }
        Some(Forgotten {
            backing_id: node.backing_id,
        })
    }

    /// The node of a known inode (after a rename moved it, say).
    pub fn find_ino(&self, ino: u64) -> Option<u64> {
        self.lock(shard_of_ino(ino)).by_ino.get(&ino).copied()
    }

    /// Number of nodes the kernel holds (root excluded).
    pub fn count(&self) -> usize {
        (0..SHARDS).map(|i| self.lock(i).nodes.len()).sum()
    }

    /// Every registered backing id (for the final release at shutdown), cleared.
    pub fn take_backing_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = Vec::new();
        ids.extend(
            self.root
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .backing_id
                .take(),
        );
        for i in 0..SHARDS {
            ids.extend(
                self.lock(i)
                    .nodes
                    .values_mut()
                    .filter_map(|n| n.backing_id.take()),
            );
        }
        ids
    }

    /// Drops every cached policy decision (policy changed in a way a generation bump alone
    /// does not capture, e.g. a rename of an ancestor).
    pub fn clear_decisions(&self) {
        for i in 0..SHARDS {
            for n in self.lock(i).nodes.values_mut() {
                n.decision = None;
            }
        }
    }

    /// (parent, name) of every entry whose lookup answer depends on the caller.
    pub fn caller_dependent_entries(&self) -> Vec<(u64, Box<[u8]>)> {
        let mut out = Vec::new();
        for i in 0..SHARDS {
            let shard = self.lock(i);
            out.extend(
                shard
                    .nodes
                    .values()
                    .filter(|n| n.caller_dependent)
                    .map(|n| (n.parent, n.name.clone())),
            );
        }
        out
    }

    /// Node ids of the children the kernel may have cached under `parent` named `name`
    /// (case-insensitively), for invalidation after a policy change.
    pub fn children_named(&self, parent: u64, name: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        for i in 0..SHARDS {
            let shard = self.lock(i);
            out.extend(
                shard
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.parent == parent && n.name.eq_ignore_ascii_case(name))
                    .map(|(&id, _)| id),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(n: u8) -> Handle {
        // Handles are opaque; build distinct ones through the public constructor path.
        super::super::lower::tests_support::fake_handle(n)
    }

    fn table() -> NodeTable {
        NodeTable::new(Node::new(ROOT_ID, b"", handle(0), 2, libc::S_IFDIR))
    }

    #[test]
    fn lookup_counts_follow_the_kernel() {
        let t = table();
        let a = t
            .register(ROOT_ID, b"a", handle(1), 100, libc::S_IFREG, false)
            .nodeid;
        assert_eq!(
            t.register(ROOT_ID, b"a", handle(1), 100, libc::S_IFREG, false)
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
    fn batch_forget_of_more_than_held_is_safe() {
        let t = table();
        let a = t
            .register(ROOT_ID, b"a", handle(1), 100, libc::S_IFREG, false)
            .nodeid;
        assert!(t.forget(a, 99).is_some());
        assert!(t.forget(a, 1).is_none());
        assert!(t.forget(12345, 1).is_none());
        assert!(t.forget(ROOT_ID, 1).is_none());
    }

    #[test]
    fn reused_inode_number_with_new_handle_is_a_new_node() {
        let t = table();
        let a = t
            .register(ROOT_ID, b"a", handle(1), 100, libc::S_IFREG, false)
            .nodeid;
        let b = t
            .register(ROOT_ID, b"b", handle(2), 100, libc::S_IFREG, false)
            .nodeid;
        assert_ne!(a, b);
        assert_eq!(t.find_ino(100), Some(b));
        // Forgetting the old node must not unhook the new one.
        assert!(t.forget(a, 1).is_some());
        assert_eq!(t.find_ino(100), Some(b));
    }

    #[test]
    fn hard_links_share_one_node_and_the_latest_name() {
        let t = table();
        let a = t
            .register(ROOT_ID, b"a", handle(1), 100, libc::S_IFREG, false)
            .nodeid;
        let b = t
            .register(7, b"other", handle(1), 100, libc::S_IFREG, false)
            .nodeid;
        assert_eq!(a, b);
        assert_eq!(
            t.with(a, |n| (n.parent, n.name.to_vec())),
            Some((7, b"other".to_vec()))
        );
    }

    #[test]
    fn ids_never_collide_with_root_and_encode_their_shard() {
        let t = table();
        for ino in 0..10_000u64 {
            let id = t
                .register(
                    ROOT_ID,
                    b"x",
                    handle((ino % 200) as u8),
                    ino,
                    libc::S_IFREG,
                    false,
                )
                .nodeid;
            assert!(id > ROOT_ID);
            assert_eq!(shard_of_id(id), shard_of_ino(ino));
        }
        assert_eq!(t.count(), 10_000);
    }
}
