//! Directory listings, filtered per caller.

use super::access::Subject;
use super::dirstream::DirStream;
use super::files::OpenFile;
use super::lookup::dtype_of_mode;
use super::lower::{self, cvt, io, Result};
use super::prefetch::ListingAhead;
use super::StorageView;
use crate::fuse::{Ctx, DirWriter, Opened};
use crate::policy::Op;
use std::os::fd::{AsFd, AsRawFd};

pub(super) fn opendir(view: &StorageView, ctx: &Ctx, node: u64, _flags: u32) -> Result<Opened> {
    view.check(ctx.uid, Op::ListDir, Subject::Node(node))?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY;
    let fd = match view.posix_creds(ctx) {
        Some(creds) => {
            // Reached through directories the caller may search, read as the caller.
            let parent = view.nodes.with(node, |n| n.parent()).ok_or(libc::ENOENT)?;
            view.posix_may_reach(&creds, parent)?;
            let path_fd = view.open_node(node, libc::O_PATH)?;
            let _as = view.act_as(Some(&creds))?;
            io(lower::reopen(path_fd.as_fd(), flags))?
        }
        None => view.open_node(node, flags)?,
    };
    let fh = view.files.insert(OpenFile::Dir {
        node,
        stream: std::sync::Mutex::new(DirStream::new(fd)),
        ahead: std::sync::Mutex::new(ListingAhead::default()),
    });
    // Never FOPEN_CACHE_DIR: listings are filtered per caller.
    Ok(Opened {
        fh,
        flags: 0,
        backing_id: None,
    })
}

/// Entries (besides `.` and `..`) in the READDIRPLUS reply at a listing's start.
const FIRST_PLUS_ENTRIES: usize = 32;

pub(super) fn readdir(
    view: &StorageView,
    ctx: &Ctx,
    node: u64,
    fh: u64,
    offset: u64,
    out: &mut DirWriter<'_>,
) -> Result<()> {
    let file = view.files.get(fh).ok_or(libc::EBADF)?;
    let OpenFile::Dir {
        node: dnode,
        stream,
        ahead,
    } = &*file
    else {
        return Err(libc::EBADF);
    };
    if *dnode != node {
        return Err(libc::EBADF);
    }
    let mut stream = stream.lock().unwrap_or_else(|e| e.into_inner());
    let mut ahead = ahead.lock().unwrap_or_else(|e| e.into_inner());
    if stream.position() != offset {
        ahead.moved();
    }
    io(stream.seek(offset))?;
    let parent_facts = view.dir_facts(node)?;
    let dirfd = io(lower::dup_fd(stream.fd().as_fd()))?;
    let judged = view.judged(ctx.uid);
    let plus = out.is_plus();
    // The kernel asks for a listing's start with READDIRPLUS whatever the caller does next; it
    // keeps asking PLUS only once the caller has looked entries up (`ls -l`, `find`). A short
    // first reply keeps a plain `ls` from paying a lower lookup and a kernel inode per entry,
    // and costs `ls -l` one more round trip.
    let plus_at_start = plus && offset == 0;
    let mut plus_left = if plus_at_start {
        FIRST_PLUS_ENTRIES
    } else {
        usize::MAX
    };
    if plus && !plus_at_start {
        // Each entry will cost a lower lookup: have the inodes ahead of us read meanwhile.
        view.prefetch
            .ahead_of(stream.fd().as_fd(), offset, stream.consumed(), &mut ahead);
    }
    while let Some(e) = io(stream.peek())? {
        let (ino, next, name) = (e.ino, e.next_offset, e.name.to_vec());
        let mut dtype = e.dtype as u32;
        if name == b"." || name == b".." {
            if !out.push(ino, next, libc::DT_DIR as u32, &name, None) {
                break;
            }
            stream.advance();
            continue;
        }
        if dtype == libc::DT_UNKNOWN as u32 {
            match lower::cname(&name).and_then(|c| lower::stat_at(dirfd.as_fd(), &c)) {
                Ok(st) => dtype = dtype_of_mode(st.st_mode),
                Err(_) => {
                    stream.advance();
                    continue;
                }
            }
        }
        let is_dir = dtype == libc::DT_DIR as u32;
        if judged && !view.listed_in(ctx.uid, &parent_facts, dirfd.as_fd(), &name, is_dir)? {
            stream.advance();
            continue;
        }
        if !out.fits(&name) || plus_left == 0 {
            break;
        }
        if plus {
            plus_left -= 1;
            // READDIRPLUS entries count as lookups; one that vanished is skipped.
            match view.lookup_in(0, node, dirfd.as_fd(), &name, &parent_facts) {
                Ok(entry) => {
                    out.push(ino, next, dtype, &name, Some(&entry));
                }
                Err(_) => {
                    stream.advance();
                    continue;
                }
            }
        } else {
            out.push(ino, next, dtype, &name, None);
        }
        stream.advance();
    }
    Ok(())
}

pub(super) fn releasedir(view: &StorageView, _ctx: &Ctx, _node: u64, fh: u64) -> Result<()> {
    view.release_file(fh);
    Ok(())
}

pub(super) fn fsyncdir(
    view: &StorageView,
    _ctx: &Ctx,
    node: u64,
    _fh: u64,
    datasync: bool,
) -> Result<()> {
    let fd = view.open_node(node, libc::O_RDONLY | libc::O_DIRECTORY)?;
    // SAFETY: fsync/fdatasync on an fd we own.
    let r = unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    };
    io(cvt(r).map(|_| ()))
}
