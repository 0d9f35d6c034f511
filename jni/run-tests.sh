#!/usr/bin/env bash
# Builds libfusegate.so with the test hooks (and checks that the release build carries none),
# compiles the Java API and its tests into target/jni/, runs them against real FUSE mounts, then
# compiles and runs the Kotlin example. Closes with "N passed, M failed" and exits non-zero on
# any failure.
#
#   jni/run-tests.sh [test-name-substring ...]
#
# Needs root, /dev/fuse, setpriv, a JDK (javac, java); kotlinc for the Kotlin part. Under
# CI=true a missing prerequisite is a failure, not a skip. This script installs nothing.
# FUSEGATE_STRESS_SECONDS (default 5) bounds the stress test; FUSEGATE_BATCH_FULL=1 times
# 100,000 grants in one batch against 5,000 one by one (default: a twentieth); RUST_LOG sets the
# daemon's log level (default warn).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
ci=false
[[ "${CI:-}" == "true" ]] && ci=true

out=target/jni
lib=target/debug
passed=0
failed=0
skipped=0

finish() {
    if [[ $skipped -gt 0 ]]; then
        echo "$skipped skipped"
    fi
    echo "$passed passed, $failed failed"
    if [[ $failed -eq 0 ]]; then
        exit 0
    fi
    exit 1
}

missing() { # what
    if $ci; then
        echo "FAIL: $1 (CI=true: a missing prerequisite is a failure)"
        failed=$((failed + 1))
    else
        echo "SKIP: $1"
        skipped=$((skipped + 1))
    fi
}

for tool in javac java cargo; do
    if ! command -v "$tool" >/dev/null; then
        echo "FAIL: $tool not found"
        failed=$((failed + 1))
        finish
    fi
done

echo "== cargo build (libfusegate.so with the test hooks)"
cargo build --quiet --lib --features test-hooks
if [[ ! -f $lib/libfusegate.so ]]; then
    echo "FAIL: $lib/libfusegate.so was not built"
    failed=$((failed + 1))
    finish
fi

# Test hooks (natives named *ForTesting) are bound only with the test-hooks feature: the release
# library must neither export one (nm -D) nor carry the name RegisterNatives would bind it by.
echo "== release libfusegate.so carries no test hook"
release_lib=target/release/libfusegate.so
cargo build --quiet --release --lib
if ! grep -q ForTesting "$lib/libfusegate.so"; then
    echo "FAIL: the test-hooks build has no *ForTesting native: this check would prove nothing"
    failed=$((failed + 1))
elif nm -D --defined-only "$release_lib" | grep -i -e fortesting -e for_testing; then
    echo "FAIL: $release_lib exports a test hook (above)"
    failed=$((failed + 1))
elif grep -q ForTesting "$release_lib"; then
    echo "FAIL: $release_lib registers a *ForTesting native (build without --features test-hooks)"
    failed=$((failed + 1))
else
    echo "ok   release library: exports $(nm -D --defined-only "$release_lib" | awk '{print $3}' | tr '\n' ' ')and no test hook"
    passed=$((passed + 1))
fi

echo "== javac: API (--release 8, as Android and Kotlin 1.3 read it) and tests into $out/"
rm -rf "$out/classes" "$out/test-classes" "$out/kotlin"
mkdir -p "$out/classes" "$out/test-classes" "$out/kotlin"
javac --release 8 -Xlint:all,-options -Werror -d "$out/classes" \
    $(find jni/src/main/java -name '*.java' | sort)
javac -Xlint:all,-options -Werror -cp "$out/classes" -d "$out/test-classes" \
    $(find jni/src/test/java -name '*.java' | sort)

# Leftover mounts of an earlier, killed run would make the next one fail confusingly.
cleanup_mounts() {
    awk '$2 ~ /fusegate-jni-/ {print $2}' /proc/mounts | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}
cleanup_mounts

can_mount=true
if [[ $(id -u) -ne 0 || ! -e /dev/fuse || ! -x /usr/bin/setpriv ]]; then
    can_mount=false
fi

echo "== java tests"
results="$out/java-results"
rm -f "$results"
set +e
# -Xcheck:jni: the JVM checks every JNI call of libfusegate (and aborts on misuse). java.io is
# opened to the tests so that they can wrap openForApp's fds in a FileDescriptor (what
# ParcelFileDescriptor.adoptFd does on Android).
RUST_LOG=${RUST_LOG:-warn} java -Xcheck:jni --add-opens java.base/java.io=ALL-UNNAMED \
    -Djava.library.path="$lib" -Dfusegate.results="$results" \
    -cp "$out/classes:$out/test-classes" dev.fusegate.TestMain "$@" 2>&1
java_status=$?
set -e
cleanup_mounts
if [[ -f $results ]]; then
    read -r p f s <"$results"
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
fi
if [[ $java_status -ne 0 && ! -f $results ]] || [[ $java_status -ne 0 && ${f:-0} -eq 0 ]]; then
    echo "FAIL: the Java test run exited with status $java_status"
    failed=$((failed + 1))
fi

if [[ $# -gt 0 ]]; then
    finish # a chosen subset: no Kotlin run
fi

echo "== kotlin example"
kotlin_jars=/usr/share/java
if ! command -v kotlinc >/dev/null; then
    missing "kotlinc not found (apt-get install kotlin); Kotlin example not run"
elif [[ ! -f $kotlin_jars/kotlin-stdlib.jar || ! -f $kotlin_jars/kotlin-stdlib-jdk7.jar ]]; then
    missing "kotlin-stdlib.jar / kotlin-stdlib-jdk7.jar not in $kotlin_jars"
elif ! $can_mount; then
    missing "the Kotlin example mounts: it needs root, /dev/fuse and setpriv"
else
    kcp="$out/classes:$kotlin_jars/kotlin-stdlib.jar:$kotlin_jars/kotlin-stdlib-jdk7.jar"
    # kotlinc 1.3 on JDK 17 warns about -Xverify; only its errors matter here.
    if kotlinc -nowarn -cp "$kcp" -d "$out/kotlin" jni/kotlin/Example.kt 2>"$out/kotlinc.log"; then
        grep -v -e 'Xverify' -e 'OpenJDK 64-Bit Server VM warning' "$out/kotlinc.log" || true
        work=$(mktemp -d /tmp/fusegate-jni-kotlin-XXXXXX)
        chmod 755 "$work"
        set +e
        RUST_LOG=${RUST_LOG:-warn} timeout 120 java --add-opens java.base/java.io=ALL-UNNAMED \
            -Djava.library.path="$lib" -cp "$out/kotlin:$kcp" \
            dev.fusegate.example.ExampleKt "$work" 2>&1
        status=$?
        set -e
        cleanup_mounts
        rm -rf "$work"
        if [[ $status -eq 0 ]]; then
            echo "ok   kotlin example"
            passed=$((passed + 1))
        else
            echo "FAIL kotlin example (exit $status)"
            failed=$((failed + 1))
        fi
    else
        cat "$out/kotlinc.log"
        echo "FAIL kotlin example: kotlinc failed"
        failed=$((failed + 1))
    fi
fi

finish
