//! The lookup structures a [`super::Snapshot`] precomputes from a [`Table`], so that a decision
//! does two hash lookups at most and allocates nothing.

use super::path::{fold_eq, fold_hash, normalize};
use super::table::{check_app, check_uid};
use super::trie::HashTrie;
use super::{caller, owner, Access, App, Permissions, Table};
use std::hash::Hasher;
use std::sync::Arc;

/// A small, fast, deterministic hasher (the Fx hash of rustc). The keys come from the trusted
/// table, so hash flooding is not a concern; speed on the per-open path is.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// An app as the rules see it.
#[derive(Debug, Clone)]
pub struct AppEntry {
    pub permissions: Permissions,
    /// Package names as given; compared ignoring ASCII case.
    pub packages: Vec<Box<[u8]>>,
    /// What a file created by this uid records (see [`owner`]).
    pub tag: Box<[u8]>,
}

impl AppEntry {
    pub fn holds(&self, package: &[u8]) -> bool {
        self.packages
            .iter()
            .any(|p| p.eq_ignore_ascii_case(package))
    }
}

fn path_hash(path: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    fold_hash(path, &mut hasher);
    hasher.finish()
}

fn uid_hash(uid: u32) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write_u32(uid);
    // Fx leaves the low bits of small integers poorly mixed; the trie indexes by low bits.
    hasher.finish().rotate_right(29) ^ hasher.finish()
}

/// Everything the table says about one uid, and when that last changed.
#[derive(Debug, Clone, Default)]
pub struct UidState {
    /// Inline (one pointer hop less on every decision); copied when the uid's grants change.
    app: Option<AppEntry>,
    /// Grant paths as given (normalized; the latest spelling wins), compared case-insensitively.
    grants: HashTrie<Arc<str>, Access>,
    /// The policy generation of the last change to this uid's entry or grants.
    changed: u64,
}

/// The precomputed tables. Cloning is cheap (`Arc` increments) and a change to one uid copies
/// only the trie paths to that uid and to the changed grant.
#[derive(Debug, Default, Clone)]
pub struct Index {
    uids: HashTrie<u32, Arc<UidState>>,
    platform: Arc<[u32]>,
    /// Explicit platform uids (`Table::platform_uids`), kept to give the table back.
    explicit_platform: bool,
    /// The generation of the last table-wide change (a replace): no uid's decisions are older.
    global: u64,
}

impl Index {
    /// Builds the index. Entries that would be refused by [`Table::validate`] are skipped with
    /// a warning rather than failing (`Policy::replace` cannot fail); for duplicates the last
    /// entry wins. Every decision made under an earlier generation is void.
    pub fn build(table: &Table, generation: u64) -> Index {
        let mut index = Index {
            platform: table
                .platform_uids
                .clone()
                .unwrap_or_else(|| caller::DEFAULT_PLATFORM_APP_IDS.to_vec())
                .into(),
            explicit_platform: table.platform_uids.is_some(),
            uids: HashTrie::default(),
            global: generation,
        };
        for app in &table.apps {
            if let Err(e) = check_app(app) {
                log::warn!("policy: skipping app entry for uid {}: {e}", app.uid);
                continue;
            }
            index.set_app(app, generation);
        }
        for (uid, path, access) in &table.grants {
            let checked = check_uid(i64::from(*uid)).and_then(|_| normalize(path));
            match checked {
                Ok(path) => index.set_grant(*uid, &path, *access, generation),
                Err(e) => log::warn!("policy: skipping grant for uid {uid}: {e}"),
            }
        }
        index
    }

    fn state(&self, uid: u32) -> Option<&UidState> {
        self.uids.get(uid_hash(uid), |&u| u == uid).map(|s| &**s)
    }

    /// The uid's state, to change under `generation` (copied if shared with a snapshot).
    fn state_mut(&mut self, uid: u32, generation: u64) -> &mut UidState {
        let shared = self
            .uids
            .entry(uid_hash(uid), |&u| u == uid, || (uid, Arc::default()));
        let state = Arc::make_mut(shared);
        state.changed = generation;
        state
    }

    pub fn class(&self, uid: u32) -> caller::CallerClass {
        caller::classify(uid, &self.platform)
    }

    pub fn app(&self, uid: u32) -> Option<&AppEntry> {
        self.state(uid)?.app.as_ref()
    }

    /// The grant `uid` holds on exactly this path (compared case-insensitively).
    pub fn grant(&self, uid: u32, path: &[u8]) -> Option<Access> {
        self.state(uid)?
            .grants
            .get(path_hash(path), |p| fold_eq(p.as_bytes(), path))
            .copied()
    }

    /// The generation of the last change that can alter `uid`'s decisions.
    pub fn generation_of(&self, uid: u32) -> u64 {
        self.state(uid).map_or(0, |s| s.changed).max(self.global)
    }

    /// Adds or replaces the entry of `app.uid` (already checked).
    pub fn set_app(&mut self, app: &App, generation: u64) {
        let entry = AppEntry {
            permissions: app.permissions,
            packages: app.packages.iter().map(|p| p.as_bytes().into()).collect(),
            tag: owner::encode(app.uid, app.packages.first().map(String::as_str)).into(),
        };
        self.state_mut(app.uid, generation).app = Some(entry);
    }

    pub fn remove_app(&mut self, uid: u32, generation: u64) {
        if self.app(uid).is_some() {
            self.state_mut(uid, generation).app = None;
        }
    }

    /// Gives `uid` `access` to the (normalized) path, replacing its grant on that path.
    pub fn set_grant(&mut self, uid: u32, path: &str, access: Access, generation: u64) {
        let grants = &mut self.state_mut(uid, generation).grants;
        let eq = |p: &Arc<str>| fold_eq(p.as_bytes(), path.as_bytes());
        grants.insert(path_hash(path.as_bytes()), path.into(), access, eq);
    }

    pub fn revoke(&mut self, uid: u32, path: &str, generation: u64) {
        if self.grant(uid, path.as_bytes()).is_some() {
            let hash = path_hash(path.as_bytes());
            let grants = &mut self.state_mut(uid, generation).grants;
            grants.remove(hash, |p| fold_eq(p.as_bytes(), path.as_bytes()));
        }
    }

    /// The table this index holds (apps by uid; grants in no particular order).
    pub fn to_table(&self) -> Table {
        let mut table = Table {
            platform_uids: self.explicit_platform.then(|| self.platform.to_vec()),
            apps: Vec::with_capacity(self.uids.len()),
            grants: Vec::new(),
        };
        self.uids.for_each(|&uid, state| {
            if let Some(app) = &state.app {
                table.apps.push(App {
                    uid,
                    packages: app
                        .packages
                        .iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect(),
                    permissions: app.permissions,
                });
            }
            state
                .grants
                .for_each(|path, &access| table.grants.push((uid, path.to_string(), access)));
        });
        table.apps.sort_by_key(|a| a.uid);
        table
    }

    /// The packages of `uid`'s entry, as given.
    pub fn packages(&self, uid: u32) -> Vec<String> {
        self.app(uid)
            .map(|a| {
                a.packages
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_looks_up() {
        let table = Table {
            apps: vec![
                App {
                    uid: 10057,
                    packages: vec!["com.Example.camera".into(), "com.example.shared".into()],
                    permissions: Permissions::from_bits(3).unwrap(),
                },
                App {
                    uid: 10058,
                    packages: vec![],
                    permissions: Permissions::default(),
                },
                // Invalid: skipped.
                App {
                    uid: u32::MAX,
                    packages: vec!["com.bad".into()],
                    permissions: Permissions::default(),
                },
                App {
                    uid: 10059,
                    packages: vec!["bad/pkg".into()],
                    permissions: Permissions::default(),
                },
            ],
            grants: vec![
                (10058, "DCIM/Camera/IMG_1.jpg".into(), Access::Read),
                (10058, "Music/Été.mp3".into(), Access::Write),
                (10058, "dcim/camera/img_1.JPG".into(), Access::Write),
                (10058, "/abs".into(), Access::Write),
                (u32::MAX, "DCIM/x.jpg".into(), Access::Write),
            ],
            platform_uids: None,
        };
        let index = Index::build(&table, 0);
        let camera = index.app(10057).unwrap();
        assert!(camera.holds(b"COM.EXAMPLE.CAMERA"));
        assert!(camera.holds(b"com.example.shared"));
        assert!(!camera.holds(b"com.example"));
        assert_eq!(&*camera.tag, b"10057:com.Example.camera");
        assert_eq!(&*index.app(10058).unwrap().tag, b"10058");
        assert!(index.app(u32::MAX).is_none());
        assert!(index.app(10059).is_none());

        assert_eq!(
            index.grant(10058, b"DCIM/Camera/IMG_1.jpg"),
            Some(Access::Write)
        );
        assert_eq!(
            index.grant(10058, b"DCIM/CAMERA/img_1.jpg"),
            Some(Access::Write)
        );
        assert_eq!(
            index.grant(10058, "music/ÉTÉ.MP3".as_bytes()),
            Some(Access::Write)
        );
        assert_eq!(index.grant(10058, b"DCIM/Camera"), None);
        assert_eq!(index.grant(10058, b"DCIM/Camera/IMG_1.jpg/x"), None);
        assert_eq!(index.grant(10057, b"DCIM/Camera/IMG_1.jpg"), None);
        assert_eq!(index.grant(10058, b"abs"), None);
        assert_eq!(index.grant(u32::MAX, b"DCIM/x.jpg"), None);
    }
}
