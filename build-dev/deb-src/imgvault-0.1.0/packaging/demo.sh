#!/usr/bin/env bash
# make run: a throwaway demo vault with a few generated photos (with EXIF GPS),
# imported with the command line, then mounted with imgvaultd.  Everything
# lives in one temporary directory, unmounted and removed on exit or Ctrl-C.
set -euo pipefail

BUILD=${1:?usage: demo.sh BUILD_DIR}
IV=$BUILD/imgvault
IVD=$BUILD/imgvaultd
IVG=$BUILD/imgvault-gateway
DEMO=$(mktemp -d /tmp/imgvault-demo.XXXXXX)
MNT=$DEMO/mnt
# 8080 unless it is taken (or IMGVAULT_DEMO_PORT says otherwise).
PORT=${IMGVAULT_DEMO_PORT:-$(python3 -c 'import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 8080))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')}
DPID= GPID=
cleanup() {
  if [[ -n $GPID ]]; then
    kill "$GPID" 2>/dev/null; wait "$GPID" 2>/dev/null || true
  fi
  if [[ -n $DPID ]]; then
    kill "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null || true
  fi
  mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u -z "$MNT"
  rm -rf "$DEMO"
  echo; echo "demo unmounted and removed: $DEMO"
}
trap cleanup EXIT
trap 'exit 0' INT TERM
export IMGVAULT_STORE=$DEMO/store

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

mkdir -p "$DEMO/photos"
printf 'demo passphrase %s\n' "$RANDOM$RANDOM" >"$DEMO/passphrase"
# A handful of "photos": gradients and plasma, with camera EXIF and GPS.
i=0
for spec in "plasma:fractal" "gradient:skyblue-navy" "plasma:green-yellow" "gradient:orange-purple"; do
  i=$((i + 1))
  /usr/bin/convert -seed "$i" -size 1600x1200 "$spec" -quality 88 "$DEMO/photos/IMG_000$i.jpg"
  exiftool -q -overwrite_original -Make=Demo -Model="Camera $i" \
    -GPSLatitude=48.8566 -GPSLatitudeRef=N -GPSLongitude=2.3522 -GPSLongitudeRef=E \
    "$DEMO/photos/IMG_000$i.jpg"
done
/usr/bin/convert -size 640x480 radial-gradient:white-transparent "$DEMO/photos/sticker.png"
echo "not a picture" >"$DEMO/photos/notes.txt"

P=(--passphrase-file "$DEMO/passphrase")
step "$IV" init "$DEMO/store" "${P[@]}" --kdf interactive
step "$IV" "${P[@]}" import --album holidays "$DEMO/photos" || true
step "$IV" "${P[@]}" ls
step "$IV" "${P[@]}" ls holidays
step "$IV" "${P[@]}" fsck
step "$IV" audit verify
# Links are printed with the gateway's address (a store setting).
step "$IV" config share.base-url=http://127.0.0.1:$PORT
echo
echo "What a thief of the store sees (no names, no pixels):"
find "$DEMO/store" -type f | sed "s|$DEMO/||" | head -8

echo
echo "Mounting it with imgvaultd..."
mkdir -p "$MNT"
"$IVD" "$DEMO/store" "$MNT" "${P[@]}" -f --control "$DEMO/control.sock" 2>"$DEMO/imgvaultd.log" &
DPID=$!
for _ in $(seq 50); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || { cat "$DEMO/imgvaultd.log"; echo "imgvaultd did not mount" >&2; exit 1; }
sleep 1   # thumbnails are made in the background
step ls -l "$MNT/holidays/original" "$MNT/holidays/thumb"
step getfattr -d -m - "$MNT/holidays/original/IMG_0001.jpg"

echo
echo "Starting imgvault-gateway on 127.0.0.1:$PORT..."
"$IVG" --config /dev/null --listen "127.0.0.1:$PORT" --control "$DEMO/control.sock" \
  --keys "$DEMO/signing-keys.pub" 2>"$DEMO/gateway.log" &
GPID=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null ||
  { cat "$DEMO/gateway.log"; echo "imgvault-gateway did not start (port $PORT in use? set IMGVAULT_DEMO_PORT)" >&2; exit 1; }
step "$IV" share "$MNT/holidays/original/IMG_0001.jpg" --ttl 1h
cat <<TXT

The demo vault is mounted at $MNT
  (passphrase in $DEMO/passphrase; logs in $DEMO/imgvaultd.log and gateway.log)
The share link above works in a browser for an hour: the first line is the
image (GPS and camera details removed), "preview:" a page for people.
Try, in another terminal:
  cp ~/Pictures/some.jpg $MNT/holidays/original/
  ls -l $MNT/holidays/thumb/
  mkdir $MNT/trips
  setfattr -n user.xdg.tags -v beach $MNT/holidays/original/IMG_0002.jpg
  $IV share holidays/IMG_0002.jpg --download --uses 1
  $IV shares
TXT
if [[ -t 0 ]]; then
  echo "Press Ctrl-C to unmount and remove the demo."
  while sleep 3600; do :; done
fi
