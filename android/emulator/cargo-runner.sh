#!/usr/bin/env bash
# Cargo runner for aarch64-unknown-linux-musl (.cargo/config.toml): runs one test binary (or any
# static arm64 program) inside a fresh arm64 VM and exits with its exit status.
#
#   cargo test --target aarch64-unknown-linux-musl [-- ARGS]   # each test binary -> one VM
#   android/emulator/cargo-runner.sh PROGRAM [ARGS...]         # by hand
#
# The program and, if present, the `fusegated` of the same target/profile directory are placed
# in the guest at the SAME absolute paths as on the host (so env!("CARGO_BIN_EXE_fusegated")
# works unchanged; FUSEGATE_BIN is set to it as well). The guest runs the program as root in the
# host's current directory path (created empty), with /dev/fuse, /proc, /sys, tmpfs /tmp
# (TMPDIR) and tmpfs /data. Passed through: CI, RUST_*, FUSEGATE_*, CARGO_MANIFEST_DIR,
# CARGO_PKG_*, CARGO_CRATE_NAME, NO_COLOR. The exit status comes back in a marker line on the
# serial console (printed with a per-run nonce, never shown); no marker = failure.
# Env: FUSEGATE_RUNNER_TIMEOUT (s, default 900), FUSEGATE_GUEST_MEM/SMP, FUSEGATE_RUNNER_QUIET=1,
# FUSEGATE_GUEST_KERNEL (cloud|arm64|arm64-16k), FUSEGATE_GUEST_LOWER_FS (ext4|f2fs: the tests'
# lower directories on a fresh disk of that filesystem, FUSEGATE_TEST_LOWER_BASE=/data/lower).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -ge 1 ] || die "usage: cargo-runner.sh PROGRAM [ARGS...]"
prog="$1"
shift
[ -f "$prog" ] || die "no such program: $prog"
case "$prog" in /*) ;; *) prog="$PWD/$prog" ;; esac

if ! command -v qemu-system-aarch64 >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "qemu-system-aarch64 missing: run android/emulator/setup-host.sh as root"
    "$EMU_SCRIPTS/setup-host.sh" >&2
fi
need_cmd cpio
ensure_guest 2>&1 | sed 's/^/  /' >&2

# The daemon of the same target/profile dir: <profile>/deps/<test> or <profile>/examples/<x>.
daemon=""
for cand in "$(dirname "$(dirname "$prog")")/fusegated" "$(dirname "$prog")/fusegated"; do
    if [ -f "$cand" ] && [ "$cand" != "$prog" ]; then daemon="$cand"; break; fi
done

mkdir -p "$EMU_DIR/tmp"
scratch="$(mktemp -d "$EMU_DIR/tmp/run.XXXXXX")"
qpid=""
cleanup() {
    if [ -n "$qpid" ]; then
        kill "$qpid" 2>/dev/null || true # timeout(1) passes the signal on to qemu
        wait "$qpid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

q() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }
nonce="$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
marker="FUSEGATE_EXIT_${nonce}="
info_marker="FUSEGATE_INFO_${nonce}="

# --- the run script --------------------------------------------------------------------------
stage="$scratch/stage"
mkdir -p "$stage/fusegate"
{
    echo '#!/bin/sh'
    echo 'export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TMPDIR=/tmp'
    while IFS='=' read -r v _; do
        case "$v" in
            CI | NO_COLOR | RUST_* | FUSEGATE_* | CARGO_MANIFEST_DIR | CARGO_PKG_* | CARGO_CRATE_NAME)
                case "$v" in FUSEGATE_EMU_DIR | FUSEGATE_RUNNER_* | FUSEGATE_GUEST_*) continue ;; esac
                echo "export $v=$(q "${!v}")" ;;
        esac
    done < <(env | grep -E '^[A-Za-z_][A-Za-z0-9_]*=' || true)
    if [ -n "${FUSEGATE_GUEST_LOWER_FS:-}" ]; then
        echo "export FUSEGATE_TEST_LOWER_BASE=$GUEST_LOWER_MNT FUSEGATE_TEST_EXPECT_LOWER_FS=$(q "$FUSEGATE_GUEST_LOWER_FS")"
    fi
    if [ -n "$daemon" ] && [ -z "${FUSEGATE_BIN:-}" ]; then
        echo "export FUSEGATE_BIN=$(q "$daemon")"
    fi
    echo "echo \"${info_marker}\$(uname -srm)\""
    echo "mkdir -p $(q "$PWD") && cd $(q "$PWD")"
    printf '%s' "$(q "$prog")"
    for a in "$@"; do printf ' %s' "$(q "$a")"; done
    echo
    echo 'rc=$?'
    echo "echo \"${marker}\$rc\""
    # let the UART drain before power-off cuts it
    echo 'sleep 0.2'
} >"$stage/fusegate/run.sh"

# --- the per-run initramfs: base + uncompressed cpio with the binaries at their host paths ----
copy_at_host_path() {
    local f="$1"
    mkdir -p "$stage$(dirname "$f")"
    cp --reflink=auto "$f" "$stage$f"
    chmod 0755 "$stage$f"
}
copy_at_host_path "$prog"
[ -n "$daemon" ] && copy_at_host_path "$daemon"
initrd="$scratch/initrd"
cp "$GUEST_DIR/initrd.cpio.gz" "$initrd"
# The kernel takes an uncompressed archive after a compressed one only at a 4-byte aligned
# offset ("invalid magic at start of compressed archive" otherwise); it skips zero padding.
pad=$(( (512 - $(stat -c %s "$initrd") % 512) % 512 ))
head -c "$pad" /dev/zero >>"$initrd"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >>"$initrd"

# --- boot ------------------------------------------------------------------------------------
lower_disk_setup "$scratch/lower.img"
rcfile="$scratch/rc"
t0=$(date +%s.%N)
timeout_s="${FUSEGATE_RUNNER_TIMEOUT:-900}"
# qemu and the console filter run in the background so that a signal to this script (cargo
# interrupted) reaches the trap at once and the VM is killed with it.
mkfifo "$scratch/console"
infofile="$scratch/info"
awk -v m="$marker" -v f="$rcfile" -v im="$info_marker" -v inf="$infofile" '
    { sub(/\r$/, "")
      if ($0 ~ /^\[ *[0-9.]+\] reboot: Power down$/) next
      if (index($0, im) == 1) { print substr($0, length(im) + 1) > inf; close(inf); next }
      i = index($0, m)
      if (i > 0) { if (i > 1) print substr($0, 1, i - 1); print substr($0, i + length(m)) > f; close(f); fflush(); next }
      print; fflush() }' <"$scratch/console" &
apid=$!
# -nic none: no network in this mode. stdin from /dev/null: never grab the terminal.
timeout -k 5 "$timeout_s" qemu-system-aarch64 -M virt -cpu "$(qemu_cpu_flags)" -smp "$GUEST_SMP" -m "$GUEST_MEM" \
    -display none -monitor none -serial stdio -no-reboot -nic none \
    ${LOWER_QEMU_ARGS[@]+"${LOWER_QEMU_ARGS[@]}"} \
    -kernel "$GUEST_DIR/vmlinuz" -initrd "$initrd" \
    -append "$GUEST_CMDLINE fusegate.mode=run${LOWER_CMDLINE:+ $LOWER_CMDLINE}" </dev/null >"$scratch/console" &
qpid=$!
set +e
wait "$qpid"
qrc=$?
qpid=""
wait "$apid"
set -e
t1=$(date +%s.%N)
secs="$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")"

if [ ! -s "$rcfile" ]; then
    if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
        die "$(basename "$prog"): the arm64 guest timed out after ${timeout_s}s (FUSEGATE_RUNNER_TIMEOUT)"
    fi
    die "$(basename "$prog"): the arm64 guest ended without reporting an exit status (qemu exit $qrc; kernel panic or crash in init?)"
fi
rc="$(tr -dc '0-9' <"$rcfile")"
[ -n "$rc" ] || die "unreadable exit status from the guest"
[ "${FUSEGATE_RUNNER_QUIET:-0}" = 1 ] ||
    log "$(basename "$prog") ran in an arm64 VM ($(cat "$infofile" 2>/dev/null || echo '?')): exit $rc, ${secs}s (boot included)"
exit "$rc"
