//! The lookup structures a [`super::Snapshot`] precomputes from a [`Table`], so that a decision
//! does two hash lookups at most and allocates nothing.

use super::path::{fold_eq, fold_hash, normalize};
use super::table::{check_app, check_uid};
use super::{caller, owner, Access, Permissions, Table};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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

type FxBuild = BuildHasherDefault<FxHasher>;

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

/// Grants whose folded paths share one hash: (path as given, access).
type Bucket = Vec<(Box<[u8]>, Access)>;

/// A uid's grants, bucketed by the hash of the case-folded path.
#[derive(Debug, Default, Clone)]
struct UidGrants {
    by_hash: HashMap<u64, Bucket, FxBuild>,
}

fn path_hash(path: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    fold_hash(path, &mut hasher);
    hasher.finish()
}

impl UidGrants {
    fn get(&self, path: &[u8]) -> Option<Access> {
        let bucket = self.by_hash.get(&path_hash(path))?;
        bucket
            .iter()
            .find(|(p, _)| fold_eq(p, path))
            .map(|&(_, a)| a)
    }

    fn insert(&mut self, path: &[u8], access: Access) {
        let bucket = self.by_hash.entry(path_hash(path)).or_default();
        match bucket.iter_mut().find(|(p, _)| fold_eq(p, path)) {
            Some(existing) => existing.1 = access,
            None => bucket.push((path.into(), access)),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Index {
    apps: HashMap<u32, AppEntry, FxBuild>,
    grants: HashMap<u32, UidGrants, FxBuild>,
    platform: Vec<u32>,
}

impl Index {
    /// Builds the index. Entries that would be refused by [`Table::validate`] are skipped with
    /// a warning rather than failing (`Policy::replace` cannot fail); for duplicates the last
    /// entry wins.
    pub fn build(table: &Table) -> Index {
        let mut index = Index {
            platform: table
                .platform_uids
                .clone()
                .unwrap_or_else(|| caller::DEFAULT_PLATFORM_APP_IDS.to_vec()),
            ..Index::default()
        };
        for app in &table.apps {
            if let Err(e) = check_app(app) {
                log::warn!("policy: skipping app entry for uid {}: {e}", app.uid);
                continue;
            }
            let entry = AppEntry {
                permissions: app.permissions,
                packages: app.packages.iter().map(|p| p.as_bytes().into()).collect(),
                tag: owner::encode(app.uid, app.packages.first().map(String::as_str)).into(),
            };
            index.apps.insert(app.uid, entry);
        }
        for (uid, path, access) in &table.grants {
            let checked = check_uid(i64::from(*uid)).and_then(|_| normalize(path));
            match checked {
                Ok(path) => index
                    .grants
                    .entry(*uid)
                    .or_default()
                    .insert(path.as_bytes(), *access),
                Err(e) => log::warn!("policy: skipping grant for uid {uid}: {e}"),
            }
        }
        index
    }

    pub fn class(&self, uid: u32) -> caller::CallerClass {
        caller::classify(uid, &self.platform)
    }

    pub fn app(&self, uid: u32) -> Option<&AppEntry> {
        self.apps.get(&uid)
    }

    /// The grant `uid` holds on exactly this path (compared case-insensitively).
    pub fn grant(&self, uid: u32, path: &[u8]) -> Option<Access> {
        self.grants.get(&uid)?.get(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::App;

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
        let index = Index::build(&table);
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
