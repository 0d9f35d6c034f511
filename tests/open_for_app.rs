//! `Daemon::open_for_app` (Java's `openForApp`) answers as the app's own open through the mount:
//! the same table of uids, paths and open flags is opened both ways and must give the same
//! allow, deny and errno.

mod common;

use common::{as_uid, can_mount, sys, TempDir};
use fusegate::policy::{Access, App, Permissions};
use fusegate::{Daemon, Options};
use std::time::Duration;

const APP_A: u32 = 10_031;
const APP_B: u32 = 10_032;
const APP_C: u32 = 10_033;
const ISOLATED: u32 = 99_031;
const POSIX: u32 = 5_031;

fn app(uid: u32, bits: u32) -> App {
    App {
        uid,
        packages: vec![format!("com.example.u{uid}")],
        permissions: Permissions::from_bits(bits).unwrap(),
    }
}

#[test]
fn open_for_app_answers_as_the_mount() {
    if !can_mount() {
        return;
    }
    fusegate::logging::init();
    let lower = TempDir::new("lower");
    let mnt = TempDir::new("mnt");
    let files = [
        "DCIM/x.jpg",
        "Music/s.mp3",
        "Download/doc.pdf",
        "Download/granted.pdf",
        "Download/wgranted.pdf",
        "Download/.hidden.txt",
        "Download/nm/.nomedia",
        "Download/nm/inside.jpg",
        "Android/data/com.example.u10032/files/secret.txt",
        "Android/data/com.example.u10031/files/mine.txt",
    ];
    for f in files {
        let p = lower.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, f.as_bytes()).unwrap();
    }
    std::os::unix::fs::symlink("doc.pdf", lower.path().join("Download/link.pdf")).unwrap();
    // No kernel cache: every lookup of every uid reaches the daemon, as open_for_app's do.
    let options = Options {
        cache_ttl: Duration::ZERO,
        ..Options::default()
    };
    let mut daemon = Daemon::mount(mnt.path(), lower.path(), options).unwrap();
    daemon
        .set_apps(vec![
            app(APP_A, 0),
            app(APP_B, Permissions::READ_IMAGES),
            app(APP_C, 0),
        ])
        .unwrap();
    daemon
        .grant(APP_C, "Download/granted.pdf", Access::Read)
        .unwrap();
    daemon
        .grant(APP_C, "Download/wgranted.pdf", Access::Write)
        .unwrap();
    let own = mnt.path().join("Download/own.txt");
    assert_eq!(
        as_uid(APP_A, || sys::write_file(&own, b"own")),
        Ok(Vec::new())
    );

    let mut paths: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| !f.ends_with(".nomedia"))
        .collect();
    paths.extend([
        "Download/own.txt",
        "Download/missing.pdf",
        "Download/doc.pdf/below",
        "Download/link.pdf",
    ]);
    let flags = [
        libc::O_RDONLY,
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_WRONLY | libc::O_APPEND,
        libc::O_WRONLY | libc::O_TRUNC,
        libc::O_RDWR | libc::O_TRUNC,
    ];
    let uids = [APP_A, APP_B, APP_C, ISOLATED, POSIX, 0];
    let (mut cases, mut allowed, mut differ) = (0, 0, Vec::new());
    for &uid in &uids {
        for path in &paths {
            for &f in &flags {
                // open_for_app follows no symlink: the mount is asked the same (O_NOFOLLOW),
                // which must not change anything for the other files.
                let nofollow = libc::O_NOFOLLOW;
                let through_mount = as_uid(uid, || {
                    sys::open(&mnt.path().join(path), f | nofollow, 0).map(|fd| {
                        sys::close(fd);
                        Vec::new()
                    })
                })
                .map(|_| ());
                let api = daemon.open_for_app(uid, path, f).map(|_fd| ());
                cases += 1;
                if api.is_ok() {
                    allowed += 1;
                }
                if api != through_mount {
                    differ.push(format!(
                        "uid {uid} {path} flags {f:o}: mount {through_mount:?}, open_for_app {api:?}"
                    ));
                }
            }
        }
    }
    eprintln!("{cases} cases, {allowed} allowed, {} differ", differ.len());
    assert!(differ.is_empty(), "{}", differ.join("\n"));

    // What the table covers.
    let secret = "Android/data/com.example.u10032/files/secret.txt";
    let open = |uid, path: &str, f| daemon.open_for_app(uid, path, f).map(|_| ());
    assert_eq!(open(APP_A, secret, libc::O_RDONLY), Err(libc::ENOENT));
    assert_eq!(open(APP_B, secret, libc::O_RDONLY), Ok(()));
    assert_eq!(
        open(APP_A, "Download/.hidden.txt", libc::O_RDONLY),
        Err(libc::EACCES)
    );
    assert_eq!(open(APP_C, "Download/granted.pdf", libc::O_RDONLY), Ok(()));
    assert_eq!(
        open(APP_C, "Download/granted.pdf", libc::O_RDWR),
        Err(libc::EACCES)
    );
    assert_eq!(open(APP_C, "Download/wgranted.pdf", libc::O_RDWR), Ok(()));
    assert_eq!(
        open(0, "Download/link.pdf", libc::O_RDONLY),
        Err(libc::ELOOP)
    );
    assert_eq!(open(0, "Download", libc::O_RDONLY), Err(libc::EISDIR));
    // Never "." or "..", never a symlink on the way, flags limited to access/TRUNC/APPEND.
    std::os::unix::fs::symlink("nm", lower.path().join("Download/dirlink")).unwrap();
    assert_eq!(
        open(0, "Download/dirlink/inside.jpg", libc::O_RDONLY),
        Err(libc::ELOOP)
    );
    assert_eq!(
        open(0, "Download/../DCIM/x.jpg", libc::O_RDONLY),
        Err(libc::EINVAL)
    );
    assert_eq!(open(0, "./DCIM/x.jpg", libc::O_RDONLY), Err(libc::EINVAL));
    assert_eq!(
        open(0, "DCIM/x.jpg", libc::O_RDONLY | libc::O_CREAT),
        Err(libc::EINVAL)
    );
    assert_eq!(open(0, "DCIM/x.jpg", libc::O_ACCMODE), Err(libc::EINVAL));

    // The fd is the file, close-on-exec (the table truncated it: write it again).
    std::fs::write(lower.path().join("DCIM/x.jpg"), b"DCIM/x.jpg").unwrap();
    let fd = daemon
        .open_for_app(APP_B, "DCIM/x.jpg", libc::O_RDONLY)
        .unwrap();
    let mut file = std::fs::File::from(fd);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).unwrap();
    assert_eq!(text, "DCIM/x.jpg");
    // SAFETY: F_GETFD on an fd we own.
    let fd_flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_GETFD) };
    assert_eq!(fd_flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);

    // A photo with location: APP_B (read_images, no access_media_location) gets exactly the
    // bytes its FUSE read gives, location zeroed, in a read-only fd; its owner the original.
    let photo = common::media::gps_jpeg_bytes(100_000);
    let owned = mnt.path().join("DCIM/gps.jpg");
    assert_eq!(
        as_uid(APP_A, || sys::write_file(&owned, &photo)),
        Ok(Vec::new())
    );
    let read_api = |uid| -> Result<Vec<u8>, i32> {
        let fd = daemon.open_for_app(uid, "DCIM/gps.jpg", libc::O_RDONLY)?;
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut got).unwrap();
        Ok(got)
    };
    let redacted = read_api(APP_B).unwrap();
    // The kernel sends the RELEASE of APP_A's write asynchronously, after its close returned.
    // Until the daemon has it, the file's passthrough open (which gave it location) is live,
    // and a redacted open through the mount is EBUSY (src/view/data.rs, claim_path).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let through_mount = loop {
        match as_uid(APP_B, || sys::read_file(&owned)) {
            Err(libc::EBUSY) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            r => break r.unwrap(),
        }
    };
    assert_eq!(redacted.len(), photo.len());
    assert!(redacted != photo, "open_for_app handed out the location");
    assert!(
        redacted == through_mount,
        "open_for_app and the mount disagree on the redacted bytes"
    );
    assert!(
        read_api(APP_A).unwrap() == photo,
        "the owner reads the original"
    );
    let fd = daemon
        .open_for_app(APP_B, "DCIM/gps.jpg", libc::O_RDONLY)
        .unwrap();
    // SAFETY: a one-byte write from a live buffer to an fd we own.
    let w = unsafe {
        libc::write(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            b"x".as_ptr().cast(),
            1,
        )
    };
    assert_eq!(
        (w, common::errno()),
        (-1, libc::EBADF),
        "the copy is read-only"
    );
    daemon.stop();
}
