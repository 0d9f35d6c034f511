#!/usr/bin/env bash
# Installs everything the tests, the emulator and the benchmark need (Debian packages, Rust
# targets and components). Idempotent; run as root.
set -euo pipefail

pkgs=(
    fio bindfs e2fsprogs util-linux            # benchmark: peer mirror, random I/O, ext4 image
    kotlin                                      # the Kotlin example of the JNI surface
    qemu-system-arm cpio adb file               # the arm64 emulator and adb
    f2fs-tools gcc uuid-dev                     # f2fs lower disks; mkfs.f2fs for 16 KiB blocks
    meson ninja-build pkg-config g++ liburing-dev libnuma-dev  # benchmark peer: libfuse passthrough_hp
    libimage-exiftool-perl imagemagick ffmpeg   # location redaction: real media with GPS,
    webp libheif-examples                       #   and exiftool to check what is left
)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Installing Debian's qemu packages can remove a newer preinstalled qemu-utils; keep qemu-img.
command -v qemu-img >/dev/null || apt-get install -y -qq qemu-utils >/dev/null

rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add aarch64-unknown-linux-musl aarch64-linux-android >/dev/null
# The fuzz targets (scripts/fuzz.sh) run with cargo-fuzz on the stable toolchain.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
