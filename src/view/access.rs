//! Asking the policy: gathering the facts it needs (path, type, owner, `.nomedia`) from the node
//! table and the lower tree, caching every answer about a node per (caller, node) until the
//! policy or the paths change, and counting and reporting denials.
//!
//! A failure while gathering facts (EMFILE, ENFILE, ENOMEM, EIO) is that errno: never a
//! decision, never cached, never counted as a denial.

use super::lower::{self, errno, Result};
use super::nodes::{CachedVerdicts, Nomedia, OwnerFact};
use super::StorageView;
use crate::fuse::abi::ROOT_ID;
use crate::policy::{CallerClass, Decision, Op, Target};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed};

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
        Op::Link => "link",
        Op::Special => "symlink/mknod",
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

    /// Whether what is inside this directory is under a `.nomedia` tree.
    pub fn hides_children(&self) -> bool {
        self.under_nomedia || self.holds_nomedia
    }
}

impl StorageView {
    /// How the rules treat this caller.
    pub(crate) fn class(&self, uid: u32) -> CallerClass {
        self.policy.snapshot().class(uid)
    }

    /// Whether the app rules judge this caller (apps and isolated processes). Root and the
    /// platform uids bypass them; POSIX callers are judged by the kernel (see `creds.rs`).
    pub(crate) fn judged(&self, uid: u32) -> bool {
        matches!(self.class(uid), CallerClass::App | CallerClass::Isolated)
    }

    /// What `uid`'s cached decisions are valid under: the policy generation of that uid (a
    /// change of another uid leaves it alone) and the path epoch. Read before the snapshot
    /// that decides, so that a result is never stamped newer than the table it came from.
    fn stamp(&self, uid: u32) -> u64 {
        let generation = self.policy.generation_of(uid) as u32 as u64;
        (generation << 32) | (self.path_epoch.load(Acquire) as u32 as u64)
    }

    /// Paths changed in a way that can change decisions below them (a directory moved, a
    /// `.nomedia` came or went): every cached decision is void.
    pub(crate) fn paths_changed(&self) {
        self.path_epoch.fetch_add(1, Relaxed);
    }

    /// Decides `op` on `subject` for `uid`; a denial is counted, logged and returned as errno.
    pub(crate) fn check(&self, uid: u32, op: Op, subject: Subject<'_>) -> Result<Decision> {
        if !self.judged(uid) {
            return Ok(Decision::Allow);
        }
        let Subject::Node(id) = subject else {
            let facts = self.facts(subject)?;
            let decision = self.policy.snapshot().decide(uid, op, &facts.target());
            return self.verdict(uid, op, decision, || path_text(&facts.path));
        };
        let stamp = self.stamp(uid);
        let cached = self
            .nodes
            .with(id, |n| n.verdicts(uid, stamp))
            .ok_or(libc::ENOENT)?;
        let verdicts = match cached {
            Some(v) => v,
            None => {
                let facts = self.facts(subject)?;
                let verdicts = self.policy.snapshot().decide_all(uid, &facts.target());
                self.nodes.with(id, |n| {
                    n.set_verdicts(CachedVerdicts {
                        uid,
                        stamp,
                        verdicts,
                    })
                });
                verdicts
            }
        };
        let decision = match verdicts.get(op) {
            Some(d) => d,
            None => {
                let facts = self.facts(subject)?;
                self.policy.snapshot().decide(uid, op, &facts.target())
            }
        };
        self.verdict(uid, op, decision, || {
            self.path_of(id).map(|p| path_text(&p)).unwrap_or_default()
        })
    }

    /// Turns a decision into the handler's answer, counting and reporting a denial.
    pub(crate) fn verdict(
        &self,
        uid: u32,
        op: Op,
        decision: Decision,
        path: impl FnOnce() -> String,
    ) -> Result<Decision> {
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
    ) -> Result<bool> {
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
    /// refusal: most answers need no owner.
    pub(crate) fn judge_with_owner<T>(
        &self,
        facts: &mut Facts,
        dir: BorrowedFd<'_>,
        name: &[u8],
        judge: impl Fn(&Facts) -> T,
        refused: impl Fn(&T) -> bool,
    ) -> Result<T> {
        let first = judge(facts);
        if !refused(&first) {
            return Ok(first);
        }
        facts.owner = read_owner_at(dir, name)?;
        if facts.owner.is_none() {
            return Ok(first);
        }
        Ok(judge(facts))
    }

    /// Facts of `name` inside the directory described by `parent` (no owner yet).
    pub(crate) fn child_facts(&self, parent: &Facts, name: &[u8], is_dir: bool) -> Facts {
        let mut path = Vec::with_capacity(parent.path.len() + 1 + name.len());
        path.extend_from_slice(&parent.path);
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        Facts {
            path,
            is_dir,
            owner: None,
            under_nomedia: parent.hides_children(),
            holds_nomedia: false,
        }
    }

    pub(crate) fn facts(&self, subject: Subject<'_>) -> Result<Facts> {
        match subject {
            Subject::Node(id) => {
                let (parent, is_dir) = self
                    .nodes
                    .with(id, |n| (n.parent(), n.is_dir()))
                    .ok_or(libc::ENOENT)?;
                let path = self.path_of(id)?;
                let owner = self.owner_of(id)?;
                let under_nomedia = id != ROOT_ID && self.under_nomedia(parent)?;
                let holds_nomedia = is_dir && self.dir_has_nomedia(id)?;
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
                    under_nomedia: self.under_nomedia(parent)?,
                    holds_nomedia: false,
                })
            }
        }
    }

    /// The node's path relative to the storage root ("" for the root). Built leaf first with
    /// each name reversed, then reversed whole: one buffer, no allocation per component.
    /// ESTALE for a node a new server could not name again (`recover`): the kernel then looks
    /// the path up afresh, and no decision is made on a guessed name.
    pub(crate) fn path_of(&self, mut id: u64) -> Result<Vec<u8>> {
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
                    (!n.is_unnamed()).then_some(n.parent())
                })
                .ok_or(libc::ENOENT)?
                .ok_or(libc::ESTALE)?;
            depth += 1;
            if depth > 4096 {
                return Err(libc::ELOOP);
            }
        }
        path.reverse();
        Ok(path)
    }

    /// The owner tag of a file or directory node, read from its xattr once and then cached
    /// (only an answer is cached, never a failure to read it).
    fn owner_of(&self, id: u64) -> Result<Option<Box<[u8]>>> {
        let (fact, handle, kind) = self
            .nodes
            .with(id, |n| (n.owner(), n.handle(), n.kind()))
            .ok_or(libc::ENOENT)?;
        match fact {
            OwnerFact::Tag(t) => return Ok(Some(t)),
            OwnerFact::None => return Ok(None),
            OwnerFact::Unknown => {}
        }
        let tag = if kind == libc::S_IFREG || kind == libc::S_IFDIR {
            let fd = self
                .lower
                .open_handle(&handle, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY)
                .map_err(|e| errno(&e))?;
            read_owner(fd.as_fd())?
        } else {
            None
        };
        let fact = match &tag {
            Some(t) => OwnerFact::Tag(t.clone()),
            None => OwnerFact::None,
        };
        self.nodes.with(id, |n| n.set_owner(fact));
        Ok(tag)
    }

    /// Whether `dir` or any ancestor holds a `.nomedia` file.
    fn under_nomedia(&self, mut dir: u64) -> Result<bool> {
        loop {
            if self.dir_has_nomedia(dir)? {
                return Ok(true);
            }
            if dir == ROOT_ID {
                return Ok(false);
            }
            match self.nodes.with(dir, |n| n.parent()) {
                Some(p) => dir = p,
                None => return Err(libc::ENOENT),
            }
        }
    }

    fn dir_has_nomedia(&self, dir: u64) -> Result<bool> {
        let (fact, handle) = self
            .nodes
            .with(dir, |n| (n.nomedia(), n.handle()))
            .ok_or(libc::ENOENT)?;
        match fact {
            Nomedia::Yes => return Ok(true),
            Nomedia::No => return Ok(false),
            Nomedia::Unknown => {}
        }
        let fd = self
            .lower
            .open_handle(&handle, libc::O_PATH)
            .map_err(|e| errno(&e))?;
        let has = match lower::stat_at(fd.as_fd(), c".nomedia") {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => false,
            Err(e) => return Err(errno(&e)),
        };
        self.nodes.with(dir, |n| {
            n.set_nomedia(if has { Nomedia::Yes } else { Nomedia::No })
        });
        Ok(has)
    }

    /// A `.nomedia` file appeared or vanished in `dir`: refresh and void cached decisions.
    pub(crate) fn nomedia_changed(&self, dir: u64) {
        self.nodes.with(dir, |n| n.set_nomedia(Nomedia::Unknown));
        self.paths_changed();
    }

    /// Records `tag` as the owner of a freshly created file or directory.
    pub(crate) fn record_owner(&self, fd: BorrowedFd<'_>, tag: &[u8]) {
        // SAFETY: fd is a non-O_PATH fd of the new file; name and value are valid for the call.
        let r = unsafe {
            libc::fsetxattr(
                fd.as_raw_fd(),
                OWNER_XATTR_C.as_ptr(),
                tag.as_ptr().cast(),
                tag.len(),
                0,
            )
        };
        if r != 0 && !self.owner_warned.swap(true, Relaxed) {
            let e = std::io::Error::last_os_error();
            log::warn!("cannot record file owners on the lower filesystem ({e}); ownership will not survive");
        }
    }
}

fn path_text(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// The owner tag on an open file: `None` when it has none (or the filesystem keeps no
/// xattrs), an errno when it could not be read.
fn read_owner(fd: BorrowedFd<'_>) -> Result<Option<Box<[u8]>>> {
    let mut buf = [0u8; 256];
    // SAFETY: fgetxattr writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            OWNER_XATTR_C.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = errno(&std::io::Error::last_os_error());
        // No tag, no xattr support, or a value too long to be ours: nobody's.
        return match e {
            libc::ENODATA | libc::EOPNOTSUPP | libc::ERANGE => Ok(None),
            e => Err(e),
        };
    }
    Ok((n > 0).then(|| buf[..n as usize].into()))
}

/// The owner tag of `name` in `dir`, without following symlinks or opening anything but a
/// regular file or directory (opening a device could have side effects, a fifo could block).
pub(crate) fn read_owner_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<Option<Box<[u8]>>> {
    let cname = lower::io(lower::cname(name))?;
    let st = lower::io(lower::stat_at(dir, &cname))?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG && kind != libc::S_IFDIR {
        return Ok(None);
    }
    let fd = match lower::open_at(
        dir,
        &cname,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
    ) {
        Ok(fd) => fd,
        // Replaced by a symlink or a special file in between: it carries no owner.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) => return Ok(None),
        Err(e) => return Err(errno(&e)),
    };
    if lower::io(lower::stat_fd(fd.as_fd()))?.st_ino != st.st_ino {
        return Ok(None); // replaced in between: not the file that was judged
    }
    read_owner(fd.as_fd())
}
