//! Build-time work that cargo does and Soong does not (Soong runs no build script, so nothing
//! here may be needed to build for Android: every value it sets has a fallback in the code, and
//! the checks only stop a drifting tree from building).
//!
//! * The Java API and the Rust side of JNI must agree: every `native` method declared in
//!   `jni/src/main/java/dev/fusegate/*.java` is registered in `src/jni/mod.rs` under the same
//!   name and JNI signature, the Rust function registered for it takes matching parameter types,
//!   and every public constant of the Java API equals its Rust counterpart (`CONSTANTS`). On any
//!   drift the build fails with a message naming both places (file:line).
//! * The git revision for `fusegated --version` (`FUSEGATE_GIT_REVISION`).
//!
//! No dependencies: the Java and Rust sources are read with a small tokenizer that knows just
//! enough of both languages (`build/`: `tokens.rs`, `java.rs`, `rust_side.rs`, `check.rs`).

#[path = "build/check.rs"]
mod check;
#[path = "build/java.rs"]
mod java;
#[path = "build/rust_side.rs"]
mod rust_side;
#[path = "build/tokens.rs"]
mod tokens;

use std::path::Path;
use std::process::Command;

const JAVA_DIR: &str = "jni/src/main/java/dev/fusegate";
const JAVA_PACKAGE: &str = "dev/fusegate";
/// The one class with natives, and where they are registered (`native("name", "sig", f)`).
const NATIVE_CLASS: &str = "FuseGate";
const REGISTRATION: &str = "src/jni/mod.rs";
/// Where the registered functions are defined.
const JNI_DIR: &str = "src/jni";

/// Every public constant of the Java API: (Class.NAME, Rust file, Rust constant name).
const CONSTANTS: &[(&str, &str, &str)] = &[
    ("FuseGate.READ_IMAGES", "src/policy/mod.rs", "READ_IMAGES"),
    ("FuseGate.READ_VIDEO", "src/policy/mod.rs", "READ_VIDEO"),
    ("FuseGate.READ_AUDIO", "src/policy/mod.rs", "READ_AUDIO"),
    (
        "FuseGate.ACCESS_MEDIA_LOCATION",
        "src/policy/mod.rs",
        "ACCESS_MEDIA_LOCATION",
    ),
    ("FuseGate.WRITE_MEDIA", "src/policy/mod.rs", "WRITE_MEDIA"),
    (
        "FuseGate.MANAGE_EXTERNAL_STORAGE",
        "src/policy/mod.rs",
        "MANAGE_EXTERNAL_STORAGE",
    ),
    (
        "FuseGate.LEGACY_STORAGE",
        "src/policy/mod.rs",
        "LEGACY_STORAGE",
    ),
    ("FuseGate.ALL_PERMISSIONS", "src/policy/mod.rs", "ALL"),
    ("FuseGate.ACCESS_READ", "src/jni/args.rs", "ACCESS_READ"),
    ("FuseGate.ACCESS_WRITE", "src/jni/args.rs", "ACCESS_WRITE"),
    ("Options.MAX_THREADS", "src/jni/args.rs", "MAX_THREADS"),
    (
        "Options.MAX_CACHE_TIMEOUT_MILLIS",
        "src/jni/args.rs",
        "MAX_CACHE_TIMEOUT_MS",
    ),
    ("Denial.EPERM", "src/jni/listener.rs", "EPERM"),
    ("Denial.ENOENT", "src/jni/listener.rs", "ENOENT"),
    ("Denial.EACCES", "src/jni/listener.rs", "EACCES"),
    (
        "FuseGate.MODE_READ_ONLY",
        "src/jni/args.rs",
        "MODE_READ_ONLY",
    ),
    (
        "FuseGate.MODE_WRITE_ONLY",
        "src/jni/args.rs",
        "MODE_WRITE_ONLY",
    ),
    (
        "FuseGate.MODE_READ_WRITE",
        "src/jni/args.rs",
        "MODE_READ_WRITE",
    ),
    ("FuseGate.MODE_TRUNCATE", "src/jni/args.rs", "MODE_TRUNCATE"),
    ("FuseGate.MODE_APPEND", "src/jni/args.rs", "MODE_APPEND"),
    ("FileEvent.CREATED", "src/jni/events.rs", "CREATED"),
    (
        "FileEvent.CLOSED_AFTER_WRITE",
        "src/jni/events.rs",
        "CLOSED_AFTER_WRITE",
    ),
    ("FileEvent.RENAMED", "src/jni/events.rs", "RENAMED"),
    ("FileEvent.DELETED", "src/jni/events.rs", "DELETED"),
];

fn main() {
    for watched in ["build.rs", "build", JAVA_DIR, JNI_DIR, "src/policy/mod.rs"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let problems = check::check_jni();
    if !problems.is_empty() {
        eprintln!(
            "\nerror: the Java API ({JAVA_DIR}) and the Rust JNI side disagree (checked by build.rs):\n"
        );
        for p in &problems {
            eprintln!("  * {}\n", p.replace('\n', "\n    "));
        }
        std::process::exit(1);
    }
    git_revision();
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// `git rev-parse --short HEAD`, or "unknown" outside git; rebuilt when HEAD moves.
fn git_revision() {
    let revision = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FUSEGATE_GIT_REVISION={revision}");
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watched.into_iter().flatten() {
        // Only files that exist: a missing one would make cargo rerun this on every build.
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
