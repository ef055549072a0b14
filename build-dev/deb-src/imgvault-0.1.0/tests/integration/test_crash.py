"""Interrupted work: an import on a full disk, kill -9 at many moments of an
import and of a key rotation.  Whatever happens, the store stays consistent
(fsck exits 0, at most removing leftovers), every image reported imported
reads back byte-exact, and an interrupted rotation resumes."""
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import (EXIT_PARTIAL, aligned_image, assert_fsck_clean, clean_env,
                      make_noise_images, make_store, need_root, sha256)


def reported(out_bytes):
    """The images an import's --json output promised (complete lines only)."""
    done = []
    text = out_bytes.decode("utf-8", "surrogateescape")
    for line in text.split("\n")[:-1]:          # the part after the last \n is unfinished
        obj = json.loads(line)
        if "sha256" in obj:
            done.append(obj)
    return done


def store_is_tidy(store):
    """After fsck: no leftovers in tmp/, and the blob files on disk are exactly
    the blobs the catalog references (image versions, thumbnails, ...)."""
    assert os.listdir(store.path / "tmp") == [], "fsck left files in tmp/"
    on_disk = {p.name.lower() for p in store.blob_files()}
    referenced = store.referenced_blobs()
    assert on_disk == referenced, \
        f"{len(on_disk - referenced)} unreferenced blobs left, " \
        f"{len(referenced - on_disk)} referenced blobs missing"


# ---- disk full ----

@pytest.fixture
def small_fs(tmp_path):
    need_root("mounts a 3 MiB tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mnt)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stdout.decode(errors='replace')}")
    yield mnt
    if subprocess.run(["umount", str(mnt)], timeout=30).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], timeout=30)


def test_disk_full_during_import(imgvault, small_fs, tmp_path, passfile):
    store = make_store(imgvault, small_fs / "store", passfile)
    files = make_noise_images(tmp_path / "many", 12, prefix="full", ext="png", w=380, h=280,
                              step=6, seed=11)
    assert sum(f.stat().st_size for f in files) > 4 << 20, "the images would fit"

    r = store.iv("--json", "import", tmp_path / "many")
    assert r.rc not in (0, EXIT_PARTIAL), str(r)
    assert re.search(r"space", r.err, re.I), f"the error does not say the disk is full\n{r}"
    assert "import stopped" in r.err, str(r)
    done = reported(r.stdout)
    assert 0 < len(done) < len(files), str(r)
    by_name = {f.name: f for f in files}
    for line in done:
        assert line["sha256"] == sha256(by_name[line["name"]].read_bytes())

    assert_fsck_clean(store)
    store_is_tidy(store)
    listed = {im["name"] for im in store.ls_json()}
    assert listed == {line["name"] for line in done}, "the catalog and the report disagree"
    for line in done:
        got = store.cat(f"default/{line['name']}")
        assert got.rc == 0, str(got)
        assert sha256(got.stdout) == line["sha256"]

    # Room again: the store goes on working.
    r = store.iv("rm", *[f"default/{line['name']}" for line in done])
    assert r.rc == 0, str(r)
    assert_fsck_clean(store)
    r = store.iv("--json", "import", files[-1])
    assert r.rc == 0, str(r)
    got = store.cat(f"default/{files[-1].name}")
    assert got.rc == 0 and got.stdout == files[-1].read_bytes()


# ---- kill -9 ----

RUNS = 22
SEED = 0x1a2b3c


def _reader(pipe, q):
    for line in iter(pipe.readline, b""):
        q.put((time.monotonic(), line))
    q.put((time.monotonic(), None))


def spawn_and_kill(cmd, after_lines, delay, timeout=120):
    """Runs @cmd and SIGKILLs it @delay seconds after its start (@after_lines
    None) or after its @after_lines-th line of output (or its end).  Reads the
    output as it comes.  Returns (returncode, stdout bytes, stderr bytes)."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=clean_env())
    q = queue.Queue()
    t = threading.Thread(target=_reader, args=(p.stdout, q), daemon=True)
    t.start()
    lines = []
    try:
        if after_lines:
            deadline = time.monotonic() + timeout
            while len(lines) < after_lines and time.monotonic() < deadline:
                try:
                    _, line = q.get(timeout=0.5)
                except queue.Empty:
                    continue
                if line is None:
                    q.put((0, None))
                    break
                lines.append(line)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    t.join(timeout=timeout)
    while True:
        _, line = q.get()
        if line is None:
            break
        lines.append(line)
    err = p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    return p.returncode, b"".join(lines), err


def timed_run(cmd, timeout=120):
    """Runs @cmd to its end: (seconds to its first line of output, seconds in
    all, returncode, stdout)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=clean_env())
    first = None
    out = b""
    for line in iter(p.stdout.readline, b""):
        if first is None:
            first = time.monotonic() - t0
        out += line
    p.wait(timeout=timeout)
    p.stdout.close()
    total = time.monotonic() - t0
    return (first if first is not None else total), total, p.returncode, out


def test_kill9_during_import(imgvault, store, tmp_path):
    files = make_noise_images(tmp_path / "forty", 40, prefix="k", ext="jpg", w=240, h=180,
                              step=6, seed=21)
    src = {f.name: f.read_bytes() for f in files}
    rng = random.Random(SEED)

    # How long a whole import takes here, to spread the kills over it.
    t0 = time.monotonic()
    r = store.iv("--json", "import", "--album", "calibration", tmp_path / "forty")
    duration = time.monotonic() - t0
    assert r.rc == 0, str(r)

    killed_midway = 0
    promised = {}
    for run in range(RUNS):
        album = f"run{run:02d}"
        # Half the kills at a random time, half right after the k-th report
        # (the next image is then being written or committed).
        after_lines = rng.randrange(0, 40) if run % 2 else None
        delay = rng.uniform(0, duration * 1.1) if after_lines is None else rng.uniform(0, 0.004)
        cmd = [str(imgvault), "-s", str(store.path), "--passphrase-file", str(store.passfile),
               "--json", "import", "--album", album, str(tmp_path / "forty")]
        rc, out, err = spawn_and_kill(cmd, None if after_lines is None else after_lines + 1,
                                      delay)
        assert rc in (0, -signal.SIGKILL), err
        done = reported(out)
        if rc == -signal.SIGKILL and 0 < len(done) < 40:
            killed_midway += 1
        if rc == 0:
            assert len(done) == 40

        for line in done:
            assert line["album"] == album
            assert line["sha256"] == sha256(src[line["name"]]), line

        ctx = f"run {run}: killed after {len(done)} reported images"
        r = store.iv("fsck")
        assert r.rc == 0, f"{ctx}\n{r}"
        assert "damaged:" not in r.out, f"{ctx}\n{r}"
        store_is_tidy(store)

        # Reported means committed; whatever else is there is also whole.
        r = store.iv("--json", "ls", album)
        if r.rc == 0:
            listed = {im["name"]: im for im in r.json()}
        else:       # killed before the album was made
            assert not done and "no album" in r.err, f"{ctx}\n{r}"
            listed = {}
        for line in done:
            assert line["name"] in listed, f"{ctx}: {line['name']} was reported but is gone"
        for name, im in listed.items():
            assert im["sha256"] == sha256(src[name]), f"{ctx}: {name} has wrong content"
        for line in done:
            got = store.cat(f"{album}/{line['name']}")
            assert got.rc == 0, f"{ctx}\n{got}"
            assert sha256(got.stdout) == line["sha256"], f"{ctx}: {line['name']} reads back wrong"
        promised[album] = {line["name"] for line in done}

    assert killed_midway >= 5, f"only {killed_midway} of {RUNS} kills hit an import midway"

    # After all that, a whole import still works and the store is clean.
    r = store.iv("--json", "import", "--album", "final", tmp_path / "forty")
    assert r.rc == 0, str(r)
    assert (r.json()[-1]["imported"], r.json()[-1]["refused"]) == (40, 0)
    assert_fsck_clean(store)
    store_is_tidy(store)
    # Every image ever reported, after all the later crashes, still intact.
    dest = tmp_path / "everything"
    r = store.iv("export", dest)
    assert r.rc == 0, str(r)
    for album, names in promised.items():
        for name in names:
            assert (dest / album / name).read_bytes() == src[name], f"{album}/{name}"
    for name in ("k-00.jpg", "k-39.jpg"):
        got = store.cat(f"final/{name}")
        assert got.rc == 0 and got.stdout == src[name], str(got)


# ---- interrupted key rotation ----

def recovery_works(store, code, tmp_path):
    """Whether @code opens the vault (it resets the passphrase to the same one)."""
    f = tmp_path / "try.code"
    f.write_text(code + "\n")
    r = store.iv("user", "recover", "--recovery-code-file", f, "--new-passphrase-file",
                 store.passfile, "--kdf", "interactive", passfile=None)
    assert r.rc in (0, 3), str(r)
    return r.rc == 0


def rekey_state(store):
    r = store.iv("--json", "user", "list")
    assert r.rc == 0, str(r)
    return r.json()[-1]["rekey_in_progress"]


def codes_in(out_bytes):
    return [obj["recovery_code"] for obj in reported_objs(out_bytes) if "recovery_code" in obj]


def reported_objs(out_bytes):
    text = out_bytes.decode("utf-8", "surrogateescape")
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


@pytest.fixture
def rekey_store(store, image_set, tmp_path):
    """A vault whose rotation takes a while: 24 MiB in large images that are
    cheap to thumbnail (small PNGs padded to 3 MiB), and a few photos."""
    d = tmp_path / "rekey-src"
    files = make_noise_images(d, 6, prefix="r", ext="jpg", w=240, h=180, step=6, seed=31)
    for small in make_noise_images(tmp_path / "tiny", 8, prefix="pad", ext="png", w=16, h=12,
                                   step=1, seed=32):
        files.append(aligned_image(small, d / small.name, chunks=48))
    r = store.iv("import", d, image_set["big.png"])
    assert r.rc == 0, str(r)
    store.expected = {f"default/{f.name}": f.read_bytes() for f in files}
    store.expected["default/big.png"] = image_set["big.png"].read_bytes()
    return store


def check_content(store, tmp_path, tag):
    dest = tmp_path / f"export-{tag}"
    r = store.iv("export", dest)
    assert r.rc == 0, f"{tag}\n{r}"
    for spec, data in store.expected.items():
        assert (dest / spec).read_bytes() == data, f"{tag}: {spec} differs"
    shutil.rmtree(dest)


def test_rekey_interrupted_before_the_code_is_shown(rekey_store, tmp_path):
    """A rotation dies right after it began (here: its output pipe is gone,
    as with `imgvault rekey | head`): the resumed rotation must leave the
    user a recovery code that works: the old one, or a new one it shows."""
    s = rekey_store
    rd, wr = os.pipe()
    os.close(rd)
    p = subprocess.run([str(s.binary), "-s", str(s.path), "--passphrase-file", str(s.passfile),
                        "--json", "rekey", "--full", "--kdf", "interactive"],
                       stdin=subprocess.DEVNULL, stdout=wr, stderr=subprocess.PIPE,
                       env=clean_env(), timeout=120)
    os.close(wr)
    assert p.returncode != 0
    assert_fsck_clean(s)
    check_content(s, tmp_path, "interrupted")
    r = s.iv("--json", "rekey", "--kdf", "interactive")
    assert r.rc == 0, str(r)
    assert rekey_state(s) is False
    check_content(s, tmp_path, "resumed")
    shown = [s.recovery] + codes_in(r.stdout)
    assert any(recovery_works(s, c, tmp_path) for c in reversed(shown)), \
        "after the resumed rotation no recovery code the user was ever shown works"


RUNS_REKEY = 12


def test_kill9_during_rekey(rekey_store, tmp_path):
    s = rekey_store
    rng = random.Random(SEED + 1)

    def cmd(full):
        return [str(s.binary), "-s", str(s.path), "--passphrase-file", str(s.passfile),
                "--json", "rekey", "--kdf", "interactive"] + (["--full"] if full else [])

    # When the rotation proper starts (its new code is printed), and ends.
    begin, total, rc, out = timed_run(cmd(True))
    assert rc == 0
    code = codes_in(out)[-1]
    interrupted = 0
    for run in range(RUNS_REKEY):
        full = run % 3 != 2
        if run % 6 == 5:        # now and then during the unlock and the start
            after, delay = None, rng.uniform(0, begin)
        else:                   # else during the rotation of the blobs (then
            # the thumbnails are remade: the later part of the run)
            after, delay = 1, rng.uniform(0, (total - begin) * 0.5)
        rc, out, err = spawn_and_kill(cmd(full), after, delay)
        assert rc in (0, -signal.SIGKILL), err
        printed = codes_in(out)
        ctx = f"run {run} ({'full' if full else 'rewrap'}, killed {delay:.3f}s after " \
              f"{'its start' if after is None else 'its new code'})"

        # Interrupted or not: consistent, and every image reads back.
        r = s.iv("fsck")
        assert r.rc == 0 and "damaged:" not in r.out, f"{ctx}\n{r}"
        store_is_tidy(s)
        check_content(s, tmp_path, f"{run}-killed")
        for spec in ("default/r-00.jpg", "default/big.png"):
            got = s.cat(spec)
            assert got.rc == 0 and got.stdout == s.expected[spec], f"{ctx}\n{got}"

        if rekey_state(s):
            interrupted += 1
            r = s.iv("--json", "rekey", "--kdf", "interactive")
            assert r.rc == 0, f"{ctx}: resuming failed\n{r}"
            printed += codes_in(r.stdout)
            assert rekey_state(s) is False
            assert_fsck_clean(s)
            store_is_tidy(s)
            check_content(s, tmp_path, f"{run}-resumed")
        if printed:
            # The new code is shown before the rotation commits: killed in
            # between, the old code still works and the shown one never did.
            # Exactly one of the two must work.
            new_ok = recovery_works(s, printed[-1], tmp_path)
            old_ok = recovery_works(s, code, tmp_path)
            assert new_ok != old_ok, \
                f"{ctx}: shown code works: {new_ok}, old code works: {old_ok}"
            if new_ok:
                code = printed[-1]
    assert interrupted >= 3, f"only {interrupted} of {RUNS_REKEY} kills interrupted a rotation"
    assert recovery_works(s, code, tmp_path)
