"""
The control socket (docs/PROTOCOL.md): while imgvaultd holds a store, the
command line's status, ls, cat, import and rm go through the daemon, other
commands are refused naming it, peers act on their own vault only, and
malformed messages close the connection without hurting the daemon.
"""
import os
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import (BUILD, EXIT_BUSY, EXIT_OK, EXIT_PARTIAL, add_user, clean_env, is_root,
                      run_cli, sha256)


def start_daemon(store, mnt, *extra, as_root_system=False):
    mnt.mkdir(exist_ok=True)
    args = [str(BUILD / "imgvaultd")]
    if as_root_system:
        args += ["--system", "-k", str(store.server_key)]
    else:
        args += ["--passphrase-file", str(store.passfile)]
    args += [*extra, "-f", str(store.path), str(mnt)]
    log = open(mnt.parent / (mnt.name + ".log"), "wb")
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=clean_env())
    for _ in range(100):
        if os.path.ismount(mnt):
            return p
        if p.poll() is not None:
            break
        time.sleep(0.1)
    p.kill()
    pytest.fail("imgvaultd did not mount: " + (mnt.parent / (mnt.name + ".log")).read_text())


def stop_daemon(p, mnt):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
        pytest.fail("imgvaultd did not stop on SIGTERM")
    assert not os.path.ismount(mnt)
    log = (mnt.parent / (mnt.name + ".log")).read_text()
    assert "<2>" not in log and "AddressSanitizer" not in log, log


def names(store, album="default"):
    return sorted(spec.split("/", 1)[1] for spec in store.expected if spec.startswith(album + "/"))


def lock_socket(store):
    text = (store.path / "lock").read_text()
    assert text.startswith("imgvaultd control="), text
    return text.split("control=")[1].split(" ")[0]


def test_cli_works_through_the_daemon(filled, tmp_path, image_set):
    mnt = tmp_path / "mnt"
    p = start_daemon(filled, mnt)
    try:
        r = filled.iv("status")
        assert r.rc == EXIT_OK and "served by imgvaultd" in r.out and str(mnt) in r.out, str(r)
        r = filled.iv("ls")
        assert r.rc == EXIT_OK and "default" in r.out.split(), str(r)
        r = filled.iv("--json", "ls", "default")
        names_ = {e["name"] for e in r.json()}
        assert names_ == set(names(filled)), str(r)
        for spec, data in filled.expected.items():
            got = filled.cat(spec)
            assert got.rc == 0 and got.stdout == data, str(got)
        # import through the socket shows up in the mount at once
        src = image_set["small.jpg"]
        r = filled.iv("import", "--album", "viasock", src)
        assert r.rc == EXIT_OK, str(r)
        assert (mnt / "viasock" / "original" / src.name).read_bytes() == src.read_bytes()
        # a refused import says why and stores nothing
        junk = tmp_path / "junk.jpg"
        junk.write_text("<html>not an image</html>")
        r = filled.iv("import", "--album", "viasock", junk)
        assert r.rc == EXIT_PARTIAL and "not an image" in r.err, str(r)
        assert not (mnt / "viasock" / "original" / "junk.jpg").exists()
        # rm through the socket
        r = filled.iv("rm", f"viasock/{src.name}")
        assert r.rc == EXIT_OK, str(r)
        assert not (mnt / "viasock" / "original" / src.name).exists()
        # what needs the store is refused, naming the daemon
        r = filled.iv("fsck")
        assert r.rc == EXIT_BUSY and "imgvaultd" in r.err, str(r)
    finally:
        stop_daemon(p, mnt)
    assert filled.iv("fsck").rc == EXIT_OK


def raw(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    s.connect(path)
    return s


def msg(mtype, *fields):
    body = b"".join(struct.pack("<BH", t, len(v)) + v for t, v in fields)
    return b"IV\x01" + bytes([mtype]) + struct.pack("<I", len(body)) + body


def test_malformed_messages_close_the_connection(filled, tmp_path):
    mnt = tmp_path / "mnt"
    p = start_daemon(filled, mnt)
    try:
        path = lock_socket(filled)
        bad = [b"", b"XX\x01\x03\x00\x00\x00\x00", b"IV\x02\x03\x00\x00\x00\x00",
               b"IV\x01\x63\x00\x00\x00\x00", b"IV\x01\x03\x05\x00\x00\x00",
               msg(4, (1, b"x"))[:-1], b"IV\x01\x04\x03\x00\x00\x00\x01\xff\xff",
               msg(5), msg(2), os.urandom(4000)]
        for b in bad:
            s = raw(path)
            if b:
                s.send(b)
            else:
                s.shutdown(socket.SHUT_WR)
            assert s.recv(65536) == b"", f"the daemon answered {b[:16]!r}"
            s.close()
        # still serving, through the socket and the mount
        s = raw(path)
        s.send(msg(3))
        reply = s.recv(65536)
        assert reply[:4] == b"IV\x01\x02", reply[:8]
        s.close()
        assert filled.iv("ls").rc == EXIT_OK
        assert sorted(os.listdir(mnt / "default" / "original")) == names(filled)
    finally:
        stop_daemon(p, mnt)


def test_a_peer_acts_on_its_own_vault_only(system_store, tmp_path, image_set):
    if not is_root():
        pytest.skip("system mode needs root")
    s = system_store
    mnt = tmp_path / "mnt"
    os.chmod(tmp_path, 0o755)
    add_user(s, s.alice)
    add_user(s, s.bob)
    r = s.iv("--user", s.alice, "import", image_set["small.jpg"])
    assert r.rc == 0, str(r)
    p = start_daemon(s, mnt, as_root_system=True)
    try:
        # bob asks through the socket: his own (empty) vault, never alice's
        r = run_cli(s.binary, "-s", s.path, "--json", "ls", "default", as_user=s.bob)
        assert r.rc == 0 and r.json() == [], str(r)
        r = run_cli(s.binary, "-s", s.path, "cat", "default/small.jpg", as_user=s.bob)
        assert r.rc != 0 and r.stdout == b"", str(r)
        r = run_cli(s.binary, "-s", s.path, "cat", "default/small.jpg", as_user=s.alice)
        assert r.rc == 0 and r.stdout == image_set["small.jpg"].read_bytes(), str(r)
        # a uid without a vault gets nothing
        r = run_cli(s.binary, "-s", s.path, "ls", as_user="nobody")
        assert r.rc != 0 and "ENOENT" not in r.out, str(r)
    finally:
        stop_daemon(p, mnt)


def test_mount_and_unmount_commands(filled, tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    r = filled.iv("mount", mnt, timeout=30)
    try:
        assert r.rc == EXIT_OK and "mounted on" in r.out, str(r)
        assert os.path.ismount(mnt)
        for spec, data in filled.expected.items():
            album, name = spec.split("/", 1)
            assert (mnt / album / "original" / name).read_bytes() == data
        r = filled.iv("status")
        assert r.rc == EXIT_OK and "served by imgvaultd" in r.out, str(r)
    finally:
        u = filled.iv("unmount", mnt, timeout=30)
    assert u.rc == EXIT_OK, str(u)
    for _ in range(50):          # the daemon lets go of the store as it exits
        if filled.iv("fsck").rc == EXIT_OK:
            break
        time.sleep(0.1)
    assert not os.path.ismount(mnt)
    assert filled.iv("fsck").rc == EXIT_OK
    r = filled.iv("unmount", mnt)
    assert r.rc != 0 and "not an imgvault mount" in r.err, str(r)
