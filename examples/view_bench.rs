//! Cost of decisions inside the real storage view, in process (no kernel round trip): the
//! view's handlers are called through the `Filesystem` trait as an app uid would reach them.
//!
//! `cargo run --release --example view_bench -- [FILES]` (as root: file handles need
//! CAP_DAC_READ_SEARCH) prints `name value unit` lines for bench/run.sh:
//!
//! * `cached_decision_ns`: an ACCESS(R_OK) of a known file by an app whose decision is cached
//!   (node table + cache hit), per call;
//! * `uncached_decision_ns`: the same right after the decision cache was voided (facts gathered
//!   again: path, owner tag, `.nomedia`);
//! * `dir_rename_app_ms` / `dir_rename_root_ms`: renaming a directory of FILES app-owned files
//!   within Download, by the app (every file below judged) and by root (no walk); their
//!   difference is the decision's cost.

use fusegate::fuse::abi::ROOT_ID;
use fusegate::fuse::{Ctx, Filesystem, Name};
use fusegate::policy::{parse_config, Policy};
use fusegate::view::{StorageView, ViewConfig};
use std::sync::Arc;
use std::time::Instant;

const APP: u32 = 10057;

fn ctx(uid: u32) -> Ctx {
    Ctx {
        unique: 1,
        nodeid: 0,
        uid,
        gid: uid,
        pid: 0,
        opcode: 0,
    }
}

fn name(s: &str) -> Name<'_> {
    Name::new(s.as_bytes()).expect("a valid name")
}

fn main() {
    let files: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let lower = std::env::temp_dir().join(format!("fusegate-view-bench-{}", std::process::id()));
    let dir = lower.join("Download/album");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tag = b"10057:com.example.app";
    for i in 0..files {
        let p = dir.join(format!("f{i}.txt"));
        std::fs::write(&p, b"x").expect("file");
        xattr_set(&p, tag);
    }
    let table = parse_config(
        "[[app]]\nuid = 10057\npackages = [\"com.example.app\"]\npermissions = [\"read_images\"]\n",
    )
    .expect("policy");
    let view = StorageView::new(&lower, Arc::new(Policy::new(table)), ViewConfig::default())
        .expect("view (run as root)");
    let app = ctx(APP);
    let download = view
        .lookup(&app, ROOT_ID, name("Download"))
        .expect("lookup")
        .nodeid;
    let album = view
        .lookup(&app, download, name("album"))
        .expect("lookup")
        .nodeid;
    let file = view
        .lookup(&app, album, name("f0.txt"))
        .expect("lookup")
        .nodeid;

    let iters = 1_000_000u32;
    view.access(&app, file, libc::R_OK as u32).expect("allowed");
    let t = Instant::now();
    for _ in 0..iters {
        view.access(&app, file, libc::R_OK as u32).expect("allowed");
    }
    println!(
        "cached_decision_ns {:.1} ns",
        t.elapsed().as_nanos() as f64 / f64::from(iters)
    );
    let uncached_iters = 20_000u32;
    let t = Instant::now();
    for _ in 0..uncached_iters {
        view.invalidate(b"");
        view.access(&app, file, libc::R_OK as u32).expect("allowed");
    }
    println!(
        "uncached_decision_ns {:.1} ns",
        t.elapsed().as_nanos() as f64 / f64::from(uncached_iters)
    );

    for (label, uid) in [("app", APP), ("root", 0)] {
        let who = ctx(uid);
        let rounds = 5;
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let t = Instant::now();
            view.rename(&who, download, name("album"), download, name("moved"), 0)
                .expect("rename");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            view.rename(&who, download, name("moved"), download, name("album"), 0)
                .expect("rename back");
            best = best.min(ms);
        }
        println!("dir_rename_{label}_ms {best:.2} ms ({files} files)");
    }
    std::fs::remove_dir_all(&lower).ok();
}

fn xattr_set(path: &std::path::Path, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: both strings are NUL-terminated; value is read for value.len() bytes.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            c"user.fusegate.owner".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
}
