//! The bodies of `FuseGate`'s native methods (bound in `JNI_OnLoad`): each checks its
//! arguments, calls the daemon under `run`, and converts the result for Java.

use super::args::{
    absolute_path_arg, access_arg, check_fuse_fd, int_array_arg, mode_arg, options_arg,
    package_lists_arg, packages_arg, permissions_arg, relative_path_arg, same_length,
    string_array_arg, uid_arg, Indexed,
};
use super::class_cache::cache;
use super::errors::{errno_error, run, Error, Result};
use super::events::set_event_listener;
use super::listener::set_denial_listener;
use super::registry::{close, register, register_held, restart, with_daemon, Held};
use crate::daemon::{Daemon, HeldSession};
use crate::policy::App;
use jni::objects::{JClass, JIntArray, JObject, JObjectArray, JString};
use jni::sys::{jboolean, jint, jlong, jobject, jvalue, JNI_FALSE, JNI_TRUE};
use jni::JNIEnv;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;

fn jbool(b: bool) -> jboolean {
    if b {
        JNI_TRUE
    } else {
        JNI_FALSE
    }
}

pub(super) extern "system" fn native_mount<'l>(
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

pub(super) extern "system" fn native_attach<'l>(
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
        // Held here, so that `restart` can start another server on the same session.
        let mut session = HeldSession::new(owned, options.threads)?;
        let lower = std::path::PathBuf::from(&lower_root);
        let daemon = session.serve(&lower, &options, None)?;
        log::info!(
            "serving {} on an attached /dev/fuse session",
            lower.display()
        );
        // SAFETY: the caller handed the fd over; the session runs on our duplicate.
        unsafe { libc::close(fuse_fd) };
        Ok(register_held(
            daemon,
            Some(Held {
                session,
                lower,
                options,
            }),
        ))
    })
}

pub(super) extern "system" fn native_close<'l>(mut env: JNIEnv<'l>, _class: JClass<'l>, id: jlong) {
    run(&mut env, (), |_| close(id))
}

pub(super) extern "system" fn native_restart<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
) {
    run(&mut env, (), |_| restart(id))
}

pub(super) extern "system" fn native_set_app<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    uid: jint,
    packages: JObjectArray<'l>,
    permissions: jint,
) {
    run(&mut env, (), |env| {
        let uid = uid_arg(uid)?;
        let names = packages_arg(env, &packages, "packages")?;
        let permissions = permissions_arg(permissions)?;
        with_daemon(id, |d| {
            Ok(d.set_app(App {
                uid,
                packages: names,
                permissions,
            })?)
        })
    })
}

pub(super) extern "system" fn native_remove_app<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    uid: jint,
) {
    run(&mut env, (), |_| {
        let uid = uid_arg(uid)?;
        with_daemon(id, |d| {
            d.remove_app(uid);
            Ok(())
        })
    })
}

pub(super) extern "system" fn native_grant<'l>(
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
        let access = access_arg(access)?;
        with_daemon(id, |d| Ok(d.grant(uid, &path, access)?))
    })
}

pub(super) extern "system" fn native_revoke<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    uid: jint,
    path: JString<'l>,
) {
    run(&mut env, (), |env| {
        let uid = uid_arg(uid)?;
        let path = relative_path_arg(env, &path, "path")?;
        with_daemon(id, |d| Ok(d.revoke(uid, &path)?))
    })
}

/// Converts element `i` of an int array argument, naming it in the error (`uids[3]: ...`).
fn each<T>(values: &[jint], what: &str, convert: impl Fn(jint) -> Result<T>) -> Result<Vec<T>> {
    (0..)
        .zip(values)
        .map(|(i, &v)| {
            convert(v).map_err(|e| match e {
                Error::IllegalArgument(m) => {
                    Error::IllegalArgument(format!("{}: {m}", Indexed(what, i)))
                }
                other => other,
            })
        })
        .collect()
}

/// Uids and paths of a batch: parallel arrays, every element checked.
fn uids_and_paths(
    env: &mut JNIEnv<'_>,
    uids: &JIntArray<'_>,
    paths: &JObjectArray<'_>,
) -> Result<(Vec<u32>, Vec<String>)> {
    let uids = each(&int_array_arg(env, uids, "uids")?, "uids", uid_arg)?;
    let paths = string_array_arg(env, paths, "paths", relative_path_arg)?;
    same_length(uids.len(), "paths", paths.len())?;
    Ok((uids, paths))
}

pub(super) extern "system" fn native_set_apps<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    uids: JIntArray<'l>,
    packages: JObjectArray<'l>,
    permissions: JIntArray<'l>,
) {
    run(&mut env, (), |env| {
        let uids = each(&int_array_arg(env, &uids, "uids")?, "uids", uid_arg)?;
        let packages = package_lists_arg(env, &packages)?;
        let permissions = int_array_arg(env, &permissions, "permissions")?;
        let permissions = each(&permissions, "permissions", permissions_arg)?;
        same_length(uids.len(), "packages", packages.len())?;
        same_length(uids.len(), "permissions", permissions.len())?;
        let apps = uids
            .into_iter()
            .zip(packages)
            .zip(permissions)
            .map(|((uid, packages), permissions)| App {
                uid,
                packages,
                permissions,
            })
            .collect();
        with_daemon(id, |d| Ok(d.set_apps(apps)?))
    })
}

pub(super) extern "system" fn native_grant_all<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    uids: JIntArray<'l>,
    paths: JObjectArray<'l>,
    access: JIntArray<'l>,
) {
    run(&mut env, (), |env| {
        let (uids, paths) = uids_and_paths(env, &uids, &paths)?;
        let access = each(
            &int_array_arg(env, &access, "access")?,
            "access",
            access_arg,
        )?;
        same_length(uids.len(), "access", access.len())?;
        let grants = uids
            .into_iter()
            .zip(paths)
            .zip(access)
            .map(|((uid, path), access)| (uid, path, access))
            .collect();
        with_daemon(id, |d| Ok(d.grant_all(grants)?))
    })
}

pub(super) extern "system" fn native_revoke_all<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    uids: JIntArray<'l>,
    paths: JObjectArray<'l>,
) {
    run(&mut env, (), |env| {
        let (uids, paths) = uids_and_paths(env, &uids, &paths)?;
        let revokes = uids.into_iter().zip(paths).collect();
        with_daemon(id, |d| Ok(d.revoke_all(revokes)?))
    })
}

pub(super) extern "system" fn native_invalidate<'l>(
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

pub(super) extern "system" fn native_passthrough_active<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
) -> jboolean {
    run(&mut env, JNI_FALSE, |_| {
        with_daemon(id, |d| Ok(jbool(d.passthrough_active())))
    })
}

pub(super) extern "system" fn native_is_running<'l>(
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
fn counters(s: &crate::Stats) -> [jlong; 23] {
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
        s.denials_dropped,
        s.events_dropped,
        s.bytes_zeroed,
        s.finder_runs,
        s.finder_nanos,
        s.finder_conservative,
        s.finder_errors,
        s.range_cache_hits,
        s.range_cache_misses,
    ]
    .map(|v| v.min(i64::MAX as u64) as jlong)
}

pub(super) extern "system" fn native_stats<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
) -> jobject {
    run(&mut env, std::ptr::null_mut(), |env| {
        let stats = with_daemon(id, |d| Ok(d.stats()))?;
        let c = cache()?;
        let values = counters(&stats);
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

pub(super) extern "system" fn native_set_denial_listener<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    listener: JObject<'l>,
) {
    run(&mut env, (), |env| set_denial_listener(env, id, &listener))
}

pub(super) extern "system" fn native_set_event_listener<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    listener: JObject<'l>,
) {
    run(&mut env, (), |env| set_event_listener(env, id, &listener))
}

pub(super) extern "system" fn native_dropped_events<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
) -> jlong {
    run(&mut env, 0, |_| {
        with_daemon(id, |d| {
            Ok(d.events().dropped().min(i64::MAX as u64) as jlong)
        })
    })
}

/// `openForApp`: the fd (`O_CLOEXEC`, now Java's to close), or `ErrnoException` with the errno
/// the app's own open through the mount would get.
pub(super) extern "system" fn native_open_for_app<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    id: jlong,
    path: JString<'l>,
    uid: jint,
    mode: jint,
) -> jint {
    run(&mut env, -1, |env| {
        let path = relative_path_arg(env, &path, "path")?;
        let uid = uid_arg(uid)?;
        let flags = mode_arg(mode)?;
        let fd = with_daemon(id, |d| {
            d.open_for_app(uid, &path, flags)
                .map_err(|e| errno_error(&format!("openForApp {path} as uid {uid}"), e))
        })?;
        Ok(fd.into_raw_fd())
    })
}

/// Test hook (package-private in Java): proves that a panic becomes a Java exception.
#[cfg(feature = "test-hooks")]
pub(super) extern "system" fn native_panic_for_testing<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
) {
    run(&mut env, (), |_| -> Result<()> {
        panic!("deliberate panic for testing");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            denials_dropped: 15,
            events_dropped: 16,
            bytes_zeroed: 17,
            finder_runs: 18,
            finder_nanos: 19,
            finder_conservative: 20,
            finder_errors: 21,
            range_cache_hits: 22,
            range_cache_misses: 23,
            ..Default::default()
        };
        assert_eq!(counters(&s), std::array::from_fn(|i| i as jlong + 1));
        let huge = crate::Stats {
            bytes_read: u64::MAX,
            ..Default::default()
        };
        assert_eq!(counters(&huge)[7], i64::MAX);
    }
}
