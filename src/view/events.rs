//! File events for a media index: what apps create, write, rename and delete through the mount,
//! queued off the request path (see `feed.rs`) for the policy service or the CLI's JSON stream.
//! Paths are relative to the storage root. Events of one file come in the order its operations
//! completed.

use super::feed::Feed;
use serde::Serialize;

/// Undelivered events beyond this are dropped and counted (the listener then rescans).
pub const QUEUE_MAX: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FileEvent {
    /// A regular file was made (create, mknod, a new hard link).
    Created { path: String, uid: u32 },
    /// The last close of an open that could write: the moment a scanner wants.
    ClosedAfterWrite { path: String, uid: u32, size: u64 },
    /// A file or directory was moved (an exchange is two of these).
    Renamed {
        from: String,
        to: String,
        uid: u32,
        is_directory: bool,
    },
    /// A regular file (or another non-directory) was unlinked.
    Deleted { path: String, uid: u32 },
}

impl FileEvent {
    /// One JSON object, without the newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub type EventFeed = Feed<FileEvent>;

pub fn new_feed() -> EventFeed {
    Feed::new(QUEUE_MAX)
}

/// A path for an event (lower names need not be UTF-8).
pub fn text(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines() {
        let cases = [
            (
                FileEvent::Created {
                    path: "DCIM/a \"b\".jpg".into(),
                    uid: 10057,
                },
                r#"{"event":"created","path":"DCIM/a \"b\".jpg","uid":10057}"#,
            ),
            (
                FileEvent::ClosedAfterWrite {
                    path: "Download/x".into(),
                    uid: 1,
                    size: 5,
                },
                r#"{"event":"closed_after_write","path":"Download/x","uid":1,"size":5}"#,
            ),
            (
                FileEvent::Renamed {
                    from: "a".into(),
                    to: "b\n".into(),
                    uid: 2,
                    is_directory: true,
                },
                r#"{"event":"renamed","from":"a","to":"b\n","uid":2,"is_directory":true}"#,
            ),
            (
                FileEvent::Deleted {
                    path: "x".into(),
                    uid: 3,
                },
                r#"{"event":"deleted","path":"x","uid":3}"#,
            ),
        ];
        for (event, json) in cases {
            assert_eq!(event.to_json(), json);
        }
    }
}
