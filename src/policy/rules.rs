//! The scoped-storage rules: (caller, operation, target) -> decision, and listing filters.
//!
//! For app callers (not bypass, isolated or POSIX), in this order:
//!
//! 0. Hard links (`Link`), symlinks and fifos (`Special`) are never made by apps: EPERM, as on
//!    Android's emulated storage (and a symlink or fifo could not carry an owner on ext4).
//! 1. `Android/{data,obb,media}/<pkg>` and below: everything allowed if the caller holds
//!    `<pkg>`; otherwise `data` and `obb` answer ENOENT to every look (lookup, open, list,
//!    delete) and EACCES to every creation of the name, whether it exists or not (no
//!    existence oracle), while `media` falls through to the ordinary rules (its media are
//!    shared).
//! 2. The root itself: look up, list, read; nothing else (EACCES).
//! 3. Hidden objects (a dot-name anywhere in the path, or `under_nomedia`) are not secret by
//!    name: lookup succeeds. Without ownership or broad access, a hidden file is not opened,
//!    changed, deleted or renamed (EACCES) unless a grant says so, and a hidden directory is
//!    not changed; listings omit what the caller does not own (see `listed`).
//! 4. The skeleton (`Android`, `Android/{data,obb,media}`) is never deleted, renamed or
//!    replaced: EACCES.
//! 5. Directly in the root: creating, deleting, renaming (and changing a top-level directory)
//!    is EACCES without broad access; with it, directories other than the standard ones may
//!    be made, removed and renamed there, but files still may not be created (EACCES).
//! 6. Broad access (`manage_external_storage`, `legacy_storage`): everything else allowed.
//! 7. Directories: look up, list, read always; make, change, remove, rename below top level,
//!    except in `Android/` where only the skeleton may be (re)made (else EPERM on creation,
//!    EACCES on removal and change).
//! 8. Files: look up always; create (and rename to) only where the type belongs (EPERM);
//!    read with ownership, the matching `read_*` permission, or a grant; write, delete and
//!    rename from with ownership, `write_media` (media only) or a write grant (else EACCES).
//!
//! Reading an image or a video one does not own without `access_media_location` is
//! `AllowRedacted` (broad access included), as on Android: both can carry a location. Bypass callers are never redacted.
//!
//! Moves (`rename`) are judged on everything they move and replace, see [`decide_move`]:
//! shared storage and each `Android/{data,obb}/<pkg>` are separate areas (EXDEV between
//! them, as between Android's separate mounts); the source must be deletable, its type
//! creatable at the destination, a replaced target deletable, and for a directory every file
//! below it is judged the same way (the view walks the subtree).

use super::caller::CallerClass;
use super::index::{AppEntry, Index};
use super::mime::{kind_of, MediaKind};
use super::owner::Tag;
use super::path::{PathInfo, TopDir};
use super::{Access, Decision, Op, Permissions, Target};
use libc::{EACCES, ENOENT, EPERM, EXDEV};

const ALLOW: Decision = Decision::Allow;
const NOT_FOUND: Decision = Decision::Deny(ENOENT);
const DENIED: Decision = Decision::Deny(EACCES);
const NOT_PERMITTED: Decision = Decision::Deny(EPERM);

pub fn decide(index: &Index, uid: u32, op: Op, target: &Target<'_>) -> Decision {
    match index.class(uid) {
        CallerClass::Bypass | CallerClass::Posix => ALLOW,
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
    match index.class(uid) {
        CallerClass::Bypass | CallerClass::Posix => true,
        CallerClass::Isolated => false,
        CallerClass::App => {
            let app = App::new(index, uid);
            let subject = app.look_at(target);
            if subject.hidden() && !app.broad && !subject.owner {
                return false;
            }
            let visible = |op| !matches!(app.decide(op, &subject), Decision::Deny(_));
            visible(Op::Lookup) && (target.is_dir || visible(Op::Read))
        }
    }
}

/// The separate areas of the storage: shared storage, and each `Android/{data,obb}/<pkg>`
/// (separate mounts on Android, so a rename between two of them is EXDEV).
fn area(path: &[u8]) -> Option<(bool, &[u8])> {
    let info = PathInfo::of(path);
    info.app_dir
        .filter(|d| d.kind.is_private())
        .map(|d| (d.kind == super::path::AppDirKind::Data, d.package))
}

/// Whether a rename from `from` to `to` crosses areas (compared as the rules compare names).
pub fn crosses_areas(from: &[u8], to: &[u8]) -> bool {
    match (area(from), area(to)) {
        (None, None) => false,
        (Some((a_data, a)), Some((b_data, b))) => a_data != b_data || !a.eq_ignore_ascii_case(b),
        _ => true,
    }
}

/// One object moved (or replaced, or exchanged) by a rename, as the view found it.
#[derive(Debug, Clone, Copy)]
pub struct Move<'a> {
    /// The source object, at its current path.
    pub from: &'a Target<'a>,
    /// Its path after the move, and whether that place is under a `.nomedia` tree.
    pub to: &'a [u8],
    pub to_under_nomedia: bool,
    /// What the rename replaces at `to` (plain rename) or swaps with (`exchange`).
    pub replaced: Option<&'a Target<'a>>,
    pub exchange: bool,
}

/// May `uid` rename `m.from` to `m.to`? For a directory this judges the directory itself; the
/// view also asks [`decide_moved_entry`] for every file below it. EXDEV first (it never
/// depends on existence), then the source (EACCES), the destination type (EPERM), and what is
/// replaced (EACCES) or swapped (judged at the other's place).
pub fn decide_move(index: &Index, uid: u32, m: &Move<'_>) -> Decision {
    match judge_move(index, uid, m) {
        Ok(()) => ALLOW,
        Err(d) => d,
    }
}

fn judge_move(index: &Index, uid: u32, m: &Move<'_>) -> Result<(), Decision> {
    let class = index.class(uid);
    if matches!(class, CallerClass::Bypass | CallerClass::Posix) {
        return Ok(());
    }
    if crosses_areas(m.from.path, m.to) {
        return Err(Decision::Deny(EXDEV));
    }
    if class == CallerClass::Isolated {
        return Err(DENIED);
    }
    let app = App::new(index, uid);
    let from = app.look_at(m.from);
    let from_op = if m.exchange {
        Op::Write
    } else {
        Op::RenameFrom
    };
    deny_or(app.decide(from_op, &from))?;
    let arriving = Target {
        path: m.to,
        is_dir: m.from.is_dir,
        owner: m.from.owner,
        under_nomedia: m.to_under_nomedia,
    };
    deny_or(app.decide(Op::RenameTo, &app.look_at(&arriving)))?;
    if let Some(replaced) = m.replaced {
        let there = app.look_at(replaced);
        if m.exchange {
            deny_or(app.decide(Op::Write, &there))?;
            deny_or(app.decide(Op::RenameFrom, &there))?;
            let back = Target {
                path: m.from.path,
                is_dir: replaced.is_dir,
                owner: replaced.owner,
                under_nomedia: m.from.under_nomedia,
            };
            deny_or(app.decide(Op::RenameTo, &app.look_at(&back)))?;
        } else {
            deny_or(app.decide(Op::Delete, &there))?;
        }
    }
    Ok(())
}

/// A file or directory below a moved directory: it must be deletable where it is (EACCES)
/// and its type creatable where it lands (EPERM). `to` is its path after the move.
pub fn decide_moved_entry(
    index: &Index,
    uid: u32,
    entry: &Target<'_>,
    to: &[u8],
    to_under_nomedia: bool,
) -> Decision {
    match index.class(uid) {
        CallerClass::Bypass | CallerClass::Posix => return ALLOW,
        CallerClass::Isolated => return DENIED,
        CallerClass::App => {}
    }
    let app = App::new(index, uid);
    let subject = app.look_at(entry);
    if entry.is_dir {
        // Directories below carry nothing of their own: their files are judged one by one.
        return ALLOW;
    }
    if let Decision::Deny(e) = app.decide(Op::Delete, &subject) {
        return Decision::Deny(e);
    }
    let arriving = Target {
        path: to,
        is_dir: false,
        owner: entry.owner,
        under_nomedia: to_under_nomedia,
    };
    match app.decide(Op::RenameTo, &app.look_at(&arriving)) {
        Decision::Deny(e) => Decision::Deny(e),
        _ => ALLOW,
    }
}

/// Whether a move of this directory by an app needs its subtree judged file by file: not
/// inside the caller's own app directory (everything there is its own), not for callers the
/// rules do not bind.
pub fn move_needs_walk(index: &Index, uid: u32, from: &[u8]) -> bool {
    if index.class(uid) != CallerClass::App {
        return false;
    }
    let app = App::new(index, uid);
    !PathInfo::of(from)
        .app_dir
        .is_some_and(|d| app.holds(d.package))
}

/// The mode an app may set: permission bits only. Setuid, setgid and sticky are never set for
/// an app (silently dropped, as the kernel drops setgid for a non-member).
pub fn app_mode(mode: u32) -> u32 {
    mode & 0o777
}

fn deny_or(d: Decision) -> Result<(), Decision> {
    match d {
        Decision::Deny(_) => Err(d),
        _ => Ok(()),
    }
}

/// Whether a Lookup answer may differ between apps: only in the private app directories
/// (hidden names are visible to every app by name).
pub fn caller_dependent(target: &Target<'_>) -> bool {
    PathInfo::of(target.path)
        .app_dir
        .is_some_and(|d| d.kind.is_private())
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

impl Subject<'_> {
    /// A dot-name on the path, or inside a `.nomedia` tree.
    fn hidden(&self) -> bool {
        self.info.hidden || self.target.under_nomedia
    }
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

        // 0. No hard links, symlinks or fifos from apps.
        if matches!(op, Op::Link | Op::Special) {
            return NOT_PERMITTED;
        }

        // 1. App-specific directories.
        if let Some(dir) = info.app_dir {
            if self.holds(dir.package) {
                return ALLOW;
            }
            if dir.kind.is_private() {
                return if op.creates() { DENIED } else { NOT_FOUND };
            }
        }

        // 2. The root itself.
        if info.depth == 0 {
            return match op {
                Op::Lookup | Op::ListDir | Op::Read => ALLOW,
                _ => DENIED,
            };
        }

        // 3. Hidden names and .nomedia trees: visible by name, closed to others.
        if subject.hidden() && !self.broad && !subject.owner {
            let is_dir = subject.target.is_dir;
            let closed = match op {
                Op::Read => !is_dir && self.grant(subject.target.path).is_none(),
                Op::Write => is_dir || self.grant(subject.target.path) != Some(Access::Write),
                Op::Delete | Op::RenameFrom => {
                    !is_dir && self.grant(subject.target.path) != Some(Access::Write)
                }
                _ => false,
            };
            if closed {
                return DENIED;
            }
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

        // 5. Directly in the root: no changes without broad access, no new files even with
        // it, and the standard directories stay whatever the caller holds.
        if info.depth == 1 {
            let structural = match op {
                Op::Create | Op::Mkdir | Op::Delete | Op::RenameFrom | Op::RenameTo => true,
                Op::Write => dir_op,
                Op::Lookup | Op::Read | Op::ListDir | Op::Link | Op::Special => false,
            };
            let new_file = !dir_op && matches!(op, Op::Create | Op::RenameTo);
            let standard = info.top != TopDir::Other
                && matches!(op, Op::Delete | Op::RenameFrom | Op::RenameTo);
            if structural && (!self.broad || new_file || standard) {
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
            Op::Mkdir | Op::Create | Op::RenameTo | Op::Link | Op::Special => NOT_PERMITTED,
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
                } else if matches!(kind, MediaKind::Image | MediaKind::Video)
                    && !self.has(Permissions::ACCESS_MEDIA_LOCATION)
                {
                    Decision::AllowRedacted
                } else {
                    ALLOW
                }
            }
            Op::Link | Op::Special => NOT_PERMITTED,
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
