//! The per-app policy through a real mount, acting as real app uids (forked children with
//! setresuid): errnos per rule, ownership across restarts, grants, reloads, listings, tricks.

mod common;

use common::{as_uid, can_mount, names, sys, Mount, MountOptions};
use std::path::Path;

const CAMERA: u32 = 10057; // read_images, read_video
const MUSIC: u32 = 10058; // read_audio, write_media
const FILES: u32 = 10059; // manage_external_storage
const LEGACY: u32 = 10060; // legacy_storage, access_media_location
const SHARED: u32 = 10061; // shared uid, two packages, no permissions
const NOPERM: u32 = 10062; // no permissions, grants
const UNKNOWN: u32 = 10070; // no app entry at all
const ISOLATED: u32 = 99001; // isolated process
const SHELL: u32 = 2000;

const POLICY: &str = r#"
platform_uids = [1000, 2000]

[[app]]
uid = 10057
packages = ["com.example.camera"]
permissions = ["read_images", "read_video"]

[[app]]
uid = 10058
packages = ["com.example.music"]
permissions = ["read_audio", "write_media"]

[[app]]
uid = 10059
packages = ["com.example.files"]
permissions = ["manage_external_storage"]

[[app]]
uid = 10060
packages = ["com.example.legacy"]
permissions = ["legacy_storage", "access_media_location"]

[[app]]
uid = 10061
packages = ["com.shared.one", "com.shared.two"]
permissions = []

[[app]]
uid = 10062
packages = ["com.example.noperm"]

[[grant]]
uid = 10062
path = "DCIM/Camera/granted.jpg"
access = "read"

[[grant]]
uid = 10062
path = "documents/SHARED.pdf"
access = "write"
"#;

const LOWER_FILES: &[&str] = &[
    "DCIM/Camera/IMG_0001.jpg",
    "DCIM/Camera/VID_0001.mp4",
    "DCIM/Camera/granted.jpg",
    "DCIM/Camera/deleteme.jpg",
    "Music/song.mp3",
    "Download/report.pdf",
    "Documents/shared.pdf",
    "Android/data/com.example.camera/files/cache.bin",
    "Android/data/com.example.music/files/m.bin",
    "Android/obb/com.example.camera/main.obb",
    "ANDROID/Data/com.example.music/x.bin",
    "Pictures/.hidden.jpg",
    "Pictures/private/.nomedia",
    "Pictures/private/secret.jpg",
    "Pictures/visible.png",
    "toplevel.txt",
    "Movies/clip.mp4",
];

fn setup(m: &Mount) {
    for f in LOWER_FILES {
        let p = m.lower_path(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("content of {f}")).unwrap();
    }
}

#[derive(Clone, Copy, Debug)]
enum Act {
    Read,
    Write,
    Stat,
    Create,
    Truncate,
    Unlink,
    Mkdir,
    Rmdir,
    Rename(&'static str),
    /// Setting the owner xattr by hand.
    ForgeOwner,
}

fn act(m: &Mount, uid: u32, a: Act, rel: &str) -> Result<Vec<u8>, i32> {
    let p = m.path(rel);
    as_uid(uid, || match a {
        Act::Read => sys::read_file(&p),
        Act::Write => sys::try_open(&p, libc::O_WRONLY),
        Act::Stat => sys::exists(&p),
        Act::Create => sys::try_open(&p, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL),
        Act::Truncate => sys::truncate(&p, 0),
        Act::Unlink => sys::unlink(&p),
        Act::Mkdir => sys::mkdir(&p),
        Act::Rmdir => sys::rmdir(&p),
        Act::Rename(to) => sys::rename(&p, &m.path(to)),
        Act::ForgeOwner => {
            let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            let v = b"10062:com.example.noperm";
            // SAFETY: NUL-terminated strings; value read for its length.
            let r = unsafe {
                libc::setxattr(
                    c.as_ptr(),
                    c"user.fusegate.owner".as_ptr(),
                    v.as_ptr().cast(),
                    v.len(),
                    0,
                )
            };
            if r == 0 {
                Ok(vec![])
            } else {
                Err(common::errno())
            }
        }
    })
}

const OK: i32 = 0;
const EACCES: i32 = libc::EACCES;
const ENOENT: i32 = libc::ENOENT;
const EPERM: i32 = libc::EPERM;

/// (uid, action, path, expected errno or OK), run in order: later cases see earlier effects.
const CASES: &[(u32, Act, &str, i32)] = &[
    // Reading media by permission, grants, ownership.
    (CAMERA, Act::Read, "DCIM/Camera/IMG_0001.jpg", OK),
    (CAMERA, Act::Read, "DCIM/Camera/VID_0001.mp4", OK),
    (CAMERA, Act::Read, "Music/song.mp3", EACCES),
    (MUSIC, Act::Read, "Music/song.mp3", OK),
    (MUSIC, Act::Read, "DCIM/Camera/IMG_0001.jpg", EACCES),
    (NOPERM, Act::Read, "DCIM/Camera/IMG_0001.jpg", EACCES),
    (NOPERM, Act::Read, "DCIM/Camera/granted.jpg", OK),
    (NOPERM, Act::Read, "dcim/camera/GRANTED.JPG", ENOENT), // the lower tree is case-sensitive
    (UNKNOWN, Act::Read, "DCIM/Camera/IMG_0001.jpg", EACCES),
    (UNKNOWN, Act::Stat, "DCIM/Camera/IMG_0001.jpg", OK),
    // Other files: only grants and the broad permissions.
    (CAMERA, Act::Read, "Download/report.pdf", EACCES),
    (FILES, Act::Read, "Download/report.pdf", OK),
    (LEGACY, Act::Read, "Download/report.pdf", OK),
    (NOPERM, Act::Read, "Documents/shared.pdf", OK), // a write grant implies read
    (UNKNOWN, Act::Read, "Documents/shared.pdf", EACCES),
    (0, Act::Read, "Download/report.pdf", OK),
    (SHELL, Act::Read, "Download/report.pdf", OK),
    (1000, Act::Read, "Download/report.pdf", OK),
    (ISOLATED, Act::Read, "DCIM/Camera/IMG_0001.jpg", EACCES),
    // A name no app looked up yet reaches the daemon (stat of a name the kernel already caches
    // for everyone is answered by the kernel; opens always reach the daemon).
    (ISOLATED, Act::Stat, "Movies", EACCES),
    // Private app directories: existence hidden, case and `..` tricks included.
    (
        CAMERA,
        Act::Read,
        "Android/data/com.example.camera/files/cache.bin",
        OK,
    ),
    (
        CAMERA,
        Act::Read,
        "Android/data/com.example.music/files/m.bin",
        ENOENT,
    ),
    (CAMERA, Act::Stat, "Android/data/com.example.music", ENOENT),
    (MUSIC, Act::Stat, "Android/data/com.example.camera", ENOENT),
    (
        FILES,
        Act::Read,
        "Android/data/com.example.camera/files/cache.bin",
        ENOENT,
    ),
    (LEGACY, Act::Stat, "Android/data/com.example.music", ENOENT),
    (
        CAMERA,
        Act::Read,
        "ANDROID/Data/com.example.music/x.bin",
        ENOENT,
    ),
    (CAMERA, Act::Stat, "ANDROID/Data/COM.EXAMPLE.MUSIC", ENOENT),
    (MUSIC, Act::Read, "ANDROID/Data/com.example.music/x.bin", OK),
    (
        MUSIC,
        Act::Read,
        "Music/../Android/data/com.example.camera/files/cache.bin",
        ENOENT,
    ),
    (
        CAMERA,
        Act::Read,
        "Android/obb/com.example.camera/main.obb",
        OK,
    ),
    (
        MUSIC,
        Act::Read,
        "Android/obb/com.example.camera/main.obb",
        ENOENT,
    ),
    (
        0,
        Act::Read,
        "Android/data/com.example.music/files/m.bin",
        OK,
    ),
    // Hidden files and .nomedia trees.
    // Hidden names are not secret by name (MediaProvider): stat works, opens are judged.
    (CAMERA, Act::Stat, "Pictures/.hidden.jpg", OK),
    (CAMERA, Act::Read, "Pictures/.hidden.jpg", EACCES),
    (FILES, Act::Stat, "Pictures/.hidden.jpg", OK),
    (CAMERA, Act::Read, "Pictures/private/secret.jpg", EACCES),
    (CAMERA, Act::Read, "Pictures/visible.png", OK),
    (LEGACY, Act::Read, "Pictures/private/secret.jpg", OK),
    (0, Act::Read, "Pictures/private/secret.jpg", OK),
    // Writing not-owned files.
    (MUSIC, Act::Write, "DCIM/Camera/IMG_0001.jpg", OK), // write_media
    (CAMERA, Act::Write, "DCIM/Camera/IMG_0001.jpg", EACCES),
    (MUSIC, Act::Write, "Download/report.pdf", EACCES), // write_media covers media only
    (NOPERM, Act::Write, "Documents/shared.pdf", OK),
    (NOPERM, Act::Write, "DCIM/Camera/granted.jpg", EACCES), // read grant only
    (FILES, Act::Write, "Download/report.pdf", OK),
    (CAMERA, Act::Truncate, "DCIM/Camera/VID_0001.mp4", EACCES),
    (NOPERM, Act::Truncate, "Documents/shared.pdf", OK),
    (NOPERM, Act::ForgeOwner, "Download/report.pdf", EPERM),
    // Creating: by type and place.
    (CAMERA, Act::Create, "DCIM/Camera/new.jpg", OK),
    (CAMERA, Act::Create, "DCIM/Camera/new2.jpg", OK),
    (CAMERA, Act::Create, "Music/new.jpg", EPERM),
    (MUSIC, Act::Create, "Music/new.mp3", OK),
    (MUSIC, Act::Create, "DCIM/new.mp3", EPERM),
    (NOPERM, Act::Create, "Download/any.bin", OK),
    (NOPERM, Act::Create, "Documents/notes.txt", OK),
    (NOPERM, Act::Create, "Pictures/notes.txt", EPERM),
    (NOPERM, Act::Create, "rootfile.txt", EACCES),
    (FILES, Act::Create, "rootfile2.txt", EACCES),
    (0, Act::Create, "rootfile3.txt", OK),
    (
        CAMERA,
        Act::Create,
        "Android/data/com.example.camera/files/new.bin",
        OK,
    ),
    (
        CAMERA,
        Act::Create,
        "Android/data/com.example.music/files/evil.bin",
        ENOENT,
    ),
    (UNKNOWN, Act::Create, "Download/u.txt", OK),
    (SHARED, Act::Create, "Documents/shared-own.txt", OK),
    (NOPERM, Act::Create, "Download/mine.txt", OK),
    // Directories: top level is off limits to apps without the broad permissions.
    (CAMERA, Act::Mkdir, "NewTop", EACCES),
    (FILES, Act::Mkdir, "NewTop2", OK),
    (CAMERA, Act::Mkdir, "DCIM/MyApp", OK),
    (CAMERA, Act::Rmdir, "DCIM", EACCES),
    (
        CAMERA,
        Act::Mkdir,
        "Android/data/com.example.camera/sub",
        OK,
    ),
    (CAMERA, Act::Rename("DCIM2"), "DCIM", EACCES),
    // Own files.
    (NOPERM, Act::Read, "Download/mine.txt", OK),
    (NOPERM, Act::Write, "Download/mine.txt", OK),
    (UNKNOWN, Act::Read, "Download/mine.txt", EACCES),
    (UNKNOWN, Act::Read, "Download/u.txt", OK),
    (SHARED, Act::Read, "Documents/shared-own.txt", OK),
    (NOPERM, Act::ForgeOwner, "Download/mine.txt", EPERM),
    (CAMERA, Act::Unlink, "DCIM/Camera/new.jpg", OK),
    (CAMERA, Act::Unlink, "DCIM/Camera/VID_0001.mp4", EACCES),
    (MUSIC, Act::Unlink, "DCIM/Camera/deleteme.jpg", OK), // write_media may delete media
    (NOPERM, Act::Unlink, "Download/report.pdf", EACCES),
    // Renames: the target must be a valid place to create the file.
    (
        NOPERM,
        Act::Rename("Documents/mine.txt"),
        "Download/mine.txt",
        OK,
    ),
    (
        NOPERM,
        Act::Rename("DCIM/mine.txt"),
        "Documents/mine.txt",
        EPERM,
    ),
    (
        CAMERA,
        Act::Rename("Music/new2.jpg"),
        "DCIM/Camera/new2.jpg",
        EPERM,
    ),
    (
        CAMERA,
        Act::Rename("Pictures/new2.jpg"),
        "DCIM/Camera/new2.jpg",
        OK,
    ),
    (
        FILES,
        Act::Rename("Documents/report.pdf"),
        "Download/report.pdf",
        OK,
    ),
    (NOPERM, Act::Read, "Documents/mine.txt", OK),
];

#[test]
fn app_uids_get_the_android_answers() {
    if !can_mount() {
        return;
    }
    // With user xattrs offered, so that forging the owner tag meets the owner rule (EPERM);
    // with none, every xattr write is EOPNOTSUPP before any rule.
    let mut m = Mount::new(MountOptions {
        policy: Some(POLICY.into()),
        extra: vec!["--xattrs".into(), "user".into()],
        ..Default::default()
    });
    setup(&m);
    let mut failures = Vec::new();
    for (i, &(uid, a, rel, want)) in CASES.iter().enumerate() {
        let got = match act(&m, uid, a, rel) {
            Ok(_) => OK,
            Err(e) => e,
        };
        if got != want {
            failures.push(format!(
                "case {i}: uid {uid} {a:?} {rel}: want {}, got {}",
                name(want),
                name(got)
            ));
        }
    }
    assert!(CASES.len() >= 60);
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );

    // The owner of a file created through the mount is recorded on the lower file.
    let tag = xattr(&m.lower_path("Documents/mine.txt"), "user.fusegate.owner");
    assert_eq!(tag.as_deref(), Some(&b"10062:com.example.noperm"[..]));
    assert_eq!(
        xattr(&m.lower_path("Download/u.txt"), "user.fusegate.owner").as_deref(),
        Some(&b"10070"[..])
    );
    // ...and hidden from apps.
    let listed = as_uid(NOPERM, || {
        let c = std::ffi::CString::new(m.path("Documents/mine.txt").to_str().unwrap()).unwrap();
        let mut buf = [0u8; 512];
        // SAFETY: writes at most buf.len() bytes.
        let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(common::errno())
        } else {
            Ok(buf[..n as usize].to_vec())
        }
    })
    .unwrap();
    assert!(!String::from_utf8_lossy(&listed).contains("fusegate"));

    // Ownership survives a restart of the daemon.
    m.restart();
    assert_eq!(
        act(&m, NOPERM, Act::Read, "Documents/mine.txt"),
        Ok(b"".to_vec())
    );
    assert_eq!(
        act(&m, UNKNOWN, Act::Read, "Documents/mine.txt"),
        Err(EACCES)
    );
    assert_eq!(
        act(&m, UNKNOWN, Act::Read, "Download/u.txt"),
        Ok(b"".to_vec())
    );
    assert_eq!(
        act(&m, CAMERA, Act::Stat, "Android/data/com.example.camera/sub"),
        Ok(vec![])
    );
}

fn name(e: i32) -> String {
    if e == 0 {
        "OK".into()
    } else {
        format!("{} ({})", std::io::Error::from_raw_os_error(e), e)
    }
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: writes at most buf.len() bytes.
    let r = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

fn list(m: &Mount, uid: u32, rel: &str) -> Result<Vec<String>, i32> {
    let p = m.path(rel);
    as_uid(uid, || sys::list(&p)).map(|v| names(&v))
}

#[test]
fn listings_show_each_app_only_what_it_may_see() {
    if !can_mount() {
        return;
    }
    let m = Mount::new(MountOptions {
        policy: Some(POLICY.into()),
        ..Default::default()
    });
    setup(&m);
    std::fs::write(m.lower_path("Download/other.txt"), b"x").unwrap();
    assert_eq!(
        act(&m, UNKNOWN, Act::Create, "Download/mine-unknown.txt"),
        Ok(vec![])
    );

    let camera = [
        "IMG_0001.jpg",
        "VID_0001.mp4",
        "deleteme.jpg",
        "granted.jpg",
    ];
    assert_eq!(
        list(&m, CAMERA, "DCIM/Camera"),
        Ok(camera.iter().map(|s| s.to_string()).collect())
    );
    assert_eq!(
        list(&m, NOPERM, "DCIM/Camera"),
        Ok(vec!["granted.jpg".to_string()])
    );
    assert_eq!(list(&m, MUSIC, "DCIM/Camera"), Ok(vec![]));
    assert_eq!(list(&m, MUSIC, "Music"), Ok(vec!["song.mp3".to_string()]));
    assert_eq!(
        list(&m, CAMERA, "Android/data"),
        Ok(vec!["com.example.camera".to_string()])
    );
    assert_eq!(
        list(&m, MUSIC, "Android/data"),
        Ok(vec!["com.example.music".to_string()])
    );
    assert_eq!(list(&m, FILES, "Android/data"), Ok(vec![]));
    assert_eq!(
        list(&m, MUSIC, "ANDROID/Data"),
        Ok(vec!["com.example.music".to_string()])
    );
    assert_eq!(
        list(&m, UNKNOWN, "Download"),
        Ok(vec!["mine-unknown.txt".to_string()])
    );
    assert_eq!(
        list(&m, FILES, "Download"),
        Ok(vec![
            "mine-unknown.txt".into(),
            "other.txt".into(),
            "report.pdf".into()
        ])
    );
    assert_eq!(
        list(&m, CAMERA, "Pictures"),
        Ok(vec!["private".to_string(), "visible.png".to_string()])
    );
    assert_eq!(list(&m, CAMERA, "Pictures/private"), Ok(vec![]));
    assert_eq!(
        list(&m, FILES, "Pictures"),
        Ok(vec![
            ".hidden.jpg".into(),
            "private".into(),
            "visible.png".into()
        ])
    );
    assert_eq!(list(&m, ISOLATED, "DCIM"), Err(EACCES));
    assert_eq!(
        list(&m, 0, "Android/data"),
        Ok(vec![
            "com.example.camera".into(),
            "com.example.music".into()
        ])
    );
    // Listings are never shared between apps through the kernel's caches: ask again in turn.
    for _ in 0..3 {
        assert_eq!(
            list(&m, NOPERM, "DCIM/Camera"),
            Ok(vec!["granted.jpg".to_string()])
        );
        assert_eq!(list(&m, CAMERA, "DCIM/Camera").map(|v| v.len()), Ok(4));
    }
}

#[test]
fn a_reload_takes_effect_even_for_cached_lookups() {
    if !can_mount() {
        return;
    }
    let m = Mount::new(MountOptions {
        policy: Some(POLICY.into()),
        cache_timeout: Some(3600),
        ..Default::default()
    });
    setup(&m);
    // Warm the kernel's caches as the apps that are allowed.
    assert_eq!(
        act(
            &m,
            CAMERA,
            Act::Stat,
            "Android/data/com.example.camera/files/cache.bin"
        ),
        Ok(vec![])
    );
    assert_eq!(
        act(&m, NOPERM, Act::Read, "DCIM/Camera/granted.jpg").map(|_| ()),
        Ok(())
    );
    assert_eq!(
        act(&m, NOPERM, Act::Read, "DCIM/Camera/IMG_0001.jpg"),
        Err(EACCES)
    );
    assert_eq!(
        act(&m, MUSIC, Act::Stat, "Android/data/com.example.camera"),
        Err(ENOENT)
    );

    // Camera loses its package, noperm loses its grant but gains read_images, music gains
    // the camera package.
    let changed = POLICY
        .replace(
            "packages = [\"com.example.camera\"]",
            "packages = [\"com.example.other\"]",
        )
        .replace(
            "packages = [\"com.example.music\"]",
            "packages = [\"com.example.music\", \"com.example.camera\"]",
        )
        .replace(
            "packages = [\"com.example.noperm\"]",
            "packages = [\"com.example.noperm\"]\npermissions = [\"read_images\"]",
        )
        .replace(
            "path = \"DCIM/Camera/granted.jpg\"\naccess = \"read\"",
            "path = \"Download/report.pdf\"\naccess = \"read\"",
        );
    m.reload_policy(&changed);
    assert_eq!(
        act(
            &m,
            CAMERA,
            Act::Stat,
            "Android/data/com.example.camera/files/cache.bin"
        ),
        Err(ENOENT)
    );
    assert_eq!(
        act(&m, CAMERA, Act::Stat, "Android/data/com.example.camera"),
        Err(ENOENT)
    );
    assert_eq!(
        act(&m, MUSIC, Act::Stat, "Android/data/com.example.camera"),
        Ok(vec![])
    );
    assert_eq!(
        act(&m, NOPERM, Act::Read, "DCIM/Camera/IMG_0001.jpg").map(|_| ()),
        Ok(())
    );
    assert_eq!(
        act(&m, NOPERM, Act::Read, "Download/report.pdf").map(|_| ()),
        Ok(())
    );

    // A bad file is refused with its line number and changes nothing.
    let bad = format!("{changed}\n[[app]]\nuid = 10099\npackages = [\"x\"]\npermissions = [\"read_everything\"]\n");
    let p = m.policy_file.clone().unwrap();
    std::fs::write(&p, &bad).unwrap();
    m.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !m.log_text().contains("keeping the current policy") {
        assert!(std::time::Instant::now() < deadline, "{}", m.log_text());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let line = bad
        .lines()
        .position(|l| l.contains("read_everything"))
        .unwrap()
        + 1;
    assert!(
        m.log_text().contains(&format!("line {line}")),
        "line {line} not named:\n{}",
        m.log_text()
    );
    assert_eq!(
        act(&m, NOPERM, Act::Read, "DCIM/Camera/IMG_0001.jpg").map(|_| ()),
        Ok(())
    );
}

#[test]
fn a_bad_policy_file_stops_the_start_with_its_line() {
    if !can_mount() {
        return;
    }
    let lower = common::TempDir::lower("lower");
    let mnt = common::TempDir::new("mnt");
    let pf = mnt.path().with_extension("bad.toml");
    std::fs::write(
        &pf,
        "[[app]]\nuid = 10057\npackages = [\"a\"]\n\n[[app]]\nuid = 10057\npackages = [\"b\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::daemon_bin())
        .args([
            "--lower",
            lower.path().to_str().unwrap(),
            "--mount",
            mnt.path().to_str().unwrap(),
            "--policy",
            pf.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&pf);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("line 6") || err.contains("line 5"), "{err}");
    assert!(!common::is_mounted(mnt.path()));
}

#[test]
fn denials_are_counted_and_logged() {
    if !can_mount() {
        return;
    }
    let mut m = Mount::new(MountOptions {
        policy: Some(POLICY.into()),
        ..Default::default()
    });
    setup(&m);
    for _ in 0..3 {
        assert_eq!(
            act(&m, CAMERA, Act::Read, "Download/report.pdf"),
            Err(EACCES)
        );
    }
    assert!(m.stop().success());
    let log = m.log_text();
    assert!(
        log.contains("denied: uid 10057 read \"Download/report.pdf\""),
        "{log}"
    );
    let denials: u64 = log
        .lines()
        .filter(|l| l.contains("final stats"))
        .find_map(|l| {
            l.split("denials ")
                .nth(1)?
                .split(';')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .unwrap();
    assert!(denials >= 3, "{log}");
}
