#!/usr/bin/env bash
# The floor under every metadata row of run.sh: what one synchronous FUSE round trip costs on
# this machine, whatever the daemon does with it.
#
#   bench/floor.sh [--rounds N]
#
# As root, over ext4 on a loop device (as run.sh). Measures stat() of a name that does not exist, which every daemon below answers
# with ENOENT and no negative entry, so each call is one LOOKUP round trip: through
# fusegate over /dev/fuse read() and over io_uring, and through libfuse's hello_ll (which
# answers from memory and touches no disk: the protocol's cost alone), next to the same stat
# on the lower directory. It also times run.sh's create row twice, once as is and once with
# the caller kept on one CPU (taskset), and, where perf is installed, counts how often the
# caller moves to another CPU per create: over io_uring the kernel queues a request on the
# caller's CPU, and the caller's moves decide what a round trip costs.
# Rounds are interleaved; each cell is the median (min-max). Environment: FUSEGATE_BIN,
# HELLO_LL and PASSTHROUGH_HP (libfuse's hello_ll and passthrough_hp; default: both built with
# ../shared/peers/build-passthrough_hp.sh when its tools are installed), BENCH_TMP.
set -euo pipefail

ROUNDS=5
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="${2:?--rounds needs a number}"; shift ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "floor.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
fail() { printf 'floor.sh: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "must run as root (mounts)"
[ -c /dev/fuse ] || fail "/dev/fuse is missing"
REPO=$(cd "$(dirname "$0")/.." && pwd)
N=20000          # stats per timing
N_CREATE=3000    # creates per migration count

WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/fusegate-floor.XXXXXX")
declare -A PID=() MNT=()
URING_PARAM=/sys/module/fuse/parameters/enable_uring
URING_BEFORE=
LOOP=
cleanup() {
    set +e
    local t
    for t in "${!PID[@]}"; do kill -TERM "${PID[$t]}" 2>/dev/null; done
    for t in "${!PID[@]}"; do wait "${PID[$t]}" 2>/dev/null; done
    for t in "${!MNT[@]}"; do
        grep -q " ${MNT[$t]} " /proc/mounts && { umount "${MNT[$t]}" 2>/dev/null || umount -l "${MNT[$t]}"; }
    done
    [ -n "$URING_BEFORE" ] && echo "$URING_BEFORE" > "$URING_PARAM"
    if mountpoint -q "$WORK/lower" 2>/dev/null; then umount "$WORK/lower" || umount -l "$WORK/lower"; fi
    [ -n "$LOOP" ] && losetup -d "$LOOP"
    rm -rf "$WORK"
}
trap cleanup EXIT

FUSEGATED=${FUSEGATE_BIN:-}
if [ -z "$FUSEGATED" ]; then
    (cd "$REPO" && cargo build --release --quiet --bin fusegated) >&2
    FUSEGATED=$REPO/target/release/fusegated
fi
MB=$WORK/metabench
cc -O2 -o "$MB" "$REPO/bench/metabench.c" -lpthread
HELLO=${HELLO_LL:-}
PH=${PASSTHROUGH_HP:-}
if [ -z "$HELLO$PH" ] && ph=$("$REPO/../shared/peers/build-passthrough_hp.sh" 2>/dev/null); then
    PH=$ph
    build=$(dirname "$(dirname "$ph")")
    ninja -C "$build" example/hello_ll >/dev/null 2>&1 && HELLO=$build/example/hello_ll
fi

# The lower filesystem as in run.sh: ext4 on a loop device with direct I/O.
truncate -s 1G "$WORK/lower.img"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/lower.img"
LOOP=$(losetup --find --show --direct-io=on "$WORK/lower.img")
mkdir -p "$WORK/lower"
mount "$LOOP" "$WORK/lower"
wait_mount() { # target
    for _ in $(seq 100); do grep -q " ${MNT[$1]} " /proc/mounts && return 0; sleep 0.05; done
    fail "$1 did not mount"
}
start() { # target command...
    local t=$1; shift
    MNT[$t]=$WORK/$t; mkdir -p "${MNT[$t]}"
    "$@" "${MNT[$t]}" 2>"$WORK/$t.log" &
    PID[$t]=$!
    wait_mount "$t"
}
targets=(raw read)
MNT[raw]=$WORK/lower
start read env RUST_LOG=warn "$FUSEGATED" --lower "$WORK/lower" --io-uring off --no-supervise --mount
if [ -w "$URING_PARAM" ]; then
    URING_BEFORE=$(cat "$URING_PARAM")
    echo Y > "$URING_PARAM"
    start uring env RUST_LOG=warn "$FUSEGATED" --lower "$WORK/lower" --io-uring on --mount
    targets+=(uring)
fi
if [ -n "$HELLO" ]; then
    start hello "$HELLO" -f -s
    targets+=(hello)
fi
if [ -n "$PH" ] && [ -n "$URING_BEFORE" ]; then
    start phu "$PH" --foreground -o allow_other,io_uring "$WORK/lower"
    targets+=(phu)
fi

declare -A CELLS=() CREATE=() PINNED=() MIGR=()
for r in $(seq "$ROUNDS"); do
    for t in "${targets[@]}"; do
        # passthrough_hp caches negative entries: its misses are not round trips.
        [ "$t" = phu ] || CELLS[$t]+="$("$MB" missing "${MNT[$t]}/no-such-name" "$N") "
        [ "$t" = hello ] && continue    # hello_ll makes no files
        mkdir -p "${MNT[$t]}/c"
        CREATE[$t]+="$("$MB" create "${MNT[$t]}/c" "$N_CREATE") "
        "$MB" unlink "${MNT[$t]}/c" "$N_CREATE" >/dev/null
        # The same creates with the caller kept on one CPU: what the moves cost.
        PINNED[$t]+="$(taskset -c 0 "$MB" create "${MNT[$t]}/c" "$N_CREATE") "
        "$MB" unlink "${MNT[$t]}/c" "$N_CREATE" >/dev/null
        if command -v perf >/dev/null; then
            m=$(perf stat -x, -e cpu-migrations "$MB" create "${MNT[$t]}/c" "$N_CREATE" 2>&1 >/dev/null | cut -d, -f1)
            "$MB" unlink "${MNT[$t]}/c" "$N_CREATE" >/dev/null
            MIGR[$t]+="$(awk -v m="$m" -v n="$N_CREATE" 'BEGIN { printf "%.2f", m / n }') "
        fi
    done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR] }'; }
name() { case $1 in raw) echo "lower directory";; read) echo "fusegate read()";;
    uring) echo "fusegate io_uring";; hello) echo "libfuse hello_ll (read(), one thread, no disk)";;
    phu) echo "passthrough_hp io_uring";; esac; }
echo "## One FUSE round trip on this machine ($(nproc) CPUs, Linux $(uname -r), $ROUNDS rounds)"
echo
echo "| target | stat of a missing name (us/call) | create (us/file) | create, caller kept on CPU 0 (us/file) | caller's CPU moves per create |"
echo "|---|---|---|---|---|"
cell() { if [ -n "$1" ]; then echo "$1" | median; fi; }
for t in "${targets[@]}"; do
    echo "| $(name "$t") | $(cell "${CELLS[$t]:-}") | $(cell "${CREATE[$t]:-}") | $(cell "${PINNED[$t]:-}") | $(cell "${MIGR[$t]:-}") |"
done
[ -n "$HELLO" ] || echo "(hello_ll skipped: no HELLO_LL and the libfuse build tools are missing)"
