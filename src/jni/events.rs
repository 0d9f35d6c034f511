//! File events for a `FileEventListener`: the same dispatcher as denials (`listener.rs`), on the
//! daemon's event queue; each batch becomes a `FileEvent[]` handed to `FuseGate.deliverEvents`.

use super::class_cache::Cache;
use super::errors::Result;
use super::listener::{set_listener, thrown, Source};
use crate::daemon::{Daemon, EventFeed, FileEvent};
use jni::objects::{GlobalRef, JObject};
use jni::signature::ReturnType;
use jni::sys::{jint, jlong, jvalue, JNI_FALSE, JNI_TRUE};
use jni::JNIEnv;
use std::time::Duration;

// The kinds `FileEvent.java` names (build.rs checks the values).
const CREATED: jint = 1;
const CLOSED_AFTER_WRITE: jint = 2;
const RENAMED: jint = 3;
const DELETED: jint = 4;

impl Source for EventFeed {
    type Item = FileEvent;
    const KIND: &'static str = "events";

    fn set_listening(&self, on: bool) {
        EventFeed::set_listening(self, on)
    }

    fn next_batch(&self, timeout: Duration) -> Vec<FileEvent> {
        EventFeed::next_batch(self, timeout)
    }

    fn deliver(
        env: &mut JNIEnv<'_>,
        c: &Cache,
        listener: &GlobalRef,
        batch: &[FileEvent],
    ) -> Result<Option<String>> {
        deliver(env, c, listener, batch)
    }
}

/// `setEventListener`: a null `listener` stops the event dispatcher of handle `id`; another one
/// replaces the listener of a running dispatcher, or starts one.
pub(super) fn set_event_listener(
    env: &mut JNIEnv<'_>,
    id: jlong,
    listener: &JObject<'_>,
) -> Result<()> {
    set_listener(env, id, listener, |i| &i.event_listener, Daemon::events)
}

/// The fields of `FileEvent(int kind, String path, String target, int uid, long size,
/// boolean isDirectory)` for one event: (kind, path, target, uid, size, is_directory).
fn fields(e: &FileEvent) -> (jint, &str, Option<&str>, u32, u64, bool) {
    match e {
        FileEvent::Created { path, uid } => (CREATED, path, None, *uid, 0, false),
        FileEvent::ClosedAfterWrite { path, uid, size } => {
            (CLOSED_AFTER_WRITE, path, None, *uid, *size, false)
        }
        FileEvent::Renamed {
            from,
            to,
            uid,
            is_directory,
        } => (RENAMED, from, Some(to), *uid, 0, *is_directory),
        FileEvent::Deleted { path, uid } => (DELETED, path, None, *uid, 0, false),
    }
}

fn deliver(
    env: &mut JNIEnv<'_>,
    c: &Cache,
    listener: &GlobalRef,
    batch: &[FileEvent],
) -> Result<Option<String>> {
    env.with_local_frame(8, |env| -> Result<Option<String>> {
        let array = env.new_object_array(batch.len() as jint, &c.file_event, JObject::null())?;
        for (i, e) in batch.iter().enumerate() {
            let (kind, path, target, uid, size, is_dir) = fields(e);
            let path = env.new_string(path)?;
            let target = match target {
                Some(t) => JObject::from(env.new_string(t)?),
                None => JObject::null(),
            };
            let args = [
                jvalue { i: kind },
                jvalue { l: path.as_raw() },
                jvalue { l: target.as_raw() },
                jvalue {
                    i: uid.min(i32::MAX as u32) as jint,
                },
                jvalue {
                    j: size.min(i64::MAX as u64) as jlong,
                },
                jvalue {
                    z: if is_dir { JNI_TRUE } else { JNI_FALSE },
                },
            ];
            // SAFETY: `file_event_ctor` was looked up on `file_event` with the signature
            // (ILjava/lang/String;Ljava/lang/String;IJZ)V, which `args` follows.
            let obj = unsafe { env.new_object_unchecked(&c.file_event, c.file_event_ctor, &args) }?;
            env.set_object_array_element(&array, i as jint, &obj)?;
            env.delete_local_ref(obj)?;
            env.delete_local_ref(path)?;
            env.delete_local_ref(target)?;
        }
        let args = [
            jvalue {
                l: listener.as_obj().as_raw(),
            },
            jvalue { l: array.as_raw() },
        ];
        // SAFETY: `deliver_events` was looked up on `fusegate` as a static method with the
        // signature (Ldev/fusegate/FileEventListener;[Ldev/fusegate/FileEvent;)Ljava/lang/String;,
        // which `args` and the return type follow.
        let ret = unsafe {
            env.call_static_method_unchecked(
                &c.fusegate,
                c.deliver_events,
                ReturnType::Object,
                &args,
            )
        }?;
        thrown(env, ret)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_its_java_fields() {
        let created = FileEvent::Created {
            path: "a".into(),
            uid: 7,
        };
        assert_eq!(fields(&created), (CREATED, "a", None, 7, 0, false));
        let closed = FileEvent::ClosedAfterWrite {
            path: "b".into(),
            uid: 8,
            size: 5,
        };
        assert_eq!(
            fields(&closed),
            (CLOSED_AFTER_WRITE, "b", None, 8, 5, false)
        );
        let renamed = FileEvent::Renamed {
            from: "c".into(),
            to: "d".into(),
            uid: 9,
            is_directory: true,
        };
        assert_eq!(fields(&renamed), (RENAMED, "c", Some("d"), 9, 0, true));
        let deleted = FileEvent::Deleted {
            path: "e".into(),
            uid: 10,
        };
        assert_eq!(fields(&deleted), (DELETED, "e", None, 10, 0, false));
    }
}
