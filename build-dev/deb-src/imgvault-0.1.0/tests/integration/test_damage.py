"""T1: any change to a blob is detected.  `cat` fails (exit 5) naming the
image and never writes a wrong byte (at most a correct prefix), `export`
leaves the damaged image out, `fsck` names each damaged image, and the
other images are untouched."""
import os
import re
import shutil

import pytest

from conftest import (CHUNK, EXIT_DAMAGE, HEADER, SEALED_CHUNK, aligned_image,
                      assert_reads_back)


@pytest.fixture
def damaged(filled, image_set, tmp_path):
    """`filled` plus aligned.png, whose plaintext is exactly 4 chunks."""
    src = aligned_image(image_set["big.png"].with_name("gradient.png"),
                        tmp_path / "aligned.png", chunks=4)
    r = filled.iv("import", src)
    assert r.rc == 0, str(r)
    filled.expected["default/aligned.png"] = src.read_bytes()
    return filled


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        assert len(b) == 1, f"{path} has no byte {offset}"
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def truncate_by(path, n):
    size = path.stat().st_size
    os.truncate(path, size - n)


def append(path, data):
    with open(path, "ab") as f:
        f.write(data)


def swap(a, b):
    tmp = a.with_name(a.name + ".copy")
    shutil.copy2(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)


def chunk_offset(k):
    return HEADER + k * SEALED_CHUNK


# name -> (images it damages, how)
CASES = {
    "flipped byte in the only chunk": (["small.jpg"],
                                       lambda s: flip(s.blob_of("default", "small.jpg"),
                                                      chunk_offset(0) + 24 + 10)),
    "flipped byte in chunk 2": (["big.png"],
                                lambda s: flip(s.blob_of("default", "big.png"),
                                               chunk_offset(2) + 24 + 1000)),
    "flipped nonce byte of chunk 1": (["big.png"],
                                      lambda s: flip(s.blob_of("default", "big.png"),
                                                     chunk_offset(1) + 3)),
    "flipped tag byte of the last chunk": (["photo.jpg"],
                                           lambda s: flip(s.blob_of("default", "photo.jpg"),
                                                          s.blob_of("default", "photo.jpg")
                                                          .stat().st_size - 1)),
    "flipped size byte in the header": (["big.png"],
                                        lambda s: flip(s.blob_of("default", "big.png"), 41)),
    "flipped byte in the wrapped file key": (["icon.gif"],
                                             lambda s: flip(s.blob_of("default", "icon.gif"),
                                                            HEADER - 20)),
    "truncated by 1 byte": (["big.png"],
                            lambda s: truncate_by(s.blob_of("default", "big.png"), 1)),
    "truncated by one sealed chunk at a chunk boundary": (
        ["aligned.png"], lambda s: truncate_by(s.blob_of("default", "aligned.png"),
                                               SEALED_CHUNK)),
    "truncated by one sealed chunk": (["big.png"],
                                      lambda s: truncate_by(s.blob_of("default", "big.png"),
                                                            SEALED_CHUNK)),
    "truncated to its header": (["photo.jpg"],
                                lambda s: os.truncate(s.blob_of("default", "photo.jpg"), HEADER)),
    "extended by 1 byte": (["small.jpg"],
                           lambda s: append(s.blob_of("default", "small.jpg"), b"\0")),
    "extended by a replayed chunk": (
        ["aligned.png"],
        lambda s: append(s.blob_of("default", "aligned.png"),
                         s.blob_of("default", "aligned.png").read_bytes()
                         [chunk_offset(3):chunk_offset(4)])),
    "two blobs swapped": (["big.png", "photo.jpg"],
                          lambda s: swap(s.blob_of("default", "big.png"),
                                         s.blob_of("default", "photo.jpg"))),
    "blob missing": (["gradient.png"],
                     lambda s: os.unlink(s.blob_of("default", "gradient.png"))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_blob(damaged, tmp_path, case):
    victims, how = CASES[case]
    sizes_before = {p: p.stat().st_size for p in damaged.blob_files()}
    how(damaged)
    assert {p: p.stat().st_size for p in damaged.blob_files()} != sizes_before or \
        case.startswith("flipped") or case == "two blobs swapped"

    for name in victims:
        real = damaged.expected[f"default/{name}"]
        r = damaged.cat(f"default/{name}")
        assert r.rc == EXIT_DAMAGE, str(r)
        assert name in r.err, f"the error does not name the image\n{r}"
        assert "damaged" in r.err, str(r)
        assert len(r.stdout) < len(real) and real.startswith(r.stdout), \
            f"cat wrote {len(r.stdout)} bytes that are not a prefix of the image"

    # Everything else is intact.
    others = {k: v for k, v in damaged.expected.items()
              if k.split("/")[1] not in victims}
    assert_reads_back(damaged, others)

    dest = tmp_path / "export"
    r = damaged.iv("export", dest)
    assert r.rc == EXIT_DAMAGE, str(r)
    for name in victims:
        assert not (dest / "default" / name).exists(), f"export wrote damaged {name}"
        assert re.search(rf"not exported: .*{re.escape(name)}", r.err), str(r)
    for spec, data in others.items():
        assert (dest / spec).read_bytes() == data, spec

    r = damaged.iv("fsck")
    assert r.rc == EXIT_DAMAGE, str(r)
    damaged_lines = [line for line in r.out.splitlines() if line.startswith("damaged: ")]
    for name in victims:
        assert any(f"default/{name}" in line for line in damaged_lines), \
            f"fsck does not name {name}\n{r}"
    assert len(damaged_lines) == len(victims), str(r)
    assert "the store is damaged" in r.out

    r = damaged.iv("--json", "fsck")
    assert r.rc == EXIT_DAMAGE, str(r)
    lines = r.json()
    problems = [line["problem"] for line in lines if "problem" in line]
    for name in victims:
        assert any(f"default/{name}" in p for p in problems), str(r)
    assert lines[-1]["problems"] == len(victims)

    # fsck fixes nothing by itself and removes no referenced blob.
    assert damaged.iv("fsck").rc == EXIT_DAMAGE


def test_fsck_repair_marks_damaged_images(damaged):
    flip(damaged.blob_of("default", "big.png"), chunk_offset(1) + 24 + 5)
    r = damaged.iv("fsck", "--repair")
    assert r.rc == EXIT_DAMAGE, str(r)
    assert re.search(r"^damaged: .*default/big\.png", r.out, re.M), str(r)
    listed = {im["name"]: im for im in damaged.ls_json()}
    assert listed["big.png"]["damaged"] is True
    assert all(not im["damaged"] for n, im in listed.items() if n != "big.png")
    r = damaged.iv("ls", "default")
    assert re.search(r"DAMAGED\s+big\.png", r.out), str(r)


def test_chunk_prefix_before_damage_is_correct(damaged):
    """Damage in chunk 3 of 4: if cat streams, what it wrote is the first
    three chunks exactly, never a byte of chunk 3."""
    flip(damaged.blob_of("default", "aligned.png"), chunk_offset(3) + 24 + 7)
    real = damaged.expected["default/aligned.png"]
    r = damaged.cat("default/aligned.png")
    assert r.rc == EXIT_DAMAGE, str(r)
    assert len(r.stdout) <= 3 * CHUNK
    assert real.startswith(r.stdout)


def test_damage_is_audited(damaged):
    flip(damaged.blob_of("default", "small.jpg"), chunk_offset(0) + 30)
    damaged.iv("fsck")
    entries = damaged.iv("--json", "audit", passfile=None).json()
    pid = damaged.image_id("default", "small.jpg")
    assert any(e["action"] == "fsck" and e["result"] == "damaged" and e["object"] == pid
               for e in entries), entries[-5:]
