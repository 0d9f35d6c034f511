//! A `/dev/fuse` file descriptor: reading requests, writing replies, cloning per worker, and the
//! passthrough backing-file ioctls.

use super::abi;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

pub const DEVICE: &str = "/dev/fuse";

#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Checks, without taking it, that `fd` is an open `/dev/fuse` descriptor: `EBADF` if it is not
/// open, an `InvalidInput` error if it is another file.
pub fn check_device(fd: RawFd) -> io::Result<()> {
    let st = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
    let is_fuse =
        (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && st.st_rdev == libc::makedev(10, 229);
    if !is_fuse {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a /dev/fuse file descriptor",
        ));
    }
    Ok(())
}

impl Channel {
    /// Opens a new, unmounted session on `/dev/fuse`.
    pub fn open() -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(DEVICE)?;
        Ok(Channel { fd: file.into() })
    }

    /// Wraps an fd of an already-mounted session (handed over by the platform).
    /// Fails with `EINVAL` if the fd is not a FUSE device.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        check_device(fd.as_raw_fd())?;
        Ok(Channel { fd })
    }

    /// A new fd bound to the same session, so that a worker has its own processing queue.
    pub fn clone_session(&self) -> io::Result<Channel> {
        let clone = Channel::open()?;
        let session_fd: u32 = self.fd.as_raw_fd() as u32;
        // SAFETY: FUSE_DEV_IOC_CLONE reads one u32 (the session fd) from the pointer, which is
        // valid for the duration of the call.
        cvt(unsafe {
            libc::ioctl(
                clone.fd.as_raw_fd(),
                abi::FUSE_DEV_IOC_CLONE as _,
                &session_fd,
            )
        })?;
        Ok(clone)
    }

    pub fn set_nonblocking(&self) -> io::Result<()> {
        // SAFETY: fcntl on an fd we own, with integer arguments only.
        let flags = cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_GETFL) })?;
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
        Ok(())
    }

    /// Reads one whole request. `buf` must hold the largest request the kernel may send.
    pub fn receive(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the kernel writes at most buf.len() bytes into buf, which we own mutably.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Writes one whole reply or notification.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: the kernel reads msg.len() bytes from a slice we borrow.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else if n as usize != msg.len() {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to /dev/fuse",
            ))
        } else {
            Ok(())
        }
    }

    /// Registers `file` as a passthrough backing file and returns its id (> 0).
    /// `EPERM` means passthrough is off for this connection (or we lack CAP_SYS_ADMIN).
    pub fn backing_open(&self, file: BorrowedFd<'_>) -> io::Result<i32> {
        let map = abi::BackingMap {
            fd: file.as_raw_fd(),
            flags: 0,
            padding: 0,
        };
        // SAFETY: BACKING_OPEN reads a struct fuse_backing_map from the pointer, valid for the
        // call; the fd it names is borrowed for the call too.
        cvt(unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                abi::FUSE_DEV_IOC_BACKING_OPEN as _,
                &map,
            )
        })
    }

    pub fn backing_close(&self, id: i32) -> io::Result<()> {
        let id = id as u32;
        // SAFETY: BACKING_CLOSE reads one u32 from the pointer, valid for the call.
        cvt(unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                abi::FUSE_DEV_IOC_BACKING_CLOSE as _,
                &id,
            )
        })?;
        Ok(())
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
