#!/usr/bin/env bash
# make bench: imgvault against its anchors on the same bytes, in one run.
#
#   1. blob encrypt/decrypt throughput against plain write/read (one core)
#   1b. the authenticated catalog's unlock check against reading the same rows
#   2. import of the photo corpus against `cp -r` into a gocryptfs mount
#
# The photo corpus is ../shared/bench/make-corpus.sh's (120 files); it is made
# once and kept in BUILD/bench/corpus.  Needs root (or fuse access) for gocryptfs.
set -euo pipefail

BUILD=${1:?usage: bench/run.sh BUILD_DIR}
TOP=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /var/tmp/imgvault-bench.XXXXXX)
CORPUS=${IMGVAULT_CORPUS:-$BUILD/bench/corpus}
N=${IMGVAULT_CORPUS_N:-120}
MNT=$WORK/gocryptfs.mnt

cleanup() {
  mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u -z "$MNT" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== blob throughput =="
taskset -c 0 "$BUILD/bench/blob_throughput" "$WORK" 256

echo
# The check every unlock runs (every catalog row's MAC and the vault's seal).
"$BUILD/bench/catalog_auth" "$WORK" "${IMGVAULT_AUTH_N:-100000}"

if [[ ! -f $CORPUS.sha256 ]]; then
  MAKE_CORPUS=$TOP/../shared/bench/make-corpus.sh
  [[ -x $MAKE_CORPUS || -f $MAKE_CORPUS ]] || { echo "no $MAKE_CORPUS: cannot make the photo corpus" >&2; exit 1; }
  rm -rf "$CORPUS"
  echo "== making the photo corpus ($N files, once) =="
  bash "$MAKE_CORPUS" "$CORPUS" "$N" >/dev/null
fi
files=$(find "$CORPUS" -type f | wc -l)
bytes=$(find "$CORPUS" -type f -printf '%s\n' | awk '{s+=$1} END{print s}')
echo
echo "== import of the photo corpus: $files files, $((bytes / 1000000)) MB =="

secs() { # secs CMD... -> wall seconds of CMD
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}'
}

# gocryptfs: cp -r into the mount, then sync so both pay for durability.
printf 'benchmark passphrase\n' >"$WORK/pass"
mkdir -p "$WORK/gocryptfs.cipher" "$MNT"
gocryptfs -q -init -passfile "$WORK/pass" "$WORK/gocryptfs.cipher" >/dev/null
gocryptfs -q -passfile "$WORK/pass" "$WORK/gocryptfs.cipher" "$MNT"
sync
go_t=$(secs bash -c "cp -r '$CORPUS' '$MNT/corpus' && sync")
fusermount3 -u "$MNT"

# imgvault: import (each image is fsynced and committed on its own).
"$BUILD/imgvault" init "$WORK/store" --passphrase-file "$WORK/pass" --kdf interactive --json >/dev/null
sync
# Thumbnails are asynchronous by design (made after commit): measured below.
iv_t=$(secs "$BUILD/imgvault" -s "$WORK/store" --passphrase-file "$WORK/pass" -q --no-progress import --no-thumbs "$CORPUS")

# What was imported reads back: a check, not a timing.
"$BUILD/imgvault" -s "$WORK/store" --passphrase-file "$WORK/pass" -q fsck

awk -v g="$go_t" -v i="$iv_t" -v b="$bytes" 'BEGIN{
  printf "%-28s %9s %10s\n", "", "seconds", "MB/s"
  printf "%-28s %9.2f %10.1f\n", "gocryptfs cp -r + sync", g, b / g / 1e6
  printf "%-28s %9.2f %10.1f\n", "imgvault import", i, b / i / 1e6
  printf "import speed vs gocryptfs: %.2fx (goal: 1.00x or more)\n", g / i
}'

echo
echo "== thumbnails of the photo corpus: $files images, long edge 256 =="
mapfile -t IMAGES < <(find "$CORPUS" -type f | LC_ALL=C sort)
mkdir -p "$WORK/vt" "$WORK/im"
# The anchors as a web app would run them: one process per image, on two cores.
vt_t=$(secs bash -c 'printf "%s\0" "$@" | xargs -0 -P 2 -I{} sh -c '"'"'vipsthumbnail "$1" -s 256 -o "$2/$(basename "$1").%s.jpg"'"'"' _ {} "$0"' "$WORK/vt" "${IMAGES[@]}")
im_t=$(secs bash -c 'printf "%s\0" "$@" | xargs -0 -P 2 -I{} sh -c '"'"'/usr/bin/convert "$1[0]" -thumbnail 256x256 "$2/$(basename "$1").jpg"'"'"' _ {} "$0"' "$WORK/im" "${IMAGES[@]}")
# imgvault: the thumbnail workers (two), decrypting and encrypting as well.
/usr/bin/time -f "%M" -o "$WORK/rss" "$BUILD/imgvault" -s "$WORK/store" --passphrase-file "$WORK/pass" -q --no-progress thumbs >/dev/null
iv_thumbs=$(secs "$BUILD/imgvault" -s "$WORK/store" --passphrase-file "$WORK/pass" -q --no-progress thumbs --rebuild)
rss_kb=$(cat "$WORK/rss")
awk -v n="$files" -v v="$vt_t" -v m="$im_t" -v i="$iv_thumbs" -v rss="$rss_kb" 'BEGIN{
  printf "%-36s %9s %12s\n", "", "seconds", "thumbs/s"
  printf "%-36s %9.2f %12.1f\n", "vipsthumbnail, a process per image", v, n / v
  printf "%-36s %9.2f %12.1f\n", "convert -thumbnail, a process each", m, n / m
  printf "%-36s %9.2f %12.1f\n", "imgvault thumbs (2 workers)", i, n / i
  printf "thumbnails vs vipsthumbnail: %.2fx (goal: 1.00x or more); vs convert: %.2fx\n", v / i, m / i
  printf "imgvault peak RSS: %.0f MiB (goal: under 200 MiB with two workers)\n", rss / 1024
}'

echo
echo "== the mounted tree against gocryptfs and a plain directory =="
bash "$(dirname "$0")/mount.sh" "$BUILD" "$CORPUS"

echo
echo "== share links: imgvault-gateway against nginx =="
bash "$(dirname "$0")/gateway.sh" "$BUILD" "$CORPUS"
