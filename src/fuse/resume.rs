//! Serving a session that another process started: what a restarted server must know and do
//! that the kernel will not tell it again.
//!
//! * INIT comes once per connection, so the negotiated parameters are saved (before INIT is
//!   answered) and handed to every later server ([`Negotiated::to_bytes`]).
//! * File handles (`fh`) are the old server's memory. Each server tags the handles it gives out
//!   with its epoch (high 16 bits); a handle of another epoch is *stale*: file operations get
//!   fh 0 (the filesystem then reopens the node by its handle), a directory is reopened on its
//!   first READDIR (the kernel's offset is the lower filesystem's own cookie, so the listing
//!   resumes where it was), and RELEASE of a stale handle releases only what this server made.
//! * Requests the old server read but never answered are sent again after
//!   `FUSE_NOTIFY_RESEND`, marked with [`RESEND_BIT`]; see `dispatch::resent_fixup`.

use super::abi;
use super::filesystem::{Ctx, Filesystem};
use super::reply::DirWriter;
use super::session::Negotiated;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Bit 63 of `unique` marks a request the kernel sent again after `FUSE_NOTIFY_RESEND`.
pub const RESEND_BIT: u64 = 1 << 63;
/// `fuse_notify_code` 7 (protocol 7.40).
pub const NOTIFY_RESEND: i32 = 7;

const EPOCH_SHIFT: u32 = 48;
const FH_MASK: u64 = (1 << EPOCH_SHIFT) - 1;

/// Called for a resent CREATE or MKDIR with `(caller uid, parent, name)`: true if it found
/// the name made by the dead server and finished making it (e.g. tagged its creator).
pub type Adopt = Box<dyn Fn(u32, u64, &[u8]) -> bool + Send + Sync>;

/// How this server names its file handles, and the directories it reopened for stale ones.
pub struct Continuity {
    epoch: u16,
    /// Stale directory fh -> the fh this server opened for it.
    stale_dirs: Mutex<BTreeMap<u64, u64>>,
    /// Answer an INIT that arrives after start (one the old server read and the kernel sent
    /// again): with passthrough asked for or not.
    pub(super) late_init: Option<bool>,
    adopt: Option<Adopt>,
}

impl std::fmt::Debug for Continuity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Continuity(epoch {})", self.epoch)
    }
}

static UNTAGGED: Continuity = Continuity::untagged();

impl Continuity {
    /// Handles passed through unchanged: a single server for the session's whole life.
    pub const fn untagged() -> Self {
        Continuity {
            epoch: 0,
            stale_dirs: Mutex::new(BTreeMap::new()),
            late_init: None,
            adopt: None,
        }
    }

    pub fn none() -> &'static Continuity {
        &UNTAGGED
    }

    /// The server of `epoch` (1..; 0 means untagged). Epochs wrap after 65,535 servers: a
    /// handle is misread only if it survived exactly that many restarts.
    pub fn new(epoch: u16, passthrough: bool, adopt: Option<Adopt>) -> Self {
        Continuity {
            epoch,
            stale_dirs: Mutex::new(BTreeMap::new()),
            late_init: Some(passthrough),
            adopt,
        }
    }

    pub(super) fn adopt(&self, ctx: &Ctx, name: &[u8]) -> bool {
        self.adopt
            .as_ref()
            .is_some_and(|a| a(ctx.uid, ctx.nodeid, name))
    }

    pub fn epoch(&self) -> u16 {
        self.epoch
    }

    /// The handle the kernel gets for a handle of ours.
    pub fn tag(&self, fh: u64) -> u64 {
        if self.epoch == 0 {
            fh
        } else {
            (u64::from(self.epoch) << EPOCH_SHIFT) | (fh & FH_MASK)
        }
    }

    /// Ours, or `None` for a handle given out by another server.
    fn untag(&self, fh: u64) -> Option<u64> {
        if self.epoch == 0 {
            Some(fh)
        } else if fh >> EPOCH_SHIFT == u64::from(self.epoch) {
            Some(fh & FH_MASK)
        } else {
            None
        }
    }

    /// A file handle for a file operation: a stale one becomes 0, which the filesystem treats
    /// as "no open file" (it reopens the node).
    pub fn file_fh(&self, fh: u64) -> u64 {
        self.untag(fh).unwrap_or(0)
    }

    pub fn file_fh_opt(&self, fh: Option<u64>) -> Option<u64> {
        fh.and_then(|fh| self.untag(fh))
    }

    fn dirs(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, u64>> {
        self.stale_dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A directory handle for READDIR: a stale one is reopened once (as the caller, so the
    /// policy decides again) and kept until its RELEASEDIR.
    pub fn dir_fh<F: Filesystem + ?Sized>(
        &self,
        fs: &F,
        ctx: &Ctx,
        node: u64,
        fh: u64,
    ) -> Result<u64, i32> {
        if let Some(ours) = self.untag(fh) {
            return Ok(ours);
        }
        if let Some(&ours) = self.dirs().get(&fh) {
            return Ok(ours);
        }
        let opened = fs.opendir(ctx, node, 0)?;
        // Read once from the start: ext4 keeps its htree position in the open file, and a
        // new one whose first read is at the end (a READDIR resent at EOF) reads nothing after
        // a later seek back to 0 (seen on 6.18).
        let mut scratch = [0u8; 512];
        let _ = fs.readdir(
            ctx,
            node,
            opened.fh,
            0,
            &mut DirWriter::new(&mut scratch, false),
        );
        let mut dirs = self.dirs();
        if let Some(&other) = dirs.get(&fh) {
            // Two readers of one handle raced; keep the first.
            drop(dirs);
            let _ = fs.releasedir(ctx, node, opened.fh);
            return Ok(other);
        }
        dirs.insert(fh, opened.fh);
        Ok(opened.fh)
    }

    /// The handle to release for RELEASEDIR of `fh`, if this server holds one.
    pub fn release_dir_fh(&self, fh: u64) -> Option<u64> {
        match self.untag(fh) {
            Some(ours) => Some(ours),
            None => self.dirs().remove(&fh),
        }
    }
}

/// Saved size of [`Negotiated`].
pub const NEGOTIATED_BYTES: usize = 40;

impl Negotiated {
    /// The parameters a later server needs (the transport is always `/dev/fuse` read()).
    pub fn to_bytes(&self) -> [u8; NEGOTIATED_BYTES] {
        let mut b = [0u8; NEGOTIATED_BYTES];
        b[0..4].copy_from_slice(&self.major.to_le_bytes());
        b[4..8].copy_from_slice(&self.minor.to_le_bytes());
        b[8..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..20].copy_from_slice(&self.max_write.to_le_bytes());
        b[20..24].copy_from_slice(&self.max_readahead.to_le_bytes());
        b[24] = u8::from(self.passthrough);
        b[25] = u8::from(self.resend);
        b
    }

    pub fn from_bytes(b: &[u8; NEGOTIATED_BYTES]) -> Option<Negotiated> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let major = u32_at(0);
        if major != abi::KERNEL_VERSION {
            return None;
        }
        let mut flags = [0u8; 8];
        flags.copy_from_slice(&b[8..16]);
        Some(Negotiated {
            major,
            minor: u32_at(4),
            flags: u64::from_le_bytes(flags),
            max_write: u32_at(16),
            max_readahead: u32_at(20),
            passthrough: b[24] != 0,
            resend: b[25] != 0,
            transport: super::session::Transport::DevRead,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_of_other_epochs_are_stale() {
        let a = Continuity::new(3, true, None);
        let b = Continuity::new(4, true, None);
        let fh = a.tag(17);
        assert_eq!(a.file_fh(fh), 17);
        assert_eq!(b.file_fh(fh), 0, "another server's handle is nobody's");
        assert_eq!(b.file_fh_opt(Some(fh)), None);
        assert_eq!(Continuity::none().tag(17), 17);
        assert_eq!(Continuity::none().file_fh(17), 17);
        assert_eq!(b.release_dir_fh(fh), None);
    }

    #[test]
    fn negotiated_round_trips() {
        let n = Negotiated {
            major: 7,
            minor: 45,
            flags: 0x1234_5678_9abc,
            max_write: 1 << 20,
            max_readahead: 131072,
            passthrough: true,
            resend: true,
            transport: Default::default(),
        };
        let back = Negotiated::from_bytes(&n.to_bytes()).unwrap();
        assert_eq!(
            (
                back.minor,
                back.flags,
                back.max_write,
                back.passthrough,
                back.resend
            ),
            (45, n.flags, 1 << 20, true, true)
        );
        assert!(Negotiated::from_bytes(&[0; NEGOTIATED_BYTES]).is_none());
    }
}
