#!/bin/bash
# Writes the schema-4 golden stores (tests/golden/README.md) with the binaries
# of commit 6669d5e, the last commit of catalog schema 4.  Kept for the
# record: these stores are written once and never regenerated.
#
#   git worktree add ../imgvault-v4 6669d5e && (cd ../imgvault-v4 && make -j2 all)
#   tests/golden/make-v4.sh [OLD_BUILD_DIR] [OUT_DIR]      (as root)
#
# Needs root (useradd, FUSE mount, system store), /usr/bin/convert
# (ImageMagick 6), setfattr, fusermount3, sqlite3, python3.
set -euo pipefail

OLD=${1:?usage: make-v4.sh OLD_BUILD_DIR [OUT_DIR] (the build of 6669d5e)}
OUT=${2:-$(cd "$(dirname "$0")" && pwd)}
IV=$OLD/imgvault
IVD=$OLD/imgvaultd
CONVERT=/usr/bin/convert
GOLD_USER=ivgold
GOLD_UID=4747
PASSPHRASE="golden v4 passphrase: correct horse battery staple"

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for d in store-v4-desktop store-v4-system; do
	[ ! -e "$OUT/$d" ] || { echo "$OUT/$d exists: golden stores are never regenerated" >&2; exit 1; }
done

# The CLI sees none of the caller's imgvault settings (conftest.clean_env).
for v in $(env | sed -n 's/^\(IMGVAULT_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset CREDENTIALS_DIRECTORY
export LC_ALL=C LANG=C

WORK=$(mktemp -d /tmp/golden-v4.XXXXXX)
chmod 755 "$WORK"
DAEMON=
cleanup() {
	if [ -n "$DAEMON" ]; then kill -TERM "$DAEMON" 2>/dev/null || true; wait "$DAEMON" || true; fi
	for m in "$WORK"/mnt-*; do [ -d "$m" ] && fusermount3 -u -z "$m" 2>/dev/null || true; done
	[ -n "${KEEP_WORK:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

# ---- images: fixed ImageMagick parameters, metadata stripped (no dates) ----
IMG=$WORK/images
mkdir -p "$IMG/edit"
cv() { "$CONVERT" "$@"; }
cv -seed 11 -size 96x64 plasma: -strip -quality 85 "$IMG/sunset.jpg"
cv -size 48x48 xc:none -fill 'rgba(200,30,30,0.6)' -draw 'circle 24,24 24,6' \
	-strip -define png:exclude-chunks=date,time "$IMG/alpha badge.png"
cv -size 32x24 xc:blue -fill yellow -draw 'rectangle 4,4 20,16' -strip "$IMG/icon.gif"
cv -seed 12 -size 80x60 plasma: -strip -quality 80 "$IMG/café-été.jpg"
# the edit of sunset.jpg: same name, new content
cv -seed 11 -size 96x64 plasma: -flop -fill white -draw 'rectangle 2,2 20,12' -strip \
	-quality 85 "$IMG/edit/sunset.jpg"
# system store images
cv -seed 21 -size 72x48 plasma: -strip -quality 85 "$IMG/harbour.jpg"
cv -seed 22 -size 40x40 gradient:green-white -strip -define png:exclude-chunks=date,time \
	"$IMG/gradient.png"
cv -seed 23 -size 72x48 plasma: -flip -strip -quality 85 "$IMG/edit-harbour.jpg"
mkdir -p "$IMG/edit2" && cp "$IMG/edit-harbour.jpg" "$IMG/edit2/harbour.jpg"

wait_mount() {  # wait_mount PID MNT
	for _ in $(seq 300); do
		grep -qF " $2 " /proc/self/mountinfo && return 0
		kill -0 "$1" 2>/dev/null || { echo "imgvaultd exited" >&2; return 1; }
		sleep 0.1
	done
	echo "imgvaultd did not mount $2" >&2; return 1
}
stop_daemon() {
	fusermount3 -u "$1"
	wait "$DAEMON"
	DAEMON=
}

# ======================= desktop store =======================
D=$WORK/store-v4-desktop
mkdir -p "$D"
printf '%s\n' "$PASSPHRASE" > "$D/passphrase"
chmod 600 "$D/passphrase"
DS=$D/store
"$IV" --json init "$DS" --passphrase-file "$D/passphrase" --kdf interactive > "$WORK/init-d.json"
python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["recovery_code"])' \
	< "$WORK/init-d.json" > "$D/recovery-code"
div() { "$IV" -s "$DS" --passphrase-file "$D/passphrase" "$@"; }
div --no-progress import --album holidays "$IMG/sunset.jpg" "$IMG/alpha badge.png" "$IMG/café-été.jpg"
div --no-progress import --album "misc stuff" "$IMG/icon.gif"
div --no-progress import --album holidays "$IMG/edit/sunset.jpg"    # a second version

# tags and comments, through the mount's extended attributes
MNT=$WORK/mnt-desktop
mkdir -m 700 "$MNT"
"$IVD" --passphrase-file "$D/passphrase" --control "$WORK/control-d.sock" \
	--keyring "$WORK/control-d.sock.pub" -f "$DS" "$MNT" > "$WORK/imgvaultd-d.log" 2>&1 &
DAEMON=$!
wait_mount "$DAEMON" "$MNT"
setfattr -n user.xdg.tags -v "beach,summer,2024" "$MNT/holidays/original/sunset.jpg"
setfattr -n user.xdg.comment -v "Edited: flopped, white box." "$MNT/holidays/original/sunset.jpg"
setfattr -n user.xdg.tags -v "red,badge" "$MNT/holidays/original/alpha badge.png"
setfattr -n user.xdg.comment -v "Été à Paris — café ☕" "$MNT/holidays/original/café-été.jpg"
div --json share holidays/sunset.jpg --ttl 7d > "$WORK/share-d.json"    # 7d: the most allowed
stop_daemon "$MNT"
cat "$WORK/imgvaultd-d.log"
div --no-progress thumbs

# ======================= system store =======================
S=$WORK/store-v4-system
mkdir -p "$S"
SS=$S/store
if ! getent passwd "$GOLD_USER" >/dev/null; then
	useradd -M -N -u "$GOLD_UID" -s /usr/sbin/nologin "$GOLD_USER"
fi
[ "$(id -u "$GOLD_USER")" = "$GOLD_UID" ] || { echo "$GOLD_USER is not uid $GOLD_UID" >&2; exit 1; }
"$IV" init "$SS" --server-key "$S/server.key"
siv() { "$IV" -s "$SS" -k "$S/server.key" "$@"; }
siv --json user add "$GOLD_USER" --no-passphrase > "$WORK/useradd.json"
python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["recovery_code"])' \
	< "$WORK/useradd.json" > "$S/recovery-code"
siv --no-progress -u "$GOLD_USER" import --album trips "$IMG/harbour.jpg" "$IMG/gradient.png"
siv --no-progress -u "$GOLD_USER" import --album trips "$IMG/edit2/harbour.jpg"
siv --no-progress -u "$GOLD_USER" thumbs

MNT=$WORK/mnt-system
mkdir -m 755 "$MNT"
"$IVD" --system -k "$S/server.key" --control "$WORK/control-s.sock" \
	--keyring "$WORK/control-s.sock.pub" -f "$SS" "$MNT" > "$WORK/imgvaultd-s.log" 2>&1 &
DAEMON=$!
wait_mount "$DAEMON" "$MNT"
siv partner add printshop --cidr 198.51.100.0/24 --ttl 48h --max-ttl 7d
# as the user (root's -u is not for share), through the daemon's socket
runuser -u "$GOLD_USER" -- "$IV" -s "$SS" --control "$WORK/control-s.sock" --json \
	share trips/harbour.jpg --partner printshop --ttl 7d > "$WORK/share-s.json"
stop_daemon "$MNT"
cat "$WORK/imgvaultd-s.log"
siv -u "$GOLD_USER" ls trips      # the lock names a CLI run, not a gone socket

# ======================= finish =======================
# Both stores closed (no daemon, no CLI): fold any WAL into catalog.db.
for st in "$DS" "$SS"; do
	sqlite3 "$st/catalog.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
	rm -f "$st/catalog.db-wal" "$st/catalog.db-shm"
	[ "$(sqlite3 "$st/catalog.db" 'PRAGMA user_version;')" = 4 ]
	[ "$(sqlite3 "$st/catalog.db" 'PRAGMA integrity_check;')" = ok ]
	rm -f "$st/catalog.db-wal" "$st/catalog.db-shm"
done

# manifest.json of each store: what the new code must read back
python3 - "$WORK" "$IMG" "$GOLD_USER" "$GOLD_UID" <<'PY'
import hashlib, json, sys
from pathlib import Path
work, img, user, uid = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()
def entry(album, name, current, pristine, tags=None, comment=None):
    return {"album": album, "name": name, "sha256": sha(current),
            "pristine_sha256": sha(pristine), "edited": sha(current) != sha(pristine),
            "tags": tags, "comment": comment}
def share(path):
    return json.loads(Path(path).read_text().strip().splitlines()[-1])
desktop = {
    "format": "catalog schema 4", "written_by": "6669d5e", "kind": "desktop",
    "passphrase_file": "passphrase", "recovery_code_file": "recovery-code", "store": "store",
    "kdf": "interactive", "owner_uid": 0,
    "albums": ["holidays", "misc stuff"],
    "images": [
        entry("holidays", "sunset.jpg", img / "edit/sunset.jpg", img / "sunset.jpg",
              "beach,summer,2024", "Edited: flopped, white box."),
        entry("holidays", "alpha badge.png", img / "alpha badge.png", img / "alpha badge.png",
              "red,badge", None),
        entry("holidays", "café-été.jpg", img / "café-été.jpg", img / "café-été.jpg",
              None, "Été à Paris — café ☕"),
        entry("misc stuff", "icon.gif", img / "icon.gif", img / "icon.gif"),
    ],
    "shares": [{"image": "holidays/sunset.jpg", "token_id": share(work / "share-d.json")["token_id"],
                "ttl": "7d", "partner": None}],
    "partners": [],
}
system = {
    "format": "catalog schema 4", "written_by": "6669d5e", "kind": "system",
    "server_key_file": "server.key", "store": "store",
    "users": [{"name": user, "uid": uid, "passphrase": False,
               "recovery_code_file": "recovery-code"}],
    "albums": ["trips"],
    "images": [
        dict(entry("trips", "harbour.jpg", img / "edit2/harbour.jpg", img / "harbour.jpg"), user=user),
        dict(entry("trips", "gradient.png", img / "gradient.png", img / "gradient.png"), user=user),
    ],
    "shares": [{"user": user, "image": "trips/harbour.jpg", "partner": "printshop", "ttl": "7d",
                "token_id": share(work / "share-s.json")["token_id"]}],
    "partners": [{"name": "printshop", "cidrs": ["198.51.100.0/24"], "ttl": "48h", "max_ttl": "7d"}],
}
for name, m in (("store-v4-desktop", desktop), ("store-v4-system", system)):
    (work / name / "manifest.json").write_text(json.dumps(m, indent=2, ensure_ascii=False) + "\n")
PY

# a check with the old binaries, on a copy: everything reads back, fsck and audit clean
python3 - "$WORK" "$IV" "$GOLD_USER" <<'PY'
import hashlib, json, shutil, subprocess, sys
from pathlib import Path
work, iv, user = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
for name in ("store-v4-desktop", "store-v4-system"):
    src = work / name
    dst = work / "verify" / name
    shutil.copytree(src, dst, symlinks=True)
    m = json.loads((dst / "manifest.json").read_text())
    pre = [iv, "-s", dst / "store"]
    if m["kind"] == "desktop":
        pre += ["--passphrase-file", dst / "passphrase"]
    else:
        pre += ["-k", dst / "server.key", "-u", user]
    def run(*a):
        return subprocess.run([*map(str, pre), *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for im in m["images"]:
        spec = f'{im["album"]}/{im["name"]}'
        for flag, key in (([], "sha256"), (["--pristine"], "pristine_sha256")):
            r = run("cat", *flag, spec)
            assert r.returncode == 0, (spec, r.stderr)
            assert hashlib.sha256(r.stdout).hexdigest() == im[key], (spec, flag)
    r = run("fsck")
    assert r.returncode == 0 and b"damaged:" not in r.stdout, r
    r = run("audit", "verify")
    assert r.returncode == 0, r
    print(f"{name}: {len(m['images'])} images read back, fsck and audit verify clean")
PY

mkdir -p "$OUT"
for d in store-v4-desktop store-v4-system; do
	cp -a "$WORK/$d" "$OUT/$d"
done
echo "wrote $OUT/store-v4-desktop and $OUT/store-v4-system"
du -sh "$OUT/store-v4-desktop" "$OUT/store-v4-system"
