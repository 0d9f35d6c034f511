//! Asking the policy: gathering the facts it needs (path, type, owner, `.nomedia`) from the node
//! table and the lower tree, caching the answer per (caller, node) until the policy changes,
//! and counting and reporting denials.

use super::lower::{self, errno};
use super::nodes::{CachedDecision, Nomedia, OwnerFact};
use super::StorageView;
use crate::fuse::abi::ROOT_ID;
use crate::fuse::Errno;
use crate::policy::{self, Decision, Op, Target};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering::Relaxed;

/// The xattr holding the owner tag of a file created through the mount.
pub const OWNER_XATTR: &[u8] = b"user.fusegate.owner";
const OWNER_XATTR_C: &std::ffi::CStr = c"user.fusegate.owner";

/// The object a decision is about: an existing node, or a name in a directory node.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Node(u64),
    Child {
        parent: u64,
        name: &'a [u8],
        is_dir: bool,
        owner: Option<&'a [u8]>,
    },
}

pub fn op_name(op: Op) -> &'static str {
    match op {
        Op::Lookup => "lookup",
        Op::Read => "read",
        Op::Write => "write",
        Op::Create => "create",
        Op::Mkdir => "mkdir",
        Op::Delete => "delete",
        Op::RenameFrom => "rename-from",
        Op::RenameTo => "rename-to",
        Op::ListDir => "list",
    }
}

/// Facts of one object, owned (gathered before the policy call).
pub struct Facts {
    pub path: Vec<u8>,
    pub is_dir: bool,
    pub owner: Option<Box<[u8]>>,
    pub under_nomedia: bool,
    /// For a directory: it holds a `.nomedia` file itself.
    pub holds_nomedia: bool,
}

impl Facts {
    pub fn target(&self) -> Target<'_> {
        Target {
            path: &self.path,
            is_dir: self.is_dir,
            owner: self.owner.as_deref(),
            under_nomedia: self.under_nomedia,
        }
    }
}

impl StorageView {
    /// Decides `op` on `subject` for `uid`; a denial is counted, logged and returned as errno.
    pub(crate) fn check(&self, uid: u32, op: Op, subject: Subject<'_>) -> Result<Decision, Errno> {
        if policy::bypasses(uid) {
            return Ok(Decision::Allow);
        }
        let generation = self.policy.generation();
        if let Subject::Node(id) = subject {
            let cached = self.nodes.with(id, |n| n.decision()).ok_or(libc::ENOENT)?;
            if let Some(c) = cached {
                if c.uid == uid && c.generation == generation && c.op == op {
                    return self.verdict(uid, op, c.decision, || self.path_string(subject));
                }
            }
        }
        let facts = self.facts(subject)?;
        let decision = self.policy.snapshot().decide(uid, op, &facts.target());
        if let Subject::Node(id) = subject {
            self.nodes.with(id, |n| {
                n.set_decision(Some(CachedDecision {
                    uid,
                    generation,
                    op,
                    decision,
                }))
            });
        }
        self.verdict(uid, op, decision, || {
            String::from_utf8_lossy(&facts.path).into_owned()
        })
    }

    fn verdict(
        &self,
        uid: u32,
        op: Op,
        decision: Decision,
        path: impl FnOnce() -> String,
    ) -> Result<Decision, Errno> {
        match decision {
            Decision::Deny(e) => {
                self.stats.denials.fetch_add(1, Relaxed);
                self.denials.record(uid, op_name(op), path, e);
                Err(e)
            }
            d => Ok(d),
        }
    }

    /// Whether a listing of the directory described by `parent` shows `name` to `uid`.
    pub(crate) fn listed_in(
        &self,
        uid: u32,
        parent: &Facts,
        dir: BorrowedFd<'_>,
        name: &[u8],
        is_dir: bool,
    ) -> bool {
        if policy::bypasses(uid) {
            return true;
        }
        let mut facts = self.child_facts(parent, name, is_dir);
        let snapshot = self.policy.snapshot();
        self.judge_with_owner(
            &mut facts,
            dir,
            name,
            |f| snapshot.listed(uid, &f.target()),
            |listed| !listed,
        )
    }

    /// Asks `judge` about `name` in `dir`, reading its owner tag only if the first answer is a
    /// refusal: hidden things are visible to their owner, and most answers need no owner.
    pub(crate) fn judge_with_owner<T>(
        &self,
        facts: &mut Facts,
        dir: BorrowedFd<'_>,
        name: &[u8],
        judge: impl Fn(&Facts) -> T,
        refused: impl Fn(&T) -> bool,
    ) -> T {
        let first = judge(facts);
        if !refused(&first) {
            return first;
        }
        facts.owner = read_owner_at(dir, name);
        if facts.owner.is_none() {
            return first;
        }
        judge(facts)
    }

    /// Facts of `name` inside the directory described by `parent` (no owner yet).
    pub(crate) fn child_facts(&self, parent: &Facts, name: &[u8], is_dir: bool) -> Facts {
        let mut path = Vec::with_capacity(parent.path.len() + 1 + name.len());
        path.extend_from_slice(&parent.path);
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        // A directory's own `.nomedia` hides what is inside it.
        let under_nomedia = parent.under_nomedia || parent.holds_nomedia;
        Facts {
            path,
            is_dir,
            owner: None,
            under_nomedia,
            holds_nomedia: false,
        }
    }

    pub(crate) fn read_owner_at(&self, dir: BorrowedFd<'_>, name: &[u8]) -> Option<Box<[u8]>> {
        read_owner_at(dir, name)
    }

    pub(crate) fn deny(&self, uid: u32, op: Op, facts: &Facts, errno: i32) {
        self.stats.denials.fetch_add(1, Relaxed);
        self.denials.record(
            uid,
            op_name(op),
            || String::from_utf8_lossy(&facts.path).into_owned(),
            errno,
        );
    }

    pub(crate) fn facts(&self, subject: Subject<'_>) -> Result<Facts, Errno> {
        match subject {
            Subject::Node(id) => {
                let (parent, is_dir) = self
                    .nodes
                    .with(id, |n| (n.parent, n.is_dir()))
                    .ok_or(libc::ENOENT)?;
                let path = self.path_of(id)?;
                let owner = self.owner_of(id);
                let under_nomedia = id != ROOT_ID && self.under_nomedia(parent);
                let holds_nomedia = is_dir && self.dir_has_nomedia(id);
                Ok(Facts {
                    path,
                    is_dir,
                    owner,
                    under_nomedia,
                    holds_nomedia,
                })
            }
            Subject::Child {
                parent,
                name,
                is_dir,
                owner,
            } => {
                let mut path = self.path_of(parent)?;
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(name);
                Ok(Facts {
                    path,
                    is_dir,
                    owner: owner.map(Into::into),
                    under_nomedia: self.under_nomedia(parent),
                    holds_nomedia: false,
                })
            }
        }
    }

    fn path_string(&self, subject: Subject<'_>) -> String {
        self.facts(subject)
            .map(|f| String::from_utf8_lossy(&f.path).into_owned())
            .unwrap_or_default()
    }

    /// The node's path relative to the storage root ("" for the root). Built leaf first with
    /// each name reversed, then reversed whole: one buffer, no allocation per component.
    pub(crate) fn path_of(&self, mut id: u64) -> Result<Vec<u8>, Errno> {
        let mut path = Vec::with_capacity(64);
        let mut depth = 0;
        while id != ROOT_ID {
            if depth > 0 {
                path.push(b'/');
            }
            id = self
                .nodes
                .with(id, |n| {
                    path.extend(n.name.as_bytes().iter().rev());
                    n.parent
                })
                .ok_or(libc::ENOENT)?;
            depth += 1;
            if depth > 4096 {
                return Err(libc::ELOOP);
            }
        }
        path.reverse();
        Ok(path)
    }

    /// The owner tag of a file or directory node, read from its xattr once and then cached.
    fn owner_of(&self, id: u64) -> Option<Box<[u8]>> {
        let (fact, handle, kind) = self.nodes.with(id, |n| (n.owner(), n.handle, n.kind()))?;
        match fact {
            OwnerFact::Tag(t) => return Some(t),
            OwnerFact::None => return None,
            OwnerFact::Unknown => {}
        }
        let tag = if kind == libc::S_IFREG || kind == libc::S_IFDIR {
            self.lower
                .open_handle(&handle, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)
                .ok()
                .and_then(|fd| read_owner(fd.as_fd()))
        } else {
            None
        };
        let fact = match &tag {
            Some(t) => OwnerFact::Tag(t.clone()),
            None => OwnerFact::None,
        };
        self.nodes.with(id, |n| n.set_owner(fact));
        tag
    }

    /// Whether `dir` or any ancestor holds a `.nomedia` file.
    fn under_nomedia(&self, mut dir: u64) -> bool {
        loop {
            if self.dir_has_nomedia(dir) {
                return true;
            }
            if dir == ROOT_ID {
                return false;
            }
            match self.nodes.with(dir, |n| n.parent) {
                Some(p) => dir = p,
                None => return false,
            }
        }
    }

    fn dir_has_nomedia(&self, dir: u64) -> bool {
        let Some((fact, handle)) = self.nodes.with(dir, |n| (n.nomedia(), n.handle)) else {
            return false;
        };
        match fact {
            Nomedia::Yes => return true,
            Nomedia::No => return false,
            Nomedia::Unknown => {}
        }
        let has = self
            .lower
            .open_handle(&handle, libc::O_PATH)
            .ok()
            .map(|fd| lower::stat_at(fd.as_fd(), c".nomedia").is_ok())
            .unwrap_or(false);
        self.nodes.with(dir, |n| {
            n.set_nomedia(if has { Nomedia::Yes } else { Nomedia::No })
        });
        has
    }

    /// A `.nomedia` file appeared or vanished in `dir`: refresh and drop cached decisions.
    pub(crate) fn nomedia_changed(&self, dir: u64) {
        self.nodes.with(dir, |n| n.set_nomedia(Nomedia::Unknown));
        self.nodes.clear_decisions();
    }

    /// Records `tag` as the owner of a freshly created file.
    pub(crate) fn record_owner(&self, fd: BorrowedFd<'_>, tag: &[u8]) {
        // SAFETY: fd is a non-O_PATH fd of the new file; name and value are valid for the call.
        let r = unsafe {
            libc::fsetxattr(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                OWNER_XATTR_C.as_ptr(),
                tag.as_ptr().cast(),
                tag.len(),
                0,
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if !self.owner_warned.swap(true, Relaxed) {
                log::warn!("cannot record file owners on the lower filesystem ({e}); ownership will not survive");
            }
            let _ = errno(&e);
        }
    }
}

fn read_owner(fd: BorrowedFd<'_>) -> Option<Box<[u8]>> {
    let mut buf = [0u8; 256];
    // SAFETY: fgetxattr writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::fgetxattr(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            OWNER_XATTR_C.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n > 0).then(|| buf[..n as usize].into())
}

/// The owner tag of `name` in `dir`, without following symlinks or opening anything but a
/// regular file or directory (opening a device could have side effects, a fifo could block).
fn read_owner_at(dir: BorrowedFd<'_>, name: &[u8]) -> Option<Box<[u8]>> {
    let cname = lower::cname(name).ok()?;
    let st = lower::stat_at(dir, &cname).ok()?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG && kind != libc::S_IFDIR {
        return None;
    }
    let fd = lower::open_at(
        dir,
        &cname,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
    )
    .ok()?;
    if lower::stat_fd(fd.as_fd()).ok()?.st_ino != st.st_ino {
        return None; // replaced in between
    }
    read_owner(fd.as_fd())
}
