//! Failures of native calls and how they reach Java: every native body runs under `run`, so
//! an error becomes the matching Java exception and a panic never unwinds into the JVM.

use super::class_cache::cache;
use crate::daemon::DaemonError;
use crate::fuse::mount::MountError;
use crate::policy::PolicyError;
use jni::objects::JThrowable;
use jni::sys::jvalue;
use jni::JNIEnv;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a native call may fail with, turned into a Java exception at the boundary.
#[derive(Debug)]
pub(super) enum Error {
    IllegalArgument(String),
    IllegalState(String),
    Io(String),
    /// A system call's failure that Java sees as `ErrnoException` (an `IOException`) carrying
    /// the errno: what an app's own call would have failed with.
    Errno {
        message: String,
        errno: i32,
    },
    /// A Java exception is already pending (thrown by a JNI call): leave it as it is.
    Pending,
}

pub(super) type Result<T> = std::result::Result<T, Error>;

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

pub(super) fn panic_message(payload: &(dyn Any + Send)) -> String {
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
        Error::Errno { message, errno } => {
            if let Err(e) = throw_errno(env, c, &message, errno) {
                log::error!("could not throw ErrnoException ({e}): {message}");
            }
            return;
        }
        Error::Pending => return,
    };
    if let Err(e) = env.throw_new(class, message.as_str()) {
        log::error!("could not throw a Java exception ({e}): {message}");
    }
}

fn throw_errno(
    env: &mut JNIEnv<'_>,
    c: &super::class_cache::Cache,
    message: &str,
    errno: i32,
) -> jni::errors::Result<()> {
    let text = env.new_string(message)?;
    let args = [jvalue { l: text.as_raw() }, jvalue { i: errno }];
    // SAFETY: `errno_exception_ctor` was looked up on `errno_exception` with the signature
    // (Ljava/lang/String;I)V, which `args` follows.
    let obj =
        unsafe { env.new_object_unchecked(&c.errno_exception, c.errno_exception_ctor, &args) }?;
    env.throw(JThrowable::from(obj))
}

/// The message of an `ErrnoException`: what failed, the system's text and the errno's name.
pub(super) fn errno_error(what: &str, errno: i32) -> Error {
    let text = std::io::Error::from_raw_os_error(errno);
    Error::Errno {
        message: format!("{what}: {text}"),
        errno,
    }
}

/// Runs a native body: its error becomes a Java exception and `fallback` is returned; so does
/// a panic, which never unwinds into the JVM.
pub(super) fn run<'l, T>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn panic_messages() {
        let p = catch_unwind(|| panic!("static text")).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "static text");
        let p = catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "formatted 7");
    }
}
