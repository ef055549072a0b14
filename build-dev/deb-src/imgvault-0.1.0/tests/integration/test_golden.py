"""
Golden stores (tests/golden/README.md): stores written by older releases,
checked in, opened by this build.

Each test copies one golden store into its tmp_path (the committed files are
never touched), then, with the binaries under test: every image lists and
reads back byte-exact (current and pristine) against the store's
manifest.json, tags and comments read back through the mount, fsck is clean,
the audit trail is intact, and the catalog was migrated to the current
schema and sealed (schema 5: every row's MAC, each scope's commitment in
auth_state).  A migrated store is then edited with sqlite3 behind imgvault's
back, and must say so (exit 5) instead of serving the edited catalog.

The golden stores are root's (uid 0's desktop store; a system store with a
vault for uid 4747), so these tests run as root.
"""
import errno
import json
import os
import pwd
import secrets
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import EXIT_DAMAGE, EXIT_OK, ROOT, Store, need_root, sha256
from mountlib import Daemon, DesktopMount, new_mountpoint

pytest_plugins = ["mountlib"]

GOLDEN = ROOT / "tests" / "golden"
SCHEMA = 5                     # catalog schema of this build (PRAGMA user_version)
MAC_LEN = 32
SCOPE_STORE = -1               # the store's scope in auth_state (system store)
# Tables whose rows carry a MAC since schema 5.
MAC_TABLES = ("users", "key_slots", "albums", "images", "versions", "thumbs",
              "signing_keys", "partners", "shares")


# ---- the golden stores, copied ----

def manifest_of(name):
    return json.loads((GOLDEN / name / "manifest.json").read_text())


def copy_golden(name, dest):
    """A private copy of tests/golden/@name with the modes imgvault writes (git
    keeps neither modes nor empty directories)."""
    src = GOLDEN / name
    assert (src / "store" / "catalog.db").is_file(), f"{src} is missing"
    assert not (src / "store" / "catalog.db-wal").exists(), "a WAL was committed"
    dest = Path(dest)
    shutil.copytree(src, dest, symlinks=True)
    for d, dirs, files in os.walk(dest / "store"):
        os.chmod(d, 0o700)
        for f in files:
            os.chmod(os.path.join(d, f), 0o600)
    for f in ("passphrase", "recovery-code"):
        if (dest / f).exists():
            (dest / f).chmod(0o600)
    if (dest / "server.key").exists():
        (dest / "server.key").chmod(0o400)
    return dest


class Golden(Store):
    """A copied golden store; .manifest is its manifest.json, .user_args the
    options naming the vault (-u NAME for the system store), .uid its uid."""

    def __init__(self, binary, copy, manifest, user=None, uid=0):
        m = manifest
        super().__init__(binary, copy / m["store"],
                         passfile=copy / m["passphrase_file"] if "passphrase_file" in m else None,
                         server_key=copy / m["server_key_file"] if "server_key_file" in m else None)
        self.copy = copy
        self.manifest = m
        self.user = user
        self.uid = uid
        self.user_args = ["-u", user] if user else []

    def u(self, *args, **kw):
        """The CLI on the vault of this store's user."""
        return self.iv(*self.user_args, *args, **kw)

    def spec(self, im):
        return f"{im['album']}/{im['name']}"

    def image(self, name):
        (im,) = [im for im in self.manifest["images"] if im["name"] == name]
        return im

    def edited(self):
        ims = [im for im in self.manifest["images"] if im["edited"]]
        assert ims, "the manifest names no edited image"
        return ims[0]

    def pid(self, im):
        """The image's public id (hex), from ls --json."""
        r = self.u("--json", "ls", im["album"])
        assert r.rc == EXIT_OK, str(r)
        (pid,) = [e["id"] for e in r.json() if e["name"] == im["name"]]
        return pid

    def sql(self, query, *params):
        c = sqlite3.connect(str(self.path / "catalog.db"))
        try:
            return c.execute(query, params).fetchall()
        finally:
            c.close()


@pytest.fixture
def desktop(imgvault, tmp_path):
    need_root("the golden desktop store is root's (uid 0)")
    m = manifest_of("store-v4-desktop")
    return Golden(imgvault, copy_golden("store-v4-desktop", tmp_path / "golden"), m,
                  uid=m["owner_uid"])


@pytest.fixture
def gold_user():
    """The Unix user of the golden system store's vault (by uid: the catalog
    keeps no names); made for the test when no user has that uid."""
    need_root("the golden system store is a system store (root, useradd)")
    (want,) = manifest_of("store-v4-system")["users"]
    try:
        yield pwd.getpwuid(want["uid"]).pw_name, want["uid"]
        return
    except KeyError:
        pass
    name = want["name"]
    try:
        pwd.getpwnam(name)
        name = f"ivg{secrets.token_hex(3)}"      # the name is taken by another uid
    except KeyError:
        pass
    p = subprocess.run(["useradd", "-M", "-N", "-u", str(want["uid"]), "-s",
                        "/usr/sbin/nologin", name], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    assert p.returncode == 0, p.stdout.decode(errors="replace")
    try:
        yield name, want["uid"]
    finally:
        subprocess.run(["userdel", name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)


@pytest.fixture
def system(imgvault, tmp_path, gold_user):
    m = manifest_of("store-v4-system")
    name, uid = gold_user
    return Golden(imgvault, copy_golden("store-v4-system", tmp_path / "golden"), m,
                  user=name, uid=uid)


@pytest.fixture(params=["desktop", "system"])
def golden(request):
    return request.getfixturevalue(request.param)


# ---- checks ----

def assert_lists(g):
    """ls of every album: exactly the manifest's images, with their SHA-256."""
    for album in sorted({im["album"] for im in g.manifest["images"]}):
        r = g.u("--json", "ls", album)
        assert r.rc == EXIT_OK, str(r)
        got = {e["name"]: e for e in r.json()}
        want = {im["name"]: im for im in g.manifest["images"] if im["album"] == album}
        assert sorted(got) == sorted(want), str(r)
        for name, im in want.items():
            assert got[name]["sha256"] == im["sha256"], f"{album}/{name}: ls\n{r}"
            assert got[name]["edited"] == im["edited"], f"{album}/{name}: ls\n{r}"
            assert got[name]["damaged"] is False, f"{album}/{name}: ls\n{r}"
    r = g.u("--json", "ls")
    assert r.rc == EXIT_OK, str(r)
    albums = {e["album"] for e in r.json()}
    assert set(g.manifest["albums"]) <= albums, str(r)


def assert_reads_back(g):
    for im in g.manifest["images"]:
        r = g.u("cat", g.spec(im))
        assert r.rc == EXIT_OK, str(r)
        assert sha256(r.stdout) == im["sha256"], f"{g.spec(im)}: cat reads other bytes"
        r = g.u("cat", "--pristine", g.spec(im))
        assert r.rc == EXIT_OK, str(r)
        assert sha256(r.stdout) == im["pristine_sha256"], \
            f"{g.spec(im)}: cat --pristine reads other bytes"
        r = g.u("cat", "--thumb", g.spec(im))
        assert r.rc == EXIT_OK and r.stdout, str(r)


def assert_migrated_and_sealed(g):
    """Schema 5, every authenticated row has its MAC, the user's scope (and
    for a system store the store's) is sealed in auth_state."""
    assert g.sql("PRAGMA user_version") == [(SCHEMA,)]
    tables = {t for (t,) in g.sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "auth_state" in tables
    scopes = {s: (length_sum, rows, length_tag) for s, length_sum, rows, length_tag in
              g.sql("SELECT scope, length(sum), rows, length(tag) FROM auth_state")}
    assert g.uid in scopes, f"no auth_state row for uid {g.uid}: {scopes}"
    assert scopes[g.uid][0] == MAC_LEN and scopes[g.uid][2] == MAC_LEN and \
        scopes[g.uid][1] > 0, scopes
    if g.manifest["kind"] == "system":
        assert SCOPE_STORE in scopes, f"no auth_state row for the store: {scopes}"
        assert scopes[SCOPE_STORE][1] > 0, scopes
    macs = g.sql("SELECT id, typeof(mac), length(mac) FROM images")
    assert len(macs) == len(g.manifest["images"]), macs
    assert all(t == "blob" and n == MAC_LEN for _, t, n in macs), f"images.mac: {macs}"
    bad = {}
    for t in MAC_TABLES:
        if t not in tables:
            continue
        rows = g.sql(f"SELECT count(*) FROM {t} WHERE mac IS NULL OR length(mac) != ?", MAC_LEN)
        if rows[0][0]:
            bad[t] = rows[0][0]
    assert not bad, f"rows without a {MAC_LEN}-byte MAC after the first unlock: {bad}"


# ---- the tests ----

def test_golden_reads_back_after_migration(golden):
    g = golden
    assert g.sql("PRAGMA user_version") == [(4,)], "the copy is not the schema-4 store"
    assert_lists(g)           # the first unlock: migrates and seals
    assert_reads_back(g)
    assert_migrated_and_sealed(g)


def test_golden_fsck_and_audit(golden):
    g = golden
    r = g.u("fsck")
    assert r.rc == EXIT_OK, str(r)
    assert "damaged:" not in r.out and "damaged:" not in r.err, str(r)
    r = g.u("audit", "verify")
    assert r.rc == EXIT_OK and "intact" in r.out, str(r)
    assert_migrated_and_sealed(g)
    # and again, on the migrated store
    r = g.u("fsck")
    assert r.rc == EXIT_OK and "damaged:" not in r.out, str(r)
    assert_reads_back(g)


def test_golden_desktop_tags_and_comments(desktop, tmp_path, daemons):
    """Tags and comments set through the mount of the old daemon read back
    through this build's mount."""
    g = desktop
    mnt = new_mountpoint(tmp_path, mode=0o700)
    d = Daemon([g.path, mnt, "--passphrase-file", g.passfile], mnt, tmp_path / "imgvaultd.log")
    daemons.append(d)
    m = DesktopMount(d, g).start()
    for im in g.manifest["images"]:
        path = m.original(im["name"], album=im["album"])
        with open(path, "rb") as f:
            assert sha256(f.read()) == im["sha256"], f"{path} through the mount"
        with open(m.pristine(im["name"], album=im["album"]), "rb") as f:
            assert sha256(f.read()) == im["pristine_sha256"], f"{path}: pristine/"
        for attr, key in (("user.xdg.tags", "tags"), ("user.xdg.comment", "comment")):
            try:
                got = os.getxattr(path, attr).decode("utf-8")
            except OSError as e:
                assert e.errno == errno.ENODATA, f"getxattr {attr} {path}: {e}"
                got = None
            assert got == im[key], f"{attr} of {g.spec(im)}"
    m.stop()
    assert_migrated_and_sealed(g)


def test_golden_edited_catalog_is_refused(golden):
    """After the migration, the edited image's current and pristine versions
    are swapped in catalog.db: cat must refuse it (exit 5), not serve the
    other version, and fsck must report it."""
    g = golden
    assert_lists(g)                       # migrate and seal
    assert_migrated_and_sealed(g)
    im = g.edited()
    ((iid, cur, pri),) = g.sql("SELECT id, current_version, pristine_version FROM images "
                               "WHERE hex(pid) = upper(?)", g.pid(im))
    assert cur != pri
    c = sqlite3.connect(str(g.path / "catalog.db"))
    with c:
        c.execute("UPDATE images SET current_version = ?, pristine_version = ? WHERE id = ?",
                  (pri, cur, iid))
    c.close()
    for flags in ([], ["--pristine"]):
        r = g.u("cat", *flags, g.spec(im))
        assert r.rc == EXIT_DAMAGE, str(r)
        assert sha256(r.stdout) not in (im["sha256"], im["pristine_sha256"]), str(r)
    r = g.u("fsck")
    assert r.rc == EXIT_DAMAGE and "damaged:" in r.out, str(r)
    # the other images are still served
    for other in g.manifest["images"]:
        if other is not im:
            r = g.u("cat", g.spec(other))
            assert r.rc == EXIT_OK and sha256(r.stdout) == other["sha256"], str(r)


def test_golden_deleted_row_is_noticed(golden):
    """After the migration, one image's row is deleted from catalog.db: the
    vault no longer matches its seal, and says so (exit 5)."""
    g = golden
    assert_lists(g)
    assert_migrated_and_sealed(g)
    im = [i for i in g.manifest["images"] if not i["edited"]][-1]
    pid = g.pid(im)
    rows = g.sql("SELECT count(*) FROM images")[0][0]
    c = sqlite3.connect(str(g.path / "catalog.db"))
    with c:
        c.execute("DELETE FROM images WHERE hex(pid) = upper(?)", (pid,))
    c.close()
    assert g.sql("SELECT count(*) FROM images")[0][0] == rows - 1
    r = g.u("fsck")
    assert r.rc == EXIT_DAMAGE and "damaged:" in r.out, str(r)
    r = g.u("ls", im["album"])
    assert r.rc == EXIT_DAMAGE, str(r)
