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
ls "$dir" | wc -l | xargs echo "make-seeds: seeds in $dir:"
