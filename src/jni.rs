//! The JNI face: `dev.fusegate.FuseGate` (Java sources under `jni/`) configures and drives a
//! [`Daemon`], like the command line does; no logic of its own beyond checking input.
//!
//! * Natives are bound with `RegisterNatives` in `JNI_OnLoad`, which also caches every class
//!   and method id used later (a thread attached from Rust could not find app classes).
//! * Java never holds a pointer: it holds an id into a registry. `close()` removes the id,
//!   so a closed handle is an `IllegalStateException`, never a dangling pointer, and a second
//!   `close()` finds nothing to do.
//! * Every native body runs under `catch_unwind`: bad input and failures become Java
//!   exceptions, a panic becomes `IllegalStateException("internal error: ...")`; nothing
//!   unwinds into the JVM.
//! * Denials reach a `DenialListener` in batches from one dispatcher thread per instance,
//!   attached to the JVM only while a listener is set, off the request path.

use crate::daemon::{Daemon, DaemonError, Options};
use crate::fuse::mount::MountError;
use crate::policy::{self, Access, App, Permissions, PolicyError, Table};
use crate::view::{Denial, StorageView};
use jni::objects::{
    GlobalRef, JClass, JMethodID, JObject, JObjectArray, JStaticMethodID, JString, JValueOwned,
};
use jni::signature::ReturnType;
use jni::sys::{jboolean, jint, jlong, jobject, jvalue, JNI_ERR, JNI_FALSE, JNI_TRUE};
use jni::{JNIEnv, JavaVM, NativeMethod};
use std::any::Any;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

const FUSEGATE_CLASS: &str = "dev/fusegate/FuseGate";
const STATS_CLASS: &str = "dev/fusegate/Stats";
const DENIAL_CLASS: &str = "dev/fusegate/Denial";

/// Longest wait of the dispatcher for denials before it looks at its stop flag again.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(200);
/// Longest wait for a new dispatcher thread to attach to the JVM.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds of `Options` (also checked in Java).
const MAX_THREADS: jint = 64;
const MAX_CACHE_TIMEOUT_MS: jlong = 24 * 3600 * 1000;

/// Classes and ids looked up once in `JNI_OnLoad`.
struct Cache {
    vm: JavaVM,
    fusegate: GlobalRef,
    /// `static String FuseGate.deliver(DenialListener, Denial[])`
    deliver: JStaticMethodID,
    stats: GlobalRef,
    /// `Stats(long[] counters, boolean passthroughActive, String[] opcodes, long[] counts)`
    stats_ctor: JMethodID,
    denial: GlobalRef,
    /// `Denial(int uid, String operation, String path, int errno)`
    denial_ctor: JMethodID,
    string: GlobalRef,
    illegal_argument: GlobalRef,
    illegal_state: GlobalRef,
    io_exception: GlobalRef,
}

static CACHE: OnceLock<Cache> = OnceLock::new();

/// Live instances by the id their Java object holds. Ids are never reused.
static REGISTRY: Mutex<BTreeMap<i64, Arc<Instance>>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicI64 = AtomicI64::new(1);

/// What a native call may fail with, turned into a Java exception at the boundary.
#[derive(Debug)]
enum Error {
    IllegalArgument(String),
    IllegalState(String),
    Io(String),
    /// A Java exception is already pending (thrown by a JNI call): leave it as it is.
    Pending,
}

type Result<T> = std::result::Result<T, Error>;

impl From<jni::errors::Error> for Error {
    fn from(e: jni::errors::Error) -> Self {
        match e {
            jni::errors::Error::JavaException => Error::Pending,
            other => Error::IllegalState(format!("JNI: {other}")),
        }
    }
}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Self {
        Error::IllegalArgument(e.to_string())
    }
}

impl From<DaemonError> for Error {
    fn from(e: DaemonError) -> Self {
        match e {
            DaemonError::BadFd(_) | DaemonError::Mount(MountError::BadPath(_)) => {
                Error::IllegalArgument(e.to_string())
            }
            other => Error::Io(other.to_string()),
        }
    }
}

fn cache() -> Result<&'static Cache> {
    CACHE.get().ok_or_else(|| {
        Error::IllegalState("libfusegate was not loaded by System.loadLibrary".into())
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Throws `error` as the matching Java exception (unless one is already pending).
fn throw(env: &mut JNIEnv<'_>, error: Error) {
    if env.exception_check().unwrap_or(true) {
        return;
    }
    let Ok(c) = cache() else {
        let _ = env.throw_new(
            "java/lang/IllegalStateException",
            "libfusegate is not initialized",
        );
        return;
    };
    let (class, message) = match error {
        Error::IllegalArgument(m) => (&c.illegal_argument, m),
        Error::IllegalState(m) => (&c.illegal_state, m),
        Error::Io(m) => (&c.io_exception, m),
        Error::Pending => return,
    };
    if let Err(e) = env.throw_new(class, message.as_str()) {
        log::error!("could not throw a Java exception ({e}): {message}");
    }
}

/// Runs a native body: its error becomes a Java exception and `fallback` is returned; so does
/// a panic, which never unwinds into the JVM.
fn run<'l, T>(
    env: &mut JNIEnv<'l>,
    fallback: T,
    body: impl FnOnce(&mut JNIEnv<'l>) -> Result<T>,
) -> T {
    match catch_unwind(AssertUnwindSafe(|| body(env))) {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => {
            throw(env, error);
            fallback
        }
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            log::error!("panic in a JNI call: {message}");
            // A panic may have left a half-finished JNI call's exception pending: ours wins.
            let _ = env.exception_clear();
            throw(
                env,
                Error::IllegalState(format!("internal error: {message}")),
            );
            fallback
        }
    }
}

fn jbool(b: bool) -> jboolean {
    if b {
        JNI_TRUE
    } else {
        JNI_FALSE
    }
}

/// A non-null, non-empty Java string without NUL characters.
fn string_arg(env: &mut JNIEnv<'_>, s: &JString<'_>, what: &str) -> Result<String> {
    if s.is_null() {
        return Err(Error::IllegalArgument(format!("{what} is null")));
    }
    let value: String = env.get_string(s)?.into();
    if value.is_empty() {
        return Err(Error::IllegalArgument(format!("{what} is empty")));
    }
    if value.contains('\0') {
        return Err(Error::IllegalArgument(format!(
            "{what} contains a NUL character"
        )));
    }
    Ok(value)
}

/// A path relative to the storage root, checked (and normalized) by the policy's rules.
fn relative_path_arg(env: &mut JNIEnv<'_>, s: &JString<'_>, what: &str) -> Result<String> {
    let raw = string_arg(env, s, what)?;
    Ok(policy::normalize_path(&raw)?)
}

/// An absolute directory path on the host (mount point, lower root).
fn absolute_path_arg(env: &mut JNIEnv<'_>, s: &JString<'_>, what: &str) -> Result<String> {
    let path = string_arg(env, s, what)?;
    if !path.starts_with('/') {
        return Err(Error::IllegalArgument(format!(
            "{what} {path:?} must be an absolute path"
        )));
    }
    Ok(path)
}

fn uid_arg(uid: jint) -> Result<u32> {
    u32::try_from(uid).map_err(|_| Error::IllegalArgument(format!("invalid uid {uid}: negative")))
}

fn options_arg(threads: jint, passthrough: jboolean, cache_ms: jlong) -> Result<Options> {
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(Error::IllegalArgument(format!(
            "threads must be 1..={MAX_THREADS}, not {threads}"
        )));
    }
    if !(0..=MAX_CACHE_TIMEOUT_MS).contains(&cache_ms) {
        return Err(Error::IllegalArgument(format!(
            "cache timeout must be 0..={MAX_CACHE_TIMEOUT_MS} ms, not {cache_ms}"
        )));
    }
    Ok(Options {
        threads: threads as usize,
        passthrough: passthrough != JNI_FALSE,
        cache_ttl: Duration::from_millis(cache_ms as u64),
        policy: Table::default(),
    })
}

/// One running daemon and its listener state.
///
/// Lock order: `closing`, then `daemon`, then `listener`. No lock is held while joining the
/// dispatcher thread (its listener may call back into any method), and no thread takes the
/// `daemon` read lock twice.
struct Instance {
    /// `None` once closed. Methods hold the read lock while they use the daemon; `close` takes
    /// the daemon out under the write lock, so it waits for calls in flight, and every later
    /// call finds `None` (IllegalStateException).
    daemon: RwLock<Option<Daemon>>,
    listener: Mutex<Option<Dispatcher>>,
    /// Held for the whole of `close`: a concurrent `close` waits until the first is done.
    closing: Mutex<()>,
}

thread_local! {
    /// On a dispatcher thread: the id of the instance it delivers for (else 0).
    static DISPATCHING_FOR: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// The listener thread of one instance.
struct Dispatcher {
    shared: Arc<DispatchShared>,
    thread: JoinHandle<()>,
}

struct DispatchShared {
    listener: Mutex<GlobalRef>,
    stop: AtomicBool,
}

impl Instance {
    /// Stops the dispatcher, if any: after this returns the listener is not called again
    /// (unless this runs on the dispatcher thread itself, inside the listener, which is then
    /// called no more once it returns).
    fn stop_listener(&self, view: Option<&StorageView>) {
        let old = {
            let mut slot = lock(&self.listener);
            let old = slot.take();
            if let Some(d) = &old {
                d.shared.stop.store(true, Ordering::Release);
                if let Some(view) = view {
                    view.denials.set_listening(false);
                }
            }
            old
        };
        // Joined without holding the lock: the listener may itself call setDenialListener.
        if let Some(d) = old {
            if d.thread.thread().id() != std::thread::current().id() {
                let _ = d.thread.join();
            }
        }
    }
}

fn instance(id: jlong) -> Result<Arc<Instance>> {
    lock(&REGISTRY)
        .get(&id)
        .cloned()
        .ok_or_else(|| Error::IllegalState("this FuseGate is closed".into()))
}

/// Runs `f` on the live daemon of handle `id`.
fn with_daemon<T>(id: jlong, f: impl FnOnce(&Daemon) -> Result<T>) -> Result<T> {
    let inst = instance(id)?;
    let guard = inst.daemon.read().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some(d) => f(d),
        None => Err(Error::IllegalState("this FuseGate is closed".into())),
    }
}

fn register(daemon: Daemon) -> jlong {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let inst = Arc::new(Instance {
        daemon: RwLock::new(Some(daemon)),
        listener: Mutex::new(None),
        closing: Mutex::new(()),
    });
    lock(&REGISTRY).insert(id, inst);
    id
}

// ---- natives -------------------------------------------------------------------------------

extern "system" fn native_mount<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    mount_point: JString<'l>,
    lower_root: JString<'l>,
    threads: jint,
    passthrough: jboolean,
    cache_ms: jlong,
) -> jlong {
    run(&mut env, 0, |env| {
        let mount_point = absolute_path_arg(env, &mount_point, "mountPoint")?;
        let lower_root = absolute_path_arg(env, &lower_root, "lowerRoot")?;
        let options = options_arg(threads, passthrough, cache_ms)?;
        let daemon = Daemon::mount(Path::new(&mount_point), Path::new(&lower_root), options)?;
        Ok(register(daemon))
    })
}

/// Checks that `fd` is an open `/dev/fuse` descriptor without taking it.
fn check_fuse_fd(fd: jint) -> Result<()> {
    if fd < 0 {
        return Err(Error::IllegalArgument(format!(
            "fuseFd {fd} is not a file descriptor (negative)"
        )));
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `struct stat` into the buffer, which is large enough; it does
    // not take or change the fd.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::IllegalArgument(format!(
            "fuseFd {fd} is not an open file descriptor: {e}"
        )));
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    let is_fuse =
        (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && st.st_rdev == libc::makedev(10, 229);
    if !is_fuse {
        return Err(Error::IllegalArgument(format!(
            "fuseFd {fd} is not a /dev/fuse descriptor"
        )));
    }
    Ok(())
}

extern "system" fn native_attach<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    fuse_fd: jint,
    lower_root: JString<'l>,
    threads: jint,
    passthrough: jboolean,
    cache_ms: jlong,
) -> jlong {
    run(&mut env, 0, |env| {
        let lower_root = absolute_path_arg(env, &lower_root, "lowerRoot")?;
        let options = options_arg(threads, passthrough, cache_ms)?;
        check_fuse_fd(fuse_fd)?;
        // Serve a duplicate, and close the caller's fd only once serving started: on any
        // error the caller still owns its fd, untouched.
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor just checked to be open; it creates a new fd.
        let dup = unsafe { libc::fcntl(fuse_fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            return Err(Error::Io(format!(
                "duplicating fuseFd {fuse_fd}: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: `dup` is a new descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        let daemon = Daemon::attach(owned, Path::new(&lower_root), options)?;
        // SAFETY: the caller handed the fd over; the session runs on our duplicate.
        unsafe { libc::close(fuse_fd) };
        Ok(register(daemon))
    })
}

extern "system" fn native_close<'l>(mut env: JNIEnv<'l>, _class: JClass<'l>, id: jlong) {
    run(&mut env, (), |_| {
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
            inst.stop_listener(Some(daemon.view()));
            daemon.stop();
            log::info!("FuseGate {id} closed; final counters: {}", daemon.stats());
        }
        lock(&REGISTRY).remove(&id);
        Ok(())
    })
}

extern "system" fn native_set_app<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    uid: jint,
    packages: JObjectArray<'l>,
    permissions: jint,
) {
    run(&mut env, (), |env| {
        let uid = uid_arg(uid)?;
        if packages.is_null() {
            return Err(Error::IllegalArgument("packages is null".into()));
        }
        let n = env.get_array_length(&packages)?;
        let mut names = Vec::with_capacity(n as usize);
        for i in 0..n {
            let element = JString::from(env.get_object_array_element(&packages, i)?);
            names.push(string_arg(env, &element, &format!("packages[{i}]"))?);
            env.delete_local_ref(element)?;
        }
        let permissions = Permissions::from_bits(permissions as u32).ok_or_else(|| {
            Error::IllegalArgument(format!(
                "unknown permission bits {:#x}",
                permissions as u32 & !Permissions::ALL
            ))
        })?;
        with_daemon(id, |d| {
            d.policy().set_app(App {
                uid,
                packages: names,
                permissions,
            })?;
            d.view().invalidate_all();
            Ok(())
        })
    })
}

extern "system" fn native_remove_app<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    uid: jint,
) {
    run(&mut env, (), |_| {
        let uid = uid_arg(uid)?;
        with_daemon(id, |d| {
            d.policy().remove_app(uid);
            d.view().invalidate_all();
            Ok(())
        })
    })
}

extern "system" fn native_grant<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    uid: jint,
    path: JString<'l>,
    access: jint,
) {
    run(&mut env, (), |env| {
        let uid = uid_arg(uid)?;
        let path = relative_path_arg(env, &path, "path")?;
        // A write grant includes reading: READ|WRITE is WRITE.
        let access = match access {
            1 => Access::Read,
            2 | 3 => Access::Write,
            other => {
                return Err(Error::IllegalArgument(format!(
                    "unknown access {other}: use ACCESS_READ (1) or ACCESS_WRITE (2)"
                )))
            }
        };
        with_daemon(id, |d| {
            d.policy().grant(uid, &path, access)?;
            d.invalidate(&path);
            Ok(())
        })
    })
}

extern "system" fn native_revoke<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    uid: jint,
    path: JString<'l>,
) {
    run(&mut env, (), |env| {
        let uid = uid_arg(uid)?;
        let path = relative_path_arg(env, &path, "path")?;
        with_daemon(id, |d| {
            d.policy().revoke(uid, &path)?;
            d.invalidate(&path);
            Ok(())
        })
    })
}

extern "system" fn native_invalidate<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    path: JString<'l>,
) {
    run(&mut env, (), |env| {
        let path = relative_path_arg(env, &path, "path")?;
        with_daemon(id, |d| {
            d.invalidate(&path);
            Ok(())
        })
    })
}

extern "system" fn native_passthrough_active<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
) -> jboolean {
    run(&mut env, JNI_FALSE, |_| {
        with_daemon(id, |d| Ok(jbool(d.passthrough_active())))
    })
}

extern "system" fn native_is_running<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
) -> jboolean {
    run(&mut env, JNI_FALSE, |_| {
        Ok(jbool(
            with_daemon(id, |d| Ok(d.is_running())).unwrap_or(false),
        ))
    })
}

/// The order of `Stats.counters` (see `Stats.java`).
fn counters(s: &crate::Stats, dropped: u64) -> [jlong; 15] {
    [
        s.requests,
        s.errors,
        s.malformed,
        s.interrupts,
        s.passthrough_opens,
        s.userspace_opens,
        s.redacted_opens,
        s.bytes_read,
        s.bytes_written,
        s.denials,
        s.backing_registered,
        s.backing_released,
        s.nodes,
        s.open_files,
        dropped,
    ]
    .map(|v| v.min(i64::MAX as u64) as jlong)
}

extern "system" fn native_stats<'l>(mut env: JNIEnv<'l>, _class: JClass<'l>, id: jlong) -> jobject {
    run(&mut env, std::ptr::null_mut(), |env| {
        let (stats, dropped) = with_daemon(id, |d| {
            Ok((d.stats(), d.view().denials.dropped.load(Ordering::Relaxed)))
        })?;
        let c = cache()?;
        let values = counters(&stats, dropped);
        let counters = env.new_long_array(values.len() as jint)?;
        env.set_long_array_region(&counters, 0, &values)?;
        let n = stats.requests_by_opcode.len() as jint;
        let names = env.new_object_array(n, &c.string, JObject::null())?;
        let counts = env.new_long_array(n)?;
        let mut raw_counts = Vec::with_capacity(n as usize);
        for (i, (name, count)) in stats.requests_by_opcode.iter().enumerate() {
            let s = env.new_string(name)?;
            env.set_object_array_element(&names, i as jint, &s)?;
            env.delete_local_ref(s)?;
            raw_counts.push((*count).min(i64::MAX as u64) as jlong);
        }
        env.set_long_array_region(&counts, 0, &raw_counts)?;
        let args = [
            jvalue {
                l: counters.as_raw(),
            },
            jvalue {
                z: jbool(stats.passthrough_active),
            },
            jvalue { l: names.as_raw() },
            jvalue { l: counts.as_raw() },
        ];
        // SAFETY: `stats_ctor` was looked up on `stats` with the signature
        // ([JZ[Ljava/lang/String;[J)V, which `args` follows.
        let obj = unsafe { env.new_object_unchecked(&c.stats, c.stats_ctor, &args) }?;
        Ok(obj.into_raw())
    })
}

extern "system" fn native_set_denial_listener<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    listener: JObject<'l>,
) {
    run(&mut env, (), |env| {
        let inst = instance(id)?;
        let closed = || Error::IllegalState("this FuseGate is closed".into());
        if listener.is_null() {
            let view = {
                let guard = inst.daemon.read().unwrap_or_else(|e| e.into_inner());
                guard.as_ref().ok_or_else(closed)?.view().clone()
            };
            // Joins the dispatcher: with no lock held.
            inst.stop_listener(Some(&view));
            return Ok(());
        }
        let listener = env.new_global_ref(&listener)?;
        // Held while starting the dispatcher, so that `close` cannot miss it.
        let guard = inst.daemon.read().unwrap_or_else(|e| e.into_inner());
        let view = guard.as_ref().ok_or_else(closed)?.view().clone();
        let mut slot = lock(&inst.listener);
        if let Some(d) = slot.as_ref() {
            *lock(&d.shared.listener) = listener;
            return Ok(());
        }
        let shared = Arc::new(DispatchShared {
            listener: Mutex::new(listener),
            stop: AtomicBool::new(false),
        });
        view.denials.set_listening(true);
        let thread_shared = shared.clone();
        let thread_view = view.clone();
        let name = format!("fusegate-denials-{id}");
        let jvm_name = CString::new(name.clone()).unwrap_or_default();
        let (attached_tx, attached_rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || dispatch(thread_view, thread_shared, jvm_name, id, attached_tx))
            .map_err(|e| {
                view.denials.set_listening(false);
                Error::IllegalState(format!("starting the denial listener thread: {e}"))
            })?;
        // Return once the dispatcher is attached (so it is a visible Java thread), or failed.
        let attached = attached_rx
            .recv_timeout(ATTACH_TIMEOUT)
            .unwrap_or_else(|e| Err(format!("no answer from the dispatcher thread: {e}")));
        if let Err(why) = attached {
            shared.stop.store(true, Ordering::Release);
            view.denials.set_listening(false);
            return Err(Error::IllegalState(format!(
                "the denial listener thread could not attach to the JVM: {why}"
            )));
        }
        *slot = Some(Dispatcher { shared, thread });
        Ok(())
    })
}

/// The dispatcher thread: attached to the JVM as a named daemon thread (it never keeps the VM
/// alive) for as long as it runs, it drains the denial queue with a timeout and hands each
/// batch to the listener until told to stop; then it detaches.
fn dispatch(
    view: Arc<StorageView>,
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
                let batch = view.denials.drain(DRAIN_TIMEOUT);
                if batch.is_empty() || shared.stop.load(Ordering::Acquire) {
                    continue;
                }
                let listener = lock(&shared.listener).clone();
                if let Err(e) = deliver(&mut env, c, &listener, &batch) {
                    log::warn!("delivering {} denials: {e:?}", batch.len());
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

fn deliver(env: &mut JNIEnv<'_>, c: &Cache, listener: &GlobalRef, batch: &[Denial]) -> Result<()> {
    let outcome = env.with_local_frame(8, |env| -> Result<Option<String>> {
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
        let JValueOwned::Object(failure) = ret else {
            return Ok(None);
        };
        if failure.is_null() {
            return Ok(None);
        }
        let failure = JString::from(failure);
        let text: String = env.get_string(&failure)?.into();
        Ok(Some(text))
    });
    match outcome {
        Ok(None) => Ok(()),
        Ok(Some(thrown)) => {
            log::warn!("the denial listener threw: {thrown}");
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

/// Test hook (package-private in Java): proves that a panic becomes a Java exception.
extern "system" fn native_panic_for_testing<'l>(mut env: JNIEnv<'l>, _class: JClass<'l>) {
    run(&mut env, (), |_| -> Result<()> {
        panic!("deliberate panic for testing");
    })
}

// ---- loading -------------------------------------------------------------------------------

fn global_class(env: &mut JNIEnv<'_>, name: &str) -> Result<GlobalRef> {
    let class = env.find_class(name)?;
    let global = env.new_global_ref(&class)?;
    env.delete_local_ref(class)?;
    Ok(global)
}

fn native(name: &str, sig: &str, f: *mut c_void) -> NativeMethod {
    NativeMethod {
        name: name.into(),
        sig: sig.into(),
        fn_ptr: f,
    }
}

fn on_load(vm: JavaVM) -> Result<()> {
    let mut env = vm.get_env()?;
    let fusegate = global_class(&mut env, FUSEGATE_CLASS)?;
    let stats = global_class(&mut env, STATS_CLASS)?;
    let denial = global_class(&mut env, DENIAL_CLASS)?;
    let deliver = env.get_static_method_id(
        &fusegate,
        "deliver",
        "(Ldev/fusegate/DenialListener;[Ldev/fusegate/Denial;)Ljava/lang/String;",
    )?;
    let stats_ctor = env.get_method_id(&stats, "<init>", "([JZ[Ljava/lang/String;[J)V")?;
    let denial_ctor = env.get_method_id(
        &denial,
        "<init>",
        "(ILjava/lang/String;Ljava/lang/String;I)V",
    )?;
    let string = global_class(&mut env, "java/lang/String")?;
    let illegal_argument = global_class(&mut env, "java/lang/IllegalArgumentException")?;
    let illegal_state = global_class(&mut env, "java/lang/IllegalStateException")?;
    let io_exception = global_class(&mut env, "java/io/IOException")?;

    const S: &str = "Ljava/lang/String;";
    let methods = [
        native(
            "nativeMount",
            &format!("({S}{S}IZJ)J"),
            native_mount as *mut c_void,
        ),
        native(
            "nativeAttach",
            &format!("(I{S}IZJ)J"),
            native_attach as *mut c_void,
        ),
        native("nativeClose", "(J)V", native_close as *mut c_void),
        native(
            "nativeSetApp",
            &format!("(JI[{S}I)V"),
            native_set_app as *mut c_void,
        ),
        native("nativeRemoveApp", "(JI)V", native_remove_app as *mut c_void),
        native(
            "nativeGrant",
            &format!("(JI{S}I)V"),
            native_grant as *mut c_void,
        ),
        native(
            "nativeRevoke",
            &format!("(JI{S})V"),
            native_revoke as *mut c_void,
        ),
        native(
            "nativeInvalidate",
            &format!("(J{S})V"),
            native_invalidate as *mut c_void,
        ),
        native(
            "nativePassthroughActive",
            "(J)Z",
            native_passthrough_active as *mut c_void,
        ),
        native("nativeIsRunning", "(J)Z", native_is_running as *mut c_void),
        native(
            "nativeStats",
            "(J)Ldev/fusegate/Stats;",
            native_stats as *mut c_void,
        ),
        native(
            "nativeSetDenialListener",
            "(JLdev/fusegate/DenialListener;)V",
            native_set_denial_listener as *mut c_void,
        ),
        native(
            "nativePanicForTesting",
            "()V",
            native_panic_for_testing as *mut c_void,
        ),
    ];
    env.register_native_methods(&fusegate, &methods)?;
    let cache = Cache {
        vm,
        fusegate,
        deliver,
        stats,
        stats_ctor,
        denial,
        denial_ctor,
        string,
        illegal_argument,
        illegal_state,
        io_exception,
    };
    if CACHE.set(cache).is_err() {
        log::warn!("libfusegate loaded twice; keeping the first class cache");
    }
    Ok(())
}

/// Called by the JVM from `System.loadLibrary("fusegate")`.
///
/// # Safety
///
/// Only the JVM calls this, with its own valid `JavaVM` pointer.
#[no_mangle]
pub unsafe extern "system" fn JNI_OnLoad(
    vm: *mut jni::sys::JavaVM,
    _reserved: *mut c_void,
) -> jint {
    crate::logging::init();
    let loaded = catch_unwind(|| {
        // SAFETY: `vm` is the pointer the JVM passes to JNI_OnLoad, valid for the process.
        on_load(unsafe { JavaVM::from_raw(vm) }?)
    });
    if !matches!(loaded, Ok(Ok(()))) {
        // Say which class or method was missing (a pending NoSuchMethodError, say), then clear
        // it: the failed load itself becomes the UnsatisfiedLinkError.
        // SAFETY: as above.
        if let Ok(vm) = unsafe { JavaVM::from_raw(vm) } {
            if let Ok(env) = vm.get_env() {
                if env.exception_check().unwrap_or(false) {
                    let _ = env.exception_describe();
                    let _ = env.exception_clear();
                }
            }
        }
    }
    match loaded {
        Ok(Ok(())) => jni::sys::JNI_VERSION_1_6,
        Ok(Err(e)) => {
            log::error!("libfusegate could not bind to dev.fusegate.FuseGate: {e:?}");
            JNI_ERR
        }
        Err(payload) => {
            log::error!(
                "libfusegate panicked while loading: {}",
                panic_message(payload.as_ref())
            );
            JNI_ERR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn is_illegal_argument(r: Result<impl std::fmt::Debug>, fragment: &str) -> bool {
        matches!(r, Err(Error::IllegalArgument(m)) if m.contains(fragment))
    }

    #[test]
    fn uids_and_options_are_checked() {
        assert_eq!(uid_arg(0).unwrap(), 0);
        assert_eq!(uid_arg(10057).unwrap(), 10057);
        assert!(is_illegal_argument(uid_arg(-1), "negative"));
        assert!(is_illegal_argument(uid_arg(i32::MIN), "negative"));

        let o = options_arg(3, JNI_FALSE, 1500).unwrap();
        assert_eq!((o.threads, o.passthrough), (3, false));
        assert_eq!(o.cache_ttl, Duration::from_millis(1500));
        assert!(options_arg(1, JNI_TRUE, 0).unwrap().passthrough);
        assert!(is_illegal_argument(options_arg(0, 1, 0), "threads"));
        assert!(is_illegal_argument(options_arg(65, 1, 0), "threads"));
        assert!(is_illegal_argument(options_arg(2, 1, -1), "cache timeout"));
        assert!(is_illegal_argument(
            options_arg(2, 1, MAX_CACHE_TIMEOUT_MS + 1),
            "cache timeout"
        ));
    }

    #[test]
    fn only_open_dev_fuse_fds_are_accepted() {
        assert!(is_illegal_argument(check_fuse_fd(-1), "negative"));
        assert!(is_illegal_argument(
            check_fuse_fd(1 << 30),
            "not an open file descriptor"
        ));
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(is_illegal_argument(
            check_fuse_fd(null.as_raw_fd()),
            "not a /dev/fuse"
        ));
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(is_illegal_argument(
            check_fuse_fd(file.as_raw_fd()),
            "not a /dev/fuse"
        ));
        if let Ok(fuse) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
        {
            assert!(check_fuse_fd(fuse.as_raw_fd()).is_ok());
        }
    }

    #[test]
    fn errors_map_to_the_documented_exceptions() {
        let bad_fd = DaemonError::BadFd(std::io::Error::from_raw_os_error(libc::EINVAL));
        assert!(matches!(Error::from(bad_fd), Error::IllegalArgument(_)));
        let mount = DaemonError::Mount(MountError::Mount {
            path: "/mnt".into(),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
            hint: "",
        });
        match Error::from(mount) {
            Error::Io(m) => assert!(m.contains("Operation not permitted"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Error::from(PolicyError::BadPath("/x".into())),
            Error::IllegalArgument(_)
        ));
        assert!(matches!(
            Error::from(jni::errors::Error::JavaException),
            Error::Pending
        ));
    }

    #[test]
    fn counters_follow_the_java_order() {
        let s = crate::Stats {
            requests: 1,
            errors: 2,
            malformed: 3,
            interrupts: 4,
            passthrough_opens: 5,
            userspace_opens: 6,
            redacted_opens: 7,
            bytes_read: 8,
            bytes_written: 9,
            denials: 10,
            backing_registered: 11,
            backing_released: 12,
            nodes: 13,
            open_files: 14,
            ..Default::default()
        };
        assert_eq!(counters(&s, 15), std::array::from_fn(|i| i as jlong + 1));
        let huge = crate::Stats {
            bytes_read: u64::MAX,
            ..Default::default()
        };
        assert_eq!(counters(&huge, 0)[7], i64::MAX);
    }

    #[test]
    fn panic_messages() {
        let p = catch_unwind(|| panic!("static text")).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "static text");
        let p = catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "formatted 7");
    }

    #[test]
    fn unknown_handles_are_closed() {
        assert!(matches!(instance(-42), Err(Error::IllegalState(_))));
        assert!(matches!(
            with_daemon(i64::MAX, |_| Ok(())),
            Err(Error::IllegalState(_))
        ));
    }
}
