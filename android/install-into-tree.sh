#!/usr/bin/env bash
# Copy fusegate into a platform (AOSP) tree as a Soong project, with android/Android.bp as the
# project's root Android.bp (Soong takes sources only from below an Android.bp's directory).
#
# Usage: android/install-into-tree.sh DEST       e.g. $ANDROID_BUILD_TOP/external/fusegate
# Then, in the product/board makefiles (see android/README.md):
#   PRODUCT_PACKAGES += fusegated libfusegate fusegate-java
#   SYSTEM_EXT_PRIVATE_SEPOLICY_DIRS += external/fusegate/android/sepolicy
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
die() { printf 'install-into-tree: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DEST (e.g. \$ANDROID_BUILD_TOP/external/fusegate)"
dest="$1"
case "$dest" in /*) ;; *) dest="$PWD/$dest" ;; esac
[ "$dest" != "$root" ] || die "DEST must not be this checkout"
mkdir -p "$dest"

# Replace what this script owns in DEST, nothing else.
rm -rf "$dest/src" "$dest/jni" "$dest/android" "$dest/Android.bp" "$dest/Cargo.toml" "$dest/Cargo.lock"
cp -a "$root/src" "$dest/src"
cp -a "$root/Cargo.toml" "$root/Cargo.lock" "$dest/"
if [ -d "$root/jni/src/main/java" ]; then
    mkdir -p "$dest/jni/src/main"
    cp -a "$root/jni/src/main/java" "$dest/jni/src/main/java"
fi
mkdir -p "$dest/android"
cp -a "$here/fusegated.rc" "$here/sepolicy" "$here/README.md" "$dest/android/"
cp -a "$here/Android.bp" "$dest/Android.bp"
[ ! -f "$root/LICENSE" ] || cp -a "$root/LICENSE" "$dest/"

rel="${dest#"${ANDROID_BUILD_TOP:-/nonexistent}"/}"
cat <<MSG
fusegate copied to $dest (Android.bp at its root).
Add to the product/board configuration:
    PRODUCT_PACKAGES += fusegated libfusegate fusegate-java
    SYSTEM_EXT_PRIVATE_SEPOLICY_DIRS += $rel/android/sepolicy
then: m fusegated libfusegate fusegate-java
MSG
