# shellcheck shell=bash
# shellcheck disable=SC2034  # variables for the scripts that source this file
# Common helpers for the arm64 emulator scripts. Sourced, never run.
#
# Layout of the cache (gitignored, under target/ by default; override with FUSEGATE_EMU_DIR):
#   $EMU_DIR/debs/        downloaded arm64 .deb files (kernel, busybox-static, adbd and its libs)
#   $EMU_DIR/guest/       vmlinuz, initrd.cpio.gz, versions.txt, stamp (what built them), for
#                         the cloud kernel; guest-arm64/ and guest-arm64-16k/ for the others
#   $EMU_DIR/run/         a running adb guest: qemu.pid, console.log, serial, port
#   $EMU_DIR/tmp/         per-run scratch (cargo runner initrds), removed after each run

EMU_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$EMU_SCRIPTS/../.." && pwd)"
EMU_DIR="${FUSEGATE_EMU_DIR:-$REPO_ROOT/target/emulator}"
# Which Debian 6.12 kernel the guest boots (FUSEGATE_GUEST_KERNEL):
#   cloud      linux-image-6.12.*-cloud-arm64: small, FUSE built in, no f2fs
#   arm64      linux-image-6.12.*-arm64-unsigned: the full kernel, f2fs as a module, 4 KiB pages
#   arm64-16k  linux-image-6.12.*-arm64-16k-unsigned: the same with 16 KiB pages (Android 15+)
select_guest_kernel() { # cloud|arm64|arm64-16k: sets GUEST_KERNEL and GUEST_DIR
    case "$1" in
        cloud) GUEST_DIR="$EMU_DIR/guest" ;;
        arm64 | arm64-16k) GUEST_DIR="$EMU_DIR/guest-$1" ;;
        *) printf '[fusegate-emu] error: kernel %s: want cloud, arm64 or arm64-16k\n' "$1" >&2; exit 2 ;;
    esac
    GUEST_KERNEL="$1"
}
select_guest_kernel "${FUSEGATE_GUEST_KERNEL:-cloud}"
RUN_DIR="$EMU_DIR/run"

# The guest: 2 vCPUs and 2 GiB, as the integration tests fork, mount FUSE and run a daemon.
GUEST_SMP="${FUSEGATE_GUEST_SMP:-2}"
GUEST_MEM="${FUSEGATE_GUEST_MEM:-2048}"
# Serial console; a kernel panic powers off (with -no-reboot) instead of hanging; no crypto
# self-tests at boot (they only cost time under emulation).
GUEST_CMDLINE="console=ttyAMA0 panic=-1 quiet cryptomgr.notests"

log() { printf '[fusegate-emu] %s\n' "$*" >&2; }
die() { printf '[fusegate-emu] error: %s\n' "$*" >&2; exit 1; }

need_cmd() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found; run android/emulator/setup-host.sh as root first${2:+ ($2)}"
}

# The -cpu flags for this qemu: qemu < 8 emulates pointer authentication with the slow QARMA
# cipher unless told to use the implementation-defined one (boot 9 s instead of 3 s). Newer
# ones run without it: the Debian kernels sign return addresses in every non-leaf function,
# and emulating that was about a third of the guest's test time (model and conformance on
# cloud/ext4: 78 s with it, 54 s without). The instructions are hints, so the same kernels
# and binaries run; what the suites test (FUSE, the lower filesystems) does not depend on it.
qemu_cpu_flags() {
    local v major
    v="$(qemu-system-aarch64 --version | sed -n 's/^QEMU emulator version \([0-9][0-9]*\)\..*/\1/p')"
    major="${v:-0}"
    if [ "$major" -ge 8 ]; then
        echo "max,pauth=off"
    else
        echo "max,pauth-impdef=on"
    fi
}

# True if the cached guest exists and was built by the current build-guest.sh + init.sh.
guest_is_current() {
    [ -f "$GUEST_DIR/stamp" ] && [ -f "$GUEST_DIR/vmlinuz" ] && [ -f "$GUEST_DIR/initrd.cpio.gz" ] &&
        [ "$(cat "$GUEST_DIR/stamp")" = "$(guest_recipe_hash)" ]
}

guest_recipe_hash() {
    { cat "$EMU_SCRIPTS/build-guest.sh" "$EMU_SCRIPTS/init.sh"; echo "$GUEST_KERNEL"; } | sha256sum | cut -d' ' -f1
}

# Build the guest if it is missing or stale. Serialised with a lock so that concurrent cargo
# runner invocations build it once.
ensure_guest() {
    mkdir -p "$EMU_DIR"
    (
        flock 9
        if ! guest_is_current; then
            "$EMU_SCRIPTS/build-guest.sh"
        fi
    ) 9>"$EMU_DIR/.build-$GUEST_KERNEL.lock"
    guest_is_current || die "guest build failed (see messages above)"
}

# Is something listening on 127.0.0.1:$1?
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The lower filesystem image for a second virtio-blk disk (FUSEGATE_GUEST_LOWER_FS=ext4|f2fs),
# made fresh on the host by mkfs (no kernel support needed): prints its path. The guest's init
# mounts it at $GUEST_LOWER_MNT when the kernel command line says fusegate.lower=FS.
GUEST_LOWER_MNT=/data/lower
make_lower_image() { # FS FILE
    local fs="$1" img="$2" size_mb="${FUSEGATE_LOWER_IMAGE_MB:-2048}"
    rm -f "$img"
    truncate -s "${size_mb}M" "$img"
    case "$fs" in
        ext4)
            need_cmd mkfs.ext4 "Debian: e2fsprogs"
            mkfs.ext4 -q -F -L fusegate-lower "$img" >&2 || die "mkfs.ext4 $img failed"
            ;;
        f2fs)
            need_cmd mkfs.f2fs "Debian: f2fs-tools"
            # f2fs's block size must equal the kernel's page size (6.7+ checks log_blocksize).
            local bs=4096
            [ "$GUEST_KERNEL" = arm64-16k ] && bs=16384
            f2fs_mkfs "$bs" "$img" || die "mkfs.f2fs (block size $bs) on $img failed"
            ;;
        *) die "unknown lower filesystem '$fs' (want ext4 or f2fs)" ;;
    esac
}

# mkfs.f2fs with extended attributes in the inode (as Android formats /data: -O extra_attr,
# inode_checksum, sb_checksum, compression, ...): here the features fusegate meets, extra_attr
# and flexible inline xattrs.
f2fs_mkfs() { # BLOCKSIZE FILE
    local bs="$1" img="$2"
    if [ "$bs" = 4096 ]; then
        mkfs.f2fs -q -f -l fusegate-lower -O extra_attr,inode_checksum,sb_checksum,flexible_inline_xattr "$img" >&2
    else
        f2fs_mkfs_blocksize "$bs" "$img"
    fi
}

# qemu arguments and kernel command-line words for the lower disk, if FUSEGATE_GUEST_LOWER_FS is
# set (ext4|f2fs): a fresh image at $1 as the guest's /dev/vda. Sets LOWER_QEMU_ARGS (array) and
# LOWER_CMDLINE.
lower_disk_setup() { # IMAGE
    LOWER_QEMU_ARGS=()
    LOWER_CMDLINE=""
    local fs="${FUSEGATE_GUEST_LOWER_FS:-}"
    [ -n "$fs" ] || return 0
    make_lower_image "$fs" "$1"
    LOWER_QEMU_ARGS=(-drive "file=$1,if=none,format=raw,id=lower,cache=unsafe"
        -device virtio-blk-pci,drive=lower,romfile=)
    LOWER_CMDLINE="fusegate.lower=$fs"
}

# Debian's f2fs-tools (1.16 at most) formats 4 KiB blocks only; a 16 KiB-page kernel mounts
# nothing else. build-mkfs-f2fs.sh builds Debian's f2fs-tools source with 16 KiB blocks.
f2fs_mkfs_blocksize() { # BLOCKSIZE FILE
    local tool
    tool="$("$EMU_SCRIPTS/build-mkfs-f2fs.sh" "$1")" || return 1
    "$tool" -q -f -l fusegate-lower -O extra_attr,inode_checksum,sb_checksum,flexible_inline_xattr "$2" >&2
}
