#!/usr/bin/env bash
# fusegate benchmarks: the raw lower filesystem, fusegate with passthrough (over /dev/fuse
# read() and over io_uring), fusegate without passthrough, bindfs (a common FUSE mirror) and
# libfuse's passthrough_hp (read() and io_uring), side by side in one run.
#
#   bench/run.sh [--quick] [--rounds N] [--out FILE]
#
# As root: makes an ext4 image on a loop device (the lower filesystem), mounts the three FUSE
# views over it, runs every workload against each target in turn (interleaved, for N rounds,
# the target order rotating each round), and prints Markdown tables of medians with min-max
# and the ratio to raw. Every mount, daemon and loop device is removed on exit, error or Ctrl-C.
#
# --quick: small sizes, one round, a minute or two: checks that everything runs, asserts no speed.
# Environment: FUSEGATE_BIN (use this fusegated instead of building one), BINDFS_OPTS (extra
# bindfs options, e.g. --multithreaded), BENCH_TMP (where the image goes; default /var/tmp),
# CANDIDATE_BIN (a second fusegated, e.g. a patched build, mounted with passthrough as an extra
# "candidate" column so a change is measured side by side with the current build in one run;
# CANDIDATE_ENV="VAR=value ..." is put in its environment, CANDIDATE_ARGS on its command line),
# PASSTHROUGH_HP (a libfuse passthrough_hp binary; default: built with
# ../shared/peers/build-passthrough_hp.sh from the repo root when its tools are installed).
# The io_uring columns need Linux 6.14+; fuse.enable_uring is set for the run and restored.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

MODE=full
ROUNDS=
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick ;;
        --rounds) ROUNDS="${2:?--rounds needs a number}"; shift ;;
        --out) OUT="${2:?--out needs a file}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (loop devices, mounts, drop_caches)"
[ -c /dev/fuse ] || fail "/dev/fuse is missing"
[ -w /proc/sys/vm/drop_caches ] || fail "/proc/sys/vm/drop_caches is not writable"

# ---- sizes -------------------------------------------------------------------------------
if [ "$MODE" = quick ]; then
    : "${ROUNDS:=1}"
    IMG_MIB=1024       # ext4 image
    SEQ_MIB=64         # sequential read/write file
    WARM_PASSES=2      # warm sequential reads read the file this many times in one timing
    RAND_MIB=64        # random-I/O file
    RR_COLD=4m         # fio bytes for cold random read
    RR_WARM=16m        # ... warm random read
    RW_BYTES=16m       # ... random write
    N_OPEN=2000        # open+close per thread
    N_STAT=20000       # stat of one file
    N_META=1000        # files for stat-all, create/unlink, readdir, ls -l
    MEM_DIRS=2         # memory test: MEM_DIRS x MEM_PER_DIR files looked up
    MEM_PER_DIR=5000
    POLICY_ITERS=200000
    RED_MIB=16         # location redaction: the photo read by a redacted and an unredacted app
    META_REPS=1        # metadata and warm-read workloads: best of this many back-to-back repetitions
else
    : "${ROUNDS:=7}"
    IMG_MIB=6144
    SEQ_MIB=1024
    WARM_PASSES=4
    RAND_MIB=1024
    RR_COLD=64m
    RR_WARM=256m
    RW_BYTES=256m
    N_OPEN=20000
    N_STAT=200000
    N_META=10000
    MEM_DIRS=10
    MEM_PER_DIR=10000
    POLICY_ITERS=5000000
    RED_MIB=256
    META_REPS=3
fi
MEM_FILES=$((MEM_DIRS * MEM_PER_DIR))
case "$ROUNDS" in ''|*[!0-9]*|0) fail "--rounds needs a positive number" ;; esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START_TIME=$(date +%s)
LOAD_START=$(cut -d" " -f1 /proc/loadavg)

# ---- tools -------------------------------------------------------------------------------
need_pkgs=()
command -v fio >/dev/null || need_pkgs+=(fio)
command -v bindfs >/dev/null || need_pkgs+=(bindfs)
command -v gcc >/dev/null || need_pkgs+=(gcc libc6-dev)
command -v mkfs.ext4 >/dev/null || need_pkgs+=(e2fsprogs)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]} (Debian packages)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2 \
        || fail "could not install ${need_pkgs[*]}; install them and retry"
fi
for t in losetup mountpoint awk; do command -v "$t" >/dev/null || fail "$t is missing"; done

# ---- state and cleanup ---------------------------------------------------------------------
WORK=
LOOP=
URING_PARAM=/sys/module/fuse/parameters/enable_uring
URING_BEFORE=
NOTES=()               # printed under the table: columns skipped and why
declare -A PID=()      # target -> daemon pid
declare -A MNT=()      # target -> mount point
CLEANED=0

cleanup() {
    local rc=$?
    [ "$CLEANED" = 1 ] && return
    CLEANED=1
    trap '' INT TERM
    set +e
    local t
    for t in "${!PID[@]}"; do
        kill -TERM "${PID[$t]}" 2>/dev/null   # fusegated unmounts itself on TERM
    done
    for t in "${!PID[@]}"; do
        for _ in $(seq 50); do kill -0 "${PID[$t]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${PID[$t]}" 2>/dev/null
        wait "${PID[$t]}" 2>/dev/null
    done
    for t in "${!MNT[@]}"; do
        if mountpoint -q "${MNT[$t]}" 2>/dev/null || grep -q " ${MNT[$t]} " /proc/mounts; then
            umount "${MNT[$t]}" 2>/dev/null || umount -l "${MNT[$t]}" 2>/dev/null
        fi
    done
    if [ -n "$WORK" ] && mountpoint -q "$WORK/lower" 2>/dev/null; then
        umount "$WORK/lower" 2>/dev/null || umount -l "$WORK/lower"
    fi
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
    [ -n "$URING_BEFORE" ] && echo "$URING_BEFORE" > "$URING_PARAM" 2>/dev/null
    [ -n "$WORK" ] && rm -rf "$WORK"
    if [ "$rc" != 0 ]; then log "stopped (exit $rc); every mount, daemon and loop device was removed"; fi
    return "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ---- build -------------------------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/fusegate-bench.XXXXXX")
if [ -n "${FUSEGATE_BIN:-}" ]; then
    FUSEGATED=$FUSEGATE_BIN
    POLICY_BENCH=${POLICY_BENCH_BIN:-}
    REDACT_BENCH=${REDACT_BENCH_BIN:-}
else
    log "cargo build --release (fusegated, examples/policy_bench, view_bench, policy_change_bench, redact_bench)"
    (cd "$REPO" && cargo build --release --quiet --bin fusegated --example policy_bench --example view_bench --example policy_change_bench --example redact_bench) >&2 \
        || fail "cargo build --release failed"
    FUSEGATED=$REPO/target/release/fusegated
    POLICY_BENCH=$REPO/target/release/examples/policy_bench
    VIEW_BENCH=$REPO/target/release/examples/view_bench
    POLICY_CHANGE_BENCH=$REPO/target/release/examples/policy_change_bench
    REDACT_BENCH=$REPO/target/release/examples/redact_bench
fi
[ -x "$FUSEGATED" ] || fail "no fusegated at $FUSEGATED"
# libfuse's passthrough_hp, the strongest peer: built by the shared script when its tools exist.
PH=${PASSTHROUGH_HP:-}
PH_SCRIPT=$REPO/../shared/peers/build-passthrough_hp.sh
# A git worktree under /work/wt/<name> has the shared directory one level further up.
[ -x "$PH_SCRIPT" ] || [ ! -x "$REPO/../../shared/peers/build-passthrough_hp.sh" ] \
    || PH_SCRIPT=$REPO/../../shared/peers/build-passthrough_hp.sh
if [ -z "$PH" ] && [ -x "$PH_SCRIPT" ]; then
    if command -v meson >/dev/null && command -v ninja >/dev/null && command -v g++ >/dev/null \
        && pkg-config --exists liburing numa 2>/dev/null; then
        log "building libfuse passthrough_hp ($PH_SCRIPT)"
        PH=$("$PH_SCRIPT" 2>&1 | tail -1) || PH=
        [ -x "$PH" ] || { NOTES+=("passthrough_hp: the build failed ($PH)"); PH=; }
    else
        NOTES+=("passthrough_hp columns skipped: meson, ninja-build, g++, liburing-dev and libnuma-dev are needed to build it (scripts/install-deps.sh installs them)")
    fi
elif [ -z "$PH" ]; then
    NOTES+=("passthrough_hp columns skipped: no $PH_SCRIPT (set PASSTHROUGH_HP to a binary)")
fi
URING=0
if [ -w "$URING_PARAM" ]; then
    URING_BEFORE=$(cat "$URING_PARAM")
    echo Y > "$URING_PARAM" && URING=1
else
    NOTES+=("io_uring columns skipped: this kernel has no FUSE over io_uring ($URING_PARAM)")
fi
MB=$WORK/metabench
gcc -O2 -Wall -pthread -o "$MB" "$REPO/bench/metabench.c" || fail "compiling bench/metabench.c failed"

# ---- lower filesystem ---------------------------------------------------------------------
log "lower: ${IMG_MIB} MiB ext4 image on a loop device (direct I/O, so the image file's page cache never doubles the lower one)"
truncate -s "${IMG_MIB}M" "$WORK/lower.img"
# Initialise inode tables and journal now: ext4lazyinit would otherwise write during the runs.
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/lower.img"
LOOP=$(losetup --find --show --direct-io=on "$WORK/lower.img")
mkdir -p "$WORK/lower"
mount "$LOOP" "$WORK/lower"
LOWER=$WORK/lower

log "filling the lower tree (data files, ${N_META}-entry directory, ${MEM_FILES} files for the memory test)"
mkdir -p "$LOWER/data" "$LOWER/meta" "$LOWER/mem"
"$MB" seqwrite "$LOWER/data/seq" "$SEQ_MIB" 1 >/dev/null
"$MB" seqwrite "$LOWER/data/rand" "$RAND_MIB" 1 >/dev/null
for f in oc oc.0 oc.1; do : > "$LOWER/data/$f"; done
"$MB" mkfiles "$LOWER/meta/ten" "$N_META" >/dev/null
for d in $(seq 0 $((MEM_DIRS - 1))); do "$MB" mkfiles "$LOWER/mem/d$d" "$MEM_PER_DIR" >/dev/null; done
TARGETS=(raw pt nopt bindfs)
DAEMONS=(pt nopt bindfs)
[ "$URING" = 1 ] && { TARGETS+=(ptu); DAEMONS+=(ptu); }
# passthrough_hp holds an fd per known inode: the 100,000-file memory test would exceed the
# open-file limit, so it is not among the DAEMONS measured there.
if [ -n "$PH" ]; then
    TARGETS+=(ph)
    [ "$URING" = 1 ] && TARGETS+=(phu)
fi
if [ -n "${CANDIDATE_BIN:-}" ]; then
    [ -x "$CANDIDATE_BIN" ] || fail "CANDIDATE_BIN $CANDIDATE_BIN is not executable"
    TARGETS+=(cand); DAEMONS+=(cand)
fi
for t in "${TARGETS[@]}"; do mkdir -p "$LOWER/meta/new-$t"; done
sync

# ---- mounts -------------------------------------------------------------------------------
MNT[raw]=$LOWER
wait_log() { # pid file pattern what
    for _ in $(seq 100); do
        grep -q "$3" "$2" 2>/dev/null && return 0
        kill -0 "$1" 2>/dev/null || { cat "$2" >&2; fail "$4 exited before mounting"; }
        sleep 0.1
    done
    cat "$2" >&2; fail "$4 did not mount within 10 s"
}
start_fusegate() { # target binary extra-args...
    local t=$1 bin=$2; shift 2
    mkdir -p "$WORK/$t"
    # shellcheck disable=SC2086
    env ${ENV_EXTRA:-} RUST_LOG=info "$bin" --lower "$LOWER" --mount "$WORK/$t" "$@" 2>"$WORK/$t.log" &
    PID[$t]=$!
    MNT[$t]=$WORK/$t
    wait_log "${PID[$t]}" "$WORK/$t.log" "serving" "fusegated ($t)"
}
start_fusegate pt "$FUSEGATED" --io-uring off
grep -q "data path: passthrough" "$WORK/pt.log" \
    || { cat "$WORK/pt.log" >&2; fail "fusegated did not enable passthrough (needs Linux 6.9+)"; }
start_fusegate nopt "$FUSEGATED" --no-passthrough --io-uring off
if [ "$URING" = 1 ]; then
    start_fusegate ptu "$FUSEGATED" --io-uring on
    grep -q "transport: io_uring" "$WORK/ptu.log" || { cat "$WORK/ptu.log" >&2; fail "fusegated --io-uring on did not serve over io_uring"; }
fi
start_passthrough_hp() { # target extra -o options
    local t=$1
    mkdir -p "$WORK/$t"
    "$PH" --foreground -o "allow_other${2:+,$2}" "$LOWER" "$WORK/$t" >"$WORK/$t.log" 2>&1 &
    PID[$t]=$!
    MNT[$t]=$WORK/$t
    for _ in $(seq 100); do grep -q " $WORK/$t " /proc/mounts && return 0; sleep 0.1; done
    cat "$WORK/$t.log" >&2; fail "passthrough_hp ($t) did not mount"
}
if [ -n "$PH" ]; then
    start_passthrough_hp ph
    [ "$URING" = 1 ] && start_passthrough_hp phu io_uring
fi
grep -q "data path: userspace" "$WORK/nopt.log" || fail "fusegated --no-passthrough is not in userspace mode"
mkdir -p "$WORK/bindfs"
# shellcheck disable=SC2086
bindfs -f ${BINDFS_OPTS:-} "$LOWER" "$WORK/bindfs" 2>"$WORK/bindfs.log" &
PID[bindfs]=$!
MNT[bindfs]=$WORK/bindfs
for _ in $(seq 100); do grep -q " $WORK/bindfs " /proc/mounts && break; sleep 0.1; done
grep -q " $WORK/bindfs " /proc/mounts || { cat "$WORK/bindfs.log" >&2; fail "bindfs did not mount"; }
if [ -n "${CANDIDATE_BIN:-}" ]; then
    ENV_EXTRA=${CANDIDATE_ENV:-} start_fusegate cand "$CANDIDATE_BIN" ${CANDIDATE_ARGS:-}
    grep -q "data path: passthrough" "$WORK/cand.log" || fail "the candidate fusegated did not enable passthrough"
    log "mounted: candidate $CANDIDATE_BIN ${CANDIDATE_ENV:-} ($WORK/cand)"
fi
log "mounted: ${TARGETS[*]} (under $WORK)"

# ---- location redaction -------------------------------------------------------------------
# A photo of RED_MIB MiB whose EXIF has GPS and whose XMP has a city (a small real JPEG made by
# ImageMagick and exiftool, then RED_MIB MiB of data after it), and the same without location,
# served by one more fusegated (passthrough on) with a policy: uid 10057 may read images but
# not their location (redacted: userspace, zeros in the ranges), uid 10061 may read both (the
# located photo in userspace, the plain one by passthrough).
RED=0
RED_APPS=(10057 10061)
if command -v exiftool >/dev/null && command -v convert >/dev/null && command -v setpriv >/dev/null; then
    mkdir -p "$LOWER/DCIM/Camera"
    convert -size 64x48 xc:gray +noise Random "$WORK/red-head.jpg"
    cp "$WORK/red-head.jpg" "$WORK/red-located.jpg"
    exiftool -q -q -overwrite_original -GPSLatitude=48.8577 -GPSLatitudeRef=N -GPSLongitude=2.2945 \
        -GPSLongitudeRef=E -XMP-photoshop:City=Paris "$WORK/red-located.jpg"
    head -c "${RED_MIB}M" /dev/urandom > "$WORK/red-body"
    cat "$WORK/red-located.jpg" "$WORK/red-body" > "$LOWER/DCIM/Camera/located.jpg"
    cat "$WORK/red-head.jpg" "$WORK/red-body" > "$LOWER/DCIM/Camera/plain.jpg"
    rm -f "$WORK/red-body"
    cat > "$WORK/red-policy.toml" <<'TOML'
[[app]]
uid = 10057
packages = ["bench.redacted"]
permissions = ["read_images"]

[[app]]
uid = 10061
packages = ["bench.located"]
permissions = ["read_images", "access_media_location"]
TOML
    # The apps must reach the mount point: WORK (mktemp, 0700) may be searched, not listed.
    chmod 711 "$WORK"
    start_fusegate red "$FUSEGATED" --io-uring off --policy "$WORK/red-policy.toml"
    RED=1
else
    NOTES+=("redaction rows skipped: exiftool, ImageMagick and setpriv are needed (scripts/install-deps.sh installs them)")
fi
as_app() { setpriv --reuid="$1" --regid="$1" --clear-groups "${@:2}"; }
redaction_round() { # round -> rows red_<read> in RES
    local r=${MNT[red]}/DCIM/Camera spec row uid file v
    for spec in "redacted 10057 located" "userspace 10061 located" "passthrough 10061 plain"; do
        read -r row uid file <<< "$spec"
        as_app "$uid" "$MB" seqread "$r/$file.jpg" 1 1 >/dev/null || return 1
        v=$(best hi as_app "$uid" "$MB" seqread "$r/$file.jpg" 1 "$WARM_PASSES") || return 1
        printf '%s\tred_%s\tred\t%s\n' "$1" "$row" "$v" >> "$RES"
    done
}

# ---- workloads ----------------------------------------------------------------------------
drop() { sync; echo "$1" > /proc/sys/vm/drop_caches; }
fio_run() { # field file fio-args... -> IOPS (terse field 8: read IOPS, 49: write IOPS)
    local field=$1 file=$2; shift 2
    fio --name=bench --filename="$file" --bs=4k --ioengine=psync --invalidate=0 --minimal "$@" \
        | awk -F';' -v f="$field" '{print $f}'
}

# id|unit|better(hi/lo)|description
WORKLOADS=(
    "seqread_cold|MB/s|hi|sequential read ${SEQ_MIB} MiB, cold (drop_caches 3)"
    "seqread_warm|MB/s|hi|sequential read ${SEQ_MIB} MiB, warm (x${WARM_PASSES})"
    "seqread_par2|MB/s|hi|sequential read ${SEQ_MIB} MiB warm (x${WARM_PASSES}), 2 threads (halves)"
    "seqwrite|MB/s|hi|sequential write ${SEQ_MIB} MiB, buffered (incl. close)"
    "seqwrite_fsync|MB/s|hi|sequential write ${SEQ_MIB} MiB + fsync"
    "randread_cold|IOPS|hi|4 KiB random read (fio), cold, ${RR_COLD}B of ${RAND_MIB} MiB"
    "randread_cold_nohint|IOPS|hi|same, fio --fadvise_hint=0 (readahead on everywhere)"
    "randread_warm|IOPS|hi|4 KiB random read (fio), warm, ${RR_WARM}B"
    "randwrite|IOPS|hi|4 KiB random write (fio), buffered, ${RW_BYTES}B"
    "openclose|us/op|lo|open+close of one file"
    "openclose_par2|us/op|lo|open+close, 2 threads (own file each; wall time / all ops)"
    "stat|us/op|lo|stat of one file"
    "statall_cold|us/file|lo|stat of ${N_META} files not yet looked up (drop_caches 2)"
    "create|us/file|lo|create ${N_META} empty files (open O_CREAT|O_EXCL + close)"
    "unlink|us/file|lo|unlink ${N_META} files"
    "readdir_first|ms|lo|readdir of a ${N_META}-entry directory, first listing (drop_caches 2)"
    "readdir_cached|ms|lo|readdir of the same directory again"
    "lsl_first|ms|lo|readdir + stat of each entry (ls -l), first (drop_caches 2)"
    "lsl_coreutils|ms|lo|coreutils ls -l of the ${N_META}-entry directory, cold dentries (drop_caches 2)"
)

# Best of META_REPS back-to-back runs of a short workload: on a shared machine a burst of other
# work inflates single samples; the best one is the closest to the intrinsic cost.
best() { # lo|hi command... -> the lowest (lo) or highest (hi) of its outputs
    local better=$1 i v b=""; shift
    for i in $(seq "$META_REPS"); do
        v=$("$@") || return 1
        b=$(awk -v a="$b" -v v="$v" -v d="$better" 'BEGIN { if (a == "" || (d == "lo" ? v < a : v > a)) print v; else print a }')
    done
    echo "$b"
}
cold() { drop 2; "$MB" "$@"; }
ls_l_cold() { # dir -> ms of the real `ls -l` (xattr queries included), cold dentries
    local t0 t1
    drop 2
    t0=$(date +%s%N); ls -l "$1" >/dev/null || return 1; t1=$(date +%s%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) / 1e6 }'
}
# Create and unlink start with the kernel's inode cache dropped: passthrough_hp keeps an fd per
# inode the kernel knows, and 10,000 earlier lookups plus 10,000 new files exceed the fd limit.
create_once_v() { local v; drop 2; v=$("$MB" create "$1" "$N_META") && "$MB" unlink "$1" "$N_META" >/dev/null && echo "$v"; }
unlink_once() { drop 2; "$MB" create "$1" "$N_META" >/dev/null && "$MB" unlink "$1" "$N_META"; }

measure() { # target workload -> one number on stdout
    local t=$1 w=$2 r=${MNT[$1]}
    case "$w" in
        seqread_cold) drop 3; "$MB" seqread "$r/data/seq" 1 1 ;;
        seqread_warm) "$MB" seqread "$r/data/seq" 1 1 >/dev/null; best hi "$MB" seqread "$r/data/seq" 1 "$WARM_PASSES" ;;
        seqread_par2) "$MB" seqread "$r/data/seq" 2 1 >/dev/null; best hi "$MB" seqread "$r/data/seq" 2 "$WARM_PASSES" ;;
        seqwrite) drop 1; "$MB" seqwrite "$r/data/w" "$SEQ_MIB" 0; rm -f "$r/data/w"; sync ;;
        seqwrite_fsync) drop 1; "$MB" seqwrite "$r/data/w" "$SEQ_MIB" 1; rm -f "$r/data/w"; sync ;;
        randread_cold) drop 3; fio_run 8 "$r/data/rand" --rw=randread --io_size="$RR_COLD" ;;
        randread_cold_nohint) drop 3; fio_run 8 "$r/data/rand" --rw=randread --io_size="$RR_COLD" --fadvise_hint=0 ;;
        randread_warm) "$MB" seqread "$r/data/rand" 1 1 >/dev/null
                  best hi fio_run 8 "$r/data/rand" --rw=randread --io_size="$RR_WARM" ;;
        randwrite) fio_run 49 "$r/data/rand" --rw=randwrite --io_size="$RW_BYTES"; sync ;;
        openclose) best lo "$MB" openclose "$r/data/oc" "$N_OPEN" 1 ;;
        openclose_par2) best lo "$MB" openclose "$r/data/oc" "$N_OPEN" 2 ;;
        stat) best lo "$MB" stat "$r/data/oc" "$N_STAT" ;;
        statall_cold) best lo cold statall "$r/meta/ten" "$N_META" ;;
        create) best lo create_once_v "$r/meta/new-$t" ;;
        unlink) best lo unlink_once "$r/meta/new-$t" ;;
        readdir_first) best lo cold readdir "$r/meta/ten" "$N_META" ;;
        readdir_cached) "$MB" readdir "$r/meta/ten" "$N_META" >/dev/null; best lo "$MB" readdir "$r/meta/ten" "$N_META" ;;
        lsl_first) best lo cold lsl "$r/meta/ten" "$N_META" ;;
        lsl_coreutils) best lo ls_l_cold "$r/meta/ten" ;;
        *) fail "unknown workload $w" ;;
    esac
}

fusegate_nodes() { # target -> the "nodes N" of a SIGUSR1 stats line, or -
    local t=$1 before
    [ "$t" = pt ] || [ "$t" = nopt ] || [ "$t" = ptu ] || [ "$t" = cand ] || { echo -; return; }
    before=$(grep -c "stats:" "$WORK/$t.log" || true)
    kill -USR1 "${PID[$t]}"
    for _ in $(seq 50); do
        [ "$(grep -c "stats:" "$WORK/$t.log" || true)" -gt "$before" ] && break
        sleep 0.1
    done
    grep "stats:" "$WORK/$t.log" | tail -1 | sed -n 's/.*; nodes \([0-9]*\);.*/\1/p'
}

# The process that serves a target: fusegated's supervisor (the pid we started) runs its server
# as its one child; other daemons serve in the pid we started.
server_pid() {
    local p=${PID[$1]} c
    c=$(awk '{print $1}' "/proc/$p/task/$p/children" 2>/dev/null || true)
    echo "${c:-$p}"
}

memory() { # target -> rows "mem_<what> value" for the resident-memory table
    local t=$1 r=${MNT[$1]} d
    drop 2; sleep 1
    echo "rss_start $("$MB" rss "$(server_pid "$t")")"
    for d in $(seq 0 $((MEM_DIRS - 1))); do "$MB" statall "$r/mem/d$d" "$MEM_PER_DIR" >/dev/null; done
    echo "rss_looked_up $("$MB" rss "$(server_pid "$t")")"
    echo "nodes_looked_up $(fusegate_nodes "$t")"
    drop 2; sleep 2
    echo "rss_forgotten $("$MB" rss "$(server_pid "$t")")"
    echo "nodes_forgotten $(fusegate_nodes "$t")"
}

RES=$WORK/results.tsv      # round workload target value
: > "$RES"
for t in "${DAEMONS[@]}"; do printf "0\tmem_rss_fresh\t%s\t%s\n" "$t" "$("$MB" rss "$(server_pid "$t")")" >> "$RES"; done
log "$MODE mode: $ROUNDS round(s) x ${#WORKLOADS[@]} workloads x ${#TARGETS[@]} targets, interleaved"
for round in $(seq 1 "$ROUNDS"); do
    # Rotate the target order each round so that no target always runs first or last.
    order=()
    for i in "${!TARGETS[@]}"; do order+=("${TARGETS[$(( (i + round - 1) % ${#TARGETS[@]} ))]}"); done
    log "round $round/$ROUNDS (order: ${order[*]})"
    for spec in "${WORKLOADS[@]}"; do
        w=${spec%%|*}
        for t in "${order[@]}"; do
            v=$(measure "$t" "$w") || fail "workload $w on $t failed"
            case "$v" in ''|*[!0-9.]*) fail "workload $w on $t gave no number ('$v')" ;; esac
            printf '%s\t%s\t%s\t%s\n' "$round" "$w" "$t" "$v" >> "$RES"
        done
    done
    if [ -n "$POLICY_BENCH" ] && [ -x "$POLICY_BENCH" ]; then
        "$POLICY_BENCH" "$POLICY_ITERS" | while read -r k v; do
            printf '%s\tpolicy_%s\tlib\t%s\n' "$round" "$k" "$v" >> "$RES"
        done
    fi
    if [ "$RED" = 1 ]; then redaction_round "$round" || fail "the redaction reads failed"; fi
done
if [ "$RED" = 1 ]; then
    # The redacted reads must really have been redacted: the daemon counted zeroed bytes.
    kill -USR1 "${PID[red]}"
    for _ in $(seq 50); do grep -q "stats:" "$WORK/red.log" && break; sleep 0.1; done
    RED_STATS=$(grep "stats:" "$WORK/red.log" | tail -1)
    RED_ZEROED=$(sed -n 's/.*redaction: \([0-9]*\) bytes zeroed.*/\1/p' <<< "$RED_STATS")
    [ "${RED_ZEROED:-0}" -gt 0 ] || fail "the redacted reads zeroed nothing: $RED_STATS"
fi
# Memory once, after every round: the daemons have then served every workload.
log "memory: stat of ${MEM_FILES} files through each mount, then drop_caches 2"
for t in "${DAEMONS[@]}"; do
    memory "$t" | while read -r k v; do printf "0\tmem_%s\t%s\t%s\n" "$k" "$t" "$v" >> "$RES"; done
done

# ---- report -------------------------------------------------------------------------------
ELAPSED=$(( $(date +%s) - START_TIME ))
label() { case $1 in raw) echo "raw ext4";; pt) echo "fusegate passthrough";; nopt) echo "fusegate no-passthrough";; bindfs) echo bindfs;;
    ptu) echo "fusegate passthrough io_uring";; ph) echo "passthrough_hp";; phu) echo "passthrough_hp io_uring";; cand) echo "candidate (passthrough)";; esac; }
stats_of() { # workload target -> "median min max n"
    awk -F'\t' -v w="$1" -v t="$2" '$2==w && $3==t {print $4}' "$RES" | sort -g \
        | awk '{a[NR]=$1} END {if (NR==0) {print "- - - 0"; exit}
               m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; print m, a[1], a[NR], NR}'
}
fmt() { awk -v x="$1" 'BEGIN { if (x=="-") {print "-"; exit}
        if (x == int(x) || x>=1000) printf "%.0f", x; else if (x>=100) printf "%.1f", x; else if (x>=10) printf "%.2f", x; else printf "%.3f", x }'; }
ratio() { # better value raw -> speed relative to raw (>1: faster than raw)
    awk -v b="$1" -v v="$2" -v r="$3" 'BEGIN { if (v<=0 || r<=0) {print "-"; exit}
        printf "%.2f", (b=="hi") ? v/r : r/v }'
}
report() {
    local spec w unit better desc t raw s med lo hi n cell
    echo "## fusegate benchmark ($MODE mode, $ROUNDS round(s))"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); fusegate $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r)"
    echo "- lower: ext4 on a loop device (direct I/O) backed by a file on $(df --output=source "${BENCH_TMP:-/var/tmp}" | tail -1); fusegate $("$FUSEGATED" --help >/dev/null 2>&1 && echo 'release build'), default --threads (half the CPUs, 1 to 4) and --cache-timeout (5 s); bindfs $(bindfs --version 2>/dev/null | head -1 | awk '{print $2}') ${BINDFS_OPTS:-with default options (single-threaded)}"
    echo "- load average (1 min) at start $LOAD_START, at end $(cut -d" " -f1 /proc/loadavg): other work on this machine (a shared VM) adds noise; min-max shows how much"
    [ -n "${CANDIDATE_BIN:-}" ] && echo "- candidate column: $CANDIDATE_BIN ${CANDIDATE_ENV:-}"
    local n; for n in "${NOTES[@]}"; do echo "- note: $n"; done
    echo "- fusegate passthrough / no-passthrough serve over /dev/fuse read() (--io-uring off); the io_uring columns use FUSE over io_uring (fusegate --io-uring on, passthrough_hp -o io_uring), both with passthrough"
    echo "- each cell: median (min-max) over the rounds (metadata and warm-read workloads: each round takes the best of $META_REPS back-to-back runs), then ×speed relative to raw (>1 faster, <1 slower; for times it is raw/time)"
    echo
    printf "| workload | unit "; for t in "${TARGETS[@]}"; do printf "| %s " "$(label "$t")"; done; echo "|"
    printf "|---|---"; for t in "${TARGETS[@]}"; do printf "|---"; done; echo "|"
    for spec in "${WORKLOADS[@]}"; do
        IFS='|' read -r w unit better desc <<< "$spec"
        raw=$(stats_of "$w" raw | awk '{print $1}')
        printf '| %s | %s ' "$desc" "$unit$( [ "$better" = hi ] && echo ' ↑' || echo ' ↓')"
        for t in "${TARGETS[@]}"; do
            read -r med lo hi n <<< "$(stats_of "$w" "$t")"
            cell="$(fmt "$med") ($(fmt "$lo")-$(fmt "$hi"))"
            [ "$t" != raw ] && cell="$cell ×$(ratio "$better" "$med" "$raw")"
            printf '| %s ' "$cell"
        done
        echo '|'
    done
    echo
    echo "Resident memory of the daemon (KiB, VmRSS) after looking up ${MEM_FILES} files with stat(), and after the kernel forgot them (drop_caches 2); 'nodes' is fusegate's node count from its SIGUSR1 stats."
    echo
    echo "| daemon | just mounted | after all rounds | after ${MEM_FILES} lookups | after forget | nodes after lookups | nodes after forget |"
    echo "|---|---|---|---|---|---|---|"
    for t in "${DAEMONS[@]}"; do
        printf "| %s " "$(label "$t")"
        for k in rss_fresh rss_start rss_looked_up rss_forgotten nodes_looked_up nodes_forgotten; do
            read -r med lo hi n <<< "$(stats_of "mem_$k" "$t")"
            if [ "$n" -gt 1 ] && [ "$lo" != "$hi" ]; then printf '| %s (%s-%s) ' "$(fmt "$med")" "$(fmt "$lo")" "$(fmt "$hi")"; else printf '| %s ' "$(fmt "$med")"; fi
        done
        echo '|'
    done
    if grep -q 'policy_' "$RES"; then
        echo
        echo "Policy decision cost from the library (examples/policy_bench.rs, ns per decision, ${POLICY_ITERS} decisions per round):"
        echo
        echo "| variant | ns |"
        echo "|---|---|"
        for k in decide_warm decide_fresh_snapshot uncached_check cached_lookup; do
            read -r med lo hi n <<< "$(stats_of "policy_$k" lib)"
            printf '| %s | %s (%s-%s) |\n' "$k" "$(fmt "$med")" "$(fmt "$lo")" "$(fmt "$hi")"
        done
    fi
    if [ -n "${VIEW_BENCH:-}" ] && [ -x "$VIEW_BENCH" ]; then
        echo
        echo "Decisions inside the storage view, in process (examples/view_bench.rs; a directory-rename decision over 10,000 app-owned files, by the app against root, which skips the walk):"
        echo
        echo "| measure | value |"
        echo "|---|---|"
        "$VIEW_BENCH" 10000 | while read -r k v rest; do printf '| %s | %s %s |\n' "$k" "$v" "$rest"; done
    fi
    if [ -n "${POLICY_CHANGE_BENCH:-}" ] && [ -x "$POLICY_CHANGE_BENCH" ]; then
        local nodes=1000000
        [ "$MODE" = quick ] && nodes=100000
        "$POLICY_CHANGE_BENCH" "$nodes" > "$WORK/policy_change.txt"
        echo
        echo "Policy changes, in process (examples/policy_change_bench.rs; $nodes known nodes; a change includes the node-table work of its kernel invalidation):"
        echo
        echo "| measure | value |"
        echo "|---|---|"
        while read -r k v rest; do printf '| %s | %s %s |\n' "$k" "$v" "$rest"; done < "$WORK/policy_change.txt"
    fi
    redaction_report
    echo
    targets_report
    echo
    echo "Total run time: ${ELAPSED} s."
}

redaction_report() {
    local k desc med lo hi n base
    if [ "$RED" = 1 ]; then
        echo
        echo "Location redaction: a ${RED_MIB} MiB JPEG (EXIF GPS, XMP city) read warm with 1 MiB preads (x${WARM_PASSES}) through a fusegate mount (passthrough on), by two apps; median (min-max) over the rounds. The daemon zeroed ${RED_ZEROED} bytes in all."
        echo
        echo "| read | MB/s | vs. userspace original |"
        echo "|---|---|---|"
        base=$(med_of red_userspace red)
        for k in "redacted|redacted: app without access_media_location (userspace, zeros in the ranges)" \
                 "userspace|original, same file: app with access_media_location (userspace: the file has location)" \
                 "passthrough|original, same size without location (passthrough)"; do
            desc=${k#*|}; k=${k%%|*}
            read -r med lo hi n <<< "$(stats_of "red_$k" red)"
            printf '| %s | %s (%s-%s) | ×%s |\n' "$desc" "$(fmt "$med")" "$(fmt "$lo")" "$(fmt "$hi")" "$(ratio hi "$med" "$base")"
        done
    fi
    if [ -n "${REDACT_BENCH:-}" ] && [ -x "$REDACT_BENCH" ]; then
        echo
        echo "Location range finder, from the library (examples/redact_bench.rs; per file version, paid by its first open, later opens hit the cache; zero_ranges per 128 KiB read):"
        echo
        echo "| measure | value |"
        echo "|---|---|"
        local files=()
        if [ "$MODE" = quick ]; then
            # Small files: the default ones (a 12-megapixel JPEG, a 10 s video) take a while to make.
            convert -size 640x480 plasma: "$WORK/rb.jpg" && exiftool -q -q -overwrite_original -GPSLatitude=1 "$WORK/rb.jpg" \
                && convert -size 320x240 plasma: "PNG24:$WORK/rb.png" && heif-enc -q 60 -o "$WORK/rb.heic" "$WORK/rb.png" >/dev/null \
                && exiftool -q -q -overwrite_original -GPSLatitude=1 "$WORK/rb.heic" \
                && ffmpeg -v error -f lavfi -i testsrc=duration=1:size=160x120:rate=10 -pix_fmt yuv420p \
                    -metadata location=+48.8577+002.2945/ -y "$WORK/rb.mp4" \
                && files=("$WORK/rb.jpg" "$WORK/rb.heic" "$WORK/rb.mp4")
        fi
        "$REDACT_BENCH" "${files[@]}" | while read -r k v rest; do printf '| %s | %s %s |\n' "$k" "$v" "$rest"; done
    fi
}
med_of() { stats_of "$1" "$2" | awk '{print $1}'; }
check() { # label ok(1/0) detail
    printf '| %s | %s | %s |\n' "$1" "$( [ "$2" = 1 ] && echo met || echo '**missed**')" "$3"
}
targets_report() {
    local w v raw b f ok spec better
    local FG=(pt nopt) PTS=(pt)
    [[ " ${TARGETS[*]} " == *" ptu "* ]] && FG+=(ptu) && PTS+=(ptu)
    [ -n "${CANDIDATE_BIN:-}" ] && FG+=(cand) && PTS+=(cand)
    [ "$MODE" = quick ] && { echo "Quick mode: no target is judged (sizes too small for meaningful ratios)."; return; }
    echo "Targets (ratios of medians from this run):"
    echo
    echo "| target | verdict | measured |"
    echo "|---|---|---|"
    for t in "${PTS[@]}"; do
    for w in seqread_cold seqread_warm seqwrite seqwrite_fsync randread_cold randread_cold_nohint randread_warm randwrite; do
        v=$(med_of "$w" "$t"); raw=$(med_of "$w" raw)
        ok=$(awk -v v="$v" -v r="$raw" 'BEGIN{print (v >= 0.95*r) ? 1 : 0}')
        note=""
        if [ "$w" = randread_cold ]; then
            if awk -v v="$v" -v r="$raw" 'BEGIN{exit !(v > 1.05*r)}'; then
                note=" (faster than raw is NOT a win: fio's FADV_RANDOM reaches the FUSE file, not the lower one, so ext4 still reads ahead)"
            elif [ "$ok" = 0 ]; then
                note=" (fio's FADV_RANDOM reaches the FUSE file, not the lower one: each cold miss still reads ahead on the lower device; see the fadvise_hint=0 row)"
            fi
        fi
        check "$t $w >= 0.95 x raw" "$ok" "$(ratio hi "$v" "$raw") x raw$note"
    done
    done
    for w in openclose statall_cold; do
        for t in "${FG[@]}"; do
            f=$(med_of "$w" "$t"); b=$(med_of "$w" bindfs)
            ok=$(awk -v f="$f" -v b="$b" 'BEGIN{print (b >= 1.5*f) ? 1 : 0}')
            check "$t $w >= 1.5x faster than bindfs" "$ok" "$(ratio lo "$f" "$b")x"
        done
    done
    for t in "${FG[@]}"; do
        f=$(med_of lsl_first "$t"); b=$(med_of lsl_first bindfs)
        ok=$(awk -v f="$f" -v b="$b" 'BEGIN{print (3*f <= b) ? 1 : 0}')
        check "$t first ls -l <= 1/3 of bindfs time" "$ok" "$(awk -v f="$f" -v b="$b" 'BEGIN{printf "%.2f", f/b}') of bindfs"
    done
    for w in openclose_par2 stat create unlink readdir_first readdir_cached; do
        for t in "${FG[@]}"; do
            f=$(med_of "$w" "$t"); b=$(med_of "$w" bindfs)
            ok=$(awk -v f="$f" -v b="$b" 'BEGIN{print (f <= b) ? 1 : 0}')
            check "$t $w at least as fast as bindfs" "$ok" "$(ratio lo "$f" "$b")x"
        done
    done
    local phs=() p best_ph fg
    for p in ph phu; do [[ " ${TARGETS[*]} " == *" $p "* ]] && phs+=("$p"); done
    if [ ${#phs[@]} -gt 0 ]; then
        for w in openclose openclose_par2 statall_cold create unlink lsl_first lsl_coreutils; do
            best_ph=$(for p in "${phs[@]}"; do med_of "$w" "$p"; done | sort -g | head -1)
            for t in pt ptu; do
                [[ " ${TARGETS[*]} " == *" $t "* ]] || continue
                fg=$(med_of "$w" "$t")
                ok=$(awk -v f="$fg" -v b="$best_ph" 'BEGIN{print (f <= 0.5*b) ? 1 : 0}')
                check "$t $w <= 0.5x the best passthrough_hp" "$ok" "$(awk -v f="$fg" -v b="$best_ph" 'BEGIN{printf "%.2f", f/b}')x"
            done
        done
    fi
    if [ -s "$WORK/policy_change.txt" ]; then
        local batch grant revoke stall bu gu ru su
        pc() { awk -v k="^$1\$" '$1 ~ k {print $2, $3}' "$WORK/policy_change.txt"; }
        read -r batch bu <<< "$(pc policy_batch_100k_grants)"
        read -r grant gu <<< "$(pc "policy_change_grant_at_[0-9]+_nodes")"
        read -r revoke ru <<< "$(pc "policy_change_revoke_at_[0-9]+_nodes")"
        read -r stall su <<< "$(pc "policy_worker_stall_max_at_[0-9]+_nodes")"
        to_us() { awk -v v="$1" -v u="$2" 'BEGIN{m=(u=="ns")?0.001:(u=="ms")?1000:(u=="s")?1e6:1; printf "%.2f", v*m}'; }
        check "100,000 grants in one batch under 1 s" "$(awk -v v="$(to_us "$batch" "$bu")" 'BEGIN{print (v < 1e6) ? 1 : 0}')" "$batch $bu"
        check "one grant at 1,000,000 nodes under 50 us" "$(awk -v v="$(to_us "$grant" "$gu")" 'BEGIN{print (v < 50) ? 1 : 0}')" "$grant $gu"
        check "one revoke at 1,000,000 nodes under 50 us" "$(awk -v v="$(to_us "$revoke" "$ru")" 'BEGIN{print (v < 50) ? 1 : 0}')" "$revoke $ru"
        check "no worker stalled over 50 us by changes" "$(awk -v v="$(to_us "$stall" "$su")" 'BEGIN{print (v < 50) ? 1 : 0}')" "$stall $su (max; includes preemption on 2 shared CPUs)"
    fi
    local misses=""
    for spec in "${WORKLOADS[@]}"; do
        IFS='|' read -r w _ better _ <<< "$spec"
        f=$(med_of "$w" nopt); b=$(med_of "$w" bindfs)
        awk -v f="$f" -v b="$b" -v d="$better" 'BEGIN{exit !((d=="hi") ? f >= b : f <= b)}' \
            || misses="$misses $w ($(ratio "$better" "$f" "$b")x)"
    done
    check "no-passthrough at least as fast as bindfs on every workload" "$( [ -z "$misses" ] && echo 1 || echo 0)" \
        "$( [ -n "$misses" ] && echo "slower on:$misses" || echo "faster or equal on all workloads")"
    for t in "${FG[@]}"; do
        v=$(med_of mem_rss_looked_up "$t")
        check "$t RSS < 20 MiB after ${MEM_FILES} lookups" "$(awk -v v="$v" 'BEGIN{print (v < 20480) ? 1 : 0}')" "$(fmt "$v") KiB"
        s=$(med_of mem_rss_start "$t"); f=$(med_of mem_rss_forgotten "$t")
        # "Back down": at most a quarter of what the lookups added is still resident.
        check "$t RSS back down after forget" \
            "$(awk -v s="$s" -v l="$v" -v f="$f" 'BEGIN{print (f - s <= 0.25 * (l - s)) ? 1 : 0}')" \
            "$(fmt "$s") -> $(fmt "$v") -> $(fmt "$f") KiB"
    done
}

REPORT=$(report)
echo "$REPORT"
if [ -n "$OUT" ]; then
    printf '%s\n' "$REPORT" > "$OUT"
    log "table written to $OUT"
fi
if [ -n "$OUT" ]; then cp "$RES" "${OUT%.md}.tsv"; fi
log "done in ${ELAPSED} s"
