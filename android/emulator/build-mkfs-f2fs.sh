#!/usr/bin/env bash
# Build mkfs.f2fs for a block size other than 4 KiB and print its path (cached in
# $EMU_DIR/mkfs-f2fs-<size>/mkfs.f2fs).
#
# Why: since Linux 6.7 f2fs mounts only filesystems whose block size equals the page size, so a
# 16 KiB-page kernel (Android 15+ devices, Debian's -arm64-16k) needs 16 KiB blocks. Debian's
# f2fs-tools (1.15 in bookworm, 1.16 in trixie) formats 4 KiB blocks only: F2FS_BLKSIZE and the
# layout constants derived from it are compile-time. Upstream added `mkfs.f2fs -b` later. So
# this takes Debian's own f2fs-tools source (`apt-get source`, a private deb-src list that
# leaves the system's apt configuration alone), derives those constants from F2FS_BLKSIZE the
# way the kernel's include/linux/f2fs_fs.h does since 6.7, and compiles mkfs.f2fs with gcc (no
# autotools). The 16 KiB guest kernel's own checks at mount (superblock, checkpoint and node
# checksums) are what proves the result.
#
# Usage: build-mkfs-f2fs.sh BLOCKSIZE        (16384; 4096 would be Debian's own mkfs.f2fs)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bs="${1:?usage: build-mkfs-f2fs.sh BLOCKSIZE}"
case "$bs" in
    8192) bits=13 ;;
    16384) bits=14 ;;
    65536) bits=16 ;;
    *) die "block size $bs: want 8192, 16384 or 65536" ;;
esac
out="$EMU_DIR/mkfs-f2fs-$bs"
stamp="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
if [ -x "$out/mkfs.f2fs" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$out/mkfs.f2fs"
    exit 0
fi
need_cmd gcc "Debian: gcc"
need_cmd apt-get
[ -e /usr/include/uuid/uuid.h ] || die "uuid/uuid.h missing (Debian: uuid-dev)"

mkdir -p "$EMU_DIR"
(
    flock 9
    work="$EMU_DIR/mkfs-f2fs-build"
    rm -rf "$work"
    mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [ -n "$codename" ] || die "cannot tell the Debian release from /etc/os-release"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename main" \
        >"$work/apt/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -o Acquire::Languages=none)
    log "fetching Debian's f2fs-tools source ($codename)"
    apt-get "${apt_opts[@]}" update -q >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; die "apt-get update (deb-src $codename) failed"; }
    (cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only -q f2fs-tools) >>"$work/apt.log" 2>&1 ||
        { cat "$work/apt.log" >&2; die "apt-get source f2fs-tools failed"; }
    tar -C "$work/src" -xf "$(ls "$work"/src/f2fs-tools_*.orig.tar.* | head -1)"
    src="$(ls -d "$work"/src/f2fs-tools-*/ | head -1)"
    h="$src/include/f2fs_fs.h"

    # The constants Linux 6.7+ derives from F2FS_BLKSIZE (include/linux/f2fs_fs.h); the struct
    # size assertions that only hold for 4 KiB go.
    sed -i -E \
        -e "s/^#define F2FS_BLKSIZE_BITS[[:space:]]+12\$/#define F2FS_BLKSIZE_BITS $bits/" \
        -e "s/^#define F2FS_BLKSIZE[[:space:]]+4096.*\$/#define F2FS_BLKSIZE $bs/" \
        -e 's/^#define PAGE_SIZE[[:space:]]+4096$/#define PAGE_SIZE F2FS_BLKSIZE/' \
        -e 's/^#define PAGE_CACHE_SIZE[[:space:]]+4096$/#define PAGE_CACHE_SIZE F2FS_BLKSIZE/' \
        -e 's/^#define CP_CHKSUM_OFFSET[[:space:]]+4092$/#define CP_CHKSUM_OFFSET (F2FS_BLKSIZE - 4)/' \
        -e 's/^#define[[:space:]]+DEFAULT_SECTORS_PER_BLOCK[[:space:]]+8$/#define DEFAULT_SECTORS_PER_BLOCK (F2FS_BLKSIZE \/ 512)/' \
        -e 's/^#define F2FS_ORPHANS_PER_BLOCK[[:space:]]+1020$/#define F2FS_ORPHANS_PER_BLOCK ((F2FS_BLKSIZE - 16) \/ 4)/' \
        -e 's/^#define DEF_ADDRS_PER_INODE[[:space:]]+923\b.*$/#define DEF_ADDRS_PER_INODE ((F2FS_BLKSIZE - 360 - 20 - 24) \/ 4)/' \
        -e 's/^#define DEF_ADDRS_PER_BLOCK[[:space:]]+1018\b.*$/#define DEF_ADDRS_PER_BLOCK ((F2FS_BLKSIZE - 24) \/ 4)/' \
        -e 's/^#define NIDS_PER_BLOCK[[:space:]]+1018\b.*$/#define NIDS_PER_BLOCK ((F2FS_BLKSIZE - 24) \/ 4)/' \
        -e 's/^#define ENTRIES_IN_SUM[[:space:]]+512$/#define ENTRIES_IN_SUM (F2FS_BLKSIZE \/ 8)/' \
        -e 's/^#define NR_DENTRY_IN_BLOCK[[:space:]]+214$/#define NR_DENTRY_IN_BLOCK ((BITS_PER_BYTE * F2FS_BLKSIZE) \/ ((SIZE_OF_DIR_ENTRY + F2FS_SLOT_LEN) * BITS_PER_BYTE + 1))/' \
        -e 's/== 4096, ""\);/== F2FS_BLKSIZE, "");/' \
        -e '/^static_assert\(sizeof\(struct (f2fs_inode|direct_node|indirect_node|f2fs_nat_block|f2fs_sit_block|nat_journal|sit_journal|f2fs_extra_info|f2fs_journal)\) == [0-9]+, ""\);$/d' \
        "$h"
    for want in "F2FS_BLKSIZE_BITS $bits" "F2FS_BLKSIZE $bs" "CP_CHKSUM_OFFSET (F2FS" "DEFAULT_SECTORS_PER_BLOCK (F2FS" \
        "F2FS_ORPHANS_PER_BLOCK ((F2FS" "DEF_ADDRS_PER_INODE ((F2FS" "DEF_ADDRS_PER_BLOCK ((F2FS" \
        "NIDS_PER_BLOCK ((F2FS" "ENTRIES_IN_SUM (F2FS" "NR_DENTRY_IN_BLOCK ((BITS"; do
        grep -qF "#define $want" "$h" || die "f2fs-tools source: could not set $want in include/f2fs_fs.h (a newer layout?)"
    done

    # What configure would find on Debian, for the mkfs sources only.
    ver="$(sed -n 's/^\([0-9.]*\).*/\1/p' "$src/VERSION" | head -1)"
    cat >"$work/config.h" <<EOF
#define HAVE_LINUX_TYPES_H 1
#define HAVE_BYTESWAP_H 1
#define HAVE_DECL_BSWAP_64 1
#define HAVE_SYS_MOUNT_H 1
#define HAVE_SYS_IOCTL_H 1
#define HAVE_SYS_SYSMACROS_H 1
#define HAVE_SYS_UTSNAME_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_UUID_UUID_H 1
#define HAVE_LINUX_HDREG_H 1
#define HAVE_LINUX_LIMITS_H 1
#define HAVE_MNTENT_H 1
#define HAVE_SETMNTENT 1
#define HAVE_SCSI_SG_H 1
#define HAVE_FSYNC 1
#define HAVE_LSEEK64 1
#define HAVE_PREAD 1
#define HAVE_PWRITE 1
#define HAVE_FSTAT64 1
#define HAVE_FALLOCATE 1
#define HAVE_LINUX_FALLOC_H 1
#define F2FS_MAJOR_VERSION ${ver%%.*}
#define F2FS_MINOR_VERSION $(cut -d. -f2 <<<"$ver")
#define F2FS_TOOLS_VERSION "$ver ($bs-byte blocks, fusegate build)"
#define F2FS_TOOLS_DATE "$(sed -n 2p "$src/VERSION")"
EOF
    log "compiling mkfs.f2fs $ver with $bs-byte blocks"
    libsrc=()
    for f in libf2fs.c libf2fs_io.c libf2fs_zoned.c nls_utf8.c; do
        [ -f "$src/lib/$f" ] && libsrc+=("$src/lib/$f")
    done
    mkdir -p "$out"
    gcc -O2 -w -DHAVE_CONFIG_H -include "$work/config.h" -I"$work" -I"$src/include" -I"$src/mkfs" \
        "$src"/mkfs/*.c "${libsrc[@]}" -luuid -o "$out/mkfs.f2fs.new" >"$work/gcc.log" 2>&1 ||
        { tail -20 "$work/gcc.log" >&2; die "compiling mkfs.f2fs failed"; }
    mv "$out/mkfs.f2fs.new" "$out/mkfs.f2fs"
    echo "$stamp" >"$out/stamp"
    rm -rf "$work"
) 9>"$EMU_DIR/.mkfs-f2fs.lock"
[ -x "$out/mkfs.f2fs" ] || die "mkfs.f2fs for $bs-byte blocks was not built"
echo "$out/mkfs.f2fs"
