#!/usr/bin/env bash
# Push the daemon (and optionally test binaries) to the target:
#   $REMOTE/fusegated            the daemon (default: newest target/aarch64-unknown-linux-musl/{release,debug}/fusegated)
#   $REMOTE/tests/<name>         each test binary given
# REMOTE defaults to /data/local/tmp/fusegate (FUSEGATE_REMOTE_DIR).
# Where the target's / is writable (the arm64 test guest), the daemon is also linked at its
# host absolute path, so tests that spawn env!("CARGO_BIN_EXE_fusegated") find it unchanged;
# elsewhere (a real device) tests find it through FUSEGATE_BIN, which run-tests.sh sets.
#
# Usage: push.sh [-s SERIAL] [--daemon PATH] [TEST_BINARY...]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
daemon=""
tests=()
while [ $# -gt 0 ]; do
    parse_serial_opt "$@"
    if [ "$PARSED" -gt 0 ]; then shift "$PARSED"; continue; fi
    case "$1" in
        --daemon) daemon="${2:?--daemon needs a path}"; shift 2 ;;
        -h | --help) usage 0 ;;
        --) shift; tests+=("$@"); break ;;
        -*) log "unknown option $1"; usage 2 ;;
        *) tests+=("$1"); shift ;;
    esac
done
[ -n "$daemon" ] || daemon="$(default_daemon)"
[ -n "$daemon" ] && [ -f "$daemon" ] ||
    die "no daemon binary (build it: cargo build --release --target $TARGET_TRIPLE, or pass --daemon PATH)"
daemon="$(cd "$(dirname "$daemon")" && pwd)/$(basename "$daemon")"
for t in ${tests[@]+"${tests[@]}"}; do [ -f "$t" ] || die "no such test binary: $t"; done

require_device
ensure_root
rsh "mkdir -p $(shq "$REMOTE/tests") $(shq "$REMOTE/tmp")" || die "cannot create $REMOTE on the target"

push() {
    local out
    out="$(adb push "$1" "$2" 2>&1)" || die "adb push $1 -> $2 failed: $out"
    log "pushed $(basename "$1") -> $2 (${out##*: })"
}
push "$daemon" "$REMOTE/fusegated"
for t in ${tests[@]+"${tests[@]}"}; do
    push "$t" "$REMOTE/tests/$(basename "$t")"
done
# shellcheck disable=SC2016
rsh "chmod 755 $(shq "$REMOTE/fusegated") $REMOTE/tests/* 2>/dev/null; true" >/dev/null

# Same absolute path as on the host, where the target allows it (best effort, silent otherwise).
rsh "mkdir -p $(shq "$(dirname "$daemon")") 2>/dev/null && ln -sf $(shq "$REMOTE/fusegated") $(shq "$daemon") 2>/dev/null" >/dev/null &&
    log "linked $daemon -> $REMOTE/fusegated on the target" || true
