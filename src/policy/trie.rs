//! A small persistent hash trie: cloning it is one `Arc` increment, and a change copies only
//! the nodes on its path (a handful of 32-slot branches and one leaf of at most 16 entries),
//! so a policy change costs what it changes while old snapshots keep their view.
//!
//! Hand-written rather than a crate: the persistent-map crates are MPL-licensed and bring
//! several dependencies for what is ~150 lines here; we need get, insert, remove, iterate.
//!
//! Keys are found by a caller-given 64-bit hash and an equality closure, so that grant paths
//! can be matched case-insensitively without folding them into owned keys.

use std::sync::Arc;

const BITS: u32 = 5;
const FAN: usize = 1 << BITS;
/// A leaf splits into a branch past this many entries (unless the hash bits are used up).
const LEAF_CAP: usize = 16;

type Children<K, V> = Box<[Option<Arc<Node<K, V>>>; FAN]>;

#[derive(Debug, Clone)]
enum Node<K, V> {
    Leaf(Vec<(u64, K, V)>),
    Branch(Children<K, V>),
}

#[derive(Debug, Clone)]
pub struct HashTrie<K, V> {
    root: Option<Arc<Node<K, V>>>,
    len: usize,
}

impl<K, V> Default for HashTrie<K, V> {
    fn default() -> Self {
        HashTrie { root: None, len: 0 }
    }
}

fn slot(hash: u64, shift: u32) -> usize {
    ((hash >> shift) as usize) & (FAN - 1)
}

impl<K: Clone, V: Clone> HashTrie<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, hash: u64, eq: impl Fn(&K) -> bool) -> Option<&V> {
        let mut node = self.root.as_deref()?;
        let mut shift = 0;
        loop {
            match node {
                Node::Leaf(entries) => {
                    return entries
                        .iter()
                        .find(|(h, k, _)| *h == hash && eq(k))
                        .map(|(_, _, v)| v)
                }
                Node::Branch(children) => {
                    node = children[slot(hash, shift)].as_deref()?;
                    shift += BITS;
                }
            }
        }
    }

    /// The value of the key, inserted from `make` if absent; nodes shared with other clones
    /// are copied on the way down (and then owned, so a batch copies each node once).
    pub fn entry(
        &mut self,
        hash: u64,
        eq: impl Fn(&K) -> bool,
        make: impl FnOnce() -> (K, V),
    ) -> &mut V {
        let root = self
            .root
            .get_or_insert_with(|| Arc::new(Node::Leaf(Vec::new())));
        let (value, inserted) = entry_in(root, 0, hash, &eq, make);
        self.len += usize::from(inserted);
        value
    }

    /// Inserts or replaces (key spelling included); returns the old value.
    pub fn insert(&mut self, hash: u64, key: K, value: V, eq: impl Fn(&K) -> bool) -> Option<V> {
        let mut new = Some((key, value));
        let slot = self.entry(hash, &eq, || new.take().expect("taken once"));
        let (key, value) = new?;
        let old = std::mem::replace(slot, value);
        // The latest spelling of a key is the one kept (the path shown by `Snapshot::table`).
        self.rekey(hash, key, eq);
        Some(old)
    }

    /// Replaces the stored key of an entry that `eq` finds (a no-op when absent).
    pub fn rekey(&mut self, hash: u64, key: K, eq: impl Fn(&K) -> bool) {
        if self.get(hash, &eq).is_none() {
            return;
        }
        if let Some(root) = &mut self.root {
            rekey_in(root, 0, hash, key, &eq);
        }
    }

    pub fn remove(&mut self, hash: u64, eq: impl Fn(&K) -> bool) -> Option<V> {
        // Looked up first: a miss must not copy shared nodes.
        self.get(hash, &eq)?;
        let root = self.root.as_mut()?;
        let (old, empty) = remove_in(root, 0, hash, &eq);
        if empty {
            self.root = None;
        }
        self.len -= usize::from(old.is_some());
        old
    }

    /// Every entry, in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        fn walk<K, V>(node: &Node<K, V>, f: &mut impl FnMut(&K, &V)) {
            match node {
                Node::Leaf(entries) => entries.iter().for_each(|(_, k, v)| f(k, v)),
                Node::Branch(children) => children.iter().flatten().for_each(|c| walk(c, f)),
            }
        }
        if let Some(root) = &self.root {
            walk(root, &mut f);
        }
    }
}

fn entry_in<'a, K: Clone, V: Clone>(
    node: &'a mut Arc<Node<K, V>>,
    shift: u32,
    hash: u64,
    eq: &impl Fn(&K) -> bool,
    make: impl FnOnce() -> (K, V),
) -> (&'a mut V, bool) {
    let inner = Arc::make_mut(node);
    let leaf = match &*inner {
        Node::Leaf(entries) => Some((
            entries.iter().position(|(h, k, _)| *h == hash && eq(k)),
            entries.len() < LEAF_CAP || shift + BITS > u64::BITS,
        )),
        Node::Branch(_) => None,
    };
    if let Some((found, room)) = leaf {
        if found.is_some() || room {
            let Node::Leaf(entries) = inner else {
                unreachable!("matched a leaf above")
            };
            let i = found.unwrap_or_else(|| {
                let (k, v) = make();
                entries.push((hash, k, v));
                entries.len() - 1
            });
            return (&mut entries[i].2, found.is_none());
        }
        let Node::Leaf(entries) = inner else {
            unreachable!("matched a leaf above")
        };
        // Full: becomes a branch of leaves one level down.
        let mut children: Children<K, V> = Box::default();
        for (h, k, v) in std::mem::take(entries) {
            let child =
                children[slot(h, shift)].get_or_insert_with(|| Arc::new(Node::Leaf(vec![])));
            if let Node::Leaf(leaf) = Arc::make_mut(child) {
                leaf.push((h, k, v));
            }
        }
        *inner = Node::Branch(children);
    }
    match inner {
        Node::Branch(children) => {
            let child =
                children[slot(hash, shift)].get_or_insert_with(|| Arc::new(Node::Leaf(Vec::new())));
            entry_in(child, shift + BITS, hash, eq, make)
        }
        Node::Leaf(_) => unreachable!("a full leaf was turned into a branch above"),
    }
}

fn rekey_in<K: Clone, V: Clone>(
    node: &mut Arc<Node<K, V>>,
    shift: u32,
    hash: u64,
    key: K,
    eq: &impl Fn(&K) -> bool,
) {
    match Arc::make_mut(node) {
        Node::Leaf(entries) => {
            if let Some(e) = entries.iter_mut().find(|(h, k, _)| *h == hash && eq(k)) {
                e.1 = key;
            }
        }
        Node::Branch(children) => {
            if let Some(child) = &mut children[slot(hash, shift)] {
                rekey_in(child, shift + BITS, hash, key, eq);
            }
        }
    }
}

/// Removes the entry; also says whether `node` is now empty (its parent then drops it).
fn remove_in<K: Clone, V: Clone>(
    node: &mut Arc<Node<K, V>>,
    shift: u32,
    hash: u64,
    eq: &impl Fn(&K) -> bool,
) -> (Option<V>, bool) {
    match Arc::make_mut(node) {
        Node::Leaf(entries) => {
            let old = entries
                .iter()
                .position(|(h, k, _)| *h == hash && eq(k))
                .map(|i| entries.swap_remove(i).2);
            (old, entries.is_empty())
        }
        Node::Branch(children) => {
            let i = slot(hash, shift);
            let Some(child) = &mut children[i] else {
                return (None, false);
            };
            let (old, empty) = remove_in(child, shift + BITS, hash, eq);
            if empty {
                children[i] = None;
            }
            (old, children.iter().all(Option::is_none))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deliberately poor hash, so that leaves fill, split and collide.
    fn h(n: u32) -> u64 {
        u64::from(n % 1000).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    #[test]
    fn insert_get_remove_and_len() {
        let mut t: HashTrie<u32, u32> = HashTrie::default();
        for n in 0..5000 {
            assert_eq!(t.insert(h(n), n, n * 2, |&k| k == n), None);
        }
        assert_eq!(t.len(), 5000);
        for n in 0..5000 {
            assert_eq!(t.get(h(n), |&k| k == n), Some(&(n * 2)));
        }
        assert_eq!(t.get(h(7), |&k| k == 5007), None);
        assert_eq!(t.insert(h(3), 3, 9, |&k| k == 3), Some(6));
        assert_eq!(t.len(), 5000);
        for n in (0..5000).step_by(2) {
            assert_eq!(
                t.remove(h(n), |&k| k == n),
                Some(if n == 3 { 9 } else { n * 2 })
            );
        }
        assert_eq!(t.remove(h(0), |&k| k == 0), None);
        assert_eq!(t.len(), 2500);
        let mut seen = Vec::new();
        t.for_each(|&k, _| seen.push(k));
        seen.sort();
        assert_eq!(seen, (1..5000).step_by(2).collect::<Vec<_>>());
        for n in (1..5000).step_by(2) {
            assert!(t.remove(h(n), |&k| k == n).is_some());
        }
        assert_eq!(t.len(), 0);
        assert!(t.root.is_none(), "an emptied trie holds no nodes");
    }

    #[test]
    fn full_hash_collisions_still_work() {
        let mut t: HashTrie<u32, ()> = HashTrie::default();
        for n in 0..100 {
            t.insert(42, n, (), |&k| k == n);
        }
        assert_eq!(t.len(), 100);
        assert!((0..100).all(|n| t.get(42, |&k| k == n).is_some()));
        assert!((0..100).all(|n| t.remove(42, |&k| k == n).is_some()));
    }

    #[test]
    fn clones_are_independent_and_share_untouched_nodes() {
        let mut a: HashTrie<u32, u32> = HashTrie::default();
        for n in 0..2000 {
            a.insert(
                u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                n,
                n,
                |&k| k == n,
            );
        }
        let hash = |n: u32| u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut b = a.clone();
        b.insert(hash(5), 5, 500, |&k| k == 5);
        b.remove(hash(6), |&k| k == 6);
        b.insert(hash(9000), 9000, 9, |&k| k == 9000);
        assert_eq!(a.get(hash(5), |&k| k == 5), Some(&5));
        assert_eq!(a.get(hash(6), |&k| k == 6), Some(&6));
        assert_eq!(a.get(hash(9000), |&k| k == 9000), None);
        assert_eq!(b.get(hash(5), |&k| k == 5), Some(&500));
        assert_eq!(b.get(hash(6), |&k| k == 6), None);
        assert_eq!((a.len(), b.len()), (2000, 2000));
        // Only the changed paths were copied: the root branches share most children.
        let (Some(ra), Some(rb)) = (&a.root, &b.root) else {
            panic!("roots")
        };
        let (Node::Branch(ca), Node::Branch(cb)) = (&**ra, &**rb) else {
            panic!("2000 entries make a branch")
        };
        let shared = ca
            .iter()
            .zip(cb.iter())
            .filter(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                _ => false,
            })
            .count();
        assert!(shared >= FAN - 3, "{shared} of {FAN} children shared");
    }

    #[test]
    fn rekey_replaces_the_stored_key() {
        let mut t: HashTrie<String, u8> = HashTrie::default();
        fn eq(s: &str) -> impl Fn(&String) -> bool + '_ {
            move |k: &String| k.eq_ignore_ascii_case(s)
        }
        t.insert(1, "a.JPG".into(), 1, eq("a.jpg"));
        t.rekey(1, "A.jpg".into(), eq("a.jpg"));
        t.rekey(1, "zzz".into(), eq("b.jpg"));
        let mut keys = Vec::new();
        t.for_each(|k, _| keys.push(k.clone()));
        assert_eq!(keys, vec!["A.jpg".to_string()]);
    }
}
