# shellcheck shell=bash
# shellcheck disable=SC2034  # variables for the scripts that source this file
# Common helpers for the adb scripts. Sourced, never run. Works the same against a real Android
# emulator/device (userdebug/eng: `adb root`) and against the arm64 test guest
# (android/emulator/start.sh), whose adbd already runs as root.
#
# Device selection follows adb: ANDROID_SERIAL, or `-s SERIAL` on any script (parsed by
# parse_serial_opt). ANDROID_ADB_SERVER_PORT is honoured by adb itself.

ADB_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$ADB_SCRIPTS/../.." && pwd)"
# Where everything lives on the target (exec-able, writable by root on every Android version).
REMOTE="${FUSEGATE_REMOTE_DIR:-/data/local/tmp/fusegate}"
TARGET_TRIPLE="${FUSEGATE_TARGET:-aarch64-unknown-linux-musl}"

log() { printf '[fusegate-adb] %s\n' "$*" >&2; }
die() { printf '[fusegate-adb] error: %s\n' "$*" >&2; exit 1; }

command -v adb >/dev/null 2>&1 || die "adb not found (Debian: apt-get install adb; or the Android SDK platform-tools)"

# Quote one word for the remote /bin/sh (mksh on Android, busybox ash in the guest).
shq() {
    local s=${1//\'/\'\\\'\'}
    printf "'%s'" "$s"
}

# Quote a whole argv for the remote shell.
shq_all() {
    local out="" a
    for a in "$@"; do out+="$(shq "$a") "; done
    printf '%s' "${out% }"
}

# Check there is exactly one reachable device (or the chosen one), with a clear message if not.
require_device() {
    local state
    if ! state="$(adb get-state 2>&1)"; then
        die "no usable device: ${state//$'\n'/ } (set ANDROID_SERIAL or pass -s SERIAL; \`adb devices\` lists them)"
    fi
    [ "$state" = "device" ] || die "device state is '$state', not 'device'"
}

# Run a command on the target as one shell string, output to our stdout, and return its exit
# status. The status travels in a marker line so it also works with old adbd without shell v2.
rsh() {
    local cmd="$1" marker="__FUSEGATE_RC_$$_${RANDOM}="
    local rc_file rc
    rc_file="$(mktemp)"
    # shellcheck disable=SC2016
    { adb shell "$cmd; echo \"$marker\$?\"" </dev/null || true; } | tr -d '\r' | awk -v m="$marker" -v f="$rc_file" '
        { i = index($0, m)
          if (i > 0) { if (i > 1) print substr($0, 1, i - 1); print substr($0, i + length(m)) > f; fflush(); next }
          print; fflush() }' || true
    rc="$(cat "$rc_file")"
    rm -f "$rc_file"
    [ -n "$rc" ] || { log "adb shell lost the connection (no exit status from the target)"; return 255; }
    return "$rc"
}

# Become root on the target: nothing to do if adbd already runs as root (the test guest, or after
# an earlier `adb root`); otherwise `adb root` (userdebug/eng builds and the emulator only).
ensure_root() {
    local uid
    uid="$(adb shell id -u </dev/null 2>/dev/null | tr -d '\r')"
    [ "$uid" = "0" ] && return 0
    log "adb root"
    adb root >/dev/null 2>&1 || true
    adb wait-for-device
    for _ in $(seq 1 20); do
        uid="$(adb shell id -u </dev/null 2>/dev/null | tr -d '\r')"
        [ "$uid" = "0" ] && return 0
        sleep 0.5
    done
    die "could not get root on the target (a user build? fusegate needs CAP_SYS_ADMIN: use a userdebug/eng build or the emulator)"
}

# Common option: -s SERIAL (also --serial SERIAL). Sets ANDROID_SERIAL; returns how many words
# it consumed (0 or 2) in PARSED.
parse_serial_opt() {
    PARSED=0
    case "${1:-}" in
        -s | --serial)
            [ -n "${2:-}" ] || die "-s needs a serial"
            export ANDROID_SERIAL="$2"
            PARSED=2 ;;
    esac
}

# The daemon binary to push by default: the newest of release/debug for the target triple.
default_daemon() {
    local base="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$TARGET_TRIPLE" best="" f
    for f in "$base/release/fusegated" "$base/debug/fusegated"; do
        if [ -x "$f" ] && { [ -z "$best" ] || [ "$f" -nt "$best" ]; }; then best="$f"; fi
    done
    printf '%s' "$best"
}

# Environment handed to programs on the target: CI, RUST_LOG, RUST_BACKTRACE and every
# FUSEGATE_* variable of the host (except the ones that only steer these scripts).
passthrough_env() {
    local v out=""
    for v in CI RUST_LOG RUST_BACKTRACE RUST_TEST_THREADS RUST_TEST_NOCAPTURE NO_COLOR; do
        [ -n "${!v+x}" ] && out+="$v=$(shq "${!v}") "
    done
    while IFS='=' read -r v _; do
        case "$v" in
            FUSEGATE_REMOTE_DIR | FUSEGATE_TARGET | FUSEGATE_EMU_DIR | FUSEGATE_ADB_PORT | FUSEGATE_BIN | FUSEGATE_TEST_TIMEOUT) ;;
            FUSEGATE_*) out+="$v=$(shq "${!v}") " ;;
        esac
    done < <(env | grep -E '^FUSEGATE_[A-Za-z0-9_]*=' || true)
    printf '%s' "$out"
}
