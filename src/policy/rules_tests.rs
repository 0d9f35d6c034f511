//! The rule table: (caller, operation, path, facts) -> decision, one case a line.

use super::{Access, App, Decision, Op, Permissions, Snapshot, Table, Target};
use Op::*;

// Callers.
const ROOT: u32 = 0;
const SYSTEM: u32 = 1000;
const SHELL: u32 = 2000;
const SYSTEM_U10: u32 = 1_001_000;
const ISOLATED: u32 = 90_001;
const ISOLATED_U10: u32 = 1_099_999;
/// com.example.camera: read_images, read_video (no access_media_location).
const CAM: u32 = 10_057;
/// The same package in Android user 10.
const CAM_U10: u32 = 1_010_057;
/// com.example.gallery: read_images, read_video, access_media_location.
const GALLERY: u32 = 10_060;
/// com.example.music: read_audio.
const MUSIC: u32 = 10_061;
/// com.example.editor: read_images, write_media.
const EDITOR: u32 = 10_062;
/// com.example.player: read_video.
const PLAYER: u32 = 10_063;
/// A shared uid: com.example.a and com.example.b, no permissions.
const SHARED: u32 = 10_070;
/// com.example.files: manage_external_storage.
const FILES: u32 = 10_080;
/// com.example.legacy: legacy_storage, access_media_location.
const LEGACY: u32 = 10_081;
/// com.example.picker: no permissions, but grants (see `snapshot`).
const GRANTEE: u32 = 10_090;
/// No app entry.
const NOBODY: u32 = 10_099;
/// Outside the usual app range, no entry.
const ODD: u32 = 50_000;

fn snapshot() -> Snapshot {
    let app = |uid, packages: &[&str], bits| App {
        uid,
        packages: packages.iter().map(|p| p.to_string()).collect(),
        permissions: Permissions::from_bits(bits).unwrap(),
    };
    use Permissions as P;
    Snapshot::new(Table {
        apps: vec![
            app(CAM, &["com.example.camera"], P::READ_IMAGES | P::READ_VIDEO),
            app(
                CAM_U10,
                &["com.example.camera"],
                P::READ_IMAGES | P::READ_VIDEO,
            ),
            app(
                GALLERY,
                &["com.example.gallery"],
                P::READ_IMAGES | P::READ_VIDEO | P::ACCESS_MEDIA_LOCATION,
            ),
            app(MUSIC, &["com.example.music"], P::READ_AUDIO),
            app(
                EDITOR,
                &["com.example.editor"],
                P::READ_IMAGES | P::WRITE_MEDIA,
            ),
            app(PLAYER, &["com.example.player"], P::READ_VIDEO),
            app(SHARED, &["com.example.a", "com.example.b"], 0),
            app(FILES, &["com.example.files"], P::MANAGE_EXTERNAL_STORAGE),
            app(
                LEGACY,
                &["com.example.legacy"],
                P::LEGACY_STORAGE | P::ACCESS_MEDIA_LOCATION,
            ),
            app(GRANTEE, &["com.example.picker"], 0),
            // Entries for bypass and isolated uids change nothing.
            app(SYSTEM, &["android"], 0),
            app(ISOLATED, &["com.example.sandbox"], P::ALL),
        ],
        grants: vec![
            (GRANTEE, "DCIM/Camera/IMG_1.jpg".into(), Access::Read),
            (GRANTEE, "Documents/report.pdf".into(), Access::Write),
            (GRANTEE, "Download/notes.txt".into(), Access::Read),
            (GRANTEE, "Music/song.mp3".into(), Access::Write),
            (
                GRANTEE,
                "Download/.private/granted.txt".into(),
                Access::Read,
            ),
        ],
        platform_uids: Some(vec![1000, 2000]),
    })
}

/// What the view knows about the target besides its path.
#[derive(Debug, Clone, Copy)]
struct Facts {
    dir: bool,
    owner: Option<&'static [u8]>,
    nomedia: bool,
}

const fn file_by(tag: &'static [u8]) -> Facts {
    Facts {
        dir: false,
        owner: Some(tag),
        nomedia: false,
    }
}

const FILE: Facts = Facts {
    dir: false,
    owner: None,
    nomedia: false,
};
const DIR: Facts = Facts {
    dir: true,
    owner: None,
    nomedia: false,
};
const DIR_BY_CAM: Facts = Facts {
    dir: true,
    owner: Some(b"10057:com.example.camera"),
    nomedia: false,
};
const NOMEDIA_FILE: Facts = Facts {
    dir: false,
    owner: None,
    nomedia: true,
};
const NOMEDIA_DIR: Facts = Facts {
    dir: true,
    owner: None,
    nomedia: true,
};
const NOMEDIA_BY_CAM: Facts = Facts {
    dir: false,
    owner: Some(b"10057:com.example.camera"),
    nomedia: true,
};
const BY_CAM: Facts = file_by(b"10057:com.example.camera");
/// The camera app reinstalled under another uid: the package still owns its files.
const BY_CAM_REINSTALLED: Facts = file_by(b"10157:com.example.camera");
const BY_CAM_UID_ONLY: Facts = file_by(b"10057");
const BY_CAM_U10: Facts = file_by(b"1010057:com.example.camera");
const BY_A: Facts = file_by(b"10070:com.example.a");
const BY_B: Facts = file_by(b"10070:com.example.b");
const BY_SHARED_UID: Facts = file_by(b"10070");
const BY_NOBODY: Facts = file_by(b"10099");
const BY_ISOLATED: Facts = file_by(b"90001");
const BAD_TAG: Facts = file_by(b"com.example.camera");

const A: Decision = Decision::Allow;
const RED: Decision = Decision::AllowRedacted;
const NOENT: Decision = Decision::Deny(libc::ENOENT);
const ACCES: Decision = Decision::Deny(libc::EACCES);
const PERM: Decision = Decision::Deny(libc::EPERM);

#[rustfmt::skip]
const CASES: &[(u32, Op, &[u8], Facts, Decision)] = &[
    // --- Bypass callers: everything, everywhere, never redacted.
    (ROOT,       Read,       b"Android/data/com.other.app/x",             FILE,           A),
    (ROOT,       Create,     b"x.txt",                                    FILE,           A),
    (ROOT,       Mkdir,      b"NewTop",                                   DIR,            A),
    (ROOT,       Delete,     b"Android",                                  DIR,            A),
    (ROOT,       Write,      b"",                                         DIR,            A),
    (SYSTEM,     Delete,     b"DCIM",                                     DIR,            A),
    (SYSTEM,     Read,       b"Download/.nomedia",                        NOMEDIA_FILE,   A),
    (SHELL,      Lookup,     b"DCIM/.thumbnails",                         DIR,            A),
    (SHELL,      Read,       b"DCIM/Camera/a.jpg",                        FILE,           A),
    (SHELL,      Create,     b"DCIM/doc.pdf",                             FILE,           A),
    (SYSTEM_U10, Write,      b"Android/obb/com.other.app/main.obb",       FILE,           A),
    // --- Isolated processes: nothing at all.
    (ISOLATED,   Lookup,     b"",                                         DIR,            ACCES),
    (ISOLATED,   ListDir,    b"",                                         DIR,            ACCES),
    (ISOLATED,   Lookup,     b"DCIM",                                     DIR,            ACCES),
    (ISOLATED,   Read,       b"Download/x.pdf",                           FILE,           ACCES),
    (ISOLATED,   Read,       b"Download/mine.pdf",                        BY_ISOLATED,    ACCES),
    (ISOLATED,   Create,     b"Download/x.pdf",                           FILE,           ACCES),
    (ISOLATED_U10, Lookup,   b"Android/data/com.example.sandbox",         DIR,            ACCES),
    // --- Apps without an entry: no permissions, no packages.
    (NOBODY,     Lookup,     b"DCIM",                                     DIR,            A),
    (NOBODY,     ListDir,    b"DCIM/Camera",                              DIR,            A),
    (NOBODY,     Lookup,     b"DCIM/Camera/a.jpg",                        FILE,           A),
    (NOBODY,     Read,       b"DCIM/Camera/a.jpg",                        FILE,           ACCES),
    (NOBODY,     Read,       b"Music/a.mp3",                              FILE,           ACCES),
    (NOBODY,     Read,       b"Download/x.pdf",                           FILE,           ACCES),
    (NOBODY,     Write,      b"Download/x.pdf",                           FILE,           ACCES),
    (NOBODY,     Read,       b"Download/mine.pdf",                        BY_NOBODY,      A),
    (NOBODY,     Delete,     b"Download/mine.pdf",                        BY_NOBODY,      A),
    (NOBODY,     Read,       b"Pictures/mine.jpg",                        BY_NOBODY,      A),
    (NOBODY,     Lookup,     b"Android/data/com.example.camera",          DIR,            NOENT),
    (ODD,        Read,       b"DCIM/a.jpg",                               FILE,           A    ),
    (ODD,        Create,     b"Download/a.bin",                           FILE,           A),
    // --- App-specific directories: own ones are the app's, others' data/obb do not exist.
    (CAM,        Lookup,     b"Android/data/com.example.camera",          DIR,            A),
    (CAM,        Mkdir,      b"Android/data/com.example.camera",          DIR,            A),
    (CAM,        Mkdir,      b"Android/obb/com.example.camera",           DIR,            A),
    (CAM,        Create,     b"Android/data/com.example.camera/files/doc.pdf", FILE,      A),
    (CAM,        Read,       b"Android/data/com.example.camera/files/x.jpg", FILE,        A),
    (CAM,        Delete,     b"Android/data/com.example.camera/cache/t",  FILE,           A),
    (CAM,        Lookup,     b"Android/data/com.example.camera/.hidden",  FILE,           A),
    (CAM,        Lookup,     b"android/DATA/COM.EXAMPLE.CAMERA/files",    DIR,            A),
    (CAM,        Read,       b"Android/obb/com.example.camera/main.obb",  FILE,           A),
    (CAM,        Delete,     b"Android/data/com.example.camera",          DIR,            A),
    (CAM,        Lookup,     b"Android/data/com.other.app",               DIR,            NOENT),
    (CAM,        Lookup,     b"android/DATA/com.other.app/x",             FILE,           NOENT),
    (CAM,        Read,       b"Android/Data/Com.Other.App/x.jpg",         FILE,           NOENT),
    (CAM,        Mkdir,      b"Android/data/com.other.app",               DIR,            ACCES),
    (CAM,        Create,     b"Android/obb/com.other.app/x.obb",          FILE,           ACCES),
    (CAM,        Delete,     b"Android/OBB/com.other.app",                DIR,            NOENT),
    (CAM,        ListDir,    b"Android/data/com.other.app/files",         DIR,            NOENT),
    (CAM,        RenameTo,   b"Android/data/com.other.app/x.jpg",         BY_CAM,         ACCES),
    (CAM,        Read,       b"Android/data/com.other.app/mine.txt",      BY_CAM,         NOENT),
    (CAM,        Lookup,     b"Android/data/com.example.camera.evil",     DIR,            NOENT),
    (CAM,        Lookup,     b"Android/data/com.example",                 DIR,            NOENT),
    (CAM,        Read,       b"Android/data/x.txt",                       FILE,           NOENT),
    (CAM,        Lookup,     b"Android/data/\xff\xfe",                    DIR,            NOENT),
    (CAM,        Lookup,     b"Android",                                  DIR,            A),
    (CAM,        Lookup,     b"Android/data",                             DIR,            A),
    (CAM,        ListDir,    b"Android/obb",                              DIR,            A),
    (CAM_U10,    Lookup,     b"Android/data/com.example.camera",          DIR,            A),
    (SHARED,     Lookup,     b"Android/data/com.example.a",               DIR,            A),
    (SHARED,     Create,     b"Android/data/com.example.b/files/x.db",    FILE,           A),
    (SHARED,     Lookup,     b"Android/data/com.example.c",               DIR,            NOENT),
    (FILES,      Lookup,     b"Android/data/com.example.files",           DIR,            A),
    (FILES,      Lookup,     b"Android/data/com.other.app",               DIR,            NOENT),
    (FILES,      Read,       b"Android/obb/com.other.app/x.obb",          FILE,           NOENT),
    (LEGACY,     Read,       b"android/data/com.other.app/x",             FILE,           NOENT),
    (LEGACY,     Mkdir,      b"Android/obb/com.other.app",                DIR,            ACCES),
    // Android/media/<pkg>: the owner's to fill, its media readable like any other.
    (CAM,        Create,     b"Android/media/com.example.camera/x.txt",   FILE,           A),
    (CAM,        Read,       b"Android/media/com.other.app/x.jpg",        FILE,           RED),
    (CAM,        Create,     b"Android/media/com.other.app/x.jpg",        FILE,           PERM),
    (CAM,        Mkdir,      b"Android/media/com.other.app/sub",          DIR,            PERM),
    (CAM,        Delete,     b"Android/media/com.other.app",              DIR,            ACCES),
    (MUSIC,      Lookup,     b"Android/media/com.other.app",              DIR,            A),
    (EDITOR,     Delete,     b"Android/media/com.other.app/x.jpg",        FILE,           A),
    (FILES,      Create,     b"Android/media/com.other.app/x.txt",        FILE,           A),
    // The Android/ skeleton.
    (CAM,        Delete,     b"Android/data",                             DIR,            ACCES),
    (CAM,        RenameFrom, b"Android/obb",                              DIR,            ACCES),
    (FILES,      RenameFrom, b"Android/media",                            DIR,            ACCES),
    (FILES,      Delete,     b"Android",                                  DIR,            ACCES),
    (FILES,      RenameTo,   b"Android/data",                             DIR,            ACCES),
    (LEGACY,     RenameTo,   b"android",                                  DIR,            ACCES),
    (CAM,        Mkdir,      b"Android/obb",                              DIR,            A),
    (CAM,        Mkdir,      b"Android",                                  DIR,            ACCES),
    (CAM,        Mkdir,      b"Android/foo",                              DIR,            PERM),
    (CAM,        Create,     b"Android/foo.txt",                          FILE,           PERM),
    (CAM,        Delete,     b"Android/foo",                              DIR,            ACCES),
    (CAM,        Write,      b"Android/data",                             DIR,            ACCES),
    (FILES,      Mkdir,      b"Android/foo",                              DIR,            A),
    // --- Reading media one does not own: the matching read_* permission.
    (CAM,        Read,       b"DCIM/Camera/IMG_2.jpg",                    FILE,           RED),
    (CAM,        Read,       b"Pictures/x.PNG",                           FILE,           RED),
    (CAM,        Read,       b"DCIM/raw.dng",                             FILE,           RED),
    (CAM,        Read,       b"Download/photo.heic",                      FILE,           RED),
    (CAM,        Read,       b"DCIM/\xff\xfe.jpg",                        FILE,           RED),
    (CAM,        Read,       b"Movies/v.mp4",                             FILE,           RED),
    (CAM,        Read,       b"DCIM/Camera/VID_1.mp4",                    FILE,           RED),
    (CAM,        Read,       b"Music/s.mp3",                              FILE,           ACCES),
    (CAM,        Read,       b"Download/doc.pdf",                         FILE,           ACCES),
    (CAM,        Lookup,     b"Download/doc.pdf",                         FILE,           A),
    (CAM,        Lookup,     b"DCIM/Camera/IMG_2.jpg",                    FILE,           A),
    (GALLERY,    Read,       b"DCIM/Camera/IMG_2.jpg",                    FILE,           A),
    (GALLERY,    Read,       b"DCIM/a.heic",                              FILE,           A),
    (GALLERY,    Read,       b"Movies/v.MKV",                             FILE,           A),
    (GALLERY,    Read,       b"DCIM/Camera/mine.jpg",                     BY_CAM,         A),
    (GALLERY,    Read,       b"Music/s.flac",                             FILE,           ACCES),
    (MUSIC,      Read,       b"Music/s.mp3",                              FILE,           A),
    (MUSIC,      Read,       b"Download/s.OGG",                           FILE,           A),
    (MUSIC,      Read,       b"Ringtones/r.m4a",                          FILE,           A),
    (MUSIC,      Read,       b"DCIM/a.jpg",                               FILE,           ACCES),
    (MUSIC,      Read,       b"Movies/v.mp4",                             FILE,           ACCES),
    (MUSIC,      Read,       b"Documents/notes.txt",                      FILE,           ACCES),
    (MUSIC,      Lookup,     b"DCIM/a.jpg",                               FILE,           A),
    (PLAYER,     Read,       b"DCIM/Camera/v.3gp",                        FILE,           RED),
    (PLAYER,     Read,       b"DCIM/Camera/a.jpg",                        FILE,           ACCES),
    (PLAYER,     Read,       b"Music/a.mp3",                              FILE,           ACCES),
    // Reading is not writing.
    (CAM,        Write,      b"DCIM/Camera/IMG_2.jpg",                    FILE,           ACCES),
    (CAM,        Delete,     b"DCIM/Camera/IMG_2.jpg",                    FILE,           ACCES),
    (CAM,        RenameFrom, b"DCIM/Camera/IMG_2.jpg",                    FILE,           ACCES),
    (MUSIC,      Write,      b"Music/s.mp3",                              FILE,           ACCES),
    // --- write_media: modify media files (only), not read them.
    (EDITOR,     Write,      b"DCIM/Camera/IMG_2.jpg",                    FILE,           A),
    (EDITOR,     Delete,     b"Music/s.mp3",                              FILE,           A),
    (EDITOR,     RenameFrom, b"Movies/v.mp4",                             FILE,           A),
    (EDITOR,     Write,      b"Download/photo.webp",                      FILE,           A),
    (EDITOR,     Write,      b"Download/doc.pdf",                         FILE,           ACCES),
    (EDITOR,     Delete,     b"Documents/a.txt",                          FILE,           ACCES),
    (EDITOR,     Read,       b"Music/s.mp3",                              FILE,           ACCES),
    (EDITOR,     Read,       b"Pictures/a.jpg",                           FILE,           RED),
    // --- Grants: one file, read or write (write implies read), any case.
    (GRANTEE,    Read,       b"DCIM/Camera/IMG_1.jpg",                    FILE,           RED),
    (GRANTEE,    Read,       b"dcim/camera/img_1.JPG",                    FILE,           RED),
    (GRANTEE,    Lookup,     b"DCIM/Camera/IMG_1.jpg",                    FILE,           A),
    (GRANTEE,    Read,       b"DCIM/Camera/IMG_2.jpg",                    FILE,           ACCES),
    (GRANTEE,    Write,      b"DCIM/Camera/IMG_1.jpg",                    FILE,           ACCES),
    (GRANTEE,    Delete,     b"DCIM/Camera/IMG_1.jpg",                    FILE,           ACCES),
    (GRANTEE,    Read,       b"Documents/report.pdf",                     FILE,           A),
    (GRANTEE,    Write,      b"Documents/report.pdf",                     FILE,           A),
    (GRANTEE,    Delete,     b"DOCUMENTS/Report.pdf",                     FILE,           A),
    (GRANTEE,    RenameFrom, b"Documents/report.pdf",                     FILE,           A),
    (GRANTEE,    Read,       b"Documents/report.pdf.bak",                 FILE,           ACCES),
    (GRANTEE,    Read,       b"Download/notes.txt",                       FILE,           A),
    (GRANTEE,    Write,      b"Download/notes.txt",                       FILE,           ACCES),
    (GRANTEE,    Read,       b"Music/song.mp3",                           FILE,           A),
    (GRANTEE,    Write,      b"Music/song.mp3",                           FILE,           A),
    (GRANTEE,    Lookup,     b"Download/.private/granted.txt",            FILE,           A    ),
    (NOBODY,     Read,       b"DCIM/Camera/IMG_1.jpg",                    FILE,           ACCES),
    (NOBODY,     Write,      b"Documents/report.pdf",                     FILE,           ACCES),
    // --- manage_external_storage (no access_media_location) and legacy_storage (with it).
    (FILES,      Read,       b"Download/doc.pdf",                         FILE,           A),
    (FILES,      Read,       b"DCIM/Camera/a.jpg",                        FILE,           RED),
    (FILES,      Read,       b"Music/s.mp3",                              FILE,           A),
    (FILES,      Write,      b"Documents/x.txt",                          FILE,           A),
    (FILES,      Delete,     b"DCIM/Camera/a.jpg",                        FILE,           A),
    (FILES,      RenameFrom, b"Download/doc.pdf",                         BY_CAM,         A),
    (FILES,      Create,     b"DCIM/doc.pdf",                             FILE,           A),
    (FILES,      Create,     b"Music/x.jpg",                              FILE,           A),
    (FILES,      Create,     b"MyFolder/x.txt",                           FILE,           A),
    (FILES,      Create,     b"x.txt",                                    FILE,           ACCES),
    (FILES,      RenameTo,   b"x.txt",                                    FILE,           ACCES),
    (FILES,      Mkdir,      b"MyFolder",                                 DIR,            A),
    (FILES,      Delete,     b"MyFolder",                                 DIR,            A),
    (FILES,      RenameFrom, b"DCIM",                                     DIR,            ACCES),
    (FILES,      RenameTo,   b"Camera Roll",                              DIR,            A),
    (FILES,      Write,      b"DCIM",                                     DIR,            A),
    (FILES,      Delete,     b"notes.txt",                                FILE,           A),
    (FILES,      Write,      b"notes.txt",                                FILE,           A),
    (FILES,      Lookup,     b"DCIM/.thumbnails",                         DIR,            A),
    (FILES,      Read,       b"DCIM/.thumbnails/1.jpg",                   FILE,           RED),
    (FILES,      Read,       b"Download/stuff/a.txt",                     NOMEDIA_FILE,   A),
    (FILES,      Write,      b"",                                         DIR,            ACCES),
    (FILES,      Delete,     b"",                                         DIR,            ACCES),
    (LEGACY,     Read,       b"DCIM/Camera/a.jpg",                        FILE,           A),
    (LEGACY,     Read,       b"Music/s.mp3",                              FILE,           A),
    (LEGACY,     Write,      b"Download/doc.pdf",                         FILE,           A),
    (LEGACY,     Create,     b"Pictures/doc.txt",                         FILE,           A),
    (LEGACY,     Create,     b"doc.txt",                                  FILE,           ACCES),
    (LEGACY,     Mkdir,      b"Backup",                                   DIR,            A),
    (LEGACY,     Lookup,     b"Download/.hidden",                         FILE,           A),
    // --- Creating files: each type in its place.
    (NOBODY,     Create,     b"DCIM/Camera/a.jpg",                        FILE,           A),
    (NOBODY,     Create,     b"DCIM/a.mp4",                               FILE,           A),
    (NOBODY,     Create,     b"Pictures/Screenshots/s.png",               FILE,           A),
    (NOBODY,     Create,     b"Movies/m.mkv",                             FILE,           A),
    (NOBODY,     Create,     b"movies/m.JPG",                             FILE,           A),
    (NOBODY,     Create,     b"DCIM/a.mp3",                               FILE,           PERM),
    (NOBODY,     Create,     b"DCIM/notes.txt",                           FILE,           PERM),
    (NOBODY,     Create,     b"Pictures/x.pdf",                           FILE,           PERM),
    (NOBODY,     Create,     b"Movies/noext",                             FILE,           PERM),
    (NOBODY,     Create,     b"Music/a.mp3",                              FILE,           A),
    (NOBODY,     Create,     b"Podcasts/ep.m4a",                          FILE,           A),
    (NOBODY,     Create,     b"Ringtones/r.ogg",                          FILE,           A),
    (NOBODY,     Create,     b"Alarms/a.wav",                             FILE,           A),
    (NOBODY,     Create,     b"Notifications/n.opus",                     FILE,           A),
    (NOBODY,     Create,     b"Audiobooks/b.m4b",                         FILE,           A),
    (NOBODY,     Create,     b"Recordings/r.amr",                         FILE,           A),
    (NOBODY,     Create,     b"MUSIC/Album/01.FLAC",                      FILE,           A),
    (NOBODY,     Create,     b"Music/cover.jpg",                          FILE,           PERM),
    (NOBODY,     Create,     b"Ringtones/r.mp4",                          FILE,           PERM),
    (NOBODY,     Create,     b"Music/lyrics.txt",                         FILE,           PERM),
    (NOBODY,     Create,     b"Download/x.exe",                           FILE,           A),
    (NOBODY,     Create,     b"Download/a.jpg",                           FILE,           A),
    (NOBODY,     Create,     b"download/sub/dir/x.bin",                   FILE,           A),
    (NOBODY,     Create,     b"Download/\xff",                            FILE,           A),
    (NOBODY,     Create,     b"Documents/report.pdf",                     FILE,           A),
    (NOBODY,     Create,     b"Documents/song.mp3",                       FILE,           A),
    (NOBODY,     Create,     b"MyFolder/x.txt",                           FILE,           PERM),
    (NOBODY,     Create,     b"MyFolder/x.jpg",                           FILE,           PERM),
    (NOBODY,     Create,     b"Downloads/x.txt",                          FILE,           PERM),
    (NOBODY,     Create,     b"\xff/x.jpg",                               FILE,           PERM),
    (NOBODY,     Create,     b"Android/media/x.jpg",                      FILE,           PERM),
    (NOBODY,     Create,     b"x.txt",                                    FILE,           ACCES),
    (NOBODY,     Create,     b"x.jpg",                                    FILE,           ACCES),
    // --- Renames: the old name like a write, the new one like a creation.
    (CAM,        RenameFrom, b"DCIM/Camera/mine.jpg",                     BY_CAM,         A),
    (CAM,        RenameTo,   b"Pictures/mine.jpg",                        BY_CAM,         A),
    (CAM,        RenameTo,   b"Download/mine.jpg",                        BY_CAM,         A),
    (CAM,        RenameTo,   b"Music/mine.jpg",                           BY_CAM,         PERM),
    (CAM,        RenameTo,   b"mine.jpg",                                 BY_CAM,         ACCES),
    (CAM,        RenameTo,   b"Android/data/com.example.camera/mine.jpg", BY_CAM,         A),
    (CAM,        RenameFrom, b"DCIM/Camera/other.jpg",                    FILE,           ACCES),
    (NOBODY,     RenameFrom, b"DCIM/Trip",                                DIR,            A),
    (NOBODY,     RenameTo,   b"Pictures/Trip",                            DIR,            A),
    (NOBODY,     RenameTo,   b"Trip",                                     DIR,            ACCES),
    (NOBODY,     RenameFrom, b"DCIM",                                     DIR,            ACCES),
    (NOBODY,     RenameTo,   b"Android/media/Trip",                       DIR,            PERM),
    // --- Top-level entries and the root, without broad access.
    (NOBODY,     Lookup,     b"",                                         DIR,            A),
    (NOBODY,     ListDir,    b"",                                         DIR,            A),
    (NOBODY,     Write,      b"",                                         DIR,            ACCES),
    (NOBODY,     Mkdir,      b"",                                         DIR,            ACCES),
    (NOBODY,     Lookup,     b"MyFolder",                                 DIR,            A),
    (NOBODY,     ListDir,    b"MyFolder",                                 DIR,            A),
    (NOBODY,     Mkdir,      b"MyFolder",                                 DIR,            ACCES),
    (NOBODY,     Mkdir,      b"DCIM",                                     DIR,            ACCES),
    (NOBODY,     Delete,     b"DCIM",                                     DIR,            ACCES),
    (NOBODY,     Delete,     b"Download",                                 DIR,            ACCES),
    (NOBODY,     Write,      b"DCIM",                                     DIR,            ACCES),
    (NOBODY,     Lookup,     b"notes.txt",                                FILE,           A),
    (NOBODY,     Read,       b"notes.txt",                                FILE,           ACCES),
    (NOBODY,     Delete,     b"notes.txt",                                FILE,           ACCES),
    (NOBODY,     Read,       b"notes.txt",                                BY_NOBODY,      A),
    (NOBODY,     Write,      b"notes.txt",                                BY_NOBODY,      A),
    (NOBODY,     Delete,     b"notes.txt",                                BY_NOBODY,      ACCES),
    (NOBODY,     RenameFrom, b"notes.txt",                                BY_NOBODY,      ACCES),
    (CAM,        Read,       b"photo.jpg",                                FILE,           RED),
    // Directories below the top level.
    (NOBODY,     Mkdir,      b"DCIM/Trip",                                DIR,            A),
    (NOBODY,     Mkdir,      b"Download/a/b/c",                           DIR,            A),
    (NOBODY,     Mkdir,      b"MyFolder/sub",                             DIR,            A),
    (NOBODY,     Delete,     b"Pictures/Old",                             DIR,            A),
    (NOBODY,     Write,      b"Pictures/Old",                             DIR,            A),
    (NOBODY,     Read,       b"Pictures/Old",                             DIR,            A),
    // --- Hidden names and .nomedia trees: the owner and broad access only.
    (CAM,        Lookup,     b"DCIM/.thumbnails",                         DIR,            A    ),
    (CAM,        ListDir,    b"DCIM/.thumbnails",                         DIR,            A    ),
    (CAM,        Lookup,     b"DCIM/.thumbnails/1.jpg",                   FILE,           A    ),
    (CAM,        Read,       b"DCIM/.thumbnails/1.jpg",                   FILE,           ACCES),
    (CAM,        Lookup,     b".hidden",                                  FILE,           A    ),
    (CAM,        Lookup,     b"Download/.nomedia",                        FILE,           A    ),
    (CAM,        Lookup,     b"Download/.secret.pdf",                     BY_CAM,         A),
    (CAM,        Read,       b"Download/.secret.pdf",                     BY_CAM,         A),
    (CAM,        Delete,     b"Download/.secret.pdf",                     BY_CAM,         A),
    (MUSIC,      Lookup,     b"Download/.secret.pdf",                     BY_CAM,         A    ),
    (CAM,        Lookup,     b"Download/.cache",                          DIR_BY_CAM,     A),
    (CAM,        Mkdir,      b"Download/.cache",                          DIR,            A),
    (CAM,        Create,     b"Download/.cache/x.txt",                    FILE,           A),
    (CAM,        Create,     b"Download/.x.pdf",                          FILE,           A),
    (CAM,        Create,     b"DCIM/.x.pdf",                              FILE,           PERM),
    (NOBODY,     Write,      b"Download/.x",                              FILE,           ACCES),
    (NOBODY,     Delete,     b"DCIM/.thumbnails",                         DIR,            A    ),
    (CAM,        Lookup,     b"Pictures/Private/a.jpg",                   NOMEDIA_FILE,   A    ),
    (CAM,        Read,       b"Pictures/Private/a.jpg",                   NOMEDIA_FILE,   ACCES),
    (CAM,        Read,       b"Pictures/Private/a.jpg",                   NOMEDIA_BY_CAM, A    ),
    (CAM,        Lookup,     b"Pictures/Private/sub",                     NOMEDIA_DIR,    A    ),
    (MUSIC,      Read,       b"Music/Private/a.mp3",                      NOMEDIA_FILE,   ACCES),
    (CAM,        Create,     b"Pictures/Private/new.jpg",                 NOMEDIA_FILE,   A),
    // --- Owners: by package (any of a shared uid's), else by uid; same Android user only.
    (CAM,        Write,      b"DCIM/Camera/mine.jpg",                     BY_CAM,         A),
    (CAM,        Delete,     b"DCIM/Camera/mine.jpg",                     BY_CAM,         A),
    (CAM,        Read,       b"DCIM/Camera/mine.jpg",                     BY_CAM,         A),
    (CAM,        Read,       b"DCIM/Camera/old.jpg",                      BY_CAM_REINSTALLED, A),
    (CAM,        Read,       b"Download/mine.pdf",                        BY_CAM,         A),
    (CAM,        Write,      b"Download/mine.pdf",                        BY_CAM_UID_ONLY, A),
    (CAM,        Write,      b"Download/mine.pdf",                        BY_CAM_U10,     ACCES),
    (CAM_U10,    Read,       b"Download/mine.pdf",                        BY_CAM_U10,     A),
    (CAM_U10,    Read,       b"Download/mine.pdf",                        BY_CAM,         ACCES),
    (CAM,        Read,       b"Download/x.pdf",                           BAD_TAG,        ACCES),
    (CAM,        Create,     b"Music/mine.jpg",                           BY_CAM,         PERM),
    (SHARED,     Read,       b"Download/a.pdf",                           BY_A,           A),
    (SHARED,     Read,       b"Download/b.pdf",                           BY_B,           A),
    (SHARED,     Delete,     b"Download/b.pdf",                           BY_B,           A),
    (SHARED,     Read,       b"Download/x.pdf",                           BY_SHARED_UID,  A),
    (MUSIC,      Read,       b"Download/b.pdf",                           BY_B,           ACCES),
    (NOBODY,     Read,       b"Download/x.pdf",                           BY_SHARED_UID,  ACCES),
    (GALLERY,    Write,      b"DCIM/Camera/mine.jpg",                     BY_CAM,         ACCES),
];

fn target(path: &'static [u8], facts: Facts) -> Target<'static> {
    Target {
        path,
        is_dir: facts.dir,
        owner: facts.owner,
        under_nomedia: facts.nomedia,
    }
}

#[test]
fn decisions() {
    assert!(CASES.len() >= 150, "{} cases", CASES.len());
    let snap = snapshot();
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|&(uid, op, path, facts, expected)| {
            let got = snap.decide(uid, op, &target(path, facts));
            (got != expected).then(|| {
                let path = String::from_utf8_lossy(path);
                format!("uid {uid} {op:?} {path:?} {facts:?}: expected {expected:?}, got {got:?}")
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[rustfmt::skip]
const LISTED: &[(u32, &[u8], Facts, bool)] = &[
    (ROOT,     b"Android/data/com.other.app",        DIR,            true),
    (SHELL,    b"DCIM/.thumbnails",                  DIR,            true),
    (ISOLATED, b"DCIM",                              DIR,            false),
    (ISOLATED, b"Download/mine.pdf",                 BY_ISOLATED,    false),
    (NOBODY,   b"DCIM",                              DIR,            true),
    (NOBODY,   b"Android/data",                      DIR,            true),
    (NOBODY,   b"DCIM/a.jpg",                        FILE,           false),
    (NOBODY,   b"Download/mine.pdf",                 BY_NOBODY,      true),
    (CAM,      b"DCIM/a.jpg",                        FILE,           true),
    (CAM,      b"Movies/a.mp4",                      FILE,           true),
    (CAM,      b"photo.jpg",                         FILE,           true),
    (CAM,      b"Music/a.mp3",                       FILE,           false),
    (MUSIC,    b"Music/a.mp3",                       FILE,           true),
    (CAM,      b"Download/doc.pdf",                  FILE,           false),
    (CAM,      b"Download/doc.pdf",                  BY_CAM,         true),
    (EDITOR,   b"Music/a.mp3",                       FILE,           false),
    (GRANTEE,  b"Download/notes.txt",                FILE,           true),
    (GRANTEE,  b"documents/REPORT.pdf",              FILE,           true),
    (GRANTEE,  b"Download/other.txt",                FILE,           false),
    (CAM,      b"Android/data/com.example.camera",   DIR,            true),
    (CAM,      b"Android/data/com.other.app",        DIR,            false),
    (CAM,      b"Android/obb/com.other.app",         DIR,            false),
    (CAM,      b"Android/media/com.other.app",       DIR,            true),
    (SHARED,   b"Android/data/com.example.b",        DIR,            true),
    (SHARED,   b"Android/obb/com.example.c",         DIR,            false),
    (FILES,    b"Android/data/com.other.app",        DIR,            false),
    (FILES,    b"Android/data/com.example.files",    DIR,            true),
    (FILES,    b"Download/doc.pdf",                  FILE,           true),
    (FILES,    b"DCIM/.thumbnails",                  DIR,            true),
    (LEGACY,   b"Download/.hidden",                  FILE,           true),
    (CAM,      b"DCIM/.thumbnails",                  DIR,            false),
    (CAM,      b"Download/.secret",                  BY_CAM,         true),
    (CAM,      b"Pictures/Private/a.jpg",            NOMEDIA_FILE,   false),
    (CAM,      b"Pictures/Private/a.jpg",            NOMEDIA_BY_CAM, true),
    (CAM,      b"Pictures/Private/sub",              NOMEDIA_DIR,    false),
];

#[test]
fn listing() {
    let snap = snapshot();
    let failures: Vec<String> = LISTED
        .iter()
        .filter_map(|&(uid, path, facts, expected)| {
            let got = snap.listed(uid, &target(path, facts));
            (got != expected).then(|| {
                let path = String::from_utf8_lossy(path);
                format!("uid {uid} {path:?} {facts:?}: expected {expected}, got {got}")
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[rustfmt::skip]
const CALLER_DEPENDENT: &[(&[u8], Facts, bool)] = &[
    (b"",                               DIR,          false),
    (b"DCIM",                           DIR,          false),
    (b"DCIM/a.jpg",                     FILE,         false),
    (b"Download/mine.pdf",              BY_CAM,       false),
    (b"Android",                        DIR,          false),
    (b"Android/data",                   DIR,          false),
    (b"Android/obb",                    DIR,          false),
    (b"Android/data/com.a",             DIR,          true),
    (b"android/OBB/com.a/x",            FILE,         true),
    (b"Android/data/x.txt",             FILE,         true),
    (b"Android/media/com.a",            DIR,          false),
    (b"Android/datax/com.a",            DIR,          false),
    // Hidden names are not secret by name: every app may look them up.
    (b"DCIM/.thumbnails",               DIR,          false),
    (b"DCIM/.thumbnails/1.jpg",         FILE,         false),
    (b".hidden",                        FILE,         false),
    (b"Download/stuff/a.pdf",           NOMEDIA_FILE, false),
];

const XDEV: Decision = Decision::Deny(libc::EXDEV);

/// Hard links, symlinks and fifos: never by apps, whatever the place.
#[rustfmt::skip]
const SPECIAL_CASES: &[(u32, Op, &[u8], Decision)] = &[
    (CAM,      Link,    b"Android/data/com.example.camera/x.jpg", PERM),
    (CAM,      Link,    b"DCIM/Camera/x.jpg",                     PERM),
    (FILES,    Link,    b"Download/x",                            PERM),
    (LEGACY,   Special, b"Download/link",                         PERM),
    (CAM,      Special, b"Android/data/com.other.app",            PERM),
    (ISOLATED, Link,    b"Download/x",                            ACCES),
    (ROOT,     Link,    b"Download/x",                            A),
    (SHELL,    Special, b"Download/fifo",                         A),
    (ODD,      Special, b"Download/fifo",                         A),
];

#[test]
fn links_symlinks_and_fifos() {
    let snap = snapshot();
    for &(uid, op, path, expected) in SPECIAL_CASES {
        let got = snap.decide(uid, op, &target(path, FILE));
        assert_eq!(
            got,
            expected,
            "uid {uid} {op:?} {:?}",
            String::from_utf8_lossy(path)
        );
    }
}

/// (caller, from, its facts, to, replaced, exchange, expected)
type MoveCase = (
    u32,
    &'static [u8],
    Facts,
    &'static [u8],
    Option<Facts>,
    bool,
    Decision,
);

#[rustfmt::skip]
const MOVES: &[MoveCase] = &[
    // A file: deletable at the source, creatable at the destination.
    (CAM,    b"DCIM/Camera/mine.jpg", BY_CAM,  b"Pictures/mine.jpg",     None,         false, A),
    (CAM,    b"DCIM/Camera/a.jpg",    FILE,    b"Pictures/a.jpg",        None,         false, ACCES),
    (CAM,    b"Download/mine.pdf",    BY_CAM,  b"DCIM/mine.pdf",         None,         false, PERM),
    (EDITOR, b"DCIM/a.jpg",           FILE,    b"Pictures/a.jpg",        None,         false, A),
    // What a plain rename replaces must be deletable by the caller.
    (NOBODY, b"Documents/junk.txt",   BY_NOBODY, b"Documents/v.txt",     Some(BY_CAM), false, ACCES),
    (CAM,    b"Documents/junk.txt",   BY_CAM,  b"Documents/v.txt",       Some(BY_CAM), false, A),
    (FILES,  b"Documents/junk.txt",   FILE,    b"Documents/v.txt",       Some(FILE),   false, A),
    // Exchange: both sides written by the caller, each creatable at the other's place.
    (CAM,    b"Download/mine.pdf",    BY_CAM,  b"Download/theirs.pdf",   Some(BY_A),   true,  ACCES),
    // (Types are judged by name, and an exchange keeps the names where they are.)
    (CAM,    b"Download/mine.pdf",    BY_CAM,  b"DCIM/mine.jpg",         Some(BY_CAM), true,  A),
    (CAM,    b"Download/mine.pdf",    BY_CAM,  b"Documents/a.pdf",       Some(FILE),   true,  ACCES),
    (CAM,    b"DCIM/a.jpg",           BY_CAM,  b"DCIM/b.jpg",            Some(BY_CAM), true,  A),
    // Areas: shared storage and each private app directory are separate mounts on Android.
    (NOBODY, b"DCIM/Camera",          DIR,     b"Android/data/com.example.camera/files/cam", None, false, XDEV),
    (CAM,    b"Download/mine.pdf",    BY_CAM,  b"Android/data/com.example.camera/x.pdf", None, false, XDEV),
    (CAM,    b"Android/data/com.example.camera/x.pdf", FILE, b"Download/x.pdf",   None, false, XDEV),
    (CAM,    b"Download/mine.pdf",    BY_CAM,  b"Android/data/com.other.app",  None, false, XDEV),
    (CAM,    b"Android/data/com.example.camera/a", FILE, b"Android/obb/com.example.camera/a", None, false, XDEV),
    (SHARED, b"Android/data/com.example.a/x", FILE, b"Android/data/com.example.b/x", None, false, XDEV),
    (CAM,    b"Android/data/com.example.camera/a", FILE, b"Android/data/com.example.camera/b", None, false, A),
    (ROOT,   b"DCIM/a.jpg",           FILE,    b"Android/data/com.x/a.jpg", None,      false, A),
    // Standard top-level directories stay where they are, whoever asks.
    (FILES,  b"DCIM",                 DIR,     b"Photos",                None,         false, ACCES),
    (FILES,  b"MyStuff",              DIR,     b"Other",                 None,         false, A),
    (CAM,    b"MyStuff",              DIR,     b"Other",                 None,         false, ACCES),
    (CAM,    b"Download/bd",          DIR,     b"DCIM/bd",               None,         false, A),
];

#[test]
fn moves() {
    let snap = snapshot();
    for &(uid, from, facts, to, replaced, exchange, expected) in MOVES {
        let source = target(from, facts);
        let there = replaced.map(|f| target(to, f));
        let got = snap.decide_move(
            uid,
            &super::Move {
                from: &source,
                to,
                to_under_nomedia: false,
                replaced: there.as_ref(),
                exchange,
            },
        );
        assert_eq!(
            got,
            expected,
            "uid {uid} {:?} -> {:?}",
            String::from_utf8_lossy(from),
            String::from_utf8_lossy(to)
        );
    }
}

/// Files below a moved directory: deletable where they are, creatable where they land.
#[rustfmt::skip]
#[allow(clippy::type_complexity)] // a table of cases, one tuple a line
const MOVED_ENTRIES: &[(u32, &[u8], Facts, &[u8], Decision)] = &[
    (NOBODY, b"Download/bd/evil.exe",  BY_NOBODY, b"DCIM/bd/evil.exe",   PERM),
    (NOBODY, b"Download/bd/a.jpg",     BY_NOBODY, b"DCIM/bd/a.jpg",      A),
    (NOBODY, b"Download/bd/theirs.pdf", BY_CAM,   b"Documents/bd/theirs.pdf", ACCES),
    (NOBODY, b"Download/bd/sub",       DIR,       b"DCIM/bd/sub",        A),
    (FILES,  b"Download/bd/evil.exe",  FILE,      b"DCIM/bd/evil.exe",   A),
    (ISOLATED, b"Download/bd/x",       FILE,      b"Download/bc/x",      ACCES),
];

#[test]
fn moved_entries() {
    let snap = snapshot();
    for &(uid, from, facts, to, expected) in MOVED_ENTRIES {
        let got = snap.decide_moved_entry(uid, &target(from, facts), to, false);
        assert_eq!(
            got,
            expected,
            "uid {uid} {:?}",
            String::from_utf8_lossy(from)
        );
    }
    assert!(snap.move_needs_walk(CAM, b"Download/bd"));
    assert!(!snap.move_needs_walk(CAM, b"Android/data/com.example.camera/files"));
    assert!(!snap.move_needs_walk(ROOT, b"Download/bd"));
}

#[test]
fn one_call_answers_every_operation() {
    let snap = snapshot();
    for &(uid, path, facts) in &[
        (CAM, &b"DCIM/a.jpg"[..], FILE),
        (GRANTEE, b"Documents/report.pdf", FILE),
        (NOBODY, b"Android/data/com.example.camera/x", FILE),
        (CAM, b"Download/.hidden", BY_CAM),
    ] {
        let t = target(path, facts);
        let all = snap.decide_all(uid, &t);
        for op in [Lookup, Read, Write, Delete, RenameFrom, ListDir] {
            assert_eq!(all.get(op), Some(snap.decide(uid, op, &t)), "{uid} {op:?}");
        }
        assert_eq!(all.get(Create), None);
    }
}

#[test]
fn caller_dependence() {
    for &(path, facts, expected) in CALLER_DEPENDENT {
        let got = super::caller_dependent(&target(path, facts));
        assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(path));
    }
}

/// Whatever the bytes, nothing panics, and bypass / isolated answers hold.
#[test]
fn arbitrary_bytes() {
    let snap = snapshot();
    let ops = [
        Lookup, Read, Write, Create, Mkdir, Delete, RenameFrom, RenameTo, ListDir,
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: &[u8] = b"/./AaDdnroi\xff\xc3\x00:.";
    for _ in 0..20_000 {
        let len = (next() % 24) as usize;
        let path: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let tag: Vec<u8> = (0..(next() % 8))
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let target = Target {
            path: &path,
            is_dir: next() % 2 == 0,
            owner: (next() % 2 == 0).then_some(&tag[..]),
            under_nomedia: next() % 4 == 0,
        };
        let op = ops[(next() % ops.len() as u64) as usize];
        for uid in [CAM, NOBODY, FILES, GRANTEE, SHARED] {
            let _ = snap.decide(uid, op, &target);
            let _ = snap.listed(uid, &target);
        }
        assert_eq!(snap.decide(ROOT, op, &target), A);
        assert_eq!(snap.decide(ISOLATED, op, &target), ACCES);
        assert!(!snap.listed(ISOLATED, &target));
        let _ = super::caller_dependent(&target);
    }
}
