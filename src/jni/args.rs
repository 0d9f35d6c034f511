//! Checking Java arguments and converting them to Rust values: every rule Java input must
//! follow, so that bad input is an `IllegalArgumentException` before the daemon is touched.

use super::errors::{Error, Result};
use crate::daemon::Options;
use crate::policy::{self, Access, Permissions, Table};
use jni::objects::{JIntArray, JObjectArray, JString};
use jni::sys::{jboolean, jint, jlong, JNI_FALSE};
use jni::JNIEnv;
use std::fmt::Display;
use std::time::Duration;

// The values of the Java API's constants (build.rs checks that they match `FuseGate.java` and
// `Options.java`).
/// `FuseGate.ACCESS_READ` / `ACCESS_WRITE`; both bits together mean write.
const ACCESS_READ: jint = 1;
const ACCESS_WRITE: jint = 2;
const ACCESS_READ_WRITE: jint = ACCESS_READ | ACCESS_WRITE;
/// Bounds of `Options` (also checked in Java).
const MAX_THREADS: jint = 64;
const MAX_CACHE_TIMEOUT_MS: jlong = 24 * 3600 * 1000;

// `FuseGate.MODE_*` for `openForApp`: the values of Android's `ParcelFileDescriptor.MODE_*`, so
// that a service can pass `ParcelFileDescriptor.parseMode(...)` through (without MODE_CREATE).
const MODE_READ_ONLY: jint = 0x1000_0000;
const MODE_WRITE_ONLY: jint = 0x2000_0000;
const MODE_READ_WRITE: jint = 0x3000_0000;
/// Android's `ParcelFileDescriptor.MODE_CREATE`: refused, `openForApp` never creates.
const MODE_CREATE: jint = 0x0800_0000;
const MODE_TRUNCATE: jint = 0x0400_0000;
const MODE_APPEND: jint = 0x0200_0000;

/// The open flags of an `openForApp` mode: an access mode, optionally `MODE_TRUNCATE` or
/// `MODE_APPEND` (which need write access).
pub(super) fn mode_arg(mode: jint) -> Result<i32> {
    let bad = |why: String| Err(Error::IllegalArgument(format!("mode 0x{mode:08x}: {why}")));
    if mode & MODE_CREATE != 0 {
        return bad("MODE_CREATE is not supported: openForApp opens existing files only".into());
    }
    let unknown = mode & !(MODE_READ_WRITE | MODE_TRUNCATE | MODE_APPEND);
    if unknown != 0 {
        return bad(format!("unknown mode bits 0x{unknown:x}"));
    }
    let mut flags = match mode & MODE_READ_WRITE {
        MODE_READ_ONLY => libc::O_RDONLY,
        MODE_WRITE_ONLY => libc::O_WRONLY,
        MODE_READ_WRITE => libc::O_RDWR,
        _ => {
            return bad(
                "no access mode: use MODE_READ_ONLY, MODE_WRITE_ONLY or MODE_READ_WRITE".into(),
            )
        }
    };
    if mode & (MODE_TRUNCATE | MODE_APPEND) != 0 && flags == libc::O_RDONLY {
        return bad("MODE_TRUNCATE and MODE_APPEND need write access".into());
    }
    if mode & MODE_TRUNCATE != 0 {
        flags |= libc::O_TRUNC;
    }
    if mode & MODE_APPEND != 0 {
        flags |= libc::O_APPEND;
    }
    Ok(flags)
}

/// A non-null, non-empty Java string without NUL characters.
pub(super) fn string_arg(
    env: &mut JNIEnv<'_>,
    s: &JString<'_>,
    what: impl Display,
) -> Result<String> {
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
pub(super) fn relative_path_arg(
    env: &mut JNIEnv<'_>,
    s: &JString<'_>,
    what: impl Display,
) -> Result<String> {
    let raw = string_arg(env, s, &what)?;
    policy::normalize_path(&raw).map_err(|e| Error::IllegalArgument(format!("{what}: {e}")))
}

/// An absolute directory path on the host (mount point, lower root).
pub(super) fn absolute_path_arg(
    env: &mut JNIEnv<'_>,
    s: &JString<'_>,
    what: &str,
) -> Result<String> {
    let path = string_arg(env, s, what)?;
    if !path.starts_with('/') {
        return Err(Error::IllegalArgument(format!(
            "{what} {path:?} must be an absolute path"
        )));
    }
    Ok(path)
}

/// `name[index]`, for messages about one element of an array argument.
#[derive(Clone, Copy)]
pub(super) struct Indexed<W>(pub W, pub jint);

impl<W: Display> Display for Indexed<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

/// A non-null `String[]`, each element converted by `element` (which gets its name for
/// messages, e.g. `paths[3]`). Each element is converted in its own local frame: arrays may be
/// large, and JNI calls made for one element (`get_string` checks the class) leave local
/// references behind.
pub(super) fn string_array_arg<W: Display + Copy, T>(
    env: &mut JNIEnv<'_>,
    array: &JObjectArray<'_>,
    what: W,
    mut element: impl FnMut(&mut JNIEnv<'_>, &JString<'_>, Indexed<W>) -> Result<T>,
) -> Result<Vec<T>> {
    if array.is_null() {
        return Err(Error::IllegalArgument(format!("{what} is null")));
    }
    let n = env.get_array_length(array)?;
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let converted = env.with_local_frame(LOCAL_FRAME, |env| -> Result<T> {
            let s = JString::from(env.get_object_array_element(array, i)?);
            element(env, &s, Indexed(what, i))
        })?;
        out.push(converted);
    }
    Ok(out)
}

/// Local references one array element may need (the element, and what JNI calls on it make).
const LOCAL_FRAME: i32 = 8;

/// A non-null array of package names, each a valid string (see [`string_arg`]).
pub(super) fn packages_arg(
    env: &mut JNIEnv<'_>,
    packages: &JObjectArray<'_>,
    what: impl Display + Copy,
) -> Result<Vec<String>> {
    string_array_arg(env, packages, what, string_arg)
}

/// A non-null `String[][]` of package lists, one per app of a batch.
pub(super) fn package_lists_arg(
    env: &mut JNIEnv<'_>,
    lists: &JObjectArray<'_>,
) -> Result<Vec<Vec<String>>> {
    if lists.is_null() {
        return Err(Error::IllegalArgument("packages is null".into()));
    }
    let n = env.get_array_length(lists)?;
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let names = env.with_local_frame(LOCAL_FRAME, |env| -> Result<Vec<String>> {
            let list = JObjectArray::from(env.get_object_array_element(lists, i)?);
            packages_arg(env, &list, Indexed("packages", i))
        })?;
        out.push(names);
    }
    Ok(out)
}

/// A non-null `int[]`.
pub(super) fn int_array_arg(
    env: &mut JNIEnv<'_>,
    array: &JIntArray<'_>,
    what: &str,
) -> Result<Vec<jint>> {
    if array.is_null() {
        return Err(Error::IllegalArgument(format!("{what} is null")));
    }
    let n = env.get_array_length(array)?;
    let mut out = vec![0; n as usize];
    env.get_int_array_region(array, 0, &mut out)?;
    Ok(out)
}

/// Parallel arrays of a batch: one entry of `what` per uid.
pub(super) fn same_length(uids: usize, what: &str, n: usize) -> Result<()> {
    if uids == n {
        Ok(())
    } else {
        Err(Error::IllegalArgument(format!(
            "uids has {uids} entries but {what} has {n}: one per uid"
        )))
    }
}

pub(super) fn uid_arg(uid: jint) -> Result<u32> {
    u32::try_from(uid).map_err(|_| Error::IllegalArgument(format!("invalid uid {uid}: negative")))
}

pub(super) fn permissions_arg(permissions: jint) -> Result<Permissions> {
    Permissions::from_bits(permissions as u32).ok_or_else(|| {
        Error::IllegalArgument(format!(
            "unknown permission bits {:#x}",
            permissions as u32 & !Permissions::ALL
        ))
    })
}

pub(super) fn access_arg(access: jint) -> Result<Access> {
    // A write grant includes reading: READ|WRITE is WRITE.
    match access {
        ACCESS_READ => Ok(Access::Read),
        ACCESS_WRITE | ACCESS_READ_WRITE => Ok(Access::Write),
        other => Err(Error::IllegalArgument(format!(
            "unknown access {other}: use ACCESS_READ ({ACCESS_READ}) or ACCESS_WRITE ({ACCESS_WRITE})"
        ))),
    }
}

pub(super) fn options_arg(
    threads: jint,
    passthrough: jboolean,
    cache_ms: jlong,
) -> Result<Options> {
    // 0: the daemon's default (half the CPUs, 1 to 4).
    if !(0..=MAX_THREADS).contains(&threads) {
        return Err(Error::IllegalArgument(format!(
            "threads must be 1..={MAX_THREADS} (or 0 for the default), not {threads}"
        )));
    }
    if !(0..=MAX_CACHE_TIMEOUT_MS).contains(&cache_ms) {
        return Err(Error::IllegalArgument(format!(
            "cache timeout must be 0..={MAX_CACHE_TIMEOUT_MS} ms, not {cache_ms}"
        )));
    }
    Ok(Options {
        threads: if threads == 0 {
            crate::daemon::default_threads()
        } else {
            threads as usize
        },
        passthrough: passthrough != JNI_FALSE,
        cache_ttl: Duration::from_millis(cache_ms as u64),
        io_uring: Default::default(),
        xattrs: Default::default(),
        policy: Table::default(),
    })
}

/// Checks that `fd` is an open `/dev/fuse` descriptor without taking it.
pub(super) fn check_fuse_fd(fd: jint) -> Result<()> {
    if fd < 0 {
        return Err(Error::IllegalArgument(format!(
            "fuseFd {fd} is not a file descriptor (negative)"
        )));
    }
    crate::fuse::channel::check_device(fd).map_err(|e| {
        Error::IllegalArgument(if e.raw_os_error() == Some(libc::EBADF) {
            format!("fuseFd {fd} is not an open file descriptor: {e}")
        } else {
            format!("fuseFd {fd} is not a /dev/fuse descriptor ({e})")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jni::sys::JNI_TRUE;
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
        assert_eq!(
            options_arg(0, 1, 0).unwrap().threads,
            crate::daemon::default_threads()
        );
        assert!(is_illegal_argument(options_arg(-1, 1, 0), "threads"));
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
}
