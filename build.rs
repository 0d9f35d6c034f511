//! Build-time work that cargo does and Soong does not (Soong runs no build script, so nothing
//! here may be needed to build for Android: every value it sets has a fallback in the code).
//!
//! * the git revision for `fusegated --version` (`FUSEGATE_GIT_REVISION`).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
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
