#!/bin/bash
# Writes a small seed corpus for tests/fuzz/fuzz_strip.c into DIR: JPEG
# (baseline, progressive, restart markers, EXIF in both byte orders, XMP,
# IPTC, comment, ICC), PNG (text chunks, tIME, eXIf, APNG) and WebP (lossy,
# lossless, animated, EXIF and XMP), all tiny so the fuzzer runs fast.
# Needs ImageMagick (/usr/bin/convert) and exiftool; vips, if present, adds
# an ICC profile.  No binary seed is committed: run this instead.
#
#   tests/fuzz/make-seeds.sh /tmp/seeds
set -euo pipefail

dir=${1:?usage: make-seeds.sh DIR}
convert=/usr/bin/convert   # /usr/local/bin/convert may be a stand-in
for tool in "$convert" exiftool; do
	command -v "$tool" >/dev/null || { echo "make-seeds: $tool is missing" >&2; exit 1; }
done
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

exif() { exiftool -q -q -overwrite_original "$@"; }
src="$tmp/src.png"
"$convert" -seed 7 -size 16x12 plasma:fractal -depth 8 "$src"

# JPEG
"$convert" "$src" -quality 85 "$dir/plain.jpg"
"$convert" "$src" -interlace Plane -quality 85 "$dir/progressive.jpg"
"$convert" "$src" -colorspace Gray -quality 85 "$dir/gray.jpg"
"$convert" "$src" -colorspace CMYK -quality 85 "$dir/cmyk.jpg"
cp "$dir/plain.jpg" "$dir/meta-be.jpg"
exif -ExifByteOrder=Big-endian -Orientation#=6 -Make=Canon -SerialNumber=S1 \
	-GPSLatitude=1 -GPSLatitudeRef=N -XMP-iptcCore:Location=L -IPTC:City=C \
	-Comment=c "$dir/meta-be.jpg"
cp "$dir/plain.jpg" "$dir/meta-le.jpg"
exif -ExifByteOrder=Little-endian -Orientation#=8 -GPSLongitude=2 \
	-GPSLongitudeRef=E "$dir/meta-le.jpg"
if command -v vips >/dev/null; then
	vips copy "$dir/plain.jpg" "$dir/icc.jpg[profile=srgb]" 2>/dev/null ||
		rm -f "$dir/icc.jpg"
	vips jpegsave "$src" "$dir/restart.jpg" --restart-interval 1 2>/dev/null ||
		rm -f "$dir/restart.jpg"
fi
# A JPEG+ZIP polyglot: trailing bytes after EOI.
{ cat "$dir/meta-be.jpg"; printf 'PK\003\004trailing'; } >"$dir/polyglot.jpg"

# PNG
"$convert" "$src" "$dir/plain.png"
"$convert" "$src" -type Palette "$dir/palette.png"
cp "$dir/plain.png" "$dir/meta.png"
exif -PNG:Comment=t -PNG:Title-de=i -PNG:ModifyDate='2020:01:02 03:04:05' \
	-EXIF:Orientation#=3 -EXIF:GPSLatitude=1 -EXIF:GPSLatitudeRef=N \
	-XMP-iptcCore:Location=L "$dir/meta.png"
{ cat "$dir/meta.png"; printf 'PK\003\004trailing'; } >"$dir/polyglot.png"

# WebP
"$convert" "$src" -quality 80 "$dir/lossy.webp"
"$convert" "$src" -define webp:lossless=true "$dir/lossless.webp"
"$convert" "$src" -alpha set -channel A -evaluate set 50% -quality 80 "$dir/alpha.webp"
if command -v vips >/dev/null; then
	# ImageMagick 6 writes one frame only; libvips writes all of a GIF's.
	"$convert" -delay 10 "$src" \( "$src" -flip \) -loop 0 "$tmp/anim.gif"
	vips copy "$tmp/anim.gif[n=-1]" "$dir/anim.webp" 2>/dev/null || rm -f "$dir/anim.webp"
fi
cp "$dir/lossy.webp" "$dir/meta.webp"
exif -EXIF:Orientation#=6 -EXIF:GPSLatitude=1 -EXIF:GPSLatitudeRef=N \
	-XMP-iptcCore:Location=L "$dir/meta.webp"
# Share links, for tests/fuzz/fuzz_token.c: tokens (signed with the fixed
# Ed25519 seed 01 02 … 20 the target verifies with, when python3 has the
# cryptography module; otherwise structurally valid with a zero signature),
# keyrings, CIDR text, Range / If-None-Match headers and file names.
python3 - "$dir" <<'PY'
import base64, struct, sys
d = sys.argv[1]
try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    sign = lambda m: key.sign(m)
    pk = key.public_key().public_bytes_raw()
except Exception:
    sign = lambda m: bytes(64)
    pk = bytes(32)
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
kid = bytes([0x11] * 8)

def token(version=1, variant=0, disp=0, nb=1700000000, exp=1800000000, partner=0, uses=0,
          image=bytes(range(16))):
    p = (bytes([version]) + kid + bytes(range(100, 116)) + image + bytes([variant, disp]) +
         struct.pack("<qqQI", nb, exp, partner, uses))
    assert len(p) == 71
    return b64(p) + b"." + b64(sign(b"imgvault share token v1\0" + p))

def put(name, data):
    with open(f"{d}/{name}", "wb") as f:
        f.write(data)

put("tok-original", token())
put("tok-pristine-attachment", token(variant=1, disp=1, uses=3))
put("tok-thumb-partner", token(variant=2, partner=42, nb=0, exp=2**63 - 1))
put("tok-ones", token(image=bytes([0xff] * 16), uses=2**32 - 1, partner=2**64 - 1))
put("tok-version2", token(version=2))
put("tok-variant3", token(variant=3))
put("tok-expires-first", token(nb=2000, exp=1000))
put("keyring-good", b"# imgvault share-link signing keys, public halves only\n"
    b"imgvault-keyring 1\n" + kid.hex().encode() + b" " + b64(pk) + b" live\n" +
    bytes([0x22] * 8).hex().encode() + b" " + b64(bytes(range(32))) + b" retired\n")
put("keyring-dup", b"imgvault-keyring 1\n" + (kid.hex().encode() + b" " + b64(pk) +
    b" live\n") * 2)
put("cidr-v4", b"192.0.2.0/24")
put("cidr-mapped", b"::ffff:0:0/96")
put("cidr-list", b"10.0.0.0/8, 2001:db8::/32 ::ffff:192.0.2.1,127.0.0.1")
put("hdr-range-first", b"bytes=0-99")
put("hdr-range-suffix", b"bytes=-500")
put("hdr-range-open", b"bytes=100-")
put("hdr-range-multi", b"bytes=0-1, 5-9")
put("hdr-inm-list", b'"00000000", W/"3fa1c0de" , *')
put("hdr-name-script", b"<script>alert(1)</script>.jpg")
put("hdr-name-utf8", "\u00e9t\u00e9 \U0001f4f7.jpg".encode())
put("hdr-name-crlf", b'a"b\r\nSet-Cookie: x=1.jpg')
PY
ls "$dir" | wc -l | xargs echo "make-seeds: seeds in $dir:"
