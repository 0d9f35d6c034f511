//! Acting for a POSIX caller (a uid that is neither an app nor root or a platform uid): the
//! final system call of an operation runs with the caller's fsuid, fsgid and supplementary
//! groups on this thread, so the lower filesystem decides exactly as it would for that user
//! (modes, ownership, sticky directories, quotas, reserved blocks). Never the daemon's power.
//!
//! fsuid, fsgid and the group list are per-thread in the kernel. glibc and musl broadcast
//! `setgroups()` to every thread, so the raw system call is used.

use crate::fuse::Ctx;
use std::io;

/// Who the caller is, as the kernel would check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Creds {
    /// The request's uid and gid, and the supplementary groups of the calling process (read
    /// from `/proc/<pid>/status`, as libfuse's `fuse_req_getgroups` does; none if it is gone).
    pub fn of(ctx: &Ctx) -> Creds {
        let groups = if ctx.pid == 0 {
            Vec::new()
        } else {
            std::fs::read_to_string(format!("/proc/{}/status", ctx.pid))
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                        g.split_whitespace()
                            .filter_map(|n| n.parse().ok())
                            .collect()
                    })
                })
                .unwrap_or_default()
        };
        Creds {
            uid: ctx.uid,
            gid: ctx.gid,
            groups,
        }
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// The kernel's mode-bit check (`generic_permission` without ACLs or capabilities):
    /// `mask` is a combination of `libc::R_OK`, `W_OK`, `X_OK`.
    pub fn allows(&self, st: &libc::stat, mask: i32) -> bool {
        let mode = st.st_mode;
        let bits = if self.uid == st.st_uid {
            mode >> 6
        } else if self.in_group(st.st_gid) {
            mode >> 3
        } else {
            mode
        } & 0o7;
        (bits as i32) & mask == mask
    }
}

/// While alive, this thread's file system accesses are checked as `creds`.
pub struct ActAs {
    saved_groups: Vec<libc::gid_t>,
}

fn set_groups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: the raw syscall reads groups.len() gids from a live slice; it changes only
    // this thread's credentials (the libc wrappers would change every thread's).
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn current_groups() -> Vec<libc::gid_t> {
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: getgroups writes at most groups.len() entries.
    let n = unsafe { libc::getgroups(groups.len() as i32, groups.as_mut_ptr()) };
    groups.truncate(n.max(0) as usize);
    groups
}

impl ActAs {
    /// Switches this thread to `creds`. Fails (EPERM) if the daemon lacks CAP_SETUID/SETGID;
    /// the operation then fails rather than running with the daemon's power.
    pub fn new(creds: &Creds) -> io::Result<ActAs> {
        let saved_groups = current_groups();
        set_groups(&creds.groups)?;
        let guard = ActAs { saved_groups };
        // SAFETY: setfsgid/setfsuid change only this thread's fs ids; they cannot fail in a
        // way that harms memory safety, and the result is verified below.
        unsafe {
            libc::setfsgid(creds.gid);
            libc::setfsuid(creds.uid);
        }
        // setfsuid reports the previous id; asking with an invalid id reads the current one.
        // SAFETY: as above; -1 changes nothing.
        let (fsuid, fsgid) = unsafe { (libc::setfsuid(u32::MAX), libc::setfsgid(u32::MAX)) };
        if fsuid as u32 != creds.uid || fsgid as u32 != creds.gid {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(guard)
    }
}

impl Drop for ActAs {
    fn drop(&mut self) {
        // SAFETY: back to the daemon's own fs ids on this thread (root: the fs capabilities
        // come back from the permitted set).
        unsafe {
            libc::setfsuid(0);
            libc::setfsgid(0);
        }
        if let Err(e) = set_groups(&self.saved_groups) {
            log::error!("restoring the worker's groups: {e}");
        }
    }
}

/// The fs ids that data is written with, for every caller: not 0, because ext4 lets fsuid 0
/// (its default `resuid`) use the root-reserved blocks, and the platform keeps them for
/// itself when apps have filled the storage (Android's MediaProvider writes as an app uid for
/// the same reason). 65534 is the kernel's overflow id, owning nothing.
pub const WRITER_ID: u32 = 65534;

/// While alive, this thread writes data as [`WRITER_ID`] with its capabilities intact:
/// changing the fsuid away from 0 clears the effective file-system capabilities, which are
/// raised again from the permitted set. The kernel keeps these credentials for passthrough
/// writes when a backing file is registered under them.
///
/// It runs around every userspace write and backing registration, so it costs five system
/// calls: two to switch, one to check, one `capset` of a set read once per thread, and the
/// restoring `setfsuid(0)` (which raises the file-system capabilities again by itself) with
/// its `setfsgid`.
pub struct AsWriter {
    saved_gid: Option<u32>,
}

/// `capget`/`capset`'s header and data (`linux/capability.h`, version 3: two 32-bit words).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

thread_local! {
    /// This thread's capabilities with every permitted one effective, read on first use.
    /// The worker's permitted set only ever shrinks, at start; a `capset` refused after a
    /// change reads it again.
    static RAISED: std::cell::Cell<Option<[CapData; 2]>> = const { std::cell::Cell::new(None) };
}

impl CapHeader {
    /// This thread, in the version-3 layout.
    fn this_thread() -> CapHeader {
        CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        }
    }
}

fn caps_raised() -> io::Result<[CapData; 2]> {
    if let Some(raised) = RAISED.get() {
        return Ok(raised);
    }
    let mut header = CapHeader::this_thread();
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData (version 3) into `data` and reads the header.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for d in &mut data {
        d.effective = d.permitted;
    }
    RAISED.set(Some(data));
    Ok(data)
}

fn raise_caps() -> io::Result<()> {
    let set = |data: &[CapData; 2]| {
        let mut header = CapHeader::this_thread();
        // SAFETY: capset reads the header and two CapData; it changes only this thread.
        unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) == 0 }
    };
    if set(&caps_raised()?) {
        return Ok(());
    }
    RAISED.set(None);
    if set(&caps_raised()?) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl AsWriter {
    pub fn new() -> io::Result<AsWriter> {
        // SAFETY: setfsgid/setfsuid change only this thread's fs ids and report the previous
        // ones; the switch is checked below.
        let (old_gid, old_uid) = unsafe {
            (
                libc::setfsgid(WRITER_ID) as u32,
                libc::setfsuid(WRITER_ID) as u32,
            )
        };
        if old_uid != 0 {
            // Already not root (acting for a POSIX caller, or an unprivileged daemon): write
            // as that, unchanged.
            // SAFETY: as above, back to the previous ids.
            unsafe {
                libc::setfsuid(old_uid);
                libc::setfsgid(old_gid);
            }
            return Ok(AsWriter { saved_gid: None });
        }
        let guard = AsWriter {
            saved_gid: Some(old_gid),
        };
        // SAFETY: an invalid id changes nothing and reports the current one.
        if unsafe { libc::setfsuid(u32::MAX) } as u32 != WRITER_ID {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        raise_caps()?;
        Ok(guard)
    }
}

impl Drop for AsWriter {
    fn drop(&mut self) {
        if let Some(gid) = self.saved_gid {
            // SAFETY: back to fsuid 0 (the file-system capabilities are raised from the
            // permitted set again, and they already are) and the previous fsgid.
            unsafe {
                libc::setfsuid(0);
                libc::setfsgid(gid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(mode: u32, uid: u32, gid: u32) -> libc::stat {
        // SAFETY: stat is plain old data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_mode = mode;
        st.st_uid = uid;
        st.st_gid = gid;
        st
    }

    /// Needs root (CI runs as root): the switch to the writer ids and back, on a thread of
    /// its own (fs ids are per thread), with the file-system capabilities effective all along.
    #[test]
    fn as_writer_switches_ids_keeps_capabilities_and_restores() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs the unit tests as root"
            );
            return;
        }
        std::thread::spawn(|| {
            let effective = || caps::read(None, caps::CapSet::Effective).unwrap();
            let before = effective();
            for _ in 0..3 {
                let w = AsWriter::new().unwrap();
                // SAFETY: an invalid id changes nothing and reports the current one.
                let (uid, gid) = unsafe { (libc::setfsuid(u32::MAX), libc::setfsgid(u32::MAX)) };
                assert_eq!((uid as u32, gid as u32), (WRITER_ID, WRITER_ID));
                assert!(effective().contains(&caps::Capability::CAP_DAC_OVERRIDE));
                drop(w);
                // SAFETY: as above.
                let (uid, gid) = unsafe { (libc::setfsuid(u32::MAX), libc::setfsgid(u32::MAX)) };
                assert_eq!((uid, gid), (0, 0));
                assert_eq!(effective(), before);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn mode_bits_table() {
        let user = Creds {
            uid: 1000,
            gid: 1000,
            groups: vec![27],
        };
        let cases: &[(u32, u32, u32, i32, bool)] = &[
            (0o600, 0, 0, libc::R_OK, false),
            (0o644, 0, 0, libc::R_OK, true),
            (0o644, 0, 0, libc::W_OK, false),
            (0o755, 0, 0, libc::X_OK, true),
            (0o750, 0, 27, libc::X_OK, true), // supplementary group
            (0o750, 0, 28, libc::X_OK, false),
            (0o070, 1000, 1000, libc::R_OK, false), // owner bits win even when empty
            (0o700, 1000, 0, libc::R_OK | libc::W_OK | libc::X_OK, true),
            (0o711, 0, 0, libc::X_OK, true),
            (0o711, 0, 0, libc::R_OK, false),
        ];
        for &(mode, uid, gid, mask, ok) in cases {
            assert_eq!(
                user.allows(&st(mode, uid, gid), mask),
                ok,
                "{mode:o} {uid}:{gid} {mask}"
            );
        }
    }
}
