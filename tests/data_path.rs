//! File data through the mount: integrity under concurrent random I/O (checked byte for byte
//! against an in-memory model), and proof that passthrough keeps data out of the daemon.

mod common;

use common::{can_mount, Mount, MountOptions};
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One worker: owns a few files (so the model is exact), does random writes, reads, truncates
/// and renames through the mount, and checks every read against the model.
fn worker(root: PathBuf, id: usize, ops: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let mut rng = Rng(0x1234_5678 + id as u64 * 7919);
    let mut files: Vec<(PathBuf, Vec<u8>)> = (0..4)
        .map(|i| (root.join(format!("w{id}-f{i}")), Vec::new()))
        .collect();
    for (p, _) in &files {
        std::fs::write(p, b"").unwrap();
    }
    let mut rename_seq = 0;
    for op in 0..ops {
        let k = rng.below(files.len() as u64) as usize;
        match rng.below(10) {
            0..=3 => {
                let off = rng.below(300_000) as usize;
                let len = 1 + rng.below(70_000) as usize;
                let byte = (rng.next() & 0xff) as u8;
                let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
                let f = OpenOptions::new().write(true).open(&files[k].0).unwrap();
                f.write_all_at(&data, off as u64).unwrap();
                let model = &mut files[k].1;
                if model.len() < off + len {
                    model.resize(off + len, 0);
                }
                model[off..off + len].copy_from_slice(&data);
            }
            4..=6 => {
                let model = &files[k].1;
                let off = rng.below(model.len() as u64 + 1000) as usize;
                let len = rng.below(100_000) as usize;
                let f = std::fs::File::open(&files[k].0).unwrap();
                let mut buf = vec![0u8; len];
                let mut got = 0;
                while got < len {
                    let n = f.read_at(&mut buf[got..], (off + got) as u64).unwrap();
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                let want = if off >= model.len() {
                    &[][..]
                } else {
                    &model[off..model.len().min(off + len)]
                };
                assert_eq!(
                    &buf[..got],
                    want,
                    "worker {id} op {op}: read of {:?} at {off}",
                    files[k].0
                );
            }
            7 => {
                let len = rng.below(400_000) as usize;
                let f = OpenOptions::new().write(true).open(&files[k].0).unwrap();
                f.set_len(len as u64).unwrap();
                files[k].1.resize(len, 0);
            }
            8 => {
                rename_seq += 1;
                let to = root.join(format!("w{id}-r{rename_seq}"));
                std::fs::rename(&files[k].0, &to).unwrap();
                files[k].0 = to;
            }
            _ => {
                // Append through O_APPEND.
                let data = vec![(op & 0xff) as u8; 1 + rng.below(5000) as usize];
                let mut f = OpenOptions::new().append(true).open(&files[k].0).unwrap();
                std::io::Write::write_all(&mut f, &data).unwrap();
                files[k].1.extend_from_slice(&data);
            }
        }
    }
    files
}

fn integrity(passthrough: bool) {
    if !can_mount() {
        return;
    }
    let mut m = Mount::new(MountOptions {
        passthrough,
        threads: 3,
        ..Default::default()
    });
    let root = m.path("");
    let handles: Vec<_> = (0..4)
        .map(|id| {
            let root = root.clone();
            std::thread::spawn(move || worker(root, id, 600))
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("worker failed"));
    }
    for (path, model) in &all {
        let through_mount = std::fs::read(path).unwrap();
        assert_eq!(
            through_mount.len(),
            model.len(),
            "{path:?} size through the mount"
        );
        assert!(
            through_mount == *model,
            "{path:?} content through the mount"
        );
        let lower = m.lower_path(path.file_name().unwrap().to_str().unwrap());
        assert!(
            std::fs::read(&lower).unwrap() == *model,
            "{path:?} content in the lower dir"
        );
    }
    let stats_log = m.log_text();
    assert!(m.stop().success(), "{stats_log}");
    let log = m.log_text();
    if passthrough {
        assert!(log.contains("data path: passthrough"), "{log}");
    } else {
        assert!(log.contains("passthrough disabled"), "{log}");
    }
}

#[test]
fn concurrent_random_io_matches_the_model_with_passthrough() {
    integrity(true);
}

#[test]
fn concurrent_random_io_matches_the_model_without_passthrough() {
    integrity(false);
}

// Big enough that the daemon reading it is unmistakable (64 MiB against at most 1 MiB),
// small enough for the arm64 guest under TCG.
const BIG: usize = 64 << 20;

/// Reads a 64 MiB file through the mount and returns how many bytes the daemon itself read.
fn daemon_bytes_for_big_read(passthrough: bool) -> u64 {
    let m = Mount::new(MountOptions {
        passthrough,
        ..Default::default()
    });
    {
        let f = std::fs::File::create(m.lower_path("big")).unwrap();
        let chunk: Vec<u8> = (0..(1 << 20)).map(|i| (i % 253) as u8).collect();
        for i in 0..(BIG >> 20) {
            f.write_all_at(&chunk, (i << 20) as u64).unwrap();
        }
    }
    let before = m.daemon_rchar();
    let mut f = std::fs::File::open(m.path("big")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    let mut sum = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sum = sum.wrapping_add(buf[..n].iter().map(|&b| b as u64).sum::<u64>());
        total += n;
    }
    drop(f);
    let after = m.daemon_rchar();
    assert_eq!(total, BIG);
    let expected: u64 = (0..(1u64 << 20)).map(|i| i % 253).sum::<u64>() * (BIG as u64 >> 20);
    assert_eq!(sum, expected, "content read through the mount");
    after - before
}

#[test]
fn passthrough_reads_never_reach_the_daemon() {
    if !can_mount() {
        return;
    }
    let through_daemon = daemon_bytes_for_big_read(true);
    assert!(
        through_daemon < 1 << 20,
        "with passthrough the daemon read {through_daemon} bytes for a 64 MiB read"
    );
}

#[test]
fn without_passthrough_the_daemon_reads_the_data() {
    if !can_mount() {
        return;
    }
    let through_daemon = daemon_bytes_for_big_read(false);
    assert!(
        through_daemon >= BIG as u64,
        "without passthrough the daemon read only {through_daemon} bytes"
    );
}
