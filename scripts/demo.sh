#!/usr/bin/env bash
# The demo: builds fusegated, makes a sample lower tree and a sample policy in a temporary
# directory, mounts the storage view, says what to try, and cleans everything up on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "demo: fusegated mounts and registers passthrough files, so run this as root (sudo $0)" >&2
    exit 1
fi

cargo build --release --bin fusegated
bin=target/release/fusegated
demo=$(mktemp -d /tmp/fusegate-demo.XXXXXX)
chmod 755 "$demo"   # app uids must be able to reach the mount point
lower=$demo/lower
mnt=$demo/storage
mkdir -p "$mnt"

daemon=
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
        kill -TERM "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    mountpoint -q "$mnt" 2>/dev/null && umount -l "$mnt" || true
    rm -rf "$demo"
    echo "demo: cleaned up $demo"
}
trap cleanup EXIT INT TERM

# A small Android-like storage tree.
mkdir -p "$lower"/{DCIM/Camera,Pictures,Movies,Music,Download,Documents}
mkdir -p "$lower"/Android/data/com.example.camera/files "$lower"/Android/data/com.example.music/files
echo "a photo" > "$lower/DCIM/Camera/IMG_0001.jpg"
echo "a video" > "$lower/DCIM/Camera/VID_0001.mp4"
echo "a song" > "$lower/Music/song.mp3"
echo "a report" > "$lower/Download/report.pdf"
echo "camera's private data" > "$lower/Android/data/com.example.camera/files/state.bin"
echo "music's private data" > "$lower/Android/data/com.example.music/files/state.bin"
cat > "$demo/policy.toml" <<'TOML'
# Two apps: a camera that may read images and videos, a music player that may read audio.
[[app]]
uid = 10057
packages = ["com.example.camera"]
permissions = ["read_images", "read_video"]

[[app]]
uid = 10058
packages = ["com.example.music"]
permissions = ["read_audio"]

# The user shared one document with the music app.
[[grant]]
uid = 10058
path = "Download/report.pdf"
access = "read"
TOML

"$bin" --lower "$lower" --mount "$mnt" --policy "$demo/policy.toml" &
daemon=$!
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
mountpoint -q "$mnt" || { echo "demo: fusegated did not mount" >&2; exit 1; }

cat <<MSG

fusegate is serving $lower on $mnt (policy: $demo/policy.toml).
Try, in another terminal (apps are uids; setpriv runs a command as one):

  cd $mnt
  cam="setpriv --reuid 10057 --regid 10057 --clear-groups"   # com.example.camera
  music="setpriv --reuid 10058 --regid 10058 --clear-groups" # com.example.music

  ls -l DCIM/Camera                          # root sees everything
  \$cam ls DCIM/Camera                       # camera: images and videos
  \$music ls DCIM/Camera                     # music: nothing to see there
  \$music cat DCIM/Camera/IMG_0001.jpg       # -> Permission denied
  \$music cat Download/report.pdf            # granted -> a report
  \$cam ls Android/data                      # only com.example.camera
  \$cam cat Android/data/com.example.music/files/state.bin   # -> No such file or directory
  \$cam sh -c 'echo hi > DCIM/Camera/new.jpg' # an app creates its own photo
  \$cam sh -c 'echo hi > Music/new.jpg'       # -> Operation not permitted (images go to DCIM/Pictures/Movies)
  kill -USR1 $daemon                         # statistics, logged here
  kill -HUP $daemon                          # reload the policy after editing it

Press Ctrl-C to unmount and clean up.
MSG
wait "$daemon"
