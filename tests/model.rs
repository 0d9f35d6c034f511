//! Issue 9, model-based: a seeded random sequence of file operations by several app uids and
//! root, through a real mount, each checked against a plain model of the rules written here
//! independently of `src/policy/` (SOUNDNESS-SPEC.md and the README's rules table). After each
//! step the errno (or success, and the bytes read) must be what the model says; every few
//! hundred steps the whole lower tree (names, kinds, owner tags, contents, modes) must be the
//! model's. What matters most: no app ever reads, changes or deletes a file the rules deny it.
//!
//! `FUSEGATE_MODEL_SEED=<n>` / `FUSEGATE_MODEL_STEPS=<n>` override the seed and the length
//! (each test prints its seed). A mismatch is reported with step, seed, caller, operation,
//! expected and actual errno, and the reason the model gives; the run goes on (the model
//! follows what the daemon did) up to a limit, so that one run shows every kind of mismatch.
//!
//! Where the spec leaves a choice open, the model accepts either answer ("Either" below) and
//! follows the daemon; each such place says why.

mod common;

use common::{can_mount, sys, sys2, Mount, MountOptions};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const OWNER_XATTR: &str = "user.fusegate.owner";
const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;
const MAX_MISMATCHES: usize = 30;
const LOWER_CHECK_EVERY: usize = 500;
/// Deepest directory the walk makes (by mkdir or by moving one).
const MAX_DEPTH: usize = 6;

/// The apps of the run: uid, package, permissions.
#[derive(Clone, Copy, Debug)]
struct App {
    uid: u32,
    pkg: &'static str,
    read_images: bool,
    write_media: bool,
    broad: bool,
}

const APPS: [App; 4] = [
    App {
        uid: 10057,
        pkg: "com.a",
        read_images: true,
        write_media: false,
        broad: false,
    },
    App {
        uid: 10058,
        pkg: "com.b",
        read_images: false,
        write_media: true,
        broad: false,
    },
    App {
        uid: 10059,
        pkg: "com.c",
        read_images: false,
        write_media: false,
        broad: true,
    },
    App {
        uid: 10060,
        pkg: "com.d",
        read_images: false,
        write_media: false,
        broad: false,
    },
];

const POLICY: &str = r#"
[[app]]
uid = 10057
packages = ["com.a"]
permissions = ["read_images"]

[[app]]
uid = 10058
packages = ["com.b"]
permissions = ["write_media"]

[[app]]
uid = 10059
packages = ["com.c"]
permissions = ["manage_external_storage"]

[[app]]
uid = 10060
packages = ["com.d"]
permissions = []
"#;

const FILE_NAMES: &[&str] = &[
    "a.jpg", "b.mp4", "c.mp3", "d.txt", "e.pdf", ".f.jpg", "g.png",
];
const DIR_NAMES: &[&str] = &["s1", "s2", ".hs"];
const MODES: &[u32] = &[0o644, 0o600, 0o664, 0o755, 0o4755, 0o2755, 0o6755];
const SKELETON: &[&str] = &[
    "DCIM",
    "DCIM/Camera",
    "Download",
    "Documents",
    "Pictures",
    "Music",
    "Android",
    "Android/data",
    "Android/data/com.a/files",
    "Android/data/com.b/files",
    "Android/data/com.c/files",
    "Android/data/com.d/files",
];
/// Initial files: path, owner uid (None: made by root / no tag).
const INITIAL: &[(&str, Option<u32>)] = &[
    ("DCIM/Camera/a.jpg", Some(10057)),
    ("DCIM/Camera/b.mp4", None),
    ("DCIM/Camera/g.png", Some(10058)),
    ("Pictures/a.jpg", None),
    ("Music/c.mp3", Some(10058)),
    ("Download/d.txt", Some(10060)),
    ("Download/e.pdf", None),
    ("Download/.f.jpg", Some(10057)),
    ("Documents/d.txt", Some(10059)),
    ("Android/data/com.a/files/d.txt", Some(10057)),
    ("Android/data/com.b/files/a.jpg", Some(10058)),
];

fn app(uid: u32) -> Option<&'static App> {
    APPS.iter().find(|a| a.uid == uid)
}

fn tag_of(uid: u32) -> String {
    match app(uid) {
        Some(a) => format!("{}:{}", a.uid, a.pkg),
        None => uid.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// A tiny PRNG (splitmix64): the sequence depends on the seed alone.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

// ---------------------------------------------------------------------------------------
// Operations and a long-lived worker process per uid.

#[derive(Clone, Debug)]
enum Op {
    Stat(String),
    Read(String),
    Create(String, Vec<u8>),
    Write(String, Vec<u8>),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    Rename(String, String, u32),
    Link(String, String),
    Chmod(String, u32),
    List(String),
    /// st_mode through the mount (root only, to check attributes).
    Mode(String),
}

impl Op {
    fn code(&self) -> u8 {
        match self {
            Op::Stat(_) => 1,
            Op::Read(_) => 2,
            Op::Create(..) => 3,
            Op::Write(..) => 4,
            Op::Unlink(_) => 5,
            Op::Mkdir(_) => 6,
            Op::Rmdir(_) => 7,
            Op::Rename(..) => 8,
            Op::Link(..) => 9,
            Op::Chmod(..) => 10,
            Op::List(_) => 11,
            Op::Mode(_) => 12,
        }
    }

    fn describe(&self) -> String {
        match self {
            Op::Stat(p) => format!("stat {p}"),
            Op::Read(p) => format!("read {p}"),
            Op::Create(p, d) => format!("create (O_EXCL) {p} [{} bytes]", d.len()),
            Op::Write(p, d) => format!("write (O_TRUNC) {p} [{} bytes]", d.len()),
            Op::Unlink(p) => format!("unlink {p}"),
            Op::Mkdir(p) => format!("mkdir {p}"),
            Op::Rmdir(p) => format!("rmdir {p}"),
            Op::Rename(p, q, f) => {
                let how = match *f {
                    RENAME_NOREPLACE => " NOREPLACE",
                    RENAME_EXCHANGE => " EXCHANGE",
                    _ => "",
                };
                format!("rename{how} {p} -> {q}")
            }
            Op::Link(p, q) => format!("link {p} -> {q}"),
            Op::Chmod(p, m) => format!("chmod {m:o} {p}"),
            Op::List(p) => format!("list {p}"),
            Op::Mode(p) => format!("stat-mode {p}"),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Op::Stat(_) => "stat",
            Op::Read(_) => "read",
            Op::Create(..) => "create",
            Op::Write(..) => "write",
            Op::Unlink(_) => "unlink",
            Op::Mkdir(_) => "mkdir",
            Op::Rmdir(_) => "rmdir",
            Op::Rename(_, _, RENAME_EXCHANGE) => "rename-exchange",
            Op::Rename(_, _, RENAME_NOREPLACE) => "rename-noreplace",
            Op::Rename(..) => "rename",
            Op::Link(..) => "link",
            Op::Chmod(..) => "chmod",
            Op::List(_) => "list",
            Op::Mode(_) => "mode",
        }
    }

    fn encode(&self) -> Vec<u8> {
        let (p, q, arg, data): (&str, &str, u32, &[u8]) = match self {
            Op::Stat(p)
            | Op::Read(p)
            | Op::Unlink(p)
            | Op::Mkdir(p)
            | Op::Rmdir(p)
            | Op::List(p)
            | Op::Mode(p) => (p, "", 0, &[]),
            Op::Create(p, d) | Op::Write(p, d) => (p, "", 0, d),
            Op::Rename(p, q, f) => (p, q, *f, &[]),
            Op::Link(p, q) => (p, q, 0, &[]),
            Op::Chmod(p, m) => (p, "", *m, &[]),
        };
        let mut m = vec![self.code()];
        m.extend_from_slice(&arg.to_ne_bytes());
        for s in [p.as_bytes(), q.as_bytes(), data] {
            m.extend_from_slice(&(s.len() as u32).to_ne_bytes());
            m.extend_from_slice(s);
        }
        let mut framed = (m.len() as u32).to_ne_bytes().to_vec();
        framed.extend_from_slice(&m);
        framed
    }
}

/// A forked child running as one uid (no supplementary groups), serving ops over pipes.
struct Worker {
    uid: u32,
    pid: i32,
    to: Option<File>,
    from: File,
}

fn read_frame(f: &mut File) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    f.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u32::from_ne_bytes(len) as usize];
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn take<'a>(buf: &mut &'a [u8]) -> &'a [u8] {
    let n = u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize;
    let s = &buf[4..4 + n];
    *buf = &buf[4 + n..];
    s
}

/// Runs one op in the worker: (errno or 0, data).
fn serve(root: &Path, msg: &[u8]) -> (i32, Vec<u8>) {
    let code = msg[0];
    let arg = u32::from_ne_bytes(msg[1..5].try_into().unwrap());
    let mut rest = &msg[5..];
    let p = String::from_utf8_lossy(take(&mut rest)).into_owned();
    let q = String::from_utf8_lossy(take(&mut rest)).into_owned();
    let data = take(&mut rest).to_vec();
    let (pp, qq) = (root.join(&p), root.join(&q));
    let r: Result<Vec<u8>, i32> = match code {
        1 => sys::exists(&pp),
        2 => sys::read_file(&pp),
        3 => sys2::open_write(&pp, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, &data),
        4 => sys2::open_write(&pp, libc::O_WRONLY | libc::O_TRUNC, &data),
        5 => sys::unlink(&pp),
        6 => sys::mkdir(&pp),
        7 => sys::rmdir(&pp),
        8 => sys2::rename2(&pp, &qq, arg),
        9 => sys2::link(&pp, &qq),
        10 => sys2::chmod(&pp, arg),
        11 => sys::list(&pp),
        12 => sys2::mode(&pp).map(|m| m.to_ne_bytes().to_vec()),
        _ => Err(libc::ENOSYS),
    };
    match r {
        Ok(d) => (0, d),
        Err(e) => (e, Vec::new()),
    }
}

impl Worker {
    fn spawn(uid: u32, root: &Path) -> Worker {
        let (mut a, mut b) = ([0i32; 2], [0i32; 2]);
        // SAFETY: pipe2 fills the arrays.
        unsafe {
            assert_eq!(libc::pipe2(a.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(libc::pipe2(b.as_mut_ptr(), libc::O_CLOEXEC), 0);
        }
        // SAFETY: fork; the child only makes syscalls, serves frames and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: in the child: our pipe ends, then drop groups and switch ids.
            unsafe {
                libc::close(a[1]);
                libc::close(b[0]);
                let ok = libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setresgid(uid, uid, uid) == 0
                    && libc::setresuid(uid, uid, uid) == 0;
                if !ok {
                    libc::_exit(3);
                }
                let mut input = File::from_raw_fd(a[0]);
                let mut output = File::from_raw_fd(b[1]);
                while let Some(msg) = read_frame(&mut input) {
                    let (e, data) = serve(root, &msg);
                    let mut reply = ((data.len() + 4) as u32).to_ne_bytes().to_vec();
                    reply.extend_from_slice(&e.to_ne_bytes());
                    reply.extend_from_slice(&data);
                    if output.write_all(&reply).is_err() {
                        break;
                    }
                }
                libc::_exit(0);
            }
        }
        // SAFETY: closing the child's ends in the parent; wrapping ours.
        unsafe {
            libc::close(a[0]);
            libc::close(b[1]);
            Worker {
                uid,
                pid,
                to: Some(File::from_raw_fd(a[1])),
                from: File::from_raw_fd(b[0]),
            }
        }
    }

    fn call(&mut self, op: &Op) -> (i32, Vec<u8>) {
        self.to.as_mut().unwrap().write_all(&op.encode()).unwrap();
        // A daemon that stops answering must fail the test, not hang it.
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.from),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one fd we own, with a timeout.
        let ready = unsafe { libc::poll(&mut pfd, 1, 120_000) };
        assert!(
            ready > 0,
            "uid {}: no answer to {} within 120 s (daemon stuck?)",
            self.uid,
            op.describe()
        );
        let reply = read_frame(&mut self.from)
            .unwrap_or_else(|| panic!("worker for uid {} died", self.uid));
        let e = i32::from_ne_bytes(reply[..4].try_into().unwrap());
        (e, reply[4..].to_vec())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Workers forked later hold copies of this worker's pipe ends, so closing ours is no
        // EOF for it: end our own child by its pid, and reap it.
        self.to.take();
        // SAFETY: kill and wait for our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug, PartialEq)]
enum Entry {
    Dir { owner: Option<u32> },
    File { ino: u64 },
}

#[derive(Clone, Debug, PartialEq)]
struct FileData {
    owner: Option<u32>,
    data: Vec<u8>,
    mode: u32,
}

#[derive(Clone, Default)]
struct Model {
    tree: BTreeMap<String, Entry>,
    files: HashMap<u64, FileData>,
    next_ino: u64,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Image,
    Video,
    Audio,
    Other,
}

fn kind_of(name: &str) -> Kind {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("jpg" | "png") => Kind::Image,
        Some("mp4") => Kind::Video,
        Some("mp3") => Kind::Audio,
        _ => Kind::Other,
    }
}

fn split(p: &str) -> (&str, &str) {
    p.rsplit_once('/').unwrap_or(("", p))
}

fn depth(p: &str) -> usize {
    if p.is_empty() {
        0
    } else {
        p.split('/').count()
    }
}

fn top(p: &str) -> &str {
    p.split('/').next().unwrap_or("")
}

fn hidden(p: &str) -> bool {
    p.split('/').any(|c| c.starts_with('.'))
}

/// The private area a path lies in: the package of `Android/data/<pkg>/...`, or None for
/// shared storage (spec 2: each app dir is its own area).
fn area(p: &str) -> Option<&str> {
    let c: Vec<&str> = p.split('/').collect();
    (c.len() >= 3 && c[0] == "Android" && (c[1] == "data" || c[1] == "obb")).then(|| c[2])
}

fn within(p: &str, dir: &str) -> bool {
    p == dir || (p.len() > dir.len() && p.starts_with(dir) && p.as_bytes()[dir.len()] == b'/')
}

/// What the model allows: exactly this errno (0 = success), one of several denials (several
/// rules fail and the spec does not order them), or either success or one of these.
#[derive(Clone, Debug)]
enum Expect {
    Is(i32),
    AnyOf(Vec<i32>),
    Either(Vec<i32>),
}

impl Expect {
    fn accepts(&self, got: i32) -> bool {
        match self {
            Expect::Is(e) => *e == got,
            Expect::AnyOf(v) => v.contains(&got),
            Expect::Either(v) => got == 0 || v.contains(&got),
        }
    }
    fn show(&self) -> String {
        match self {
            Expect::Is(e) => errname(*e),
            Expect::AnyOf(v) => format!(
                "one of [{}]",
                v.iter().map(|&e| errname(e)).collect::<Vec<_>>().join(", ")
            ),
            Expect::Either(v) => format!(
                "OK or one of [{}]",
                v.iter().map(|&e| errname(e)).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

fn errname(e: i32) -> String {
    if e == 0 {
        return "OK".into();
    }
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        _ => "",
    };
    format!("{name}({e})")
}

/// The answer when the rules in `certain` fail for sure and those in `maybe` only by some
/// reading of the spec: any of those errnos (the spec does not order the rules), and success
/// too only when nothing certainly fails.
fn outcome(mut certain: Vec<i32>, mut maybe: Vec<i32>) -> Expect {
    certain.sort();
    certain.dedup();
    maybe.sort();
    maybe.dedup();
    if certain.is_empty() {
        if maybe.is_empty() {
            Expect::Is(0)
        } else {
            Expect::Either(maybe)
        }
    } else {
        let mut all = certain;
        all.extend(maybe);
        all.sort();
        all.dedup();
        if all.len() == 1 {
            Expect::Is(all[0])
        } else {
            Expect::AnyOf(all)
        }
    }
}

/// Who is asking: root, or an app.
#[derive(Clone, Copy)]
enum Caller {
    Root,
    App(&'static App),
}

impl Caller {
    fn uid(&self) -> u32 {
        match self {
            Caller::Root => 0,
            Caller::App(a) => a.uid,
        }
    }
}

impl Model {
    fn is_dir(&self, p: &str) -> bool {
        p.is_empty() || matches!(self.tree.get(p), Some(Entry::Dir { .. }))
    }
    fn is_file(&self, p: &str) -> bool {
        matches!(self.tree.get(p), Some(Entry::File { .. }))
    }
    fn exists(&self, p: &str) -> bool {
        p.is_empty() || self.tree.contains_key(p)
    }
    fn owner(&self, p: &str) -> Option<u32> {
        match self.tree.get(p)? {
            Entry::Dir { owner } => *owner,
            Entry::File { ino } => self.files[ino].owner,
        }
    }
    fn file(&self, p: &str) -> Option<&FileData> {
        match self.tree.get(p)? {
            Entry::File { ino } => self.files.get(ino),
            _ => None,
        }
    }
    fn children(&self, d: &str) -> Vec<String> {
        let prefix = if d.is_empty() {
            String::new()
        } else {
            format!("{d}/")
        };
        self.tree
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/') && !k.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }
    /// Everything strictly below `d`.
    fn below(&self, d: &str) -> Vec<String> {
        let prefix = format!("{d}/");
        self.tree
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }
    fn dirs(&self) -> Vec<String> {
        self.tree
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Dir { .. }))
            .map(|(k, _)| k.clone())
            .collect()
    }
    fn files_list(&self) -> Vec<String> {
        self.tree
            .iter()
            .filter(|(_, e)| matches!(e, Entry::File { .. }))
            .map(|(k, _)| k.clone())
            .collect()
    }

    // ----- the rules, for an app -----

    /// A path in another app's private area: invisible (spec 8).
    fn foreign(a: &App, p: &str) -> bool {
        area(p).is_some_and(|pkg| pkg != a.pkg)
    }
    fn own_area(a: &App, p: &str) -> bool {
        area(p) == Some(a.pkg)
    }
    fn owns(&self, a: &App, p: &str) -> bool {
        self.owner(p) == Some(a.uid)
    }
    /// The kernel can walk to `p`'s parent (every ancestor an existing, visible directory).
    fn parent_reachable(&self, c: Caller, p: &str) -> bool {
        let (parent, _) = split(p);
        let mut acc = String::new();
        for comp in parent.split('/').filter(|s| !s.is_empty()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(comp);
            if !self.is_dir(&acc) {
                return false;
            }
            if let Caller::App(a) = c {
                if Self::foreign(a, &acc) {
                    return false;
                }
            }
        }
        true
    }
    /// `p` exists and the caller can look it up.
    fn visible(&self, c: Caller, p: &str) -> bool {
        self.parent_reachable(c, p)
            && self.exists(p)
            && match c {
                Caller::Root => true,
                Caller::App(a) => !Self::foreign(a, p),
            }
    }
    fn hidden_from(&self, a: &App, p: &str) -> bool {
        hidden(p) && !self.owns(a, p) && !a.broad && !Self::own_area(a, p)
    }
    fn may_read(&self, a: &App, p: &str) -> bool {
        if Self::own_area(a, p) {
            return true;
        }
        if self.hidden_from(a, p) {
            return false;
        }
        let k = kind_of(split(p).1);
        self.owns(a, p) || a.broad || (k == Kind::Image && a.read_images)
    }
    /// Reading would be redacted (an image not owned, no access_media_location).
    fn redacted(&self, a: &App, p: &str) -> bool {
        !Self::own_area(a, p) && !self.owns(a, p) && kind_of(split(p).1) == Kind::Image
    }
    /// Write, truncate, chmod, delete, rename-from of a file.
    fn may_write(&self, a: &App, p: &str) -> bool {
        if Self::own_area(a, p) {
            return true;
        }
        if self.hidden_from(a, p) {
            return false;
        }
        let k = kind_of(split(p).1);
        self.owns(a, p) || a.broad || (k != Kind::Other && a.write_media)
    }
    /// Creating a file named `p` (or renaming one to it): errno or 0.
    fn may_create(a: &App, p: &str) -> i32 {
        if Self::own_area(a, p) {
            return 0;
        }
        if depth(p) <= 1 {
            return libc::EACCES;
        }
        if a.broad {
            return 0;
        }
        let k = kind_of(split(p).1);
        let ok = match top(p) {
            "Download" | "Documents" => true,
            "DCIM" | "Pictures" | "Movies" => matches!(k, Kind::Image | Kind::Video),
            "Music" => k == Kind::Audio,
            _ => false,
        };
        if ok {
            0
        } else {
            libc::EPERM
        }
    }
    fn may_mkdir(a: &App, p: &str) -> i32 {
        if Self::own_area(a, p) {
            return 0;
        }
        if depth(p) <= 1 {
            return if a.broad { 0 } else { libc::EACCES };
        }
        if top(p) == "Android" {
            return libc::EPERM;
        }
        0
    }
    /// Removing (rmdir) or renaming the directory itself (not its contents).
    fn may_remove_dir(&self, a: &App, p: &str) -> bool {
        if Self::own_area(a, p) {
            return depth(p) > 3;
        }
        // Top level (spec 3: all our top-level names are standard ones) and Android/.
        !(depth(p) <= 1 || top(p) == "Android")
    }

    /// A directory that is another caller's hidden one: spec 9 refuses deleting or renaming
    /// a hidden name one does not own, but MediaProvider keeps no owner for directories and
    /// judges a directory by its files only; either answer is taken for the directory itself.
    fn hidden_dir_of_other(&self, a: &App, p: &str) -> bool {
        self.hidden_from(a, p)
    }

    /// What the rules say about `op` by `c`, and why.
    fn expect(&self, c: Caller, op: &Op) -> (Expect, String) {
        let a = match c {
            Caller::Root => return self.expect_root(op),
            Caller::App(a) => a,
        };
        let see = |p: &str| self.visible(c, p);
        match op {
            Op::Stat(p) | Op::Mode(p) => {
                if see(p) {
                    (Expect::Is(0), "visible (hidden names too, spec 9)".into())
                } else {
                    (
                        Expect::Is(libc::ENOENT),
                        "absent or another app's area".into(),
                    )
                }
            }
            Op::Read(p) => {
                if !see(p) {
                    return (Expect::Is(libc::ENOENT), "not visible".into());
                }
                if self.may_read(a, p) {
                    if self.redacted(a, p) {
                        // The model's files carry no location: served whole, by passthrough,
                        // to redacted readers too, and never EBUSY.
                        (
                            Expect::Is(0),
                            format!("redacted read{}", self.other_names(p)),
                        )
                    } else {
                        (Expect::Is(0), format!("readable{}", self.other_names(p)))
                    }
                } else {
                    (Expect::Is(libc::EACCES), self.why(a, p, "read"))
                }
            }
            Op::Create(p, _) => {
                if !self.parent_reachable(c, p) {
                    return (Expect::Is(libc::ENOENT), "parent not reachable".into());
                }
                if see(p) {
                    return (Expect::Is(libc::EEXIST), "name taken (visible)".into());
                }
                let e = Self::may_create(a, p);
                (
                    self.create_in(a, p, e),
                    format!("create rule for {:?} in {}", kind_of(split(p).1), top(p)),
                )
            }
            Op::Write(p, _) | Op::Chmod(p, _) => {
                if !see(p) {
                    return (Expect::Is(libc::ENOENT), "not visible".into());
                }
                if self.may_write(a, p) {
                    (Expect::Is(0), format!("writable{}", self.other_names(p)))
                } else {
                    (Expect::Is(libc::EACCES), self.why(a, p, "write"))
                }
            }
            Op::Unlink(p) => {
                if !see(p) {
                    return (Expect::Is(libc::ENOENT), "not visible".into());
                }
                if self.is_dir(p) {
                    return (Expect::Is(libc::EISDIR), "a directory".into());
                }
                if self.may_write(a, p) {
                    (Expect::Is(0), "deletable".into())
                } else {
                    (Expect::Is(libc::EACCES), self.why(a, p, "delete"))
                }
            }
            Op::Mkdir(p) => {
                if !self.parent_reachable(c, p) {
                    return (Expect::Is(libc::ENOENT), "parent not reachable".into());
                }
                // Another app's private dir: EACCES whether it exists or not (spec 8).
                if depth(p) == 3 && Self::foreign(a, p) {
                    return (
                        Expect::Is(libc::EACCES),
                        "another app's dir (no oracle)".into(),
                    );
                }
                if see(p) {
                    return (Expect::Is(libc::EEXIST), "name taken (visible)".into());
                }
                (
                    self.create_in(a, p, Self::may_mkdir(a, p)),
                    "mkdir rule".into(),
                )
            }
            Op::Rmdir(p) => {
                if !see(p) {
                    return (Expect::Is(libc::ENOENT), "not visible".into());
                }
                if !self.is_dir(p) {
                    return (Expect::Is(libc::ENOTDIR), "not a directory".into());
                }
                let empty = self.children(p).is_empty();
                let allowed = self.may_remove_dir(a, p);
                match (allowed, empty) {
                    (true, true) if self.hidden_dir_of_other(a, p) => (
                        Expect::Either(vec![libc::EACCES]),
                        "removable, empty, another caller's hidden dir".into(),
                    ),
                    (true, true) => (Expect::Is(0), "removable, empty".into()),
                    (true, false) => (Expect::Is(libc::ENOTEMPTY), "not empty".into()),
                    (false, true) => (Expect::Is(libc::EACCES), "not removable by an app".into()),
                    // Policy or emptiness first: the spec does not say.
                    (false, false) => (
                        Expect::AnyOf(vec![libc::EACCES, libc::ENOTEMPTY]),
                        "not removable and not empty".into(),
                    ),
                }
            }
            Op::Link(p, q) => {
                if !see(p) || !self.parent_reachable(c, q) {
                    return (
                        Expect::Is(libc::ENOENT),
                        "source or target dir missing".into(),
                    );
                }
                if see(q) {
                    return (Expect::Is(libc::EEXIST), "target taken".into());
                }
                (Expect::Is(libc::EPERM), "apps may not link (spec 4)".into())
            }
            Op::List(p) => {
                if !see(p) {
                    return (Expect::Is(libc::ENOENT), "not visible".into());
                }
                (Expect::Is(0), "listing".into())
            }
            Op::Rename(p, q, flags) => self.expect_rename(a, p, q, *flags),
        }
    }

    /// Creating `p` (rule answer `e`) in another caller's hidden directory: spec 9 does not
    /// refuse creation there as written, but "writing" a hidden directory could be read so.
    fn create_in(&self, a: &App, p: &str, e: i32) -> Expect {
        let certain = if e == 0 { vec![] } else { vec![e] };
        let maybe = if self.hidden_from(a, split(p).0) {
            vec![libc::EACCES]
        } else {
            vec![]
        };
        outcome(certain, maybe)
    }

    fn why(&self, a: &App, p: &str, what: &str) -> String {
        format!(
            "{what} denied: owner {:?}, kind {:?}, hidden {}, app {}{}",
            self.owner(p),
            kind_of(split(p).1),
            hidden(p),
            a.pkg,
            self.other_names(p)
        )
    }

    /// ", also linked as ..." for a file with several names (spec 13: judged by the name
    /// used), else "".
    fn other_names(&self, p: &str) -> String {
        let Some(Entry::File { ino }) = self.tree.get(p) else {
            return String::new();
        };
        let others: Vec<&String> = self
            .tree
            .iter()
            .filter(|(k, e)| *k != p && **e == Entry::File { ino: *ino })
            .map(|(k, _)| k)
            .collect();
        if others.is_empty() {
            String::new()
        } else {
            format!(", also linked as {others:?}")
        }
    }

    /// The kernel's own answers for a rename, before the daemon sees it (None: none).
    fn rename_kernel(&self, c: Caller, p: &str, q: &str, flags: u32) -> Option<(Expect, String)> {
        if !self.visible(c, p) || !self.parent_reachable(c, q) {
            return Some((
                Expect::Is(libc::ENOENT),
                "source or target dir not visible".into(),
            ));
        }
        let q_there = self.visible(c, q);
        if flags & RENAME_EXCHANGE != 0 && !q_there {
            return Some((
                Expect::Is(libc::ENOENT),
                "exchange with a missing name".into(),
            ));
        }
        if flags & RENAME_NOREPLACE != 0 && q_there {
            return Some((
                Expect::Is(libc::EEXIST),
                "noreplace onto a taken name".into(),
            ));
        }
        if flags == 0 && q_there {
            if self.is_file(p) && self.is_dir(q) {
                return Some((Expect::Is(libc::EISDIR), "file over a directory".into()));
            }
            if self.is_dir(p) && self.is_file(q) {
                return Some((Expect::Is(libc::ENOTDIR), "directory over a file".into()));
            }
        }
        None
    }

    fn expect_rename(&self, a: &'static App, p: &str, q: &str, flags: u32) -> (Expect, String) {
        if let Some(k) = self.rename_kernel(Caller::App(a), p, q, flags) {
            return k;
        }
        // Spec 2: across areas EXDEV, before everything else.
        if area(p) != area(q) {
            return (
                Expect::Is(libc::EXDEV),
                format!("areas {:?} -> {:?}", area(p), area(q)),
            );
        }
        if Self::own_area(a, p) {
            if flags == 0 && self.is_dir(q) && !self.children(q).is_empty() {
                return (
                    Expect::Is(libc::ENOTEMPTY),
                    "target directory not empty".into(),
                );
            }
            return (Expect::Is(0), "within the caller's own area".into());
        }
        let exchange = flags & RENAME_EXCHANGE != 0;
        let q_there = self.exists(q);
        // Denials every reading of the spec gives, and ones only some readings give.
        let mut certain = Vec::new();
        let mut maybe = Vec::new();
        let mut why = Vec::new();
        // Moving something into another caller's hidden directory: creating there is not
        // refused by spec 9 as written, but "writing" a hidden directory could be read so.
        for (place, n) in [(q, "target")]
            .into_iter()
            .chain(exchange.then_some((p, "source")))
        {
            let dir = split(place).0;
            if self.hidden_from(a, dir) {
                maybe.push(libc::EACCES);
                why.push(format!(
                    "{n} directory {dir} is another caller's hidden one"
                ));
            }
        }
        if self.is_file(p) {
            // Spec 1.
            if !self.may_write(a, p) {
                certain.push(libc::EACCES);
                why.push(format!(
                    "source not deletable ({})",
                    self.why(a, p, "delete")
                ));
            }
            if q_there && !self.may_write(a, q) {
                certain.push(libc::EACCES);
                why.push(format!(
                    "target not {} ({})",
                    if exchange { "writable" } else { "deletable" },
                    self.why(a, q, "delete")
                ));
            }
            // The type must be creatable where it lands, judged by the name it gets (as for a
            // plain rename). For EXCHANGE, "each side's type at the other's place" could also
            // be judged by the name it had; where the two readings differ either is taken.
            let by_new = Self::may_create(a, q) != 0 || exchange && Self::may_create(a, p) != 0;
            let by_old = exchange
                && (Self::may_create(a, &format!("{}/{}", split(q).0, split(p).1)) != 0
                    || Self::may_create(a, &format!("{}/{}", split(p).0, split(q).1)) != 0);
            let type_err = if Self::may_create(a, q) != 0 {
                Self::may_create(a, q)
            } else {
                libc::EPERM
            };
            if by_new && (by_old || !exchange) {
                certain.push(type_err);
                why.push(format!("{:?} not creatable at {q}", kind_of(split(q).1)));
            } else if by_new || by_old {
                maybe.push(libc::EPERM);
                why.push("a type not creatable at the other's place (by one reading)".into());
            }
        } else {
            // Spec 3: a directory and its subtree.
            for (src, dst) in [(p, q)].into_iter().chain(exchange.then_some((q, p))) {
                if !self.may_remove_dir(a, src) {
                    certain.push(libc::EACCES);
                    why.push(format!("directory {src} may not be moved by an app"));
                } else if self.hidden_dir_of_other(a, src) {
                    maybe.push(libc::EACCES);
                    why.push(format!("directory {src} is another caller's hidden one"));
                }
                for f in self.below(src) {
                    let moved_to = format!("{dst}{}", &f[src.len()..]);
                    if self.is_file(&f) {
                        if !self.may_write(a, &f) {
                            certain.push(libc::EACCES);
                            why.push(format!("{f} not deletable"));
                        }
                        let e = Self::may_create(a, &moved_to);
                        if e != 0 {
                            certain.push(e);
                            why.push(format!("{f} not creatable as {moved_to}"));
                        }
                    } else if self.hidden_from(a, &f) {
                        // "Subdirectories need nothing extra", but a hidden one of another
                        // caller could be judged like the moved dir itself.
                        maybe.push(libc::EACCES);
                        why.push(format!("hidden subdirectory {f} of another caller"));
                    }
                }
            }
            if !exchange && q_there {
                if !self.may_remove_dir(a, q) {
                    certain.push(libc::EACCES);
                    why.push("target directory not removable".into());
                } else if self.hidden_dir_of_other(a, q) {
                    maybe.push(libc::EACCES);
                    why.push("target directory is another caller's hidden one".into());
                }
                if !self.children(q).is_empty() {
                    // Policy first or emptiness first: the spec does not say.
                    certain.push(libc::ENOTEMPTY);
                    why.push("target directory not empty".into());
                }
            }
        }
        let why = if why.is_empty() {
            "allowed".into()
        } else {
            why.join("; ")
        };
        (outcome(certain, maybe), why)
    }

    fn expect_root(&self, op: &Op) -> (Expect, String) {
        let c = Caller::Root;
        let see = |p: &str| self.visible(c, p);
        let e = match op {
            Op::Stat(p) | Op::Mode(p) | Op::List(p) => {
                if see(p) {
                    0
                } else {
                    libc::ENOENT
                }
            }
            Op::Read(p) | Op::Write(p, _) | Op::Chmod(p, _) => {
                if see(p) {
                    0
                } else {
                    libc::ENOENT
                }
            }
            Op::Create(p, _) | Op::Mkdir(p) => {
                if !self.parent_reachable(c, p) {
                    libc::ENOENT
                } else if see(p) {
                    libc::EEXIST
                } else {
                    0
                }
            }
            Op::Unlink(p) => {
                if !see(p) {
                    libc::ENOENT
                } else if self.is_dir(p) {
                    libc::EISDIR
                } else {
                    0
                }
            }
            Op::Rmdir(p) => {
                if !see(p) {
                    libc::ENOENT
                } else if !self.is_dir(p) {
                    libc::ENOTDIR
                } else if !self.children(p).is_empty() {
                    libc::ENOTEMPTY
                } else {
                    0
                }
            }
            Op::Link(p, q) => {
                if !see(p) || !self.parent_reachable(c, q) {
                    libc::ENOENT
                } else if see(q) {
                    libc::EEXIST
                } else {
                    0
                }
            }
            Op::Rename(p, q, flags) => {
                if let Some(k) = self.rename_kernel(c, p, q, *flags) {
                    return k;
                }
                if *flags == 0 && self.is_dir(q) && !self.children(q).is_empty() {
                    libc::ENOTEMPTY
                } else {
                    0
                }
            }
        };
        (Expect::Is(e), "root".into())
    }

    // ----- applying a successful op -----

    fn apply(&mut self, c: Caller, op: &Op, lower: &Path) {
        let uid = match c {
            Caller::Root => None,
            Caller::App(a) => Some(a.uid),
        };
        match op {
            Op::Stat(_) | Op::Read(_) | Op::List(_) | Op::Mode(_) => {}
            Op::Create(p, d) => {
                let mode = std::fs::symlink_metadata(lower.join(p))
                    .map(|m| m.mode() & 0o7777)
                    .unwrap_or(0);
                let ino = self.next_ino;
                self.next_ino += 1;
                self.files.insert(
                    ino,
                    FileData {
                        owner: uid,
                        data: d.clone(),
                        mode,
                    },
                );
                self.tree.insert(p.clone(), Entry::File { ino });
            }
            Op::Write(p, d) => {
                if let Some(Entry::File { ino }) = self.tree.get(p) {
                    let f = self.files.get_mut(ino).unwrap();
                    f.data = d.clone();
                    // Spec 7: a write by anyone but root clears setuid/setgid.
                    if uid.is_some() {
                        f.mode &= !0o6000;
                    }
                }
            }
            Op::Chmod(p, m) => {
                if let Some(Entry::File { ino }) = self.tree.get(p) {
                    let f = self.files.get_mut(ino).unwrap();
                    // Spec 6: an app's chmod applies only the 0777 bits.
                    f.mode = if uid.is_some() { m & 0o777 } else { m & 0o7777 };
                }
            }
            Op::Unlink(p) => {
                self.tree.remove(p);
                self.gc();
            }
            Op::Mkdir(p) => {
                self.tree.insert(p.clone(), Entry::Dir { owner: uid });
            }
            Op::Rmdir(p) => {
                self.tree.remove(p);
            }
            Op::Link(p, q) => {
                let e = self.tree[p].clone();
                self.tree.insert(q.clone(), e);
            }
            Op::Rename(p, q, flags) => {
                let take = |m: &mut Model, from: &str| -> Vec<(String, Entry)> {
                    let mut moved = vec![];
                    for k in std::iter::once(from.to_string()).chain(m.below(from)) {
                        let e = m.tree.remove(&k).unwrap();
                        moved.push((k[from.len()..].to_string(), e));
                    }
                    moved
                };
                let from_p = take(self, p);
                let from_q = if *flags & RENAME_EXCHANGE != 0 || self.exists(q) {
                    take(self, q)
                } else {
                    vec![]
                };
                for (suffix, e) in from_p {
                    self.tree.insert(format!("{q}{suffix}"), e);
                }
                if *flags & RENAME_EXCHANGE != 0 {
                    for (suffix, e) in from_q {
                        self.tree.insert(format!("{p}{suffix}"), e);
                    }
                }
                self.gc();
            }
        }
    }

    /// Drops file data no name refers to.
    fn gc(&mut self) {
        let live: BTreeSet<u64> = self
            .tree
            .values()
            .filter_map(|e| match e {
                Entry::File { ino } => Some(*ino),
                _ => None,
            })
            .collect();
        self.files.retain(|k, _| live.contains(k));
    }

    /// The model of what is on the lower dir (names, owners, contents, modes).
    fn from_lower(lower: &Path) -> Model {
        let mut m = Model::default();
        let mut by_ino: HashMap<u64, u64> = HashMap::new();
        let mut stack = vec![String::new()];
        while let Some(d) = stack.pop() {
            let mut names: Vec<String> = std::fs::read_dir(lower.join(&d))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                let rel = if d.is_empty() { n } else { format!("{d}/{n}") };
                let p = lower.join(&rel);
                let md = std::fs::symlink_metadata(&p).unwrap();
                let owner = sys2::getxattr(&p, OWNER_XATTR).and_then(|v| {
                    let s = String::from_utf8_lossy(&v).into_owned();
                    s.split(':').next().and_then(|u| u.parse().ok())
                });
                // Root's files carry no owner today; a "0" tag would mean the same.
                let owner = owner.filter(|&u: &u32| u != 0);
                if md.is_dir() {
                    m.tree.insert(rel.clone(), Entry::Dir { owner });
                    stack.push(rel);
                } else {
                    let ino = *by_ino.entry(md.ino()).or_insert_with(|| {
                        m.next_ino += 1;
                        m.next_ino
                    });
                    m.files.entry(ino).or_insert_with(|| FileData {
                        owner,
                        data: std::fs::read(&p).unwrap_or_default(),
                        mode: md.mode() & 0o7777,
                    });
                    m.tree.insert(rel, Entry::File { ino });
                }
            }
        }
        m.next_ino += 1;
        m
    }

    /// Differences between the model and the lower dir, one line each.
    fn diff(&self, lower: &Path) -> Vec<String> {
        let real = Model::from_lower(lower);
        let mut out = Vec::new();
        let keys: BTreeSet<&String> = self.tree.keys().chain(real.tree.keys()).collect();
        for k in keys {
            match (self.tree.get(k), real.tree.get(k)) {
                (Some(_), None) => out.push(format!("{k}: in the model, not on the lower dir")),
                (None, Some(_)) => out.push(format!("{k}: on the lower dir, not in the model")),
                (Some(Entry::Dir { owner: a }), Some(Entry::Dir { owner: b })) => {
                    if a != b {
                        out.push(format!(
                            "{k}: directory owner {a:?} in the model, {b:?} on the lower dir"
                        ));
                    }
                }
                (Some(Entry::File { .. }), Some(Entry::File { .. })) => {
                    let (a, b) = (self.file(k).unwrap(), real.file(k).unwrap());
                    if a.owner != b.owner {
                        out.push(format!(
                            "{k}: owner {:?} in the model, {:?} on the lower dir",
                            a.owner, b.owner
                        ));
                    }
                    if a.data != b.data {
                        out.push(format!(
                            "{k}: contents {:?} in the model, {:?} on the lower dir",
                            String::from_utf8_lossy(&a.data),
                            String::from_utf8_lossy(&b.data)
                        ));
                    }
                    if a.mode != b.mode {
                        out.push(format!(
                            "{k}: mode {:o} in the model, {:o} on the lower dir",
                            a.mode, b.mode
                        ));
                    }
                }
                _ => out.push(format!("{k}: file in one, directory in the other")),
            }
        }
        out
    }

    /// The names an app's listing of `d` shows (spec 8, 9, README: directories, own files,
    /// files it could read; hidden entries it does not own omitted).
    /// Returns (names it must list, names it may list too): in the caller's own area Android
    /// filters nothing (app-specific dirs are not served by MediaProvider), while spec 9 read
    /// literally omits hidden entries it does not own there too; either is taken.
    fn listing(&self, c: Caller, d: &str) -> (Vec<String>, Vec<String>) {
        let (mut must, mut may) = (Vec::new(), Vec::new());
        for p in self.children(d) {
            let name = split(&p).1.to_string();
            let shown = match c {
                Caller::Root => Some(true),
                Caller::App(a) => {
                    if Self::foreign(a, &p) {
                        Some(false)
                    } else if Self::own_area(a, &p) {
                        if hidden(&p) && !self.owns(a, &p) && !a.broad {
                            None
                        } else {
                            Some(true)
                        }
                    } else if self.is_dir(&p) {
                        Some(!self.hidden_from(a, &p))
                    } else {
                        Some(self.owns(a, &p) || self.may_read(a, &p))
                    }
                }
            };
            match shown {
                Some(true) => must.push(name),
                None => may.push(name),
                Some(false) => {}
            }
        }
        must.sort();
        may.sort();
        (must, may)
    }
}

// ---------------------------------------------------------------------------------------
// The random walk.

/// Picks a random op for `c` over the model's name space.
fn gen_op(rng: &mut Rng, m: &Model, c: Caller) -> Option<Op> {
    let dirs = m.dirs();
    let files = m.files_list();
    // Parents for new names: every directory but the skeleton's roots.
    let parents: Vec<&String> = dirs
        .iter()
        .filter(|d| !matches!(d.as_str(), "Android" | "Android/data"))
        .collect();
    let new_file = |rng: &mut Rng| format!("{}/{}", rng.pick(&parents), rng.pick(FILE_NAMES));
    let some_file = |rng: &mut Rng| {
        if !files.is_empty() && rng.chance(85) {
            rng.pick(&files).clone()
        } else {
            new_file(rng)
        }
    };
    let data = |rng: &mut Rng| format!("v{:x}", rng.next() % 0xffff).into_bytes();
    let is_root = matches!(c, Caller::Root);
    // Directories root never removes or moves (apps may try: they must get EACCES).
    let fixed = |d: &str| depth(d) <= 1 || d.starts_with("Android") && depth(d) <= 3;
    let roll = rng.below(100);
    let op = match roll {
        0..=13 => Op::Create(new_file(rng), data(rng)),
        14..=25 => Op::Write(some_file(rng), data(rng)),
        26..=41 => Op::Read(some_file(rng)),
        42..=45 => Op::Stat(if rng.chance(50) {
            some_file(rng)
        } else {
            rng.pick(&dirs).clone()
        }),
        46..=52 => Op::Unlink(some_file(rng)),
        53..=59 => {
            let parent = rng.pick(&parents);
            if depth(parent) >= MAX_DEPTH - 1 {
                return None;
            }
            Op::Mkdir(format!("{parent}/{}", rng.pick(DIR_NAMES)))
        }
        60..=64 => {
            let d = rng.pick(&dirs).clone();
            if is_root && fixed(&d) || d.starts_with("Android") && depth(&d) <= 3 {
                return None;
            }
            Op::Rmdir(d)
        }
        65..=76 => {
            let p = some_file(rng);
            let q = if rng.chance(40) && !files.is_empty() {
                rng.pick(&files).clone()
            } else {
                new_file(rng)
            };
            let flags = match rng.below(10) {
                0..=5 => 0,
                6..=7 => RENAME_NOREPLACE,
                _ => RENAME_EXCHANGE,
            };
            if p == q || same_inode(m, &p, &q) || (flags & RENAME_EXCHANGE != 0 && m.is_dir(&q)) {
                return None;
            }
            if is_root && area(&p) != area(&q) {
                return None;
            }
            Op::Rename(p, q, flags)
        }
        77..=83 => {
            let p = rng.pick(&dirs).clone();
            if p.starts_with("Android") && depth(&p) <= 3 || is_root && fixed(&p) {
                return None;
            }
            let q = if rng.chance(30) {
                rng.pick(&dirs).clone()
            } else {
                format!("{}/{}", rng.pick(&parents), rng.pick(DIR_NAMES))
            };
            // The kernel's own EINVAL/ENOTEMPTY cases (into its own subtree, onto an
            // ancestor) and the skeleton are not what this test is about.
            if within(&q, &p) || within(&p, &q) || q.starts_with("Android") && depth(&q) <= 3 {
                return None;
            }
            // Keep the tree shallow: nothing may land deeper than MAX_DEPTH.
            let deepest = |d: &str| {
                m.below(d)
                    .iter()
                    .map(|k| depth(k) - depth(d))
                    .max()
                    .unwrap_or(0)
            };
            if depth(&q) + deepest(&p) > MAX_DEPTH
                || m.is_dir(&q) && depth(&p) + deepest(&q) > MAX_DEPTH
            {
                return None;
            }
            let flags = match rng.below(10) {
                0..=5 => 0,
                6..=7 => RENAME_NOREPLACE,
                _ => RENAME_EXCHANGE,
            };
            if flags & RENAME_EXCHANGE != 0 && m.is_file(&q) {
                return None;
            }
            if is_root && area(&p) != area(&q) {
                return None;
            }
            Op::Rename(p, q, flags)
        }
        84..=87 => {
            let p = some_file(rng);
            let q = new_file(rng);
            if is_root && area(&p) != area(&q) {
                return None;
            }
            Op::Link(p, q)
        }
        88..=93 => Op::Chmod(some_file(rng), *rng.pick(MODES)),
        94..=97 => {
            let d = rng.pick(&dirs).clone();
            // Opening a hidden directory one does not own: the spec does not say whether
            // opendir is an "open" it refuses; not asked.
            if let Caller::App(a) = c {
                if m.hidden_from(a, &d) {
                    return None;
                }
            }
            Op::List(d)
        }
        _ => {
            // Another app's private directory by name, existing or not (spec 8).
            if is_root {
                return None;
            }
            let pkg = rng.pick(&["com.a", "com.b", "com.c", "com.d", "com.zz"]);
            let p = format!("Android/data/{pkg}");
            if rng.chance(50) {
                Op::Stat(p)
            } else {
                Op::Mkdir(p)
            }
        }
    };
    Some(op)
}

fn same_inode(m: &Model, p: &str, q: &str) -> bool {
    match (m.tree.get(p), m.tree.get(q)) {
        (Some(Entry::File { ino: a }), Some(Entry::File { ino: b })) => a == b,
        _ => false,
    }
}

struct Run {
    seed: u64,
    steps: usize,
    mismatches: Vec<String>,
    categories: BTreeMap<String, usize>,
}

impl Run {
    fn mismatch(&mut self, category: String, text: String) {
        *self.categories.entry(category).or_default() += 1;
        if std::env::var_os("FUSEGATE_MODEL_KEEP_GOING").is_some() {
            eprintln!("MISMATCH {text}");
        }
        if self.mismatches.len() < MAX_MISMATCHES {
            self.mismatches.push(text);
        }
    }
    /// Enough to tell what is wrong: stop the walk.
    /// (FUSEGATE_MODEL_KEEP_GOING=1 walks on to the end, to count every kind of mismatch.)
    fn full(&self) -> bool {
        std::env::var_os("FUSEGATE_MODEL_KEEP_GOING").is_none()
            && self.categories.values().sum::<usize>() >= MAX_MISMATCHES * 20
    }
}

fn oct(v: Option<u32>) -> String {
    v.map_or("none".into(), |m| format!("{m:o}"))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| {
        let v = v.trim();
        v.strip_prefix("0x")
            .map(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or_else(|| v.parse().ok())
    })
}

fn setup(m: &Mount) {
    let lower = m.lower.path();
    for d in SKELETON {
        std::fs::create_dir_all(lower.join(d)).unwrap();
    }
    for (i, (p, owner)) in INITIAL.iter().enumerate() {
        let path = lower.join(p);
        std::fs::write(&path, format!("initial {i}")).unwrap();
        if let Some(u) = owner {
            sys2::setxattr(&path, OWNER_XATTR, tag_of(*u).as_bytes());
        }
    }
}

fn run_model(default_seed: u64, passthrough: bool) {
    if !can_mount() {
        return;
    }
    let seed = env_u64("FUSEGATE_MODEL_SEED").unwrap_or(default_seed);
    let steps = env_u64("FUSEGATE_MODEL_STEPS").unwrap_or(20_000) as usize;
    eprintln!(
        "model: seed {seed:#x}, {steps} steps, passthrough {passthrough} \
         (FUSEGATE_MODEL_SEED / FUSEGATE_MODEL_STEPS)"
    );
    let mount = Mount::new(MountOptions {
        policy: Some(POLICY.into()),
        passthrough,
        ..Default::default()
    });
    setup(&mount);
    let lower: PathBuf = mount.lower.path().to_path_buf();
    let root = mount.path("");
    let mut model = Model::from_lower(&lower);
    let callers: Vec<Caller> = APPS
        .iter()
        .map(Caller::App)
        .chain(std::iter::once(Caller::Root))
        .collect();
    let mut workers: HashMap<u32, Worker> = callers
        .iter()
        .map(|c| (c.uid(), Worker::spawn(c.uid(), &root)))
        .collect();
    let mut rng = Rng(seed);
    let mut run = Run {
        seed,
        steps: 0,
        mismatches: vec![],
        categories: BTreeMap::new(),
    };
    // FUSEGATE_MODEL_TRACE=1 prints every step (to follow a mismatch back).
    let trace = std::env::var_os("FUSEGATE_MODEL_TRACE").is_some();
    let started = std::time::Instant::now();
    let mut done = 0;
    while done < steps {
        // Apps act most; root now and then.
        let c = if rng.chance(12) {
            Caller::Root
        } else {
            Caller::App(rng.pick(&APPS))
        };
        let Some(op) = gen_op(&mut rng, &model, c) else {
            continue;
        };
        done += 1;
        let (expect, why) = model.expect(c, &op);
        let (got, data) = workers.get_mut(&c.uid()).unwrap().call(&op);
        let who = match c {
            Caller::Root => "root".to_string(),
            Caller::App(a) => format!("{} ({})", a.uid, a.pkg),
        };
        let header = format!("step {done} seed {seed:#x}: uid {who} {}", op.describe());
        if trace {
            eprintln!(
                "TRACE {header}: {} (model: {})",
                errname(got),
                expect.show()
            );
        }
        if !expect.accepts(got) {
            run.mismatch(
                format!(
                    "{} by {}: want {}, got {}",
                    op.kind(),
                    if matches!(c, Caller::Root) {
                        "root"
                    } else {
                        "app"
                    },
                    expect.show(),
                    errname(got)
                ),
                format!(
                    "{header}: expected {}, got {} (model: {why})",
                    expect.show(),
                    errname(got)
                ),
            );
        }
        if got == 0 {
            // Contents and listings of successful reads.
            match &op {
                Op::Read(p) => {
                    let want = model.file(p).map(|f| f.data.clone());
                    if want.as_ref() != Some(&data) {
                        run.mismatch(
                            "read: wrong contents".into(),
                            format!(
                                "{header}: read {:?}, model has {:?}",
                                String::from_utf8_lossy(&data),
                                want.map(|w| String::from_utf8_lossy(&w).into_owned())
                            ),
                        );
                    }
                }
                Op::List(d) => {
                    let (want, optional) = model.listing(c, d);
                    let got_names = common::names(&data);
                    let fits = want.iter().all(|n| got_names.contains(n))
                        && got_names
                            .iter()
                            .all(|n| want.contains(n) || optional.contains(n));
                    if !fits {
                        run.mismatch(
                            format!(
                                "list by {}: wrong names",
                                if matches!(c, Caller::Root) {
                                    "root"
                                } else {
                                    "app"
                                }
                            ),
                            format!("{header}: listed {got_names:?}, model says {want:?} (and may list {optional:?})"),
                        );
                    }
                }
                _ => {}
            }
            // The model follows what happened, so one wrong answer does not cascade.
            model.apply(c, &op, &lower);
            // Attributes through the mount are the lower file's at once (spec 7).
            if let Op::Create(p, _) | Op::Write(p, _) | Op::Chmod(p, _) = &op {
                if let Some(f) = model.file(p) {
                    let want = f.mode;
                    let (e, d) = workers.get_mut(&0).unwrap().call(&Op::Mode(p.clone()));
                    let seen =
                        (e == 0).then(|| u32::from_ne_bytes(d[..4].try_into().unwrap()) & 0o7777);
                    let lower_mode = std::fs::symlink_metadata(lower.join(p))
                        .map(|m| m.mode() & 0o7777)
                        .ok();
                    // Root's own write: spec 7 keeps setuid (as raw ext4 does for root), but
                    // serving threads without CAP_FSETID (spec 12) clear it; both are taken.
                    let root_write = matches!((c, &op), (Caller::Root, Op::Write(..)));
                    let fine =
                        |v: Option<u32>| v == Some(want) || root_write && v == Some(want & !0o6000);
                    if !fine(seen) || !fine(lower_mode) || seen != lower_mode {
                        run.mismatch(
                            format!("mode after {}", op.kind()),
                            format!("{header}: mode through the mount {}, on the lower dir {}, model {want:o}", oct(seen), oct(lower_mode)),
                        );
                    }
                    // The model follows the lower mode from here on.
                    if let (Some(l), Some(Entry::File { ino })) = (lower_mode, model.tree.get(p)) {
                        let ino = *ino;
                        model.files.get_mut(&ino).unwrap().mode = l;
                    }
                }
            }
        }
        if done % LOWER_CHECK_EVERY == 0 || done == steps {
            let d = model.diff(&lower);
            if !d.is_empty() {
                let mut text = format!(
                    "after step {done} seed {seed:#x}, the lower dir differs from the model:"
                );
                for line in d.iter().take(15) {
                    let _ = write!(text, "\n    {line}");
                }
                run.mismatch("lower dir differs from the model".into(), text);
                model = Model::from_lower(&lower);
            }
        }
        if run.full() {
            break;
        }
    }
    run.steps = done;
    let elapsed = started.elapsed();
    eprintln!(
        "model: seed {seed:#x}: {done} steps in {:.1} s, {} mismatches",
        elapsed.as_secs_f64(),
        run.categories.values().sum::<usize>()
    );
    drop(workers);
    if !run.categories.is_empty() {
        let mut text = format!(
            "seed {:#x}: the daemon and the model disagree ({} steps run; rerun with FUSEGATE_MODEL_SEED={:#x}).\nBy kind:\n",
            run.seed,
            run.steps,
            run.seed
        );
        for (k, n) in &run.categories {
            let _ = writeln!(text, "  {n:6} x {k}");
        }
        let _ = writeln!(text, "First {}:", run.mismatches.len());
        for m in &run.mismatches {
            let _ = writeln!(text, "  {m}");
        }
        panic!("{text}");
    }
}

#[test]
fn model_seed_1() {
    run_model(0x5eed_0001, true);
}

#[test]
fn model_seed_2() {
    run_model(0x5eed_0002, true);
}

/// The userspace data path (no passthrough) under the same rules.
#[test]
fn model_seed_3_no_passthrough() {
    run_model(0x5eed_0003, false);
}
