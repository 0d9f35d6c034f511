//! Checking table input (an [`App`], a grant, a whole [`Table`]) from Java or a policy file.

use super::{path, App, PolicyError, Table};

/// Uids are `uid_t` values the kernel reports; Java ints are signed, so the top bit is never a
/// valid uid here.
pub const MAX_UID: i64 = (1 << 31) - 1;

/// Longest package name accepted (Android's limit is 255 characters).
pub const MAX_PACKAGE: usize = 255;

pub fn check_uid(uid: i64) -> Result<u32, PolicyError> {
    match u32::try_from(uid) {
        Ok(valid) if uid <= MAX_UID => Ok(valid),
        _ => Err(PolicyError::BadUid(uid)),
    }
}

/// A package name becomes a path component (`Android/data/<pkg>`) and part of the owner tag:
/// it must be non-empty, a single component and free of control characters.
pub fn check_package(package: &str) -> Result<(), PolicyError> {
    let bad = package.is_empty()
        || package.len() > MAX_PACKAGE
        || package == "."
        || package == ".."
        || package.contains('/')
        || package.chars().any(char::is_control);
    if bad {
        Err(PolicyError::BadPackage(package.to_string()))
    } else {
        Ok(())
    }
}

/// Checks an app entry: a valid uid and valid package names. (Permissions are valid by
/// construction.) An empty package list is allowed: the uid then owns files by uid only.
pub fn check_app(app: &App) -> Result<(), PolicyError> {
    check_uid(i64::from(app.uid))?;
    app.packages.iter().try_for_each(|p| check_package(p))
}

impl Table {
    /// Checks every entry as [`super::Policy::set_app`] and [`super::Policy::grant`] would,
    /// and refuses two entries for one uid. Grant paths must already be normalized.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut uids = std::collections::HashSet::new();
        for app in &self.apps {
            check_app(app)?;
            if !uids.insert(app.uid) {
                return Err(PolicyError::DuplicateUid(app.uid));
            }
        }
        for (uid, grant_path, _) in &self.grants {
            check_uid(i64::from(*uid))?;
            if path::normalize(grant_path)? != *grant_path {
                return Err(PolicyError::BadPath(grant_path.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Access, Permissions};

    #[test]
    fn uids() {
        assert_eq!(check_uid(0), Ok(0));
        assert_eq!(check_uid(10057), Ok(10057));
        assert_eq!(check_uid(MAX_UID), Ok(i32::MAX as u32));
        assert_eq!(
            check_uid(MAX_UID + 1),
            Err(PolicyError::BadUid(MAX_UID + 1))
        );
        assert_eq!(check_uid(-1), Err(PolicyError::BadUid(-1)));
        assert_eq!(check_uid(i64::MIN), Err(PolicyError::BadUid(i64::MIN)));
        assert_eq!(
            check_uid(i64::from(u32::MAX)),
            Err(PolicyError::BadUid(u32::MAX.into()))
        );
    }

    #[test]
    fn packages() {
        for ok in [
            "com.example.app",
            "a",
            "com.Example_1",
            "x.y.z",
            ".a",
            "a:b",
        ] {
            assert_eq!(check_package(ok), Ok(()), "{ok:?}");
        }
        let long = "p".repeat(MAX_PACKAGE + 1);
        for bad in ["", ".", "..", "a/b", "/", "a\0b", "a\nb", &long] {
            assert_eq!(
                check_package(bad),
                Err(PolicyError::BadPackage(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tables() {
        let app = |uid, packages: &[&str]| App {
            uid,
            packages: packages.iter().map(|p| p.to_string()).collect(),
            permissions: Permissions::default(),
        };
        let good = Table {
            apps: vec![app(10057, &["com.a"]), app(10058, &[])],
            grants: vec![(10058, "DCIM/x.jpg".into(), Access::Read)],
            platform_uids: None,
        };
        assert_eq!(good.validate(), Ok(()));
        let dup = Table {
            apps: vec![app(10057, &["com.a"]), app(10057, &["com.b"])],
            ..Table::default()
        };
        assert_eq!(dup.validate(), Err(PolicyError::DuplicateUid(10057)));
        let bad_uid = Table {
            apps: vec![app(1 << 31, &["com.a"])],
            ..Table::default()
        };
        assert_eq!(bad_uid.validate(), Err(PolicyError::BadUid(1 << 31)));
        let bad_pkg = Table {
            apps: vec![app(10057, &["a/b"])],
            ..Table::default()
        };
        assert_eq!(
            bad_pkg.validate(),
            Err(PolicyError::BadPackage("a/b".into()))
        );
        let bad_path = Table {
            grants: vec![(10057, "/DCIM/x.jpg".into(), Access::Read)],
            ..Table::default()
        };
        assert_eq!(
            bad_path.validate(),
            Err(PolicyError::BadPath("/DCIM/x.jpg".into()))
        );
    }
}
