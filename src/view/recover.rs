//! Node records in the restart state (`crate::state`): what a new server needs to serve the
//! node ids the kernel holds, written by the node table as nodes change and read back when a
//! server starts on a session another one served.
//!
//! One 48-byte record per node id: its parent, inode number, type, lookup count, backing id
//! and handle, then its name where it fits after the handle (14 bytes with the 8-byte handles
//! of ext4 and f2fs). A longer name is kept as a hash and found again by listing the parent
//! for the inode number and that hash: a file with several names in one directory gets each
//! node its own name back. Records are small because there is one per node the kernel holds,
//! beside the node itself. Lookup counts may be high after a crash (a lookup answered by no
//! one, a FORGET read by the dead server): such nodes stay until unmount, never go early.

use super::lower::Handle;
use super::nodes::Unnamed;
use super::StorageView;
use crate::state::{StateMap, HEADER};
use std::collections::HashMap;
use std::os::fd::AsFd;

pub const RECORD: usize = 48;
// The layout: state (1 byte), flags (1), type (1: `S_IFMT` bits >> 8), name tag (1), lookup
// count (4), parent (4: node ids stay below 2^32), backing id (4), inode number (8), then the
// handle (type, length, bytes: at most 24) and the name or its hash after it.
const FLAGS: usize = 1;
const KIND: usize = 2;
const NAME_TAG: usize = 3;
const NLOOKUP: usize = 4;
const PARENT: usize = 8;
const BACKING: usize = 12;
const INO: usize = 16;
/// Where the handle starts; the name follows it.
const TAIL: usize = 24;
/// Name tags besides a length: the name's hash follows the handle, or neither fits (a handle
/// of more than 14 bytes leaves no room for a hash).
const NAME_HASHED: u8 = u8::MAX;
const NAME_NOT_KEPT: u8 = u8::MAX - 1;

const EMPTY: u8 = 0;
const LIVE: u8 = 1;
/// Being rewritten when its server died: fields may mix two versions.
const WRITING: u8 = 2;

/// A node as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub parent: u64,
    pub ino: u64,
    pub nlookup: u64,
    pub backing: i32,
    pub kind: u16,
    pub flags: u8,
    pub handle: Handle,
    pub name: RecordedName,
}

/// A node's name as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedName {
    Whole(Vec<u8>),
    /// Longer than the record holds: its [`name_hash`], to find it again in the parent.
    Hash(u64),
    /// Neither fits beside a long handle, or the record was being rewritten when its server
    /// died: only the inode number is sure.
    Unknown,
}

impl RecordedName {
    /// The hash a record keeps for a name it cannot hold whole.
    pub fn hash(&self) -> Option<u64> {
        match self {
            RecordedName::Whole(n) => Some(name_hash(n)),
            RecordedName::Hash(h) => Some(*h),
            RecordedName::Unknown => None,
        }
    }
}

/// FNV-1a: stable across servers and versions, which the restart state needs. Names are
/// only told apart among the names of one inode in one directory, made on the lower side
/// (apps cannot link), so no keyed hash is needed.
pub fn name_hash(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Writes `r` as record `id`.
pub fn write(map: &StateMap, id: u64, r: &Record) {
    let Some(p) = map.record(id, RECORD) else {
        return;
    };
    let Ok(parent) = u32::try_from(r.parent) else {
        // No table hands out such ids (`nodes::MAX_SLOTS`); a record that cannot say its parent
        // is left empty, and a new server answers ESTALE for the node.
        clear(map, id);
        return;
    };
    let mut b = [0u8; RECORD];
    b[0] = WRITING;
    b[FLAGS] = r.flags;
    // The type is `st_mode & S_IFMT`: its low 12 bits are zero.
    b[KIND] = (r.kind >> 8) as u8;
    b[NLOOKUP..NLOOKUP + 4].copy_from_slice(&(r.nlookup.min(u32::MAX as u64) as u32).to_le_bytes());
    b[PARENT..PARENT + 4].copy_from_slice(&parent.to_le_bytes());
    b[BACKING..BACKING + 4].copy_from_slice(&r.backing.to_le_bytes());
    b[INO..INO + 8].copy_from_slice(&r.ino.to_le_bytes());
    let handle = r.handle.to_bytes();
    // Handles are at most 22 bytes (`Handle::from_bytes`): they always fit.
    let name_at = TAIL + 2 + handle[1] as usize;
    b[TAIL..name_at].copy_from_slice(&handle[..name_at - TAIL]);
    let room = RECORD - name_at;
    b[NAME_TAG] = match &r.name {
        RecordedName::Whole(n) if n.len() <= room => {
            b[name_at..name_at + n.len()].copy_from_slice(n);
            n.len() as u8
        }
        name => match name.hash() {
            Some(h) if room >= 8 => {
                b[name_at..name_at + 8].copy_from_slice(&h.to_le_bytes());
                NAME_HASHED
            }
            _ => NAME_NOT_KEPT,
        },
    };
    // SAFETY: p points at RECORD bytes of the shared mapping, written only under the shard
    // lock of this id. The state byte goes first as WRITING and last as LIVE, so a record cut
    // short by a crash is known as such.
    unsafe {
        std::ptr::copy_nonoverlapping(b.as_ptr(), p, RECORD);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        p.write(LIVE);
    }
}

/// Marks record `id` empty (the kernel forgot the node).
pub fn clear(map: &StateMap, id: u64) {
    if let Some(p) = map.existing(id, RECORD) {
        // SAFETY: as in `write`; only the state byte changes.
        unsafe { (p as *mut u8).write(EMPTY) };
    }
}

/// Frees the pages of the state file that hold only empty records (the kernel forgot their
/// nodes), reading the records through the fd. Returns the id ranges freed: a node written
/// into one while this ran lost its record, so the caller writes their live nodes again.
pub fn release_empty(map: &StateMap) -> Vec<std::ops::Range<u64>> {
    const PAGE: usize = 4096;
    let Some(end) = map
        .high_water()
        .checked_sub(1)
        .and_then(|last| map.record_offset(last, RECORD).map(|off| off + RECORD))
    else {
        return Vec::new();
    };
    let mut page = vec![0u8; PAGE + 2 * RECORD];
    let mut freed: Vec<std::ops::Range<u64>> = Vec::new();
    // Pages from the first one wholly past the header; a record straddling two pages keeps both.
    let mut at = HEADER.next_multiple_of(PAGE);
    while at + PAGE <= end {
        let first = ((at - HEADER) / RECORD) as u64;
        let last = ((at + PAGE - 1 - HEADER) / RECORD) as u64;
        let Some(from) = map.record_offset(first, RECORD) else {
            break;
        };
        let span = (last - first + 1) as usize * RECORD;
        if map.read_at(from, &mut page[..span]).is_err() {
            break;
        }
        let all_empty = page[..span]
            .chunks_exact(RECORD)
            .all(|r| state_of(r) == EMPTY);
        // An all-zero page is a hole already (or was never written): nothing to free.
        let zero = page[..span].iter().all(|&b| b == 0);
        if all_empty && !zero && map.punch(at, PAGE).is_ok() {
            match freed.last_mut() {
                Some(r) if r.end >= first => r.end = last + 1,
                _ => freed.push(first..last + 1),
            }
        }
        at += PAGE;
    }
    freed
}

/// Every recorded node, `(id, record)`, ids below `first_id` skipped (the root is rebuilt).
pub fn read_all(map: &StateMap, first_id: u64) -> Vec<(u64, Record)> {
    // Read through the fd, a batch of records at a time: touching the pages freed by
    // `release_empty` through the shared mapping would allocate them all again.
    const BATCH: u64 = 256;
    let mut out = Vec::new();
    let mut buf = vec![0u8; BATCH as usize * RECORD];
    let end = map.high_water();
    let mut id = first_id;
    while id < end {
        let n = (end - id).min(BATCH);
        let bytes = &mut buf[..n as usize * RECORD];
        let Some(off) = map.record_offset(id, RECORD) else {
            break;
        };
        if map.read_at(off, bytes).is_err() {
            break;
        }
        for (k, chunk) in bytes.chunks_exact(RECORD).enumerate() {
            let mut b = [0u8; RECORD];
            b.copy_from_slice(chunk);
            if let Some(r) = decode(&b) {
                out.push((id + k as u64, r));
            }
        }
        id += n;
    }
    out
}

/// A record's state (EMPTY, LIVE or WRITING).
fn state_of(record: &[u8]) -> u8 {
    record[0]
}

fn decode(b: &[u8; RECORD]) -> Option<Record> {
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |i: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(x)
    };
    let state = state_of(b);
    if state != LIVE && state != WRITING {
        return None;
    }
    let mut hb = [0u8; 24];
    let name_at = TAIL + 2 + b[TAIL + 1] as usize;
    if name_at - TAIL > hb.len() || name_at > RECORD {
        return None; // longer than any handle we record
    }
    hb[..name_at - TAIL].copy_from_slice(&b[TAIL..name_at]);
    let handle = Handle::from_bytes(&hb)?;
    let tag = b[NAME_TAG];
    let name = if state != LIVE || tag == NAME_NOT_KEPT {
        RecordedName::Unknown
    } else if tag == NAME_HASHED && name_at + 8 <= RECORD {
        RecordedName::Hash(u64_at(name_at))
    } else if name_at + usize::from(tag) <= RECORD {
        RecordedName::Whole(b[name_at..name_at + usize::from(tag)].to_vec())
    } else {
        RecordedName::Unknown
    };
    Some(Record {
        parent: u64::from(u32_at(PARENT)),
        ino: u64_at(INO),
        // A torn record may carry an older count: never let it fall below what the kernel
        // may hold (one more keeps the node until unmount at worst).
        nlookup: u64::from(u32_at(NLOOKUP)).max(1) + u64::from(state == WRITING),
        backing: u32_at(BACKING) as i32,
        kind: u16::from(b[KIND]) << 8,
        flags: b[FLAGS],
        handle,
        name,
    })
}

impl StorageView {
    /// Takes over the node ids an earlier server recorded in `state`, and records this
    /// server's from now on. Call before the session starts. Returns how many nodes came back.
    pub fn resume_nodes(&mut self, state: std::sync::Arc<StateMap>) -> usize {
        let records = read_all(&state, crate::fuse::abi::ROOT_ID + 1);
        let unnamed = self.nodes.restore(records);
        let count = self.nodes.count();
        if !unnamed.is_empty() {
            let found = self.names_from_parents(&unnamed);
            self.nodes.rename_restored(&found);
            log::info!(
                "{} of {} long names found again in their directories",
                found.len(),
                unnamed.len()
            );
        }
        self.nodes.attach_journal(state);
        if count > 0 {
            // What the records and listings took to read is free now: a takeover of 100,000
            // long names left 7 MB of free heap behind, which glibc keeps until trimmed.
            self.give_back();
        }
        count
    }

    /// For a resent CREATE or MKDIR by `uid` of `parent/name`: the server that first ran it
    /// may have made the name and died before tagging its creator, so that the app would be
    /// refused its own new file. Tags it if it is an app's, has no creator, is empty, was
    /// born in the last `RECENT` and the app may make that name. Returns whether it did.
    pub fn adopt_new(&self, uid: u32, parent: u64, name: &[u8]) -> bool {
        const RECENT: std::time::Duration = std::time::Duration::from_secs(10);
        if self.class(uid) != crate::policy::CallerClass::App {
            return false;
        }
        let Ok(dir) = self.dir_fd(parent) else {
            return false;
        };
        let Ok(cname) = super::lower::cname(name) else {
            return false;
        };
        let Ok(fd) = super::lower::open_at(dir.as_fd(), &cname, libc::O_PATH, 0) else {
            return false;
        };
        let Some((kind, size, born)) = statx_birth(fd.as_fd()) else {
            return false;
        };
        let op = match kind {
            libc::S_IFREG if size == 0 => crate::policy::Op::Create,
            libc::S_IFDIR => crate::policy::Op::Mkdir,
            _ => return false,
        };
        let recent = std::time::SystemTime::now()
            .duration_since(born)
            .is_ok_and(|age| age < RECENT);
        if !recent {
            return false;
        }
        match super::access::read_owner_at(dir.as_fd(), name) {
            Ok(None) => {}
            // Already the caller's (its first attempt finished after all).
            Ok(Some(tag)) if *tag == *self.policy.snapshot().owner_tag(uid) => return true,
            _ => return false,
        }
        if self.check_new(uid, op, parent, name).is_err() {
            return false;
        }
        // Tags are written through a real open (O_PATH fds take no xattrs); O_NONBLOCK in
        // case the name was swapped for a fifo meanwhile.
        let flags = if op == crate::policy::Op::Mkdir {
            libc::O_RDONLY | libc::O_DIRECTORY
        } else {
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY
        };
        let Ok(fd) = super::lower::open_at(dir.as_fd(), &cname, flags, 0) else {
            return false;
        };
        self.record_creator(uid, fd.as_fd());
        log::info!(
            "resent request: tagged {:?} made by the previous server as uid {uid}'s",
            String::from_utf8_lossy(name)
        );
        true
    }

    /// Names of restored nodes that their records did not keep whole, by listing each parent
    /// once.
    fn names_from_parents(&self, unnamed: &[Unnamed]) -> Vec<(u64, Vec<u8>)> {
        let mut by_parent: HashMap<u64, Vec<Unnamed>> = HashMap::new();
        for u in unnamed {
            by_parent.entry(u.parent).or_default().push(*u);
        }
        let mut out = Vec::new();
        for (parent, wanted) in by_parent {
            let Ok(fd) = self.open_node(parent, libc::O_RDONLY | libc::O_DIRECTORY) else {
                continue;
            };
            let mut stream = super::dirstream::DirStream::new(fd);
            let mut matcher = NameMatcher::new(&wanted);
            while let Ok(Some(e)) = stream.peek() {
                if matcher.offer(e.ino, e.name) {
                    break;
                }
                stream.advance();
            }
            out.extend(matcher.finish());
        }
        out
    }
}

/// Gives the unnamed nodes of one directory their names from its listing. A node whose
/// record kept a hash takes the name of its inode with that hash, so each name of a file
/// linked several times in the directory goes back to its own node. A node left over (its
/// record kept no hash, or its name changed behind the servers' backs) takes the name of its
/// inode only if that is the one name no other node took and no other node is left for it.
/// Any other node stays unnamed, and the kernel looks it up again (`path_of` answers ESTALE).
struct NameMatcher {
    /// (inode, name hash) -> node id, for the records that kept a hash.
    hashed: HashMap<(u64, u64), u64>,
    /// Per inode: its nodes not named yet, and its names listed that no node took.
    left: HashMap<u64, (Vec<u64>, Vec<Vec<u8>>)>,
    found: Vec<(u64, Vec<u8>)>,
}

impl NameMatcher {
    fn new(wanted: &[Unnamed]) -> Self {
        let mut m = NameMatcher {
            hashed: HashMap::new(),
            left: HashMap::new(),
            found: Vec::new(),
        };
        for u in wanted {
            m.left.entry(u.ino).or_default().0.push(u.id);
            if let Some(h) = u.hash {
                m.hashed.insert((u.ino, h), u.id);
            }
        }
        m
    }

    /// One listed entry. Returns whether every node is named (the rest of the listing can
    /// change nothing).
    fn offer(&mut self, ino: u64, name: &[u8]) -> bool {
        let Some((ids, names)) = self.left.get_mut(&ino) else {
            return false;
        };
        match self.hashed.remove(&(ino, name_hash(name))) {
            Some(id) => {
                self.found.push((id, name.to_vec()));
                ids.retain(|&i| i != id);
                if ids.is_empty() {
                    self.left.remove(&ino);
                }
            }
            None => names.push(name.to_vec()),
        }
        self.left.is_empty()
    }

    fn finish(mut self) -> Vec<(u64, Vec<u8>)> {
        for (_, (ids, mut names)) in self.left {
            if let ([id], 1) = (ids.as_slice(), names.len()) {
                self.found.push((*id, names.swap_remove(0)));
            }
        }
        self.found
    }
}

/// Type, size and birth time of an open file.
fn statx_birth(fd: std::os::fd::BorrowedFd<'_>) -> Option<(u32, u64, std::time::SystemTime)> {
    use std::os::fd::AsRawFd;
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: statx writes a whole struct statx on success; the path is an empty C string.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_TYPE | libc::STATX_SIZE | libc::STATX_BTIME,
            stx.as_mut_ptr(),
        )
    };
    if r != 0 {
        return None;
    }
    // SAFETY: statx succeeded.
    let stx = unsafe { stx.assume_init() };
    if stx.stx_mask & libc::STATX_BTIME == 0 {
        return None;
    }
    let born = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            u64::try_from(stx.stx_btime.tv_sec).ok()?,
            stx.stx_btime.tv_nsec,
        );
    Some((u32::from(stx.stx_mode) & libc::S_IFMT, stx.stx_size, born))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &[u8]) -> Record {
        Record {
            parent: 1,
            ino: 77,
            nlookup: 3,
            backing: 5,
            kind: libc::S_IFREG as u16,
            flags: 1,
            handle: super::super::lower::tests_support::fake_handle(9),
            name: RecordedName::Whole(name.to_vec()),
        }
    }

    #[test]
    fn records_round_trip_and_long_names_are_found_elsewhere() {
        let map = StateMap::map(crate::state::create().unwrap()).unwrap();
        // The fake handle is 8 bytes long, as ext4's and f2fs's: 14 bytes are left for a name.
        write(&map, 70, &record(b"IMG_0001.jpg"));
        write(&map, 73, &record(&[b'y'; 14]));
        write(&map, 71, &record(&[b'x'; 15]));
        write(&map, 72, &record(b"gone"));
        clear(&map, 72);
        // Ids that fill whole pages and beyond: records straddle page boundaries (48 does
        // not divide 4096).
        for id in 80..300 {
            write(&map, id, &record(format!("n{id}").as_bytes()));
        }
        let all = read_all(&map, 2);
        assert_eq!(all.len(), 3 + 220);
        assert_eq!(all[0], (70, record(b"IMG_0001.jpg")));
        assert_eq!(all[1].0, 71);
        assert_eq!(all[1].1.name, RecordedName::Hash(name_hash(&[b'x'; 15])));
        assert_eq!(all[1].1.nlookup, 3);
        assert_eq!(all[2], (73, record(&[b'y'; 14])));
        for (k, (id, r)) in all[3..].iter().enumerate() {
            assert_eq!(
                (*id, r),
                (80 + k as u64, &record(format!("n{id}").as_bytes()))
            );
        }
        // A record cut short by a crash keeps only what does not depend on the name.
        let off = map.record_offset(70, RECORD).unwrap();
        let mut b = [0u8; RECORD];
        map.read_at(off, &mut b).unwrap();
        b[0] = WRITING;
        let torn = decode(&b).unwrap();
        assert_eq!((torn.name, torn.nlookup), (RecordedName::Unknown, 4));
    }

    #[test]
    fn beside_the_longest_handles_a_record_keeps_no_name() {
        let map = StateMap::map(crate::state::create().unwrap()).unwrap();
        for (len, expected) in [
            (14, RecordedName::Hash(name_hash(b"a-longer-name.jpg"))),
            (15, RecordedName::Unknown),
            (22, RecordedName::Unknown),
        ] {
            let mut bytes = [0u8; 24];
            bytes[0] = 1;
            bytes[1] = len;
            bytes[2..2 + usize::from(len)].fill(7);
            let r = Record {
                handle: Handle::from_bytes(&bytes).unwrap(),
                name: RecordedName::Whole(b"a-longer-name.jpg".to_vec()),
                ..record(b"")
            };
            write(&map, 70, &r);
            let back = read_all(&map, 2);
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].1.handle, r.handle, "handle of {len} bytes");
            assert_eq!(back[0].1.name, expected, "handle of {len} bytes");
        }
        // A parent id no record can hold leaves the record empty.
        write(
            &map,
            70,
            &Record {
                parent: 1 << 32,
                ..record(b"a")
            },
        );
        assert!(read_all(&map, 2).is_empty());
    }

    fn unnamed(id: u64, ino: u64, name: Option<&[u8]>) -> Unnamed {
        Unnamed {
            id,
            parent: 1,
            ino,
            hash: name.map(name_hash),
        }
    }

    /// (nodes wanting names, the directory's listing, the names they get)
    type NameCase = (
        Vec<Unnamed>,
        &'static [(u64, &'static [u8])],
        &'static [(u64, &'static [u8])],
    );

    #[test]
    fn each_name_of_a_linked_file_goes_back_to_its_own_node() {
        const LONG_A: &[u8] = b"holiday-recording-from-the-beach.jpg";
        const LONG_B: &[u8] = b"holiday-recording-from-the-beach.mp3";
        let cases: Vec<NameCase> = vec![
            // One inode, two long names, two nodes: each its own, in either listing order.
            (
                vec![unnamed(10, 7, Some(LONG_A)), unnamed(11, 7, Some(LONG_B))],
                &[(7, LONG_A), (7, LONG_B)],
                &[(10, LONG_A), (11, LONG_B)],
            ),
            (
                vec![unnamed(10, 7, Some(LONG_A)), unnamed(11, 7, Some(LONG_B))],
                &[(7, LONG_B), (7, LONG_A)],
                &[(11, LONG_B), (10, LONG_A)],
            ),
            // Renamed while no server ran: its inode's one name in the directory.
            (
                vec![unnamed(10, 7, Some(LONG_A))],
                &[(7, LONG_B), (8, LONG_A)],
                &[(10, LONG_B)],
            ),
            // Removed: the node stays unnamed.
            (vec![unnamed(10, 7, Some(LONG_A))], &[(8, LONG_A)], &[]),
            // One name of a linked file renamed: the other name is found by its hash, and
            // the renamed node takes the name left.
            (
                vec![unnamed(10, 7, Some(LONG_A)), unnamed(11, 7, Some(LONG_B))],
                &[(7, b"c"), (7, LONG_A)],
                &[(10, LONG_A), (11, b"c")],
            ),
            // Both renamed to one name: which node it was is not known.
            (
                vec![unnamed(10, 7, Some(LONG_A)), unnamed(11, 7, Some(LONG_B))],
                &[(7, b"c")],
                &[],
            ),
            // A torn record: named only when its inode has one name in the directory.
            (
                vec![unnamed(10, 7, None)],
                &[(8, b"x"), (7, LONG_B)],
                &[(10, LONG_B)],
            ),
            (vec![unnamed(10, 7, None)], &[(7, LONG_A), (7, LONG_B)], &[]),
            (
                vec![unnamed(10, 7, None), unnamed(11, 7, None)],
                &[(7, LONG_A)],
                &[],
            ),
        ];
        for (i, (wanted, listing, expected)) in cases.into_iter().enumerate() {
            let mut m = NameMatcher::new(&wanted);
            for &(ino, name) in listing {
                if m.offer(ino, name) {
                    break;
                }
            }
            let mut got = m.finish();
            got.sort();
            let mut expected: Vec<(u64, Vec<u8>)> =
                expected.iter().map(|&(id, n)| (id, n.to_vec())).collect();
            expected.sort();
            assert_eq!(got, expected, "case {i}");
        }
    }

    #[test]
    fn a_record_with_an_impossible_handle_length_is_skipped() {
        let map = StateMap::map(crate::state::create().unwrap()).unwrap();
        write(&map, 70, &record(b"a"));
        let mut b = [0u8; RECORD];
        map.read_at(map.record_offset(70, RECORD).unwrap(), &mut b)
            .unwrap();
        assert!(decode(&b).is_some());
        for len in [23, 30, u8::MAX] {
            b[TAIL + 1] = len;
            assert_eq!(decode(&b), None, "handle length {len}");
        }
    }
}
