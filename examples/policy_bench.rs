//! Cost of one policy decision, from the library directly (no FUSE, no daemon).
//!
//! `cargo run --release --example policy_bench -- [ITERATIONS]` prints `name ns_per_decision`
//! lines, one per variant, for bench/run.sh to collect:
//!
//! * `decide_warm`: `Snapshot::decide` on a snapshot already in hand (the pure decision).
//! * `decide_fresh_snapshot`: `Policy::snapshot()` then `decide` each time (RwLock read, Arc
//!   clone and drop): what an uncached check pays besides gathering the facts.
//! * `uncached_check`: the view's uncached path minus its I/O: build the target path (parent
//!   path + '/' + name, a heap allocation), fresh snapshot, decide.
//! * `cached_lookup`: the view's cache-hit path, rebuilt from public parts because the node
//!   table is private: `Policy::generation()` plus a per-node cached decision found in one of
//!   64 mutex-guarded HashMap shards keyed by node id, compared on (uid, generation, op). This
//!   mirrors `StorageView::check` -> `NodeTable::with` on a hit; it is an approximation.
//!
//! The table is sized like a busy phone: 300 apps (some with shared uids), 2,000 grants. The
//! policy module may still be the allow-all stub; then `decide_*` measures call overhead only
//! and the numbers become meaningful once the real rules land (same binary, same command).

use fusegate::policy::{Access, App, Decision, Op, Permissions, Policy, Table, Target};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

const SHARDS: usize = 64;

#[derive(Clone, Copy)]
struct Cached {
    uid: u32,
    generation: u64,
    op: Op,
    decision: Decision,
}

fn table() -> Table {
    let mut apps = Vec::new();
    for i in 0..300u32 {
        let uid = 10_000 + i;
        let mut packages = vec![format!("com.example.app{i}")];
        if i % 10 == 0 {
            packages.push(format!("com.example.shared{i}"));
        }
        let bits = match i % 4 {
            0 => Permissions::READ_IMAGES | Permissions::READ_VIDEO,
            1 => Permissions::READ_AUDIO,
            2 => Permissions::MANAGE_EXTERNAL_STORAGE,
            _ => 0,
        };
        apps.push(App {
            uid,
            packages,
            permissions: Permissions::from_bits(bits).expect("valid bits"),
        });
    }
    let grants = (0..2_000u32)
        .map(|i| {
            (
                10_000 + i % 300,
                format!("DCIM/Camera/IMG_{i:05}.jpg"),
                if i % 3 == 0 {
                    Access::Write
                } else {
                    Access::Read
                },
            )
        })
        .collect();
    Table {
        apps,
        grants,
        platform_uids: None,
    }
}

/// (parent path, name, is_dir): a mix of media, documents and private app paths.
fn targets() -> Vec<(String, String, bool)> {
    let mut v = Vec::new();
    for i in 0..1024u32 {
        let t = match i % 6 {
            0 => ("DCIM/Camera".to_string(), format!("IMG_{i:05}.jpg"), false),
            1 => ("Music/Album".to_string(), format!("track{i}.mp3"), false),
            2 => ("Download".to_string(), format!("doc{i}.pdf"), false),
            3 => (
                format!("Android/data/com.example.app{}", i % 300),
                "files".to_string(),
                true,
            ),
            4 => ("Movies".to_string(), format!("clip{i}.mp4"), false),
            _ => ("Pictures/.hidden".to_string(), format!("p{i}.png"), false),
        };
        v.push(t);
    }
    v
}

fn time_ns(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..iters / 10 {
        f(i);
    }
    let t0 = Instant::now();
    for i in 0..iters {
        f(i);
    }
    t0.elapsed().as_nanos() as f64 / iters as f64
}

fn main() {
    let iters: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let policy = Policy::new(table());
    let targets = targets();
    let full: Vec<String> = targets.iter().map(|(p, n, _)| format!("{p}/{n}")).collect();
    let n = targets.len() as u64;
    let uid_of = |i: u64| 10_000 + (i % 300) as u32;
    let op_of = |i: u64| if i % 5 == 0 { Op::Lookup } else { Op::Read };

    let snap = policy.snapshot();
    let warm = time_ns(iters, |i| {
        let k = (i % n) as usize;
        let t = Target {
            path: full[k].as_bytes(),
            is_dir: targets[k].2,
            owner: None,
            under_nomedia: false,
        };
        black_box(snap.decide(uid_of(i), op_of(i), black_box(&t)));
    });

    let fresh = time_ns(iters, |i| {
        let k = (i % n) as usize;
        let t = Target {
            path: full[k].as_bytes(),
            is_dir: targets[k].2,
            owner: None,
            under_nomedia: false,
        };
        black_box(policy.snapshot().decide(uid_of(i), op_of(i), black_box(&t)));
    });

    let uncached = time_ns(iters, |i| {
        let k = (i % n) as usize;
        let (parent, name, is_dir) = &targets[k];
        let mut path = Vec::with_capacity(parent.len() + 1 + name.len());
        path.extend_from_slice(parent.as_bytes());
        path.push(b'/');
        path.extend_from_slice(name.as_bytes());
        let t = Target {
            path: &path,
            is_dir: *is_dir,
            owner: None,
            under_nomedia: false,
        };
        black_box(policy.snapshot().decide(uid_of(i), op_of(i), black_box(&t)));
    });

    // The cache: one slot per node, as in the view's node table, pre-filled (a hit).
    let shards: Vec<Mutex<HashMap<u64, Cached>>> =
        (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
    let generation = policy.generation();
    for id in 0..n {
        let (uid, op) = (uid_of(id), op_of(id));
        let k = id as usize;
        let t = Target {
            path: full[k].as_bytes(),
            is_dir: targets[k].2,
            owner: None,
            under_nomedia: false,
        };
        let decision = snap.decide(uid, op, &t);
        shards[(id as usize) & (SHARDS - 1)].lock().unwrap().insert(
            id,
            Cached {
                uid,
                generation,
                op,
                decision,
            },
        );
    }
    let mut misses = 0u64;
    let cached = time_ns(iters, |i| {
        let id = i % n;
        let (uid, op) = (uid_of(id), op_of(id));
        let g = policy.generation();
        let hit = shards[(id as usize) & (SHARDS - 1)]
            .lock()
            .unwrap()
            .get(&id)
            .copied();
        match hit {
            Some(c) if c.uid == uid && c.generation == g && c.op == op => {
                black_box(c.decision);
            }
            _ => misses += 1,
        }
    });
    assert_eq!(misses, 0, "the cached variant must only hit");

    println!("decide_warm {warm:.2}");
    println!("decide_fresh_snapshot {fresh:.2}");
    println!("uncached_check {uncached:.2}");
    println!("cached_lookup {cached:.2}");
}
