//! Checking Java arguments and converting them to Rust values: every rule Java input must
//! follow, so that bad input is an `IllegalArgumentException` before the daemon is touched.

use super::errors::{Error, Result};
use crate::daemon::Options;
use crate::policy::{self, Access, Permissions, Table};
use jni::objects::{JObjectArray, JString};
use jni::sys::{jboolean, jint, jlong, JNI_FALSE};
use jni::JNIEnv;
use std::time::Duration;

/// Bounds of `Options` (also checked in Java).
const MAX_THREADS: jint = 64;
const MAX_CACHE_TIMEOUT_MS: jlong = 24 * 3600 * 1000;

/// A non-null, non-empty Java string without NUL characters.
pub(super) fn string_arg(env: &mut JNIEnv<'_>, s: &JString<'_>, what: &str) -> Result<String> {
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
    what: &str,
) -> Result<String> {
    let raw = string_arg(env, s, what)?;
    Ok(policy::normalize_path(&raw)?)
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

/// A non-null array of package names, each a valid string (see [`string_arg`]).
pub(super) fn packages_arg(
    env: &mut JNIEnv<'_>,
    packages: &JObjectArray<'_>,
) -> Result<Vec<String>> {
    if packages.is_null() {
        return Err(Error::IllegalArgument("packages is null".into()));
    }
    let n = env.get_array_length(packages)?;
    let mut names = Vec::with_capacity(n as usize);
    for i in 0..n {
        let element = JString::from(env.get_object_array_element(packages, i)?);
        names.push(string_arg(env, &element, &format!("packages[{i}]"))?);
        env.delete_local_ref(element)?;
    }
    Ok(names)
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
        1 => Ok(Access::Read),
        2 | 3 => Ok(Access::Write),
        other => Err(Error::IllegalArgument(format!(
            "unknown access {other}: use ACCESS_READ (1) or ACCESS_WRITE (2)"
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
