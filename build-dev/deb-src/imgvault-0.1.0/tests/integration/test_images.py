"""The image pipeline of docs/IMAGES.md, from the outside: admission by content and
its limits, hostile input, the full decode that marks damage, thumbnails, and
metadata stripping for share links.

The images come from tests/make-hostile-corpus.sh, run once per session into a
temporary directory (Debian's ImageMagick and exiftool, python's standard library:
nothing binary is committed).  Results are checked with /usr/bin/identify,
/usr/bin/convert and /usr/bin/exiftool.
"""
import errno
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (SANITIZED, memory_bound, CONVERT, EXIT_DAMAGE, EXIT_OK, EXIT_PARTIAL, ROOT, assert_reads_back,
                      sha256)

pytest.register_assert_rewrite("mountlib")   # before the import below
from mountlib import as_user, read_bytes, write_file  # noqa: E402

pytest_plugins = ["mountlib"]      # its fixtures

IDENTIFY = "/usr/bin/identify"
EXIFTOOL = "/usr/bin/exiftool"
CORPUS_SCRIPT = ROOT / "tests" / "make-hostile-corpus.sh"
TOOL_TIMEOUT = 60


# ---- the corpus and the tools that look at images --------------------------------------

@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The directory tests/make-hostile-corpus.sh filled (shared: read it, never write)."""
    for tool in (CONVERT, IDENTIFY, EXIFTOOL):
        if not Path(tool).is_file():
            pytest.exit(f"{tool} is needed (imagemagick, libimage-exiftool-perl)", returncode=1)
    d = tmp_path_factory.mktemp("hostile-corpus")
    p = subprocess.run(["bash", str(CORPUS_SCRIPT), str(d)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=300)
    assert p.returncode == 0, f"{CORPUS_SCRIPT} failed:\n{p.stderr.decode(errors='replace')}"
    return d


def tool(*args):
    p = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=TOOL_TIMEOUT)
    assert p.returncode == 0, f"{args}: {p.stderr.decode(errors='replace')}"
    return p.stdout


def identify(path, fmt):
    """identify -format FMT, once per frame."""
    return tool(IDENTIFY, "-format", fmt, path).decode()


def first_frame(path, fmt):
    return identify(f"{path}[0]", fmt)


def size_of(path):
    w, h = first_frame(path, "%w %h").split()
    return int(w), int(h)


def frames(path):
    return len(identify(path, "%p\n").splitlines())


def exif_json(path):
    """Every tag exiftool finds (unknown ones too), keyed GROUP0:GROUP1:TAG."""
    out = tool(EXIFTOOL, "-j", "-a", "-u", "-G0:1", path)
    meta = json.loads(out)[0]
    meta.pop("SourceFile", None)
    return meta


def rgba_sha(path):
    """SHA-256 of the decoded pixels, every frame, orientation not applied."""
    return sha256(tool(CONVERT, path, "-coalesce", "-depth", "8", "rgba:-"))


def rgb_pixels(path, resize=None, auto_orient=False):
    """(width, height, bytes) of the first frame as 8-bit RGB."""
    args = [CONVERT, f"{path}[0]"]
    if auto_orient:
        args.append("-auto-orient")
    if resize:
        args += ["-resize", f"{resize[0]}x{resize[1]}!"]
    args += ["-alpha", "off", "-depth", "8"]
    w, h = map(int, tool(*args, "-format", "%w %h", "info:").split())
    return w, h, tool(*args, "rgb:-")


def red_corner(w, h, rgb):
    """Which corner the red block of the orientation images sits in: 'TL', 'TR', 'BL', 'BR'."""
    xs, ys = [], []
    for i in range(w * h):
        r, g, b = rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]
        if r > 200 and g < 80 and b < 80:
            xs.append(i % w)
            ys.append(i // w)
    assert len(xs) > w * h // 20, "no red block in the image"
    cx, cy = sum(xs) / len(xs), sum(ys) / len(ys)
    return ("T" if cy < h / 2 else "B") + ("L" if cx < w / 2 else "R")


# Tags that must not survive stripping (docs/IMAGES.md: location and device metadata).
LEAK_GROUPS = {"XMP", "IPTC", "MakerNotes", "Photoshop"}
LEAK_TAG = re.compile(r"GPS|Serial|MakerNote|Comment|Location|^City$|^Country|Creator|"
                      r"By-line|Author|Description|OwnerName|^ModifyDate$|Keywords", re.I)
# What a thumbnail may show: what the file is, never anything about the picture's origin.
FILE_LEVEL_GROUPS = {"ExifTool", "File", "JFIF", "PNG", "RIFF", "GIF", "Composite"}


def leaks(meta):
    # The colour profile is kept on purpose (DESIGN §7): its own header
    # fields (creator, description of the profile) describe the profile,
    # not the camera or the place.
    return sorted(k for k in meta if not k.startswith("ICC_Profile:") and
                  (k.split(":")[0] in LEAK_GROUPS or LEAK_TAG.search(k.split(":")[-1])))


def not_file_level(meta):
    bad = []
    for k in meta:
        parts = k.split(":")
        if parts[0] not in FILE_LEVEL_GROUPS or LEAK_TAG.search(parts[-1]) or \
                parts[-1] == "Orientation" or parts[-1] == "Warning":
            bad.append(k)
    return sorted(bad)


def orientation_of(path):
    meta = json.loads(tool(EXIFTOOL, "-j", "-n", "-Orientation", path))[0]
    return meta.get("Orientation")


# ---- store helpers ----------------------------------------------------------------------

def get(store, *args, out):
    """Runs `imgvault cat ARGS`, writes its bytes to @out; returns the path."""
    r = store.iv("cat", *args)
    assert r.rc == 0, str(r)
    assert r.stdout, str(r)
    Path(out).write_bytes(r.stdout)
    return Path(out)


def thumb(store, name, tmp_path, album="default"):
    return get(store, "--thumb", f"{album}/{name}", out=tmp_path / f"thumb-{name}")


def stripped(store, name, tmp_path, album="default"):
    return get(store, "--stripped", f"{album}/{name}", out=tmp_path / f"stripped-{name}")


def import_ok(store, *paths, album=None):
    args = ["import"] + (["--album", album] if album else []) + list(paths)
    r = store.iv(*args)
    assert r.rc == EXIT_OK, str(r)
    for p in paths:
        assert f"imported {p} as " in r.out, str(r)
    return r


def listed(store, album="default"):
    return {im["name"]: im for im in store.ls_json(album)}


def config(store, setting, shown=None):
    """imgvault config KEY=VALUE; `imgvault config` then shows KEY=@shown (default VALUE)."""
    r = store.iv("config", setting)
    assert r.rc == EXIT_OK, str(r)
    r = store.iv("config")
    assert r.rc == EXIT_OK, str(r)
    key, value = setting.split("=", 1)
    want = f"{key}={shown or value}"
    assert re.search(rf"^{re.escape(want)}$", r.out, re.M), f"{want} not in force\n{r}"


def audit(store):
    return store.iv("--json", "audit", passfile=None).json()


# ---- admission: refused inputs ----------------------------------------------------------

REFUSED = {
    # name: (substrings of the reason, details the audit trail must not hold)
    "huge-header.png": (["60000×60000 pixels", "over the limit of 100000000 pixels"], "60000"),
    "polyglot-zip.jpg": (["ZIP archive appended", "polyglot"], "ZIP"),
    "polyglot-jar.gif": (["ZIP archive appended", "polyglot"], "ZIP"),
    "html.jpg": (["not an image: its content is text/html"], "text/html"),
    "svg.jpg": (["image/svg+xml"], "svg"),
    "empty.jpg": (["empty"], "the file is empty"),
    "anim501.gif": (["501 frames", "over the limit of 500"], "501"),
    # Every frame within image.max-pixels, all five over image.max-total-pixels.
    "frames-10k5.gif": (["5 frames of 10000×10000 pixels", "500000000 pixels in all",
                         "over the limit of 400000000 (image.max-total-pixels)"], "10000"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_hostile_input_is_refused(filled, corpus, name):
    words, detail = REFUSED[name]
    src = corpus / name
    blobs = filled.blob_files()
    trail = len(audit(filled))

    r = filled.iv("import", src)
    assert r.rc == EXIT_PARTIAL, str(r)
    assert f"skipped {src}: " in r.err, str(r)
    for w in words:
        assert w in r.err, f"reason lacks {w!r}\n{r}"
    assert "0 imported, 1 refused" in r.out, str(r)

    assert name not in listed(filled), "a refused file was stored"
    assert set(listed(filled)) == {k.split("/", 1)[1] for k in filled.expected}
    assert filled.blob_files() == blobs, "a refused file left a blob behind"
    # The refusal is on the record, without the reason's details.
    new = audit(filled)[trail:]
    refusals = [e for e in new if e["action"] == "import" and e["result"] == "refused"]
    assert len(refusals) == 1, new
    assert detail not in refusals[0]["detail"] and name not in refusals[0]["detail"], refusals
    assert_reads_back(filled, filled.expected)


def test_trailing_data_that_is_not_an_archive_is_kept(store, corpus, tmp_path):
    """Camera trailers are kept byte for byte; share links serve a copy that ends where
    the image ends."""
    src = corpus / "trailer.jpg"
    image = (corpus / "photo.jpg").read_bytes()
    data = src.read_bytes()
    assert data.startswith(image) and len(data) > len(image)
    import_ok(store, src)
    assert listed(store)["trailer.jpg"]["damaged"] is False
    assert_reads_back(store, {"default/trailer.jpg": data})
    s = stripped(store, "trailer.jpg", tmp_path).read_bytes()
    assert b"CAMERA-TRAILER" not in s
    assert s.endswith(b"\xff\xd9"), "the stripped copy does not end at the image's EOI"
    assert rgba_sha(tmp_path / "stripped-trailer.jpg") == rgba_sha(corpus / "photo.jpg")


def test_refusals_do_not_stop_the_rest(store, corpus):
    hostile = [corpus / n for n in REFUSED]
    good = corpus / "photo.jpg"
    r = store.iv("import", *hostile[:3], good, *hostile[3:])
    assert r.rc == EXIT_PARTIAL, str(r)
    assert f"1 imported, {len(hostile)} refused" in r.out, str(r)
    assert list(listed(store)) == ["photo.jpg"]
    assert_reads_back(store, {"default/photo.jpg": good.read_bytes()})


# ---- the full decode: damaged images ----------------------------------------------------

def assert_damaged(store, name, data):
    """@name is stored byte-exact, listed DAMAGED, named by fsck and by the audit trail."""
    im = listed(store)[name]
    assert im["damaged"] is True, im
    assert (im["size"], im["sha256"]) == (len(data), sha256(data)), im

    r = store.iv("ls", "default")
    assert r.rc == 0, str(r)
    assert re.search(rf"DAMAGED\s+{re.escape(name)}$", r.out, re.M), str(r)

    r = store.cat(f"default/{name}")
    assert r.rc == 0, str(r)
    assert sha256(r.stdout) == sha256(data), "a damaged image's bytes are not what was written"

    r = store.iv("fsck")
    assert r.rc == EXIT_DAMAGE, str(r)
    assert re.search(rf"^damaged: .*default/{re.escape(name)}\b", r.out, re.M), str(r)

    entries = audit(store)
    assert any(e["action"] == "decode" and e["result"] == "damaged" and e["object"] == im["id"]
               for e in entries), [e for e in entries if e["action"] == "decode"]


@pytest.mark.parametrize("name", ["truncated.jpg", "truncated.png", "truncated-anim.gif"])
def test_truncated_image_is_kept_and_marked_damaged(filled, corpus, name):
    """truncated-anim.gif: three frames, cut inside the second; "Multi-frame GIF and WebP
    have all their frames decoded" with fail_on=truncated."""
    src = corpus / name
    r = filled.iv("import", src)
    assert r.rc == EXIT_DAMAGE, str(r)
    assert f"imported {src} as default/{name}" in r.out, str(r)
    assert "marked damaged" in r.out, str(r)
    assert re.search(rf"damaged: {re.escape(name)}: .*cannot be decoded", r.err), str(r)

    assert_damaged(filled, name, src.read_bytes())
    # The others are untouched.
    others = listed(filled)
    for spec in filled.expected:
        assert others[spec.split("/", 1)[1]]["damaged"] is False
    assert_reads_back(filled, filled.expected)


def test_damage_found_by_thumbs_after_import_no_thumbs(filled, corpus):
    src = corpus / "truncated.jpg"
    r = filled.iv("import", "--no-thumbs", src)
    assert r.rc == EXIT_OK, f"nothing was decoded yet\n{r}"
    assert listed(filled)["truncated.jpg"]["damaged"] is False

    r = filled.iv("thumbs")
    assert r.rc == EXIT_DAMAGE, str(r)
    assert "1 images damaged" in r.out, str(r)
    assert_damaged(filled, "truncated.jpg", src.read_bytes())
    assert_reads_back(filled, filled.expected)


# ---- admission: accepted inputs ---------------------------------------------------------

ACCEPTED = {
    # name: (mime, width, height, thumbnail format)
    "one.png": ("image/png", 1, 1, "PNG"),
    "one.jpg": ("image/jpeg", 1, 1, "JPEG"),
    "cmyk.jpg": ("image/jpeg", 320, 240, "JPEG"),
    "png16.png": ("image/png", 300, 200, "PNG"),
    "progressive.jpg": ("image/jpeg", 400, 300, "JPEG"),
    "bigexif.jpg": ("image/jpeg", 200, 150, "JPEG"),
    "anim10.gif": ("image/gif", 16, 16, "GIF"),
}


def test_unusual_but_valid_images_are_accepted_with_thumbnails(store, corpus, tmp_path):
    # The corpus is what it claims to be.
    assert first_frame(corpus / "cmyk.jpg", "%[colorspace]") == "CMYK"
    assert first_frame(corpus / "png16.png", "%z") == "16"
    assert first_frame(corpus / "progressive.jpg", "%[interlace]") == "JPEG"
    assert frames(corpus / "anim10.gif") == 10

    paths = [corpus / n for n in ACCEPTED]
    r = store.iv("import", *paths)
    assert r.rc == EXIT_OK, str(r)
    assert f"{len(paths)} imported, 0 refused" in r.out, str(r)
    ims = listed(store)
    for name, (mime, w, h, fmt) in ACCEPTED.items():
        im = ims[name]
        assert (im["mime"], im["width"], im["height"], im["damaged"]) == (mime, w, h, False), im
        t = thumb(store, name, tmp_path)
        assert first_frame(t, "%m") == fmt, name
        assert not not_file_level(exif_json(t)), f"{name}: {not_file_level(exif_json(t))}"
        assert first_frame(t, "%[colorspace]") == "sRGB", f"{name}: thumbnail not in sRGB"
        long_edge = max(size_of(t))
        assert long_edge == min(256, max(w, h)), f"{name}: thumbnail {size_of(t)}"
    assert_reads_back(store, {f"default/{p.name}": p.read_bytes() for p in paths})
    r = store.iv("fsck")
    assert r.rc == EXIT_OK and "damaged:" not in r.out, str(r)


def test_64k_exif_block_is_accepted_and_stripped(store, corpus, tmp_path):
    src = corpus / "bigexif.jpg"
    data = src.read_bytes()
    app1 = int.from_bytes(data[data.index(b"\xff\xe1") + 2:][:2], "big")
    assert 64000 < app1 <= 65535, app1

    import_ok(store, src)
    s = stripped(store, "bigexif.jpg", tmp_path)
    meta = exif_json(s)
    assert not any(k.endswith(":UserComment") for k in meta), meta
    assert not leaks(meta), leaks(meta)
    assert b"ExifPadding-" not in s.read_bytes()
    assert len(s.read_bytes()) < len(data) - 64000
    assert rgba_sha(s) == rgba_sha(src)
    assert_reads_back(store, {"default/bigexif.jpg": data})


# ---- limits: imgvault config ------------------------------------------------------------

def test_config_max_pixels(filled, corpus):
    config(filled, "image.max-pixels=10000")
    for name, size in (("photo.jpg", "640×480"), ("huge-header.png", "60000×60000")):
        r = filled.iv("import", "--album", "limits", corpus / name)
        assert r.rc == EXIT_PARTIAL, str(r)
        assert f"{size} pixels, over the limit of 10000 pixels" in r.err, str(r)
    import_ok(filled, corpus / "orient-1.jpg", album="limits")     # 120×80 = 9600
    assert list(listed(filled, "limits")) == ["orient-1.jpg"]
    assert_reads_back(filled, filled.expected)


def test_config_max_bytes(filled, corpus):
    config(filled, "image.max-bytes=100K", shown="102400")
    big = corpus / "meta.jpg"
    size = big.stat().st_size
    assert size > 102400
    r = filled.iv("import", big)
    assert r.rc == EXIT_PARTIAL, str(r)
    assert f"the file is {size} bytes, over the 102400-byte limit" in r.err, str(r)
    assert "meta.jpg" not in listed(filled)
    small = corpus / "progressive.jpg"
    assert small.stat().st_size < 102400
    import_ok(filled, small)
    assert_reads_back(filled, {**filled.expected, "default/progressive.jpg": small.read_bytes()})


def test_config_max_frames(store, corpus):
    config(store, "image.max-frames=9")
    r = store.iv("import", corpus / "anim10.gif")
    assert r.rc == EXIT_PARTIAL, str(r)
    assert "the image has 10 frames, over the limit of 9" in r.err, str(r)
    assert "anim10.gif" not in listed(store)
    import_ok(store, corpus / "comment.gif")                       # 4 frames
    config(store, "image.max-frames=10")
    import_ok(store, corpus / "anim10.gif")
    assert set(listed(store)) == {"comment.gif", "anim10.gif"}


def test_config_max_total_pixels(store, corpus):
    # 3000×3000 × 9 frames, 60 KiB: 81 megapixels to decode (and re-encode for a link).
    config(store, "image.max-total-pixels=50M", shown="52428800")
    r = store.iv("import", corpus / "frames-3k9.gif")
    assert r.rc == EXIT_PARTIAL, str(r)
    assert ("the image has 9 frames of 3000×3000 pixels, 81000000 pixels in all, over the "
            "limit of 52428800 (image.max-total-pixels)") in r.err, str(r)
    assert "frames-3k9.gif" not in listed(store)
    import_ok(store, corpus / "anim10.gif", corpus / "photo.jpg")   # small ones go in
    config(store, "image.max-total-pixels=100M", shown="104857600")
    import_ok(store, corpus / "frames-3k9.gif")
    assert set(listed(store)) == {"anim10.gif", "photo.jpg", "frames-3k9.gif"}


def test_config_types(filled, corpus):
    config(filled, "image.types=jpeg,png")
    for name, kind in (("plain.gif", "gif"), ("photo.webp", "webp")):
        r = filled.iv("import", corpus / name)
        assert r.rc == EXIT_PARTIAL, str(r)
        assert f"{kind} images are not allowed" in r.err, str(r)
        assert name not in listed(filled)
    import_ok(filled, corpus / "photo.jpg", corpus / "one.png", album="allowed")
    assert set(listed(filled, "allowed")) == {"photo.jpg", "one.png"}
    assert_reads_back(filled, filled.expected)


def test_config_refuses_bad_values(store):
    for bad in ("image.max-pixels=0", "image.max-bytes=lots", "image.types=jpeg,bmp",
                "thumb.size=8", "image.nonsense=1"):
        r = store.iv("config", bad)
        assert r.rc != EXIT_OK, str(r)
        assert bad.split("=")[0] in r.err or "unknown" in r.err, str(r)
    r = store.iv("config")
    assert r.rc == EXIT_OK, str(r)
    for default in ("image.max-bytes=52428800", "image.max-pixels=100000000",
                    "image.max-frames=500", "image.max-total-pixels=400000000",
                    "image.decode-memory=536870912", "image.types=jpeg,png,gif,webp,heic,avif",
                    "thumb.size=256"):
        assert re.search(rf"^{re.escape(default)}$", r.out, re.M), str(r)


# ---- decode memory ---------------------------------------------------------------------

def vm_hwm(pid):
    """The peak resident memory of process @pid, in bytes (VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def wait_thumb(user, path, timeout=300):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return as_user(user, read_bytes, path)
        except OSError as e:
            if e.errno != errno.EAGAIN or time.monotonic() > deadline:
                raise


# One 10000×10000 GIF (67 KiB) takes a 400 MB canvas to decode; two users' thumbnail
# workers decoding at once took the daemon to ~900 MiB.  The budget (image.decode-memory,
# 512 MiB) lets one such decode run at a time: one canvas and the daemon's own memory.
DECODE_PEAK_BOUND = 700 << 20


@memory_bound
def test_concurrent_large_decodes_share_the_memory_budget(system_mount, corpus):
    m = system_mount
    gif = (corpus / "canvas-10k.gif").read_bytes()
    written = [(user, name) for name in ("one.gif", "two.gif", "three.gif")
               for user in (m.alice, m.bob)]
    # All six at once, as far as the workers can tell: each write takes milliseconds,
    # each decode seconds.
    for user, name in written:
        as_user(user, write_file, m.original(name, user=user), gif)
    for user, name in written:
        thumb = wait_thumb(user, m.thumb(name, user=user))
        assert thumb[:6] == b"GIF89a" or thumb[:6] == b"GIF87a", (user, name)
    peak = vm_hwm(m.daemon.pid)
    assert peak < DECODE_PEAK_BOUND, \
        f"imgvaultd's peak memory was {peak >> 20} MiB, over {DECODE_PEAK_BOUND >> 20} MiB"
    for user, name in written:
        assert as_user(user, read_bytes, m.original(name, user=user)) == gif


# ---- thumbnails ---------------------------------------------------------------------------

SIZED = {"photo.jpg": (640, 480), "alpha.png": (300, 500), "photo.webp": (500, 300),
         "plain.gif": (400, 300), "one.jpg": (1, 1), "orient-1.jpg": (120, 80)}


def expected_thumb_size(w, h, size):
    scale = min(1.0, size / max(w, h))              # never enlarged
    return max(1, round(w * scale)), max(1, round(h * scale))


def assert_sizes(store, tmp_path, size):
    made = {}
    for name, (w, h) in SIZED.items():
        t = thumb(store, name, tmp_path / str(size))
        got = size_of(t)
        want = expected_thumb_size(w, h, size)
        assert max(got) == max(want), f"{name}: thumbnail {got}, want {want} at {size}"
        assert abs(min(got) - min(want)) <= 1 and (got[0] >= got[1]) == (want[0] >= want[1]), \
            f"{name}: thumbnail {got}, want {want}"
        made[name] = t.read_bytes()
    return made


def test_thumbnail_size_default_and_rebuild(store, corpus, tmp_path):
    (tmp_path / "256").mkdir()
    (tmp_path / "128").mkdir()
    import_ok(store, *(corpus / n for n in SIZED))
    before = assert_sizes(store, tmp_path, 256)

    config(store, "thumb.size=128")
    r = store.iv("thumbs", "--rebuild")
    assert r.rc == EXIT_OK, str(r)
    assert re.search(rf"\b{len(SIZED)} thumbnails made", r.out), str(r)
    after = assert_sizes(store, tmp_path, 128)
    for name in ("photo.jpg", "alpha.png", "photo.webp", "plain.gif"):
        assert after[name] != before[name], f"{name}: thumbnail not remade"
    assert_reads_back(store, {f"default/{n}": (corpus / n).read_bytes() for n in SIZED})


@pytest.mark.parametrize("name,fmt", [("photo.jpg", "JPEG"), ("alpha.png", "PNG"),
                                      ("comment.gif", "GIF"), ("anim10.gif", "GIF"),
                                      ("photo.webp", "WEBP"), ("meta.webp", "WEBP")])
def test_thumbnail_keeps_the_format_family(store, corpus, tmp_path, name, fmt):
    import_ok(store, corpus / name)
    t = thumb(store, name, tmp_path)
    assert identify(t, "%m\n").splitlines()[0] == fmt
    assert not not_file_level(exif_json(t)), not_file_level(exif_json(t))
    if fmt == "GIF":
        assert frames(corpus / name) > 1
        assert frames(t) == 1, "a GIF thumbnail is its first frame only"
        w, h, rgb = rgb_pixels(t)
        assert tuple(rgb[:3]) == (255, 0, 0) and tuple(rgb[-3:]) == (255, 0, 0), \
            "not the first (red) frame"
    if name == "alpha.png":
        assert "a" in first_frame(t, "%[channels]"), "the PNG thumbnail lost its alpha"
        rgba = tool(CONVERT, t, "-depth", "8", "rgba:-")
        assert rgba[3] == 0, "the transparent top is opaque in the thumbnail"
        assert rgba[-1] == 255, "the opaque bottom is transparent in the thumbnail"


def test_thumbnails_carry_no_metadata(store, corpus, tmp_path):
    names = ["meta.jpg", "meta.png", "meta.webp", "comment.gif", "bigexif.jpg", "orient-6.jpg"]
    import_ok(store, *(corpus / n for n in names))
    for name in names:
        assert not_file_level(exif_json(corpus / name)), f"{name} has no metadata to begin with"
        meta = exif_json(thumb(store, name, tmp_path))
        assert not not_file_level(meta), f"{name}'s thumbnail carries {not_file_level(meta)}"
        assert b"secret" not in (tmp_path / f"thumb-{name}").read_bytes()


CORNER = {1: "TL", 2: "TR", 3: "BR", 4: "BL", 5: "TL", 6: "TR", 7: "BR", 8: "BL"}


@pytest.mark.parametrize("o", range(1, 9))
def test_orientation(store, corpus, tmp_path, o):
    name = f"orient-{o}.jpg"
    src = corpus / name
    assert orientation_of(src) == o
    import_ok(store, src)

    t = thumb(store, name, tmp_path)
    w, h, rgb = rgb_pixels(t)
    assert (w < h) == (o >= 5), f"orientation {o}: thumbnail is {w}×{h}"
    rw, rh, ref = rgb_pixels(src, resize=(w, h), auto_orient=True)
    assert (rw, rh) == (w, h)
    assert red_corner(w, h, rgb) == red_corner(w, h, ref) == CORNER[o], \
        f"orientation {o}: red block at {red_corner(w, h, rgb)}, a viewer shows it at {CORNER[o]}"
    diff = sum(abs(a - b) for a, b in zip(rgb, ref)) / len(rgb)
    assert diff < 12, f"orientation {o}: thumbnail differs from convert -auto-orient by {diff:.1f}"
    assert orientation_of(t) is None, "the thumbnail still has an orientation tag"

    s = stripped(store, name, tmp_path)
    # Orientation 1 (upright) is the default: the stripped copy then carries
    # no EXIF at all, which every viewer reads as 1 (docs/IMAGES.md).
    assert orientation_of(s) == (None if o == 1 else o), "the stripped copy lost its orientation"
    assert rgba_sha(s) == rgba_sha(src)


# ---- metadata stripping -------------------------------------------------------------------

SECRETS = [b"BODY-SN-0042XYZ", b"Champ de Mars", b"Secret Photographer", b"secret JPEG comment",
           b"secret PNG tEXt", b"Jane Secret", b"secret maker note", b"LENS-SN-77"]


@pytest.mark.parametrize("name,fmt", [("meta.jpg", "JPEG"), ("meta.png", "PNG"),
                                      ("meta.webp", "WEBP")])
def test_stripped_copy_drops_location_and_device_metadata(store, corpus, tmp_path, name, fmt):
    src = corpus / name
    before = exif_json(src)
    assert leaks(before), "the leak detector sees nothing in the original"
    assert any("GPS" in k for k in before) and any("Serial" in k for k in before)
    assert any(k.startswith("XMP:") for k in before), before
    if fmt == "JPEG":
        assert any(k.startswith("IPTC:") for k in before)
        assert any(k.startswith("MakerNotes:") for k in before)
        assert "File:Comment" in before
    if fmt == "PNG":
        assert {"PNG:Comment", "PNG:Description", "PNG:ModifyDate"} <= set(before)
    import_ok(store, src)

    s = stripped(store, name, tmp_path)
    meta = exif_json(s)
    assert not leaks(meta), f"{name}: the stripped copy still has {leaks(meta)}"
    body = s.read_bytes()
    for secret in SECRETS:
        assert secret not in body, f"{name}: {secret!r} is in the stripped copy"
    assert first_frame(s, "%m") == fmt
    assert orientation_of(s) == 6, "the orientation was not kept"
    assert rgba_sha(s) == rgba_sha(src), "stripping changed the pixels"
    # The stored image is untouched.
    assert_reads_back(store, {f"default/{name}": src.read_bytes()})


def test_stripped_jpeg_keeps_its_icc_profile(store, corpus, tmp_path):
    src = corpus / "icc.jpg"
    if not src.exists():
        pytest.skip("no ICC profile under /usr/share/color/icc to embed (icc-profiles-free)")
    profile = tool(CONVERT, src, "icc:-")
    assert len(profile) > 128
    import_ok(store, src)
    s = stripped(store, "icc.jpg", tmp_path)
    assert tool(CONVERT, s, "icc:-") == profile, "the ICC profile was not kept byte for byte"
    assert not leaks(exif_json(s))
    assert orientation_of(s) == 3
    assert rgba_sha(s) == rgba_sha(src)


@pytest.mark.parametrize("name,count", [("comment.gif", 4), ("anim10.gif", 10)])
def test_stripped_gif_is_reencoded_without_its_comment(store, corpus, tmp_path, name, count):
    src = corpus / name
    assert frames(src) == count
    if name == "comment.gif":
        assert "File:Comment" in exif_json(src)
    import_ok(store, src)
    s = stripped(store, name, tmp_path)
    assert first_frame(s, "%m") == "GIF"
    meta = exif_json(s)
    assert not any("Comment" in k for k in meta), meta
    assert b"secret GIF comment" not in s.read_bytes()
    assert frames(s) == count, "re-encoding lost frames"
    assert rgba_sha(s) == rgba_sha(src), "re-encoding changed the frames' pixels"
    assert_reads_back(store, {f"default/{name}": src.read_bytes()})
