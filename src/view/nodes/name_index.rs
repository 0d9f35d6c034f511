//! The (parent, folded name) -> nodes index: a grant, a revoke, an app's change or an
//! invalidation finds the few nodes of its paths here instead of visiting every node.

use super::{CHUNK, SHARDS};
use crate::policy::name_hash;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes a key that is already a hash, or a node id: one multiply per 32 bits, so that the
/// map's bucket and tag bits both see well-mixed bits.
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
    fn write_u64(&mut self, n: u64) {
        self.write_u32(n as u32);
        self.write_u32((n >> 32) as u32);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyBuild = BuildHasherDefault<KeyHasher>;

/// Which shard of the name index and which key in it a (parent, folded name) has.
pub(super) fn name_key(parent: u64, name: &[u8]) -> (usize, u32) {
    let mut k = (parent.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ name_hash(name))
        .wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 29;
    ((k >> 40) as usize & (SHARDS - 1), k as u32)
}

/// One shard of the (parent, folded name) -> nodes index: 8 bytes a node in the common case
/// (memory: RSS after 100,000 lookups must stay under 20 MiB). A key is a 32-bit hash, so a
/// hit is only a candidate: callers check the node's real parent and name.
#[derive(Default)]
pub(super) struct NameShard {
    /// The first node of each key, as a 32-bit node id.
    first: HashMap<u32, u32, KeyBuild>,
    /// Further nodes of a key (case variants, hash collisions, a reused inode number's old
    /// node) and ids too large for 32 bits: rare, but a set, so that the many old nodes of a
    /// name re-created while they are still open (an app can hold one per fd) each leave in
    /// constant time, not in a walk of all the others.
    more: HashMap<u32, HashSet<u64, KeyBuild>, KeyBuild>,
}

impl NameShard {
    pub(super) fn add(&mut self, key: u32, id: u64) {
        if let Ok(small) = u32::try_from(id) {
            if let std::collections::hash_map::Entry::Vacant(e) = self.first.entry(key) {
                e.insert(small);
                return;
            }
        }
        self.more.entry(key).or_default().insert(id);
    }

    pub(super) fn remove(&mut self, key: u32, id: u64) {
        if self.first.get(&key).is_some_and(|&f| u64::from(f) == id) {
            self.first.remove(&key);
        } else if let Some(ids) = self.more.get_mut(&key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.more.remove(&key);
            } else if ids.capacity() > 4 * ids.len() + CHUNK {
                ids.shrink_to_fit();
            }
        }
        if self.first.capacity() > 4 * self.first.len() + CHUNK {
            self.first.shrink_to_fit();
        }
    }

    /// Heap bytes the shard's tables hold, by capacity (a hashbrown bucket is its entry and
    /// one control byte).
    pub(super) fn heap_bytes(&self) -> usize {
        let set = std::mem::size_of::<HashSet<u64, KeyBuild>>();
        self.first.capacity() * 9
            + self.more.capacity() * (8 + set + 1)
            + self.more.values().map(|v| v.capacity() * 9).sum::<usize>()
    }

    /// Table slots held (what the shard keeps after its nodes are gone).
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.first.capacity() + self.more.capacity()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.first.is_empty() && self.more.is_empty()
    }

    pub(super) fn get(&self, key: u32, out: &mut Vec<u64>) {
        out.extend(self.first.get(&key).map(|&f| u64::from(f)));
        out.extend(self.more.get(&key).into_iter().flatten());
    }
}
