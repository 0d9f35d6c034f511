//! The classes and method ids `JNI_OnLoad` looks up once: a thread attached from Rust (the
//! dispatchers) could not find app classes by name later.

use super::errors::{Error, Result};
use jni::objects::{GlobalRef, JMethodID, JStaticMethodID};
use jni::JavaVM;
use std::sync::OnceLock;

/// Classes and ids looked up once in `JNI_OnLoad`.
pub(super) struct Cache {
    pub(super) vm: JavaVM,
    pub(super) fusegate: GlobalRef,
    /// `static String FuseGate.deliver(DenialListener, Denial[])`
    pub(super) deliver: JStaticMethodID,
    pub(super) stats: GlobalRef,
    /// `Stats(long[] counters, boolean passthroughActive, String[] opcodes, long[] counts)`
    pub(super) stats_ctor: JMethodID,
    pub(super) denial: GlobalRef,
    /// `Denial(int uid, String operation, String path, int errno)`
    pub(super) denial_ctor: JMethodID,
    /// `static String FuseGate.deliverEvents(FileEventListener, FileEvent[])`
    pub(super) deliver_events: JStaticMethodID,
    pub(super) file_event: GlobalRef,
    /// `FileEvent(int kind, String path, String target, int uid, long size, boolean isDirectory)`
    pub(super) file_event_ctor: JMethodID,
    pub(super) errno_exception: GlobalRef,
    /// `ErrnoException(String message, int errno)`
    pub(super) errno_exception_ctor: JMethodID,
    pub(super) string: GlobalRef,
    pub(super) illegal_argument: GlobalRef,
    pub(super) illegal_state: GlobalRef,
    pub(super) io_exception: GlobalRef,
}

pub(super) static CACHE: OnceLock<Cache> = OnceLock::new();

pub(super) fn cache() -> Result<&'static Cache> {
    CACHE.get().ok_or_else(|| {
        Error::IllegalState("libfusegate was not loaded by System.loadLibrary".into())
    })
}
