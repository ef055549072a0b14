"""
A local user against someone else (issue 10, DESIGN §1 T2): a pre-made
runtime directory and a fake daemon, root's export and import turned
against root, a starved control socket, a faked audit line.  Each runs the
attacker as a real Unix user.
"""
import fcntl
import json
import os
import subprocess
import time

import pytest

from conftest import (SANITIZED, BUILD, EXIT_OK, add_user, clean_env, is_root, make_store, run_cli,
                      uid_of)
from gatewaylib import (Link, curl, free_port, gateway, short_dir,  # noqa: F401 (fixture)
                        start_daemon, stop_daemon)


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


# ---- 3. starving the control socket ----

ATTACK = r"""
import json, socket, struct, sys, time

def msg(t, *fields):
    body = b"".join(struct.pack("<BH", tag, len(v)) + v for tag, v in fields)
    return b"IV\x01" + bytes([t]) + struct.pack("<I", len(body)) + body

def reply(s, timeout):
    s.settimeout(timeout)
    try:
        r = s.recv(1 << 17)
    except socket.timeout:
        return "none"
    except OSError:
        return "closed"
    if not r:
        return "closed"
    if r[3] == 1:
        i, out = 8, {}
        while i < len(r):
            tag, ln = struct.unpack_from("<BH", r, i)
            out[tag] = r[i + 3:i + 3 + ln]
            i += 3 + ln
        return "error %d" % int.from_bytes(out.get(4, b"\0"), "little")
    return "type %d" % r[3]

path, mode, count, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
socks, first = [], []
for _ in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(path)
    except OSError as e:
        first.append("connect " + str(e.errno))
        continue
    socks.append(s)
if mode == "idle":
    # connections kept busy enough never to be idle: a STATUS every second
    for s in socks:
        first.append(reply(s, 0.3))
    live = [s for s, f in zip(socks, first) if f == "none"]
    print(json.dumps({"live": len(live), "first": first}), flush=True)
    end = time.time() + secs
    while time.time() < end:
        for s in live:
            try:
                s.send(msg(3))
                reply(s, 1)
            except OSError:
                pass
        time.sleep(1)
elif mode == "novault":
    s = socks[0]
    s.send(msg(9, (1, b"default"), (2, b"x.jpg")))
    print(json.dumps({"reply": reply(s, 5)}), flush=True)
else:   # stall: start imports of `secs` MiB each, never finish them
    chunk = b"\xff" * 60000
    sent = []
    for s in socks:
        n = 0
        try:
            s.send(msg(9, (1, b"default"), (2, b"x.jpg")))
            while n < secs * (1 << 20):
                s.send(msg(8, (13, chunk)))
                n += len(chunk)
        except OSError:
            pass
        sent.append(n)
    print(json.dumps({"sent": sent}), flush=True)
    start, closed = time.time(), []
    for s in socks:
        got = reply(s, max(0.1, 30 - (time.time() - start)))
        while got.startswith("error"):
            got = reply(s, max(0.1, 30 - (time.time() - start)))
        closed.append(round(time.time() - start, 1) if got == "closed" else None)
    print(json.dumps({"closed": closed}), flush=True)
"""


def vm_rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def attack(user, script, control, mode, count, secs):
    return subprocess.Popen(["runuser", "-u", user, "--", "/usr/bin/python3", str(script),
                             str(control), mode, str(count), str(secs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_control_socket_is_shared_fairly(system_store, unix_users, tmp_path, gateway,
                                         image_set):
    need_root()
    s = system_store
    mallory, idler = unix_users("mallory"), s.bob          # bob has no vault here
    add_user(s, s.alice)
    add_user(s, mallory)
    r = s.iv("--user", s.alice, "import", image_set["photo.jpg"])
    assert r.rc == EXIT_OK, str(r)
    r = s.iv("config", "image.max-bytes=16M")
    assert r.rc == EXIT_OK, str(r)
    gwuser = unix_users("ivgw")
    sockdir = short_dir()
    d = start_daemon(s, s.path.parent / "mnt", sockdir / "control.sock", "--gateway-user",
                     gwuser, "--control-timeout", "3", system=True)
    s.daemon = d
    procs = []
    try:
        port = free_port()
        g = gateway(s, port=port, as_user=gwuser)
        script = sockdir / "attack.py"
        script.write_text(ATTACK)
        script.chmod(0o644)
        # alice is pointed at the daemon by a lock of her own (she cannot read
        # the system store's), as test_system_mode_gateway_user does
        pointer = sockdir / "pointer"
        pointer.mkdir(mode=0o755)
        (pointer / "lock").write_text(f"imgvaultd control={d.control} (test)\n")
        (pointer / "lock").chmod(0o644)
        held = open(pointer / "lock")
        fcntl.flock(held, fcntl.LOCK_EX)
        r = run_cli(s.binary, "-s", pointer, "--json", "share", "default/photo.jpg",
                    as_user=s.alice)
        assert r.rc == 0, str(r)
        link = Link(r.json()[0])
        link_url = g.url(f"/s/{link.token}")
        assert curl(link_url).status == 200

        # a peer with no vault is refused before it sends a byte of payload
        p = attack(idler, script, d.control, "novault", 1, 0)
        out, err = p.communicate(timeout=30)
        assert json.loads(out)["reply"] == "error 2", out + err
        # ... and the command line says so for every file (a new connection
        # after each refusal that closed one)
        imgs = []
        for name in ("small.jpg", "icon.gif"):
            imgs.append(sockdir / name)
            imgs[-1].write_bytes(image_set[name].read_bytes())
            imgs[-1].chmod(0o644)
        r = run_cli(s.binary, "-s", pointer, "import", *imgs, as_user=idler)
        assert r.rc != EXIT_OK and r.err.count("you have no vault in this store") == 2, str(r)

        # 70 busy connections from a user with no vault: capped at their share
        p = attack(idler, script, d.control, "idle", 70, 20)
        procs.append(p)
        first = json.loads(p.stdout.readline())
        assert first["live"] <= 8, first
        assert first["first"].count("error 16") >= 60, first     # EBUSY, said so
        # alice's CLI and a link through the gateway still work meanwhile
        for _ in range(3):
            r = run_cli(s.binary, "-s", pointer, "--json", "ls", "default", as_user=s.alice)
            assert r.rc == EXIT_OK and r.json()[0]["name"] == "photo.jpg", str(r)
            assert curl(link_url).status == 200
            time.sleep(1.2)     # past the 3 s idle timeout: the idler is kept alive
        assert p.poll() is None

        # stalled imports: mallory's uploads cannot grow the daemon past one
        # image's worth (16 MiB here), and are dropped when the data stops
        before = vm_rss_kib(d.proc.pid)
        p = attack(mallory, script, d.control, "stall", 4, 15)
        procs.append(p)
        sent = json.loads(p.stdout.readline())["sent"]
        during = vm_rss_kib(d.proc.pid)
        if not SANITIZED:       # ASan inflates resident memory
            assert during - before < 32 * 1024, (before, during, sent)
        closed = json.loads(p.stdout.readline())["closed"]
        assert all(t is not None and t < 15 for t in closed), closed
        r = run_cli(s.binary, "-s", pointer, "--json", "ls", "default", as_user=s.alice)
        assert r.rc == EXIT_OK, str(r)
        held.close()
    finally:
        for p in procs:
            p.kill()
        stop_daemon(d)
