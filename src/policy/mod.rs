//! Android scoped-storage policy: a pure function of (caller, operation, path, file facts,
//! app table, grants) to a decision. No I/O, no FUSE types, no JNI.
//!
//! * `caller.rs`: uid classes (bypass, isolated, app);
//! * `mime.rs`: file name extension -> media kind;
//! * `path.rs`: normalizing user paths, case folding, classifying a relative path;
//! * `owner.rs`: the owner tag recorded on created files;
//! * `table.rs`: checking app / grant input; `index.rs`: the precomputed lookup tables;
//! * `rules.rs`: the decisions themselves (see there for the rule order);
//! * `config.rs`: the TOML policy file.
//!
//! The live [`Policy`] hands out immutable [`Snapshot`]s; each change builds a new one.

mod caller;
mod config;
mod index;
mod mime;
mod owner;
mod path;
mod rules;
mod table;
mod trie;

#[cfg(test)]
mod rules_tests;

pub use caller::{CallerClass, DEFAULT_PLATFORM_APP_IDS};
pub use config::parse_config;
pub use mime::MediaKind;
pub use rules::{app_mode, crosses_areas, Move};

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Permission bits; the numeric values are the Java API's constants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u32);

impl Permissions {
    pub const READ_IMAGES: u32 = 1;
    pub const READ_VIDEO: u32 = 2;
    pub const READ_AUDIO: u32 = 4;
    pub const ACCESS_MEDIA_LOCATION: u32 = 8;
    pub const WRITE_MEDIA: u32 = 16;
    pub const MANAGE_EXTERNAL_STORAGE: u32 = 32;
    pub const LEGACY_STORAGE: u32 = 64;
    pub const ALL: u32 = 127;

    /// `None` if an unknown bit is set.
    pub fn from_bits(bits: u32) -> Option<Self> {
        (bits & !Self::ALL == 0).then_some(Permissions(bits))
    }
    pub fn bits(self) -> u32 {
        self.0
    }
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub uid: u32,
    pub packages: Vec<String>,
    pub permissions: Permissions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

/// The whole configuration: what a policy file or Java pushes.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub apps: Vec<App>,
    /// (uid, normalized relative path, access)
    pub grants: Vec<(u32, String, Access)>,
    /// App ids (uid % 100000) that bypass the rules besides root; `None` means
    /// [`DEFAULT_PLATFORM_APP_IDS`].
    pub platform_uids: Option<Vec<u32>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("invalid path {0:?}: must be relative, without '..' or empty components")]
    BadPath(String),
    #[error("invalid uid {0}")]
    BadUid(i64),
    #[error("unknown permission bits {0:#x}")]
    BadPermissions(u32),
    #[error("invalid package name {0:?}: must be non-empty, without '/' or control characters")]
    BadPackage(String),
    #[error("two app entries for uid {0}")]
    DuplicateUid(u32),
    #[error("line {line}: {message}")]
    Config { line: usize, message: String },
}

/// What the caller wants to do to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Resolve the name / read its attributes.
    Lookup,
    /// Open for reading.
    Read,
    /// Open for writing, truncate, chmod, utimes, set xattr.
    Write,
    /// Create a file (create, mknod, symlink, the new name of a link) at the target path.
    Create,
    /// Create a directory at the target path.
    Mkdir,
    /// Unlink a file or remove a directory (`Target::is_dir`).
    Delete,
    /// The old name of a rename.
    RenameFrom,
    /// The new name of a rename (the target facts describe the object being moved).
    RenameTo,
    /// Open a directory for listing.
    ListDir,
    /// The new name of a hard link.
    Link,
    /// Create a symlink or a fifo at the target path.
    Special,
}

impl Op {
    /// Operations that bring a new name into existence.
    pub fn creates(self) -> bool {
        matches!(
            self,
            Op::Create | Op::Mkdir | Op::RenameTo | Op::Link | Op::Special
        )
    }
}

/// Every decision about one existing object for one caller, from one policy call: what the
/// view caches per (caller, node), so that getattr-then-open or O_RDWR ask once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdicts([u8; 6]);

impl Verdicts {
    const OPS: [Op; 6] = [
        Op::Lookup,
        Op::Read,
        Op::Write,
        Op::Delete,
        Op::RenameFrom,
        Op::ListDir,
    ];
    const ALLOW: u8 = 0;
    const REDACTED: u8 = 1;

    fn encode(d: Decision) -> u8 {
        match d {
            Decision::Allow => Self::ALLOW,
            Decision::AllowRedacted => Self::REDACTED,
            // Every errno the rules give fits a byte (and is above 1).
            Decision::Deny(e) => u8::try_from(e).unwrap_or(libc::EACCES as u8).max(2),
        }
    }

    /// The decision for `op`; `None` for operations that are not about an existing object.
    pub fn get(&self, op: Op) -> Option<Decision> {
        let i = Self::OPS.iter().position(|&o| o == op)?;
        Some(match self.0[i] {
            Self::ALLOW => Decision::Allow,
            Self::REDACTED => Decision::AllowRedacted,
            e => Decision::Deny(i32::from(e)),
        })
    }
}

/// Facts about the object, gathered by the storage view (the only part that does I/O).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Relative to the storage root, components joined by '/', no leading or trailing '/';
    /// empty for the root itself. Raw bytes of the lower names.
    pub path: &'a [u8],
    pub is_dir: bool,
    /// The owner tag recorded on the lower file at creation (see `Snapshot::owner_tag`).
    pub owner: Option<&'a [u8]>,
    /// Some ancestor directory holds a `.nomedia` file.
    pub under_nomedia: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed, but location metadata must be redacted: never passthrough.
    AllowRedacted,
    /// Denied with this (positive) errno.
    Deny(i32),
}

/// An immutable view of the table, shared by all workers; each change makes a new one that
/// shares every part the change did not touch.
#[derive(Debug, Default)]
pub struct Snapshot {
    index: index::Index,
    generation: u64,
}

impl Snapshot {
    /// Builds a snapshot of `table` (generation 0). Invalid entries are skipped with a warning;
    /// use [`Table::validate`] first to refuse them instead.
    pub fn new(table: Table) -> Self {
        Snapshot {
            index: index::Index::build(&table, 0),
            generation: 0,
        }
    }

    /// The table this snapshot holds, rebuilt on each call (apps sorted by uid, grants in no
    /// particular order): for inspection, not for a hot path.
    pub fn table(&self) -> Table {
        self.index.to_table()
    }

    /// The [`Policy::generation`] this snapshot belongs to: every change makes a new one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The generation of the last change that can alter `uid`'s decisions (a change of its
    /// entry or grants, or a table-wide change): results cached for `uid` under it stay valid
    /// while [`Policy::generation_of`] still returns it. It never goes back, and a change of
    /// another uid leaves it as it is.
    pub fn generation_of(&self, uid: u32) -> u64 {
        self.index.generation_of(uid)
    }

    /// The packages of `uid`'s app entry, as given (empty without an entry).
    pub fn packages(&self, uid: u32) -> Vec<String> {
        self.index.packages(uid)
    }

    /// May `uid` do `op` to `target`? The rules are in `rules.rs`.
    pub fn decide(&self, uid: u32, op: Op, target: &Target<'_>) -> Decision {
        rules::decide(&self.index, uid, op, target)
    }

    /// Every decision about an existing object at once (see [`Verdicts`]).
    pub fn decide_all(&self, uid: u32, target: &Target<'_>) -> Verdicts {
        Verdicts(Verdicts::OPS.map(|op| Verdicts::encode(self.decide(uid, op, target))))
    }

    /// How the rules treat `uid` (root and the platform uids bypass them).
    pub fn class(&self, uid: u32) -> CallerClass {
        self.index.class(uid)
    }

    /// Root and the platform uids: no rules, the daemon acts for them as it is.
    pub fn bypasses(&self, uid: u32) -> bool {
        self.class(uid) == CallerClass::Bypass
    }

    /// Apps and isolated processes: the scoped-storage rules apply.
    pub fn judged(&self, uid: u32) -> bool {
        matches!(self.class(uid), CallerClass::App | CallerClass::Isolated)
    }

    /// May `uid` make this rename? See `rules::decide_move`.
    pub fn decide_move(&self, uid: u32, m: &Move<'_>) -> Decision {
        rules::decide_move(&self.index, uid, m)
    }

    /// A file or directory below a directory being moved; `to` is its path after the move.
    pub fn decide_moved_entry(
        &self,
        uid: u32,
        entry: &Target<'_>,
        to: &[u8],
        to_under_nomedia: bool,
    ) -> Decision {
        rules::decide_moved_entry(&self.index, uid, entry, to, to_under_nomedia)
    }

    /// Whether moving the directory at `from` needs every file below it judged.
    pub fn move_needs_walk(&self, uid: u32, from: &[u8]) -> bool {
        rules::move_needs_walk(&self.index, uid, from)
    }

    /// Whether a directory listing shows the target to this caller.
    pub fn listed(&self, uid: u32, target: &Target<'_>) -> bool {
        rules::listed(&self.index, uid, target)
    }

    /// What the view records on a file created by `uid` (the owner xattr value):
    /// `"<uid>:<first package>"`, or `"<uid>"` for a uid without packages. See `owner.rs`.
    pub fn owner_tag(&self, uid: u32) -> Vec<u8> {
        match self.index.app(uid) {
            Some(app) => app.tag.to_vec(),
            None => owner::encode(uid, None),
        }
    }
}

/// Whether the answer for this path can depend on who asks: the kernel must then not cache
/// the entry (entry timeout 0), since its caches are shared by all apps. True for
/// `Android/data/<x>`, `Android/obb/<x>` and below.
pub fn caller_dependent(target: &Target<'_>) -> bool {
    rules::caller_dependent(target)
}

/// The media kind of a file name, by extension (case-insensitive).
pub fn media_kind(name: &[u8]) -> MediaKind {
    mime::kind_of(name)
}

/// Whether two names (or paths) are the same to the policy: compared case-insensitively, as
/// grants and package names are.
pub fn names_match(a: &[u8], b: &[u8]) -> bool {
    path::fold_eq(a, b)
}

/// A hash of the case-folded name: `names_match(a, b)` implies equal hashes.
pub fn name_hash(name: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = index::FxHasher::default();
    path::fold_hash(name, &mut hasher);
    hasher.finish()
}

/// Checks a user-supplied relative path (policy file, Java) and returns it normalized; see
/// [`PolicyError::BadPath`].
pub fn normalize_path(path: &str) -> Result<String, PolicyError> {
    path::normalize(path)
}

/// The live policy: a snapshot swapped atomically on each change ([`ArcSwap`]: readers never
/// wait for a writer, nor for each other).
#[derive(Debug)]
pub struct Policy {
    current: ArcSwap<Snapshot>,
    /// Serializes changes (each builds on the snapshot before it).
    writer: Mutex<()>,
    /// The current snapshot's generation, readable with one atomic load.
    generation: AtomicU64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(Table::default())
    }
}

impl Policy {
    /// A policy starting with `table`. Invalid entries are skipped with a warning (use
    /// [`Table::validate`] to refuse them).
    pub fn new(table: Table) -> Self {
        Policy {
            current: ArcSwap::from_pointee(Snapshot::new(table)),
            writer: Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    /// The current snapshot (an `Arc` clone, no lock).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Incremented on every change, after the new snapshot is in place.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// See [`Snapshot::generation_of`]: what results cached for `uid` are stamped with. Read it
    /// before taking the snapshot that decides (or use the snapshot's own), so that a result
    /// is never stamped newer than the table it came from.
    pub fn generation_of(&self, uid: u32) -> u64 {
        self.current.load().generation_of(uid)
    }

    /// Applies one change as a new generation. Cloning the index is a few `Arc` increments;
    /// `f` copies only what it changes.
    fn update(&self, f: impl FnOnce(&mut index::Index, u64)) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load();
        let generation = current.generation + 1;
        let mut index = current.index.clone();
        drop(current);
        f(&mut index, generation);
        self.current.store(Arc::new(Snapshot { index, generation }));
        self.generation.store(generation, Ordering::Release);
    }

    /// Adds or replaces the entry for `app.uid`. Refuses uids of 2^31 and above
    /// ([`PolicyError::BadUid`]) and empty or malformed package names
    /// ([`PolicyError::BadPackage`]).
    pub fn set_app(&self, app: App) -> Result<(), PolicyError> {
        table::check_app(&app)?;
        self.update(|index, generation| index.set_app(&app, generation));
        Ok(())
    }

    pub fn remove_app(&self, uid: u32) {
        self.update(|index, generation| index.remove_app(uid, generation));
    }

    /// Gives `uid` `access` to one file, replacing any grant it had on that path (compared
    /// case-insensitively). The path is normalized; bad paths are refused.
    pub fn grant(&self, uid: u32, path: &str, access: Access) -> Result<(), PolicyError> {
        table::check_uid(i64::from(uid))?;
        let path = path::normalize(path)?;
        self.update(|index, generation| index.set_grant(uid, &path, access, generation));
        Ok(())
    }

    /// Removes `uid`'s grant on the path (compared case-insensitively), if any.
    pub fn revoke(&self, uid: u32, path: &str) -> Result<(), PolicyError> {
        table::check_uid(i64::from(uid))?;
        let path = path::normalize(path)?;
        self.update(|index, generation| index.revoke(uid, &path, generation));
        Ok(())
    }

    /// Replaces the whole table. Invalid entries are skipped with a warning; see
    /// [`Policy::try_replace`].
    pub fn replace(&self, table: Table) {
        self.update(|index, generation| *index = index::Index::build(&table, generation));
    }

    /// Replaces the whole table if [`Table::validate`] accepts it.
    pub fn try_replace(&self, table: Table) -> Result<(), PolicyError> {
        table.validate()?;
        self.replace(table);
        Ok(())
    }

    /// Many changes as ONE generation (one snapshot rebuild), for a service that pushes much
    /// at once (at boot: every app, thousands of grants): `apps` are set or replaced, then
    /// `revokes` removed, then `grants` given, each replacing the grant its uid had on the path.
    /// Within the batch a later entry for the same uid (apps) or uid and path (grants) wins.
    /// Every entry is checked first, as the one-change methods check it: if one is bad,
    /// nothing changes. An empty batch changes nothing (no new generation).
    pub fn apply_batch(
        &self,
        apps: Vec<App>,
        grants: Vec<(u32, String, Access)>,
        revokes: Vec<(u32, String)>,
    ) -> Result<(), PolicyError> {
        let checked = |uid: u32, p: &str| -> Result<String, PolicyError> {
            table::check_uid(i64::from(uid))?;
            path::normalize(p)
        };
        apps.iter().try_for_each(table::check_app)?;
        let grants = grants
            .into_iter()
            .map(|(uid, p, access)| Ok((uid, checked(uid, &p)?, access)))
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let revokes = revokes
            .into_iter()
            .map(|(uid, p)| Ok((uid, checked(uid, &p)?)))
            .collect::<Result<Vec<_>, PolicyError>>()?;
        if apps.is_empty() && grants.is_empty() && revokes.is_empty() {
            return Ok(());
        }
        // In order, so the last entry of each uid / (uid, path) wins. Nodes copied from the
        // current snapshot are owned afterwards: the batch copies each at most once.
        self.update(|index, generation| {
            for app in &apps {
                index.set_app(app, generation);
            }
            for (uid, path) in &revokes {
                index.revoke(*uid, path, generation);
            }
            for (uid, path, access) in &grants {
                index.set_grant(*uid, path, *access, generation);
            }
        });
        Ok(())
    }
}

/// Whether a table grant is `uid`'s on `path` (paths compared case-insensitively).
fn same_grant(grant: &(u32, String, Access), uid: u32, path: &str) -> bool {
    grant.0 == uid && path::fold_eq(grant.1.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_updates() {
        let policy = Policy::default();
        assert_eq!(policy.generation(), 0);
        let camera = App {
            uid: 10057,
            packages: vec!["com.example.camera".into()],
            permissions: Permissions::from_bits(Permissions::READ_IMAGES).unwrap(),
        };
        policy.set_app(camera.clone()).unwrap();
        assert_eq!(policy.generation(), 1);
        let snap = policy.snapshot();
        assert_eq!(snap.generation(), 1);
        assert_eq!(snap.table().apps, vec![camera.clone()]);
        assert_eq!(snap.owner_tag(10057), b"10057:com.example.camera");
        assert_eq!(snap.owner_tag(10058), b"10058");
        assert_eq!(snap.owner_tag(0), b"0");

        let bad_uid = App {
            uid: 1 << 31,
            ..camera.clone()
        };
        assert_eq!(policy.set_app(bad_uid), Err(PolicyError::BadUid(1 << 31)));
        let bad_pkg = App {
            packages: vec!["".into()],
            ..camera.clone()
        };
        assert_eq!(
            policy.set_app(bad_pkg),
            Err(PolicyError::BadPackage("".into()))
        );
        assert_eq!(policy.generation(), 1);

        let replaced = App {
            packages: vec!["com.example.camera2".into()],
            ..camera
        };
        policy.set_app(replaced.clone()).unwrap();
        assert_eq!(policy.snapshot().table().apps, vec![replaced]);

        let file = Target {
            path: b"Download/doc.pdf",
            is_dir: false,
            owner: None,
            under_nomedia: false,
        };
        let read = |p: &Policy| p.snapshot().decide(10057, Op::Read, &file);
        assert_eq!(read(&policy), Decision::Deny(libc::EACCES));
        policy
            .grant(10057, "download/DOC.pdf", Access::Read)
            .unwrap();
        assert_eq!(read(&policy), Decision::Allow);
        let write = |p: &Policy| p.snapshot().decide(10057, Op::Write, &file);
        assert_eq!(write(&policy), Decision::Deny(libc::EACCES));
        policy
            .grant(10057, "Download/doc.pdf", Access::Write)
            .unwrap();
        assert_eq!(write(&policy), Decision::Allow);
        assert_eq!(policy.snapshot().table().grants.len(), 1);
        assert_eq!(
            policy.grant(10057, "/Download/doc.pdf", Access::Read),
            Err(PolicyError::BadPath("/Download/doc.pdf".into()))
        );
        assert_eq!(
            policy.grant(u32::MAX, "Download/doc.pdf", Access::Read),
            Err(PolicyError::BadUid(u32::MAX.into()))
        );
        assert_eq!(
            policy.revoke(10057, "Download/../doc.pdf"),
            Err(PolicyError::BadPath("Download/../doc.pdf".into()))
        );
        let before = policy.generation();
        policy.revoke(10057, "DOWNLOAD/doc.PDF").unwrap();
        assert_eq!(policy.generation(), before + 1);
        assert_eq!(read(&policy), Decision::Deny(libc::EACCES));
        assert!(policy.snapshot().table().grants.is_empty());

        policy.remove_app(10057);
        assert!(policy.snapshot().table().apps.is_empty());
        assert_eq!(policy.snapshot().owner_tag(10057), b"10057");

        let bad = Table {
            grants: vec![(10057, "a//b".into(), Access::Read)],
            ..Table::default()
        };
        assert_eq!(
            policy.try_replace(bad.clone()),
            Err(PolicyError::BadPath("a//b".into()))
        );
        let before = policy.generation();
        policy.replace(bad);
        assert_eq!(policy.generation(), before + 1);
        assert_eq!(policy.snapshot().index.grant(10057, b"a//b"), None);
    }

    #[test]
    fn per_uid_generations_move_only_for_the_changed_uid() {
        let policy = Policy::default();
        let (a, b) = (10057, 10058);
        assert_eq!((policy.generation_of(a), policy.generation_of(b)), (0, 0));
        let app = |uid, pkg: &str| App {
            uid,
            packages: vec![pkg.into()],
            permissions: Permissions::default(),
        };
        let mut seen = vec![policy.generation_of(a)];
        let mut step = |change: &dyn Fn(&Policy), moves_a: bool| {
            let (ga, gb) = (policy.generation_of(a), policy.generation_of(b));
            change(&policy);
            let (na, nb) = (policy.generation_of(a), policy.generation_of(b));
            assert_eq!(na != ga, moves_a);
            assert_eq!(nb, gb, "a change of uid {a} voids nothing of uid {b}");
            assert!(
                !seen.contains(&na) || !moves_a,
                "generations never come back"
            );
            seen.push(na);
        };
        step(&|p| p.set_app(app(a, "com.a")).unwrap(), true);
        step(
            &|p| p.grant(a, "Download/x.pdf", Access::Read).unwrap(),
            true,
        );
        step(&|p| p.revoke(a, "Download/x.pdf").unwrap(), true);
        step(&|p| p.remove_app(a), true);
        step(&|p| p.revoke(a, "Download/none.pdf").unwrap(), false);
        step(&|p| p.remove_app(a), false);
        step(
            &|p| {
                p.apply_batch(
                    vec![],
                    vec![(a, "DCIM/y.jpg".into(), Access::Write)],
                    vec![],
                )
                .unwrap()
            },
            true,
        );
        // A table-wide change voids everyone's.
        let gb = policy.generation_of(b);
        policy.replace(Table::default());
        assert!(policy.generation_of(b) > gb);
        assert_eq!(policy.generation_of(a), policy.generation_of(b));
        let snap = policy.snapshot();
        assert_eq!(snap.generation_of(a), policy.generation_of(a));
        assert_eq!(snap.generation(), policy.generation());
    }

    #[test]
    fn tables_come_back_as_given() {
        let table = Table {
            apps: vec![App {
                uid: 10057,
                packages: vec!["com.Example.a".into(), "com.b".into()],
                permissions: Permissions::from_bits(5).unwrap(),
            }],
            grants: vec![(10057, "Music/Été.mp3".into(), Access::Write)],
            platform_uids: Some(vec![1000]),
        };
        let back = Snapshot::new(table.clone()).table();
        assert_eq!(back.apps, table.apps);
        assert_eq!(back.grants, table.grants);
        assert_eq!(back.platform_uids, table.platform_uids);
        assert_eq!(Snapshot::new(Table::default()).table().platform_uids, None);
        assert_eq!(
            Snapshot::new(table).packages(10057),
            vec!["com.Example.a".to_string(), "com.b".into()]
        );
    }

    #[test]
    fn old_snapshots_stay_valid() {
        let policy = Policy::new(Table::default());
        let old = policy.snapshot();
        policy.grant(10057, "Download/x.pdf", Access::Read).unwrap();
        assert!(old.table().grants.is_empty());
        assert_eq!(old.generation(), 0);
        assert_eq!(policy.snapshot().table().grants.len(), 1);
    }

    #[test]
    fn batches_are_one_generation_and_all_or_nothing() {
        let policy = Policy::default();
        policy
            .grant(10057, "Download/old.pdf", Access::Read)
            .unwrap();
        policy
            .grant(10057, "Download/kept.pdf", Access::Read)
            .unwrap();
        let app = |uid, pkg: &str, bits| App {
            uid,
            packages: vec![pkg.into()],
            permissions: Permissions::from_bits(bits).unwrap(),
        };
        let before = policy.generation();
        policy
            .apply_batch(
                vec![app(10057, "a", 1), app(10058, "b", 2), app(10057, "a2", 4)],
                vec![
                    (10057, "Download/new.pdf".into(), Access::Read),
                    (10057, "DOWNLOAD/OLD.pdf".into(), Access::Write),
                    (10057, "download/new.PDF".into(), Access::Write),
                ],
                vec![(10057, "download/kept.pdf".into())],
            )
            .unwrap();
        assert_eq!(policy.generation(), before + 1);
        let snap = policy.snapshot();
        let mut apps = snap.table().apps.clone();
        apps.sort_by_key(|a| a.uid);
        assert_eq!(apps, vec![app(10057, "a2", 4), app(10058, "b", 2)]);
        let mut grants = snap.table().grants.clone();
        grants.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            grants,
            vec![
                (10057, "DOWNLOAD/OLD.pdf".into(), Access::Write),
                (10057, "download/new.PDF".into(), Access::Write),
            ]
        );

        // One bad entry anywhere: nothing changes.
        let bad_batches = [
            (vec![app(1 << 31, "x", 0)], vec![], vec![]),
            (
                vec![],
                vec![
                    (10059, "Download/a.pdf".into(), Access::Read),
                    (10059, "../a.pdf".into(), Access::Read),
                ],
                vec![],
            ),
            (
                vec![app(10060, "y", 0)],
                vec![],
                vec![(10057, "a//b".into())],
            ),
        ];
        for (apps, grants, revokes) in bad_batches {
            assert!(policy.apply_batch(apps, grants, revokes).is_err());
            assert_eq!(policy.generation(), before + 1);
            assert_eq!(policy.snapshot().table().apps.len(), 2);
            assert_eq!(policy.snapshot().table().grants.len(), 2);
        }
        policy.apply_batch(vec![], vec![], vec![]).unwrap();
        assert_eq!(policy.generation(), before + 1);
    }

    #[test]
    fn concurrent_readers_and_writers() {
        let policy = Arc::new(Policy::default());
        let writers: Vec<_> = (0..4u32)
            .map(|i| {
                let policy = policy.clone();
                std::thread::spawn(move || {
                    for n in 0..50u32 {
                        let path = format!("Download/{i}-{n}.pdf");
                        policy.grant(10_000 + i, &path, Access::Read).unwrap();
                    }
                })
            })
            .collect();
        let reader = {
            let policy = policy.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..1000 {
                    let snap = policy.snapshot();
                    assert!(snap.generation() >= last);
                    last = snap.generation();
                }
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        reader.join().unwrap();
        assert_eq!(policy.generation(), 200);
        assert_eq!(policy.snapshot().generation(), 200);
        assert_eq!(policy.snapshot().table().grants.len(), 200);
    }
}
