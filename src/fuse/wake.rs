//! Waking workers blocked in `read()` on `/dev/fuse` when a session stops without an unmount
//! (a session attached to a platform-mounted fd). Blocking reads are what we want the rest of
//! the time: the kernel wakes exactly one waiting reader per request. A stop sends each
//! worker a real-time signal whose handler does nothing and is installed without SA_RESTART,
//! so the blocked `read()` returns EINTR and the worker sees the stop flag.

use std::sync::OnceLock;

extern "C" fn ignore(_: libc::c_int) {}

/// The signal used, installed once per process; `None` if every candidate is taken.
pub fn signal() -> Option<libc::c_int> {
    static SIGNAL: OnceLock<Option<libc::c_int>> = OnceLock::new();
    *SIGNAL.get_or_init(install)
}

fn install() -> Option<libc::c_int> {
    // Real-time signals from the top down: runtimes (a JVM, bionic) use the low ones and the
    // classic ones; a signal that already has a handler is left alone.
    for sig in (libc::SIGRTMIN() + 2..=libc::SIGRTMAX() - 1).rev() {
        // SAFETY: sigaction with a null new action only reads the current one into `old`.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0
            || old.sa_sigaction != libc::SIG_DFL
        {
            continue;
        }
        // SAFETY: a zeroed sigaction is valid; we set a handler that touches nothing, an
        // empty mask, and no SA_RESTART (so blocking calls return EINTR).
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: act is fully initialised; the old action is not needed.
        unsafe { libc::sigemptyset(&mut act.sa_mask) };
        if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } == 0 {
            return Some(sig);
        }
    }
    log::warn!("no free real-time signal: stopping an attached session will wait for its unmount");
    None
}

/// Makes sure the calling thread (a worker) can receive the wake signal.
pub fn unblock_in_this_thread() {
    if let Some(sig) = signal() {
        // SAFETY: builds a one-signal set on the stack and unblocks it for this thread only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }
}

/// Interrupts whatever blocking call `thread` is in.
pub fn kick(thread: libc::pthread_t) {
    if let Some(sig) = signal() {
        // SAFETY: the caller passes the pthread_t of a thread it has not joined yet, so the
        // handle is valid; the signal's handler does nothing.
        unsafe { libc::pthread_kill(thread, sig) };
    }
}
