//! Java never holds a pointer: it holds an id into this registry. `close()` removes the id, so
//! a closed handle is an `IllegalStateException`, never a dangling pointer, and a second
//! `close()` finds nothing to do.

use super::errors::{Error, Result};
use super::listener::{Slot, DISPATCHING_FOR};
use crate::daemon::{Daemon, HeldSession, Options};
use crate::daemon::{DenialFeed, EventFeed};
use jni::sys::jlong;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Live instances by the id their Java object holds. Ids are never reused.
static REGISTRY: Mutex<BTreeMap<i64, Arc<Instance>>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicI64 = AtomicI64::new(1);

/// One running daemon and its listener state.
///
/// Lock order: `closing`, then `daemon`, then a listener slot (`listener`, `event_listener`). No lock is held while joining the
/// dispatcher thread (its listener may call back into any method), and no thread takes the
/// `daemon` read lock twice.
pub(super) struct Instance {
    /// `None` once closed. Methods hold the read lock while they use the daemon; `close` takes
    /// the daemon out under the write lock, so it waits for calls in flight, and every later
    /// call finds `None` (IllegalStateException).
    pub(super) daemon: RwLock<Option<Daemon>>,
    /// For an attached session: what starts its next server (`FuseGate.restart`).
    held: Mutex<Option<Held>>,
    /// The denial dispatcher.
    pub(super) listener: Slot<DenialFeed>,
    /// The file-event dispatcher.
    pub(super) event_listener: Slot<EventFeed>,
    /// Held for the whole of `close`: a concurrent `close` waits until the first is done.
    closing: Mutex<()>,
}

/// Locks `m` even if a panic (caught by `run`) poisoned it: with `unwrap`, that one panic
/// would make every later call that takes the lock panic too.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn instance(id: jlong) -> Result<Arc<Instance>> {
    lock(&REGISTRY)
        .get(&id)
        .cloned()
        .ok_or_else(|| Error::IllegalState("this FuseGate is closed".into()))
}

/// Runs `f` on the live daemon of handle `id`.
pub(super) fn with_daemon<T>(id: jlong, f: impl FnOnce(&Daemon) -> Result<T>) -> Result<T> {
    let inst = instance(id)?;
    let guard = inst.daemon.read().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some(d) => f(d),
        None => Err(Error::IllegalState("this FuseGate is closed".into())),
    }
}

/// The session an attached instance holds, and how its servers are made.
pub(super) struct Held {
    pub session: HeldSession,
    pub lower: PathBuf,
    pub options: Options,
}

pub(super) fn register(daemon: Daemon) -> jlong {
    register_held(daemon, None)
}

pub(super) fn register_held(daemon: Daemon, held: Option<Held>) -> jlong {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let inst = Arc::new(Instance {
        daemon: RwLock::new(Some(daemon)),
        held: Mutex::new(held),
        listener: Mutex::new(None),
        event_listener: Mutex::new(None),
        closing: Mutex::new(()),
    });
    lock(&REGISTRY).insert(id, inst);
    id
}

/// Replaces the server of an attached session with a new one on the same session: the old one
/// finishes the requests in hand and stops without unmounting; the new one takes over its
/// nodes, policy and listener queues, and has the kernel resend what was left unanswered.
pub(super) fn restart(id: jlong) -> Result<()> {
    let inst = instance(id)?;
    let _closing = lock(&inst.closing);
    let mut held = lock(&inst.held);
    let Some(held) = held.as_mut() else {
        return Err(Error::IllegalState(
            "only a session handed over with FuseGate.attach can be restarted".into(),
        ));
    };
    let mut slot = inst.daemon.write().unwrap_or_else(|e| e.into_inner());
    let Some(old) = slot.as_mut() else {
        return Err(Error::IllegalState("this FuseGate is closed".into()));
    };
    old.stop_for_handoff();
    let new = held.session.serve(&held.lower, &held.options, Some(old))?;
    *slot = Some(new);
    Ok(())
}

/// Stops the daemon of handle `id` and removes the id; does nothing if it is closed already.
pub(super) fn close(id: jlong) -> Result<()> {
    let Some(inst) = lock(&REGISTRY).get(&id).cloned() else {
        return Ok(()); // closed before: nothing to do
    };
    let _closing = if DISPATCHING_FOR.get() == id {
        // Called by the listener, on the dispatcher thread. If another thread is closing,
        // it is waiting for this very callback to return: do not wait for it in turn.
        match inst.closing.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        }
    } else {
        lock(&inst.closing)
    };
    let daemon = inst
        .daemon
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(mut daemon) = daemon {
        inst.stop_listeners();
        daemon.stop();
        log::info!("FuseGate {id} closed; final counters: {}", daemon.stats());
    }
    lock(&REGISTRY).remove(&id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_handles_are_closed() {
        assert!(matches!(instance(-42), Err(Error::IllegalState(_))));
        assert!(matches!(
            with_daemon(i64::MAX, |_| Ok(())),
            Err(Error::IllegalState(_))
        ));
    }
}
