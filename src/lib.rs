//! fusegate: Android-style scoped storage over a plain ext4/f2fs directory, served through FUSE
//! with kernel passthrough.
//!
//! Layers, arrows pointing down only:
//! * faces: `bin/fusegated.rs` (command line) and [`jni`] (Java) configure and start a [`Daemon`];
//! * [`view`]: the storage view, mirroring the lower tree, asking [`policy`], doing passthrough;
//! * [`fuse`]: the protocol (knows no Android) and [`policy`]: pure decisions (does no I/O);
//! * [`redact`]: pure location-range finding for redacted reads (I/O only through a callback).

pub mod daemon;
pub mod fuse;
pub mod jni;
pub mod logging;
pub mod policy;
pub mod redact;
pub mod state;
pub mod supervisor;
pub mod view;

pub use daemon::{Daemon, DaemonError, EventFeed, FileEvent, HeldSession, Options, Stats};

/// The crate version, and the git revision it was built from (`unknown` when built outside a
/// git checkout, or by Soong, which runs no build.rs): for `fusegated --version` and the log.
pub const VERSION: &str = match option_env!("CARGO_PKG_VERSION") {
    Some(v) => v,
    None => "unknown",
};
pub const GIT_REVISION: &str = match option_env!("FUSEGATE_GIT_REVISION") {
    Some(r) => r,
    None => "unknown",
};
