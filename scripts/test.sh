#!/usr/bin/env bash
# Every test, as root: Rust unit tests and integration tests that mount real FUSE, the Java/Kotlin
# tests of the JNI surface in a real JVM, the suite on an arm64 emulator through adb, and the
# benchmark in quick mode (checks it runs; asserts no speed).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s ===\n' "$*"; }

step "cargo test (unit + integration, real FUSE mounts)"
cargo test

if [ -x jni/run-tests.sh ]; then
    step "JNI: Java and Kotlin against libfusegate.so"
    jni/run-tests.sh
fi
if [ -x android/emulator/test-arm64.sh ]; then
    step "arm64 emulator through adb"
    android/emulator/test-arm64.sh
fi
if [ -x bench/run.sh ]; then
    step "benchmark, quick mode"
    bench/run.sh --quick
fi
