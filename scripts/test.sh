#!/usr/bin/env bash
# Every test, as root: Rust unit tests and integration tests that mount real FUSE, every fuzz
# target for 20 s over its committed corpus, the Java/Kotlin
# tests of the JNI surface in a real JVM, the suite on an arm64 emulator through adb, and the
# benchmark in quick mode (checks that it runs; asserts no speed). Every suite runs even when an
# earlier one failed; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=()
suite() {
    local name=$1
    shift
    printf '\n=== %s ===\n' "$name"
    if ! "$@"; then
        failed+=("$name")
        printf '=== %s: FAILED ===\n' "$name"
    fi
}

# A newcomer's fresh machine needs the Debian packages and Rust targets first (idempotent).
scripts/install-deps.sh || { echo "installing the test dependencies failed" >&2; exit 1; }

suite "Rust: unit and integration tests (real FUSE mounts)" cargo test
# The same mounts again over FUSE io_uring queues, where the kernel has them (Linux 6.14+).
uring_param=/sys/module/fuse/parameters/enable_uring
if [ -w "$uring_param" ]; then
    uring_before=$(cat "$uring_param")
    echo Y > "$uring_param"
    suite "Rust: the mount suites again over io_uring" \
        env FUSEGATE_TEST_IO_URING=on cargo test --test conformance --test data_path --test escapes \
        --test invalidate --test lifecycle --test policy --test attacks
    echo "$uring_before" > "$uring_param"
else
    echo "(no FUSE over io_uring in this kernel: the mount suites ran over read() only; tests/transport.rs skipped)"
fi
suite "fuzzing, 20 s per target (corpus replay is in cargo test)" scripts/fuzz.sh 20
suite "JNI: Java and Kotlin against libfusegate.so" jni/run-tests.sh
# The arm64 suite on the kernels and lower filesystems Android devices have: today's cloud kernel
# over ext4, the full kernel over f2fs, and its 16 KiB-page variant over f2fs (16 KiB blocks).
# The cloud kernel runs every suite; the f2fs kernels run the suites that meet the lower
# filesystem and the page size (the rest is filesystem-independent and already ran in the
# guest once), which keeps the three boots within the CI budget.
fs_suites=(--test conformance --test data_path --test policy --test escapes --test lifecycle
    --test invalidate --test platform --test attacks)
for combo in "cloud ext4" "arm64 f2fs" "arm64-16k f2fs"; do
    read -r kernel fs <<<"$combo"
    suites=()
    [ "$fs" = f2fs ] && suites=("${fs_suites[@]}")
    t0=$SECONDS
    suite "arm64 emulator through adb: kernel $kernel, lower $fs" \
        android/emulator/test-arm64.sh --kernel "$kernel" --lower-fs "$fs" ${suites[@]+"${suites[@]}"}
    echo "arm64 $kernel/$fs took $((SECONDS - t0))s"
done
suite "benchmark, quick mode" bench/run.sh --quick

echo
if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED suites: %s\n' "${failed[*]}"
    exit 1
fi
echo "all suites passed"
