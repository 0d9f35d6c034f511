//! Issue 9: one regression test per defect found by attacking the policy through a real mount,
//! written against /work/wt/notes/SOUNDNESS-SPEC.md (rule numbers "spec N" below). Each test
//! collects every wrong answer it sees and fails with the whole list, so that one run tells
//! which rules hold.
//!
//! Apps (as in the issue): com.a 10057 `read_images`, com.b 10058 no permissions, com.c 10059
//! `manage_external_storage`, and com.d 10060 `write_media` (the hard-link case).

mod common;

use common::{as_uid, as_uid_with, can_mount, names, sys, sys2, Ext4Image, Mount, MountOptions};
use std::path::{Path, PathBuf};

const A: u32 = 10057; // com.a, read_images
const B: u32 = 10058; // com.b, no permissions
const C: u32 = 10059; // com.c, manage_external_storage
const D: u32 = 10060; // com.d, write_media
const POSIX: u32 = 1000; // a plain Linux user: neither root nor an app

const POLICY: &str = r#"
[[app]]
uid = 10057
packages = ["com.a"]
permissions = ["read_images"]

[[app]]
uid = 10058
packages = ["com.b"]
permissions = []

[[app]]
uid = 10059
packages = ["com.c"]
permissions = ["manage_external_storage"]

[[app]]
uid = 10060
packages = ["com.d"]
permissions = ["write_media"]
"#;

const OWNER_XATTR: &str = "user.fusegate.owner";
const OK: i32 = 0;
const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;

fn options() -> MountOptions {
    MountOptions {
        policy: Some(POLICY.into()),
        ..Default::default()
    }
}

/// The standard skeleton, made on the lower dir as root (no owner tags).
fn skeleton(lower: &Path) {
    for d in [
        "DCIM/Camera",
        "Download",
        "Documents",
        "Pictures",
        "Music",
        "Android/data/com.a/files",
        "Android/data/com.b/files",
        "Android/data/com.c/files",
        "Android/data/com.d/files",
        "Android/obb/com.a",
    ] {
        std::fs::create_dir_all(lower.join(d)).unwrap();
    }
}

fn mount(options: MountOptions) -> Mount {
    let m = Mount::new(options);
    skeleton(m.lower.path());
    m
}

/// A lower file written as root, with an owner tag if given ("10057:com.a").
fn lower_file(m: &Mount, rel: &str, data: &[u8], owner: Option<&str>) {
    let p = m.lower_path(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    if let Some(o) = owner {
        sys2::setxattr(&p, OWNER_XATTR, o.as_bytes());
    }
}

fn errname(e: i32) -> String {
    if e == OK {
        "OK".into()
    } else {
        format!("{} ({e})", std::io::Error::from_raw_os_error(e))
    }
}

fn code<T>(r: &Result<T, i32>) -> i32 {
    match r {
        Ok(_) => OK,
        Err(e) => *e,
    }
}

/// Every wrong answer of one test, reported together.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    /// `got` must be `want` (an errno, or OK).
    fn errno<T>(&mut self, what: &str, got: Result<T, i32>, want: i32) {
        let got = code(&got);
        if got != want {
            self.0.push(format!(
                "{what}: want {}, got {}",
                errname(want),
                errname(got)
            ));
        }
    }

    /// `got` must be one of `want`.
    fn one_of<T>(&mut self, what: &str, got: Result<T, i32>, want: &[i32]) {
        let got = code(&got);
        if !want.contains(&got) {
            let w: Vec<String> = want.iter().map(|&e| errname(e)).collect();
            self.0.push(format!(
                "{what}: want one of [{}], got {}",
                w.join(", "),
                errname(got)
            ));
        }
    }

    fn truth(&mut self, what: &str, ok: bool) {
        if !ok {
            self.0.push(format!("{what}: not true"));
        }
    }

    fn finish(self, m: Option<&Mount>) {
        if !self.0.is_empty() {
            let log = m.map(|m| m.log_text()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "{} wrong answer(s):\n  {}\n--- last daemon log lines ---\n{}",
                self.0.len(),
                self.0.join("\n  "),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn read(m: &Mount, uid: u32, rel: &str) -> Result<Vec<u8>, i32> {
    let p = m.path(rel);
    as_uid(uid, || sys::read_file(&p))
}

fn create(m: &Mount, uid: u32, rel: &str, data: &[u8]) -> Result<Vec<u8>, i32> {
    let p = m.path(rel);
    as_uid(uid, || {
        sys2::open_write(&p, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, data)
    })
}

fn rename2(m: &Mount, uid: u32, from: &str, to: &str, flags: u32) -> Result<Vec<u8>, i32> {
    let (a, b) = (m.path(from), m.path(to));
    as_uid(uid, || sys2::rename2(&a, &b, flags))
}

/// A rename the rules refuse: if today's daemon lets it through anyway, it is undone on the
/// lower dir (as far as possible: a replaced target is gone) so that the next checks of the
/// test still start from the intended tree instead of failing on ENOENT.
fn refused_rename(m: &Mount, uid: u32, from: &str, to: &str, flags: u32) -> Result<Vec<u8>, i32> {
    let (a, b) = (m.lower_path(from), m.lower_path(to));
    // A file the rename may replace is kept by a second name outside the tree.
    let keep = m.lower.path().with_extension("undo");
    let _ = std::fs::remove_file(&keep);
    let kept = flags == 0 && b.is_file() && std::fs::hard_link(&b, &keep).is_ok();
    let r = rename2(m, uid, from, to, flags);
    if r.is_ok() {
        let back = if flags & RENAME_EXCHANGE != 0 {
            sys2::rename2(&a, &b, RENAME_EXCHANGE)
        } else {
            sys2::rename2(&b, &a, 0)
        };
        assert!(
            back.is_ok(),
            "undoing {from} -> {to} on the lower dir: {back:?}"
        );
        if kept {
            std::fs::rename(&keep, &b).unwrap();
        }
    }
    let _ = std::fs::remove_file(&keep);
    r
}

fn stat(m: &Mount, uid: u32, rel: &str) -> Result<Vec<u8>, i32> {
    let p = m.path(rel);
    as_uid(uid, || sys::exists(&p))
}

fn owner_tag(m: &Mount, rel: &str) -> Option<String> {
    sys2::getxattr(&m.lower_path(rel), OWNER_XATTR).map(|v| String::from_utf8_lossy(&v).into())
}

fn lower_exists(m: &Mount, rel: &str) -> bool {
    m.lower_path(rel).symlink_metadata().is_ok()
}

/// Issue 9 item 1: a directory rename must not move other apps' files (spec 2, 3), nor may
/// RENAME_EXCHANGE.
#[test]
fn directory_rename_cannot_move_other_apps_files() {
    if !can_mount() {
        return;
    }
    let m = mount(options());
    let mut c = Checks::default();
    lower_file(&m, "DCIM/Camera/IMG_1.jpg", b"photo", None);
    lower_file(&m, "DCIM/Camera/IMG_2.jpg", b"photo2", Some("10057:com.a"));
    c.errno(
        "A mkdir Download/adir",
        as_uid(A, || sys::mkdir(&m.path("Download/adir"))),
        OK,
    );
    c.errno(
        "A create Download/adir/a.txt",
        create(&m, A, "Download/adir/a.txt", b"A's"),
        OK,
    );

    // Across areas: EXDEV, whatever the contents (spec 2).
    c.errno(
        "B mv DCIM/Camera Android/data/com.b/files/cam",
        refused_rename(&m, B, "DCIM/Camera", "Android/data/com.b/files/cam", 0),
        libc::EXDEV,
    );
    c.errno(
        "B mv Download/adir Android/data/com.b/files/x",
        refused_rename(&m, B, "Download/adir", "Android/data/com.b/files/x", 0),
        libc::EXDEV,
    );
    // Within shared storage: every file in the subtree must be deletable by B (spec 3).
    c.errno(
        "B mv DCIM/Camera DCIM/cam",
        refused_rename(&m, B, "DCIM/Camera", "DCIM/cam", 0),
        libc::EACCES,
    );
    c.errno(
        "B mv Download/adir Download/bdir",
        refused_rename(&m, B, "Download/adir", "Download/bdir", 0),
        libc::EACCES,
    );
    c.errno(
        "B mv Download/adir Documents/adir",
        refused_rename(&m, B, "Download/adir", "Documents/adir", 0),
        libc::EACCES,
    );
    // EXCHANGE with a directory of B's own: A's subtree still may not move (spec 3).
    c.errno(
        "B mkdir Download/bx",
        as_uid(B, || sys::mkdir(&m.path("Download/bx"))),
        OK,
    );
    c.errno(
        "B exchange Download/bx <-> Download/adir",
        refused_rename(&m, B, "Download/bx", "Download/adir", RENAME_EXCHANGE),
        libc::EACCES,
    );
    c.errno(
        "B mkdir DCIM/bcam",
        as_uid(B, || sys::mkdir(&m.path("DCIM/bcam"))),
        OK,
    );
    c.errno(
        "B exchange DCIM/bcam <-> DCIM/Camera",
        refused_rename(&m, B, "DCIM/bcam", "DCIM/Camera", RENAME_EXCHANGE),
        libc::EACCES,
    );
    // NOREPLACE onto a free name is still a rename of A's tree.
    c.errno(
        "B mv -n Download/adir Download/ny",
        refused_rename(&m, B, "Download/adir", "Download/ny", RENAME_NOREPLACE),
        libc::EACCES,
    );
    // Top-level directories are never renamed by an app (spec 3), even with all-files access.
    c.errno(
        "B mv DCIM DCIM2",
        refused_rename(&m, B, "DCIM", "DCIM2", 0),
        libc::EACCES,
    );
    c.errno(
        "C mv DCIM DCIM2",
        refused_rename(&m, C, "DCIM", "DCIM2", 0),
        libc::EACCES,
    );

    // Nothing moved, nothing readable by B.
    for f in [
        "DCIM/Camera/IMG_1.jpg",
        "DCIM/Camera/IMG_2.jpg",
        "Download/adir/a.txt",
    ] {
        c.truth(&format!("{f} still on the lower dir"), lower_exists(&m, f));
    }
    c.truth(
        "nothing under Android/data/com.b/files",
        std::fs::read_dir(m.lower_path("Android/data/com.b/files"))
            .unwrap()
            .next()
            .is_none(),
    );
    c.errno(
        "B reads A's Download/adir/a.txt",
        read(&m, B, "Download/adir/a.txt"),
        libc::EACCES,
    );

    // Positive control: a tree of B's own moves within shared storage; C (all files) may move
    // A's tree.
    c.errno(
        "B mkdir Download/mine",
        as_uid(B, || sys::mkdir(&m.path("Download/mine"))),
        OK,
    );
    c.errno(
        "B create Download/mine/x.txt",
        create(&m, B, "Download/mine/x.txt", b"x"),
        OK,
    );
    c.errno(
        "B mv Download/mine Documents/mine",
        rename2(&m, B, "Download/mine", "Documents/mine", 0),
        OK,
    );
    c.errno(
        "B reads Documents/mine/x.txt",
        read(&m, B, "Documents/mine/x.txt"),
        OK,
    );
    c.errno(
        "C mv Download/adir Documents/adir",
        rename2(&m, C, "Download/adir", "Documents/adir", 0),
        OK,
    );
    c.finish(Some(&m));
}

/// Issue 9 item 2: a rename over an existing file judges the file it replaces (spec 1).
#[test]
fn rename_over_a_foreign_file_is_refused() {
    if !can_mount() {
        return;
    }
    let m = mount(options());
    let mut c = Checks::default();
    c.errno(
        "A create Documents/v.txt",
        create(&m, A, "Documents/v.txt", b"A's text"),
        OK,
    );
    c.errno(
        "B create Documents/junk.txt",
        create(&m, B, "Documents/junk.txt", b"junk"),
        OK,
    );
    c.errno(
        "B rm Documents/v.txt",
        as_uid(B, || sys::unlink(&m.path("Documents/v.txt"))),
        libc::EACCES,
    );
    c.errno(
        "B mv -f junk.txt v.txt",
        refused_rename(&m, B, "Documents/junk.txt", "Documents/v.txt", 0),
        libc::EACCES,
    );
    c.errno(
        "B exchange junk.txt <-> v.txt",
        rename2(
            &m,
            B,
            "Documents/junk.txt",
            "Documents/v.txt",
            RENAME_EXCHANGE,
        ),
        libc::EACCES,
    );
    c.errno(
        "B mv -n junk.txt v.txt",
        rename2(
            &m,
            B,
            "Documents/junk.txt",
            "Documents/v.txt",
            RENAME_NOREPLACE,
        ),
        libc::EEXIST,
    );
    // A root-made file with no owner is just as foreign.
    lower_file(&m, "Download/root.pdf", b"root's", None);
    c.errno(
        "B create Download/b.pdf",
        create(&m, B, "Download/b.pdf", b"b"),
        OK,
    );
    c.errno(
        "B mv -f Download/b.pdf Download/root.pdf",
        refused_rename(&m, B, "Download/b.pdf", "Download/root.pdf", 0),
        libc::EACCES,
    );
    c.errno(
        "B mv Download/b.pdf onto it across dirs",
        refused_rename(&m, B, "Download/b.pdf", "Documents/v.txt", 0),
        libc::EACCES,
    );

    c.truth(
        "Documents/v.txt keeps A's bytes",
        std::fs::read(m.lower_path("Documents/v.txt"))
            .ok()
            .as_deref()
            == Some(&b"A's text"[..]),
    );
    c.truth(
        "Documents/v.txt keeps A's owner tag",
        owner_tag(&m, "Documents/v.txt").as_deref() == Some("10057:com.a"),
    );
    c.truth(
        "Download/root.pdf keeps root's bytes",
        std::fs::read(m.lower_path("Download/root.pdf"))
            .ok()
            .as_deref()
            == Some(&b"root's"[..]),
    );
    // Allowed: C replaces it; the moved file keeps its own owner (B's).
    c.errno(
        "C mv -f junk.txt v.txt",
        rename2(&m, C, "Documents/junk.txt", "Documents/v.txt", 0),
        OK,
    );
    c.truth(
        "the moved file keeps B's owner tag",
        owner_tag(&m, "Documents/v.txt").as_deref() == Some("10058:com.b"),
    );
    c.finish(Some(&m));
}

/// Issue 9 item 3: an app's chmod never sets setuid/setgid/sticky on the lower file (spec 6).
#[test]
fn chmod_by_an_app_cannot_set_setuid() {
    if !can_mount() {
        return;
    }
    let m = mount(options());
    let mut c = Checks::default();
    c.errno(
        "B create Download/x",
        create(&m, B, "Download/x", b"#!/bin/sh\nid\n"),
        OK,
    );
    let x = m.path("Download/x");
    c.errno(
        "B chmod 4755 Download/x",
        as_uid(B, || sys2::chmod(&x, 0o4755)),
        OK,
    );
    let lower_mode = sys2::mode(&m.lower_path("Download/x")).unwrap() & 0o7777;
    c.truth(
        &format!("lower mode {lower_mode:o} after chmod 4755 is 755"),
        lower_mode == 0o755,
    );
    c.errno(
        "B chmod 2755 Download/x",
        as_uid(B, || sys2::chmod(&x, 0o2755)),
        OK,
    );
    c.errno(
        "B chmod 1777 Download/x",
        as_uid(B, || sys2::chmod(&x, 0o1777)),
        OK,
    );
    let lower_mode = sys2::mode(&m.lower_path("Download/x")).unwrap() & 0o7777;
    c.truth(
        &format!("lower mode {lower_mode:o} after chmod 2755, 1777 is 777"),
        lower_mode == 0o777,
    );
    let seen = as_uid(0, || sys2::mode(&x).map(|m| m.to_ne_bytes().to_vec()))
        .map(|v| u32::from_ne_bytes(v[..4].try_into().unwrap()) & 0o7777);
    c.truth(
        &format!(
            "stat through the mount shows {}, the lower mode 777",
            oct(&seen)
        ),
        seen == Ok(0o777),
    );
    // A file B may not write: no chmod at all.
    lower_file(&m, "Download/root.bin", b"r", None);
    c.errno(
        "B chmod 4755 a root file",
        as_uid(B, || sys2::chmod(&m.path("Download/root.bin"), 0o4755)),
        libc::EACCES,
    );
    c.truth(
        "the root file's mode is unchanged",
        sys2::mode(&m.lower_path("Download/root.bin")).unwrap() & 0o7000 == 0,
    );
    c.finish(Some(&m));
}

/// Issue 9 item 4: a hard link never renames a decision (spec 4, 13).
#[test]
fn hard_links_do_not_rename_decisions() {
    if !can_mount() {
        return;
    }
    let m = mount(options());
    let mut c = Checks::default();
    lower_file(&m, "DCIM/Camera/p.jpg", b"A's photo", Some("10057:com.a"));
    lower_file(
        &m,
        "DCIM/Camera/p2.jpg",
        b"A's photo 2",
        Some("10057:com.a"),
    );
    // Apps may not link (spec 4), not even into their own area.
    c.errno(
        "D ln DCIM/Camera/p.jpg Android/data/com.d/files/mine.jpg",
        as_uid(D, || {
            sys2::link(
                &m.path("DCIM/Camera/p.jpg"),
                &m.path("Android/data/com.d/files/mine.jpg"),
            )
        }),
        libc::EPERM,
    );
    // Root links behind the mount, and through it.
    std::fs::hard_link(
        m.lower_path("DCIM/Camera/p.jpg"),
        m.lower_path("Android/data/com.d/files/q.jpg"),
    )
    .unwrap();
    c.errno(
        "root ln through the mount",
        as_uid(0, || {
            sys2::link(
                &m.path("DCIM/Camera/p2.jpg"),
                &m.path("Android/data/com.d/files/q2.jpg"),
            )
        }),
        OK,
    );
    for (orig, private) in [
        ("DCIM/Camera/p.jpg", "Android/data/com.d/files/q.jpg"),
        ("DCIM/Camera/p2.jpg", "Android/data/com.d/files/q2.jpg"),
    ] {
        // Alternate the names and the callers, so whichever name was looked up last is tried.
        for round in 0..3 {
            c.errno(
                &format!("{round}: D reads {private}"),
                read(&m, D, private),
                OK,
            );
            c.errno(
                &format!("{round}: A (owner) reads {orig}"),
                read(&m, A, orig),
                OK,
            );
            c.errno(&format!("{round}: A stats {orig}"), stat(&m, A, orig), OK);
            c.errno(
                &format!("{round}: D reads {orig}"),
                read(&m, D, orig),
                libc::EACCES,
            );
            c.errno(
                &format!("{round}: B reads {orig}"),
                read(&m, B, orig),
                libc::EACCES,
            );
            c.errno(
                &format!("{round}: B stats {private}"),
                stat(&m, B, private),
                libc::ENOENT,
            );
            c.errno(
                &format!("{round}: A reads {private}"),
                read(&m, A, private),
                libc::ENOENT,
            );
        }
    }
    c.finish(Some(&m));
}

/// Issue 9 item 5: no existence oracle for other apps' private dirs (spec 8) or hidden names
/// (spec 9).
#[test]
fn no_existence_oracles() {
    if !can_mount() {
        return;
    }
    let m = mount(options());
    let mut c = Checks::default();
    // com.a exists (another app's), com.zz does not (not installed). B must not tell them apart.
    for area in ["Android/data", "Android/obb"] {
        let present = format!("{area}/com.a");
        let absent = format!("{area}/com.zz");
        type Op = fn(&Path) -> Result<Vec<u8>, i32>;
        let ops: [(&str, Op, Option<i32>); 7] = [
            ("stat", sys::exists, Some(libc::ENOENT)),
            (
                "open",
                |p| sys::try_open(p, libc::O_RDONLY),
                Some(libc::ENOENT),
            ),
            (
                "creat",
                |p| sys::try_open(p, libc::O_WRONLY | libc::O_CREAT),
                Some(libc::EACCES),
            ),
            (
                "O_CREAT|O_EXCL",
                |p| sys::try_open(p, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL),
                Some(libc::EACCES),
            ),
            ("mkdir", sys::mkdir, Some(libc::EACCES)),
            // Symlinks and fifos are refused to apps anyway (spec 5 vs 8): only sameness counts.
            ("symlink", |p| sys2::symlink("x", p), None),
            ("mkfifo", sys2::mkfifo, None),
        ];
        for (what, op, want) in ops {
            let (pp, pa) = (m.path(&present), m.path(&absent));
            let got_present = as_uid(B, || op(&pp));
            let got_absent = as_uid(B, || op(&pa));
            if let Some(w) = want {
                c.errno(&format!("B {what} {present}"), got_present.clone(), w);
                c.errno(&format!("B {what} {absent}"), got_absent.clone(), w);
            }
            c.truth(
                &format!(
                    "B {what}: {present} answers {} and {absent} answers {} (must be equal)",
                    errname(code(&got_present)),
                    errname(code(&got_absent))
                ),
                code(&got_present) == code(&got_absent),
            );
        }
        // Link and rename targets (rename across areas is EXDEV, spec 2).
        c.errno(
            "B create Download/b.txt",
            create(&m, B, "Download/b.txt", b"b").or_else(|e| {
                if e == libc::EEXIST {
                    Ok(vec![])
                } else {
                    Err(e)
                }
            }),
            OK,
        );
        for target in [&present, &absent] {
            c.errno(
                &format!("B mv Download/b.txt {target}"),
                refused_rename(&m, B, "Download/b.txt", target, 0),
                libc::EXDEV,
            );
            c.errno(
                &format!("B ln Download/b.txt {target}"),
                as_uid(B, || sys2::link(&m.path("Download/b.txt"), &m.path(target))),
                libc::EPERM,
            );
        }
    }
    c.errno(
        "B lists Android/data",
        as_uid(B, || sys::list(&m.path("Android/data"))).map(|l| names(&l)),
        OK,
    );
    let listed = as_uid(B, || sys::list(&m.path("Android/data"))).map(|l| names(&l));
    c.truth(
        &format!("B's listing of Android/data is only com.b: {listed:?}"),
        listed == Ok(vec!["com.b".to_string()]),
    );
    c.truth(
        "com.zz was not created",
        !lower_exists(&m, "Android/data/com.zz"),
    );

    // Hidden names: visible by name, closed to open/delete, omitted from listings (spec 9).
    c.errno(
        "A create Download/.hidden",
        create(&m, A, "Download/.hidden", b"A's"),
        OK,
    );
    lower_file(&m, "Download/.hdir/f.txt", b"root's", None);
    c.errno(
        "B stat Download/.hidden",
        stat(&m, B, "Download/.hidden"),
        OK,
    );
    c.errno("B stat Download/.hdir", stat(&m, B, "Download/.hdir"), OK);
    c.errno(
        "B stat Download/.nothere",
        stat(&m, B, "Download/.nothere"),
        libc::ENOENT,
    );
    c.errno(
        "B read Download/.hidden",
        read(&m, B, "Download/.hidden"),
        libc::EACCES,
    );
    c.errno(
        "B write Download/.hidden",
        as_uid(B, || {
            sys::try_open(&m.path("Download/.hidden"), libc::O_WRONLY)
        }),
        libc::EACCES,
    );
    c.errno(
        "B rm Download/.hidden",
        as_uid(B, || sys::unlink(&m.path("Download/.hidden"))),
        libc::EACCES,
    );
    c.errno(
        "B mkdir Download/.hdir",
        as_uid(B, || sys::mkdir(&m.path("Download/.hdir"))),
        libc::EEXIST,
    );
    c.errno(
        "B O_CREAT|O_EXCL Download/.hidden",
        create(&m, B, "Download/.hidden", b"B"),
        libc::EEXIST,
    );
    c.errno(
        "A read own Download/.hidden",
        read(&m, A, "Download/.hidden"),
        OK,
    );
    c.errno(
        "C read Download/.hidden",
        read(&m, C, "Download/.hidden"),
        OK,
    );
    // read_images does not open a hidden image (spec 9).
    lower_file(&m, "Pictures/.secret.jpg", b"img", None);
    c.errno(
        "A read Pictures/.secret.jpg",
        read(&m, A, "Pictures/.secret.jpg"),
        libc::EACCES,
    );
    let listed = as_uid(B, || sys::list(&m.path("Download"))).map(|l| names(&l));
    c.truth(
        &format!("B's listing of Download omits hidden names: {listed:?}"),
        listed
            .as_ref()
            .is_ok_and(|l| !l.iter().any(|n| n.starts_with('.'))),
    );
    c.finish(Some(&m));
}

/// Issue 9 item 6: a directory rename does not skip the create rules (spec 3).
#[test]
fn directory_rename_keeps_the_create_rules() {
    if !can_mount() {
        return;
    }
    let m = mount(options());
    let mut c = Checks::default();
    c.errno(
        "B mkdir Download/bd",
        as_uid(B, || sys::mkdir(&m.path("Download/bd"))),
        OK,
    );
    c.errno(
        "B create Download/bd/evil.exe",
        create(&m, B, "Download/bd/evil.exe", b"MZ"),
        OK,
    );
    c.errno(
        "B create DCIM/evil.exe directly",
        create(&m, B, "DCIM/evil.exe", b"MZ"),
        libc::EPERM,
    );
    c.errno(
        "B mv Download/bd DCIM/bd",
        refused_rename(&m, B, "Download/bd", "DCIM/bd", 0),
        libc::EPERM,
    );
    c.errno(
        "B mv Download/bd Pictures/bd",
        refused_rename(&m, B, "Download/bd", "Pictures/bd", 0),
        libc::EPERM,
    );
    c.errno(
        "B mkdir DCIM/empty",
        as_uid(B, || sys::mkdir(&m.path("DCIM/empty"))),
        OK,
    );
    c.errno(
        "B exchange DCIM/empty <-> Download/bd",
        refused_rename(&m, B, "DCIM/empty", "Download/bd", RENAME_EXCHANGE),
        libc::EPERM,
    );
    // Deeper in the tree too.
    c.errno(
        "B mkdir Download/bd/sub",
        as_uid(B, || sys::mkdir(&m.path("Download/bd/sub"))),
        OK,
    );
    c.errno(
        "B mv Download/bd/evil.exe Download/bd/sub/evil.exe",
        rename2(&m, B, "Download/bd/evil.exe", "Download/bd/sub/evil.exe", 0),
        OK,
    );
    c.errno(
        "B mv Download/bd DCIM/bd (deep)",
        refused_rename(&m, B, "Download/bd", "DCIM/bd", 0),
        libc::EPERM,
    );
    c.truth("no DCIM/bd on the lower dir", !lower_exists(&m, "DCIM/bd"));
    c.truth(
        "DCIM/empty still empty",
        !lower_exists(&m, "DCIM/empty/sub"),
    );
    // Positive control: B's own photos may go to DCIM.
    c.errno(
        "B mkdir Download/pics",
        as_uid(B, || sys::mkdir(&m.path("Download/pics"))),
        OK,
    );
    c.errno(
        "B create Download/pics/p.jpg",
        create(&m, B, "Download/pics/p.jpg", b"jpg"),
        OK,
    );
    c.errno(
        "B mv Download/pics DCIM/pics",
        rename2(&m, B, "Download/pics", "DCIM/pics", 0),
        OK,
    );
    c.truth(
        "DCIM/pics/p.jpg on the lower dir",
        lower_exists(&m, "DCIM/pics/p.jpg"),
    );
    c.finish(Some(&m));
}

/// A file made below a directory while the directory's move is judged must be judged with it:
/// B moves `Download/bd` (1,500 of its photos in `bd/t`, so the walk takes a while) to
/// `Pictures/`, where apps may put only images and video, while another process of B keeps
/// creating and removing `bd/t/x.exe`. The move may fail (an `.exe` was there) or succeed, but
/// an `.exe` must never reach `Pictures/`. (Since Linux 6.5 the kernel locks a directory it
/// moves to another parent, but not the directories below it.)
#[test]
fn files_created_during_a_directory_move_are_judged_with_it() {
    if !can_mount() {
        return;
    }
    let m = mount(MountOptions {
        threads: 4,
        ..options()
    });
    for k in 0..1500 {
        lower_file(
            &m,
            &format!("Download/bd/t/p{k:04}.jpg"),
            b"jpg",
            Some("10058:com.b"),
        );
    }
    let flags = common::TempDir::new("move-race");
    // So that the app process can see the stop mark.
    std::fs::set_permissions(
        flags.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut c = Checks::default();
    let (mut moved, mut refused) = (0, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while moved < 12 && std::time::Instant::now() < deadline {
        let stop = flags.path().join(format!("stop{moved}-{refused}"));
        let exe = m.path("Download/bd/t/x.exe");
        let creator = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                as_uid(B, || {
                    // Bounded too: a child forked by another thread of this test may hold the
                    // mover's result pipe open, and the mover waits for its end.
                    let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
                    while !stop.exists() && std::time::Instant::now() < until {
                        if let Ok(fd) =
                            sys::open(&exe, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644)
                        {
                            sys::close(fd);
                            let _ = sys::unlink(&exe);
                        }
                    }
                    Ok(Vec::new())
                })
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(2));
        let r = rename2(&m, B, "Download/bd", "Pictures/bd", 0);
        std::fs::write(&stop, b"").unwrap();
        creator.join().unwrap().unwrap();
        match r {
            Ok(_) => {
                moved += 1;
                if lower_exists(&m, "Pictures/bd/t/x.exe") {
                    c.truth("no x.exe moved into Pictures/ with Download/bd", false);
                    std::fs::remove_file(m.lower_path("Pictures/bd/t/x.exe")).unwrap();
                }
                std::fs::rename(m.path("Pictures/bd"), m.path("Download/bd")).unwrap();
            }
            Err(e) => {
                refused += 1;
                if e != libc::EPERM {
                    c.errno(
                        "B mv Download/bd Pictures/bd",
                        Err::<(), i32>(e),
                        libc::EPERM,
                    );
                }
                let _ = std::fs::remove_file(m.lower_path("Download/bd/t/x.exe"));
            }
        }
    }
    c.truth(
        &format!("some moves succeeded ({moved} moved, {refused} refused)"),
        moved > 0,
    );
    c.finish(Some(&m));
}

fn set_nofile(pid: i32, n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: prlimit with a valid pid and a filled struct; the old value is not wanted.
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: errno {}", common::errno());
}

fn nofile_hard() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills lim.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_max
}

/// Holds opens of `hold` (read-only) until one fails or `max` are held; then, while holding,
/// opens each of `probe`; then closes everything and opens each of `probe` again. Returns
/// (opens held, first errno of the holding loop, probe errnos while full, probe errnos after).
fn hold_and_probe(
    m: &Mount,
    uid: u32,
    hold: &str,
    probe: &[String],
    max: usize,
) -> (usize, i32, Vec<i32>, Vec<i32>) {
    let hold = m.path(hold);
    let probe: Vec<PathBuf> = probe.iter().map(|p| m.path(p)).collect();
    let hard = nofile_hard();
    let out = as_uid(uid, || {
        // The holder may use every fd the machine allows (the soft limit may be 1024 in CI).
        let lim = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: setrlimit with a filled struct, in the forked child.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        let mut fds = Vec::new();
        let mut first = OK;
        while fds.len() < max {
            match sys::open(&hold, libc::O_RDONLY, 0) {
                Ok(fd) => fds.push(fd),
                Err(e) => {
                    first = e;
                    break;
                }
            }
        }
        let mut full = Vec::new();
        for p in &probe {
            full.push(code(&sys::read_file(p)));
        }
        let held = fds.len();
        for fd in fds.drain(..) {
            sys::close(fd);
        }
        let mut after = Vec::new();
        for p in &probe {
            after.push(code(&sys::read_file(p)));
        }
        let mut msg = Vec::new();
        for v in [held as i32, first]
            .into_iter()
            .chain(full.iter().copied())
            .chain(after.iter().copied())
        {
            msg.extend_from_slice(&v.to_ne_bytes());
        }
        Ok(msg)
    })
    .unwrap();
    let v: Vec<i32> = out
        .chunks(4)
        .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
        .collect();
    let n = probe.len();
    (
        v[0] as usize,
        v[1],
        v[2..2 + n].to_vec(),
        v[2 + n..2 + 2 * n].to_vec(),
    )
}

fn own_files(m: &Mount, n: usize) -> Vec<String> {
    // Made behind the mount with B's tag, so the daemon reads each owner tag for the first
    // time while it is out of fds.
    (0..n)
        .map(|i| {
            let rel = format!("Download/own/f{i}.txt");
            lower_file(m, &rel, format!("B's {i}").as_bytes(), Some("10058:com.b"));
            rel
        })
        .collect()
}

/// Issue 9 item 7: a resource error while gathering facts is that errno, not a (cached)
/// denial (spec 10). The daemon is given a small fd limit so it runs out before any cap.
#[test]
fn resource_errors_are_not_sticky_denials() {
    if !can_mount() {
        return;
    }
    let m = mount(MountOptions {
        passthrough: false,
        ..options()
    });
    let mut c = Checks::default();
    let probe = own_files(&m, 200);
    lower_file(&m, "Download/own/hold.txt", b"held", Some("10058:com.b"));
    set_nofile(m.pid() as i32, 1200);
    let (held, first, full, after) = hold_and_probe(&m, B, "Download/own/hold.txt", &probe, 5000);
    c.truth(
        &format!(
            "the daemon ran out after {held} opens (first errno {})",
            errname(first)
        ),
        (500..5000).contains(&held),
    );
    c.one_of(
        "first failing open while full",
        Err::<(), _>(first),
        &[libc::EMFILE, libc::ENFILE],
    );
    let denied = full
        .iter()
        .filter(|&&e| e == libc::EACCES || e == libc::ENOENT)
        .count();
    c.truth(
        &format!("{denied} of {} own files were denied (EACCES/ENOENT) while the daemon was out of fds: {:?}", full.len(), dedup(&full)),
        denied == 0,
    );
    let bad_after: Vec<i32> = after.iter().copied().filter(|&e| e != OK).collect();
    c.truth(
        &format!(
            "{} of {} own files still fail after every fd was closed: {:?}",
            bad_after.len(),
            after.len(),
            dedup(&bad_after)
        ),
        bad_after.is_empty(),
    );
    c.truth(
        "no denial logged for B's own files",
        !m.log_text().contains("denied: uid 10058"),
    );
    c.finish(Some(&m));
}

fn dedup(v: &[i32]) -> Vec<String> {
    let mut s: Vec<i32> = v.to_vec();
    s.sort();
    s.dedup();
    s.into_iter().map(errname).collect()
}

/// Issue 9 item 7 / spec 10: userspace-served opens are capped; past the cap ENFILE, and the
/// daemon keeps serving; once closed, everything opens again.
#[test]
fn userspace_opens_are_capped_with_enfile() {
    if !can_mount() {
        return;
    }
    let m = mount(MountOptions {
        passthrough: false,
        ..options()
    });
    let mut c = Checks::default();
    let probe = own_files(&m, 50);
    lower_file(&m, "Download/own/hold.txt", b"held", Some("10058:com.b"));
    let hard = nofile_hard();
    // The daemon gets every fd the machine allows; its cap (8192, or 3/4 of its fd limit when
    // that is lower, as on a 4096-fd guest) comes first.
    set_nofile(m.pid() as i32, hard);
    let max = (hard as usize).saturating_sub(200);
    let (held, first, full, after) = hold_and_probe(&m, B, "Download/own/hold.txt", &probe, max);
    c.truth(
        &format!("the holder stopped before its own fd limit ({held} of {max})"),
        held < max,
    );
    c.errno(
        &format!("first open past the cap (after {held})"),
        Err::<(), _>(first),
        libc::ENFILE,
    );
    c.truth(
        &format!(
            "while full, own files answer ENFILE only: {:?}",
            dedup(&full)
        ),
        full.iter().all(|&e| e == libc::ENFILE || e == OK),
    );
    c.truth(
        &format!("after closing, all own files read: {:?}", dedup(&after)),
        after.iter().all(|&e| e == OK),
    );
    c.errno(
        "the daemon still serves: root stat",
        stat(&m, 0, "Download/own/f0.txt"),
        OK,
    );
    c.finish(Some(&m));
}

/// Issue 9 item 8 / spec 11: the owner's passthrough opens racing another app's redacted
/// (userspace) opens of the same image never give EIO.
#[test]
fn mixed_opens_of_one_image_never_give_eio() {
    if !can_mount() {
        return;
    }
    let m = mount(options());
    let mut c = Checks::default();
    // A photo with an EXIF GPS IFD, owned by D; A (read_images without
    // access_media_location) and C (all-files access without it) get redacted opens, D and
    // root the original. Every open of a file with location is served in userspace, so
    // none of them may collide with another (EBUSY, or the kernel's EIO).
    let orig = common::media::gps_jpeg_bytes(8192);
    assert!(
        !fusegate::redact::find_in_bytes(&orig).unwrap().is_empty(),
        "the photo must carry location"
    );
    lower_file(&m, "DCIM/Camera/race.jpg", &orig, Some("10060:com.d"));
    // FUSEGATE_ATTACK_ROUNDS shortens it under emulation (the arm64 guest).
    let rounds: usize = std::env::var("FUSEGATE_ATTACK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20000);
    let run = |uid: u32| {
        let p = m.path("DCIM/Camera/race.jpg");
        let orig = orig.clone();
        move || {
            as_uid(uid, || {
                // ok and original, ok and redacted, EBUSY, EIO, other
                let mut counts = [0i32; 5];
                for _ in 0..rounds {
                    let slot = match sys::read_file(&p) {
                        Ok(ref d) if *d == orig => 0,
                        Ok(ref d) if d.len() == orig.len() => 1,
                        Ok(_) => 4,
                        Err(libc::EBUSY) => 2,
                        Err(libc::EIO) => 3,
                        Err(_) => 4,
                    };
                    counts[slot] += 1;
                }
                Ok(counts.iter().flat_map(|v| v.to_ne_bytes()).collect())
            })
        }
    };
    let results = std::thread::scope(|s| {
        let hs: Vec<_> = [D, 0, A, C].into_iter().map(|u| s.spawn(run(u))).collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    let counts = |r: &Result<Vec<u8>, i32>| -> Vec<i32> {
        r.clone()
            .unwrap()
            .chunks(4)
            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
            .collect()
    };
    let sum =
        |a: Vec<i32>, b: Vec<i32>| -> Vec<i32> { a.iter().zip(&b).map(|(x, y)| x + y).collect() };
    let o = sum(counts(&results[0]), counts(&results[1]));
    let a = sum(counts(&results[2]), counts(&results[3]));
    eprintln!("owner opens {o:?}, redacted opens {a:?} (original, redacted, EBUSY, EIO, other)");
    let all = 2 * rounds as i32;
    c.truth(
        &format!(
            "owner D and root: {} original, {} redacted, {} EBUSY, {} EIO, {} other",
            o[0], o[1], o[2], o[3], o[4]
        ),
        o[0] == all,
    );
    c.truth(
        &format!(
            "apps A and C (redacted): {} original, {} redacted, {} EBUSY, {} EIO, {} other",
            a[0], a[1], a[2], a[3], a[4]
        ),
        a[1] == all,
    );
    c.finish(Some(&m));
}

/// Fills `rel` through the mount as `uid` in 256 KiB writes until a write fails; returns
/// (bytes written, errno).
fn fill(p: &Path, uid: u32) -> (u64, i32) {
    let out = as_uid(uid, || {
        let fd = sys::open(p, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644)?;
        let buf = vec![0x5au8; 256 << 10];
        let mut total: u64 = 0;
        let e = loop {
            // SAFETY: writes from our buffer.
            let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
            if n < 0 {
                break common::errno();
            }
            if n == 0 {
                break 0;
            }
            total += n as u64;
        };
        // SAFETY: fsync and close our fd; a late ENOSPC from fsync counts too.
        let e = if unsafe { libc::fsync(fd) } != 0 && e == 0 {
            common::errno()
        } else {
            e
        };
        sys::close(fd);
        let mut msg = total.to_ne_bytes().to_vec();
        msg.extend_from_slice(&e.to_ne_bytes());
        Ok(msg)
    })
    .unwrap();
    (
        u64::from_ne_bytes(out[..8].try_into().unwrap()),
        i32::from_ne_bytes(out[8..12].try_into().unwrap()),
    )
}

/// Note for the fix: dropping CAP_SYS_RESOURCE is not enough. ext4 also gives the reserved
/// blocks to fsuid == s_resuid (0 unless `mkfs -e`/`tune2fs -u` says otherwise): uid 0 with
/// CAP_SYS_RESOURCE dropped still fills a `-m 20` image to 100% (checked with setpriv). App
/// writes must reach ext4 with a non-zero fsuid (passthrough: the backing file's credentials).
fn reserved_blocks_case(passthrough: bool) {
    if !can_mount() {
        return;
    }
    let img = Ext4Image::new(32, 20);
    let lower = img.dir.path().join("root");
    std::fs::create_dir_all(&lower).unwrap();
    let m = Mount::over(
        common::TempDir(lower),
        common::TempDir::new("mnt"),
        MountOptions {
            passthrough,
            ..options()
        },
    );
    skeleton(m.lower.path());
    let mut c = Checks::default();
    let sv = nix_statvfs(img.dir.path());
    let reserved = (sv.f_bfree - sv.f_bavail) * sv.f_frsize;
    let (app_bytes, app_errno) = fill(&m.path("Download/fill.bin"), B);
    c.errno(
        "the app's filling write ends with",
        Err::<(), _>(app_errno),
        libc::ENOSPC,
    );
    // Root, writing raw to the lower fs, must still find the reserved blocks free.
    let (root_bytes, _) = fill(&img.dir.path().join("rootfill.bin"), 0);
    c.truth(
        &format!(
            "after the app wrote {app_bytes} bytes, root could still write {root_bytes} raw \
             bytes of the {reserved} reserved (want at least half; fsuid 0 alone reaches \
             them, see reserved_blocks_case)"
        ),
        root_bytes >= reserved / 2,
    );
    drop(m);
    c.finish(None);
}

fn nix_statvfs(p: &Path) -> libc::statvfs {
    let cp = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let mut sv = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: statvfs fills sv on success.
    assert_eq!(unsafe { libc::statvfs(cp.as_ptr(), sv.as_mut_ptr()) }, 0);
    // SAFETY: statvfs succeeded.
    unsafe { sv.assume_init() }
}

/// Issue 9 item 8 / spec 12: app writes cannot use ext4's root-reserved blocks (passthrough).
#[test]
fn apps_cannot_fill_reserved_blocks_passthrough() {
    reserved_blocks_case(true);
}

/// Issue 9 item 8 / spec 12: the same through the userspace data path.
#[test]
fn apps_cannot_fill_reserved_blocks_userspace() {
    reserved_blocks_case(false);
}

/// Issue 9 item 8 / spec 12: a read-only lower answers EROFS to opens for write and creates.
#[test]
fn read_only_lower_gives_erofs() {
    if !can_mount() {
        return;
    }
    let img = Ext4Image::new(8, 5);
    let lower = img.dir.path().join("root");
    std::fs::create_dir_all(&lower).unwrap();
    skeleton(&lower);
    std::fs::write(lower.join("Download/b.txt"), b"B's").unwrap();
    sys2::setxattr(&lower.join("Download/b.txt"), OWNER_XATTR, b"10058:com.b");
    img.remount("ro");
    let m = Mount::over(
        common::TempDir(lower),
        common::TempDir::new("mnt"),
        options(),
    );
    let mut c = Checks::default();
    c.errno("B reads its file", read(&m, B, "Download/b.txt"), OK);
    c.errno(
        "B opens its file for write",
        as_uid(B, || {
            sys::try_open(&m.path("Download/b.txt"), libc::O_WRONLY)
        }),
        libc::EROFS,
    );
    c.errno(
        "B creates Download/n.txt",
        create(&m, B, "Download/n.txt", b"n"),
        libc::EROFS,
    );
    c.errno(
        "B mkdir Download/d",
        as_uid(B, || sys::mkdir(&m.path("Download/d"))),
        libc::EROFS,
    );
    c.errno(
        "root opens for write",
        as_uid(0, || {
            sys::try_open(&m.path("Download/b.txt"), libc::O_WRONLY)
        }),
        libc::EROFS,
    );
    c.errno(
        "root creates Download/r.txt",
        create(&m, 0, "Download/r.txt", b"r"),
        libc::EROFS,
    );
    drop(m);
    // Lower dir contents are on a read-only fs: nothing to clean there; the image goes.
    img.remount("rw");
    c.finish(None);
}

/// Issue 9 item 9 / spec 5: apps cannot make symlinks, fifos or hard links; root can.
#[test]
fn apps_cannot_make_symlinks_fifos_or_links() {
    if !can_mount() {
        return;
    }
    let m = mount(options());
    let mut c = Checks::default();
    c.errno(
        "B create Download/t.txt",
        create(&m, B, "Download/t.txt", b"t"),
        OK,
    );
    for uid in [A, B, C, D] {
        c.errno(
            &format!("{uid} symlink Download/l{uid}"),
            as_uid(uid, || {
                sys2::symlink("t.txt", &m.path(&format!("Download/l{uid}")))
            }),
            libc::EPERM,
        );
        c.errno(
            &format!("{uid} mkfifo Download/f{uid}"),
            as_uid(uid, || sys2::mkfifo(&m.path(&format!("Download/f{uid}")))),
            libc::EPERM,
        );
        c.errno(
            &format!("{uid} symlink in own area"),
            as_uid(uid, || {
                let pkg = ["com.a", "com.b", "com.c", "com.d"][(uid - A) as usize];
                sys2::symlink("x", &m.path(&format!("Android/data/{pkg}/files/l")))
            }),
            libc::EPERM,
        );
    }
    c.errno(
        "B ln its own file",
        as_uid(B, || {
            sys2::link(&m.path("Download/t.txt"), &m.path("Download/t2.txt"))
        }),
        libc::EPERM,
    );
    for f in ["Download/l10058", "Download/f10058", "Download/t2.txt"] {
        c.truth(&format!("{f} not on the lower dir"), !lower_exists(&m, f));
    }
    c.errno(
        "root symlink",
        as_uid(0, || sys2::symlink("t.txt", &m.path("Download/rl"))),
        OK,
    );
    c.errno(
        "root mkfifo",
        as_uid(0, || sys2::mkfifo(&m.path("Download/rf"))),
        OK,
    );
    c.errno(
        "root ln",
        as_uid(0, || {
            sys2::link(&m.path("Download/t.txt"), &m.path("Download/t3.txt"))
        }),
        OK,
    );
    c.finish(Some(&m));
}

/// Issue 9 item 10 / POSIX callers: a non-root, non-app uid acts with its own credentials.
#[test]
fn a_posix_user_gets_its_own_credentials() {
    if !can_mount() {
        return;
    }
    let m = mount(options());
    let mut c = Checks::default();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let lp = |r: &str| m.lower_path(r);
    std::fs::write(lp("Download/secret.txt"), b"root only").unwrap();
    std::fs::set_permissions(lp("Download/secret.txt"), PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::create_dir(lp("Download/rootdir")).unwrap();
    std::fs::set_permissions(lp("Download/rootdir"), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(lp("Download/rootdir/keep.txt"), b"keep").unwrap();
    std::fs::create_dir(lp("Download/tmp")).unwrap();
    std::fs::set_permissions(lp("Download/tmp"), PermissionsExt::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(lp("Download"), PermissionsExt::from_mode(0o755)).unwrap();

    let u = |f: fn(&Mount) -> Result<Vec<u8>, i32>| as_uid_with(POSIX, &[POSIX], || f(&m));
    c.errno(
        "1000 reads root's 0600 file",
        u(|m| sys::read_file(&m.path("Download/secret.txt"))),
        libc::EACCES,
    );
    c.errno(
        "1000 unlinks from root's 0755 dir",
        u(|m| sys::unlink(&m.path("Download/rootdir/keep.txt"))),
        libc::EACCES,
    );
    c.errno(
        "1000 creates in root's 0755 dir",
        u(|m| sys::write_file(&m.path("Download/rootdir/new.txt"), b"x")),
        libc::EACCES,
    );
    c.truth(
        "keep.txt still there",
        lp("Download/rootdir/keep.txt").exists(),
    );
    c.truth("no new.txt", !lp("Download/rootdir/new.txt").exists());
    c.errno(
        "1000 creates in a 1777 dir",
        u(|m| sys::write_file(&m.path("Download/tmp/mine.txt"), b"mine")),
        OK,
    );
    let md = std::fs::symlink_metadata(lp("Download/tmp/mine.txt"));
    c.truth(
        &format!(
            "the new lower file is owned by 1000:1000 ({:?})",
            md.as_ref().map(|m| (m.uid(), m.gid()))
        ),
        md.as_ref()
            .is_ok_and(|m| m.uid() == POSIX && m.gid() == POSIX),
    );
    c.errno(
        "1001 deletes 1000's file in the sticky dir",
        as_uid_with(1001, &[1001], || {
            sys::unlink(&m.path("Download/tmp/mine.txt"))
        })
        .map_err(|e| if e == libc::EACCES { libc::EPERM } else { e }),
        libc::EPERM,
    );
    c.truth("mine.txt survives", lp("Download/tmp/mine.txt").exists());
    c.errno(
        "1000 deletes its own file",
        u(|m| sys::unlink(&m.path("Download/tmp/mine.txt"))),
        OK,
    );
    c.finish(Some(&m));
}

fn oct(r: &Result<u32, i32>) -> String {
    match r {
        Ok(v) => format!("{v:o}"),
        Err(e) => errname(*e),
    }
}

fn mount_mode(m: &Mount, rel: &str) -> Result<u32, i32> {
    let p = m.path(rel);
    as_uid(0, || sys2::mode(&p).map(|v| v.to_ne_bytes().to_vec()))
        .map(|v| u32::from_ne_bytes(v[..4].try_into().unwrap()) & 0o7777)
}

fn lower_mode(m: &Mount, rel: &str) -> u32 {
    sys2::mode(&m.lower_path(rel)).unwrap() & 0o7777
}

fn mode_bits_case(passthrough: bool) {
    if !can_mount() {
        return;
    }
    let m = mount(MountOptions {
        passthrough,
        cache_timeout: Some(3600),
        ..options()
    });
    let mut c = Checks::default();
    // A POSIX user's append to a root file with 6777 clears setuid and setgid.
    std::fs::write(m.lower_path("Download/f"), b"x").unwrap();
    c.errno(
        "root chmod 6777",
        as_uid(0, || sys2::chmod(&m.path("Download/f"), 0o6777)),
        OK,
    );
    c.errno(
        "root stat (warm the cache)",
        mount_mode(&m, "Download/f"),
        OK,
    );
    c.errno(
        "1000 appends",
        as_uid_with(POSIX, &[POSIX], || {
            sys2::open_write(&m.path("Download/f"), libc::O_WRONLY | libc::O_APPEND, b"y")
        }),
        OK,
    );
    c.truth(
        &format!(
            "lower mode {:o} after a non-owner write is 777",
            lower_mode(&m, "Download/f")
        ),
        lower_mode(&m, "Download/f") == 0o777,
    );
    let seen = mount_mode(&m, "Download/f");
    c.truth(
        &format!("stat through the mount shows {}, want 777", oct(&seen)),
        seen == Ok(0o777),
    );

    // An app's write to its own file that root made setuid (both data paths clear it).
    c.errno(
        "B create Download/b.bin",
        create(&m, B, "Download/b.bin", b"b"),
        OK,
    );
    c.errno(
        "root chmod 6755 b.bin",
        as_uid(0, || sys2::chmod(&m.path("Download/b.bin"), 0o6755)),
        OK,
    );
    c.errno(
        "root stat b.bin (warm)",
        mount_mode(&m, "Download/b.bin"),
        OK,
    );
    c.errno(
        "B writes b.bin",
        as_uid(B, || {
            sys2::open_write(&m.path("Download/b.bin"), libc::O_WRONLY, b"z")
        }),
        OK,
    );
    c.truth(
        &format!(
            "lower b.bin mode {:o} is 755",
            lower_mode(&m, "Download/b.bin")
        ),
        lower_mode(&m, "Download/b.bin") == 0o755,
    );
    let seen = mount_mode(&m, "Download/b.bin");
    c.truth(
        &format!("mount shows b.bin {}, want 755", oct(&seen)),
        seen == Ok(0o755),
    );
    // O_TRUNC alone clears too.
    c.errno(
        "root chmod 6755 b.bin again",
        as_uid(0, || sys2::chmod(&m.path("Download/b.bin"), 0o6755)),
        OK,
    );
    c.errno(
        "B opens b.bin with O_TRUNC",
        as_uid(B, || {
            sys::try_open(&m.path("Download/b.bin"), libc::O_WRONLY | libc::O_TRUNC)
        }),
        OK,
    );
    c.truth(
        &format!(
            "lower b.bin mode {:o} after O_TRUNC is 755",
            lower_mode(&m, "Download/b.bin")
        ),
        lower_mode(&m, "Download/b.bin") == 0o755,
    );
    let seen = mount_mode(&m, "Download/b.bin");
    c.truth(
        &format!("mount shows b.bin {} after O_TRUNC, want 755", oct(&seen)),
        seen == Ok(0o755),
    );

    // A created file's stat is the lower file's mode at once.
    for (name, mode) in [
        ("Download/m664.txt", 0o664),
        ("Download/m600.txt", 0o600),
        ("Download/m777.txt", 0o777),
    ] {
        let p = m.path(name);
        let seen = as_uid(B, || {
            // SAFETY: umask only changes this forked child's mask.
            unsafe { libc::umask(0) };
            let fd = sys::open(&p, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, mode)?;
            sys::close(fd);
            sys2::mode(&p).map(|v| v.to_ne_bytes().to_vec())
        })
        .map(|v| u32::from_ne_bytes(v[..4].try_into().unwrap()) & 0o7777);
        let lower = lower_mode(&m, name);
        c.truth(
            &format!(
                "{name} created {mode:o}: the creator's stat shows {}, lower has {lower:o}",
                oct(&seen)
            ),
            seen == Ok(lower),
        );
    }
    c.finish(Some(&m));
}

/// Issue 9 item 11 / spec 7: mode bits in step with the lower file (passthrough).
#[test]
fn mode_bits_stay_in_step_passthrough() {
    mode_bits_case(true);
}

/// Issue 9 item 11 / spec 7: the same with the userspace data path.
#[test]
fn mode_bits_stay_in_step_userspace() {
    mode_bits_case(false);
}
