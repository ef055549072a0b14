"""imgvault lock and unlock (docs/MOUNT.md "Locking", docs/PROTOCOL.md LOCK and
UNLOCK): a running imgvaultd forgets a vault's keys while it stays mounted and
takes them back.  While locked, everything below the vault's own directory
fails with EACCES, the control socket answers "the vault is locked", statfs
still works; a lock is refused (EBUSY, exit 4) while files of the vault are
open; thumbnails queued before the lock are made after the unlock."""
import errno
import os
import pwd
import shutil
import socket
import struct
import subprocess
import time

import pytest

pytest.register_assert_rewrite("mountlib")   # before the import below

from conftest import (EXIT_AUTH, EXIT_BUSY, EXIT_FAIL, EXIT_OK, PASSPHRASE, convert, run_cli,
                      sha256, write_secret)
from mountlib import (Daemon, DesktopMount, as_user, err_of, file_sha, new_mountpoint,
                      read_bytes, wait_for, write_file)

pytest_plugins = ["mountlib"]      # its fixtures

LOCKED = "the vault is locked; run imgvault unlock"


def errno_of(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def tree_shas(m, names):
    """SHA-256 of every original/ and pristine/ file of "default", read through the mount."""
    return {(v, n): file_sha(m.view(v) / n) for v in ("original", "pristine") for n in names}


def audit(store):
    r = store.iv("--json", "audit", "-n", "50")
    assert r.rc == EXIT_OK, str(r)
    return r.json()


def assert_locked_view(m, name):
    """What a locked desktop vault shows: its root and statfs, nothing below."""
    assert os.path.isdir(m.root)                                   # stat of the root
    os.statvfs(m.root)                                             # statfs works
    assert errno_of(os.listdir, m.root) == errno.EACCES
    assert errno_of(os.listdir, m.view("original")) == errno.EACCES
    assert errno_of(os.stat, m.original(name)) == errno.EACCES
    assert errno_of(read_bytes, m.original(name)) == errno.EACCES
    assert errno_of(read_bytes, m.pristine(name)) == errno.EACCES
    assert errno_of(os.getxattr, m.original(name), "user.imgvault.sha256") == errno.EACCES
    assert errno_of(os.mkdir, m.album("new")) == errno.EACCES
    assert errno_of(write_file, m.original("new.jpg"), b"x") == errno.EACCES


def test_lock_hides_everything_and_unlock_brings_it_back(filled, desktop_mount, tmp_path):
    m, store = desktop_mount, filled
    names = sorted(spec.split("/", 1)[1] for spec in store.expected)
    # Read everything first: the kernel's page cache now holds plaintext.
    before = tree_shas(m, names)
    for n in names:
        assert before[("original", n)] == sha256(store.expected[f"default/{n}"])
    r = store.iv("lock")
    assert r.rc == EXIT_OK and "locked" in r.out, str(r)
    assert_locked_view(m, names[0])
    r = store.iv("--json", "status")
    assert r.rc == EXIT_OK and r.json()[-1]["locked"] is True, str(r)
    r = store.iv("lock")
    assert r.rc == EXIT_FAIL and "already locked" in r.err, str(r)

    # A wrong passphrase: refused, the vault stays locked.
    wrong = write_secret(tmp_path / "wrong", "not the passphrase")
    r = store.iv("unlock", passfile=wrong)
    assert r.rc == EXIT_AUTH and "wrong passphrase" in r.err, str(r)
    assert_locked_view(m, names[0])

    r = store.iv("unlock")
    assert r.rc == EXIT_OK and "unlocked" in r.out, str(r)
    assert sorted(os.listdir(m.view("original"))) == names
    assert tree_shas(m, names) == before
    r = store.iv("--json", "status")
    assert r.rc == EXIT_OK and r.json()[-1]["locked"] is False, str(r)
    r = store.iv("unlock")
    assert r.rc == EXIT_FAIL and "not locked" in r.err, str(r)
    # Writes work again.
    write_file(m.original("again.jpg"), store.expected[f"default/{names[0]}"])
    assert file_sha(m.original("again.jpg")) == before[("original", names[0])]

    m.stop()
    entries = [(a["action"], a["result"]) for a in audit(store)]
    assert ("lock", "ok") in entries, entries
    assert ("unlock", "refused") in entries, entries
    i = entries.index(("unlock", "refused"))
    assert ("unlock", "ok") in entries[i:], entries


def test_lock_refused_while_a_file_is_open(filled, desktop_mount):
    m, store = desktop_mount, filled
    spec, data = next(iter(store.expected.items()))
    name = spec.split("/", 1)[1]
    fd = os.open(m.original(name), os.O_RDONLY)
    try:
        r = store.iv("lock")
        assert r.rc == EXIT_BUSY and "1 file of this vault is open" in r.err, str(r)
        # Nothing was locked: the open file and new opens still read.
        assert os.pread(fd, len(data) + 1, 0) == data
        assert read_bytes(m.original(name)) == data
    finally:
        os.close(fd)
    # A writer counts too, and so does a second reader.
    fd = os.open(m.original("pending.jpg"), os.O_WRONLY | os.O_CREAT, 0o600)
    fd2 = os.open(m.pristine(name), os.O_RDONLY)
    try:
        r = store.iv("lock")
        assert r.rc == EXIT_BUSY and "2 files of this vault are open" in r.err, str(r)
    finally:
        os.close(fd2)
        os.write(fd, data)
        os.close(fd)
    r = store.iv("lock")
    assert r.rc == EXIT_OK, str(r)
    assert errno_of(read_bytes, m.original(name)) == errno.EACCES
    r = store.iv("unlock")
    assert r.rc == EXIT_OK, str(r)
    assert read_bytes(m.original("pending.jpg")) == data


def test_control_socket_says_the_vault_is_locked(filled, desktop_mount, image_set):
    m, store = desktop_mount, filled
    spec = next(iter(store.expected))
    assert store.iv("lock").rc == EXIT_OK
    for args in (["ls"], ["ls", "default"], ["cat", spec], ["rm", spec],
                 ["import", image_set["small.jpg"]]):
        r = store.iv(*args)
        assert r.rc != EXIT_OK and LOCKED in r.err, str(r)
        assert r.stdout == b"" or args[0] == "import", str(r)
    r = store.iv("status")
    assert r.rc == EXIT_OK and "your vault is locked" in r.out, str(r)
    assert store.iv("unlock").rc == EXIT_OK
    # rm and import were refused, not done.
    r = store.iv("cat", spec)
    assert r.rc == EXIT_OK and r.stdout == store.expected[spec], str(r)
    assert store.iv("--json", "ls", "default").rc == EXIT_OK


def queued_thumbs(store):
    with store.db() as c:
        return c.execute("SELECT count(*) FROM thumb_queue").fetchone()[0]


def test_thumbnails_queued_before_the_lock_are_made_after_unlock(store, tmp_path, daemons):
    # Enough decoding work that the lock comes before the worker is through.
    big = tmp_path / "big.jpg"
    convert("-size", "2000x1500", "xc:", "+noise", "Random", "-quality", "95", big)
    src = tmp_path / "many"
    src.mkdir()
    for i in range(40):
        shutil.copy(big, src / f"n{i:02d}.jpg")
    r = store.iv("import", "--no-thumbs", src)
    assert r.rc == EXIT_OK, str(r)
    assert queued_thumbs(store) == 40
    mnt = new_mountpoint(tmp_path, mode=0o700)
    d = Daemon([store.path, mnt, "--passphrase-file", store.passfile], mnt,
               tmp_path / "imgvaultd.log")
    daemons.append(d)
    m = DesktopMount(d, store).start()
    r = store.iv("lock")
    assert r.rc == EXIT_OK, str(r)
    left = queued_thumbs(store)
    assert left > 0, "the worker made every thumbnail before the lock: nothing was tested"
    time.sleep(1.5)
    assert queued_thumbs(store) == left, "thumbnails were made while the vault was locked"
    assert store.iv("unlock").rc == EXIT_OK
    wait_for(lambda: queued_thumbs(store) == 0, 120, "the queued thumbnails")
    for i in range(40):
        assert os.path.getsize(m.thumb(f"n{i:02d}.jpg")) > 0


# ---- system mode ----

def control_of(m):
    a = m.daemon.args
    return a[a.index("--control") + 1]


def cli_as(m, user, *args, passfile=None):
    pre = ["-s", m.store.path, "--control", control_of(m)]
    if passfile:
        pre += ["--passphrase-file", passfile]
    return run_cli(m.store.binary, *pre, *args, as_user=user)


def test_system_lock_and_unlock_permissions(system_mount, image_set):
    m = system_mount
    data = image_set["photo.jpg"].read_bytes()
    for user in (m.alice, m.bob):
        as_user(user, write_file, m.original("p.jpg", user=user), data)
    # alice may not lock bob; bob may not lock alice; nobody's vault changed.
    r = cli_as(m, m.alice, "lock", "--user", m.bob)
    assert r.rc == EXIT_FAIL and "only root may lock or unlock" in r.err, str(r)
    r = cli_as(m, m.bob, "lock", "--user", m.alice)
    assert r.rc == EXIT_FAIL and "only root may lock or unlock" in r.err, str(r)
    for user in (m.alice, m.bob):
        assert as_user(user, file_sha, m.original("p.jpg", user=user)) == sha256(data)

    # root locks alice: alice's part is shut, bob's is not.
    r = m.store.iv("--control", control_of(m), "lock", "--user", m.alice)
    assert r.rc == EXIT_OK, str(r)
    assert err_of(m.alice, os.listdir, m.base(m.alice)) == errno.EACCES
    assert err_of(m.alice, read_bytes, m.original("p.jpg", user=m.alice)) == errno.EACCES
    assert err_of(m.web, read_bytes, m.original("p.jpg", user=m.alice)) == errno.EACCES
    assert as_user(m.bob, file_sha, m.original("p.jpg", user=m.bob)) == sha256(data)
    assert m.alice in os.listdir(m.root)          # the user's directory stays
    r = cli_as(m, m.alice, "--json", "status")
    assert r.rc == EXIT_OK and r.json()[-1]["locked"] is True, str(r)
    r = cli_as(m, m.alice, "cat", "default/p.jpg")
    assert r.rc != EXIT_OK and LOCKED in r.err, str(r)
    # root unlocks with the server key the daemon holds: no passphrase.
    r = m.store.iv("--control", control_of(m), "unlock", "--user", m.alice)
    assert r.rc == EXIT_OK, str(r)
    assert as_user(m.alice, file_sha, m.original("p.jpg", user=m.alice)) == sha256(data)

    # alice locks herself; bob is untouched; root brings her back.
    r = cli_as(m, m.alice, "lock")
    assert r.rc == EXIT_OK, str(r)
    assert err_of(m.alice, read_bytes, m.original("p.jpg", user=m.alice)) == errno.EACCES
    assert as_user(m.bob, file_sha, m.original("p.jpg", user=m.bob)) == sha256(data)
    r = m.store.iv("--control", control_of(m), "unlock", "--user", m.alice)
    assert r.rc == EXIT_OK, str(r)
    assert as_user(m.alice, file_sha, m.original("p.jpg", user=m.alice)) == sha256(data)


def alice_passphrase(m, shared_dir, kdf):
    """Gives alice a passphrase slot of @kdf cost: her right and a wrong
    passphrase file, hers to read."""
    pf = write_secret(shared_dir / "alice-pass", PASSPHRASE)
    wrong = write_secret(shared_dir / "alice-wrong", "not it")
    for f in (pf, wrong):
        os.chown(f, pwd.getpwnam(m.alice).pw_uid, -1)
    r = m.offline("user", "passwd", m.alice, "--new-passphrase-file", pf, "--kdf", kdf)
    assert r.rc == EXIT_OK, str(r)
    return pf, wrong


def test_system_user_unlocks_herself_with_her_passphrase(system_mount, image_set, shared_dir):
    m = system_mount
    pf, wrong = alice_passphrase(m, shared_dir, "interactive")
    data = image_set["small.jpg"].read_bytes()
    as_user(m.alice, write_file, m.original("s.jpg", user=m.alice), data)
    assert cli_as(m, m.alice, "lock").rc == EXIT_OK
    r = cli_as(m, m.alice, "unlock", passfile=wrong)
    assert r.rc == EXIT_AUTH and "wrong passphrase" in r.err, str(r)
    assert err_of(m.alice, read_bytes, m.original("s.jpg", user=m.alice)) == errno.EACCES
    r = cli_as(m, m.alice, "unlock", passfile=pf)
    assert r.rc == EXIT_OK, str(r)
    assert as_user(m.alice, read_bytes, m.original("s.jpg", user=m.alice)) == data


def test_a_slow_unlock_does_not_stall_the_mount(system_mount, image_set, shared_dir):
    """The key derivation of an unlock runs outside the daemon's lock: while
    alice's passphrase (Argon2id at the "sensitive" cost: seconds) is being
    tried, bob's files are served as usual."""
    m = system_mount
    _, wrong = alice_passphrase(m, shared_dir, "sensitive")
    data = image_set["small.jpg"].read_bytes()
    as_user(m.bob, write_file, m.original("b.jpg", user=m.bob), data)
    assert cli_as(m, m.alice, "lock").rc == EXIT_OK
    pre = ["-s", m.store.path, "--control", control_of(m), "--passphrase-file", wrong]
    unlock = subprocess.Popen(["runuser", "-u", m.alice, "--", str(m.store.binary), *pre,
                               "unlock"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)                       # the derivation is under way
    assert unlock.poll() is None, "the sensitive KDF finished too fast to test anything"
    t0 = time.monotonic()
    for _ in range(5):
        assert as_user(m.bob, file_sha, m.original("b.jpg", user=m.bob)) == sha256(data)
    served = time.monotonic() - t0
    still_running = unlock.poll() is None
    assert unlock.wait(timeout=120) == EXIT_AUTH
    assert still_running, f"bob's reads waited for alice's unlock ({served:.2f} s)"


# ---- the messages themselves ----

def raw_msg(mtype, *fields):
    body = b"".join(struct.pack("<BH", t, len(v)) + v for t, v in fields)
    return b"IV\x01" + bytes([mtype]) + struct.pack("<I", len(body)) + body


def reply(s, req):
    s.send(req)
    data = s.recv(65536)
    assert data[:3] == b"IV\x01", data[:8]
    fields, off = {}, 8
    while off < len(data):
        t, n = struct.unpack_from("<BH", data, off)
        fields[t] = data[off + 3:off + 3 + n]
        off += 3 + n
    return data[3], fields


def test_lock_and_unlock_messages(filled, desktop_mount):
    store = filled
    path = (store.path / "lock").read_text().split("control=")[1].split(" ")[0]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(10)
    s.connect(path)
    try:
        ERROR, OK = 1, 2
        uid = struct.pack("<Q", os.getuid())
        # A uid field of the wrong size: EINVAL, and the connection goes on.
        t, f = reply(s, raw_msg(11, (22, b"\0\0\0\0")))
        assert t == ERROR and struct.unpack("<Q", f[4])[0] == errno.EINVAL, f
        # Another uid on a desktop mount: EPERM, even for root.
        t, f = reply(s, raw_msg(11, (22, struct.pack("<Q", os.getuid() + 4242))))
        assert t == ERROR and struct.unpack("<Q", f[4])[0] == errno.EPERM, f
        t, f = reply(s, raw_msg(11, (22, uid)))
        assert t == OK, f
        t, f = reply(s, raw_msg(3))                        # STATUS: uid, no pending
        assert t == OK and f.get(22) == uid and 12 not in f, f
        t, f = reply(s, raw_msg(4))                        # LS: locked
        assert t == ERROR and struct.unpack("<Q", f[4])[0] == errno.ENOKEY, f
        assert f[5].decode() == LOCKED, f
        t, f = reply(s, raw_msg(12))                       # no passphrase
        assert t == ERROR and struct.unpack("<Q", f[4])[0] == errno.EINVAL, f
        t, f = reply(s, raw_msg(12, (21, b"x" * 1025)))    # too long
        assert t == ERROR and struct.unpack("<Q", f[4])[0] == errno.EINVAL, f
        t, f = reply(s, raw_msg(12, (21, b"wrong")))
        assert t == ERROR and struct.unpack("<Q", f[4])[0] == errno.EKEYREJECTED, f
        t, f = reply(s, raw_msg(12, (21, PASSPHRASE.encode())))
        assert t == OK, f
        t, f = reply(s, raw_msg(3))
        assert t == OK and f.get(22) == uid and 12 in f, f
        # An unknown type after them still closes the connection.
        s.send(raw_msg(200))
        assert s.recv(65536) == b""
    finally:
        s.close()
