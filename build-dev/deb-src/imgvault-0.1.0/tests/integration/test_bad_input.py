"""Bad input of every kind: each gives a clear error (exit code and words) and
loses nothing: the other images still read back byte-exact."""
import errno
import fcntl
import os
import random
import re
import shutil
import subprocess
import time

import pytest

from conftest import (EXIT_AUTH, EXIT_BUSY, EXIT_DAMAGE, EXIT_FAIL, EXIT_PARTIAL, add_user,
                      assert_fsck_clean, assert_reads_back, clean_env, fsbytes, is_root,
                      convert, make_store, run_cli, sha256, uid_of, write_secret)

pytest.register_assert_rewrite("mountlib")   # before the import below
from mountlib import read_bytes, write_file  # noqa: E402

pytest_plugins = ["mountlib"]      # its fixtures


# ---- passphrases and keys ----

def test_wrong_passphrase(filled, tmp_path):
    wrong = write_secret(tmp_path / "wrong", "correct horse battery stapler")
    for args in (["ls"], ["cat", "default/small.jpg"],
                 ["import", tmp_path / "images" / "photo.jpg"], ["export", tmp_path / "x"],
                 ["rm", "default/small.jpg"], ["fsck"]):
        r = filled.iv(*args, passfile=wrong)
        assert r.rc == EXIT_AUTH, str(r)
        assert "wrong passphrase" in r.err, str(r)
        assert r.stdout == b"", str(r)
    assert not (tmp_path / "x" / "default").exists()
    assert_reads_back(filled, filled.expected)
    assert len(filled.ls_json()) == len(filled.expected)
    # The refusals are on the record.
    entries = filled.iv("--json", "audit", passfile=None).json()
    assert sum(e["action"] == "unlock" and e["result"] == "refused" for e in entries) >= 6


def test_empty_and_missing_passphrase_file(filled, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    r = filled.iv("ls", passfile=empty)
    assert r.rc != 0 and r.rc != EXIT_AUTH, str(r)
    assert "empty" in r.err, str(r)
    r = filled.iv("ls", passfile=tmp_path / "nope")
    assert r.rc == EXIT_FAIL, str(r)
    assert "cannot open" in r.err and "nope" in r.err, str(r)
    # No terminal and no file: says how to give it instead of hanging.
    r = filled.iv("ls", passfile=None)
    assert r.rc != 0, str(r)
    assert "--passphrase-file" in r.err, str(r)


@pytest.fixture
def sys_filled(system_store, image_set):
    """A system store where alice has the image set (imported by root)."""
    s = system_store
    add_user(s, s.alice)
    r = s.iv("--user", s.alice, "import", *image_set.values())
    assert r.rc == 0, str(r)
    s.expected = {f"default/{n}": p.read_bytes() for n, p in image_set.items()}
    return s


def test_missing_server_key_file(sys_filled, tmp_path):
    s = sys_filled
    missing = tmp_path / "no-such.key"
    r = run_cli(s.binary, "-s", s.path, "-k", missing, "--user", s.alice, "ls")
    assert r.rc == EXIT_FAIL, str(r)
    assert f"cannot open server key {missing}" in r.err, str(r)
    assert "No such file" in r.err and "--server-key" in r.err, str(r)
    # Nor from the environment or the default: the key is never guessed.
    r = run_cli(s.binary, "-s", s.path, "--user", s.alice, "ls",
                env={"IMGVAULT_SERVER_KEY": str(missing)})
    assert r.rc == EXIT_FAIL, str(r)
    assert "cannot open server key" in r.err, str(r)
    for spec, data in s.expected.items():
        r = s.iv("--user", s.alice, "cat", spec)
        assert r.rc == 0 and r.stdout == data, str(r)


def test_wrong_server_key(sys_filled, tmp_path):
    s = sys_filled
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    other.chmod(0o400)
    r = run_cli(s.binary, "-s", s.path, "-k", other, "--user", s.alice, "cat",
                "default/small.jpg")
    assert r.rc == EXIT_AUTH, str(r)
    assert "does not belong to store" in r.err, str(r)
    assert r.stdout == b""
    # The key of another system store is just as wrong.
    r = run_cli(s.binary, "init", tmp_path / "store2", "--server-key", tmp_path / "k2")
    assert r.rc == 0, str(r)
    r = run_cli(s.binary, "-s", s.path, "-k", tmp_path / "k2", "--user", s.alice, "ls")
    assert r.rc == EXIT_AUTH, str(r)
    # A file that is not a key at all.
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key\n")
    junk.chmod(0o400)
    r = run_cli(s.binary, "-s", s.path, "-k", junk, "--user", s.alice, "ls")
    assert r.rc != 0, str(r)
    assert "not an imgvault server key" in r.err, str(r)
    for spec, data in s.expected.items():
        r = s.iv("--user", s.alice, "cat", spec)
        assert r.rc == 0 and r.stdout == data, str(r)


def test_server_key_readable_by_others_is_refused(sys_filled):
    s = sys_filled
    s.server_key.chmod(0o644)
    r = s.iv("--user", s.alice, "ls", "default")
    assert r.rc != 0, str(r)
    assert "chmod 0400" in r.err, str(r)
    assert str(s.server_key) in r.err
    assert r.stdout == b""
    s.server_key.chmod(0o440)
    r = s.iv("--user", s.alice, "ls", "default")
    assert r.rc != 0 and "chmod 0400" in r.err, str(r)
    s.server_key.chmod(0o400)
    for spec, data in s.expected.items():
        r = s.iv("--user", s.alice, "cat", spec)
        assert r.rc == 0 and r.stdout == data, str(r)


def test_system_store_as_root_needs_a_user(sys_filled):
    r = sys_filled.iv("ls")
    assert r.rc != 0, str(r)
    assert "--user NAME" in r.err, str(r)


# ---- stores that are not (or not yet) ours ----

def test_store_from_a_newer_format(filled):
    marker = filled.path / "imgvault-store"
    assert marker.read_text() == "imgvault store format 1\n"
    marker.write_text("imgvault store format 2\n")
    for args in (["ls"], ["import", filled.path / ".." / "images" / "small.jpg"], ["fsck"]):
        r = filled.iv(*args)
        assert r.rc == EXIT_FAIL, str(r)
        assert "format version 2" in r.err and "upgrade imgvault" in r.err, str(r)
    marker.write_text("imgvault store format 1\n")
    assert_reads_back(filled, filled.expected)
    assert len(filled.ls_json()) == len(filled.expected)


def test_catalog_from_a_newer_schema(filled):
    filled.checkpoint()
    with filled.db() as c:
        current = c.execute("PRAGMA user_version").fetchone()[0]
        assert 0 < current < 99
        c.execute("PRAGMA user_version = 99")
    for args in (["ls"], ["cat", "default/small.jpg"], ["audit"], ["fsck"]):
        r = filled.iv(*args)
        assert r.rc == EXIT_FAIL, str(r)
        assert "schema version 99" in r.err and "upgrade imgvault" in r.err, str(r)
        assert r.stdout == b""
    with filled.db() as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 99, \
            "an older imgvault must not touch a newer catalog"
        c.execute(f"PRAGMA user_version = {current}")
    assert_reads_back(filled, filled.expected)


def test_not_a_store(iv, tmp_path, passfile):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "readme.txt").write_text("hello\n")
    for args in (["ls"], ["fsck"], ["audit"], ["import", d / "readme.txt"]):
        r = iv("-s", d, "--passphrase-file", passfile, *args)
        assert r.rc == EXIT_FAIL, str(r)
        assert f"{d} is not an imgvault store" in r.err, str(r)
    assert sorted(os.listdir(d)) == ["readme.txt"], "it wrote into a directory that is not a store"

    r = iv("-s", tmp_path / "missing", "--passphrase-file", passfile, "ls")
    assert r.rc == EXIT_FAIL, str(r)
    assert "does not exist" in r.err and "imgvault init" in r.err, str(r)
    assert not (tmp_path / "missing").exists()

    # init refuses a directory that holds anything.
    r = iv("init", d, "--passphrase-file", passfile, "--kdf", "interactive")
    assert r.rc == EXIT_FAIL, str(r)
    assert "not empty" in r.err, str(r)
    assert sorted(os.listdir(d)) == ["readme.txt"]


def test_store_from_the_environment(filled, iv, tmp_path):
    r = iv("--passphrase-file", filled.passfile, "ls", "default",
           env={"IMGVAULT_STORE": str(filled.path)})
    assert r.rc == 0, str(r)
    assert "small.jpg" in r.out


# ---- a second process ----

def wait_for_lock_owner(lock, pid, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the first imgvault exited ({proc.returncode}) before "
                        f"holding the lock: {err.decode(errors='replace')}")
        try:
            text = lock.read_text()
        except FileNotFoundError:
            text = ""
        if f"pid {pid}," in text:
            return text.strip()
        time.sleep(0.01)
    pytest.fail(f"lock file never named pid {pid}")


def feed_fifo(fifo, text, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("nobody reads the passphrase FIFO")
            time.sleep(0.01)
    os.write(fd, text.encode())
    os.close(fd)


def test_second_process_is_told_who_holds_the_store(filled, image_set, tmp_path):
    fifo = tmp_path / "pass.fifo"
    os.mkfifo(fifo)
    newdir = tmp_path / "new"
    newdir.mkdir()
    shutil.copy(image_set["photo.jpg"], newdir / "later.jpg")
    # The first process opens the store (taking its lock), then blocks
    # reading its passphrase from the FIFO.
    first = subprocess.Popen(
        [str(filled.binary), "-s", str(filled.path), "--passphrase-file", str(fifo),
         "import", str(newdir / "later.jpg")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=clean_env())
    try:
        owner = wait_for_lock_owner(filled.path / "lock", first.pid, first)
        assert owner.startswith("imgvault import")
        for args in (["ls"], ["cat", "default/small.jpg"], ["import", image_set["icon.gif"]],
                     ["rm", "default/small.jpg"], ["fsck"], ["audit"]):
            r = filled.iv(*args)
            assert r.rc == EXIT_BUSY, str(r)
            assert f"in use by imgvault import (pid {first.pid}, uid {os.getuid()})" in r.err, \
                str(r)
            assert r.stdout == b""
        feed_fifo(fifo, filled.passfile.read_text())
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err.decode(errors="replace")
    assert b"imported" in out
    # Nothing of the refused commands happened, the first one did.
    expected = dict(filled.expected)
    expected["default/later.jpg"] = image_set["photo.jpg"].read_bytes()
    assert {im["name"] for im in filled.ls_json()} == {k.split("/")[1] for k in expected}
    assert_reads_back(filled, expected)
    assert_fsck_clean(filled)


def test_lock_held_by_another_holder(filled):
    lock = filled.path / "lock"
    with open(lock, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"backup-tool (pid {os.getpid()})\n")
        f.flush()
        r = filled.iv("ls")
        assert r.rc == EXIT_BUSY, str(r)
        assert f"in use by backup-tool (pid {os.getpid()})" in r.err, str(r)
    assert_reads_back(filled, filled.expected)


# ---- a damaged catalog ----

DAMAGE_WORDS = re.compile(r"catalog .*damaged.*restore catalog\.db from a backup")


def _scribble(path, start, length, seed):
    rng = random.Random(seed)
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(bytes(rng.randrange(256) for _ in range(length)))


def test_damaged_catalog_every_command_says_so(filled, tmp_path):
    filled.checkpoint()
    db = filled.path / "catalog.db"
    page = 4096
    pages = db.stat().st_size // page
    assert pages >= 8
    # Garbage over the middle of the file: every page but the first (the
    # schema) and the last.
    _scribble(db, page, (pages - 2) * page, seed=1)
    for args in (["ls"], ["ls", "default"], ["cat", "default/small.jpg"],
                 ["import", tmp_path / "images" / "icon.gif"], ["export", tmp_path / "out"],
                 ["rm", "default/small.jpg"], ["audit"], ["audit", "verify"],
                 ["user", "passwd", "--new-passphrase-file", filled.passfile],
                 ["rekey", "--kdf", "interactive"], ["fsck"]):
        r = filled.iv(*args)
        assert r.rc == EXIT_DAMAGE, str(r)
        assert DAMAGE_WORDS.search(r.out + r.err), str(r)
        assert not (b"\x89PNG" in r.stdout or b"\xff\xd8" in r.stdout), str(r)


def test_damaged_catalog_page_in_the_middle(filled):
    filled.checkpoint()
    with filled.db() as c:
        root = c.execute("SELECT rootpage FROM sqlite_master WHERE name = 'images'").fetchone()[0]
        page = c.execute("PRAGMA page_size").fetchone()[0]
    db = filled.path / "catalog.db"
    assert 1 < root < db.stat().st_size // page
    _scribble(db, (root - 1) * page, page, seed=2)    # the images table
    r = filled.iv("ls", "default")
    assert r.rc == EXIT_DAMAGE, str(r)
    assert DAMAGE_WORDS.search(r.err), str(r)
    r = filled.iv("cat", "default/big.png")
    assert r.rc == EXIT_DAMAGE, str(r)
    assert DAMAGE_WORDS.search(r.err), str(r)
    assert r.stdout == b""
    r = filled.iv("fsck")
    assert r.rc == EXIT_DAMAGE, str(r)
    assert re.search(r"^damaged: .*catalog.*damaged", r.out, re.M), str(r)
    assert DAMAGE_WORDS.search(r.out), str(r)


# ---- files that are not images ----

def _refusal_set(d, image_set):
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(image_set["small.jpg"], d / "good.jpg")
    shutil.copy(image_set["big.png"], d / "good.png")
    (d / "notes.txt").write_text("this is not a picture\n" * 20)
    (d / "empty.jpg").write_bytes(b"")
    (d / "script.png").write_bytes(b"#!/bin/sh\necho hi\n")    # lies about its type
    (d / "locked.jpg").write_bytes(image_set["photo.jpg"].read_bytes())
    (d / "locked.jpg").chmod(0)
    return {"good.jpg": (d / "good.jpg").read_bytes(), "good.png": (d / "good.png").read_bytes()}


def _check_refusals(r, d):
    assert r.rc == EXIT_PARTIAL, str(r)
    err = r.err
    assert re.search(rf"skipped {re.escape(str(d / 'notes.txt'))}: not an image", err), str(r)
    assert re.search(rf"skipped {re.escape(str(d / 'script.png'))}: not an image", err), str(r)
    assert re.search(rf"skipped {re.escape(str(d / 'empty.jpg'))}: the file is empty", err), \
        str(r)
    assert re.search(rf"skipped {re.escape(str(d / 'locked.jpg'))}: .*[Pp]ermission denied",
                     err), str(r)
    assert "2 imported, 4 refused" in r.out, str(r)
    assert f"imported {d / 'good.jpg'} as default/good.jpg" in r.out


def test_refused_files_as_a_user(unix_users, shared_dir, imgvault, image_set):
    """Run as a real non-root user: root could read the chmod 000 file."""
    user = unix_users("ivu")
    d = shared_dir / "in"
    good = _refusal_set(d, image_set)
    pf = write_secret(shared_dir / "pass", "the user's own passphrase")
    for p in [shared_dir, d, pf, *d.iterdir()]:
        os.chown(p, uid_of(user), -1)
    store = make_store(imgvault, shared_dir / "store", pf, as_user=user)
    assert store.path.stat().st_uid == uid_of(user)
    r = store.iv("import", d)
    _check_refusals(r, d)
    assert {im["name"] for im in store.ls_json()} == set(good)
    assert_reads_back(store, {f"default/{k}": v for k, v in good.items()})
    assert_fsck_clean(store)


def test_refused_files_unprivileged(store, image_set, tmp_path):
    if is_root():
        pytest.skip("root reads a chmod 000 file; test_refused_files_as_a_user covers it")
    d = tmp_path / "in"
    good = _refusal_set(d, image_set)
    r = store.iv("import", d)
    _check_refusals(r, d)
    assert_reads_back(store, {f"default/{k}": v for k, v in good.items()})


def test_refused_files_json(store, image_set, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(image_set["icon.gif"], d / "a.gif")
    (d / "b.txt").write_text("plain text\n")
    r = store.iv("--json", "import", d / "a.gif", d / "b.txt", d / "does-not-exist.jpg")
    assert r.rc == EXIT_PARTIAL, str(r)
    lines = r.json()
    ok = [line for line in lines if "sha256" in line]
    bad = [line for line in lines if "error" in line]
    assert [line["name"] for line in ok] == ["a.gif"]
    assert [line["path"] for line in bad] == [str(d / "b.txt")]
    assert "not an image" in bad[0]["error"]
    assert f"skipped {d / 'does-not-exist.jpg'}: No such file" in r.err, str(r)
    assert lines[-1]["imported"] == 1
    assert lines[-1]["refused"] == 2, str(r)


def test_only_refused_files(filled, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_text("nope")
    r = filled.iv("import", junk)
    assert r.rc == EXIT_PARTIAL, str(r)
    assert "not an image" in r.err
    assert "junk.jpg" not in {im["name"] for im in filled.ls_json()}
    assert_reads_back(filled, filled.expected)
    assert_fsck_clean(filled)


# ---- writes over the size limit, through the mount ----

LIMIT = 200 * 1024   # image.max-bytes in these tests


@pytest.fixture
def limited_mount(desktop_mount, tmp_path):
    """The desktop mount with image.max-bytes=200K, an image under it and one over."""
    m = desktop_mount
    m.stop()
    r = m.store.iv("config", "image.max-bytes=200K")
    assert r.rc == 0, str(r)
    m.start()
    convert("-seed", "31", "-size", "300x200", "plasma:", "-quality", "85", tmp_path / "ok.jpg")
    convert("-seed", "32", "-size", "900x700", "plasma:", "+noise", "Random",
            "-quality", "95", tmp_path / "big.jpg")
    m.ok = (tmp_path / "ok.jpg").read_bytes()
    m.big = (tmp_path / "big.jpg").read_bytes()
    assert len(m.ok) < LIMIT < len(m.big), (len(m.ok), len(m.big))
    return m


def write_until_refused(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    """Writes @data as a program would; returns (the errno of the refused write,
    the errno of close(), 0 if none)."""
    fd = os.open(path, flags, 0o600)
    werr = cerr = 0
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:65536]):]
    except OSError as e:
        werr = e.errno
    try:
        os.close(fd)
    except OSError as e:
        cerr = e.errno
    return werr, cerr


def test_write_over_size_limit_commits_nothing_new_name(limited_mount):
    m = limited_mount
    werr, cerr = write_until_refused(m.original("big.jpg"), m.big)
    assert werr == errno.EFBIG
    assert cerr == errno.EFBIG            # close() says so: nothing was stored
    # At most an empty placeholder, original/ only; no truncated image anywhere.
    if "big.jpg" in os.listdir(m.view("original")):
        assert os.stat(m.original("big.jpg")).st_size == 0
    assert "big.jpg" not in os.listdir(m.view("pristine"))
    assert "big.jpg" not in os.listdir(m.view("thumb"))
    # One byte over is over: exactly the limit's first bytes are not an image.
    werr, cerr = write_until_refused(m.original("edge.jpg"), m.big[:LIMIT + 1])
    assert (werr, cerr) == (errno.EFBIG, errno.EFBIG)
    assert "over the 204800-byte limit" in m.daemon.text()


def test_write_over_size_limit_keeps_existing_image(limited_mount):
    m = limited_mount
    write_file(m.original("photo.jpg"), m.ok)
    assert read_bytes(m.original("photo.jpg")) == m.ok
    werr, cerr = write_until_refused(m.original("photo.jpg"), m.big)
    assert (werr, cerr) == (errno.EFBIG, errno.EFBIG)
    assert read_bytes(m.original("photo.jpg")) == m.ok
    with open(m.original("photo.jpg"), "rb") as f:          # a second, separate open
        assert f.read() == m.ok
    assert read_bytes(m.pristine("photo.jpg")) == m.ok
    m.stop()
    r = m.store.iv("cat", "default/photo.jpg")
    assert r.rc == 0 and r.stdout == m.ok, str(r)
    r = m.store.iv("--json", "audit")
    assert any(a["action"] == "import" and a["result"] == "refused" for a in r.json()), str(r)


def test_cp_over_size_limit_fails_and_stores_nothing(limited_mount, tmp_path):
    m = limited_mount
    (tmp_path / "src.jpg").write_bytes(m.big)
    write_file(m.original("photo.jpg"), m.ok)
    for name in ("photo.jpg", "new.jpg"):
        p = subprocess.run(["cp", str(tmp_path / "src.jpg"), str(m.original(name))],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        assert p.returncode != 0
        assert b"File too large" in p.stdout, p.stdout
    assert read_bytes(m.original("photo.jpg")) == m.ok
    assert read_bytes(m.pristine("photo.jpg")) == m.ok
    assert read_bytes(m.original("new.jpg")) == b""
    assert "new.jpg" not in os.listdir(m.view("pristine"))
    # The limit is on what is stored, not on the file: a smaller one goes in after.
    write_file(m.original("new.jpg"), m.ok)
    assert read_bytes(m.original("new.jpg")) == m.ok


# ---- odd names ----

NEWLINE = b"two\nlines.jpg"
LATIN1 = b"caf\xe9-\xff.png"
LONG = b"L" * 251 + b".gif"


def test_odd_names_round_trip(store, image_set, tmp_path):
    src = tmp_path / "odd"
    src.mkdir()
    want = {NEWLINE: image_set["small.jpg"].read_bytes(),
            LATIN1: image_set["big.png"].read_bytes(),
            LONG: image_set["icon.gif"].read_bytes(),
            "ünïcødé ✓.jpg".encode(): image_set["photo.jpg"].read_bytes()}
    assert len(LONG) == 255
    for name, data in want.items():
        with open(os.path.join(fsbytes(src), name), "wb") as f:
            f.write(data)
    r = store.iv("--json", "import", src)
    assert r.rc == 0, str(r)
    imported = {line["name"].encode("utf-8", "surrogateescape"): line
                for line in r.json() if "sha256" in line}
    assert set(imported) == set(want)

    listed = {im["name"].encode("utf-8", "surrogateescape"): im for im in store.ls_json()}
    assert set(listed) == set(want)
    for name, data in want.items():
        assert listed[name]["sha256"] == sha256(data)
        r = store.cat(b"default/" + name)
        assert r.rc == 0 and r.stdout == data, str(r)

    # Plain ls escapes what a terminal should not see.
    r = store.iv("ls", "default")
    assert r.rc == 0, str(r)
    assert "two\\nlines.jpg" in r.out and "caf\\xe9-\\xff.png" in r.out, str(r)
    assert len(r.out.splitlines()) == len(want)

    dest = tmp_path / "out"
    r = store.iv("export", dest)
    assert r.rc == 0, str(r)
    out = os.path.join(fsbytes(dest), b"default")
    assert set(os.listdir(out)) == set(want)
    for name, data in want.items():
        with open(os.path.join(out, name), "rb") as f:
            assert f.read() == data, name


def test_name_of_256_bytes_is_refused(store, image_set, tmp_path):
    """No file system lets us make one, so the album name carries the test."""
    r = store.iv("import", "--album", "A" * 256, image_set["small.jpg"])
    assert r.rc != 0 and r.rc != EXIT_PARTIAL, str(r)
    assert "256 bytes" in r.err and "255" in r.err, str(r)
    r = store.iv("--json", "ls")
    assert r.rc == 0, str(r)
    assert all(len(a["album"]) < 256 for a in r.json())
    # 255 is fine.
    r = store.iv("import", "--album", "B" * 255, image_set["small.jpg"])
    assert r.rc == 0, str(r)
    r = store.cat("B" * 255 + "/small.jpg")
    assert r.rc == 0 and r.stdout == image_set["small.jpg"].read_bytes()


def test_bad_album_names(store, image_set):
    for album, words in ((".", "'.' or '..'"), ("..", "'.' or '..'"), ("a/b", "'/'"),
                         ("", "empty")):
        r = store.iv("import", "--album", album, image_set["small.jpg"])
        assert r.rc != 0 and r.rc != EXIT_PARTIAL, str(r)
        assert words in r.err, str(r)
    r = store.iv("--json", "ls")
    assert [a["album"] for a in r.json()] == ["default"]
    assert r.json()[0]["images"] == 0


# ---- special files ----

def test_import_of_a_fifo_does_not_hang(filled, tmp_path):
    """T4: no hang.  A FIFO named on the command line is not a regular file:
    it must be refused, not opened and waited on (holding the store's lock)."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    try:
        r = filled.iv("import", fifo, tmp_path / "images" / "icon.gif", timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("imgvault import FIFO hangs (and holds the store's lock meanwhile)")
    assert r.rc == EXIT_PARTIAL, str(r)
    assert f"skipped {fifo}: not a regular file" in r.err, str(r)
    assert_reads_back(filled, filled.expected)


def test_special_files_in_a_directory_are_reported_as_refused(store, image_set, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    shutil.copy(image_set["small.jpg"], d / "real.jpg")
    os.mkfifo(d / "fifo.jpg")
    os.symlink(image_set["big.png"], d / "link.png")
    r = store.iv("import", d, timeout=20)
    assert f"skipped {d / 'fifo.jpg'}: not a regular file" in r.err, str(r)
    assert f"skipped {d / 'link.png'}: not a regular file" in r.err, str(r)
    # Skipped is refused: the summary and the exit code must say so.
    assert "1 imported, 2 refused" in r.out, str(r)
    assert r.rc == EXIT_PARTIAL, str(r)
    assert [im["name"] for im in store.ls_json()] == ["real.jpg"]


def test_file_over_the_import_limit(filled, tmp_path):
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
        f.truncate(300 << 20)                      # sparse: costs no disk
    r = filled.iv("import", huge, tmp_path / "images" / "icon.gif")
    assert r.rc == EXIT_PARTIAL, str(r)
    assert re.search(rf"skipped {re.escape(str(huge))}: .*import limit", r.err), str(r)
    assert "huge.jpg" not in {im["name"] for im in filled.ls_json()}
    assert_reads_back(filled, filled.expected)


def test_cat_refuses_a_terminal(filled):
    import pty
    master, slave = pty.openpty()
    try:
        p = subprocess.run([str(filled.binary), "-s", str(filled.path), "--passphrase-file",
                            str(filled.passfile), "cat", "default/small.jpg"],
                           stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                           env=clean_env(), timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == EXIT_FAIL, p.stderr
    assert b"refusing to write image bytes to a terminal" in p.stderr


def test_odd_album_names_round_trip(store, image_set, tmp_path):
    albums = [b"caf\xe9", b"new\nline", "Ferien ☀".encode(), b"x" * 255]
    for a in albums:
        r = store.iv("import", "--album", a, image_set["icon.gif"])
        assert r.rc == 0, str(r)
    r = store.iv("--json", "ls")
    got = [x["album"].encode("utf-8", "surrogateescape") for x in r.json()]
    assert sorted(got) == sorted(albums + [b"default"])
    dest = tmp_path / "out"
    r = store.iv("export", dest)
    assert r.rc == 0, str(r)
    assert set(os.listdir(fsbytes(dest))) == set(albums) | {b"default"}
    for a in albums:
        with open(os.path.join(fsbytes(dest), a, b"icon.gif"), "rb") as f:
            assert f.read() == image_set["icon.gif"].read_bytes()
        r = store.cat(a + b"/icon.gif")
        assert r.rc == 0 and r.stdout == image_set["icon.gif"].read_bytes(), str(r)


def test_desktop_store_holds_one_user(filled):
    r = filled.iv("user", "add", "root", "--no-passphrase")
    assert r.rc == EXIT_FAIL, str(r)
    assert "desktop store" in r.err, str(r)


# ---- output that cannot be written ----

def test_init_fails_when_the_recovery_code_cannot_be_shown(imgvault, tmp_path, passfile):
    """The recovery code is shown once: if it cannot be written, init must not
    report success."""
    with open("/dev/full", "wb") as full:
        p = subprocess.run([str(imgvault), "init", str(tmp_path / "s"), "--passphrase-file",
                            str(passfile), "--kdf", "interactive"],
                           stdin=subprocess.DEVNULL, stdout=full, stderr=subprocess.PIPE,
                           env=clean_env(), timeout=60)
    assert p.returncode != 0, "init exited 0 though its recovery code was never written"
    assert p.stderr, "and said nothing"


def test_rekey_fails_when_the_recovery_code_cannot_be_shown(filled, tmp_path):
    with open("/dev/full", "wb") as full:
        p = subprocess.run([str(filled.binary), "-s", str(filled.path), "--passphrase-file",
                            str(filled.passfile), "--json", "rekey", "--kdf", "interactive"],
                           stdin=subprocess.DEVNULL, stdout=full, stderr=subprocess.PIPE,
                           env=clean_env(), timeout=60)
    assert p.returncode != 0, "rekey exited 0 though its new recovery code was never written"
    assert_reads_back(filled, filled.expected)
