//! Whole requests against the real storage view over a fresh temporary lower tree, with the
//! replies captured in memory instead of a `/dev/fuse` channel.
//!
//! The input is a program of steps. Each step is `op, ctl, pick, len, payload[len]`:
//! * `op` picks an opcode from [`OPS`] (or, with ctl bit 7, is the raw opcode number);
//! * `ctl` bits 0-1 pick the caller (root, two apps, an isolated uid); bit 2 makes the header
//!   length wrong (bit 3 with it: a truncated header); bit 3 alone adds extension headers;
//!   bit 4 patches the payload's file-handle fields with a handle an earlier OPEN returned;
//!   bits 5-6 pick the node: one the view handed out, the root, an unknown id, or 0;
//! * `pick` chooses which known node / handle / unknown id.
//!
//! Node ids and file handles from successful replies are remembered, so programs reach deep
//! states: FORGET storms on live nodes, operations on forgotten ones, INTERRUPTs of earlier
//! requests. Payload sizes that would make the lower tree big (fallocate, truncate, write and
//! copy offsets) are clamped; nothing else is. After the program, the tree outside the lower
//! directory must be untouched.

use crate::frame;
use fusegate::fuse::abi::{self, opcode};
use fusegate::fuse::reply::ReplyBuf;
use fusegate::fuse::{dispatch_one, SessionStats};
use fusegate::policy::{parse_config, Policy};
use fusegate::view::{StorageView, ViewConfig};
use std::cell::RefCell;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A synthetic step: BATCH_FORGET of every node handed out so far.
const STORM: u32 = 0xffff_0001;

pub const OPS: &[u32] = &[
    opcode::LOOKUP,
    opcode::FORGET,
    opcode::GETATTR,
    opcode::SETATTR,
    opcode::READLINK,
    opcode::SYMLINK,
    opcode::MKNOD,
    opcode::MKDIR,
    opcode::UNLINK,
    opcode::RMDIR,
    opcode::RENAME,
    opcode::LINK,
    opcode::OPEN,
    opcode::READ,
    opcode::WRITE,
    opcode::STATFS,
    opcode::RELEASE,
    opcode::FSYNC,
    opcode::SETXATTR,
    opcode::GETXATTR,
    opcode::LISTXATTR,
    opcode::REMOVEXATTR,
    opcode::FLUSH,
    opcode::OPENDIR,
    opcode::READDIR,
    opcode::RELEASEDIR,
    opcode::FSYNCDIR,
    opcode::ACCESS,
    opcode::CREATE,
    opcode::INTERRUPT,
    opcode::BATCH_FORGET,
    opcode::FALLOCATE,
    opcode::READDIRPLUS,
    opcode::RENAME2,
    opcode::LSEEK,
    opcode::COPY_FILE_RANGE,
    opcode::DESTROY,
    opcode::INIT,
    opcode::NOTIFY_REPLY,
    opcode::GETLK,
    opcode::IOCTL,
    STORM,
];

const UIDS: [u32; 4] = [0, 10_057, 10_058, 99_001];

const POLICY: &str = r#"
[[app]]
uid = 10057
packages = ["com.example.cam"]
permissions = ["read_images"]

[[app]]
uid = 10058
packages = ["com.example.files"]
permissions = ["write_media"]

[[grant]]
uid = 10058
path = "Download/doc.txt"
access = "write"
"#;

/// Where the temporary trees go: tmpfs when there is one (fast, and supports file handles).
fn scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A lower tree beside an `outside` directory that no request may reach.
struct Scratch {
    base: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = scratch_base().join(format!("fusegate-fuzz-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let lower = base.join("lower");
        for d in [
            "DCIM/Camera",
            "Download",
            "Music",
            "Pictures",
            "Android/data/com.example.cam",
            "Android/data/com.example.files",
        ] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
        }
        for (f, text) in [
            ("DCIM/Camera/IMG_1.jpg", "jpeg"),
            ("Download/doc.txt", "document"),
            ("Music/song.mp3", "mp3"),
            ("Pictures/.nomedia", ""),
            ("Android/data/com.example.cam/f.txt", "private"),
        ] {
            std::fs::write(lower.join(f), text).unwrap();
        }
        symlink("DCIM", lower.join("link")).unwrap();
        symlink("../outside/keep", lower.join("escape")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/keep"), "keep").unwrap();
        Scratch { base }
    }

    fn lower(&self) -> PathBuf {
        self.base.join("lower")
    }

    /// Nothing outside the lower directory changed.
    fn check_outside(&self) {
        let mut top: Vec<_> = std::fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        top.sort();
        assert_eq!(
            top,
            ["lower", "outside"],
            "something appeared beside the lower dir"
        );
        let outside: Vec<_> = std::fs::read_dir(self.base.join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(outside, ["keep"], "the outside dir changed");
        let keep = self.base.join("outside/keep");
        assert_eq!(
            std::fs::read(&keep).unwrap(),
            b"keep",
            "outside file rewritten"
        );
        let st = std::fs::symlink_metadata(&keep).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(st.mode() & 0o7777, 0o644, "outside file chmodded");
        assert_eq!((st.uid(), st.gid()), (0, 0), "outside file chowned");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A cursor over the fuzz input; reads past the end give zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

fn get_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    if let Some(s) = b.get_mut(at..at + 8) {
        s.copy_from_slice(&v.to_ne_bytes());
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_ne_bytes());
    }
}

fn clamp_u64(b: &mut [u8], at: usize, max: u64) {
    if let Some(v) = get_u64(b, at) {
        put_u64(b, at, v % max);
    }
}

/// Offsets of the file-handle fields in each opcode's argument struct.
fn fh_offsets(op: u32) -> &'static [usize] {
    match op {
        opcode::READ
        | opcode::WRITE
        | opcode::RELEASE
        | opcode::FLUSH
        | opcode::FSYNC
        | opcode::READDIR
        | opcode::READDIRPLUS
        | opcode::RELEASEDIR
        | opcode::FSYNCDIR
        | opcode::FALLOCATE
        | opcode::LSEEK => &[0],
        opcode::GETATTR | opcode::SETATTR => &[8],
        opcode::COPY_FILE_RANGE => &[0, 24],
        _ => &[],
    }
}

const MB: u64 = 1 << 20;

/// Keeps the lower tree small whatever the program asks (sparse sizes are fine on tmpfs;
/// allocated ones are not).
fn clamp(op: u32, p: &mut [u8]) {
    match op {
        opcode::FALLOCATE => {
            clamp_u64(p, 8, 16 * MB);
            clamp_u64(p, 16, MB);
        }
        opcode::WRITE => clamp_u64(p, 8, 16 * MB),
        opcode::SETATTR => clamp_u64(p, 16, 16 * MB),
        opcode::COPY_FILE_RANGE => {
            clamp_u64(p, 8, 16 * MB);
            clamp_u64(p, 32, 16 * MB);
            clamp_u64(p, 40, MB);
        }
        _ => {}
    }
}

/// What the program has learned from replies so far.
struct Known {
    nodes: Vec<u64>,
    handles: Vec<u64>,
    uniques: Vec<u64>,
}

impl Known {
    fn learn(&mut self, op: u32, reply: &[u8]) {
        let entry = std::mem::size_of::<abi::EntryOut>();
        let body = &reply[16..];
        match op {
            opcode::LOOKUP | opcode::MKNOD | opcode::MKDIR | opcode::SYMLINK | opcode::LINK => {
                self.node(get_u64(body, 0))
            }
            opcode::CREATE => {
                self.node(get_u64(body, 0));
                self.handle(get_u64(body, entry));
            }
            opcode::OPEN | opcode::OPENDIR => self.handle(get_u64(body, 0)),
            _ => {}
        }
    }
    fn node(&mut self, id: Option<u64>) {
        if let Some(id) = id.filter(|&id| id != 0) {
            if self.nodes.len() < 256 {
                self.nodes.push(id);
            }
        }
    }
    fn handle(&mut self, fh: Option<u64>) {
        if let Some(fh) = fh {
            if self.handles.len() < 256 {
                self.handles.push(fh);
            }
        }
    }
}

thread_local! {
    static REPLY: RefCell<ReplyBuf> = RefCell::new(ReplyBuf::new((1 << 20) + 4096));
}

/// Builds one request from a step; `None` once the input is used up.
fn build(input: &mut Input<'_>, known: &Known, unique: u64) -> Option<(u32, Vec<u8>)> {
    let op_sel = input.byte()?;
    let ctl = input.byte().unwrap_or(0);
    let pick = input.byte().unwrap_or(0) as usize;
    let len = input.byte().unwrap_or(0) as usize;
    let mut payload = input.take(len).to_vec();

    let mut op = if ctl & 0x80 != 0 {
        op_sel as u32
    } else {
        OPS[op_sel as usize % OPS.len()]
    };
    let nodeid = match (ctl >> 5) & 3 {
        0 => known.nodes[pick % known.nodes.len()],
        1 => abi::ROOT_ID,
        2 => (pick as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 2,
        _ => 0,
    };
    if op == STORM {
        op = opcode::BATCH_FORGET;
        let nlookup = get_u64(&payload, 0).unwrap_or(1);
        let mut p = Vec::new();
        let count = known.nodes.len() as u32;
        p.extend_from_slice(&count.to_ne_bytes());
        p.extend_from_slice(&0u32.to_ne_bytes());
        for &n in &known.nodes {
            p.extend_from_slice(&n.to_ne_bytes());
            p.extend_from_slice(&nlookup.to_ne_bytes());
        }
        payload = p;
    }
    if ctl & 0x10 != 0 && !known.handles.is_empty() {
        let fh = known.handles[pick % known.handles.len()];
        for &at in fh_offsets(op) {
            put_u64(&mut payload, at, fh);
        }
    }
    if op == opcode::WRITE && payload.len() >= 40 && ctl & 0x04 == 0 {
        // Most writes should get past the size check to reach the view.
        let size = (payload.len() - 40) as u32;
        put_u32(&mut payload, 16, size);
    }
    if op == opcode::INTERRUPT && !known.uniques.is_empty() && payload.len() >= 8 {
        put_u64(&mut payload, 0, known.uniques[pick % known.uniques.len()]);
    }
    clamp(op, &mut payload);

    let total = 40 + payload.len();
    let mut header = abi::InHeader {
        len: total as u32,
        opcode: op,
        unique,
        nodeid,
        uid: UIDS[(ctl & 3) as usize],
        gid: UIDS[(ctl & 3) as usize],
        pid: 4242,
        total_extlen: 0,
        padding: 0,
    };
    match ctl & 0x0c {
        0x04 => header.len = (total as u32).wrapping_add(1 + pick as u32 % 7) ^ (pick as u32 >> 3),
        0x08 => header.total_extlen = (pick % 4) as u16,
        _ => {}
    }
    let mut buf = abi::as_bytes(&header).to_vec();
    buf.extend_from_slice(&payload);
    if ctl & 0x0c == 0x0c {
        buf.truncate(pick % 48);
    }
    Some((op, buf))
}

/// FUZZ_TRACE=1 prints each step's opcode, node and errno (to see what a corpus file does).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

fn node_of(buf: &[u8]) -> u64 {
    get_u64(buf, 16).unwrap_or(0)
}

/// Runs one program against a fresh lower tree. Needs CAP_DAC_READ_SEARCH (file handles).
pub fn run(data: &[u8]) {
    let scratch = Scratch::new();
    let policy = Arc::new(Policy::new(
        parse_config(POLICY).expect("fixed policy parses"),
    ));
    let config = ViewConfig {
        passthrough: false,
        cache_ttl: Duration::from_secs(1),
        ..ViewConfig::default()
    };
    let view = StorageView::new(&scratch.lower(), policy, config).expect("view over scratch");
    let stats = SessionStats::default();
    let mut known = Known {
        nodes: vec![abi::ROOT_ID],
        handles: Vec::new(),
        uniques: Vec::new(),
    };
    let mut input = Input(data);
    let mut unique = 2u64;
    REPLY.with(|r| {
        let mut reply = r.borrow_mut();
        while let Some((op, buf)) = build(&mut input, &known, unique) {
            let answer = dispatch_one(&view, &buf, &mut reply, &stats);
            let errno = frame::check(&buf, answer);
            if tracing() {
                eprintln!("op {op} node {} -> errno {errno}", node_of(&buf));
            }
            if let (Some(a), 0) = (answer, errno) {
                known.learn(op, a);
            }
            if known.uniques.len() < 64 {
                known.uniques.push(unique);
            }
            unique += 2;
        }
    });
    drop(view);
    scratch.check_outside();
}
