"""kill -9 of imgvaultd in the middle of a copy, again and again.

Each round a copier writes images one at a time with os.open/write/close
and reports every close() that succeeded; the daemon is killed at a random
moment.  Then: the mount is stale (ENOTCONN) and the daemon, started again
on it, detaches it itself; every reported file reads back intact; no
half-written file is visible (each is a whole source file or an empty
placeholder); and with the daemon stopped, imgvault fsck is clean (it may
remove the orphans of interrupted writes).  Rounds run as root and, through
fusermount3, as an unprivileged user."""
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("mountlib")   # before the import below

from conftest import make_noise_images, sha256
from mountlib import as_user, is_stale, mountinfo_has, read_bytes

pytest_plugins = ["mountlib"]      # its fixtures

ROOT_ROUNDS = 22
USER_ROUNDS = 8

COPIER = r"""
import os, sys
pairs = [line.rstrip("\n").split("\t") for line in sys.stdin]
for src, dst in pairs:
    with open(src, "rb") as f:
        data = f.read()
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.close(fd)
    except OSError as e:
        print("fail", os.path.basename(dst), e.errno, flush=True)
        sys.exit(0)
    print("ok", os.path.basename(dst), flush=True)
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def sources():
    """30 distinct JPEGs of 30-90 KB and 3 PNGs of several 64 KiB chunks, in
    a directory every user can read (the copier may run as one)."""
    d = Path(tempfile.mkdtemp(prefix="imgvault-crash-", dir="/tmp"))
    d.chmod(0o755)
    files = make_noise_images(d, 30, prefix="c", w=300, h=220, step=8, seed=31)
    files += make_noise_images(d, 3, prefix="p", ext="png", w=260, h=200, step=10, seed=32)
    for p in files:
        p.chmod(0o644)
    yield {p.name: p.read_bytes() for p in files}, d
    shutil.rmtree(d, ignore_errors=True)


def run_as(user):
    """Popen arguments that run a child as @user (None: as we are)."""
    if not user:
        return {}
    import pwd
    pw = pwd.getpwnam(user)
    return dict(user=pw.pw_uid, group=pw.pw_gid,
                extra_groups=os.getgrouplist(user, pw.pw_gid))


def call(user, fn, *args):
    return as_user(user, fn, *args) if user else fn(*args)


def crash_rounds(m, user, rounds, srcs, srcdir, seed):
    """The rounds on mount @m (daemon as @user, or root)."""
    rnd = random.Random(seed)
    data, names = srcs, sorted(srcs)
    confirmed = {}                       # mount name -> bytes, over all rounds
    finished = 0
    original = m.view("original")
    for rnd_no in range(rounds):
        if not m.daemon.running:
            m.start()
        order = names[:]
        rnd.shuffle(order)
        pairs = [(srcdir / n, original / f"r{rnd_no:02d}-{n}") for n in order]
        copier = subprocess.Popen([sys.executable, "-c", COPIER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  **run_as(user))
        copier.stdin.write("".join(f"{s}\t{d}\n" for s, d in pairs).encode())
        copier.stdin.close()
        # Kill after a random number of files, at a random moment of the next.
        lines = []
        kill_after = rnd.randrange(0, len(pairs) - 8)
        while len(lines) < kill_after:
            line = copier.stdout.readline().decode()
            if not line:
                break
            lines.append(line.strip())
        time.sleep(rnd.uniform(0, 0.004))
        m.daemon.kill9()
        try:
            lines += copier.stdout.read().decode().splitlines()
            copier.wait(timeout=60)
        except subprocess.TimeoutExpired:
            copier.kill()
            pytest.fail(f"round {rnd_no}: the copier hung after the daemon died")
        if "done" in lines:
            finished += 1          # the copy outran the kill: checked all the same
        ok = [line.split()[1] for line in lines if line.startswith("ok ")]
        for name in ok:
            confirmed[name] = data[name.split("-", 1)[1]]

        # The mount is stale; the daemon detaches it itself and mounts again.
        assert mountinfo_has(m.root), f"round {rnd_no}: the mount vanished"
        assert call(user, is_stale, m.root), \
            f"round {rnd_no}: the dead daemon's mount does not answer ENOTCONN"
        stale_before = m.daemon.output().count(b"a stale mount")
        m.daemon.start()
        assert m.daemon.output().count(b"a stale mount") == stale_before + 1, \
            m.daemon.text()

        # What close() confirmed is there, byte for byte; nothing is half-written.
        listed = call(user, os.listdir, original)
        mine = [n for n in listed if n.startswith(f"r{rnd_no:02d}-")]
        assert set(ok) <= set(mine), f"round {rnd_no}: confirmed files missing"
        assert not set(n for n in listed if not n.startswith("r")), listed
        for name in mine:
            got = call(user, read_bytes, original / name)
            src = data[name.split("-", 1)[1]]
            if name in ok:
                assert got == src, f"round {rnd_no}: {name} reads back different bytes"
            else:
                assert got in (b"", src), \
                    f"round {rnd_no}: {name} is half-written ({len(got)} of {len(src)} bytes)"
        for name in call(user, os.listdir, m.view("pristine")):
            if name.startswith(f"r{rnd_no:02d}-"):
                assert sha256(call(user, read_bytes, m.pristine(name))) == \
                    sha256(data[name.split("-", 1)[1]]), name

        # fsck with the daemon stopped: clean, perhaps after removing orphans.
        m.stop()
        r = m.store.iv("fsck")
        assert r.rc == 0, f"round {rnd_no}:\n{r}"
        assert "damaged" not in r.out, f"round {rnd_no}:\n{r}"
    # At the end, everything ever confirmed.
    m.start()
    for name, src in confirmed.items():
        assert call(user, read_bytes, original / name) == src, name
    assert len(confirmed) > rounds, f"only {len(confirmed)} files confirmed in {rounds} rounds"
    assert finished <= rounds // 4, \
        f"{finished} of {rounds} copies finished before the kill: the crashes are untested"
    return confirmed


def test_kill_9_during_cp_as_root(desktop_mount, sources):
    data, d = sources
    crash_rounds(desktop_mount, None, ROOT_ROUNDS, data, d, seed=7)


def test_kill_9_during_cp_unprivileged(desktop_mount_as, sources):
    """The stale mount of a user's daemon is detached with fusermount3."""
    m = desktop_mount_as("kil")
    data, d = sources
    crash_rounds(m, m.user, USER_ROUNDS, data, d, seed=8)
