#!/usr/bin/env bash
# Installs every Debian package that imgvault's build, tests and benchmarks need.
# Idempotent: asks dpkg first and calls apt-get only for what is missing.
set -euo pipefail

PKGS=(
  # build
  build-essential pkg-config
  libfuse3-dev fuse3 libsodium-dev libsqlite3-dev sqlite3 libmagic-dev file
  libmicrohttpd-dev libvips-dev
  # make deb, and the packaging tests (systemd-analyze comes with systemd)
  dpkg-dev debhelper fakeroot lintian systemd
  # tests and fuzzing
  python3 python3-pytest python3-pil imagemagick libimage-exiftool-perl attr rsync nginx-light
  icc-profiles-free curl chromium openssl
  # (chromium: the preview page in a real browser)
  clang-14 libfuzzer-14-dev libclang-rt-14-dev
  # benchmarks: the anchors and the photo corpus' source pictures
  gocryptfs libvips-tools mate-backgrounds wrk
)

missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ $st == installed ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

echo "deps.sh: installing ${missing[*]}" >&2
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps.sh: missing packages (${missing[*]}); run as root or install sudo" >&2; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
