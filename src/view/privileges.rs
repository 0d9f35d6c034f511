//! Least privilege for the threads that serve requests. Capabilities are per thread in Linux,
//! so each worker drops what it does not need before serving (in a JVM host this touches no
//! Java thread). What stays, and why:
//!
//! * `CAP_SYS_ADMIN`: the passthrough backing-file ioctls;
//! * `CAP_DAC_READ_SEARCH`: `open_by_handle_at` (nodes are kernel file handles);
//! * `CAP_DAC_OVERRIDE`, `CAP_FOWNER`, `CAP_CHOWN`: act on any lower file for apps and the
//!   platform, whose files all belong to the daemon (as on Android);
//! * `CAP_SETUID`, `CAP_SETGID`: act as a POSIX caller (fsuid, fsgid, groups).
//!
//! Everything else goes, from the effective and the permitted set (so it cannot come back),
//! in particular `CAP_SYS_RESOURCE` (app writes would use ext4's root-reserved blocks) and
//! `CAP_FSETID` (the lower filesystem then clears setuid/setgid on every write and truncate,
//! including passthrough writes, which the kernel makes with the credentials the backing file
//! was registered with: a worker's).

use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities a serving thread keeps.
pub const KEPT: &[Capability] = &[
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_CHOWN,
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
];

/// Reduces this thread's capabilities to [`KEPT`] (those it has). Returns what was dropped.
pub fn drop_for_this_thread() -> Result<CapsHashSet, caps::errors::CapsError> {
    let permitted = caps::read(None, CapSet::Permitted)?;
    let keep: CapsHashSet = permitted
        .iter()
        .copied()
        .filter(|c| KEPT.contains(c))
        .collect();
    let dropped: CapsHashSet = permitted.difference(&keep).copied().collect();
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    // Nothing executed by this thread may regain them either.
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_thread_keeps_only_what_it_needs() {
        let t = std::thread::spawn(|| {
            let before = caps::read(None, CapSet::Permitted).unwrap();
            drop_for_this_thread().unwrap();
            let after = caps::read(None, CapSet::Effective).unwrap();
            assert!(after.iter().all(|c| KEPT.contains(c)), "{after:?}");
            assert!(!after.contains(&Capability::CAP_SYS_RESOURCE));
            assert!(!after.contains(&Capability::CAP_FSETID));
            for c in KEPT {
                assert_eq!(before.contains(c), after.contains(c), "{c:?}");
            }
        });
        t.join().unwrap();
        // Other threads are untouched.
        if caps::has_cap(None, CapSet::Permitted, Capability::CAP_SYS_RESOURCE).unwrap() {
            assert!(caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_RESOURCE).unwrap());
        }
    }
}
