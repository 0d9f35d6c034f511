//! What a policy change costs, in process (no FUSE, no daemon): the policy itself plus the
//! view's node-table work for the kernel invalidation it triggers.
//!
//! `cargo run --release --example policy_change_bench -- [NODES]` prints `name value unit`
//! lines for bench/run.sh to collect (NODES defaults to 1,000,000).
//!
//! Why in process: a million real files and lookups through a mount would take the bench
//! minutes, so the node table is filled directly (`fusegate::view::NodeBench`, the view's own
//! `NodeTable`, registered as lookups would). A change is timed as the daemon makes it:
//! `Policy::grant`/`revoke`/`set_app`, then the node-table lookups of
//! `StorageView::invalidate_grant`/`invalidate_packages`. Left out: the INVAL_ENTRY and
//! INVAL_INODE writes to /dev/fuse themselves (one or two per grant, two per package of an
//! app change: the kernel's cost, a few microseconds each, made by the policy thread, not a
//! worker).
//!
//! Rows:
//! * `policy_batch_100k_grants`: `Policy::apply_batch` of 100,000 grants over 300 apps, into
//!   a table of 300 apps (checking and normalizing every path included); `..._one_uid`: all
//!   for one uid.
//! * `policy_grant_at_100k_grants`: one `Policy::grant` into a table already holding 100,000.
//! * `policy_change_{grant,revoke,set_app}_at_nodes`: one whole change at NODES known nodes
//!   (median, `_p99` and `_max` of 2,000; `policy_grant_at_100k_grants` likewise).
//! * `policy_worker_stall_max_at_nodes` / `..._p999_...`: the longest / 99.9th percentile
//!   time of one worker's cached check (policy generation of the caller + cached verdicts of
//!   a node) while another thread makes those changes. On 2 shared CPUs the max also holds
//!   scheduler preemption; compare with `policy_worker_idle_max_at_nodes` (no changes).
//! * `policy_invalidate_all_at_nodes`: the full caller-dependent walk `replace_policy` still
//!   does (and what each path component of one grant cost before the name index).
//! * `node_table_rss_at_nodes`: resident memory the filled node table took (with the bench's
//!   own list of ids and directories); `node_name_index_at_nodes`: the part that is the
//!   (parent, name) index.

use fusegate::policy::{Access, App, Permissions, Policy, Snapshot, Table, Target, Verdicts};
use fusegate::view::NodeBench;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const APPS: u32 = 300;
const CHANGES: usize = 2_000;

fn app(i: u32, bits: u32) -> App {
    App {
        uid: 10_000 + i,
        packages: vec![format!("com.example.app{i}")],
        permissions: Permissions::from_bits(bits).expect("valid bits"),
    }
}

fn apps() -> Vec<App> {
    (0..APPS).map(|i| app(i, i % 4)).collect()
}

fn photo(n: usize) -> String {
    format!("DCIM/Camera/d{:04}/IMG_{n:07}.jpg", n / 1000)
}

fn row(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.2} {unit}");
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Median, 99th percentile and max of the times, in microseconds.
fn summary(mut times: Vec<Duration>) -> (f64, f64, f64) {
    times.sort();
    let at = |q: usize| us(times[(times.len() - 1) * q / 100]);
    (at(50), at(99), at(100))
}

fn batches() {
    let grants = |one_uid: bool| -> Vec<(u32, String, Access)> {
        (0..100_000)
            .map(|n| {
                let uid = if one_uid {
                    10_000
                } else {
                    10_000 + n as u32 % APPS
                };
                (uid, photo(n), Access::Read)
            })
            .collect()
    };
    for (name, one_uid) in [
        ("policy_batch_100k_grants", false),
        ("policy_batch_100k_grants_one_uid", true),
    ] {
        let policy = Policy::new(Table {
            apps: apps(),
            ..Table::default()
        });
        let batch = grants(one_uid);
        let t = Instant::now();
        policy
            .apply_batch(Vec::new(), batch, Vec::new())
            .expect("valid batch");
        row(name, t.elapsed().as_secs_f64() * 1e3, "ms");
    }

    let policy = Policy::new(Table {
        apps: apps(),
        ..Table::default()
    });
    policy
        .apply_batch(Vec::new(), grants(false), Vec::new())
        .expect("valid batch");
    let times = (0..CHANGES)
        .map(|i| {
            let path = photo(200_000 + i);
            let t = Instant::now();
            policy
                .grant(10_000 + i as u32 % APPS, &path, Access::Write)
                .expect("valid grant");
            t.elapsed()
        })
        .collect();
    let (median, p99, max) = summary(times);
    row("policy_grant_at_100k_grants", median, "us");
    row("policy_grant_at_100k_grants_p99", p99, "us");
    row("policy_grant_at_100k_grants_max", max, "us");
}

/// One worker's cached check: the caller's generation, then the node's cached verdicts.
fn worker(policy: &Policy, nodes: &NodeBench, i: usize, verdicts: Verdicts) -> bool {
    let uid = 10_000 + (i % APPS as usize) as u32;
    let stamp = policy.generation_of(uid) << 32;
    nodes.cached_check(i.wrapping_mul(7919), uid, stamp, verdicts)
}

/// Runs a worker thread while `changes` runs; returns the worker's (max, p99.9) in us.
fn with_worker(policy: &Arc<Policy>, nodes: &Arc<NodeBench>, changes: impl FnOnce()) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (policy, nodes, stop) = (policy.clone(), nodes.clone(), stop.clone());
        std::thread::spawn(move || {
            let verdicts = Snapshot::default().decide_all(
                10_000,
                &Target {
                    path: b"DCIM/x.jpg",
                    is_dir: false,
                    owner: None,
                    under_nomedia: false,
                },
            );
            let mut times = Vec::with_capacity(1 << 20);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                std::hint::black_box(worker(&policy, &nodes, i, verdicts));
                times.push(t.elapsed());
                i += 1;
            }
            times
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    changes();
    stop.store(true, Ordering::Relaxed);
    let mut times = handle.join().expect("worker");
    times.sort();
    let p999 = times[times.len() * 999 / 1000];
    (us(times[times.len() - 1]), us(p999))
}

fn changes_at(n: usize) {
    let dir = std::env::temp_dir();
    let before = rss_kib();
    let mut nodes = NodeBench::new(&dir).expect("a file handle of the temp dir");
    let per_app = 100;
    for i in 0..APPS as usize {
        for f in 0..per_app {
            nodes.add_file(format!("Android/data/com.example.app{i}/files/f{f}.bin").as_bytes());
        }
    }
    let photos = n.saturating_sub(nodes.count());
    for p in 0..photos {
        nodes.add_file(photo(p).as_bytes());
    }
    assert!(nodes.count() >= n, "{} nodes", nodes.count());
    row(
        &format!("node_table_rss_at_{n}_nodes"),
        (rss_kib().saturating_sub(before)) as f64 / 1024.0,
        "MiB",
    );
    row(
        &format!("node_name_index_at_{n}_nodes"),
        nodes.name_index_bytes() as f64 / 1024.0 / 1024.0,
        "MiB",
    );
    let nodes = Arc::new(nodes);
    let policy = Arc::new(Policy::new(Table {
        apps: apps(),
        ..Table::default()
    }));
    policy
        .apply_batch(
            Vec::new(),
            (0..100_000)
                .map(|p| (10_000 + p as u32 % APPS, photo(p * 3), Access::Read))
                .collect(),
            Vec::new(),
        )
        .expect("valid batch");

    let (idle_max, idle_p999) = with_worker(&policy, &nodes, || {
        std::thread::sleep(Duration::from_millis(300))
    });

    let mut grant = Vec::new();
    let mut revoke = Vec::new();
    let mut set_app = Vec::new();
    let mut found = 0usize;
    let (busy_max, busy_p999) = with_worker(&policy, &nodes, || {
        for i in 0..CHANGES {
            let uid = 10_000 + (i as u32 * 7) % APPS;
            let path = photo((i * 499) % photos.max(1));
            let t = Instant::now();
            policy.grant(uid, &path, Access::Write).expect("grant");
            found += nodes.grant_entries(path.as_bytes());
            grant.push(t.elapsed());

            let t = Instant::now();
            policy.revoke(uid, &path).expect("revoke");
            found += nodes.grant_entries(path.as_bytes());
            revoke.push(t.elapsed());

            let k = uid - 10_000;
            let t = Instant::now();
            let mut packages = policy.snapshot().packages(uid);
            let new = app(k, (i as u32) % 4);
            packages.extend(new.packages.iter().cloned());
            policy.set_app(new).expect("set_app");
            found += nodes.package_entries(&packages);
            set_app.push(t.elapsed());
        }
    });
    assert!(found >= CHANGES * 2, "the changed paths were found");
    for (name, times) in [("grant", grant), ("revoke", revoke), ("set_app", set_app)] {
        let (median, p99, max) = summary(times);
        row(&format!("policy_change_{name}_at_{n}_nodes"), median, "us");
        row(&format!("policy_change_{name}_at_{n}_nodes_p99"), p99, "us");
        row(&format!("policy_change_{name}_at_{n}_nodes_max"), max, "us");
    }
    row(
        &format!("policy_worker_stall_max_at_{n}_nodes"),
        busy_max,
        "us",
    );
    row(
        &format!("policy_worker_stall_p999_at_{n}_nodes"),
        busy_p999,
        "us",
    );
    row(
        &format!("policy_worker_idle_max_at_{n}_nodes"),
        idle_max,
        "us",
    );
    row(
        &format!("policy_worker_idle_p999_at_{n}_nodes"),
        idle_p999,
        "us",
    );

    let t = Instant::now();
    let dependent = nodes.caller_dependent_entries();
    row(
        &format!("policy_invalidate_all_at_{n}_nodes"),
        t.elapsed().as_secs_f64() * 1e3,
        "ms",
    );
    assert!(dependent >= APPS as usize * per_app);
}

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.replace(['_', ','], "").parse().ok())
        .unwrap_or(1_000_000);
    // The node table first: its RSS row must not reuse heap the batches freed.
    changes_at(n);
    batches();
}
