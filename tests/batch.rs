//! Batch policy changes through the library's `Daemon` (what Java's `setApps`, `grantAll` and
//! `revokeAll` call): visible through a real mount, all or nothing on bad input.

mod common;

use common::{as_uid, can_mount, sys, TempDir};
use fusegate::policy::{Access, App, Permissions};
use fusegate::{Daemon, Options};

const APP_A: u32 = 10_001;
const APP_B: u32 = 10_002;

#[test]
fn batches_take_effect_through_the_mount_or_not_at_all() {
    if !can_mount() {
        return;
    }
    fusegate::logging::init();
    let lower = TempDir::new("lower");
    let mnt = TempDir::new("mnt");
    for dir in ["DCIM", "Download"] {
        std::fs::create_dir(lower.path().join(dir)).unwrap();
    }
    std::fs::write(lower.path().join("DCIM/x.jpg"), b"jpg").unwrap();
    let docs: Vec<String> = (0..200).map(|i| format!("Download/d{i}.pdf")).collect();
    for d in &docs {
        std::fs::write(lower.path().join(d), d.as_bytes()).unwrap();
    }
    let mut daemon = Daemon::mount(mnt.path(), lower.path(), Options::default()).unwrap();
    let read = |uid: u32, rel: &str| as_uid(uid, || sys::read_file(&mnt.path().join(rel)));

    let app = |uid, bits| App {
        uid,
        packages: vec![format!("com.example.{uid}")],
        permissions: Permissions::from_bits(bits).unwrap(),
    };
    daemon
        .set_apps(vec![app(APP_A, 0), app(APP_B, Permissions::READ_IMAGES)])
        .unwrap();
    assert_eq!(read(APP_B, "DCIM/x.jpg"), Ok(b"jpg".to_vec()));
    assert_eq!(read(APP_A, "DCIM/x.jpg"), Err(libc::EACCES));

    let grants = docs
        .iter()
        .map(|d| (APP_A, d.clone(), Access::Read))
        .collect();
    daemon.grant_all(grants).unwrap();
    for d in [&docs[0], &docs[199]] {
        assert_eq!(read(APP_A, d), Ok(d.as_bytes().to_vec()));
        assert_eq!(read(APP_B, d), Err(libc::EACCES));
    }

    // A bad entry anywhere: nothing of the batch applies.
    let bad = vec![
        (APP_A, "DCIM/x.jpg".to_string(), Access::Read),
        (APP_A, "Download/../x".to_string(), Access::Read),
    ];
    assert!(daemon.grant_all(bad).is_err());
    assert_eq!(read(APP_A, "DCIM/x.jpg"), Err(libc::EACCES));
    let bad_revokes = vec![(APP_A, docs[0].clone()), (1 << 31, docs[1].clone())];
    assert!(daemon.revoke_all(bad_revokes).is_err());
    assert_eq!(read(APP_A, &docs[0]), Ok(docs[0].as_bytes().to_vec()));
    let bad_apps = vec![
        app(APP_A, Permissions::READ_IMAGES),
        App {
            packages: vec!["a/b".into()],
            ..app(APP_B, 0)
        },
    ];
    assert!(daemon.set_apps(bad_apps).is_err());
    assert_eq!(read(APP_A, "DCIM/x.jpg"), Err(libc::EACCES));
    assert_eq!(read(APP_B, "DCIM/x.jpg"), Ok(b"jpg".to_vec()));

    // Paths compare case-insensitively, as for one revoke.
    daemon
        .revoke_all(docs.iter().map(|d| (APP_A, d.to_uppercase())).collect())
        .unwrap();
    for d in [&docs[0], &docs[199]] {
        assert_eq!(read(APP_A, d), Err(libc::EACCES));
    }
    daemon.stop();
}
