//! Relative paths: normalizing user input, case-insensitive comparison, and classifying a path
//! into the places the rules care about (root, top-level, standard directories, app-specific
//! directories, hidden names).
//!
//! Paths are bytes: lower file names need not be UTF-8, and nothing here panics on any input.
//! Classification folds ASCII letters only (every name it compares against is ASCII);
//! [`fold_eq`] / [`fold_hash`], used for grant paths, also fold non-ASCII letters of valid
//! UTF-8 (`char::to_lowercase`), leaving invalid bytes as they are.

use super::PolicyError;
use std::hash::Hasher;

/// Longest path component, in bytes (`NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// Longest relative path, in bytes (`PATH_MAX` minus the terminating NUL).
pub const MAX_PATH: usize = 4095;

/// Checks a relative path given by a user (policy file, Java) and returns it in the form the
/// storage view uses: components joined by single '/', no leading or trailing '/'. Absolute
/// paths, empty paths, empty, `.` and `..` components, NUL bytes and over-long names are
/// refused rather than repaired, so that a typo cannot silently grant something else.
pub fn normalize(path: &str) -> Result<String, PolicyError> {
    let bad = || PolicyError::BadPath(path.to_string());
    if path.is_empty() || path.len() > MAX_PATH || path.contains('\0') {
        return Err(bad());
    }
    for component in path.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(bad());
        }
        if component.len() > MAX_NAME {
            return Err(bad());
        }
    }
    Ok(path.to_string())
}

/// One case-folded unit of a byte string: a lowercased `char` of a valid UTF-8 run, or an
/// invalid byte (kept apart from chars, above the Unicode range).
fn folded(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes.utf8_chunks().flat_map(|chunk| {
        let chars = chunk
            .valid()
            .chars()
            .flat_map(char::to_lowercase)
            .map(u32::from);
        let invalid = chunk.invalid().iter().map(|&b| 0x11_0000 + u32::from(b));
        chars.chain(invalid)
    })
}

/// Case-insensitive equality of two names or paths. ASCII strings take a fast byte path.
pub fn fold_eq(a: &[u8], b: &[u8]) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        folded(a).eq(folded(b))
    }
}

/// Feeds the case-folded form of `bytes` to a hasher: `fold_eq(a, b)` implies equal hashes.
pub fn fold_hash(bytes: &[u8], state: &mut impl Hasher) {
    if bytes.is_ascii() {
        for &b in bytes {
            state.write_u32(u32::from(b.to_ascii_lowercase()));
        }
    } else {
        for unit in folded(bytes) {
            state.write_u32(unit);
        }
    }
    // Terminator, so that ("ab", "c") and ("a", "bc") differ when hashed in sequence.
    state.write_u32(u32::MAX);
}

/// The standard top-level directories of shared storage, and everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopDir {
    Dcim,
    Pictures,
    Movies,
    Music,
    Podcasts,
    Ringtones,
    Alarms,
    Notifications,
    Audiobooks,
    Recordings,
    Download,
    Documents,
    Android,
    /// Any other name (including files directly in the root).
    Other,
}

impl TopDir {
    fn of(name: &[u8]) -> TopDir {
        const NAMES: &[(&[u8], TopDir)] = &[
            (b"DCIM", TopDir::Dcim),
            (b"Pictures", TopDir::Pictures),
            (b"Movies", TopDir::Movies),
            (b"Music", TopDir::Music),
            (b"Podcasts", TopDir::Podcasts),
            (b"Ringtones", TopDir::Ringtones),
            (b"Alarms", TopDir::Alarms),
            (b"Notifications", TopDir::Notifications),
            (b"Audiobooks", TopDir::Audiobooks),
            (b"Recordings", TopDir::Recordings),
            (b"Download", TopDir::Download),
            (b"Documents", TopDir::Documents),
            (b"Android", TopDir::Android),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(TopDir::Other, |&(_, top)| top)
    }
}

/// Which app-specific area under `Android/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppDirKind {
    /// `Android/data/<pkg>`: private, hidden from other apps.
    Data,
    /// `Android/obb/<pkg>`: private, hidden from other apps.
    Obb,
    /// `Android/media/<pkg>`: the app's, but its media are shared like any other.
    Media,
}

impl AppDirKind {
    pub fn is_private(self) -> bool {
        matches!(self, AppDirKind::Data | AppDirKind::Obb)
    }

    fn of(name: &[u8]) -> Option<AppDirKind> {
        if name.eq_ignore_ascii_case(b"data") {
            Some(AppDirKind::Data)
        } else if name.eq_ignore_ascii_case(b"obb") {
            Some(AppDirKind::Obb)
        } else if name.eq_ignore_ascii_case(b"media") {
            Some(AppDirKind::Media)
        } else {
            None
        }
    }
}

/// `Android/<kind>/<package>` and everything below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppDir<'a> {
    pub kind: AppDirKind,
    /// The `<package>` component, as spelled in the path.
    pub package: &'a [u8],
}

/// What the rules need to know about a relative path. Built without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathInfo<'a> {
    /// Number of components: 0 for the root, 1 for entries directly in the root.
    pub depth: usize,
    /// The top-level directory the path is in (or is); `Other` for the root itself.
    pub top: TopDir,
    /// Set when the path is `Android/{data,obb,media}/<package>` or below.
    pub app_dir: Option<AppDir<'a>>,
    /// The path is `Android` or `Android/{data,obb,media}` itself: the skeleton every app
    /// relies on, never deleted or renamed by apps.
    pub skeleton: bool,
    /// Some component (the last one included) starts with '.'.
    pub hidden: bool,
    /// The last component (empty for the root).
    pub name: &'a [u8],
}

impl<'a> PathInfo<'a> {
    /// Classifies a path in the view's form. Tolerates malformed input (leading, trailing or
    /// doubled '/' are skipped; `.` and `..` count as hidden names) rather than panicking.
    pub fn of(path: &'a [u8]) -> PathInfo<'a> {
        let mut depth = 0;
        let mut first: &[u8] = b"";
        let mut second: &[u8] = b"";
        let mut third: &[u8] = b"";
        let mut name: &[u8] = b"";
        let mut hidden = false;
        for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            match depth {
                0 => first = component,
                1 => second = component,
                2 => third = component,
                _ => {}
            }
            hidden |= component[0] == b'.';
            name = component;
            depth += 1;
        }
        let top = if depth == 0 {
            TopDir::Other
        } else {
            TopDir::of(first)
        };
        let area = if top == TopDir::Android && depth >= 2 {
            AppDirKind::of(second)
        } else {
            None
        };
        let app_dir = match area {
            Some(kind) if depth >= 3 => Some(AppDir {
                kind,
                package: third,
            }),
            _ => None,
        };
        let skeleton = top == TopDir::Android && (depth == 1 || (depth == 2 && area.is_some()));
        PathInfo {
            depth,
            top,
            app_dir,
            skeleton,
            hidden,
            name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        let ok: &[&str] = &[
            "a",
            "DCIM/Camera/IMG_0001.jpg",
            "Download/My File (1).pdf",
            "Music/Été/chanson.mp3",
            "a/b/c/d/e/f",
            ".hidden",
            "Download/.nomedia",
            "a/...",
            "a/..b",
            "a/b.",
            "Android/data/com.example.app/files/x",
            "with\\backslash",
            "sp ace/ trailing ",
        ];
        for &path in ok {
            assert_eq!(normalize(path), Ok(path.to_string()), "{path:?}");
        }
        let long_name = "n".repeat(MAX_NAME + 1);
        let long_path = "a/".repeat(MAX_PATH / 2 + 1) + "a";
        let bad: &[&str] = &[
            "",
            "/",
            "/DCIM/x.jpg",
            "DCIM/",
            "DCIM//x.jpg",
            "./x",
            "a/./b",
            "a/.",
            ".",
            "..",
            "../x",
            "a/../b",
            "a/..",
            "a\0b",
            "\0",
            "//",
            &long_name,
            &long_path,
        ];
        for &path in bad {
            assert_eq!(
                normalize(path),
                Err(PolicyError::BadPath(path.to_string())),
                "{path:?}"
            );
        }
        assert!(normalize(&"n".repeat(MAX_NAME)).is_ok());
    }

    fn hash(bytes: &[u8]) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        fold_hash(bytes, &mut h);
        h.finish()
    }

    #[test]
    fn folding() {
        let equal: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"DCIM/Camera/IMG.JPG", b"dcim/camera/img.jpg"),
            (b"Android/DATA/x", b"android/data/X"),
            ("Musique/ÉTÉ.mp3".as_bytes(), "musique/été.MP3".as_bytes()),
            ("\u{212A}".as_bytes(), b"k"),
            (b"\xff\xfeA", b"\xff\xfea"),
            (b"x\xc3", b"X\xc3"),
        ];
        for &(a, b) in equal {
            assert!(fold_eq(a, b), "{a:?} {b:?}");
            assert_eq!(hash(a), hash(b), "{a:?} {b:?}");
        }
        let different: &[(&[u8], &[u8])] = &[
            (b"a", b"b"),
            (b"a", b"ab"),
            (b"a/b", b"a_b"),
            (b"\xff", b"\xfe"),
            ("\u{ff}".as_bytes(), b"\xff"),
            (b"\xc3", "\u{c3}".as_bytes()),
            ("é".as_bytes(), b"e"),
        ];
        for &(a, b) in different {
            assert!(!fold_eq(a, b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn classification() {
        use AppDirKind::*;
        use TopDir::*;
        let app = |kind, package: &'static [u8]| Some(AppDir { kind, package });
        type Row<'a> = (
            &'a [u8],
            usize,
            TopDir,
            Option<AppDir<'a>>,
            bool,
            bool,
            &'a [u8],
        );
        #[rustfmt::skip]
        let cases: &[Row] = &[
            // path                                depth top      app_dir                skel   hidden name
            (b"",                                  0, Other,     None,                  false, false, b""),
            (b"DCIM",                              1, Dcim,      None,                  false, false, b"DCIM"),
            (b"dcim/Camera/a.jpg",                 3, Dcim,      None,                  false, false, b"a.jpg"),
            (b"PICTURES/x",                        2, Pictures,  None,                  false, false, b"x"),
            (b"Movies",                            1, Movies,    None,                  false, false, b"Movies"),
            (b"music/a.mp3",                       2, Music,     None,                  false, false, b"a.mp3"),
            (b"Podcasts/p",                        2, Podcasts,  None,                  false, false, b"p"),
            (b"Ringtones/r",                       2, Ringtones, None,                  false, false, b"r"),
            (b"Alarms/r",                          2, Alarms,    None,                  false, false, b"r"),
            (b"Notifications/r",                   2, Notifications, None,              false, false, b"r"),
            (b"Audiobooks/r",                      2, Audiobooks, None,                 false, false, b"r"),
            (b"Recordings/r",                      2, Recordings, None,                 false, false, b"r"),
            (b"Download/x.pdf",                    2, Download,  None,                  false, false, b"x.pdf"),
            (b"Downloads/x.pdf",                   2, Other,     None,                  false, false, b"x.pdf"),
            (b"Documents/x",                       2, Documents, None,                  false, false, b"x"),
            (b"notes.txt",                         1, Other,     None,                  false, false, b"notes.txt"),
            (b"Android",                           1, Android,   None,                  true,  false, b"Android"),
            (b"android/DATA",                      2, Android,   None,                  true,  false, b"DATA"),
            (b"Android/obb",                       2, Android,   None,                  true,  false, b"obb"),
            (b"Android/media",                     2, Android,   None,                  true,  false, b"media"),
            (b"Android/other",                     2, Android,   None,                  false, false, b"other"),
            (b"Android/data/com.a",                3, Android,   app(Data, b"com.a"),   false, false, b"com.a"),
            (b"android/DATA/Com.A/files/x",        5, Android,   app(Data, b"Com.A"),   false, false, b"x"),
            (b"Android/obb/com.a/main.obb",        4, Android,   app(Obb, b"com.a"),    false, false, b"main.obb"),
            (b"Android/Media/com.a/x.jpg",         4, Android,   app(Media, b"com.a"),  false, false, b"x.jpg"),
            (b"Android/other/com.a",               3, Android,   None,                  false, false, b"com.a"),
            (b"Android/data/.x",                   3, Android,   app(Data, b".x"),      false, true,  b".x"),
            (b"DCIM/Android/data/com.a",           4, Dcim,      None,                  false, false, b"com.a"),
            (b".thumbnails",                       1, Other,     None,                  false, true,  b".thumbnails"),
            (b"DCIM/.thumbnails/1.jpg",            3, Dcim,      None,                  false, true,  b"1.jpg"),
            (b"Download/.nomedia",                 2, Download,  None,                  false, true,  b".nomedia"),
            (b"Download/a.b.c",                    2, Download,  None,                  false, false, b"a.b.c"),
            // Malformed input is tolerated.
            (b"/DCIM//x/",                         2, Dcim,      None,                  false, false, b"x"),
            (b"a/../b",                            3, Other,     None,                  false, true,  b"b"),
            (b"\xff\xfe/\x80",                     2, Other,     None,                  false, false, b"\x80"),
            (b"Android\x00/data",                  2, Other,     None,                  false, false, b"data"),
        ];
        for &(path, depth, top, app_dir, skeleton, hidden, name) in cases {
            let info = PathInfo::of(path);
            let expected = PathInfo {
                depth,
                top,
                app_dir,
                skeleton,
                hidden,
                name,
            };
            assert_eq!(info, expected, "{:?}", String::from_utf8_lossy(path));
        }
    }
}
