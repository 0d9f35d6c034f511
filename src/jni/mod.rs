//! The JNI face: `dev.fusegate.FuseGate` (Java sources under `jni/`) configures and drives a
//! [`Daemon`](crate::Daemon), like the command line does; no logic of its own beyond checking
//! input.
//!
//! * Natives are bound with `RegisterNatives` in `JNI_OnLoad`, which also caches every class
//!   and method id used later (a thread attached from Rust could not find app classes):
//!   here and in `class_cache.rs`. The native bodies are in `natives.rs`, their input checks
//!   in `args.rs`.
//! * Java never holds a pointer: it holds an id into a registry. `close()` removes the id,
//!   so a closed handle is an `IllegalStateException`, never a dangling pointer, and a second
//!   `close()` finds nothing to do (`registry.rs`).
//! * Every native body runs under `catch_unwind`: bad input and failures become Java
//!   exceptions, a panic becomes `IllegalStateException("internal error: ...")`; nothing
//!   unwinds into the JVM (`errors.rs`).
//! * Denials reach a `DenialListener`, file events a `FileEventListener`, in batches from one
//!   dispatcher thread per instance and kind, attached to the JVM only while a listener is set,
//!   off the request path (`listener.rs`, `events.rs`).

mod args;
mod class_cache;
mod errors;
mod events;
mod listener;
mod natives;
mod registry;

use class_cache::{Cache, CACHE};
use errors::{panic_message, Result};
use jni::objects::GlobalRef;
use jni::sys::{jint, JNI_ERR};
use jni::{JNIEnv, JavaVM, NativeMethod};
use natives::{
    native_attach, native_close, native_dropped_events, native_grant, native_grant_all,
    native_invalidate, native_is_running, native_mount, native_open_for_app,
    native_passthrough_active, native_remove_app, native_restart, native_revoke, native_revoke_all,
    native_set_app, native_set_apps, native_set_denial_listener, native_set_event_listener,
    native_stats,
};
use std::ffi::c_void;
use std::panic::catch_unwind;

const FUSEGATE_CLASS: &str = "dev/fusegate/FuseGate";
const STATS_CLASS: &str = "dev/fusegate/Stats";
const DENIAL_CLASS: &str = "dev/fusegate/Denial";
const FILE_EVENT_CLASS: &str = "dev/fusegate/FileEvent";
const ERRNO_EXCEPTION_CLASS: &str = "dev/fusegate/ErrnoException";

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

/// The natives of `dev.fusegate.FuseGate`. build.rs checks every entry (name, signature and the
/// Rust function's parameter types) against the Java declarations, so keep each one in this
/// literal form: `native("name", "signature", function)`.
fn natives() -> Vec<NativeMethod> {
    #[allow(unused_mut)] // without test hooks nothing is pushed later
    let mut natives = vec![
        native(
            "nativeMount",
            "(Ljava/lang/String;Ljava/lang/String;IZJ)J",
            native_mount as *mut c_void,
        ),
        native(
            "nativeAttach",
            "(ILjava/lang/String;IZJ)J",
            native_attach as *mut c_void,
        ),
        native("nativeClose", "(J)V", native_close as *mut c_void),
        native("nativeRestart", "(J)V", native_restart as *mut c_void),
        native(
            "nativeSetApp",
            "(JI[Ljava/lang/String;I)V",
            native_set_app as *mut c_void,
        ),
        native("nativeRemoveApp", "(JI)V", native_remove_app as *mut c_void),
        native(
            "nativeGrant",
            "(JILjava/lang/String;I)V",
            native_grant as *mut c_void,
        ),
        native(
            "nativeRevoke",
            "(JILjava/lang/String;)V",
            native_revoke as *mut c_void,
        ),
        native(
            "nativeSetApps",
            "(J[I[[Ljava/lang/String;[I)V",
            native_set_apps as *mut c_void,
        ),
        native(
            "nativeGrantAll",
            "(J[I[Ljava/lang/String;[I)V",
            native_grant_all as *mut c_void,
        ),
        native(
            "nativeRevokeAll",
            "(J[I[Ljava/lang/String;)V",
            native_revoke_all as *mut c_void,
        ),
        native(
            "nativeInvalidate",
            "(JLjava/lang/String;)V",
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
            "nativeSetEventListener",
            "(JLdev/fusegate/FileEventListener;)V",
            native_set_event_listener as *mut c_void,
        ),
        native(
            "nativeDroppedEvents",
            "(J)J",
            native_dropped_events as *mut c_void,
        ),
        native(
            "nativeOpenForApp",
            "(JLjava/lang/String;II)I",
            native_open_for_app as *mut c_void,
        ),
    ];
    // Only test builds bind the test hooks: the release library has no way to reach them.
    #[cfg(feature = "test-hooks")]
    natives.push(native(
        "nativePanicForTesting",
        "()V",
        natives::native_panic_for_testing as *mut c_void,
    ));
    natives
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
    let file_event = global_class(&mut env, FILE_EVENT_CLASS)?;
    let errno_exception = global_class(&mut env, ERRNO_EXCEPTION_CLASS)?;
    let deliver_events = env.get_static_method_id(
        &fusegate,
        "deliverEvents",
        "(Ldev/fusegate/FileEventListener;[Ldev/fusegate/FileEvent;)Ljava/lang/String;",
    )?;
    let file_event_ctor = env.get_method_id(
        &file_event,
        "<init>",
        "(ILjava/lang/String;Ljava/lang/String;IJZ)V",
    )?;
    let errno_exception_ctor =
        env.get_method_id(&errno_exception, "<init>", "(Ljava/lang/String;I)V")?;
    let string = global_class(&mut env, "java/lang/String")?;
    let illegal_argument = global_class(&mut env, "java/lang/IllegalArgumentException")?;
    let illegal_state = global_class(&mut env, "java/lang/IllegalStateException")?;
    let io_exception = global_class(&mut env, "java/io/IOException")?;

    env.register_native_methods(&fusegate, &natives())?;
    let cache = Cache {
        vm,
        fusegate,
        deliver,
        stats,
        stats_ctor,
        denial,
        denial_ctor,
        deliver_events,
        file_event,
        file_event_ctor,
        errno_exception,
        errno_exception_ctor,
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
