#!/usr/bin/env bash
# Cross-build the daemon and every test binary for the target (default aarch64-unknown-linux-musl,
# static, linked with rust-lld as .cargo/config.toml says) without running them, and print
#   daemon <absolute path of fusegated>
#   test <absolute path of a test binary>      (one line each)
# on stdout. Extra arguments go to `cargo test` (e.g. --release, --test NAME, --lib).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v cargo >/dev/null 2>&1 || die "cargo not found"
command -v jq >/dev/null 2>&1 || die "jq not found (apt-get install jq)"
json="$(mktemp)"
trap 'rm -f "$json"' EXIT
log "cargo test --target $TARGET_TRIPLE --no-run $*"
(cd "$REPO_ROOT" && cargo test --target "$TARGET_TRIPLE" --no-run --message-format=json-render-diagnostics "$@" >"$json") ||
    die "cross build failed"
# Build the daemon explicitly as well (same profile): cargo builds bins for `cargo test` only
# when integration tests exist.
# shellcheck source=cargo-profile.sh
. "$ADB_SCRIPTS/cargo-profile.sh"
cargo_profile "$@"
(cd "$REPO_ROOT" && cargo build --target "$TARGET_TRIPLE" --bin fusegated --message-format=json-render-diagnostics \
    ${profile[@]+"${profile[@]}"} >>"$json") || die "cross build of fusegated failed"
daemon="$(jq -r 'select(.reason=="compiler-artifact" and .target.name=="fusegated" and (.target.kind|index("bin")) and .profile.test==false and .executable!=null) | .executable' "$json" | tail -1)"
[ -n "$daemon" ] || die "no fusegated binary in cargo's output"
echo "daemon $daemon"
jq -r 'select(.reason=="compiler-artifact" and .profile.test==true and .executable!=null) | "test " + .executable' "$json" | awk '!seen[$0]++'
