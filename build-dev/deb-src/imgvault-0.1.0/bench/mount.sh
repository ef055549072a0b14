#!/usr/bin/env bash
# make bench, part 3: the mounted tree against gocryptfs and a plain directory,
# the same work on each, in one run:
#   cp of the photo corpus in, cold read of every file, ls -lR, 2000 random
#   64 KiB reads, rm -rf; then ls -lR of 10,000 images (warm) and the
#   daemon's peak RSS during the ingest.
set -euo pipefail

BUILD=${1:?usage: bench/mount.sh BUILD_DIR CORPUS}
CORPUS=${2:?usage: bench/mount.sh BUILD_DIR CORPUS}
WORK=$(mktemp -d /var/tmp/imgvault-mbench.XXXXXX)
GO=$WORK/go.mnt IV=$WORK/iv.mnt PLAIN=$WORK/plain
IVPID=

cleanup() {
  for m in "$GO" "$IV"; do mountpoint -q "$m" 2>/dev/null && fusermount3 -u -z "$m"; done
  [[ -n $IVPID ]] && kill "$IVPID" 2>/dev/null && wait "$IVPID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { local t0; t0=$(now); "$@" >/dev/null 2>&1; awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.3f", b - a}'; }
drop_caches() { sync; [[ $(id -u) -eq 0 ]] && echo 3 >/proc/sys/vm/drop_caches || true; }

mapfile -t FILES < <(find "$CORPUS" -type f | LC_ALL=C sort)
bytes=$(cat "${FILES[@]}" | wc -c)
printf 'bench passphrase\n' >"$WORK/pass"

# The three targets; each gets the corpus flattened into one directory
# (imgvault's original/ holds files only).
mkdir -p "$GO" "$IV" "$PLAIN" "$WORK/go.cipher"
gocryptfs -q -init -passfile "$WORK/pass" "$WORK/go.cipher" >/dev/null
gocryptfs -q -passfile "$WORK/pass" "$WORK/go.cipher" "$GO" 2>/dev/null
"$BUILD/imgvault" init "$WORK/store" --passphrase-file "$WORK/pass" --kdf interactive -q >/dev/null
"$BUILD/imgvaultd" "$WORK/store" "$IV" --passphrase-file "$WORK/pass" -f 2>"$WORK/iv.log" &
IVPID=$!
for _ in $(seq 100); do mountpoint -q "$IV" && break; sleep 0.1; done
mountpoint -q "$IV" || { cat "$WORK/iv.log"; echo "imgvaultd did not mount" >&2; exit 1; }
declare -A DEST=([plain]=$PLAIN/d [gocryptfs]=$GO/d [imgvault]=$IV/default/original)
mkdir -p "$PLAIN/d" "$GO/d"

declare -A T
for fs in plain gocryptfs imgvault; do
  d=${DEST[$fs]}
  drop_caches
  T[$fs.ingest]=$(secs bash -c 'cp -t "$0" "$@" && sync' "$d" "${FILES[@]}")
  if [[ $fs == imgvault ]]; then
    T[rss]=$(awk '/VmHWM/{print $2}' /proc/$IVPID/status)
  fi
  drop_caches
  T[$fs.read]=$(secs bash -c 'cat "$0"/* >/dev/null' "$d")
  T[$fs.ls]=$(secs ls -lR "$d")
  drop_caches
  T[$fs.random]=$(secs python3 - "$d" <<'PY'
import os, random, sys
d = sys.argv[1]
files = [os.path.join(d, f) for f in sorted(os.listdir(d))]
sizes = {f: os.path.getsize(f) for f in files}
rng = random.Random(2000)
for _ in range(2000):
    f = rng.choice(files)
    off = rng.randrange(0, max(1, sizes[f] - 65536))
    with open(f, "rb") as fh:
        fh.seek(off)
        fh.read(65536)
PY
)
  T[$fs.rm]=$(secs bash -c 'rm -rf "$0"/*' "$d")
done

# ls -lR of 10,000 images, warm: tiny files, imported without thumbnails.
mkdir -p "$WORK/many"
/usr/bin/convert -size 8x8 xc:gray "$WORK/one.jpg"
for i in $(seq -w 1 10000); do ln "$WORK/one.jpg" "$WORK/many/p$i.jpg"; done
kill "$IVPID"; wait "$IVPID" 2>/dev/null || true; IVPID=
"$BUILD/imgvault" -s "$WORK/store" --passphrase-file "$WORK/pass" -q --no-progress import --album many --no-thumbs "$WORK/many" >/dev/null
"$BUILD/imgvaultd" "$WORK/store" "$IV" --passphrase-file "$WORK/pass" -f 2>>"$WORK/iv.log" &
IVPID=$!
for _ in $(seq 100); do mountpoint -q "$IV" && break; sleep 0.1; done
ls -lR "$IV/many/original" >/dev/null
T[ls10k]=$(secs ls -lR "$IV/many/original")

awk -v b="$bytes" -v n="${#FILES[@]}" \
    -v pi="${T[plain.ingest]}" -v gi="${T[gocryptfs.ingest]}" -v ii="${T[imgvault.ingest]}" \
    -v pr="${T[plain.read]}" -v gr="${T[gocryptfs.read]}" -v ir="${T[imgvault.read]}" \
    -v pl="${T[plain.ls]}" -v gl="${T[gocryptfs.ls]}" -v il="${T[imgvault.ls]}" \
    -v pq="${T[plain.random]}" -v gq="${T[gocryptfs.random]}" -v iq="${T[imgvault.random]}" \
    -v pd="${T[plain.rm]}" -v gd="${T[gocryptfs.rm]}" -v id="${T[imgvault.rm]}" \
    -v ls10k="${T[ls10k]}" -v rss="${T[rss]}" 'BEGIN{
  printf "%-22s %10s %10s %10s %12s\n", n " files, " int(b/1e6) " MB", "plain", "gocryptfs", "imgvault", "vs gocryptfs"
  printf "%-22s %9.2fs %9.2fs %9.2fs %11.2fx\n", "cp in + sync", pi, gi, ii, gi / ii
  printf "%-22s %9.2fs %9.2fs %9.2fs %11.2fx\n", "cold read", pr, gr, ir, gr / ir
  printf "%-22s %9.2fs %9.2fs %9.2fs %11.2fx\n", "ls -lR", pl, gl, il, gl / il
  printf "%-22s %9.2fs %9.2fs %9.2fs %11.2fx\n", "2000 random 64K reads", pq, gq, iq, gq / iq
  printf "%-22s %9.2fs %9.2fs %9.2fs %11.2fx\n", "rm -rf", pd, gd, id, gd / id
  printf "cold read MB/s: gocryptfs %.0f, imgvault %.0f (goal: 1.2x gocryptfs or more)\n", b/gr/1e6, b/ir/1e6
  printf "ingest vs gocryptfs: %.2fx (goal: 0.8x or more; thumbnails are extra, asynchronous)\n", gi / ii
  printf "ls -lR of 10,000 images, warm: %.3f s (goal: under 0.5 s)\n", ls10k
  printf "imgvaultd peak RSS during the ingest: %.0f MiB (goal: under 100 MiB)\n", rss / 1024
}'
