//! What a filesystem may ask of the kernel outside a reply: passthrough backing files and cache
//! invalidation notifications.

use super::abi::{self, notify_code};
use super::channel::Channel;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

/// Shared by the session and the filesystem; cheap to clone through `Arc`.
#[derive(Debug)]
pub struct KernelHandle {
    chan: Arc<Channel>,
}

impl KernelHandle {
    pub(crate) fn new(chan: Arc<Channel>) -> Self {
        KernelHandle { chan }
    }

    /// Registers `file` (any fd of it, `O_PATH` included) as a passthrough backing file.
    pub fn backing_open(&self, file: BorrowedFd<'_>) -> io::Result<i32> {
        self.chan.backing_open(file)
    }

    pub fn backing_close(&self, id: i32) -> io::Result<()> {
        self.chan.backing_close(id)
    }

    /// Drops the kernel's cached dentry `name` under `parent`. Must not be called from a thread
    /// that is serving a request on this mount (the kernel may wait for that request: deadlock).
    /// `ENOENT` (the kernel did not have it cached) is success.
    pub fn inval_entry(&self, parent: u64, name: &[u8]) -> io::Result<()> {
        let arg = abi::NotifyInvalEntryOut {
            parent,
            namelen: name.len() as u32,
            flags: 0,
        };
        let mut msg = Vec::with_capacity(16 + 16 + name.len() + 1);
        let payload_len = std::mem::size_of_val(&arg) + name.len() + 1;
        self.notify(notify_code::INVAL_ENTRY, payload_len, &mut msg);
        msg.extend_from_slice(abi::as_bytes(&arg));
        msg.extend_from_slice(name);
        msg.push(0);
        self.send_notify(&msg)
    }

    /// Drops the kernel's cached attributes (and page cache range, `len` 0 = all) of `node`.
    pub fn inval_inode(&self, node: u64, offset: i64, len: i64) -> io::Result<()> {
        let arg = abi::NotifyInvalInodeOut {
            ino: node,
            off: offset,
            len,
        };
        let mut msg = Vec::with_capacity(16 + 24);
        self.notify(
            notify_code::INVAL_INODE,
            std::mem::size_of_val(&arg),
            &mut msg,
        );
        msg.extend_from_slice(abi::as_bytes(&arg));
        self.send_notify(&msg)
    }

    fn notify(&self, code: i32, payload_len: usize, msg: &mut Vec<u8>) {
        let header = abi::OutHeader {
            len: (16 + payload_len) as u32,
            error: code,
            unique: 0,
        };
        msg.extend_from_slice(abi::as_bytes(&header));
    }

    fn send_notify(&self, msg: &[u8]) -> io::Result<()> {
        match self.chan.send(msg) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }
}
