//! Denials reach a `DenialListener`, file events a `FileEventListener`, in batches from one
//! dispatcher thread per instance and kind, attached to the JVM only while a listener is set,
//! off the request path. The dispatcher is the same for both kinds ([`Source`]); only turning a
//! batch into Java objects differs (`deliver` here, `events.rs`).

use super::class_cache::{cache, Cache};
use super::errors::{Error, Result};
use super::registry::{instance, lock, Instance};
use crate::daemon::{Daemon, Denial, DenialFeed};
use jni::objects::{GlobalRef, JObject, JString, JValueOwned};
use jni::signature::ReturnType;
use jni::sys::{jint, jlong, jvalue};
use jni::{JNIEnv, JavaVM};
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

// The errnos `Denial.java` names (build.rs checks the values); denials carry the raw errno.
const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const EACCES: i32 = 13;
const _: () = assert!(EPERM == libc::EPERM && ENOENT == libc::ENOENT && EACCES == libc::EACCES);

/// Longest wait of the dispatcher for denials before it looks at its stop flag again.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(200);
/// Longest wait for a new dispatcher thread to attach to the JVM.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    /// On a dispatcher thread: the id of the instance it delivers for (else 0).
    pub(super) static DISPATCHING_FOR: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// A queue a dispatcher drains, and how a batch of it reaches the Java listener.
pub(super) trait Source: Clone + Send + 'static {
    type Item: Send;
    /// In thread names (`fusegate-<kind>-<id>`) and messages.
    const KIND: &'static str;
    fn set_listening(&self, on: bool);
    fn next_batch(&self, timeout: Duration) -> Vec<Self::Item>;
    /// Calls the listener with `batch`; returns what it threw, if anything.
    fn deliver(
        env: &mut JNIEnv<'_>,
        c: &Cache,
        listener: &GlobalRef,
        batch: &[Self::Item],
    ) -> Result<Option<String>>;
}

impl Source for DenialFeed {
    type Item = Denial;
    const KIND: &'static str = "denials";

    fn set_listening(&self, on: bool) {
        DenialFeed::set_listening(self, on)
    }

    fn next_batch(&self, timeout: Duration) -> Vec<Denial> {
        DenialFeed::next_batch(self, timeout)
    }

    fn deliver(
        env: &mut JNIEnv<'_>,
        c: &Cache,
        listener: &GlobalRef,
        batch: &[Denial],
    ) -> Result<Option<String>> {
        deliver(env, c, listener, batch)
    }
}

/// The listener thread of one instance, for one kind.
pub(super) struct Dispatcher<S: Source> {
    shared: Arc<DispatchShared>,
    feed: S,
    thread: JoinHandle<()>,
}

/// The slot of an instance that holds its dispatcher of one kind.
pub(super) type Slot<S> = Mutex<Option<Dispatcher<S>>>;

struct DispatchShared {
    listener: Mutex<GlobalRef>,
    stop: AtomicBool,
}

impl Instance {
    /// Stops both dispatchers (see [`stop`]).
    pub(super) fn stop_listeners(&self) {
        stop(&self.listener);
        stop(&self.event_listener);
    }
}

/// Stops the dispatcher in `slot`, if any: after this returns the listener is not called again
/// (unless this runs inside a listener, on a dispatcher thread: then a delivery in progress on
/// the stopped dispatcher may still finish, and the listener is called no more after it).
///
/// A dispatcher thread never joins another: the denial listener removing the event listener
/// while the event listener closes the instance (which stops the denial dispatcher) would
/// otherwise wait for each other forever.
pub(super) fn stop<S: Source>(slot: &Slot<S>) {
    let old = {
        let mut slot = lock(slot);
        let old = slot.take();
        if let Some(d) = &old {
            d.shared.stop.store(true, Ordering::Release);
            d.feed.set_listening(false);
        }
        old
    };
    // Joined without holding the lock: the listener may itself set or remove listeners.
    if let Some(d) = old {
        if DISPATCHING_FOR.get() == 0 {
            let _ = d.thread.join();
        }
    }
}

/// `setDenialListener`: see [`set_listener`].
pub(super) fn set_denial_listener(
    env: &mut JNIEnv<'_>,
    id: jlong,
    listener: &JObject<'_>,
) -> Result<()> {
    set_listener(env, id, listener, |i| &i.listener, Daemon::denials)
}

/// `setDenialListener` / `setEventListener`: a null `listener` stops the dispatcher of handle
/// `id` in the slot `slot` picks; another one replaces the listener of a running dispatcher, or
/// starts one on the queue `feed` gives.
pub(super) fn set_listener<S: Source>(
    env: &mut JNIEnv<'_>,
    id: jlong,
    listener: &JObject<'_>,
    slot: impl Fn(&Instance) -> &Slot<S>,
    feed: impl FnOnce(&Daemon) -> S,
) -> Result<()> {
    let inst = instance(id)?;
    let closed = || Error::IllegalState("this FuseGate is closed".into());
    if listener.is_null() {
        if inst
            .daemon
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            return Err(closed());
        }
        // Joins the dispatcher: with no lock held.
        stop(slot(&inst));
        return Ok(());
    }
    let listener = env.new_global_ref(listener)?;
    // Held while starting the dispatcher, so that `close` cannot miss it.
    let guard = inst.daemon.read().unwrap_or_else(|e| e.into_inner());
    let feed = feed(guard.as_ref().ok_or_else(closed)?);
    let mut slot = lock(slot(&inst));
    if let Some(d) = slot.as_ref() {
        *lock(&d.shared.listener) = listener;
        return Ok(());
    }
    let shared = Arc::new(DispatchShared {
        listener: Mutex::new(listener),
        stop: AtomicBool::new(false),
    });
    feed.set_listening(true);
    let thread_shared = shared.clone();
    let thread_feed = feed.clone();
    let name = format!("fusegate-{}-{id}", S::KIND);
    let jvm_name = CString::new(name.clone()).unwrap_or_default();
    let (attached_tx, attached_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || dispatch(thread_feed, thread_shared, jvm_name, id, attached_tx))
        .map_err(|e| {
            feed.set_listening(false);
            Error::IllegalState(format!("starting the {} listener thread: {e}", S::KIND))
        })?;
    // Return once the dispatcher is attached (so it is a visible Java thread), or failed.
    let attached = attached_rx
        .recv_timeout(ATTACH_TIMEOUT)
        .unwrap_or_else(|e| Err(format!("no answer from the dispatcher thread: {e}")));
    if let Err(why) = attached {
        shared.stop.store(true, Ordering::Release);
        feed.set_listening(false);
        return Err(Error::IllegalState(format!(
            "the {} listener thread could not attach to the JVM: {why}",
            S::KIND
        )));
    }
    *slot = Some(Dispatcher {
        shared,
        feed,
        thread,
    });
    Ok(())
}

/// The dispatcher thread: attached to the JVM as a named daemon thread (it never keeps the VM
/// alive) for as long as it runs, it drains its queue with a timeout and hands each batch to
/// the listener until told to stop; then it detaches.
fn dispatch<S: Source>(
    feed: S,
    shared: Arc<DispatchShared>,
    name: CString,
    id: jlong,
    attached: SyncSender<std::result::Result<(), String>>,
) {
    let c = match cache() {
        Ok(c) => c,
        Err(e) => {
            let _ = attached.send(Err(format!("{e:?}")));
            return;
        }
    };
    if let Err(e) = attach_as_daemon(&c.vm, &name) {
        let _ = attached.send(Err(format!("{e:?}")));
        return;
    }
    let _ = attached.send(Ok(()));
    DISPATCHING_FOR.set(id);
    match c.vm.get_env() {
        Ok(mut env) => {
            while !shared.stop.load(Ordering::Acquire) {
                let batch = feed.next_batch(DRAIN_TIMEOUT);
                if batch.is_empty() || shared.stop.load(Ordering::Acquire) {
                    continue;
                }
                let listener = lock(&shared.listener).clone();
                if let Err(e) = deliver_batch::<S>(&mut env, c, &listener, &batch) {
                    log::warn!("delivering {} {}: {e:?}", batch.len(), S::KIND);
                }
            }
        }
        Err(e) => log::error!("no JNIEnv on the attached dispatcher: {e}"),
    }
    drop(shared);
    detach(&c.vm);
}

/// `AttachCurrentThreadAsDaemon` with a thread name (the jni crate attaches unnamed).
fn attach_as_daemon(vm: &JavaVM, name: &CStr) -> Result<()> {
    let raw = vm.get_java_vm_pointer();
    let mut args = jni::sys::JavaVMAttachArgs {
        version: jni::sys::JNI_VERSION_1_6,
        name: name.as_ptr() as *mut c_char,
        group: std::ptr::null_mut(),
    };
    let mut env: *mut c_void = std::ptr::null_mut();
    // SAFETY: `raw` is the process's JavaVM, whose invoke interface table lives as long as the
    // VM; `env` and `args` (with a NUL-terminated name) outlive the call.
    let rc = unsafe {
        let attach = (**raw)
            .AttachCurrentThreadAsDaemon
            .ok_or_else(|| Error::IllegalState("JVM without AttachCurrentThreadAsDaemon".into()))?;
        attach(
            raw,
            &mut env,
            (&mut args as *mut jni::sys::JavaVMAttachArgs).cast(),
        )
    };
    if rc == jni::sys::JNI_OK {
        Ok(())
    } else {
        Err(Error::IllegalState(format!(
            "AttachCurrentThreadAsDaemon: {rc}"
        )))
    }
}

/// `DetachCurrentThread`, the counterpart of [`attach_as_daemon`].
fn detach(vm: &JavaVM) {
    let raw = vm.get_java_vm_pointer();
    // SAFETY: called at the end of the thread that `attach_as_daemon` attached, after its
    // JNIEnv and every local reference it made went out of scope.
    let rc = unsafe {
        match (**raw).DetachCurrentThread {
            Some(detach) => detach(raw),
            None => jni::sys::JNI_ERR,
        }
    };
    if rc != jni::sys::JNI_OK {
        log::warn!("DetachCurrentThread: {rc}");
    }
}

/// Hands `batch` to the listener, logging what it threw; a failed JNI call leaves no exception
/// pending on the dispatcher.
fn deliver_batch<S: Source>(
    env: &mut JNIEnv<'_>,
    c: &Cache,
    listener: &GlobalRef,
    batch: &[S::Item],
) -> Result<()> {
    match S::deliver(env, c, listener, batch) {
        Ok(None) => Ok(()),
        Ok(Some(thrown)) => {
            log::warn!("the {} listener threw: {thrown}", S::KIND);
            Ok(())
        }
        Err(e) => {
            if env.exception_check().unwrap_or(false) {
                let _ = env.exception_describe();
                let _ = env.exception_clear();
            }
            Err(e)
        }
    }
}

/// The text of what a `deliver*` method of `FuseGate` returned (what the listener threw), or
/// `None`.
pub(super) fn thrown(env: &mut JNIEnv<'_>, ret: JValueOwned<'_>) -> Result<Option<String>> {
    let JValueOwned::Object(failure) = ret else {
        return Ok(None);
    };
    if failure.is_null() {
        return Ok(None);
    }
    let failure = JString::from(failure);
    let text: String = env.get_string(&failure)?.into();
    Ok(Some(text))
}

fn deliver(
    env: &mut JNIEnv<'_>,
    c: &Cache,
    listener: &GlobalRef,
    batch: &[Denial],
) -> Result<Option<String>> {
    env.with_local_frame(8, |env| -> Result<Option<String>> {
        let array = env.new_object_array(batch.len() as jint, &c.denial, JObject::null())?;
        for (i, d) in batch.iter().enumerate() {
            let operation = env.new_string(d.operation)?;
            let path = env.new_string(&d.path)?;
            let args = [
                jvalue {
                    i: d.uid.min(i32::MAX as u32) as jint,
                },
                jvalue {
                    l: operation.as_raw(),
                },
                jvalue { l: path.as_raw() },
                jvalue { i: d.errno },
            ];
            // SAFETY: `denial_ctor` was looked up on `denial` with the signature
            // (ILjava/lang/String;Ljava/lang/String;I)V, which `args` follows.
            let obj = unsafe { env.new_object_unchecked(&c.denial, c.denial_ctor, &args) }?;
            env.set_object_array_element(&array, i as jint, &obj)?;
            env.delete_local_ref(obj)?;
            env.delete_local_ref(operation)?;
            env.delete_local_ref(path)?;
        }
        let args = [
            jvalue {
                l: listener.as_obj().as_raw(),
            },
            jvalue { l: array.as_raw() },
        ];
        // SAFETY: `deliver` was looked up on `fusegate` as a static method with the signature
        // (Ldev/fusegate/DenialListener;[Ldev/fusegate/Denial;)Ljava/lang/String;, which
        // `args` and the return type follow.
        let ret = unsafe {
            env.call_static_method_unchecked(&c.fusegate, c.deliver, ReturnType::Object, &args)
        }?;
        thrown(env, ret)
    })
}
