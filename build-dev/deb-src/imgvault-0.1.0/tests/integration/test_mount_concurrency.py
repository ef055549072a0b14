"""Eight processes on one mount at once: writers overwriting their own files
and shared ones (in place and rsync-style), readers reading everything.
Every read is one whole committed version (never a mix, never bytes that
were refused), a writer's new open after close() reads what it wrote, and
nothing hangs.  Then overwrites racing the thumbnail worker."""
import multiprocessing
import os
import random
import time
import traceback

import pytest

pytest.register_assert_rewrite("mountlib")   # before the import below

from conftest import convert, sha256
from mountlib import file_sha, image_info, read_bytes, write_file

pytest_plugins = ["mountlib"]      # its fixtures

PROCS = 8
WRITERS = 4
SECONDS = 12                   # each process works this long
JOIN_TIMEOUT = SECONDS + 90    # a process not done by then is hung
SHARED = [f"shared-{i}.jpg" for i in range(4)]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Six distinct images from 1 KB to > 300 KB (several 64 KiB chunks)."""
    d = tmp_path_factory.mktemp("pool")
    convert("-size", "40x30", "xc:orange", d / "p0.jpg")
    convert("-seed", 61, "-size", "300x200", "plasma:", "-quality", 85, d / "p1.jpg")
    convert("-seed", 62, "-size", "640x480", "plasma:", "-quality", 92, d / "p2.jpg")
    convert("-seed", 63, "-size", "900x700", "plasma:", "-quality", 90, d / "p3.jpg")
    convert("-seed", 64, "-size", "340x260", "plasma:", "+noise", "Random", d / "p4.png")
    convert("-size", "32x32", "xc:teal", d / "p5.gif")
    data = [p.read_bytes() for p in sorted(d.iterdir())]
    assert len({sha256(x) for x in data}) == 6
    return data


def describe(got, pool):
    """Which versions a bad read's bytes come from, by 4 KiB page."""
    pages = []
    for off in range(0, len(got), 4096):
        chunk = got[off:off + 4096]
        src = [k for k, x in enumerate(pool) if x[off:off + len(chunk)] == chunk]
        pages.append("".join(map(str, src)) or ("0s" if chunk == bytes(len(chunk)) else "?"))
    return f"pages from pool items {pages[:12]}{'...' if len(pages) > 12 else ''}, " \
        f"sizes {[len(x) for x in pool]}"


def own_files(i):
    return [f"own-{i}-a.jpg", f"own-{i}-b.jpg"]


def worker(i, original, thumbdir, pool, seed, out):
    """Process @i: writers (i < WRITERS) overwrite their own files and the
    shared ones; everyone reads everything.  Reports counts or the failure."""
    rnd = random.Random(seed)
    valid = {sha256(x) for x in pool}
    sizes = {len(x) for x in pool}
    stats = {"writes": 0, "reads": 0, "renames": 0, "refused": 0, "stats": 0}
    last = {}
    try:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            r = rnd.random()
            if i < WRITERS and r < 0.35:
                name = rnd.choice(own_files(i))
                data = rnd.choice(pool)
                if rnd.random() < 0.3:
                    tmp = os.path.join(original, f".{name}.{rnd.randrange(1 << 30):08x}")
                    write_file(tmp, data)
                    os.rename(tmp, os.path.join(original, name))
                    stats["renames"] += 1
                else:
                    write_file(os.path.join(original, name), data)
                stats["writes"] += 1
                last[name] = sha256(data)
                # A new open after close() returned: the new bytes, whole.
                got = read_bytes(os.path.join(original, name))
                if sha256(got) != last[name]:
                    raise AssertionError(f"stale read of {name} right after its overwrite: "
                                         f"{len(got)} bytes, wanted {len(data)}")
            elif i < WRITERS and r < 0.45:
                name = rnd.choice(SHARED)
                write_file(os.path.join(original, name), rnd.choice(pool))
                stats["writes"] += 1
            elif i < WRITERS and r < 0.48:
                # A refused write over a shared file: nobody may ever read it.
                fd = os.open(os.path.join(original, rnd.choice(SHARED)),
                             os.O_WRONLY | os.O_TRUNC)
                os.write(fd, b"<html>" + b"x" * rnd.randrange(100, 200000))
                try:
                    os.close(fd)
                    raise AssertionError("a non-image was accepted")
                except OSError:
                    stats["refused"] += 1
            elif r < 0.52:
                # Metadata of files being replaced: never ENOENT, never a torn size.
                name = rnd.choice(SHARED)
                st = os.stat(os.path.join(original, name))
                if st.st_size not in sizes:
                    raise AssertionError(f"stat of {name}: size {st.st_size}")
                if name not in os.listdir(original):
                    raise AssertionError(f"{name} missing from the listing")
                stats["stats"] += 1
            else:
                names = SHARED + [n for j in range(WRITERS) for n in own_files(j)]
                name = rnd.choice(names)
                with open(os.path.join(original, name), "rb") as f:
                    if rnd.random() < 0.5:
                        got = f.read()
                    else:                            # small reads, as a web server does
                        parts = []
                        while True:
                            b = f.read(rnd.choice([1000, 4096, 65536, 70000]))
                            if not b:
                                break
                            parts.append(b)
                        got = b"".join(parts)
                if sha256(got) not in valid:
                    raise AssertionError(f"read of {name} gave {len(got)} bytes that are no "
                                         f"committed version (a mix or refused bytes): "
                                         f"{describe(got, pool)}")
                stats["reads"] += 1
        out.put((i, "ok", stats, last))
    except BaseException:
        out.put((i, "fail", traceback.format_exc(), last))


def test_eight_processes(desktop_mount, pool):
    m = desktop_mount
    original, thumbdir = str(m.view("original")), str(m.view("thumb"))
    first = {}
    for name in SHARED + [n for j in range(WRITERS) for n in own_files(j)]:
        first[name] = pool[len(first) % len(pool)]
        write_file(m.original(name), first[name])

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(i, original, thumbdir, pool, 1000 + i, out))
             for i in range(PROCS)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results = {}
    try:
        while len(results) < PROCS:
            left = JOIN_TIMEOUT - (time.monotonic() - t0)
            if left <= 0:
                break
            try:
                i, status, info, last = out.get(timeout=left)
            except Exception:
                break
            results[i] = (status, info, last)
    finally:
        hung = [i for i, p in enumerate(procs) if i not in results]
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=30)
    assert not hung, f"processes {hung} did not finish within {JOIN_TIMEOUT} s (a deadlock?)"
    failed = {i: r[1] for i, r in results.items() if r[0] != "ok"}
    assert not failed, "\n".join(f"process {i}:\n{tb}" for i, tb in failed.items())
    total = {k: sum(r[1][k] for r in results.values()) for k in results[0][1]}
    assert total["writes"] > 50 and total["reads"] > 200 and total["renames"] > 5 and \
        total["refused"] > 0 and total["stats"] > 5, total

    # Afterwards: every file is its writer's last version; pristine the first.
    valid = {sha256(x) for x in pool}
    for i, (_, _, last) in results.items():
        for name, digest in last.items():
            assert file_sha(m.original(name)) == digest, name
    for name, data in first.items():
        assert file_sha(m.original(name)) in valid, name
        assert read_bytes(m.pristine(name)) == data, name
    assert sorted(os.listdir(original)) == sorted(first)      # no temporaries left


def test_overwrites_racing_the_thumbnail_worker(desktop_mount, tmp_path):
    """An image overwritten while the worker decodes its previous version
    (whose blob the commit deletes) is not damaged: its thumbnail is made
    for the new version and reads back."""
    m = desktop_mount
    big = []
    for i in range(3):
        p = tmp_path / f"big{i}.jpg"
        convert("-seed", 70 + i, "-size", "2400x1800", "plasma:", "-quality", 85, p)
        big.append(p.read_bytes())
    for round_ in range(6):
        for i in range(3):
            write_file(m.original("racing.jpg"), big[(round_ + i) % 3])
    fmt, w, h = image_info(read_bytes(m.thumb("racing.jpg")))
    assert (fmt, max(w, h)) == ("JPEG", 256)
    m.stop()
    r = m.store.iv("--json", "ls", "default")
    assert r.rc == 0, str(r)
    assert [im["damaged"] for im in r.json()] == [False], str(r)
    r = m.store.iv("--json", "audit")
    assert not [a for a in r.json() if a["action"] == "decode"], \
        "overwritten images were marked damaged:\n" + r.out
