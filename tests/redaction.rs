//! Location redaction through a real mount, with real photos and videos made by real tools:
//! what each kind of app reads, which data path each file gets, writes and mmap of redacted
//! opens, and the statistics.

mod common;

use common::media::{generate, location_tags, noise_jpeg};
use common::{as_uid, can_mount, sys, Mount, MountOptions, TempDir};
use fusegate::redact::{find_in_bytes, zero_ranges, Ranges};
use std::path::Path;
use std::time::{Duration, Instant};

const A: u32 = 10057; // com.a: read_images, read_video, no access_media_location
const C: u32 = 10059; // com.c: manage_external_storage, no access_media_location
const D: u32 = 10060; // com.d: the owner of the files
const G: u32 = 10061; // com.g: read_images, read_video, access_media_location

const POLICY: &str = r#"
[[app]]
uid = 10057
packages = ["com.a"]
permissions = ["read_images", "read_video"]

[[app]]
uid = 10059
packages = ["com.c"]
permissions = ["manage_external_storage"]

[[app]]
uid = 10060
packages = ["com.d"]
permissions = ["write_media"]

[[app]]
uid = 10061
packages = ["com.g"]
permissions = ["read_images", "read_video", "access_media_location"]
"#;

const OWNER_XATTR: &str = "user.fusegate.owner";

fn mount() -> Mount {
    let m = Mount::new(MountOptions {
        policy: Some(POLICY.into()),
        ..Default::default()
    });
    std::fs::create_dir_all(m.lower_path("DCIM/Camera")).unwrap();
    m
}

/// Puts `data` in the lower dir at `rel`, owned by D.
fn place(m: &Mount, rel: &str, data: &[u8]) {
    let p = m.lower_path(rel);
    std::fs::write(&p, data).unwrap();
    common::sys2::setxattr(&p, OWNER_XATTR, b"10060:com.d");
}

/// The file as `uid` reads it through the mount, in odd-sized reads at odd offsets (as an app
/// seeking around the metadata would), each reaching the daemon as it is.
fn read_as(uid: u32, p: &Path) -> Result<Vec<u8>, i32> {
    as_uid(uid, || {
        let fd = sys::open(p, libc::O_RDONLY, 0)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4093];
        loop {
            // SAFETY: reads into our buffer from our fd.
            let n = unsafe {
                libc::pread(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    out.len() as libc::off_t,
                )
            };
            if n < 0 {
                let e = common::errno();
                sys::close(fd);
                return Err(e);
            }
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        sys::close(fd);
        Ok(out)
    })
}

fn redacted(orig: &[u8], ranges: &Ranges) -> Vec<u8> {
    let mut v = orig.to_vec();
    zero_ranges(&mut v, 0, ranges);
    v
}

fn in_ranges(ranges: &Ranges, i: u64) -> bool {
    ranges.spans().iter().any(|r| r.start <= i && i < r.end)
}

/// The bytes of a noise JPEG of `size` ("WxH") made by ImageMagick, with EXIF GPS and an XMP
/// city if `located`.
fn jpeg(size: &str, located: bool) -> Vec<u8> {
    let made = TempDir::new("redaction-jpeg");
    let path = made.path().join("photo.jpg");
    noise_jpeg(&path, size, located);
    std::fs::read(&path).unwrap()
}

#[test]
fn apps_without_access_media_location_read_no_location_and_nothing_else_changed() {
    if !can_mount() {
        return;
    }
    let m = mount();
    let made = TempDir::new("redaction-media");
    let samples = generate(made.path());
    let mut zeroed_expected = 0u64;
    for s in &samples {
        let name = s.path.file_name().unwrap().to_str().unwrap();
        let rel = format!("DCIM/Camera/{name}");
        let orig = std::fs::read(&s.path).unwrap();
        place(&m, &rel, &orig);
        let p = m.path(&rel);
        let ranges = find_in_bytes(&orig).unwrap();
        assert_eq!(ranges.is_empty(), !s.has_location, "{}", s.name);

        // The owner and an app holding access_media_location read the original.
        for uid in [D, G, 0] {
            let got = read_as(uid, &p).unwrap();
            assert!(
                got == orig,
                "{}: uid {uid} did not read the original",
                s.name
            );
        }
        for uid in [A, C] {
            let got = read_as(uid, &p).unwrap();
            assert_eq!(got.len(), orig.len(), "{}: uid {uid}", s.name);
            for (i, (g, o)) in got.iter().zip(&orig).enumerate() {
                if !in_ranges(&ranges, i as u64) {
                    assert_eq!(g, o, "{}: uid {uid}: byte {i} outside the ranges", s.name);
                }
            }
            assert!(
                got == redacted(&orig, &ranges),
                "{}: uid {uid}: the ranges are not zeros",
                s.name
            );
            let copy = made.path().join(format!("as-{uid}-{name}"));
            std::fs::write(&copy, &got).unwrap();
            let left = location_tags(&copy);
            assert!(
                left.is_empty(),
                "{}: uid {uid} still reads location: {left:?}",
                s.name
            );
            zeroed_expected += ranges.total_bytes();
        }
    }
    assert!(zeroed_expected > 0);
    let line = stats_line(&m);
    let zeroed = number_before(&line, " bytes zeroed");
    assert!(
        zeroed >= zeroed_expected,
        "stats: {zeroed} bytes zeroed, expected {zeroed_expected}: {line}"
    );
    assert!(number_before(&line, " redacted)") > 0, "{line}");
    assert!(number_before(&line, " hits /") > 0, "{line}");
}

/// Logs the stats (SIGUSR1) and returns the newest stats line.
fn stats_line(m: &Mount) -> String {
    let before = m.log_text().matches("stats: ").count();
    m.signal(libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = m.log_text();
        if log.matches("stats: ").count() > before {
            return log.lines().rfind(|l| l.contains("stats: ")).unwrap().into();
        }
        assert!(Instant::now() < deadline, "no stats logged:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The number written just before `marker` in `line`.
fn number_before(line: &str, marker: &str) -> u64 {
    let at = line
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in {line}"));
    let digits: String = line[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap()
}

/// Bytes the daemon read (its `rchar`) while `uid` read the whole file once more.
fn daemon_reads_while_reading(m: &Mount, uid: u32, p: &Path) -> u64 {
    // The first open of a version reads its metadata to find its location: done before.
    read_as(uid, p).unwrap();
    let before = m.daemon_rchar();
    read_as(uid, p).unwrap();
    m.daemon_rchar() - before
}

#[test]
fn files_without_location_pass_through_and_files_with_location_do_not() {
    if !can_mount() {
        return;
    }
    let m = mount();
    let made = TempDir::new("redaction-path");
    let plain = made.path().join("plain.jpg");
    let located = made.path().join("located.jpg");
    noise_jpeg(&plain, "640x480", false);
    noise_jpeg(&located, "640x480", true);
    let samples = generate(made.path());
    let video = |n: &str| samples.iter().find(|s| s.name == n).unwrap().path.clone();
    let files = [
        (plain, false),
        (located, true),
        (video("mp4-no-location"), false),
        (video("mp4-loci"), true),
    ];
    for (path, has_location) in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let rel = format!("DCIM/Camera/{name}");
        let orig = std::fs::read(&path).unwrap();
        place(&m, &rel, &orig);
        let size = orig.len() as u64;
        for uid in [A, C, D, G, 0] {
            let read = daemon_reads_while_reading(&m, uid, &m.path(&rel));
            if has_location {
                assert!(
                    read >= size,
                    "{name} has location: uid {uid}'s read must come through the daemon \
                     ({read} of {size} bytes did)"
                );
            } else {
                assert!(
                    read < size / 2,
                    "{name} has no location: uid {uid}'s read must pass through \
                     (the daemon read {read} bytes for a {size}-byte file)"
                );
            }
        }
    }
}

#[test]
fn a_redacted_open_is_read_only() {
    if !can_mount() {
        return;
    }
    let m = mount();
    let located = jpeg("64x48", true);
    place(&m, "DCIM/Camera/located.jpg", &located);
    place(&m, "DCIM/Camera/plain.jpg", &jpeg("64x48", false));
    let lp = m.path("DCIM/Camera/located.jpg");
    let pp = m.path("DCIM/Camera/plain.jpg");
    // C may write (all-files access) but reads images redacted: reading and writing through one
    // open of a file with location would write back zeros it was shown, so no such open.
    assert_eq!(
        as_uid(C, || sys::try_open(&lp, libc::O_RDWR)),
        Err(libc::EACCES)
    );
    // Write-only is not redacted (nothing is read), nor is read-write of a file with no location.
    assert_eq!(as_uid(C, || sys::try_open(&lp, libc::O_WRONLY)), Ok(vec![]));
    assert_eq!(as_uid(C, || sys::try_open(&pp, libc::O_RDWR)), Ok(vec![]));
    // A may not write at all; its read-only open refuses writes.
    assert_eq!(
        as_uid(A, || sys::try_open(&lp, libc::O_RDWR)),
        Err(libc::EACCES)
    );
    let wrote = as_uid(A, || {
        let fd = sys::open(&lp, libc::O_RDONLY, 0)?;
        // SAFETY: writes from a static buffer to our fd.
        let n = unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
        let e = common::errno();
        sys::close(fd);
        if n < 0 {
            Err(e)
        } else {
            Ok(vec![])
        }
    });
    assert_eq!(wrote, Err(libc::EBADF));
    assert_eq!(
        std::fs::read(m.lower_path("DCIM/Camera/located.jpg")).unwrap(),
        located
    );
}

/// mmap of `p` as `uid` with `flags`: the mapped bytes, or the errno of open or mmap.
fn mmap_as(uid: u32, p: &Path, flags: i32) -> Result<Vec<u8>, i32> {
    as_uid(uid, || {
        let fd = sys::open(p, libc::O_RDONLY, 0)?;
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat into our struct.
        unsafe { libc::fstat(fd, &mut st) };
        let len = st.st_size as usize;
        // SAFETY: a fresh read-only mapping of our fd, unmapped below.
        let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, flags, fd, 0) };
        if addr == libc::MAP_FAILED {
            let e = common::errno();
            sys::close(fd);
            return Err(e);
        }
        // SAFETY: the mapping is len bytes long and readable.
        let data = unsafe { std::slice::from_raw_parts(addr as *const u8, len) }.to_vec();
        // SAFETY: unmapping what we mapped.
        unsafe { libc::munmap(addr, len) };
        sys::close(fd);
        Ok(data)
    })
}

#[test]
fn mmap_of_a_file_with_location_never_shows_the_location_to_redacted_apps() {
    if !can_mount() {
        return;
    }
    let m = mount();
    let orig = jpeg("320x240", true);
    let ranges = find_in_bytes(&orig).unwrap();
    assert!(!ranges.is_empty());
    place(&m, "DCIM/Camera/located.jpg", &orig);
    let p = m.path("DCIM/Camera/located.jpg");
    let want = redacted(&orig, &ranges);
    // Shared mappings of a file served with DIRECT_IO are refused by the kernel (ENODEV),
    // for every caller; private read-only mappings are filled through the caller's own open.
    for uid in [A, D] {
        assert_eq!(
            mmap_as(uid, &p, libc::MAP_SHARED),
            Err(libc::ENODEV),
            "uid {uid}"
        );
    }
    assert!(mmap_as(A, &p, libc::MAP_PRIVATE).unwrap() == want);
    // The owner's mapping fills the page cache with the original...
    assert!(mmap_as(D, &p, libc::MAP_PRIVATE).unwrap() == orig);
    // ...which the next mapping drops before it is filled again through its own open.
    assert!(mmap_as(A, &p, libc::MAP_PRIVATE).unwrap() == want);
    assert!(mmap_as(C, &p, libc::MAP_PRIVATE).unwrap() == want);
    assert!(mmap_as(G, &p, libc::MAP_PRIVATE).unwrap() == orig);
    // And plain reads are unaffected by what the mappings left behind.
    assert!(read_as(A, &p).unwrap() == want);
}

#[test]
fn location_is_found_again_after_the_file_changes() {
    if !can_mount() {
        return;
    }
    let m = mount();
    let located = jpeg("200x150", true);
    let plain = jpeg("200x150", false);
    let ranges = find_in_bytes(&located).unwrap();
    place(&m, "DCIM/Camera/x.jpg", &plain);
    let p = m.path("DCIM/Camera/x.jpg");
    assert!(read_as(A, &p).unwrap() == plain);

    // The owner writes the located version through the mount (a passthrough open, as the
    // file had no location): the next redacted open finds the new location.
    as_uid(D, || sys::write_file(&p, &located)).unwrap();
    assert!(read_as(A, &p).unwrap() == redacted(&located, &ranges));
    assert!(read_as(D, &p).unwrap() == located);

    // And back: once the location is gone the file is the same for everyone again.
    as_uid(D, || sys::write_file(&p, &plain)).unwrap();
    assert!(read_as(A, &p).unwrap() == plain);

    // A file that gains location while a passthrough open of it is still held: a redacted open
    // is EBUSY until that open is closed (userspace would be the kernel's EIO, passthrough the
    // original bytes); plain opens join the passthrough open.
    let held = {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all(&located).unwrap();
        f
    };
    assert_eq!(read_as(A, &p), Err(libc::EBUSY));
    assert!(read_as(D, &p).unwrap() == located);
    drop(held);
    // The kernel sends RELEASE after close has returned; the open waits for it.
    let got = read_as(A, &p);
    assert!(got.unwrap() == redacted(&located, &ranges));
}

#[test]
fn copy_file_range_from_a_redacted_open_copies_the_redacted_bytes() {
    if !can_mount() {
        return;
    }
    let m = mount();
    let orig = jpeg("160x120", true);
    let ranges = find_in_bytes(&orig).unwrap();
    place(&m, "DCIM/Camera/located.jpg", &orig);
    let src = m.path("DCIM/Camera/located.jpg");
    for (uid, name) in [(A, "DCIM/Camera/copy-a.jpg"), (C, "DCIM/Camera/copy-c.jpg")] {
        let dst = m.path(name);
        as_uid(uid, || {
            let fin = sys::open(&src, libc::O_RDONLY, 0)?;
            let fout = sys::open(&dst, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644)?;
            let mut left = orig.len();
            while left > 0 {
                // SAFETY: copy_file_range between our two fds, from and to their positions.
                let n = unsafe {
                    libc::copy_file_range(
                        fin,
                        std::ptr::null_mut(),
                        fout,
                        std::ptr::null_mut(),
                        left,
                        0,
                    )
                };
                if n <= 0 {
                    let e = common::errno();
                    sys::close(fin);
                    sys::close(fout);
                    return Err(if n == 0 { libc::ENODATA } else { e });
                }
                left -= n as usize;
            }
            sys::close(fin);
            sys::close(fout);
            Ok(vec![])
        })
        .unwrap();
        let copy = std::fs::read(m.lower_path(name)).unwrap();
        assert!(
            copy == redacted(&orig, &ranges),
            "uid {uid}: the copy is not the redacted file"
        );
    }
}

/// Waits up to 20 s for one byte on `fd`; false on a timeout or once the other end is closed
/// (the forked apps hold every end, so a failed peer shows as a timeout, never a hang).
fn wait_byte(fd: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut b = 0u8;
    // SAFETY: polls one pollfd of ours, then reads one byte into a local.
    unsafe {
        libc::poll(&mut pfd, 1, 20_000) == 1 && libc::read(fd, (&mut b as *mut u8).cast(), 1) == 1
    }
}

fn send_byte(fd: i32) {
    // SAFETY: writes one byte from a local.
    unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
}

#[test]
fn a_redacted_open_right_after_the_writers_close_is_served() {
    if !can_mount() {
        return;
    }
    // Two workers, so that the writer's RELEASE (sent after its close returns, without waiting
    // for the answer) and the reader's OPEN can be served side by side, as with io_uring's
    // per-CPU queues.
    let m = mount();
    let located = jpeg("64x48", true);
    let ranges = find_in_bytes(&located).unwrap();
    const ROUNDS: usize = 150;
    let (mut closed, mut next) = ([0i32; 2], [0i32; 2]);
    // SAFETY: pipe2 writes two fds into each array.
    unsafe {
        assert_eq!(libc::pipe2(closed.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(next.as_mut_ptr(), libc::O_CLOEXEC), 0);
    }
    for i in 0..ROUNDS {
        place(&m, &format!("DCIM/Camera/race{i}.jpg"), b"");
    }
    let dir = m.path("DCIM/Camera");
    let reader_dir = dir.clone();
    // The reader (an app without access_media_location) opens each photo the moment the
    // owner's close has returned, and reports what it read.
    let reader = std::thread::spawn(move || {
        as_uid(A, || {
            let mut out = Vec::new();
            // Names already known: the open needs no lookup first.
            for i in 0..ROUNDS {
                sys::stat(&reader_dir.join(format!("race{i}.jpg")))?;
            }
            for i in 0..ROUNDS {
                if !wait_byte(closed[0]) {
                    break;
                }
                let p = reader_dir.join(format!("race{i}.jpg"));
                let got = sys::read_file(&p);
                send_byte(next[1]);
                // The length read, or minus the errno.
                let answer = got.map_or_else(|e| -e, |data| data.len() as i32);
                out.extend_from_slice(&answer.to_ne_bytes());
            }
            Ok(out)
        })
    });
    let written = as_uid(D, || {
        for i in 0..ROUNDS {
            // An empty file has no location, so the owner's open is a passthrough one.
            sys::write_file(&dir.join(format!("race{i}.jpg")), &located)?;
            send_byte(closed[1]);
            if !wait_byte(next[0]) {
                return Err(libc::EPIPE);
            }
        }
        Ok(Vec::new())
    });
    // SAFETY: closing our ends, so that a reader still waiting sees the end.
    unsafe {
        for fd in [closed[0], closed[1], next[0], next[1]] {
            libc::close(fd);
        }
    }
    written.unwrap();
    let answers = reader.join().unwrap().unwrap();
    let answers: Vec<i32> = answers
        .chunks(4)
        .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(answers.len(), ROUNDS);
    let failed: Vec<i32> = answers.iter().filter(|&&a| a < 0).map(|&a| -a).collect();
    assert!(failed.is_empty(), "reader's errnos: {failed:?}");
    assert!(answers.iter().all(|&a| a as usize == located.len()));
    let p = m.path(&format!("DCIM/Camera/race{}.jpg", ROUNDS - 1));
    assert!(read_as(A, &p).unwrap() == redacted(&located, &ranges));
}
