//! The scoped-storage rules: (caller, operation, target) -> decision, and listing filters.
//!
//! For app callers (neither bypass nor isolated), in this order:
//!
//! 1. `Android/{data,obb,media}/<pkg>` and below: everything allowed if the caller holds
//!    `<pkg>`; otherwise `data` and `obb` are ENOENT for every operation (existence hidden),
//!    while `media` falls through to the ordinary rules (its media are shared).
//! 2. The root itself: look up, list, read; nothing else (EACCES).
//! 3. Hidden objects (a dot-name anywhere in the path, or `under_nomedia`): ENOENT unless the
//!    caller owns it or has broad access. Creation ops are not subject to this: the new
//!    object has no owner yet, and the kernel has already looked up its parent as the caller.
//! 4. The skeleton (`Android`, `Android/{data,obb,media}`) is never deleted, renamed or
//!    replaced: EACCES.
//! 5. Directly in the root: creating, deleting, renaming (and changing a top-level directory)
//!    is EACCES without broad access; with it, directories may be made, removed and renamed
//!    there but files still may not be created (EACCES).
//! 6. Broad access (`manage_external_storage`, `legacy_storage`): everything else allowed.
//! 7. Directories: look up, list, read always; make, change, remove, rename below top level,
//!    except in `Android/` where only the skeleton may be (re)made (else EPERM on creation,
//!    EACCES on removal and change).
//! 8. Files: look up always; create (and rename to) only where the type belongs (EPERM);
//!    read with ownership, the matching `read_*` permission, or a grant; write, delete and
//!    rename from with ownership, `write_media` (media only) or a write grant (else EACCES).
//!
//! Reading an image one does not own without `access_media_location` is `AllowRedacted`
//! (broad access included). Bypass callers are never redacted.

use super::caller::{self, CallerClass};
use super::index::{AppEntry, Index};
use super::mime::{kind_of, MediaKind};
use super::owner::Tag;
use super::path::{PathInfo, TopDir};
use super::{Access, Decision, Op, Permissions, Target};
use libc::{EACCES, ENOENT, EPERM};

const ALLOW: Decision = Decision::Allow;
const NOT_FOUND: Decision = Decision::Deny(ENOENT);
const DENIED: Decision = Decision::Deny(EACCES);
const NOT_PERMITTED: Decision = Decision::Deny(EPERM);

pub fn decide(index: &Index, uid: u32, op: Op, target: &Target<'_>) -> Decision {
    match caller::classify(uid) {
        CallerClass::Bypass => ALLOW,
        CallerClass::Isolated => DENIED,
        CallerClass::App => {
            let app = App::new(index, uid);
            app.decide(op, &app.look_at(target))
        }
    }
}

/// Shown in a listing: bypass callers see everything, isolated ones nothing; an app sees what
/// it may look up, except files it may not read (unless it owns them).
pub fn listed(index: &Index, uid: u32, target: &Target<'_>) -> bool {
    match caller::classify(uid) {
        CallerClass::Bypass => true,
        CallerClass::Isolated => false,
        CallerClass::App => {
            let app = App::new(index, uid);
            let subject = app.look_at(target);
            let visible = |op| !matches!(app.decide(op, &subject), Decision::Deny(_));
            visible(Op::Lookup) && (target.is_dir || visible(Op::Read))
        }
    }
}

/// Whether a Lookup answer may differ between (non-bypass, non-isolated) callers.
pub fn caller_dependent(target: &Target<'_>) -> bool {
    let info = PathInfo::of(target.path);
    info.hidden || target.under_nomedia || info.app_dir.is_some_and(|d| d.kind.is_private())
}

/// An app caller, with its entry if the table has one.
struct App<'s> {
    uid: u32,
    entry: Option<&'s AppEntry>,
    index: &'s Index,
    /// All-files access: `manage_external_storage` or `legacy_storage`.
    broad: bool,
}

/// The target as one caller sees it, whatever the operation.
struct Subject<'t> {
    target: &'t Target<'t>,
    info: PathInfo<'t>,
    /// The caller owns it (by its owner tag).
    owner: bool,
}

impl<'s> App<'s> {
    fn new(index: &'s Index, uid: u32) -> Self {
        let entry = index.app(uid);
        let broad = Permissions::MANAGE_EXTERNAL_STORAGE | Permissions::LEGACY_STORAGE;
        App {
            uid,
            entry,
            index,
            broad: entry.is_some_and(|e| e.permissions.has(broad)),
        }
    }

    fn has(&self, bit: u32) -> bool {
        self.entry.is_some_and(|e| e.permissions.has(bit))
    }

    fn holds(&self, package: &[u8]) -> bool {
        self.entry.is_some_and(|e| e.holds(package))
    }

    fn look_at<'t>(&self, target: &'t Target<'t>) -> Subject<'t> {
        let packages = self
            .entry
            .into_iter()
            .flat_map(|e| e.packages.iter().map(|p| &**p));
        let owner = target
            .owner
            .and_then(Tag::parse)
            .is_some_and(|tag| tag.owned_by(self.uid, packages));
        Subject {
            target,
            info: PathInfo::of(target.path),
            owner,
        }
    }

    fn grant(&self, path: &[u8]) -> Option<Access> {
        self.index.grant(self.uid, path)
    }

    fn decide(&self, op: Op, subject: &Subject<'_>) -> Decision {
        let info = &subject.info;

        // 1. App-specific directories.
        if let Some(dir) = info.app_dir {
            if self.holds(dir.package) {
                return ALLOW;
            }
            if dir.kind.is_private() {
                return NOT_FOUND;
            }
        }

        // 2. The root itself.
        if info.depth == 0 {
            return match op {
                Op::Lookup | Op::ListDir | Op::Read => ALLOW,
                _ => DENIED,
            };
        }

        // 3. Hidden names and .nomedia trees.
        let creating = matches!(op, Op::Create | Op::Mkdir | Op::RenameTo);
        let hidden = info.hidden || subject.target.under_nomedia;
        if hidden && !self.broad && !subject.owner && !creating {
            return NOT_FOUND;
        }

        // 4. The skeleton of Android/.
        if info.skeleton && matches!(op, Op::Delete | Op::RenameFrom | Op::RenameTo) {
            return DENIED;
        }

        let dir_op = match op {
            Op::Mkdir | Op::ListDir => true,
            Op::Create => false,
            _ => subject.target.is_dir,
        };

        // 5. Directly in the root: no changes without broad access, and no new files even
        // with it.
        if info.depth == 1 {
            let structural = match op {
                Op::Create | Op::Mkdir | Op::Delete | Op::RenameFrom | Op::RenameTo => true,
                Op::Write => dir_op,
                Op::Lookup | Op::Read | Op::ListDir => false,
            };
            let new_file = !dir_op && matches!(op, Op::Create | Op::RenameTo);
            if structural && (!self.broad || new_file) {
                return DENIED;
            }
        }

        if dir_op {
            self.directory(op, info)
        } else {
            self.file(op, subject)
        }
    }

    /// 6, 7: operations on a directory below the root. (`Create` never gets here.)
    fn directory(&self, op: Op, info: &PathInfo<'_>) -> Decision {
        match op {
            Op::Lookup | Op::ListDir | Op::Read => ALLOW,
            _ if self.broad || info.top != TopDir::Android => ALLOW,
            // In Android/, outside the caller's own app directories.
            Op::Mkdir | Op::Create | Op::RenameTo if info.skeleton => ALLOW,
            Op::Mkdir | Op::Create | Op::RenameTo => NOT_PERMITTED,
            Op::Write | Op::Delete | Op::RenameFrom => DENIED,
        }
    }

    /// 6, 8: operations on a file. (`Mkdir` and `ListDir` never get here.)
    fn file(&self, op: Op, subject: &Subject<'_>) -> Decision {
        let kind = kind_of(subject.info.name);
        let path = subject.target.path;
        match op {
            Op::Lookup => ALLOW,
            Op::Create | Op::RenameTo => {
                if self.broad || may_create(subject.info.top, kind) {
                    ALLOW
                } else {
                    NOT_PERMITTED
                }
            }
            Op::Read | Op::ListDir => {
                if subject.owner {
                    return ALLOW;
                }
                let permission = match kind {
                    MediaKind::Image => Permissions::READ_IMAGES,
                    MediaKind::Video => Permissions::READ_VIDEO,
                    MediaKind::Audio => Permissions::READ_AUDIO,
                    MediaKind::Other => 0,
                };
                let readable = self.broad || self.has(permission) || self.grant(path).is_some();
                if !readable {
                    DENIED
                } else if kind == MediaKind::Image && !self.has(Permissions::ACCESS_MEDIA_LOCATION)
                {
                    Decision::AllowRedacted
                } else {
                    ALLOW
                }
            }
            Op::Write | Op::Delete | Op::RenameFrom | Op::Mkdir => {
                let writable = subject.owner
                    || self.broad
                    || (kind.is_media() && self.has(Permissions::WRITE_MEDIA))
                    || self.grant(path) == Some(Access::Write);
                if writable {
                    ALLOW
                } else {
                    DENIED
                }
            }
        }
    }
}

/// Where an app without broad access may create a file of this kind (outside its own app
/// directories, which take any file).
fn may_create(top: TopDir, kind: MediaKind) -> bool {
    use TopDir::*;
    match top {
        Download | Documents => true,
        Dcim | Pictures | Movies => matches!(kind, MediaKind::Image | MediaKind::Video),
        Music | Podcasts | Ringtones | Alarms | Notifications | Audiobooks | Recordings => {
            kind == MediaKind::Audio
        }
        Android | Other => false,
    }
}
