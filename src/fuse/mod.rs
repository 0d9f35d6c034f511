//! The FUSE protocol spoken directly over `/dev/fuse`: ABI, request decoding, reply encoding,
//! mounting, sessions with cloned-fd workers, passthrough backing files and notifications.
//!
//! Nothing here knows about Android or policy; it is a reusable FUSE server layer.

pub mod abi;
pub mod channel;
mod dispatch;
pub mod filesystem;
mod init;
pub mod kernel;
pub mod mount;
pub mod reply;
pub mod request;
pub mod resume;
pub mod session;
mod uring;
mod wake;

pub use channel::Channel;
pub use dispatch::{dispatch_one, dispatch_with};
pub use filesystem::{AttrReply, Ctx, Errno, Filesystem, SetAttr, TimeSpec, XattrReply};
pub use kernel::KernelHandle;
pub use reply::{DirWriter, Entry, Opened};
pub use request::Name;
pub use session::{
    IoUringMode, Negotiated, Resume, Session, SessionConfig, SessionStats, Transport,
};
