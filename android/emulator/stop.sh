#!/usr/bin/env bash
# Stop the guest started by start.sh: `adb shell poweroff -f` (qemu exits on PSCI SYSTEM_OFF),
# then SIGTERM/SIGKILL the qemu pid if it is still there; drop the adb connection. Idempotent.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

serial="$(cat "$RUN_DIR/serial" 2>/dev/null || true)"
pid="$(cat "$RUN_DIR/qemu.pid" 2>/dev/null || true)"
alive() { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

if [ -n "$serial" ] && command -v adb >/dev/null 2>&1; then
    if alive; then
        timeout 10 adb -s "$serial" shell poweroff -f >/dev/null 2>&1 || true
    fi
    timeout 10 adb disconnect "$serial" >/dev/null 2>&1 || true
fi
for _ in $(seq 1 50); do alive || break; sleep 0.1; done
if alive; then
    log "qemu $pid did not power off; terminating it"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do alive || break; sleep 0.1; done
    alive && kill -9 "$pid" 2>/dev/null || true
fi
rm -f "$RUN_DIR/qemu.pid" "$RUN_DIR/serial" "$RUN_DIR/port" "$RUN_DIR/lower.img"
[ -n "$serial" ] && log "guest $serial stopped" || true
