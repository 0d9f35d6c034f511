#!/bin/busybox sh
# /init of the fusegate arm64 test guest (busybox-static; Linux, not Android).
#
# Two modes:
#  * run: the cargo runner appended a cpio with /fusegate/run.sh (plus the test binary and the
#    daemon at their host paths). Run it, let it print its exit marker, power off.
#  * adb: otherwise. Bring up eth0 (virtio-net, qemu user networking) and serve adbd on :5555
#    until someone runs `adb shell poweroff -f`.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /data /root /mnt /usr/bin /usr/sbin /sbin
/bin/busybox mount -t devtmpfs devtmpfs /dev
# The initramfs may have no /dev/console: make sure our output reaches the serial console.
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root TMPDIR=/tmp

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# tmpfs on 6.12 supports name_to_handle_at/open_by_handle_at and user.* xattrs. Files the
# cargo runner placed under these paths (e.g. a doctest in /tmp/rustdoctestXXX) move onto them.
fresh_tmpfs() { # DIR MODE
    if [ -n "$(ls -A "$1" 2>/dev/null)" ]; then
        mv "$1" "$1.initramfs"
        mkdir "$1"
    fi
    mount -t tmpfs -o "mode=$2" tmpfs "$1"
    if [ -d "$1.initramfs" ]; then
        cp -a "$1.initramfs/." "$1/" && rm -rf "$1.initramfs"
    fi
}
fresh_tmpfs /tmp 1777
fresh_tmpfs /data 771
mkdir -p /data/local/tmp /data/media/0 /mnt/user/0/emulated/0
chmod 1777 /data/local/tmp
hostname fusegate-arm64

# Modules (build-guest.sh lists them in load order): network, virtio-blk, ext4, f2fs and what
# they need. One that will not load is reported, not fatal: the test that needs it says so.
if [ -f /lib/modules/load.list ]; then
    while read -r m; do
        insmod "/lib/modules/$m.ko" 2>/tmp/insmod.err ||
            echo "fusegate-guest: insmod $m failed: $(cat /tmp/insmod.err)"
    done </lib/modules/load.list
fi

# The lower disk (test-arm64.sh --lower-fs, cargo runner with FUSEGATE_GUEST_LOWER_FS): the
# second virtio-blk disk, mounted at /data/lower as the filesystem named on the command line.
lower_fs="$(sed -n 's/.*fusegate\.lower=\([a-z0-9]*\).*/\1/p' /proc/cmdline)"
if [ -n "$lower_fs" ]; then
    mkdir -p /data/lower
    if mount -t "$lower_fs" /dev/vda /data/lower 2>/tmp/mount.err; then
        chmod 0771 /data/lower
        echo "fusegate-guest: lower $lower_fs on /dev/vda at /data/lower"
    else
        echo "fusegate-guest: mounting /dev/vda ($lower_fs) at /data/lower FAILED: $(cat /tmp/mount.err)"
        dmesg | tail -n 5
    fi
fi
ln -sf /proc/self/fd /dev/fd 2>/dev/null || true

poweroff_now() {
    sync
    poweroff -f
    # not reached; PID 1 must never exit
    while true; do sleep 3600; done
}

if [ -f /fusegate/run.sh ]; then
    sh /fusegate/run.sh </dev/null
    poweroff_now
fi
if grep -q 'fusegate.mode=run' /proc/cmdline; then
    echo "fusegate-guest: run mode, but the runner's archive (/fusegate/run.sh) did not unpack"
    poweroff_now
fi

# adb mode
ip link set lo up
ip link set eth0 up || echo "fusegate-guest: no eth0 (was qemu started with a virtio-net device?)"
# qemu user networking: guest 10.0.2.15, restricted (no route out), host port forwarded to :5555.
ip addr add 10.0.2.15/24 dev eth0 || true
echo "fusegate-guest: $(uname -srm), adbd starting at $(cut -d" " -f1 /proc/uptime)s"
cd /
# adbd exits on `adb root`/`adb unroot`/`adb tcpip`; respawn it like Android's init would.
while true; do
    LD_LIBRARY_PATH=/usr/lib/aarch64-linux-gnu/android ADBD_PORT=5555 /usr/sbin/adbd >>/tmp/adbd.log 2>&1
    echo "fusegate-guest: adbd exited with $?, restarting"
    sleep 1
done
