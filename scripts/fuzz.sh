#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for a bounded time, starting from its committed
# corpus (fuzz/corpus/<target>/); exits non-zero if any target crashed, leaked or hung.
#   scripts/fuzz.sh [seconds-per-target]     (default 60)
# New interesting inputs go to a temporary directory, not into the committed corpus; to keep
# some, run `cargo fuzz cmin <target>` and commit. A crash input lands in fuzz/artifacts/.
# Runs as root: the dispatch target builds a storage view, which needs file handles.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}

# cargo-fuzz passes -Z sanitizer flags; stable rustc accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo fuzz build
# Each libFuzzer process uses one core: the targets run side by side, one per core, so the
# suite takes ceil(targets / cores) x secs instead of targets x secs; every target still gets
# its full time. FUZZ_JOBS overrides the number run at once.
at_once=${FUZZ_JOBS:-$(nproc)}
targets=$(cargo fuzz list)
running=0
for t in $targets; do
    mkdir -p "$work/$t" "fuzz/corpus/$t"
    if [ "$running" -ge "$at_once" ]; then
        wait -n # a subshell's status is always 0: the target's own is in $work/$t.rc
        running=$((running - 1))
    fi
    (
        rc=0
        cargo fuzz run "$t" "$work/$t" "fuzz/corpus/$t" -- \
            -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
            >"$work/$t.log" 2>&1 || rc=$?
        echo "$rc" >"$work/$t.rc"
    ) &
    running=$((running + 1))
done
wait
failed=()
for t in $targets; do
    printf '\n=== fuzz %s, %s s ===\n' "$t" "$secs"
    if [ "$(cat "$work/$t.rc" 2>/dev/null)" != 0 ]; then
        tail -n 60 "$work/$t.log"
        failed+=("$t")
        continue
    fi
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$work/$t.log" || true
done

if [ ${#failed[@]} -gt 0 ]; then
    printf '\nfuzz targets that failed: %s (inputs in fuzz/artifacts/)\n' "${failed[*]}"
    exit 1
fi
echo "every fuzz target ran ${secs} s without a failure"
