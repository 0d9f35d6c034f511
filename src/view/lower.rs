//! System calls on the lower filesystem. Nodes are named by kernel file handles
//! (`name_to_handle_at`), reopened with `open_by_handle_at`: no fd is held per known inode, a
//! handle survives renames, and every name is resolved one component at a time with
//! `O_NOFOLLOW` from a directory we already hold, so no symlink or `..` leads outside the root.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Largest handle we keep: ext4, f2fs and xfs use 8 bytes (16 with 64-bit inodes), tmpfs
/// 12, btrfs 20. Every node holds one, so it is stored inline in 24 bytes in all.
const HANDLE_MAX: usize = 22;
/// What we ask the kernel for: room for any handle, so that a too-large one is refused by us
/// with a clear error instead of EOVERFLOW from the kernel.
const HANDLE_ASK: usize = 128;

/// A kernel file handle (`struct file_handle` without its header).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    kind: u8,
    len: u8,
    bytes: [u8; HANDLE_MAX],
}

const _: () = assert!(std::mem::size_of::<Handle>() == 24);

impl Handle {
    /// Whether this handle can belong to inode `ino`: exact for the common 8-byte
    /// FILEID_INO32_GEN handles (ext4, f2fs, xfs), which start with the inode number; other
    /// layouts cannot be checked and say yes.
    pub fn may_be_inode(&self, ino: u64) -> bool {
        const FILEID_INO32_GEN: u8 = 1;
        if self.kind == FILEID_INO32_GEN && self.len == 8 {
            let h =
                u32::from_ne_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]]);
            return h == ino as u32;
        }
        true
    }

    /// The handle as 24 bytes (type, length, bytes), for the restart state.
    pub fn to_bytes(self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0] = self.kind;
        b[1] = self.len;
        b[2..].copy_from_slice(&self.bytes);
        b
    }

    /// The inverse of `to_bytes`; `None` for bytes no handle gives.
    pub fn from_bytes(b: &[u8; 24]) -> Option<Handle> {
        if b[1] as usize > HANDLE_MAX {
            return None;
        }
        let mut bytes = [0u8; HANDLE_MAX];
        bytes.copy_from_slice(&b[2..]);
        Some(Handle {
            kind: b[0],
            len: b[1],
            bytes,
        })
    }

    /// Whether `may_be_inode` is a real check for this handle's layout.
    pub fn carries_inode(&self) -> bool {
        self.kind == 1 && self.len == 8
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Handle({}:{:02x?})",
            self.kind,
            &self.bytes[..self.len as usize]
        )
    }
}

/// Handle bytes a node keeps inline: ext4's, f2fs's and xfs's 8, tmpfs's 12.
const COMPACT_INLINE: usize = 13;

/// A handle as a node keeps it: inline up to 13 bytes, boxed beyond. 16 bytes where a
/// `Handle` takes 24, and there is one per node the kernel holds.
#[derive(Clone, PartialEq, Eq)]
pub enum CompactHandle {
    Inline {
        kind: u8,
        len: u8,
        bytes: [u8; COMPACT_INLINE],
    },
    Boxed(Box<Handle>),
}

const _: () = assert!(std::mem::size_of::<CompactHandle>() == 16);

impl CompactHandle {
    pub fn new(h: Handle) -> Self {
        let len = usize::from(h.len);
        if len <= COMPACT_INLINE {
            let mut bytes = [0u8; COMPACT_INLINE];
            bytes[..len].copy_from_slice(&h.bytes[..len]);
            CompactHandle::Inline {
                kind: h.kind,
                len: h.len,
                bytes,
            }
        } else {
            CompactHandle::Boxed(Box::new(h))
        }
    }

    pub fn get(&self) -> Handle {
        match self {
            CompactHandle::Inline { kind, len, bytes } => {
                let mut full = [0u8; HANDLE_MAX];
                full[..COMPACT_INLINE].copy_from_slice(bytes);
                Handle {
                    kind: *kind,
                    len: *len,
                    bytes: full,
                }
            }
            CompactHandle::Boxed(h) => **h,
        }
    }
}

impl std::fmt::Debug for CompactHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// `struct file_handle` with room for any handle (MAX_HANDLE_SZ is 128).
#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; HANDLE_ASK],
}

pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Positive errno of an io::Error (EIO if it carries none).
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// What every handler returns: a value or the errno the kernel gets.
pub type Result<T> = std::result::Result<T, i32>;

/// An io::Result as a handler result.
pub fn io<T>(r: io::Result<T>) -> Result<T> {
    r.map_err(|e| errno(&e))
}

pub fn is_dir_mode(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: fd was just returned by the kernel as a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A name as a C string, for the `*at()` calls.
pub fn cname(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole struct stat into st on success; we read it only then.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so st is initialised.
    Ok(unsafe { st.assume_init() })
}

pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: name is NUL-terminated; fstatat writes a whole struct stat on success.
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded, so st is initialised.
    Ok(unsafe { st.assume_init() })
}

/// `openat` that never follows a symlink in the last component (the name has no '/').
pub fn open_at(dir: BorrowedFd<'_>, name: &CString, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: name is NUL-terminated and lives across the call.
    owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode,
        )
    })
}

/// The handle of an open fd (any kind, O_PATH included).
pub fn handle_of(fd: BorrowedFd<'_>) -> io::Result<Handle> {
    name_to_handle(fd, c"", libc::AT_EMPTY_PATH).map(|(handle, _)| handle)
}

/// The mount a handle belongs to, as `name_to_handle_at` names it. A name in the lower tree
/// that is a mount point resolves to the mounted root, in another mount.
pub type MountId = libc::c_int;

/// The handle of `name` in `dir` and the mount it lives in, without following a symlink
/// (flags 0) and without opening the file: one system call where open + handle + close would
/// be three.
pub fn handle_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<(Handle, MountId)> {
    name_to_handle(dir, name, 0)
}

fn name_to_handle(fd: BorrowedFd<'_>, name: &CStr, flags: i32) -> io::Result<(Handle, MountId)> {
    let mut raw = RawHandle {
        handle_bytes: HANDLE_ASK as u32,
        handle_type: 0,
        f_handle: [0; HANDLE_ASK],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: raw is a file_handle with handle_bytes = the room that follows it; the kernel
    // writes at most that many bytes. mount_id is a valid int pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            name.as_ptr(),
            &mut raw as *mut RawHandle,
            &mut mount_id as *mut libc::c_int,
            flags,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = raw.handle_bytes as usize;
    let kind = u8::try_from(raw.handle_type)
        .ok()
        .filter(|_| len <= HANDLE_MAX)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "file handle of type {} and {len} bytes is larger than fusegate keeps",
                    raw.handle_type
                ),
            )
        })?;
    let mut bytes = [0u8; HANDLE_MAX];
    bytes[..len].copy_from_slice(&raw.f_handle[..len]);
    Ok((
        Handle {
            kind,
            len: len as u8,
            bytes,
        },
        mount_id,
    ))
}

/// The lower root and the operations that need it.
#[derive(Debug)]
pub struct Lower {
    root: OwnedFd,
    root_handle: Handle,
    root_mount: MountId,
}

impl Lower {
    pub fn open(path: &Path) -> io::Result<Lower> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags_dir()
            .open(path)?;
        let root: OwnedFd = file.into();
        let st = stat_fd(root_borrow(&root))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        let (root_handle, root_mount) =
            name_to_handle(root_borrow(&root), c"", libc::AT_EMPTY_PATH)?;
        let lower = Lower {
            root,
            root_handle,
            root_mount,
        };
        // Prove open_by_handle_at works here (needs CAP_DAC_READ_SEARCH and fs support).
        lower.open_handle(&lower.root_handle, libc::O_PATH)?;
        Ok(lower)
    }

    pub fn root(&self) -> BorrowedFd<'_> {
        root_borrow(&self.root)
    }

    pub fn root_handle(&self) -> &Handle {
        &self.root_handle
    }

    /// The mount of the lower root. Names whose handle is in another mount (a filesystem or
    /// bind mount below the root) are not served: handles are opened through the root's mount,
    /// and a bind mount could show one app's private files under a public path.
    pub fn root_mount(&self) -> MountId {
        self.root_mount
    }

    /// Reopens a node. `O_PATH` gives a cheap reference for `*at()` calls and stat.
    pub fn open_handle(&self, handle: &Handle, flags: i32) -> io::Result<OwnedFd> {
        let mut raw = RawHandle {
            handle_bytes: handle.len as u32,
            handle_type: handle.kind as i32,
            f_handle: [0; HANDLE_ASK],
        };
        raw.f_handle[..HANDLE_MAX].copy_from_slice(&handle.bytes);
        // SAFETY: raw is a valid file_handle whose handle_bytes matches the bytes that follow.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_by_handle_at,
                self.root.as_raw_fd(),
                &mut raw as *mut RawHandle,
                flags | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            // ESTALE (the inode is gone, deleted outside the mount) goes to the kernel as is:
            // the VFS then looks the name up again instead of failing.
            return Err(io::Error::last_os_error());
        }
        owned(fd as libc::c_int)
    }
}

fn root_borrow(fd: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    fd.as_fd()
}

trait DirFlags {
    fn custom_flags_dir(&mut self) -> &mut Self;
}

impl DirFlags for std::fs::OpenOptions {
    fn custom_flags_dir(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
    }
}

pub fn dup_fd(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

/// Opens the inode behind `fd` anew with `flags` (plus `O_CLOEXEC`) through its
/// `/proc/self/fd` magic link: the same inode, not its name again, e.g. an `O_PATH` fd of a
/// file made readable, or a file reopened as the thread's current (fs) credentials. The magic
/// link is itself a symlink, so `O_NOFOLLOW` (a caller's, honoured already when its name was
/// looked up) is dropped: it would make every reopen fail with ELOOP.
pub fn reopen(fd: BorrowedFd<'_>, flags: i32) -> io::Result<OwnedFd> {
    let path = proc_path(fd.as_raw_fd());
    let flags = (flags & !libc::O_NOFOLLOW) | libc::O_CLOEXEC;
    // SAFETY: path is NUL-terminated; open returns a new fd or -1.
    owned(unsafe { libc::open(path.as_ptr(), flags) })
}

/// `/proc/self/fd/N`: lets path-only calls (chmod, xattrs, utimes) act on an `O_PATH` fd
/// without opening the file (which could block on a fifo or have device side effects).
pub fn proc_path(fd: RawFd) -> CString {
    // A formatted integer never contains NUL.
    CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn handles_survive_rename_and_reopen_the_same_inode() {
        let dir = std::env::temp_dir().join(format!("fusegate-lower-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a"), b"x").unwrap();
        let lower = match Lower::open(&dir) {
            Ok(l) => l,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && std::env::var_os("CI").is_none() => {
                std::fs::remove_dir_all(&dir).ok();
                return; // not root outside CI: open_by_handle_at needs CAP_DAC_READ_SEARCH
            }
            Err(e) => panic!("{e}"),
        };
        let fd = open_at(lower.root(), &cname(b"a").unwrap(), libc::O_PATH, 0).unwrap();
        let h = handle_of(fd.as_fd()).unwrap();
        let ino = stat_fd(fd.as_fd()).unwrap().st_ino;
        std::fs::rename(dir.join("a"), dir.join("b")).unwrap();
        let again = lower.open_handle(&h, libc::O_PATH).unwrap();
        assert_eq!(stat_fd(again.as_fd()).unwrap().st_ino, ino);
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compact_handles_give_back_the_same_handle_inline_or_boxed() {
        for len in [0u8, 8, 12, 13, 14, 20, 22] {
            let mut b = [0u8; 24];
            b[0] = 0x81;
            b[1] = len;
            for (i, x) in b[2..2 + usize::from(len)].iter_mut().enumerate() {
                *x = i as u8 + 1;
            }
            let h = Handle::from_bytes(&b).unwrap();
            let c = CompactHandle::new(h);
            assert_eq!(c.get(), h, "{len} bytes");
            assert_eq!(matches!(c, CompactHandle::Inline { .. }), len <= 13);
        }
    }
}

#[cfg(test)]
pub mod tests_support {
    use super::*;

    /// A distinct handle for table tests that never reach the kernel.
    pub fn fake_handle(n: u8) -> Handle {
        let mut bytes = [0u8; HANDLE_MAX];
        bytes[0] = n;
        Handle {
            kind: 1,
            len: 8,
            bytes,
        }
    }
}
