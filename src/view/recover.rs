//! Node records in the restart state (`crate::state`): what a new server needs to serve the
//! node ids the kernel holds, written by the node table as nodes change and read back when a
//! server starts on a session another one served.
//!
//! One 64-byte record per node id: its parent, inode number, type, lookup count, backing id
//! and handle, then its name where it fits after the handle (22 bytes with the 8-byte handles
//! of ext4 and f2fs; a longer name is found again by listing the parent for the inode
//! number). Records are small because there is one per node the kernel holds, beside the
//! node itself. Lookup counts may be high after a crash (a lookup answered by no one, a
//! FORGET read by the dead server): such nodes stay until unmount, never go early.

use super::lower::Handle;
use super::StorageView;
use crate::state::{StateMap, HEADER};
use std::collections::HashMap;
use std::os::fd::AsFd;

pub const RECORD: usize = 64;
/// Where the handle (type, length, bytes) starts; the name follows it.
const TAIL: usize = 32;
const NAME_ELSEWHERE: u8 = u8::MAX;

const EMPTY: u32 = 0;
const LIVE: u32 = 1;
/// Being rewritten when its server died: fields may mix two versions.
const WRITING: u32 = 2;

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
    /// `None`: longer than a record holds (or torn); found again from the parent.
    pub name: Option<Vec<u8>>,
}

/// Writes `r` as record `id`.
pub fn write(map: &StateMap, id: u64, r: &Record) {
    let Some(p) = map.record(id, RECORD) else {
        return;
    };
    let mut b = [0u8; RECORD];
    b[0..4].copy_from_slice(&WRITING.to_le_bytes());
    b[4..8].copy_from_slice(&(r.nlookup.min(u32::MAX as u64) as u32).to_le_bytes());
    b[8..16].copy_from_slice(&r.parent.to_le_bytes());
    b[16..24].copy_from_slice(&r.ino.to_le_bytes());
    b[24..28].copy_from_slice(&r.backing.to_le_bytes());
    b[28..30].copy_from_slice(&r.kind.to_le_bytes());
    b[30] = r.flags;
    let handle = r.handle.to_bytes();
    let name_at = TAIL + 2 + handle[1] as usize;
    b[TAIL..name_at].copy_from_slice(&handle[..name_at - TAIL]);
    match &r.name {
        Some(n) if n.len() <= RECORD - name_at => {
            b[31] = n.len() as u8;
            b[name_at..name_at + n.len()].copy_from_slice(n);
        }
        _ => b[31] = NAME_ELSEWHERE,
    }
    // SAFETY: p points at RECORD bytes of the shared mapping, written only under the shard
    // lock of this id. The state word goes first as WRITING and last as LIVE, so a record cut
    // short by a crash is known as such.
    unsafe {
        std::ptr::copy_nonoverlapping(b.as_ptr(), p, RECORD);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        std::ptr::copy_nonoverlapping(LIVE.to_le_bytes().as_ptr(), p, 4);
    }
}

/// Marks record `id` empty (the kernel forgot the node).
pub fn clear(map: &StateMap, id: u64) {
    if let Some(p) = map.existing(id, RECORD) {
        // SAFETY: as in `write`; only the state word changes.
        unsafe { std::ptr::copy_nonoverlapping(EMPTY.to_le_bytes().as_ptr(), p as *mut u8, 4) };
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

/// A record's state word (EMPTY, LIVE or WRITING).
fn state_of(record: &[u8]) -> u32 {
    u32::from_le_bytes([record[0], record[1], record[2], record[3]])
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
    if name_at - TAIL > hb.len() {
        return None; // longer than any handle we record
    }
    hb[..name_at - TAIL].copy_from_slice(&b[TAIL..name_at]);
    let handle = Handle::from_bytes(&hb)?;
    let len = b[31] as usize;
    let name =
        (state == LIVE && name_at + len <= RECORD).then(|| b[name_at..name_at + len].to_vec());
    Some(Record {
        parent: u64_at(8),
        ino: u64_at(16),
        // A torn record may carry an older count: never let it fall below what the kernel
        // may hold (one more keeps the node until unmount at worst).
        nlookup: u64::from(u32_at(4)).max(1) + u64::from(state == WRITING),
        backing: u32_at(24) as i32,
        kind: u16::from_le_bytes([b[28], b[29]]),
        flags: b[30],
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

    /// Names of `(id, parent, ino)` nodes, by listing each parent once.
    fn names_from_parents(&self, unnamed: &[(u64, u64, u64)]) -> Vec<(u64, Vec<u8>)> {
        let mut by_parent: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
        for &(id, parent, ino) in unnamed {
            by_parent.entry(parent).or_default().push((id, ino));
        }
        let mut out = Vec::new();
        for (parent, wanted) in by_parent {
            let Ok(fd) = self.open_node(parent, libc::O_RDONLY | libc::O_DIRECTORY) else {
                continue;
            };
            let mut stream = super::dirstream::DirStream::new(fd);
            let mut left: HashMap<u64, Vec<u64>> = HashMap::new();
            for (id, ino) in wanted {
                left.entry(ino).or_default().push(id);
            }
            while let Ok(Some(e)) = stream.peek() {
                if let Some(ids) = left.remove(&e.ino) {
                    let name = e.name.to_vec();
                    out.extend(ids.into_iter().map(|id| (id, name.clone())));
                }
                stream.advance();
                if left.is_empty() {
                    break;
                }
            }
        }
        out
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
            name: Some(name.to_vec()),
        }
    }

    #[test]
    fn records_round_trip_and_long_names_are_found_elsewhere() {
        let map = StateMap::map(crate::state::create().unwrap()).unwrap();
        write(&map, 70, &record(b"IMG_0001.jpg"));
        // The fake handle is 8 bytes long, as ext4's and f2fs's: 22 bytes are left for a name.
        write(&map, 73, &record(&[b'y'; 22]));
        write(&map, 71, &record(&[b'x'; 23]));
        write(&map, 72, &record(b"gone"));
        clear(&map, 72);
        let all = read_all(&map, 2);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], (70, record(b"IMG_0001.jpg")));
        assert_eq!(all[1].0, 71);
        assert_eq!(all[1].1.name, None);
        assert_eq!(all[1].1.nlookup, 3);
        assert_eq!(all[2], (73, record(&[b'y'; 22])));
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
