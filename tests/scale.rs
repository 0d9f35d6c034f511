//! 200,000 files looked up and held by the kernel, under a hard limit of 20,000 open files:
//! the node table holds no fd per node.

mod common;

use common::{can_mount, Mount, MountOptions};
use std::time::{Duration, Instant};

const DIRS: usize = 200;
const PER_DIR: usize = 1000;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn logged_nodes(m: &Mount, after: usize) -> Option<u64> {
    let log = m.log_text();
    let line = log.lines().filter(|l| l.contains("stats:")).nth(after)?;
    line.split("nodes ")
        .nth(1)?
        .split(';')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn two_hundred_thousand_held_inodes_without_an_fd_each() {
    if !can_mount() {
        return;
    }
    // The machine's hard limit: the daemon must not need more.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills lim.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let m = Mount::new(MountOptions {
        cache_timeout: Some(3600),
        threads: 2,
        ..Default::default()
    });
    for d in 0..DIRS {
        let dir = m.lower_path(&format!("d{d:03}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..PER_DIR {
            std::fs::File::create(dir.join(format!("f{f:04}"))).unwrap();
        }
    }
    // Like `find -ls`: list every directory and stat every entry through the mount.
    let started = Instant::now();
    let mut seen = 0usize;
    for d in 0..DIRS {
        let dir = m.path(&format!("d{d:03}"));
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            std::fs::symlink_metadata(e.path()).unwrap();
            seen += 1;
        }
    }
    assert_eq!(seen, DIRS * PER_DIR);
    // A bounded cache keeps O_PATH fds of up to 256 hot directories; nothing per file.
    let fds = open_fds(m.pid());
    assert!(
        fds < 256 + 64,
        "the daemon holds {fds} fds for {seen} known inodes (limit {})",
        lim.rlim_max
    );

    // The kernel still holds the inodes: the daemon's table says so.
    m.signal(libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let nodes = loop {
        if let Some(n) = logged_nodes(&m, 0) {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no stats logged:\n{}",
            m.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(nodes >= (DIRS * PER_DIR) as u64, "only {nodes} nodes held");
    // And every one of them is still usable.
    std::fs::write(m.path("d199/f0999"), b"last").unwrap();
    assert_eq!(std::fs::read(m.lower_path("d199/f0999")).unwrap(), b"last");
    eprintln!(
        "{seen} inodes held with {fds} daemon fds in {:?}",
        started.elapsed()
    );
}
