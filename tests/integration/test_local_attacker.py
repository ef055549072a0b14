"""
A local user against someone else (issue 10, DESIGN §1 T2): a pre-made
runtime directory and a fake daemon, root's export and import turned
against root, a starved control socket, a faked audit line.  Each runs the
attacker as a real Unix user.
"""
import fcntl
import json
import os
import socket
import sqlite3
import struct
import subprocess
import time

import pytest

from conftest import (BUILD, EXIT_OK, add_user, clean_env, is_root, make_store, run_cli,
                      uid_of)


def need_root():
    if not is_root():
        pytest.skip("needs root: makes Unix users")


# ---- 4. the audit printer ----

CRAFTED = "10.0.0.1\x1b[2J\x1b]0;owned\x07\r\n     9 2026-01-01T00:00:00Z root root fake ok \u009b31m\u202e\\"


def test_audit_escapes_crafted_fields(store):
    r = store.iv("audit")
    assert r.rc == EXIT_OK, str(r)
    with store.db() as db:
        seq, = db.execute("SELECT max(seq) FROM audit").fetchone()
        db.execute("INSERT INTO audit(seq, time, actor, subject, action, object, result, "
                    "detail, hash) VALUES (?, 0, 0, -1, ?, ?, ?, ?, zeroblob(32))",
                    (seq + 1, "share.\x1b[1mfetch", "obj\nect", "o\x9bk",
                     "client=" + CRAFTED))
        db.execute("INSERT INTO audit(seq, time, actor, subject, action, object, result, "
                    "detail, hash) VALUES (?, 0, 0, -1, 'x', 'y', 'z', ?, zeroblob(32))",
                    (seq + 2, b"not utf-8 \xff\xfe \x1b[0m"))
    r = store.iv("audit")
    assert r.rc == EXIT_OK, str(r)
    lines = r.stdout.split(b"\n")
    assert lines[-1] == b""
    entries = lines[:-1]
    assert len(entries) == seq + 2, str(r)   # one line per entry, no forged ones
    for line in entries:
        assert not any(b < 0x20 or b == 0x7f for b in line), line
        assert b"\xc2\x9b" not in line and "\u202e".encode() not in line, line
        line.decode("utf-8")                 # no stray bytes either
    assert b"\\x1b[2J" in entries[-2] and b"\\x0d\\n" in entries[-2], entries[-2]
    assert b"\\\\" in entries[-2] and b"\\xff\\xfe" in entries[-1], entries
    # --json stays JSON, one object per line, with the exact text
    r = store.iv("--json", "audit")
    assert r.rc == EXIT_OK, str(r)
    assert not any(b < 0x20 and b != 0x0a for b in r.stdout)
    objs = r.json()
    assert len(objs) == seq + 2
    assert objs[-2]["detail"] == "client=" + CRAFTED and objs[-2]["object"] == "obj\nect"


# ---- 2. root's export and import turned against root ----

def as_user(name, *cmd):
    p = subprocess.run(["runuser", "-u", name, "--", *map(str, cmd)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p


def mallorys_dir(path, mallory):
    path.mkdir(mode=0o755)
    os.chown(path, uid_of(mallory), -1)
    return path


def test_export_never_follows_or_truncates(filled, unix_users, shared_dir, tmp_path,
                                           image_set):
    need_root()
    mallory = unix_users("mallory")
    r = filled.iv("import", "--album", "two", image_set["icon.gif"])
    assert r.rc == EXIT_OK, str(r)
    secret = tmp_path / "secret"          # root's: must stay as it is
    secret.write_bytes(b"root's own file")
    secret.chmod(0o600)
    rootdir = tmp_path / "rootdir"
    rootdir.mkdir()
    dest = mallorys_dir(shared_dir / "dest", mallory)
    as_user(mallory, "mkdir", "-p", dest / "default")
    as_user(mallory, "ln", "-s", secret, dest / "default" / "small.jpg")
    as_user(mallory, "sh", "-c", f"printf mine > {dest}/default/photo.jpg")
    as_user(mallory, "ln", "-s", rootdir, dest / "two")
    r = filled.iv("export", dest)
    assert r.rc != EXIT_OK, str(r)
    assert "export never overwrites" in r.err or "never follows links" in r.err, str(r)
    assert secret.read_bytes() == b"root's own file"
    assert (dest / "default" / "photo.jpg").read_bytes() == b"mine"
    assert os.path.islink(dest / "default" / "small.jpg")
    assert list(rootdir.iterdir()) == []
    # album by album: the symlinked album dir is refused, not followed
    r = filled.iv("export", "--album", "two", dest)
    assert r.rc != EXIT_OK and "never follows links" in r.err, str(r)
    assert list(rootdir.iterdir()) == []
    # --force replaces by rename: the link goes, its target stays
    r = filled.iv("export", "--album", "default", "--force", dest)
    assert r.rc == EXIT_OK, str(r)
    assert secret.read_bytes() == b"root's own file"
    assert not os.path.islink(dest / "default" / "small.jpg")
    for spec, data in filled.expected.items():
        assert (dest / spec).read_bytes() == data
    assert not [p for p in (dest / "default").iterdir() if p.name.startswith(".imgvault")]
    # a fresh destination works as before
    r = filled.iv("export", tmp_path / "fresh")
    assert r.rc == EXIT_OK, str(r)


def test_import_never_follows_a_link(store, unix_users, shared_dir, tmp_path, image_set):
    need_root()
    mallory = unix_users("mallory")
    private = tmp_path / "private"        # root's images, readable by root only
    private.mkdir(mode=0o700)
    secret = private / "secret.jpg"
    secret.write_bytes(image_set["photo.jpg"].read_bytes())
    src = mallorys_dir(shared_dir / "in", mallory)
    as_user(mallory, "mkdir", "-p", src / "deep")
    (src / "deep" / "ok.jpg").write_bytes(image_set["small.jpg"].read_bytes())
    os.chown(src / "deep" / "ok.jpg", uid_of(mallory), -1)
    as_user(mallory, "ln", "-s", secret, src / "secret.jpg")
    as_user(mallory, "ln", "-s", private, src / "linkdir")
    as_user(mallory, "ln", "-s", secret, src / "deep" / "also.jpg")
    # the link named on the command line: refused
    r = store.iv("import", src / "secret.jpg")
    assert r.rc != EXIT_OK and "symbolic link" in r.err, str(r)
    # a directory holding links: they are skipped, the real file comes in
    r = store.iv("import", src)
    assert "ok.jpg" in r.out, str(r)
    names = {e["name"] for e in store.ls_json("default")}
    assert names == {"ok.jpg"}, names


# ---- 1. a runtime directory, or a socket, that someone else made ----

LISTENER = r"""
import os, socket, sys, time
path, log, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(path)
os.chmod(path, 0o777)
s.listen(8)
s.settimeout(0.2)
open(log, "wb").close()
end = time.time() + secs
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.settimeout(2)
    got = b""
    try:
        while True:
            d = c.recv(1 << 17)
            if not d:
                break
            got += d
    except OSError:
        pass
    c.close()
    with open(log, "ab") as f:
        f.write(b"CONNECTION %d\n" % len(got) + got)
"""


def start_listener(user, path, log, secs, script_dir):
    script = script_dir / "listener.py"
    script.write_text(LISTENER)
    script.chmod(0o644)
    p = subprocess.Popen(["runuser", "-u", user, "--", "/usr/bin/python3", str(script),
                          str(path), str(log), str(secs)])
    for _ in range(100):
        if os.path.exists(path) and os.path.exists(log):
            return p
        time.sleep(0.05)
    p.kill()
    pytest.fail("the fake daemon did not listen")


def alices_store(imgvault, shared_dir, alice):
    home = shared_dir / alice
    home.mkdir(mode=0o700)
    os.chown(home, uid_of(alice), -1)
    pf = home / "passphrase"
    pf.write_text("alice's own passphrase\n")
    pf.chmod(0o600)
    os.chown(pf, uid_of(alice), -1)
    return make_store(imgvault, home / "store", pf, as_user=alice)


def test_runtime_dir_made_by_another_user(imgvault, unix_users, shared_dir, image_set):
    need_root()
    alice, mallory = unix_users("alice"), unix_users("mallory")
    st = alices_store(imgvault, shared_dir, alice)
    rt = f"/tmp/imgvault-{uid_of(alice)}"
    subprocess.run(["rm", "-rf", rt])
    os.mkdir(rt)
    os.chmod(rt, 0o777)
    os.chown(rt, uid_of(mallory), -1)
    sock = f"{rt}/imgvaultd-1.sock"
    log = shared_dir / "mallory.log"
    logdir = mallorys_dir(shared_dir / "mal", mallory)
    log = logdir / "got"
    lst = start_listener(mallory, sock, log, 20, logdir)
    spare = None
    try:
        # alice's daemon, with no XDG_RUNTIME_DIR: refuses mallory's directory
        mnt = st.path.parent / "mnt"
        mnt.mkdir()
        os.chown(mnt, uid_of(alice), -1)
        p = subprocess.run(["runuser", "-u", alice, "--", str(BUILD / "imgvaultd"),
                            "--passphrase-file", str(st.passfile), "-f", str(st.path),
                            str(mnt)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env={k: v for k, v in clean_env().items()
                                if k != "XDG_RUNTIME_DIR"}, timeout=30)
        out = p.stdout.decode(errors="replace")
        assert p.returncode != 0, out
        assert f"runtime directory {rt} belongs to uid {uid_of(mallory)}" in out, out
        assert not os.path.ismount(mnt)
        # alice's CLI, pointed at mallory's socket by the store's lock (as a
        # daemon started before the fix would have left it): nothing is sent
        (st.path / "lock").write_text(f"imgvaultd control={sock} (pid 1, uid "
                                      f"{uid_of(alice)})\n")
        (shared_dir / "img.jpg").write_bytes(image_set["small.jpg"].read_bytes())
        os.chmod(shared_dir / "img.jpg", 0o644)
        with open(st.path / "lock") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            for args in (["unlock"], ["import", shared_dir / "img.jpg"], ["ls"]):
                r = st.iv(*args)
                assert r.rc != EXIT_OK, str(r)
                assert f"socket directory {rt} belongs to uid" in r.err, str(r)
        # a socket in a directory that passes (root's sticky /tmp), but served by
        # mallory: SO_PEERCRED says so before anything is sent
        spare = f"/tmp/ivmal-{os.getpid()}.sock"
        lst2 = start_listener(mallory, spare, logdir / "got2", 20, logdir)
        try:
            for args in (["unlock"], ["import", shared_dir / "img.jpg"], ["share", "a/b"]):
                r = run_cli(imgvault, "-s", st.path, "--passphrase-file", st.passfile,
                            "--control", spare, *args, as_user=alice)
                assert r.rc != EXIT_OK, str(r)
                assert f"is served by uid {uid_of(mallory)}" in r.err, str(r)
        finally:
            lst2.kill()
        got = (logdir / "got").read_bytes() + (logdir / "got2").read_bytes()
        assert b"alice's own passphrase" not in got
        assert all(line.endswith(b" 0") for line in got.split(b"\n")
                   if line.startswith(b"CONNECTION")), got[:200]
    finally:
        lst.kill()
        subprocess.run(["rm", "-rf", rt])
        if spare:
            subprocess.run(["rm", "-f", spare])
    # a directory that is alice's own and private is taken as before
    os.mkdir(rt, 0o700)
    os.chown(rt, uid_of(alice), -1)
    try:
        r = run_cli(imgvault, "-s", st.path, "--passphrase-file", st.passfile, "status",
                    as_user=alice)
        assert r.rc == EXIT_OK, str(r)
    finally:
        subprocess.run(["rm", "-rf", rt])
