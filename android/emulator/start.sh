#!/usr/bin/env bash
# Boot the arm64 guest in the background with adbd reachable on 127.0.0.1:$FUSEGATE_ADB_PORT
# (default 6555: outside 5555-5585, where adb would also list a ghost emulator-5554), wait until
# `adb shell` works, and print the adb serial (127.0.0.1:PORT) on stdout.
# Stop it with android/emulator/stop.sh. The serial console goes to $EMU_DIR/run/console.log.
# Env: FUSEGATE_ADB_PORT, FUSEGATE_BOOT_TIMEOUT (s, default 120), FUSEGATE_GUEST_MEM/SMP,
#   FUSEGATE_GUEST_KERNEL (cloud|arm64|arm64-16k), FUSEGATE_GUEST_LOWER_FS (ext4|f2fs: a fresh
#   lower disk of that filesystem, mounted at /data/lower in the guest).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd qemu-system-aarch64; need_cmd adb
ensure_guest

mkdir -p "$RUN_DIR"
if [ -f "$RUN_DIR/qemu.pid" ] && kill -0 "$(cat "$RUN_DIR/qemu.pid")" 2>/dev/null; then
    die "a guest is already running (pid $(cat "$RUN_DIR/qemu.pid"), serial $(cat "$RUN_DIR/serial" 2>/dev/null)); stop it with android/emulator/stop.sh"
fi
rm -f "$RUN_DIR"/{qemu.pid,serial,port,console.log,lower.img}
lower_disk_setup "$RUN_DIR/lower.img"

port="${FUSEGATE_ADB_PORT:-6555}"
if port_in_use "$port"; then
    [ -z "${FUSEGATE_ADB_PORT:-}" ] || die "127.0.0.1:$port is in use (FUSEGATE_ADB_PORT)"
    for p in $(seq 6556 6599); do
        if ! port_in_use "$p"; then port="$p"; break; fi
    done
    port_in_use "$port" && die "no free host port in 6555-6599 for adb"
fi
serial="127.0.0.1:$port"
timeout_s="${FUSEGATE_BOOT_TIMEOUT:-120}"

# On any failure below, leave nothing running.
started=0
cleanup_on_error() {
    local rc=$?
    if [ "$rc" != 0 ] && [ "$started" = 1 ]; then
        log "boot failed; last console lines:"
        tail -n 30 "$RUN_DIR/console.log" >&2 2>/dev/null || true
        "$EMU_SCRIPTS/stop.sh" >/dev/null 2>&1 || true
    fi
}
trap cleanup_on_error EXIT
trap 'exit 130' INT TERM

t0=$(date +%s.%N)
# restrict=on: the guest can reach nothing but the forwarded port (no route out of the sandbox).
qemu-system-aarch64 -M virt -cpu "$(qemu_cpu_flags)" -smp "$GUEST_SMP" -m "$GUEST_MEM" \
    -display none -monitor none -serial "file:$RUN_DIR/console.log" -no-reboot \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:5555" \
    -device virtio-net-pci,netdev=n0,romfile= \
    ${LOWER_QEMU_ARGS[@]+"${LOWER_QEMU_ARGS[@]}"} \
    -kernel "$GUEST_DIR/vmlinuz" -initrd "$GUEST_DIR/initrd.cpio.gz" \
    -append "$GUEST_CMDLINE${LOWER_CMDLINE:+ $LOWER_CMDLINE}" \
    -daemonize -pidfile "$RUN_DIR/qemu.pid" </dev/null ||
    die "qemu-system-aarch64 failed to start"
started=1
echo "$port" >"$RUN_DIR/port"
echo "$serial" >"$RUN_DIR/serial"
pid="$(cat "$RUN_DIR/qemu.pid")"
log "qemu pid $pid, waiting for adbd on $serial (timeout ${timeout_s}s)"

deadline=$(( $(date +%s) + timeout_s ))
# Connect only once init says adbd is starting: an earlier `adb connect` reaches qemu's port
# forward, which holds the connection open while the guest boots, and adb gives up on it only
# after 10 s.
until grep -q 'adbd starting' "$RUN_DIR/console.log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || die "qemu exited during boot"
    [ "$(date +%s)" -lt "$deadline" ] || die "the guest did not start adbd within ${timeout_s}s"
    sleep 0.2
done
while :; do
    kill -0 "$pid" 2>/dev/null || die "qemu exited during boot"
    [ "$(date +%s)" -lt "$deadline" ] || die "adbd did not answer on $serial within ${timeout_s}s"
    # A TCP connect succeeds through qemu's port forward before adbd listens: insist on a shell.
    adb connect "$serial" >/dev/null 2>&1 || true
    if [ "$(timeout 10 adb -s "$serial" shell echo ok 2>/dev/null | tr -d '\r')" = "ok" ]; then
        break
    fi
    adb disconnect "$serial" >/dev/null 2>&1 || true
    sleep 0.3
done
t1=$(date +%s.%N)
log "guest up: $(adb -s "$serial" shell uname -srm | tr -d '\r'), boot to adb $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s"
trap - EXIT
echo "$serial"
