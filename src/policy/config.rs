//! The TOML policy file.
//!
//! ```toml
//! [[app]]
//! uid = 10057
//! packages = ["com.example.camera"]
//! permissions = ["read_images", "read_video"]   # optional, default none
//!
//! [[grant]]
//! uid = 10058
//! path = "DCIM/Camera/IMG_0001.jpg"
//! access = "read"                              # or "write"
//! ```
//!
//! Anything wrong is refused with the 1-based line of the offending item: TOML syntax, unknown
//! keys (anywhere), missing keys, wrong types, bad or duplicate uids, bad package names,
//! unknown permissions or access, bad paths, two grants for one (uid, path).

use super::path::normalize;
use super::table::{check_package, check_uid};
use super::{same_grant, Access, App, Permissions, PolicyError, Table};
use serde::Deserialize;
use std::ops::Range;
use toml::Spanned;

/// Permission names in policy files, and their bits.
pub const PERMISSION_NAMES: &[(&str, u32)] = &[
    ("read_images", Permissions::READ_IMAGES),
    ("read_video", Permissions::READ_VIDEO),
    ("read_audio", Permissions::READ_AUDIO),
    ("access_media_location", Permissions::ACCESS_MEDIA_LOCATION),
    ("write_media", Permissions::WRITE_MEDIA),
    (
        "manage_external_storage",
        Permissions::MANAGE_EXTERNAL_STORAGE,
    ),
    ("legacy_storage", Permissions::LEGACY_STORAGE),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// App ids that bypass the rules besides root (Android: system, media, shell...).
    #[serde(default)]
    platform_uids: Option<Vec<Spanned<i64>>>,
    #[serde(default)]
    app: Vec<Spanned<AppItem>>,
    #[serde(default)]
    grant: Vec<Spanned<GrantItem>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppItem {
    uid: Spanned<i64>,
    packages: Vec<Spanned<String>>,
    #[serde(default)]
    permissions: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantItem {
    uid: Spanned<i64>,
    path: Spanned<String>,
    access: Spanned<String>,
}

/// Maps byte offsets to 1-based line numbers.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn of(&self, offset: usize) -> usize {
        let end = offset.min(self.0.len());
        1 + self.0.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn error(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        PolicyError::Config {
            line: self.of(span.start),
            message: message.into(),
        }
    }
}

/// Parses a policy file (TOML). Errors carry the line number.
pub fn parse_config(text: &str) -> Result<Table, PolicyError> {
    let lines = Lines(text);
    let file: File = toml::from_str(text).map_err(|e| PolicyError::Config {
        line: e.span().map_or(1, |s| lines.of(s.start)),
        message: e.message().trim_end().replace('\n', ": "),
    })?;

    let mut table = Table::default();
    if let Some(uids) = &file.platform_uids {
        let mut list = Vec::with_capacity(uids.len());
        for uid in uids {
            let id = check_uid(*uid.get_ref())
                .ok()
                .filter(|&u| u < super::caller::FIRST_APPLICATION_ID)
                .ok_or_else(|| {
                    let message = format!(
                        "platform uid {} must be an app id below 10000 (system, shell, media...)",
                        uid.get_ref()
                    );
                    lines.error(uid.span(), message)
                })?;
            list.push(id);
        }
        table.platform_uids = Some(list);
    }
    for item in &file.app {
        let app = item.get_ref();
        let uid = check_uid(*app.uid.get_ref())
            .map_err(|e| lines.error(app.uid.span(), e.to_string()))?;
        if table.apps.iter().any(|a| a.uid == uid) {
            let message = format!("duplicate app entry for uid {uid}");
            return Err(lines.error(app.uid.span(), message));
        }
        let mut packages = Vec::with_capacity(app.packages.len());
        for package in &app.packages {
            check_package(package.get_ref())
                .map_err(|e| lines.error(package.span(), e.to_string()))?;
            packages.push(package.get_ref().clone());
        }
        let mut bits = 0;
        for name in &app.permissions {
            let bit = PERMISSION_NAMES
                .iter()
                .find(|(n, _)| n == name.get_ref())
                .map(|&(_, bit)| bit)
                .ok_or_else(|| {
                    let message = format!("unknown permission {:?}", name.get_ref());
                    lines.error(name.span(), message)
                })?;
            bits |= bit;
        }
        let permissions = Permissions::from_bits(bits).unwrap_or_default();
        table.apps.push(App {
            uid,
            packages,
            permissions,
        });
    }

    for item in &file.grant {
        let grant = item.get_ref();
        let uid = check_uid(*grant.uid.get_ref())
            .map_err(|e| lines.error(grant.uid.span(), e.to_string()))?;
        let path = normalize(grant.path.get_ref())
            .map_err(|e| lines.error(grant.path.span(), e.to_string()))?;
        let access = match grant.access.get_ref().as_str() {
            "read" => Access::Read,
            "write" => Access::Write,
            other => {
                let message = format!("unknown access {other:?}, expected \"read\" or \"write\"");
                return Err(lines.error(grant.access.span(), message));
            }
        };
        let duplicate = table.grants.iter().any(|g| same_grant(g, uid, &path));
        if duplicate {
            let message = format!("duplicate grant for uid {uid} on {path:?}");
            return Err(lines.error(grant.path.span(), message));
        }
        table.grants.push((uid, path, access));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (usize, String) {
        match parse_config(text) {
            Err(PolicyError::Config { line, message }) => (line, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    const GOOD: &str = r#"
# Camera: its own package, reads images and video.
[[app]]
uid = 10057
packages = ["com.example.camera"]
permissions = ["read_images", "read_video"]

# A shared uid, every permission.
[[app]]
uid = 10058
packages = ["com.example.a", "com.example.b"]
permissions = [
    "read_images", "read_video", "read_audio", "access_media_location",
    "write_media", "manage_external_storage", "legacy_storage",
]

[[app]]
uid = 1010059
packages = []

[[grant]]
uid = 10058
path = "DCIM/Camera/IMG_0001.jpg"
access = "read"

[[grant]]
uid = 10059
path = "Documents/Été/notes.txt"
access = "write"
"#;

    #[test]
    fn platform_uids() {
        let table = parse_config("platform_uids = [1000, 2000]\n").unwrap();
        assert_eq!(table.platform_uids, Some(vec![1000, 2000]));
        assert_eq!(parse_config("").unwrap().platform_uids, None);
        let (line, message) = err("\nplatform_uids = [10057]\n");
        assert_eq!(line, 2, "{message}");
        assert!(message.contains("below 10000"), "{message}");
    }

    #[test]
    fn good_file() {
        let table = parse_config(GOOD).unwrap();
        let perms = |bits| Permissions::from_bits(bits).unwrap();
        assert_eq!(
            table.apps,
            vec![
                App {
                    uid: 10057,
                    packages: vec!["com.example.camera".into()],
                    permissions: perms(Permissions::READ_IMAGES | Permissions::READ_VIDEO),
                },
                App {
                    uid: 10058,
                    packages: vec!["com.example.a".into(), "com.example.b".into()],
                    permissions: perms(Permissions::ALL),
                },
                App {
                    uid: 1010059,
                    packages: vec![],
                    permissions: Permissions::default(),
                },
            ]
        );
        assert_eq!(
            table.grants,
            vec![
                (10058, "DCIM/Camera/IMG_0001.jpg".into(), Access::Read),
                (10059, "Documents/Été/notes.txt".into(), Access::Write),
            ]
        );
        assert_eq!(table.validate(), Ok(()));
        assert_eq!(
            PERMISSION_NAMES.iter().fold(0, |acc, &(_, bit)| acc | bit),
            Permissions::ALL
        );
    }

    #[test]
    fn empty_file() {
        let table = parse_config("# nothing yet\n").unwrap();
        assert!(table.apps.is_empty() && table.grants.is_empty());
    }

    const APP: &str = "[[app]]\nuid = 10057\npackages = [\"com.a\"]\n"; // lines 1-3

    #[test]
    fn bad_files() {
        #[rustfmt::skip]
        let cases: &[(String, usize, &str)] = &[
            // TOML syntax.
            (format!("{APP}\n[[app]\n"),                           5, "invalid table header"),
            (format!("{APP}uid = 10058\n"),                        4, "duplicate key"),
            ("[[app]]\nuid = 10057\npackages = [\"a\"\n".into(),   4, "invalid array: expected `]`"),
            ("\n\nuid = = 3\n".into(),                             3, "invalid string"),
            // Unknown keys, at every level.
            ("bogus = 1\n".into(),                                 1, "unknown field `bogus`"),
            (format!("{APP}\n[settings]\nx = 1\n"),                5, "unknown field `settings`"),
            (format!("{APP}colour = \"red\"\n"),                   4, "unknown field `colour`"),
            (format!("{APP}\n[[grant]]\nuid = 1\npath = \"a\"\naccess = \"read\"\nmode = 1\n"),
                                                                   9, "unknown field `mode`"),
            (format!("{APP}[app.extra]\n"),                        4, "unknown field `extra`"),
            // Missing keys.
            (format!("{APP}\n[[app]]\npackages = []\n"),           5, "missing field `uid`"),
            (format!("{APP}\n\n[[app]]\nuid = 10058\n"),           6, "missing field `packages`"),
            (format!("{APP}[[grant]]\nuid = 1\naccess = \"read\"\n"), 4, "missing field `path`"),
            (format!("{APP}[[grant]]\nuid = 1\npath = \"a\"\n"),   4, "missing field `access`"),
            // Wrong types.
            (format!("{APP}\n[[app]]\nuid = \"10058\"\npackages = []\n"), 6, "invalid type: string"),
            (format!("{APP}\n[[app]]\nuid = 10058.5\npackages = []\n"),   6, "invalid type: floating point"),
            (format!("{APP}\n[[app]]\nuid = 10058\npackages = \"com.b\"\n"), 7, "expected a sequence"),
            (format!("{APP}\n[[app]]\nuid = 10058\npackages = [1]\n"),   7, "expected a string"),
            (format!("{APP}permissions = [true]\n"),               4, "expected a string"),
            ("[app]\nuid = 10057\npackages = []\n".into(),         1, "expected a sequence"),
            (format!("{APP}[[grant]]\nuid = 1\npath = [\"a\"]\naccess = \"read\"\n"), 6, "expected a string"),
            // Bad uids.
            (format!("{APP}\n[[app]]\nuid = -1\npackages = []\n"),        6, "invalid uid -1"),
            (format!("{APP}\n[[app]]\nuid = 2147483648\npackages = []\n"), 6, "invalid uid 2147483648"),
            (format!("{APP}\n[[app]]\nuid = 99999999999999999999\n"),     6, "number too large"),
            (format!("{APP}[[grant]]\nuid = -5\npath = \"a\"\naccess = \"read\"\n"), 5, "invalid uid -5"),
            // Duplicate uid.
            (format!("{APP}\n[[app]]\n\nuid = 10057\npackages = [\"com.b\"]\n"), 7, "duplicate app entry for uid 10057"),
            // Bad packages.
            (format!("{APP}\n[[app]]\nuid = 10058\npackages = [\"com.b\",\n  \"\"]\n"), 8, "invalid package name \"\""),
            (format!("{APP}\n[[app]]\nuid = 10058\npackages = [\"a/b\"]\n"), 7, "invalid package name \"a/b\""),
            // Unknown permission.
            (format!("{APP}permissions = [\n  \"read_images\",\n  \"read_everything\",\n]\n"), 6, "unknown permission \"read_everything\""),
            (format!("{APP}permissions = [\"READ_IMAGES\"]\n"),   4, "unknown permission"),
            // Bad grants.
            (format!("{APP}\n[[grant]]\nuid = 1\npath = \"/DCIM/x.jpg\"\naccess = \"read\"\n"), 7, "invalid path \"/DCIM/x.jpg\""),
            (format!("{APP}\n[[grant]]\nuid = 1\npath = \"DCIM/../x\"\naccess = \"read\"\n"),  7, "invalid path"),
            (format!("{APP}\n[[grant]]\nuid = 1\npath = \"\"\naccess = \"read\"\n"),          7, "invalid path"),
            (format!("{APP}\n[[grant]]\nuid = 1\npath = \"a\"\naccess = \"execute\"\n"),      8, "unknown access \"execute\""),
            (format!("{APP}[[grant]]\nuid = 1\npath = \"a.jpg\"\naccess = \"read\"\n[[grant]]\nuid = 1\npath = \"A.JPG\"\naccess = \"write\"\n"),
                                                                   10, "duplicate grant for uid 1"),
        ];
        let mut failures = Vec::new();
        for (text, line, message) in cases {
            let (got_line, got_message) = err(text);
            if got_line != *line || !got_message.contains(message) {
                failures.push(format!(
                    "{text:?}: expected line {line} {message:?}, got line {got_line} {got_message:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn line_mapping() {
        let lines = Lines("a\nb\n\nc");
        assert_eq!(
            [0, 1, 2, 3, 4, 5, 6, 99].map(|o| lines.of(o)),
            [1, 1, 2, 2, 3, 4, 4, 4]
        );
    }
}
