//! Replays every committed fuzz corpus file (fuzz/corpus/<target>/) through the same harness
//! the fuzzer runs, on stable, so a regression on a once-interesting input fails `cargo test`
//! without a fuzzing toolchain. A crash the fuzzer found is committed there and stays a test.

#[path = "../fuzz/src/decode.rs"]
mod decode;
#[path = "../fuzz/src/dispatch.rs"]
mod dispatch;
#[path = "../fuzz/src/frame.rs"]
mod frame;
#[path = "../fuzz/src/policy_config.rs"]
mod policy_config;

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}

/// Runs `run` on every file of the corpus, naming the file that fails.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let files = corpus(target);
    let mut failed = Vec::new();
    for (path, data) in &files {
        if std::panic::catch_unwind(|| run(data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: failing inputs: {failed:#?}");
    files.len()
}

#[test]
fn decode_corpus() {
    let n = replay("decode", decode::run);
    eprintln!("decode: {n} inputs replayed");
}

#[test]
fn policy_config_corpus() {
    let n = replay("policy_config", policy_config::run);
    eprintln!("policy_config: {n} inputs replayed");
}

#[test]
fn dispatch_corpus() {
    // The storage view resolves nodes by file handle: that needs CAP_DAC_READ_SEARCH.
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "the dispatch corpus needs root"
        );
        eprintln!("SKIPPED: the dispatch corpus needs root");
        return;
    }
    let n = replay("dispatch", dispatch::run);
    eprintln!("dispatch: {n} inputs replayed");
}
