#!/usr/bin/env bash
# Run the crate's test binaries on an Android emulator/device or the arm64 test guest via adb:
# push the daemon and the tests (push.sh), run each test binary on the target as root, stream
# its output, keep a log per binary on the host, collect the target's logs, print a summary,
# and exit non-zero if any test binary failed.
#
# Usage: run-tests.sh [-s SERIAL] [--daemon PATH] [--results DIR] [TEST_BINARY...] [-- TEST_ARGS...]
#   With no TEST_BINARY, cross-builds everything first (build-tests.sh) and runs all of it.
#   TEST_ARGS go to every test binary (libtest filters and flags, e.g. -- --test-threads=1).
# On the target each test runs in $REMOTE/tmp/<name> (TMPDIR), with FUSEGATE_BIN=$REMOTE/fusegated
# and the host's CI, RUST_LOG, RUST_BACKTRACE, FUSEGATE_* passed through.
# Env: ANDROID_SERIAL, FUSEGATE_REMOTE_DIR (/data/local/tmp/fusegate), FUSEGATE_TEST_TIMEOUT
#   (seconds per binary, default 900), FUSEGATE_TARGET (aarch64-unknown-linux-musl).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
daemon=""
results="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/adb-results"
tests=()
test_args=()
while [ $# -gt 0 ]; do
    parse_serial_opt "$@"
    if [ "$PARSED" -gt 0 ]; then shift "$PARSED"; continue; fi
    case "$1" in
        --daemon) daemon="${2:?--daemon needs a path}"; shift 2 ;;
        --results) results="${2:?--results needs a directory}"; shift 2 ;;
        -h | --help) usage 0 ;;
        --) shift; test_args=("$@"); break ;;
        -*) log "unknown option $1"; usage 2 ;;
        *) tests+=("$1"); shift ;;
    esac
done
timeout_s="${FUSEGATE_TEST_TIMEOUT:-900}"

if [ ${#tests[@]} -eq 0 ]; then
    built="$("$ADB_SCRIPTS/build-tests.sh")" || die "cross build failed"
    [ -n "$daemon" ] || daemon="$(sed -n 's/^daemon //p' <<<"$built")"
    mapfile -t tests < <(sed -n 's/^test //p' <<<"$built")
    [ ${#tests[@]} -gt 0 ] || die "cargo built no test binaries"
fi

require_device
ensure_root
"$ADB_SCRIPTS/push.sh" ${daemon:+--daemon "$daemon"} "${tests[@]}"

rm -rf "$results"
mkdir -p "$results"
target_info="$(rsh 'echo "$(uname -m) $(uname -r) $(getprop ro.build.fingerprint 2>/dev/null)"' | head -1)"
log "target ${ANDROID_SERIAL:-(default device)}: $target_info"
echo "$target_info" >"$results/target.txt"

env_words="$(passthrough_env)"
# Remote timeout (busybox, toybox and coreutils agree on the syntax) so that a hung test dies on
# the target too; the host-side timeout is only a backstop for a lost connection.
remote_timeout="if command -v timeout >/dev/null 2>&1; then T='timeout $timeout_s'; else T=; fi"

failed=()
total_pass=0 total_fail=0 total_ignored=0
for t in "${tests[@]}"; do
    name="$(basename "$t")"
    wd="$REMOTE/tmp/$name"
    cmd="$remote_timeout; mkdir -p $(shq "$wd") && cd $(shq "$wd") && \
env FUSEGATE_BIN=$(shq "$REMOTE/fusegated") TMPDIR=$(shq "$wd") $env_words \
\$T $(shq "$REMOTE/tests/$name") $(shq_all ${test_args[@]+"${test_args[@]}"}) </dev/null 2>&1"
    echo "=== $name (on ${ANDROID_SERIAL:-device}) ==="
    start=$(date +%s)
    rc=0
    # shellcheck disable=SC2030,SC2031
    (set -o pipefail; timeout $((timeout_s + 60)) bash -c '. "$1"/common.sh; rsh "$2"' _ "$ADB_SCRIPTS" "$cmd" | tee "$results/$name.log") || rc=$?
    secs=$(( $(date +%s) - start ))
    if [ "$rc" = 0 ]; then
        echo "--- $name: ok (${secs}s)"
    else
        echo "--- $name: FAILED (exit $rc, ${secs}s)"
        failed+=("$name")
    fi
    # Tally libtest's closing lines ("test result: ok. 3 passed; 0 failed; 1 ignored; ...").
    if line="$(grep -E '^test result: ' "$results/$name.log" | tail -1)" && [ -n "$line" ]; then
        p="$(sed -n 's/.* \([0-9]*\) passed;.*/\1/p' <<<"$line")"
        f="$(sed -n 's/.* \([0-9]*\) failed;.*/\1/p' <<<"$line")"
        i="$(sed -n 's/.* \([0-9]*\) ignored;.*/\1/p' <<<"$line")"
        total_pass=$((total_pass + ${p:-0})); total_fail=$((total_fail + ${f:-0})); total_ignored=$((total_ignored + ${i:-0}))
        if [ "$rc" != 0 ] && [ "${f:-0}" = 0 ]; then total_fail=$((total_fail + 1)); fi
    elif [ "$rc" != 0 ]; then
        total_fail=$((total_fail + 1)) # crashed or timed out before libtest's summary
    fi
done

# The target's logs: logcat (Android; the daemon logs with tag "fusegate") or the kernel log.
rsh 'if command -v logcat >/dev/null 2>&1; then logcat -d -v threadtime -s fusegate:V fusegated:V; else dmesg; fi' \
    >"$results/device.log" 2>&1 || true
log "logs in $results (per test binary, device.log, target.txt)"

echo "=== arm64 tests on ${ANDROID_SERIAL:-device} ($target_info) ==="
for t in "${tests[@]}"; do
    name="$(basename "$t")"
    if printf '%s\n' ${failed[@]+"${failed[@]}"} | grep -qx "$name"; then s=FAILED; else s=ok; fi
    printf '  %-50s %s\n' "$name" "$s"
done
echo "adb: $total_pass passed, $total_fail failed, $total_ignored skipped"
if [ ${#failed[@]} -gt 0 ]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
