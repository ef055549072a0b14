"""Who may do what on a system mount (docs/MOUNT.md, "Who may do what"),
with real Unix users: alice owns a vault with web-read on, bob owns another,
web is in the readers group, and root.  Every cell of the table is run as
its user in a fresh process, and the errno must be exactly the table's.

Root is checked with the kernel's caches cold (no owner access in the last
second): root passes the kernel's mode checks, so only the daemon stands in
its way, and a directory entry the owner just used may answer from the
kernel's cache (docs/MOUNT.md)."""
import errno
import os
import stat
import time

import pytest

pytest.register_assert_rewrite("mountlib")   # before the import below

from conftest import EXIT_OK, uid_of
from mountlib import as_user, err_of, read_bytes, write_file

pytest_plugins = ["mountlib"]      # its fixtures

OK = 0
EACCES, EPERM = errno.EACCES, errno.EPERM


def hardlink_refusal():
    """What the kernel answers a hard link to a file one may not write:
    EPERM under fs.protected_hardlinks (Debian's default), else EACCES from
    the directory's mode."""
    try:
        with open("/proc/sys/fs/protected_hardlinks") as f:
            return EPERM if f.read().strip() == "1" else EACCES
    except OSError:
        return EACCES


# docs/MOUNT.md's table; columns:
#   alice:original, alice:thumb+pristine, bob (on alice's), web:original+thumb,
#   web:pristine, root (on alice's)
MATRIX = {
    "list":     (OK, OK, EACCES, OK, EACCES, EACCES),
    "stat":     (OK, OK, EACCES, OK, EACCES, EACCES),
    "read":     (OK, OK, EACCES, OK, EACCES, EACCES),
    "write":    (OK, EACCES, EACCES, EACCES, EACCES, EACCES),
    "create":   (OK, EACCES, EACCES, EACCES, EACCES, EACCES),
    "rename":   (OK, EACCES, EACCES, EACCES, EACCES, EACCES),
    "unlink":   (OK, EACCES, EACCES, EACCES, EACCES, EACCES),
    "mkdir":    (EPERM, EPERM, EACCES, EACCES, EACCES, EACCES),
    "rmdir":    (EPERM, EPERM, EACCES, EACCES, EACCES, EACCES),
    "getxattr": (OK, OK, EACCES, OK, EACCES, EACCES),
    "setxattr": (OK, EACCES, EACCES, EACCES, EACCES, EACCES),
    "link":     (EPERM, EPERM, EACCES, hardlink_refusal(), EACCES, EACCES),
    "symlink":  (EPERM, EPERM, EACCES, EACCES, EACCES, EACCES),
    "chmod":    (OK, OK, EACCES, EPERM, EACCES, EACCES),
    "chown":    (EPERM, EPERM, EACCES, EPERM, EACCES, EACCES),
}
DESTRUCTIVE = ("rename", "unlink")     # run after the rest; alice's on their own files


def column(who, view):
    """The table column of (@who, @view)."""
    if who == "alice":
        return 0 if view == "original" else 1
    if who == "bob":
        return 2
    if who == "web":
        return 4 if view == "pristine" else 3
    return 5


def make_ops(m, image, bob_uid):
    """operation -> fn(view, target) run as the user; target is the file's name."""
    def d(view):
        return m.view(view)

    def op_write(view, f):
        os.close(os.open(d(view) / f, os.O_WRONLY))

    def op_create(view, f):
        write_file(d(view) / f"new-{view}-{os.getuid()}.jpg", image,
                   flags=os.O_WRONLY | os.O_CREAT | os.O_EXCL)

    def op_link(view, f):
        os.link(d(view) / f, d(view) / f"hard-{os.getuid()}")

    def op_symlink(view, f):
        os.symlink(f, d(view) / f"soft-{os.getuid()}")

    return {
        "list": lambda view, f: os.listdir(d(view)),
        "stat": lambda view, f: os.stat(d(view) / f),
        "read": lambda view, f: read_bytes(d(view) / f),
        "write": op_write,
        "create": op_create,
        "rename": lambda view, f: os.rename(d(view) / f, d(view) / f"moved-{os.getuid()}.jpg"),
        "unlink": lambda view, f: os.unlink(d(view) / f),
        "mkdir": lambda view, f: os.mkdir(d(view) / "sub"),
        "rmdir": lambda view, f: os.rmdir(d(view)),
        "getxattr": lambda view, f: os.getxattr(d(view) / f, "user.imgvault.id"),
        "setxattr": lambda view, f: os.setxattr(d(view) / f, "user.xdg.tags", b"by-test"),
        "link": op_link,
        "symlink": op_symlink,
        "chmod": lambda view, f: os.chmod(d(view) / f, 0o666),
        "chown": lambda view, f: os.chown(d(view) / f, bob_uid, -1),
    }


@pytest.fixture
def populated(system_mount, image_set):
    """alice's default album holds a.jpg (thumbnail made), and for the
    operations that succeed for her in original/, files of their own; bob
    holds b.gif."""
    m = system_mount
    data = image_set["photo.jpg"].read_bytes()
    for name in ("a.jpg", "ren.jpg", "del.jpg"):
        as_user(m.alice, write_file, m.original(name), data)
    as_user(m.alice, read_bytes, m.thumb("a.jpg"))          # waits for the thumbnail
    as_user(m.bob, write_file, m.original("b.gif", user=m.bob),
            image_set["icon.gif"].read_bytes())
    m.image = image_set["small.jpg"].read_bytes()
    m.data = data
    return m


def cold():
    """Lets the kernel's entry and attribute caches (1 s) expire."""
    time.sleep(1.2)


def test_access_matrix(populated):
    m = populated
    ops = make_ops(m, m.image, uid_of(m.bob))
    cells = []                 # (op, who, view)
    for op in MATRIX:
        for who in ("alice", "bob", "web", "root"):
            for view in ("original", "thumb", "pristine"):
                cells.append((op, who, view))
    # Non-destructive cells first, root's last with cold caches, then the
    # destructive ones (which must fail for everyone but alice in original/).
    order = [c for c in cells if c[0] not in DESTRUCTIVE and c[1] != "root"] + \
            [c for c in cells if c[0] not in DESTRUCTIVE and c[1] == "root"] + \
            [c for c in cells if c[0] in DESTRUCTIVE and not (c[1] == "alice" and
                                                              c[2] == "original")] + \
            [c for c in cells if c[0] in DESTRUCTIVE and c[1] == "alice" and
             c[2] == "original"]
    users = {"alice": m.alice, "bob": m.bob, "web": m.web, "root": "root"}
    wrong = []
    root_started = False
    for op, who, view in order:
        if who == "root" and not root_started:
            cold()
            root_started = True
        target = "a.jpg"
        if who == "alice" and view == "original" and op == "rename":
            target = "ren.jpg"
        if who == "alice" and view == "original" and op == "unlink":
            target = "del.jpg"
        want = MATRIX[op][column(who, view)]
        got = err_of(users[who], ops[op], view, target)
        if got != want:
            wrong.append(f"{op:9} {who:5} {view:9} want {errno.errorcode.get(want, 'ok'):7} "
                         f"got {errno.errorcode.get(got, 'ok')}")
    assert not wrong, "cells that differ from docs/MOUNT.md:\n" + "\n".join(wrong)

    # Root again straight after alice used every path (the kernel's caches
    # warm): a file's entry is looked up again at each use, and the daemon
    # checks the caller before anything else, so the answers are the same.
    for op in MATRIX:
        if op in DESTRUCTIVE:
            continue
        for view in ("original", "thumb", "pristine"):
            as_user(m.alice, os.stat, m.view(view) / "a.jpg")
            as_user(m.alice, os.listdir, m.view(view))
            got = err_of("root", ops[op], view, "a.jpg")
            if got != EACCES:
                wrong.append(f"{op:9} root  {view:9} (warm) want EACCES "
                             f"got {errno.errorcode.get(got, 'ok')}")
    assert not wrong, "root with warm caches:\n" + "\n".join(wrong)

    # What the successful cells did, and that the refused ones did nothing.
    alice = m.alice
    orig = sorted(as_user(alice, os.listdir, m.view("original")))
    assert orig == ["a.jpg", f"moved-{uid_of(alice)}.jpg", f"new-original-{uid_of(alice)}.jpg"], \
        orig
    assert as_user(alice, read_bytes, m.original("a.jpg")) == m.data
    assert as_user(alice, os.getxattr, m.original("a.jpg"), "user.xdg.tags") == b"by-test"
    st = as_user(alice, os.stat, m.original("a.jpg"))
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == uid_of(alice)   # chmod: no change
    assert st.st_gid == m.gid
    assert sorted(as_user(alice, os.listdir, m.view("thumb"))) == \
        sorted(["a.jpg", f"moved-{uid_of(alice)}.jpg", f"new-original-{uid_of(alice)}.jpg"])
    assert as_user(alice, os.listdir, m.view("pristine")).count("a.jpg") == 1
    assert as_user(m.bob, os.listdir, m.view("original", user=m.bob)) == ["b.gif"]


def test_modes_and_ownership(populated):
    """The bits the kernel enforces (default_permissions)."""
    m = populated
    alice_uid, bob_uid = uid_of(m.alice), uid_of(m.bob)
    root = os.stat(m.root)
    assert stat.S_IMODE(root.st_mode) == 0o755 and root.st_uid == 0
    want = {   # path -> (mode, group is the readers group)
        m.base(): (0o750, True), m.album(): (0o750, True),
        m.view("original"): (0o750, True), m.view("thumb"): (0o750, True),
        m.view("pristine"): (0o700, False),
        m.original("a.jpg"): (0o640, True), m.thumb("a.jpg"): (0o440, True),
        m.pristine("a.jpg"): (0o400, False),
    }
    for path, (mode, web) in want.items():
        st = as_user(m.alice, os.stat, path)
        assert stat.S_IMODE(st.st_mode) == mode, path
        assert st.st_uid == alice_uid, path
        assert (st.st_gid == m.gid) == web, path
    # bob: no web-read, so no group bits, and his primary group.
    for path in (m.base(m.bob), m.view("original", user=m.bob),
                 m.original("b.gif", user=m.bob)):
        st = as_user(m.bob, os.stat, path)
        assert st.st_uid == bob_uid and st.st_gid != m.gid, path
        assert stat.S_IMODE(st.st_mode) & 0o077 == 0, path


def test_root_directory_lists_whom_the_caller_may_enter(populated):
    m = populated
    assert sorted(os.listdir(m.root)) == sorted([m.alice, m.bob])
    assert as_user(m.alice, os.listdir, m.root) == [m.alice]
    assert as_user(m.bob, os.listdir, m.root) == [m.bob]
    assert as_user(m.web, os.listdir, m.root) == [m.alice]
    # web reads alice's albums, not bob's
    assert as_user(m.web, os.listdir, m.base()) == ["default"]
    assert err_of(m.web, os.listdir, m.base(m.bob)) == EACCES
    # nobody makes or removes user directories
    assert err_of("root", os.mkdir, m.root / "carol") == EPERM
    assert err_of("root", os.rmdir, m.base(m.bob)) == EPERM
    assert err_of(m.alice, os.mkdir, m.root / "carol") == EACCES
    with pytest.raises(FileNotFoundError):
        os.stat(m.root / "no-such-user")


def test_between_users_exdev_and_no_leaks(populated):
    m = populated
    # A user who reaches both (root) still cannot move an image across vaults.
    # alice cannot even see bob's tree: EACCES, not a hint that a name exists.
    assert err_of(m.alice, os.stat, m.original("b.gif", user=m.bob)) == EACCES
    assert err_of(m.alice, os.stat, m.original("nope.gif", user=m.bob)) == EACCES
    assert err_of(m.bob, os.stat, m.original("a.jpg")) == EACCES
    assert err_of(m.bob, os.stat, m.original("nope.jpg")) == EACCES
    assert err_of(m.bob, os.getxattr, m.original("a.jpg"), "user.imgvault.id") == EACCES
    # web: even a name it may read cannot be written through another open
    assert err_of(m.web, write_file, m.original("a.jpg"), b"x",
                  os.O_WRONLY | os.O_TRUNC) == EACCES
    assert err_of(m.web, os.truncate, m.original("a.jpg"), 0) == EACCES
    assert as_user(m.alice, read_bytes, m.original("a.jpg")) == m.data


def test_rename_between_two_vaults_is_refused(populated):
    """Only a caller who may write both vaults could try; no one may, so the
    kernel or the daemon refuses before the vaults are compared."""
    m = populated
    assert err_of(m.alice, os.rename, m.original("a.jpg"),
                  m.original("a.jpg", user=m.bob)) == EACCES
    cold()
    assert err_of("root", os.rename, m.original("a.jpg"),
                  m.original("a.jpg", user=m.bob)) == EACCES
    assert as_user(m.alice, read_bytes, m.original("a.jpg")) == m.data


def test_web_read_off_hides_the_vault_from_web(populated):
    m = populated
    assert as_user(m.web, read_bytes, m.original("a.jpg")) == m.data
    r = m.offline("user", "set", m.alice, "web-read=off")
    assert r.rc == EXIT_OK, str(r)
    assert err_of(m.web, os.listdir, m.base()) == EACCES
    assert err_of(m.web, read_bytes, m.original("a.jpg")) == EACCES
    st = as_user(m.alice, os.stat, m.original("a.jpg"))
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_gid != m.gid
    assert as_user(m.alice, read_bytes, m.original("a.jpg")) == m.data


def test_root_access_is_audited(populated):
    m = populated
    cold()
    assert err_of("root", read_bytes, m.original("a.jpg")) == EACCES
    assert err_of("root", write_file, m.original("a.jpg"), b"x",
                  os.O_WRONLY | os.O_TRUNC) == EACCES
    m.daemon.stop()
    r = m.store.iv("--json", "audit")
    assert r.rc == 0, str(r)
    refused = [a for a in r.json() if a["action"] == "root-access" and a["result"] == "refused"]
    assert refused and all(a["subject"] == uid_of(m.alice) for a in refused), str(r)
    # nothing of root's made it into alice's vault
    r = m.store.iv("--user", m.alice, "--json", "ls", "default")
    assert r.rc == 0, str(r)
    assert sorted(im["name"] for im in r.json()) == ["a.jpg", "del.jpg", "ren.jpg"]


def test_allow_root_reads(system_mount, image_set):
    """--allow-root-reads: root reads (audited as allowed), still writes nothing."""
    m = system_mount
    data = image_set["photo.jpg"].read_bytes()
    as_user(m.alice, write_file, m.original("a.jpg"), data)
    m.daemon.stop()
    m.daemon.args.insert(0, "--allow-root-reads")
    m.daemon.start()
    cold()
    assert read_bytes(m.original("a.jpg")) == data
    assert read_bytes(m.pristine("a.jpg")) == data
    assert m.alice in os.listdir(m.root)
    assert os.listdir(m.view("original")) == ["a.jpg"]
    for fn, args in [(write_file, (m.original("a.jpg"), b"x", os.O_WRONLY | os.O_TRUNC)),
                     (write_file, (m.original("new.jpg"), data)),
                     (os.unlink, (m.original("a.jpg"),)),
                     (os.setxattr, (m.original("a.jpg"), "user.xdg.tags", b"root")),
                     (os.mkdir, (m.album("roots"),))]:
        with pytest.raises(OSError) as ei:
            fn(*args)
        assert ei.value.errno == EACCES, fn
    m.daemon.stop()
    r = m.store.iv("--json", "audit")
    assert r.rc == 0, str(r)
    allowed = [a for a in r.json() if a["action"] == "root-access" and a["result"] == "ok"]
    assert allowed, str(r)
    m.daemon.start()
    assert as_user(m.alice, read_bytes, m.original("a.jpg")) == data
