# shellcheck shell=bash
# shellcheck disable=SC2034  # variables for the scripts that source this file
# Common helpers for the arm64 emulator scripts. Sourced, never run.
#
# Layout of the cache (gitignored, under target/ by default; override with FUSEGATE_EMU_DIR):
#   $EMU_DIR/debs/        downloaded arm64 .deb files (kernel, busybox-static, adbd and its libs)
#   $EMU_DIR/guest/       vmlinuz, initrd.cpio.gz, versions.txt, stamp (what built them)
#   $EMU_DIR/run/         a running adb guest: qemu.pid, console.log, serial, port
#   $EMU_DIR/tmp/         per-run scratch (cargo runner initrds), removed after each run

EMU_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$EMU_SCRIPTS/../.." && pwd)"
EMU_DIR="${FUSEGATE_EMU_DIR:-$REPO_ROOT/target/emulator}"
GUEST_DIR="$EMU_DIR/guest"
RUN_DIR="$EMU_DIR/run"

# The guest: 2 vCPUs and 2 GiB, as the integration tests fork, mount FUSE and run a daemon.
GUEST_SMP="${FUSEGATE_GUEST_SMP:-2}"
GUEST_MEM="${FUSEGATE_GUEST_MEM:-2048}"
# Serial console; a kernel panic powers off (with -no-reboot) instead of hanging; no crypto
# self-tests at boot (they only cost time under emulation).
GUEST_CMDLINE="console=ttyAMA0 panic=-1 quiet cryptomgr.notests"

log() { printf '[fusegate-emu] %s\n' "$*" >&2; }
die() { printf '[fusegate-emu] error: %s\n' "$*" >&2; exit 1; }

need_cmd() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found; run android/emulator/setup-host.sh as root first${2:+ ($2)}"
}

# The -cpu flags for this qemu: qemu < 8 emulates pointer authentication with the slow QARMA
# cipher unless told to use the implementation-defined one (boot 9 s instead of 3 s).
qemu_cpu_flags() {
    local v major
    v="$(qemu-system-aarch64 --version | sed -n 's/^QEMU emulator version \([0-9][0-9]*\)\..*/\1/p')"
    major="${v:-0}"
    if [ "$major" -ge 8 ]; then
        echo "max"
    else
        echo "max,pauth-impdef=on"
    fi
}

# True if the cached guest exists and was built by the current build-guest.sh + init.sh.
guest_is_current() {
    [ -f "$GUEST_DIR/stamp" ] && [ -f "$GUEST_DIR/vmlinuz" ] && [ -f "$GUEST_DIR/initrd.cpio.gz" ] &&
        [ "$(cat "$GUEST_DIR/stamp")" = "$(guest_recipe_hash)" ]
}

guest_recipe_hash() {
    cat "$EMU_SCRIPTS/build-guest.sh" "$EMU_SCRIPTS/init.sh" | sha256sum | cut -d' ' -f1
}

# Build the guest if it is missing or stale. Serialised with a lock so that concurrent cargo
# runner invocations build it once.
ensure_guest() {
    mkdir -p "$EMU_DIR"
    (
        flock 9
        if ! guest_is_current; then
            "$EMU_SCRIPTS/build-guest.sh"
        fi
    ) 9>"$EMU_DIR/.build.lock"
    guest_is_current || die "guest build failed (see messages above)"
}

# Is something listening on 127.0.0.1:$1?
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
