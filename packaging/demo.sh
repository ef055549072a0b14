#!/usr/bin/env bash
# make run: a throwaway demo vault with a few generated photos (with EXIF GPS).
# Until the mount and the gateway exist, it shows the command line at work.
# Everything lives in one temporary directory, removed on exit or Ctrl-C.
set -euo pipefail

BUILD=${1:?usage: demo.sh BUILD_DIR}
IV=$BUILD/imgvault
DEMO=$(mktemp -d /tmp/imgvault-demo.XXXXXX)
trap 'rm -rf "$DEMO"; echo; echo "demo removed: $DEMO"' EXIT
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
echo
echo "What a thief of the store sees (no names, no pixels):"
find "$DEMO/store" -type f | sed "s|$DEMO/||" | head -8
echo
cat <<TXT
The demo store is $DEMO/store, its passphrase is in $DEMO/passphrase.
Try, in another terminal:
  export IMGVAULT_STORE=$DEMO/store
  $IV --passphrase-file $DEMO/passphrase cat holidays/IMG_0001.jpg > /tmp/x.jpg
  $IV --passphrase-file $DEMO/passphrase export /tmp/out
  $IV audit
TXT
if [[ -t 0 ]]; then
  echo "Press Ctrl-C to remove the demo."
  while sleep 3600; do :; done
fi
