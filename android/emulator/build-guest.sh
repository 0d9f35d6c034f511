#!/usr/bin/env bash
# Build the arm64 test guest from Debian packages only, into $EMU_DIR/guest:
#   vmlinuz         linux-image-6.12.*-cloud-arm64 (FUSE + FUSE_PASSTHROUGH built in), or with
#                   FUSEGATE_GUEST_KERNEL=arm64|arm64-16k the full -arm64[-16k]-unsigned kernel
#                   into $EMU_DIR/guest-arm64[-16k] (see lib.sh)
#   initrd.cpio.gz  busybox-static /init (init.sh), adbd + its shared libraries, the modules for
#                   the network, virtio-blk, ext4 and f2fs (lib/modules/load.list, in load order)
#   versions.txt    the exact package versions used
# Downloads are cached in $EMU_DIR/debs, so a rebuild needs no network.
# Usage: build-guest.sh [--force]
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

force=0
[ "${1:-}" = "--force" ] && force=1
if [ "$force" = 0 ] && guest_is_current; then
    log "guest is up to date in $GUEST_DIR"
    exit 0
fi

[ "${FUSEGATE_HOST_CHECKED:-0}" = 1 ] || "$EMU_SCRIPTS/setup-host.sh"
need_cmd apt-get; need_cmd dpkg-deb; need_cmd cpio; need_cmd readelf; need_cmd xz

DEBS="$EMU_DIR/debs"
WORK="$EMU_DIR/build"
mkdir -p "$DEBS" "$GUEST_DIR"
rm -rf "$WORK"
mkdir -p "$WORK/unpack" "$WORK/root"
trap 'rm -rf "$WORK"' EXIT

# --- which packages --------------------------------------------------------------------------
# The kernel ($GUEST_KERNEL, see lib.sh): the newest 6.12 image of that flavour (FUSE passthrough
# needs >= 6.9; Debian's 6.1 is too old), found through the flavour's meta-package.
# FUSEGATE_GUEST_KERNEL_PKG=linux-image-6.12.N+debX-<flavour> pins one.
case "$GUEST_KERNEL" in
    cloud) flavour=cloud-arm64 suffix="" ;;
    arm64) flavour=arm64 suffix="-unsigned" ;;
    arm64-16k) flavour=arm64-16k suffix="-unsigned" ;;
esac
kpkg="${FUSEGATE_GUEST_KERNEL_PKG:-}"
if [ -z "$kpkg" ]; then
    kpkg="$(apt-cache depends "linux-image-6.12-$flavour:arm64" 2>/dev/null |
        sed -n "s/^ *Depends: \(linux-image-6\.12[^ :]*-$flavour\)\(:arm64\)\?\$/\1/p" | head -1)"
    [ -n "$kpkg" ] && kpkg="$kpkg$suffix"
fi
if [ -z "$kpkg" ]; then
    kpkg="$(apt-cache search --names-only "^linux-image-6\.1[2-9]\.[0-9.]+\+deb[0-9.]+-$flavour$suffix\$" |
        cut -d' ' -f1 | sort -V | tail -1)"
fi
[ -n "$kpkg" ] || die "no linux-image-6.12.*-$flavour$suffix:arm64 in the apt lists (is ${VERSION_CODENAME:-bookworm}-security/backports configured and arm64 added?)"
kpkg="${kpkg%:arm64}"

# adbd (backports) and the exact versions of its dependency closure, as apt would install them.
codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
sim="$(apt-get install -s -q --no-install-recommends -t "${codename}-backports" adbd:arm64 2>&1)" ||
    die "apt cannot resolve adbd:arm64: $(tail -3 <<<"$sim")"
mapfile -t pkgs < <(sed -n 's/^Inst \([^ ]*:arm64\) (\([^ ]*\) .*/\1=\2/p' <<<"$sim")
[ ${#pkgs[@]} -gt 0 ] || die "could not work out adbd:arm64's dependencies"
bb="$(apt-cache policy busybox-static:arm64 | sed -n 's/^ *Candidate: //p')"
[ -n "$bb" ] && [ "$bb" != "(none)" ] || die "busybox-static:arm64 not found in the apt lists"
kver="$(apt-cache policy "$kpkg:arm64" | sed -n 's/^ *Candidate: //p')"
pkgs+=("busybox-static:arm64=$bb" "$kpkg:arm64=$kver")

# --- download (cached) -----------------------------------------------------------------------
todo=()
for p in "${pkgs[@]}"; do
    name="${p%%:arm64=*}"; ver="${p#*=}"
    f="$DEBS/${name}_${ver//:/%3a}_arm64.deb"
    [ -s "$f" ] || todo+=("$p")
done
if [ ${#todo[@]} -gt 0 ]; then
    log "downloading ${#todo[@]} arm64 packages into $DEBS"
    if ! dl="$(cd "$DEBS" && apt-get download -q "${todo[@]}" 2>&1)"; then
        printf '%s\n' "$dl" >&2
        die "apt-get download failed for: ${todo[*]}"
    fi
fi
: >"$WORK/versions.txt"
for p in "${pkgs[@]}"; do
    name="${p%%:arm64=*}"; ver="${p#*=}"
    f="$DEBS/${name}_${ver//:/%3a}_arm64.deb"
    [ -s "$f" ] || die "missing $f after download"
    dpkg-deb -x "$f" "$WORK/unpack"
    echo "$name $ver" >>"$WORK/versions.txt"
done

U="$WORK/unpack"
R="$WORK/root"

# --- kernel ----------------------------------------------------------------------------------
vmlinuz="$(ls "$U"/boot/vmlinuz-* 2>/dev/null | head -1)"
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $kpkg"
kconfig="$(ls "$U"/boot/config-* | head -1)"
for opt in CONFIG_FUSE_FS=y CONFIG_FUSE_PASSTHROUGH=y CONFIG_VIRTIO_PCI=y CONFIG_SERIAL_AMBA_PL011_CONSOLE=y CONFIG_RD_GZIP=y; do
    grep -qx "$opt" "$kconfig" || die "$kpkg lacks $opt"
done
kmods="$(ls -d "$U"/lib/modules/* | head -1)"

# --- root tree -------------------------------------------------------------------------------
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,lib/modules,etc,dev,proc,sys,tmp,run,data,root,mnt}
install -m 0755 "$EMU_SCRIPTS/init.sh" "$R/init"
install -m 0755 "$U/bin/busybox" "$R/bin/busybox"
install -m 0755 "$U/usr/lib/android-sdk/platform-tools/adbd" "$R/usr/sbin/adbd"
# Modules, with what they depend on, in load order (init.sh insmods /lib/modules/load.list):
# the network for adb, the block driver for the lower disk, and the filesystems it may carry.
# A module the kernel has built in is skipped; f2fs is optional (the cloud kernel has none).
# Debian ships no modules.dep (depmod runs at install), so dependencies come from each
# module's own .modinfo: depends= and the crypto algorithms of softdep=pre:.
builtin="$(cat "$kmods/modules.builtin" 2>/dev/null || true)"
declare -A loaded=()
: >"$R/lib/modules/load.list"
add_module() { # NAME REQUIRED(0|1)
    local m="$1" req="$2" src dep deps soft info
    [ -n "${loaded[$m]:-}" ] && return 0
    if grep -q "/${m}\.ko\$" <<<"$builtin" || grep -q "/${m//_/-}\.ko\$" <<<"$builtin"; then
        loaded[$m]=builtin
        return 0
    fi
    src="$(find "$kmods" \( -name "$m.ko" -o -name "$m.ko.*" -o -name "${m//_/-}.ko" -o -name "${m//_/-}.ko.*" \) | head -1)"
    if [ -z "$src" ]; then
        [ "$req" = 1 ] && die "module $m not found in $kpkg"
        log "note: $kpkg has no module $m"
        return 0
    fi
    loaded[$m]=1
    case "$src" in
        *.xz) xz -dc "$src" >"$R/lib/modules/$m.ko" ;;
        *.zst) zstd -dcq "$src" >"$R/lib/modules/$m.ko" ;;
        *) cp "$src" "$R/lib/modules/$m.ko" ;;
    esac
    info="$(readelf -p .modinfo "$R/lib/modules/$m.ko" 2>/dev/null)"
    deps="$(sed -n 's/.*\]  *depends=//p' <<<"$info" | tr ',' ' ')"
    # softdep=pre: crc32 / crypto-crc32c: the generic implementations of those algorithms.
    soft="$(sed -n 's/.*\]  *softdep=pre: *//p' <<<"$info" | sed 's/ *post:.*//; s/crypto-//g')"
    for dep in $deps; do add_module "$dep" 1; done
    for dep in $soft; do add_module "${dep}_generic" 0; done
    echo "$m" >>"$R/lib/modules/load.list"
}
for m in failover net_failover virtio_net virtio_blk ext4; do add_module "$m" 1; done
add_module f2fs 0
log "modules: $(tr '\n' ' ' <"$R/lib/modules/load.list")"
printf 'root:x:0:0:root:/root:/bin/sh\nshell:x:2000:2000:shell:/data/local/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nshell:x:2000:\nnogroup:x:65534:\n' >"$R/etc/group"
printf '127.0.0.1 localhost\n' >"$R/etc/hosts"
# A console node lets the kernel print init's first words (init reopens it after devtmpfs too).
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || true

# The shared libraries adbd needs, found by walking DT_NEEDED through the unpacked packages.
libdirs=(lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu/android lib usr/lib)
declare -A copied=()
copy_needed() {
    local elf="$1" lib d found
    for lib in $(readelf -d "$elf" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ -n "${copied[$lib]:-}" ] && continue
        found=""
        for d in "${libdirs[@]}"; do
            if [ -e "$U/$d/$lib" ]; then found="$d/$lib"; break; fi
        done
        [ -n "$found" ] || die "adbd needs $lib, which no downloaded package provides"
        copied[$lib]=1
        mkdir -p "$R/$(dirname "$found")"
        cp -L "$U/$found" "$R/$found"
        copy_needed "$R/$found"
    done
}
copy_needed "$R/usr/sbin/adbd"
interp="$(readelf -l "$R/usr/sbin/adbd" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')"
[ -n "$interp" ] && [ -e "$U$interp" ] || die "adbd's interpreter '$interp' not found"
mkdir -p "$R$(dirname "$interp")"
cp -L "$U$interp" "$R$interp"

# --- pack ------------------------------------------------------------------------------------
log "packing the initramfs"
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 >"$WORK/initrd.cpio.gz"
cp "$vmlinuz" "$GUEST_DIR/vmlinuz.new"
mv "$GUEST_DIR/vmlinuz.new" "$GUEST_DIR/vmlinuz"
mv "$WORK/initrd.cpio.gz" "$GUEST_DIR/initrd.cpio.gz"
mv "$WORK/versions.txt" "$GUEST_DIR/versions.txt"
guest_recipe_hash >"$GUEST_DIR/stamp"
log "guest ready: kernel $kpkg $kver, initrd $(du -h "$GUEST_DIR/initrd.cpio.gz" | cut -f1)"
