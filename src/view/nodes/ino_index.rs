//! Inode number -> slot of the node found by inode alone (one per held inode that is not one
//! of several names of a linked file). Only the slot is stored: the inode number is read from
//! the node in the slab, so an entry takes 4 bytes and a control byte where a map of
//! `u64 -> u32` takes 16 and one, with a node read when a probe's tag matches.

use hashbrown::HashTable;

#[derive(Default)]
pub(super) struct InoIndex(HashTable<u32>);

/// Spreads inode numbers over all 64 bits (murmur3's finalizer, a bijection): the table
/// takes its bucket from the low bits and its tags from the high ones, and every node of a
/// shard already shares the bits that chose the shard.
fn hash(ino: u64) -> u64 {
    let mut x = ino;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl InoIndex {
    /// The slot indexed for `ino`. `ino_at` reads the inode number of a slot's node.
    pub(super) fn get(&self, ino: u64, ino_at: impl Fn(u32) -> Option<u64>) -> Option<u32> {
        self.0
            .find(hash(ino), |&slot| ino_at(slot) == Some(ino))
            .copied()
    }

    /// Points `ino` at `slot` (a number reused by a new inode moves to the new node). The
    /// node at `slot` must hold `ino`, and every indexed slot must hold a node as long as it
    /// is indexed: the table rehashes from them.
    pub(super) fn set(&mut self, ino: u64, slot: u32, ino_at: impl Fn(u32) -> Option<u64>) {
        match self.0.find_mut(hash(ino), |&s| ino_at(s) == Some(ino)) {
            Some(s) => *s = slot,
            None => {
                self.0
                    .insert_unique(hash(ino), slot, |&s| hash(ino_at(s).unwrap_or_default()));
            }
        }
    }

    /// Drops `ino`'s entry if it is `slot` (call while the node is still in it).
    pub(super) fn remove(&mut self, ino: u64, slot: u32, ino_at: impl Fn(u32) -> Option<u64>) {
        if let Ok(entry) = self
            .0
            .find_entry(hash(ino), |&s| s == slot && ino_at(s) == Some(ino))
        {
            entry.remove();
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.0.capacity()
    }

    pub(super) fn shrink_to_fit(&mut self, ino_at: impl Fn(u32) -> Option<u64>) {
        self.0
            .shrink_to_fit(|&s| hash(ino_at(s).unwrap_or_default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_replaces_and_removes_by_the_inode_in_the_slab() {
        let mut slab: Vec<Option<u64>> = vec![None; 5000];
        let mut index = InoIndex::default();
        for slot in 0..4000u32 {
            let ino = 1_000 + u64::from(slot) * 7;
            slab[slot as usize] = Some(ino);
            let s = slab.clone();
            index.set(ino, slot, |x| s[x as usize]);
        }
        let at = |x: u32| slab[x as usize];
        assert_eq!(index.get(1_000, at), Some(0));
        assert_eq!(index.get(1_000 + 3999 * 7, at), Some(3999));
        assert_eq!(index.get(1_001, at), None);
        // A reused number: the index moves to the new node, the old one stays in the slab.
        slab[4500] = Some(1_000 + 5 * 7);
        let s = slab.clone();
        index.set(1_000 + 5 * 7, 4500, |x| s[x as usize]);
        let at = |x: u32| slab[x as usize];
        assert_eq!(index.get(1_000 + 5 * 7, at), Some(4500));
        // Removing the old slot's entry leaves the new one; removing the new one drops it.
        index.remove(1_000 + 5 * 7, 5, at);
        assert_eq!(index.get(1_000 + 5 * 7, at), Some(4500));
        index.remove(1_000 + 5 * 7, 4500, at);
        assert_eq!(index.get(1_000 + 5 * 7, at), None);
        // Emptying most of it and shrinking keeps the rest findable.
        for slot in 10..4000u32 {
            index.remove(1_000 + u64::from(slot) * 7, slot, at);
        }
        let before = index.capacity();
        index.shrink_to_fit(at);
        assert!(index.capacity() < before);
        for slot in (0..10u32).filter(|&s| s != 5) {
            assert_eq!(index.get(1_000 + u64::from(slot) * 7, at), Some(slot));
        }
    }
}
