#!/bin/bash
# make-hostile-corpus.sh DIR — writes the image corpus of tests/integration/test_images.py
# into DIR: hostile inputs (docs/IMAGES.md, "Hostile input") and the ordinary and
# metadata-laden images the thumbnail and stripping tests need.
#
# Everything is made here from Debian's tools — /usr/bin/convert (ImageMagick 6, not
# the stand-in in /usr/local/bin), /usr/bin/exiftool and python3's standard library for
# hand-made bytes — so no binary is committed.  Fixed seeds and fixed dates: the same
# bytes on every run (tests/make-hostile-corpus.sh DIR && sha256sum DIR/*).
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
DIR=$1
CONVERT=/usr/bin/convert
EXIFTOOL=/usr/bin/exiftool
PYTHON=/usr/bin/python3
for tool in "$CONVERT" "$EXIFTOOL" "$PYTHON"; do
	if [ ! -x "$tool" ]; then
		echo "$0: $tool is needed (apt-get install imagemagick libimage-exiftool-perl python3)" >&2
		exit 1
	fi
done
mkdir -p "$DIR"
cd "$DIR"
export TZ=UTC LC_ALL=C

# ImageMagick stamps PNGs with the time (tIME, date:create / date:modify tEXt): not here.
PNGDEF=(-define png:exclude-chunks=date,time)
conv() { "$CONVERT" "$@"; }
exif() { "$EXIFTOOL" -q -q -overwrite_original "$@"; }

# ---- ordinary images --------------------------------------------------------------
# A photo-like noise JPEG (no metadata), landscape.
conv -seed 11 -size 640x480 plasma: +noise Random -quality 90 photo.jpg
# A portrait PNG with an alpha channel (a transparent band and a translucent disc).
conv -seed 12 -size 300x500 plasma: -alpha set -channel A -fx 'j<100 ? 0 : 1' +channel \
	-fill 'rgba(0,0,255,0.5)' -draw 'circle 150,300 150,380' "${PNGDEF[@]}" PNG32:alpha.png
# A plain WebP and a plain (single-frame) GIF.
conv -seed 13 -size 500x300 plasma: -quality 80 photo.webp
conv -seed 14 -size 400x300 plasma: -colors 64 plain.gif
# 1×1.
conv -size 1x1 xc:'#336699' "${PNGDEF[@]}" one.png
conv -size 1x1 xc:'#996633' -quality 90 one.jpg
# CMYK JPEG, 16-bit PNG, progressive JPEG.
conv -seed 15 -size 320x240 plasma: -colorspace CMYK -quality 90 cmyk.jpg
conv -seed 16 -size 300x200 gradient:'#102030-#f0e0d0' -seed 16 +noise Gaussian -depth 16 \
	"${PNGDEF[@]}" PNG48:png16.png
conv -seed 17 -size 400x300 plasma: -interlace Plane -quality 88 progressive.jpg
# An animated GIF of 10 frames (the one of 501 is made by hand below: ImageMagick takes
# half a minute over it).
conv -delay 5 -size 16x16 xc:red xc:lime xc:blue xc:yellow xc:cyan xc:magenta xc:black \
	xc:white xc:gray xc:orange anim10.gif
# A 4-frame GIF with a comment extension.
conv -comment 'secret GIF comment: meet at the old mill' -delay 10 -size 40x30 \
	xc:red xc:lime xc:blue xc:yellow comment.gif

# ---- hand-made bytes ----------------------------------------------------------------
conv -seed 21 -size 640x480 plasma: +noise Random -quality 92 trunc-src.jpg
conv -seed 22 -size 320x240 plasma: +noise Random "${PNGDEF[@]}" trunc-src.png
conv -size 40x30 xc:green gifjar-src.gif
conv -seed 23 -delay 10 -size 100x100 plasma: plasma: plasma: +noise Random trunc-src.gif

"$PYTHON" - <<'EOF'
import io
import struct
import zipfile
import zlib


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# A PNG whose IHDR claims 60000×60000 RGB: valid CRCs, a few KiB of IDAT (the first
# rows, deflated zeros) and IEND.  Decoding it would need 10.8 GB.
W = H = 60000
ihdr = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)
rows = zlib.compress(b"\0" * ((3 * W + 1) * 16), 9)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
open("huge-header.png", "wb").write(png)

# An animated GIF of 501 4×4 frames, one over the default image.max-frames.
def gif_frames(path, w, h, frames, palette):
    out = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x81, 0, 0)     # 4-colour global table
    out += b"".join(bytes(c) for c in palette)
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"         # loop forever
    for px in frames:
        out += b"\x21\xf9\x04\x00\x02\x00\x00\x00"                  # 2/100 s a frame
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
        # LZW with minimum code size 2: a clear code before every two pixels keeps
        # every code 3 bits wide.
        codes = []
        for i in range(0, len(px), 2):
            codes += [4] + list(px[i:i + 2])
        codes.append(5)
        bits = acc = 0
        lzw = bytearray()
        for c in codes:
            acc |= c << bits
            bits += 3
            while bits >= 8:
                lzw.append(acc & 255)
                acc >>= 8
                bits -= 8
        if bits:
            lzw.append(acc & 255)
        out += b"\x02"
        for i in range(0, len(lzw), 255):
            out += bytes([len(lzw[i:i + 255])]) + lzw[i:i + 255]
        out += b"\x00"
    open(path, "wb").write(out + b"\x3b")


gif_frames("anim501.gif", 4, 4, [[(f + i) % 4 for i in range(16)] for f in range(501)],
           [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)])

# Truncated at 60 %.
# (The GIF has three noise frames: the cut is inside the second.)
for src, dst in (("trunc-src.jpg", "truncated.jpg"), ("trunc-src.png", "truncated.png"),
                 ("trunc-src.gif", "truncated-anim.gif")):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[: len(data) * 60 // 100])


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return buf.getvalue()


# Polyglots: an image with a ZIP archive appended (a JAR is a ZIP with a manifest).
jpeg = open("photo.jpg", "rb").read()
open("polyglot-zip.jpg", "wb").write(jpeg + zip_bytes([
    ("payload.txt", b"this file is an image and an archive\n" * 20),
    ("run.sh", b"#!/bin/sh\necho pwned\n"),
]))
gif = open("gifjar-src.gif", "rb").read()
open("polyglot-jar.gif", "wb").write(gif + zip_bytes([
    ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\r\nMain-Class: Evil\r\nCreated-By: 1.8\r\n\r\n"),
    ("Evil.class", b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + bytes(range(64))),
]))

# Not a polyglot: a JPEG with a camera-style trailer after its EOI (no ZIP record).
open("trailer.jpg", "wb").write(jpeg + b"CAMERA-TRAILER\0" + bytes(range(256)) * 16)

# Not images, named .jpg.
open("html.jpg", "w").write(
    "<!DOCTYPE html>\n<html><head><title>hi</title></head>\n"
    "<body><script>alert(document.cookie)</script></body></html>\n")
open("svg.jpg", "w").write(
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
    '<script>alert(1)</script><rect width="100" height="100" fill="red"/></svg>\n')
open("empty.jpg", "wb").close()
EOF
rm -f trunc-src.jpg trunc-src.png trunc-src.gif gifjar-src.gif

# ---- Exif by hand: a Canon-style maker note (exiftool cannot make one from nothing) ----
# TIFF big-endian: IFD0 (Make, Model, Orientation, ExifIFD) -> ExifIFD (MakerNote) ->
# the maker note, a Canon IFD (CanonImageType, and the body's SerialNumber 0x000c),
# its offsets from the TIFF header as Canon's are.
"$PYTHON" - <<'EOF'
import struct

ASCII, SHORT, LONG, UNDEF = 2, 3, 4, 7


def ifd(entries, at):
    """An IFD placed at offset @at: its bytes (entries, next=0, then the values)."""
    entries = sorted(entries)
    head = struct.pack(">H", len(entries))
    data = b""
    base = at + 2 + 12 * len(entries) + 4
    for tag, typ, count, val in entries:
        if len(val) <= 4:
            head += struct.pack(">HHI", tag, typ, count) + val.ljust(4, b"\0")
        else:
            head += struct.pack(">HHII", tag, typ, count, base + len(data))
            data += val + (b"\0" if len(val) % 2 else b"")
    return head + struct.pack(">I", 0) + data


def asc(s):
    return s.encode() + b"\0"


make, model = asc("Canon"), asc("Canon EOS 5D")
ifd0_len = len(ifd([(0x010F, ASCII, len(make), make), (0x0110, ASCII, len(model), model),
                    (0x0112, SHORT, 1, b"\0\1"), (0x8769, LONG, 1, b"\0\0\0\0")], 8))
exif_at = 8 + ifd0_len
exif_len_guess = 2 + 12 + 4
mn_at = exif_at + exif_len_guess
imgtype = asc("Canon EOS 5D secret maker note")
mn = ifd([(0x0006, ASCII, len(imgtype), imgtype), (0x000C, LONG, 1, struct.pack(">I", 4242123))],
         mn_at)
exif_ifd = ifd([(0x927C, UNDEF, len(mn), mn)], exif_at)
assert len(exif_ifd) == exif_len_guess + len(mn) + (len(mn) % 2)
ifd0 = ifd([(0x010F, ASCII, len(make), make), (0x0110, ASCII, len(model), model),
            (0x0112, SHORT, 1, b"\0\1"), (0x8769, LONG, 1, struct.pack(">I", exif_at))], 8)
open("makernote.exif", "wb").write(b"MM\0\x2a" + struct.pack(">I", 8) + ifd0 + exif_ifd)
EOF

# ---- metadata-laden JPEG, PNG, WebP -----------------------------------------------------
GPS=(-GPSLatitude=48.858370 -GPSLatitudeRef=N -GPSLongitude=2.294481 -GPSLongitudeRef=E
	-GPSAltitude=35 -GPSAltitudeRef=0 '-GPSDateStamp=2021:06:01' '-GPSTimeStamp=12:00:00')
XMPLOC=('-XMP-iptcCore:Location=Champ de Mars' '-XMP-photoshop:City=Paris'
	'-XMP-photoshop:Country=France' '-XMP-exif:GPSLatitude=48.858370 N'
	'-XMP-exif:GPSLongitude=2.294481 E' '-XMP-dc:Creator=Secret Photographer')

conv -seed 31 -size 320x200 plasma: +noise Random -quality 90 meta.jpg
exif '-exif<=makernote.exif' meta.jpg
exif "${GPS[@]}" "${XMPLOC[@]}" -SerialNumber=BODY-SN-0042XYZ -LensSerialNumber=LENS-SN-77 \
	-OwnerName='Jane Secret' '-UserComment=taken at home' -Orientation#=6 \
	-IPTC:City=Paris '-IPTC:Sub-location=Champ de Mars' -IPTC:Country-PrimaryLocationName=France \
	'-IPTC:By-line=Secret Photographer' -IPTC:Keywords=holiday \
	'-Comment=secret JPEG comment' meta.jpg
rm -f makernote.exif

conv -seed 32 -size 240x160 plasma: +noise Random "${PNGDEF[@]}" PNG24:meta.png
exif "${GPS[@]}" -SerialNumber=BODY-SN-0042XYZ -Orientation#=6 meta.png
# tEXt, zTXt, iTXt (XMP with the location) and tIME, right after IHDR.
"$PYTHON" - <<'EOF'
import struct
import zlib


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


xmp = ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
       '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
       'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       '<rdf:Description rdf:about="" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
       'xmlns:exif="http://ns.adobe.com/exif/1.0/" '
       'photoshop:City="Paris" exif:GPSLatitude="48,51.5022N" '
       'exif:GPSLongitude="2,17.6689E"/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()
extra = (chunk(b"tEXt", b"Comment\0secret PNG tEXt comment")
         + chunk(b"tEXt", b"Author\0Jane Secret")
         + chunk(b"zTXt", b"Description\0\0" + zlib.compress(b"secret zTXt: home address", 9))
         + chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp)
         + chunk(b"tIME", struct.pack(">HBBBBB", 2021, 6, 1, 12, 0, 0)))
data = open("meta.png", "rb").read()
assert data[12:16] == b"IHDR"
at = 8 + 12 + 13
open("meta.png", "wb").write(data[:at] + extra + data[at:])
EOF

conv -seed 33 -size 300x200 plasma: -quality 85 meta.webp
exif "${GPS[@]}" "${XMPLOC[@]}" -SerialNumber=BODY-SN-0042XYZ -Orientation#=6 meta.webp

# ---- a ~64 KiB Exif block: APP1 of about 65000 bytes (the most a segment holds: 65535) --
conv -seed 34 -size 200x150 plasma: -quality 90 bigexif.jpg
"$PYTHON" -c "import sys; sys.stdout.write('ExifPadding-' * 5400)" > bigexif.txt
exif '-UserComment<=bigexif.txt' '-SerialNumber=BIG-EXIF-SN' bigexif.jpg
rm -f bigexif.txt

# ---- EXIF orientations 1..8 of an asymmetric 120×80 image: red block top left ---------
conv -size 120x80 xc:white -fill red -draw 'rectangle 0,0 39,29' \
	-fill blue -draw 'rectangle 100,70 119,79' -quality 95 orient-src.jpg
for o in 1 2 3 4 5 6 7 8; do
	cp orient-src.jpg "orient-$o.jpg"
	exif "-Orientation#=$o" "orient-$o.jpg"
done
rm -f orient-src.jpg

# ---- the JPEG's colour profile: only where an ICC file is installed --------------------
rm -f icc.jpg
ICC=
for f in /usr/share/color/icc/*.icc /usr/share/color/icc/*/*.icc /usr/share/color/icc/*.icm \
	/usr/share/color/icc/*/*.icm; do
	if [ -f "$f" ]; then ICC=$f; break; fi
done
if [ -n "$ICC" ]; then
	conv -seed 35 -size 200x150 plasma: -quality 90 -profile "$ICC" icc.jpg
	exif "${GPS[@]}" -Orientation#=3 '-Comment=secret' icc.jpg
fi


# ---- large canvases that cost little to store: one colour, real LZW ------------------
# canvas-10k.gif: 10000×10000, one frame, ~67 KB; decoding it takes a 400 MB canvas.
# frames-3k9.gif: 3000×3000 × 9 frames (81 megapixels in all), ~60 KB.
# frames-10k5.gif: 10000×10000 × 5 frames: each frame within image.max-pixels, 500
# megapixels in all, over the default image.max-total-pixels (400 megapixels).
"$PYTHON" - <<'EOF'
import struct


def lzw_one_colour(npx):
    """GIF LZW (minimum code size 2) of npx pixels of colour 0, from runs: after a
    clear code the table's code 6+k stands for k+2 pixels, so the longest match is
    always the newest entry."""
    out = bytearray()
    acc = bits = 0

    def put(code, width):
        nonlocal acc, bits
        acc |= code << bits
        bits += width
        while bits >= 8:
            out.append(acc & 255)
            acc >>= 8
            bits -= 8

    width, free = 3, 6
    put(4, width)                                   # clear
    left = npx
    while left:
        n = min(free - 5 if free > 6 else 1, left)
        put(0 if n == 1 else n + 4, width)
        left -= n
        if not left:
            break
        if free < 4096:
            free += 1
            if free > (1 << width) and width < 12:
                width += 1
        else:
            put(4, width)
            width, free = 3, 6
    put(5, width)                                   # end of information
    if bits:
        out.append(acc & 255)
    return bytes(out)


def big_gif(path, w, h, frames):
    out = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x81, 0, 0)
    out += bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
    if frames > 1:
        out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    data = lzw_one_colour(w * h)
    for _ in range(frames):
        out += b"\x21\xf9\x04\x00\x02\x00\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02"
        for i in range(0, len(data), 255):
            out += bytes([len(data[i:i + 255])]) + data[i:i + 255]
        out += b"\x00"
    open(path, "wb").write(out + b"\x3b")


big_gif("canvas-10k.gif", 10000, 10000, 1)
big_gif("frames-3k9.gif", 3000, 3000, 9)
big_gif("frames-10k5.gif", 10000, 10000, 5)
EOF
