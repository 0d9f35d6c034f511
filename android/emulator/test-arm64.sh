#!/usr/bin/env bash
# CI entry point: the crate's test suite on arm64, driven through adb, from a fresh machine.
#
#   1. host packages + Rust targets (setup-host.sh; needs root the first time)
#   2. the arm64 guest from Debian packages (build-guest.sh; cached in target/emulator/)
#   3. cross build: cargo test --target aarch64-unknown-linux-musl --no-run (+ fusegated), and
#      cargo check --target aarch64-linux-android (the Android-only code paths)
#   4. boot the guest, adb connect (private adb server port), check the daemon runs there
#   5. android/adb/run-tests.sh: push, run every test binary on the target, collect logs
#   6. stop the guest and the adb server (also on failure), exit non-zero if any test failed
#
# Usage: android/emulator/test-arm64.sh [--kernel cloud|arm64|arm64-16k] [--lower-fs ext4|f2fs|tmpfs]
#                                       [CARGO_TEST_ARGS...] [-- TEST_ARGS...]
#   --kernel    the guest's Debian 6.12 kernel (lib.sh): cloud (default), the full arm64 kernel
#               (f2fs as a module), or its 16 KiB-page variant
#   --lower-fs  the filesystem of the tests' lower directories (default ext4): a fresh image made
#               by mkfs on the host, the guest's second disk (virtio-blk), mounted at /data/lower;
#               tmpfs = no disk, lower directories in TMPDIR
#   CARGO_TEST_ARGS  e.g. --test NAME; the build profile is `guest` (the dev profile's checks,
#               optimized) unless --release or --profile is given
#   e.g. test-arm64.sh --kernel arm64-16k --lower-fs f2fs        test-arm64.sh -- --test-threads=1
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t_start=$(date +%s.%N)
elapsed() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $1}"; }

cargo_args=()
test_args=()
kernel="${FUSEGATE_GUEST_KERNEL:-cloud}"
lower_fs="ext4"
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernel="${2:?--kernel needs cloud, arm64 or arm64-16k}"; shift 2 ;;
        --kernel=*) kernel="${1#*=}"; shift ;;
        --lower-fs) lower_fs="${2:?--lower-fs needs ext4, f2fs or tmpfs}"; shift 2 ;;
        --lower-fs=*) lower_fs="${1#*=}"; shift ;;
        --) shift; test_args=("$@"); break ;;
        *) cargo_args+=("$1"); shift ;;
    esac
done

# Under software emulation unoptimized code is most of the tests' time: the guest build keeps
# the dev profile's checks and optimizes (Cargo.toml, [profile.guest]) unless a profile is given.
if ! printf '%s\n' ${cargo_args[@]+"${cargo_args[@]}"} | grep -qE '^--(release|profile)'; then
    cargo_args=(--profile guest ${cargo_args[@]+"${cargo_args[@]}"})
fi

case "$kernel" in cloud | arm64 | arm64-16k) ;; *) die "--kernel $kernel: want cloud, arm64 or arm64-16k" ;; esac
case "$lower_fs" in ext4 | f2fs) ;; tmpfs) lower_fs="" ;; *) die "--lower-fs $lower_fs: want ext4, f2fs or tmpfs" ;; esac
if [ "$lower_fs" = f2fs ] && [ "$kernel" = cloud ]; then
    die "the cloud kernel has no f2fs: use --kernel arm64 or arm64-16k with --lower-fs f2fs"
fi
# For build-guest.sh and start.sh, which read them when they source lib.sh.
export FUSEGATE_GUEST_KERNEL="$kernel"
export FUSEGATE_GUEST_LOWER_FS="$lower_fs"
select_guest_kernel "$kernel"
log "== kernel $kernel, lower filesystem ${lower_fs:-tmpfs (no disk)}"

# --- 1, 2: host and guest --------------------------------------------------------------------
log "== host setup"
"$EMU_SCRIPTS/setup-host.sh"
export FUSEGATE_HOST_CHECKED=1
log "== guest"
ensure_guest
sed 's/^/    /' "$GUEST_DIR/versions.txt" | grep -E 'linux-image|adbd|busybox' >&2 || true

# --- 3: cross build --------------------------------------------------------------------------
log "== cross build (aarch64-unknown-linux-musl)"
t_build=$(date +%s.%N)
built="$("$REPO_ROOT/android/adb/build-tests.sh" ${cargo_args[@]+"${cargo_args[@]}"})"
daemon="$(sed -n 's/^daemon //p' <<<"$built")"
mapfile -t tests < <(sed -n 's/^test //p' <<<"$built")
[ -n "$daemon" ] || die "no daemon binary was built"
[ ${#tests[@]} -gt 0 ] || die "no test binaries were built"
# The guest is a minimal system: no mkfs.ext4, no ImageMagick, no source tree. Suites that need
# those test the host kernel's filesystems or pure library code, and run on the host (cargo
# test); the guest runs every suite that mounts through its own kernel.
host_only="cli_help fuzz_corpus redact_corpus redact_files redaction faults"
guest_tests=()
for t in "${tests[@]}"; do
    base="$(basename "$t")"
    if [[ " $host_only " == *" ${base%-*} "* ]]; then
        log "on the host only: ${base%-*} (needs the source tree or mkfs/ImageMagick)"
    else
        guest_tests+=("$t")
    fi
done
tests=("${guest_tests[@]}")
finfo="$(file -b "$daemon")"
echo "fusegated: $finfo"
grep -q 'ARM aarch64' <<<"$finfo" || die "$daemon is not an aarch64 binary"
grep -q 'statically linked' <<<"$finfo" || die "$daemon is not statically linked"
# Android 15+ (16 KiB pages) loads native code only if every LOAD segment is aligned to at
# least 16 KiB (.cargo/config.toml: -zmax-page-size=16384).
aligns="$(readelf -lW "$daemon" | awk '$1 == "LOAD" { print $NF }' | sort -u | tr '\n' ' ')"
echo "fusegated LOAD segment alignment: $aligns"
for a in $aligns; do
    [ $((a)) -ge 16384 ] || die "$daemon has a LOAD segment aligned to $a (< 16 KiB): it cannot run on a 16 KiB-page kernel"
done
log "built ${#tests[@]} test binaries in $(elapsed "$t_build")s"
# The Android-only code (android_logger, JNI) cannot be linked without the NDK: type-check it.
# In the cross build's profile: its build scripts and proc macros, already built for the host
# in that profile, are reused (in `dev` they were all built again, for this check alone).
# shellcheck source=../adb/cargo-profile.sh
. "$REPO_ROOT/android/adb/cargo-profile.sh"
cargo_profile ${cargo_args[@]+"${cargo_args[@]}"}
log "== cargo check --target aarch64-linux-android --lib --bins ${profile[*]}"
(cd "$REPO_ROOT" && cargo check --target aarch64-linux-android --lib --bins ${profile[@]+"${profile[@]}"}) ||
    die "the Android build (aarch64-linux-android) does not type-check"

# --- 4: boot ---------------------------------------------------------------------------------
# A private adb server, so that we neither disturb nor depend on a developer's running one.
own_server=0
if [ -z "${ANDROID_ADB_SERVER_PORT:-}" ]; then
    for p in $(seq 15037 15099); do
        if ! port_in_use "$p"; then export ANDROID_ADB_SERVER_PORT="$p"; own_server=1; break; fi
    done
    [ "$own_server" = 1 ] || die "no free port for a private adb server in 15037-15099"
fi
cleanup() {
    local rc=$?
    "$EMU_SCRIPTS/stop.sh" >/dev/null 2>&1 || true
    if [ "$own_server" = 1 ]; then adb kill-server >/dev/null 2>&1 || true; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "== boot"
t_boot=$(date +%s.%N)
serial="$("$EMU_SCRIPTS/start.sh")"
boot_secs="$(elapsed "$t_boot")"
export ANDROID_SERIAL="$serial"
guest_arch="$(adb shell uname -m </dev/null | tr -d '\r')"
echo "guest: $serial, uname -m = $guest_arch ($(adb shell uname -r </dev/null | tr -d '\r')), boot to adb ${boot_secs}s"
[ "$guest_arch" = aarch64 ] || die "the guest is '$guest_arch', not aarch64"

# Where the tests put their lower directories (tests/common: TempDir::lower), and what they
# check it is. busybox has no getconf: the page size then comes from the mappings.
if [ -n "$lower_fs" ]; then
    export FUSEGATE_TEST_LOWER_BASE="$GUEST_LOWER_MNT" FUSEGATE_TEST_EXPECT_LOWER_FS="$lower_fs"
    lower_dir="$GUEST_LOWER_MNT"
else
    unset FUSEGATE_TEST_LOWER_BASE FUSEGATE_TEST_EXPECT_LOWER_FS
    lower_dir="${FUSEGATE_REMOTE_DIR:-/data/local/tmp/fusegate}"
fi
# shellcheck disable=SC2016
platform="$(adb shell "echo \"uname -r: \$(uname -r)\"; \
echo \"PAGESIZE: \$(getconf PAGESIZE 2>/dev/null || awk '/^KernelPageSize:/ { print \$2 * 1024; exit }' /proc/self/smaps)\"; \
mkdir -p $lower_dir; echo \"lower $lower_dir: \$(stat -f -c %T $lower_dir) (\$(grep \" $lower_dir \" /proc/mounts | cut -d' ' -f1,3,4))\"" </dev/null 2>&1 | tr -d '\r')"
echo "platform:"
sed 's/^/    /' <<<"$platform"
if [ -n "$lower_fs" ] && ! grep -q "^lower $lower_dir: .*(/dev/vda $lower_fs " <<<"$platform"; then
    adb shell 'dmesg | tail -n 8' </dev/null 2>&1 | tr -d '\r' | sed 's/^/    /' || true
    die "the lower disk is not mounted at $lower_dir as $lower_fs (the kernel's last words above)"
fi

# The daemon runs on the target.
"$REPO_ROOT/android/adb/push.sh" --daemon "$daemon"
remote="${FUSEGATE_REMOTE_DIR:-/data/local/tmp/fusegate}"
help_rc=0
help_out="$(adb shell "$remote/fusegated --help; echo \"rc=\$?\"" </dev/null 2>&1 | tr -d '\r')" || true
help_rc="$(sed -n 's/^rc=//p' <<<"$help_out" | tail -1)"
echo "fusegated --help on the guest (exit ${help_rc:-?}):"
sed '$d' <<<"$help_out" | head -n 20 | sed 's/^/    /'
[ "${help_rc:-1}" = 0 ] || die "fusegated --help failed on the guest (exit ${help_rc:-?})"

# --- 5: tests --------------------------------------------------------------------------------
log "== tests on the guest"
t_tests=$(date +%s.%N)
results="$REPO_ROOT/target/adb-results"
extra=()
if [ ${#test_args[@]} -eq 0 ]; then
    # The 200,000-file scale test is about the daemon's fd use, which is the same on any
    # architecture; under software emulation it alone takes over four minutes, so it runs on
    # the host (cargo test) and is skipped here. Pass libtest arguments after -- to override.
    log "skipping the 200,000-file scale test in the guest (it runs on the host)"
    log "skipping read_only_lower_gives_erofs and apps_cannot_fill_reserved_blocks_* in the guest (they make ext4 images with mkfs.ext4; they run on the host)"
    test_args=(--skip two_hundred_thousand_held_inodes_without_an_fd_each
        --skip read_only_lower_gives_erofs --skip apps_cannot_fill_reserved_blocks)
fi
# Under software emulation every step is ~10x slower: the seeded model and the soak run a
# shorter form in the guest (the full forms run on the host), unless set by the caller.
export FUSEGATE_MODEL_STEPS=${FUSEGATE_MODEL_STEPS:-3000}
export FUSEGATE_SOAK_SECS=${FUSEGATE_SOAK_SECS:-10}
export FUSEGATE_ATTACK_ROUNDS=${FUSEGATE_ATTACK_ROUNDS:-3000}
log "guest forms: model $FUSEGATE_MODEL_STEPS steps per seed, soak $FUSEGATE_SOAK_SECS s, mixed-open race $FUSEGATE_ATTACK_ROUNDS rounds"
extra=(-- "${test_args[@]}")
rc=0
"$REPO_ROOT/android/adb/run-tests.sh" --daemon "$daemon" --results "$results" "${tests[@]}" \
    ${extra[@]+"${extra[@]}"} || rc=$?
tests_secs="$(elapsed "$t_tests")"

# Did any test report FUSE passthrough? (tests print it; libtest's own "test ..." lines excluded)
pt="$(cat "$results"/*.log 2>/dev/null | grep -i 'passthrough' | grep -vE '^test .* \.\.\. |^running |^---- ' | sort -u | head -n 5 || true)"
if [ -n "$pt" ]; then
    echo "passthrough (as reported by the tests):"
    sed 's/^/    /' <<<"$pt"
else
    echo "passthrough: no test reported it"
fi
plat="$(cat "$results"/*.log 2>/dev/null | grep -h '^fusegate platform: ' | sort -u || true)"
echo "${plat:-fusegate platform: (no test reported it)}"
echo "timings ($kernel, lower ${lower_fs:-tmpfs}): boot to adb ${boot_secs}s, tests ${tests_secs}s, total $(elapsed "$t_start")s"
if [ "$rc" != 0 ]; then
    log "arm64 tests FAILED (logs: $results)"
    exit "$rc"
fi
log "arm64 tests passed"
