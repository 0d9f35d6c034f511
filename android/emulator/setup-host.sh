#!/usr/bin/env bash
# Install what the arm64 emulator needs on a Debian host (run as root; idempotent, fast when done):
#   * the <codename>-backports apt source (adbd 34 and qemu 10 live there on bookworm),
#   * the arm64 foreign architecture (to `apt-get download` the guest's kernel, busybox, adbd),
#   * qemu-system-aarch64, cpio, adb, file, jq, xz, readelf,
#   * the Rust targets aarch64-unknown-linux-musl and aarch64-linux-android.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

want_cmds=(qemu-system-aarch64 cpio adb file jq xz readelf flock timeout)
want_pkgs=(qemu-system-arm cpio adb file jq xz-utils binutils util-linux coreutils)

missing_cmds=()
for c in "${want_cmds[@]}"; do
    command -v "$c" >/dev/null 2>&1 || missing_cmds+=("$c")
done
have_arm64=0
dpkg --print-foreign-architectures 2>/dev/null | grep -qx arm64 && have_arm64=1
have_arm64_lists=0
if [ "$have_arm64" = 1 ] && compgen -G '/var/lib/apt/lists/*_binary-arm64_Packages*' >/dev/null; then
    have_arm64_lists=1
fi

if [ ${#missing_cmds[@]} -gt 0 ] || [ "$have_arm64_lists" = 0 ]; then
    [ "$(id -u)" = 0 ] || die "need root to install host packages (missing: ${missing_cmds[*]:-arm64 apt lists})"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC1091
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [ -n "$codename" ] || die "cannot tell the Debian release from /etc/os-release"
    if ! grep -rqs -- "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding the ${codename}-backports apt source"
        cat >/etc/apt/sources.list.d/fusegate-backports.sources <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${codename}-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    if [ "$have_arm64" = 0 ]; then
        log "adding the arm64 foreign architecture"
        dpkg --add-architecture arm64
    fi
    log "apt-get update"
    apt-get update -q >/dev/null || die "apt-get update failed"

    # qemu from backports is 10.x on bookworm (boots in ~3 s; 7.2 needs pauth-impdef). Installing
    # the distribution's qemu can replace a newer preinstalled qemu-utils: note it, restore it.
    had_qemu_utils=0
    dpkg-query -W -f='${Status}' qemu-utils 2>/dev/null | grep -q 'install ok installed' && had_qemu_utils=1
    log "installing ${want_pkgs[*]}"
    if ! apt-get install -y -q --no-install-recommends -t "${codename}-backports" "${want_pkgs[@]}" >/dev/null; then
        log "backports install failed; trying the release's packages"
        apt-get install -y -q --no-install-recommends "${want_pkgs[@]}" >/dev/null ||
            die "apt-get install ${want_pkgs[*]} failed"
    fi
    if [ "$had_qemu_utils" = 1 ] && ! dpkg-query -W -f='${Status}' qemu-utils 2>/dev/null | grep -q 'install ok installed'; then
        log "qemu-utils was removed by the qemu install; reinstalling it"
        apt-get install -y -q --no-install-recommends qemu-utils >/dev/null || die "reinstalling qemu-utils failed"
    fi
    for c in "${want_cmds[@]}"; do
        command -v "$c" >/dev/null 2>&1 || die "'$c' still missing after installing ${want_pkgs[*]}"
    done
fi

if command -v rustup >/dev/null 2>&1; then
    installed="$(rustup target list --installed)"
    for t in aarch64-unknown-linux-musl aarch64-linux-android; do
        if ! grep -qx "$t" <<<"$installed"; then
            log "rustup target add $t"
            rustup target add "$t" >/dev/null || die "rustup target add $t failed"
        fi
    done
else
    log "warning: rustup not found; make sure the aarch64-unknown-linux-musl target is installed"
fi

log "host ready: $(qemu-system-aarch64 --version | head -1)"
