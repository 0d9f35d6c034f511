//! Mounting and unmounting a FUSE filesystem with `mount(2)` as root (no fusermount).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum MountError {
    #[error("mount point {0} does not exist or is not a directory")]
    NoMountpoint(String),
    #[error("{0} is already a mount point; unmount it first")]
    AlreadyMounted(String),
    #[error("mount point {path}: {source}")]
    Inspect { path: String, source: io::Error },
    #[error("mount(2) on {path} failed: {source}{hint}")]
    Mount {
        path: String,
        source: io::Error,
        hint: &'static str,
    },
    #[error("the path {0} contains a NUL byte")]
    BadPath(String),
}

/// What is at a mount point before we mount.
#[derive(Debug, PartialEq, Eq)]
pub enum MountpointState {
    Free,
    /// A FUSE mount whose daemon died (stat gives ENOTCONN): safe to detach.
    DeadFuse,
    Mounted,
}

fn cpath(path: &Path) -> Result<CString, MountError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| MountError::BadPath(path.display().to_string()))
}

/// The errors of a FUSE mount whose daemon is gone.
pub fn is_dead_connection(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)
    )
}

/// Whether `path` is free, a live mount, or the corpse of a FUSE mount.
pub fn inspect(path: &Path) -> Result<MountpointState, MountError> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        // A request caught on an io_uring queue while the connection is torn down ends with
        // ECONNABORTED or ECANCELED instead; later ones get ENOTCONN.
        Err(e) if is_dead_connection(&e) => Ok(MountpointState::DeadFuse),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(MountError::NoMountpoint(shown)),
        Err(e) => Err(MountError::Inspect {
            path: shown,
            source: e,
        }),
        Ok(m) if !m.is_dir() => Err(MountError::NoMountpoint(shown)),
        Ok(m) => {
            let parent = path.join("..");
            let pm = std::fs::metadata(&parent).map_err(|e| MountError::Inspect {
                path: shown.clone(),
                source: e,
            })?;
            // A different device than the parent, or the same inode as the parent (a bind of
            // "/"), means something is mounted here.
            if pm.dev() != m.dev() || pm.ino() == m.ino() {
                Ok(MountpointState::Mounted)
            } else {
                Ok(MountpointState::Free)
            }
        }
    }
}

/// Mounts the FUSE session `dev_fd` on `path`. Never `default_permissions`: every decision must
/// reach the daemon. `allow_other`: apps are other users.
pub fn mount(path: &Path, dev_fd: i32, fsname: &str, subtype: &str) -> Result<(), MountError> {
    let target = cpath(path)?;
    let source = CString::new(fsname).map_err(|_| MountError::BadPath(fsname.into()))?;
    let fstype =
        CString::new(format!("fuse.{subtype}")).map_err(|_| MountError::BadPath(subtype.into()))?;
    let opts = CString::new(format!(
        "fd={dev_fd},rootmode=40000,user_id=0,group_id=0,allow_other"
    ))
    .map_err(|_| MountError::BadPath(path.display().to_string()))?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME;
    // SAFETY: all pointers are NUL-terminated C strings that live across the call.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            opts.as_ptr().cast(),
        )
    };
    if ret != 0 {
        let source = io::Error::last_os_error();
        let hint = match source.raw_os_error() {
            Some(libc::EPERM) => " (mounting needs root / CAP_SYS_ADMIN)",
            Some(libc::ENODEV) => " (the kernel has no FUSE support: modprobe fuse)",
            _ => "",
        };
        return Err(MountError::Mount {
            path: path.display().to_string(),
            source,
            hint,
        });
    }
    Ok(())
}

/// Unmounts `path`; if files are still open there, detaches it lazily so that it leaves the
/// namespace at once and goes away when the last file closes.
pub fn unmount(path: &Path) -> io::Result<()> {
    let target =
        cpath(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    // SAFETY: target is a NUL-terminated C string that lives across the call.
    if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EBUSY) {
        return Err(err);
    }
    // SAFETY: as above.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Detaches a dead FUSE mount left behind by a killed daemon.
pub fn detach(path: &Path) -> io::Result<()> {
    let target =
        cpath(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    // SAFETY: target is a NUL-terminated C string that lives across the call.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
