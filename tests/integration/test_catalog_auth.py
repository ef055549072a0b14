"""T1 against the authenticated catalog (schema 5, fs/catalog_auth.c): someone
who can write the store directory edits catalog.db with sqlite3 — swaps,
repoints, rolls back, deletes and adds rows, cuts the audit trail — and each
edit must be detected (exit 5 / EIO, fsck names it, audited) while nothing
wrong is served: never another image's bytes, never an older copy's.

Every test edits the catalog the way an attacker would: with sqlite3 on
catalog.db (dropping a trigger when one is in the way), and with plain file
copies for blobs."""
import errno
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("mountlib", "gatewaylib")   # before the imports below

from conftest import (EXIT_DAMAGE, EXIT_OK, add_user, assert_fsck_clean, is_root, padded,
                      run_cli, sha256,
                      uid_of)
from mountlib import as_user, err_of, read_bytes, write_file

pytest_plugins = ["mountlib", "gatewaylib"]

ROLLED = re.compile(r"removed, added or rolled back")


# ---- looking at and editing the catalog ----

def rowid_of(store, album, name):
    """The images.id of ALBUM/NAME (looked up before the catalog is edited)."""
    pid = store.image_id(album, name)
    with store.db() as c:
        (rid,) = c.execute("SELECT id FROM images WHERE hex(pid) = upper(?)", (pid,)).fetchone()
    return rid


def image_cols(store, rid, *cols):
    with store.db() as c:
        return c.execute(f"SELECT {', '.join(cols)} FROM images WHERE id = ?", (rid,)).fetchone()


def edit(store, *sql, attach=None):
    """Runs @sql on catalog.db in one transaction, as an attacker with sqlite3 would."""
    c = sqlite3.connect(str(store.path / "catalog.db"), isolation_level=None)
    try:
        if attach:
            c.execute("ATTACH DATABASE ? AS old", (str(attach),))
        c.execute("BEGIN")
        for q in sql:
            if isinstance(q, tuple):
                c.execute(*q)
            else:
                c.execute(q)
        c.execute("COMMIT")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        c.close()


def copy_store(store, dest):
    """A copy of the store as it is now: catalog.db (WAL folded in) and blobs."""
    store.checkpoint()
    dest = Path(dest)
    dest.mkdir()
    c = sqlite3.connect(str(store.path / "catalog.db"))
    try:
        c.execute("VACUUM INTO ?", (str(dest / "catalog.db"),))
    finally:
        c.close()
    shutil.copytree(store.path / "blobs", dest / "blobs")
    return dest


def swap_names(store, a, b):
    """Swaps name_idx and name_enc of image rows @a and @b (through a free
    placeholder: (album_id, name_idx) is UNIQUE)."""
    edit(store,
         "CREATE TEMP TABLE keep AS SELECT id, name_idx, name_enc FROM images",
         ("UPDATE images SET name_idx = x'00' WHERE id = ?", (a,)),
         ("UPDATE images SET name_idx = (SELECT name_idx FROM keep WHERE id = ?1),"
          " name_enc = (SELECT name_enc FROM keep WHERE id = ?1) WHERE id = ?2", (a, b)),
         ("UPDATE images SET name_idx = (SELECT name_idx FROM keep WHERE id = ?1),"
          " name_enc = (SELECT name_enc FROM keep WHERE id = ?1) WHERE id = ?2", (b, a)))


def refused(r, *forbidden):
    """@r failed as damage (exit 5) and wrote none of the image bytes."""
    assert r.rc == EXIT_DAMAGE, str(r)
    assert r.stdout == b"", f"{len(r.stdout)} bytes written for a refused read\n{r}"
    for data in forbidden:
        assert sha256(r.stdout) != sha256(data)
    return r


def fsck_damaged(store, *want, **kw):
    """fsck exits 5; each regex in @want matches its output."""
    r = store.iv("fsck", **kw)
    assert r.rc == EXIT_DAMAGE, str(r)
    text = r.out + r.err
    for w in want:
        assert re.search(w, text), f"fsck does not report {w!r}\n{r}"
    assert "the store is damaged" in text or "damaged" in text, str(r)
    return r


def audit_entries(store, **kw):
    r = store.iv("--json", "audit", "-n", "100000", passfile=None, **kw)
    assert r.rc == 0, str(r)
    return r.json()


def damaged_entries(store, **kw):
    return [e for e in audit_entries(store, **kw) if e["result"] == "damaged"]


def import_as(store, src, name, tmp_path, album=None, **kw):
    """Imports the file @src under @name (a copy so named)."""
    d = tmp_path / f"imp-{name}-{time.monotonic_ns()}"
    d.mkdir()
    p = d / name
    shutil.copyfile(src, p)
    args = ["import"] + (["--album", album] if album else []) + [p]
    r = store.iv(*args, **kw)
    assert r.rc == 0, str(r)
    return p.read_bytes()


# ---- 1. two images' names swapped ----

def test_swapped_names_are_refused(store, image_set, tmp_path, desktop_mount):
    """name_idx + name_enc of x and y swapped: cat of either name exits 5 and
    never returns the other's bytes, a mount read gives EIO, fsck names both
    rows and exits 5, and an audit entry says 'damaged'."""
    m = desktop_mount
    x = import_as(store, image_set["small.jpg"], "x.jpg", tmp_path)
    y = import_as(store, image_set["photo.jpg"], "y.jpg", tmp_path)
    rx, ry = rowid_of(store, "default", "x.jpg"), rowid_of(store, "default", "y.jpg")
    m.stop()

    swap_names(store, rx, ry)

    refused(store.cat("default/x.jpg"), x, y)
    refused(store.cat("default/y.jpg"), x, y)
    r = store.cat("default/x.jpg")
    assert "fails authentication" in r.err, str(r)
    fsck_damaged(store, rf"image row {rx} fails authentication",
                 rf"image row {ry} fails authentication")
    assert damaged_entries(store), "no audit entry with result 'damaged'"

    m.daemon.expect_errors = True
    m.start()
    for name in ("x.jpg", "y.jpg"):
        try:
            got = read_bytes(m.original(name))
        except OSError as e:
            assert e.errno == errno.EIO, f"{name}: {e}"
        else:
            pytest.fail(f"the mount served {len(got)} bytes for swapped {name} "
                        f"({'y' if got == y else 'x' if got == x else 'other'}'s bytes)")


# ---- 2. a version pointer moved ----

def test_current_version_pointed_at_another_images_version(filled):
    s = filled
    rx, ry = rowid_of(s, "default", "small.jpg"), rowid_of(s, "default", "photo.jpg")
    (vy,) = image_cols(s, ry, "current_version")
    edit(s, ("UPDATE images SET current_version = ? WHERE id = ?", (vy, rx)))
    y = s.expected["default/photo.jpg"]
    r = refused(s.cat("default/small.jpg"), y)
    assert "fails authentication" in r.err, str(r)
    refused(s.iv("cat", "--stripped", "default/small.jpg"), y)
    # y itself still reads back, and fsck names x's row
    r = s.cat("default/photo.jpg")
    assert r.rc == EXIT_OK and r.stdout == y, str(r)
    fsck_damaged(s, rf"image row {rx} fails authentication")


def test_current_and_pristine_swapped(store, image_set, tmp_path):
    """An edited image (two versions): its current_version and
    pristine_version swapped: neither read serves the other's bytes."""
    s = store
    old = import_as(s, image_set["small.jpg"], "x.jpg", tmp_path)
    new = import_as(s, image_set["photo.jpg"], "x.jpg", tmp_path)
    rx = rowid_of(s, "default", "x.jpg")
    cur, pri = image_cols(s, rx, "current_version", "pristine_version")
    assert cur != pri
    assert s.cat("default/x.jpg").stdout == new
    assert s.iv("cat", "--pristine", "default/x.jpg").stdout == old

    edit(s, ("UPDATE images SET current_version = ?, pristine_version = ? WHERE id = ?",
             (pri, cur, rx)))
    refused(s.cat("default/x.jpg"), old, new)
    refused(s.iv("cat", "--pristine", "default/x.jpg"), old, new)
    fsck_damaged(s, rf"image row {rx} fails authentication")


# ---- 3. one image rolled back to an older copy ----

def roll_back_image(store, copy, rid):
    """Replaces image @rid's rows (images, versions, thumbs) by the copy's."""
    edit(store,
         ("DELETE FROM thumbs WHERE version_id IN (SELECT id FROM versions WHERE image_id = ?)",
          (rid,)),
         ("DELETE FROM thumb_queue WHERE version_id IN"
          " (SELECT id FROM versions WHERE image_id = ?)", (rid,)),
         ("DELETE FROM versions WHERE image_id = ?", (rid,)),
         ("DELETE FROM images WHERE id = ?", (rid,)),
         ("INSERT INTO images SELECT * FROM old.images WHERE id = ?", (rid,)),
         ("INSERT INTO versions SELECT * FROM old.versions WHERE image_id = ?", (rid,)),
         ("INSERT INTO thumbs SELECT * FROM old.thumbs WHERE version_id IN"
          " (SELECT id FROM old.versions WHERE image_id = ?)", (rid,)),
         attach=copy / "catalog.db")
    # ... and the old blobs, should the live store have dropped them
    for p in (copy / "blobs").rglob("*"):
        if p.is_file():
            dst = store.path / "blobs" / p.relative_to(copy / "blobs")
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dst)


def test_rolled_back_image_is_refused_at_unlock(store, image_set, tmp_path):
    s = store
    old = import_as(s, image_set["small.jpg"], "x.jpg", tmp_path)
    other = import_as(s, image_set["icon.gif"], "y.gif", tmp_path)
    rx = rowid_of(s, "default", "x.jpg")
    copy = copy_store(s, tmp_path / "copy")
    new = import_as(s, image_set["photo.jpg"], "x.jpg", tmp_path)
    assert s.cat("default/x.jpg").stdout == new

    roll_back_image(s, copy, rx)

    r = s.cat("default/x.jpg")
    refused(r, old)
    assert ROLLED.search(r.err), str(r)
    # the vault as a whole is refused: the other image too, and ls
    refused(s.cat("default/y.gif"), other)
    r = s.iv("ls", "default")
    assert r.rc == EXIT_DAMAGE and ROLLED.search(r.err), str(r)
    r = s.iv("export", tmp_path / "exp")
    assert r.rc == EXIT_DAMAGE, str(r)
    assert not (tmp_path / "exp" / "default" / "x.jpg").exists() or \
        (tmp_path / "exp" / "default" / "x.jpg").read_bytes() != old
    fsck_damaged(s, ROLLED.pattern)
    assert any(ROLLED.search(e["detail"]) for e in damaged_entries(s)), \
        "the refusal is not audited"


def test_rolled_back_image_while_mounted(store, image_set, tmp_path, desktop_mount):
    """The same rollback while the daemon has the vault unlocked (its seal was
    checked at unlock, before the edit): the mount must not serve the old
    bytes as x's current content."""
    m = desktop_mount
    s = store
    old = import_as(s, image_set["small.jpg"], "x.jpg", tmp_path)
    rx = rowid_of(s, "default", "x.jpg")
    m.stop()
    copy = copy_store(s, tmp_path / "copy")
    m.start()
    new = import_as(s, image_set["photo.jpg"], "x.jpg", tmp_path)
    assert read_bytes(m.original("x.jpg")) == new

    roll_back_image(s, copy, rx)
    time.sleep(1.5)            # the kernel's attribute and entry caches
    m.daemon.expect_errors = True
    wrong = []
    try:
        got = read_bytes(m.original("x.jpg"))
    except OSError as e:
        assert e.errno in (errno.EIO, errno.ENOENT), e
    else:
        if got == old:
            wrong.append("the mount served the rolled-back (old) content of x.jpg")
    r = s.cat("default/x.jpg")          # through the daemon's control socket
    if r.stdout == old:
        wrong.append(f"cat through the daemon served the rolled-back content (exit {r.rc})")
    assert not wrong, "; ".join(wrong)
    m.stop()
    r = s.cat("default/x.jpg")
    refused(r, old)
    assert ROLLED.search(r.err), str(r)


# ---- 4. an image deleted behind the vault's back ----

def test_deleted_image_row_is_detected(filled):
    s = filled
    rid = rowid_of(s, "default", "small.jpg")
    edit(s, ("DELETE FROM thumbs WHERE version_id IN (SELECT id FROM versions WHERE image_id = ?)",
             (rid,)),
         ("DELETE FROM thumb_queue WHERE version_id IN"
          " (SELECT id FROM versions WHERE image_id = ?)", (rid,)),
         ("DELETE FROM versions WHERE image_id = ?", (rid,)),
         ("DELETE FROM images WHERE id = ?", (rid,)))
    r = s.cat("default/photo.jpg")
    refused(r)
    assert ROLLED.search(r.err), str(r)
    r = s.iv("ls", "default")
    assert r.rc == EXIT_DAMAGE, str(r)
    fsck_damaged(s, ROLLED.pattern)


def test_deleted_album_row_is_detected(store, image_set, tmp_path):
    s = store
    import_as(s, image_set["small.jpg"], "x.jpg", tmp_path, album="trip")
    import_as(s, image_set["icon.gif"], "y.gif", tmp_path)
    edit(s, "DELETE FROM thumbs WHERE version_id IN (SELECT v.id FROM versions v JOIN images i"
            " ON i.id = v.image_id JOIN albums a ON a.id = i.album_id WHERE a.id ="
            " (SELECT max(id) FROM albums))",
         "DELETE FROM versions WHERE image_id IN (SELECT id FROM images WHERE album_id ="
         " (SELECT max(id) FROM albums))",
         "DELETE FROM images WHERE album_id = (SELECT max(id) FROM albums)",
         "DELETE FROM albums WHERE id = (SELECT max(id) FROM albums)")
    r = s.cat("default/y.gif")
    refused(r)
    assert ROLLED.search(r.err), str(r)
    fsck_damaged(s, ROLLED.pattern)


# ---- 6. the audit trail's tail cut ----

def cut_audit_tail(store, n):
    edit(store, "DROP TRIGGER IF EXISTS audit_no_delete",
         ("DELETE FROM audit WHERE seq > (SELECT max(seq) FROM audit) - ?", (n,)))


def test_audit_tail_cut_is_found(filled):
    s = filled
    r = s.iv("audit", "verify")
    assert r.rc == EXIT_OK and "intact" in r.out, str(r)
    with s.db() as c:
        (before,) = c.execute("SELECT max(seq) FROM audit").fetchone()
    cut_audit_tail(s, 3)
    # without the key: the chain is whole, and it says the head was not checked
    r = s.iv("audit", "verify", passfile=None)
    assert "sealed head was not checked" in r.out + r.err, str(r)
    # with the owner's passphrase: the cut is found
    r = s.iv("audit", "verify")
    assert r.rc == EXIT_DAMAGE, str(r)
    assert re.search(r"entries after \d+ were removed", r.out), str(r)
    assert f"sealed head is entry {before}" in r.out, str(r)
    r = s.iv("--json", "audit", "verify")
    assert r.rc == EXIT_DAMAGE and r.json()[-1]["tail_cut"] is True, str(r)


def test_audit_tail_cut_survives_later_activity(filled):
    """The cut must still be found after the vault was used again (each use
    appends entries): a new entry must not seal over the missing ones."""
    s = filled
    with s.db() as c:
        (before,) = c.execute("SELECT max(seq) FROM audit").fetchone()
    cut_audit_tail(s, 3)
    r = s.iv("ls", "default")          # an ordinary unlock, audited
    r = s.iv("audit", "verify")
    assert r.rc == EXIT_DAMAGE, f"cut of entries {before - 2}..{before} not found\n{r}"
    assert "removed" in r.out, str(r)


def test_audit_tail_cut_system_store(system_store):
    s = system_store
    add_user(s, s.alice)
    add_user(s, s.bob)
    r = s.iv("audit", "verify")
    assert r.rc == EXIT_OK, str(r)
    with s.db() as c:
        (before,) = c.execute("SELECT max(seq) FROM audit").fetchone()
    cut_audit_tail(s, 2)
    r = run_cli(s.binary, "-s", s.path, "audit", "verify")     # no server key given
    assert "sealed head was not checked" in r.out + r.err or r.rc == EXIT_DAMAGE, str(r)
    r = s.iv("audit", "verify")                                 # with -k
    assert r.rc == EXIT_DAMAGE, str(r)
    assert re.search(r"entries after \d+ were removed", r.out), str(r)
    assert f"sealed head is entry {before}" in r.out, str(r)


# ---- 7. thumbnails ----

def thumb_row(store, rid):
    with store.db() as c:
        return c.execute("SELECT t.version_id, hex(t.blob_id) FROM thumbs t JOIN images i"
                         " ON i.current_version = t.version_id WHERE i.id = ?",
                         (rid,)).fetchone()


def test_thumbnail_pointed_at_another_version(filled, tmp_path):
    s = filled
    rx, ry = rowid_of(s, "default", "small.jpg"), rowid_of(s, "default", "photo.jpg")
    tx, ty = s.iv("cat", "--thumb", "default/small.jpg"), s.iv("cat", "--thumb",
                                                               "default/photo.jpg")
    assert tx.rc == 0 and ty.rc == 0 and tx.stdout and ty.stdout != tx.stdout, (tx, ty)
    (vx, _), (vy, _) = thumb_row(s, rx), thumb_row(s, ry)
    # the two thumbnail rows trade versions: each now "belongs" to the other image
    edit(s, ("UPDATE thumbs SET version_id = -1 WHERE version_id = ?", (vx,)),
         ("UPDATE thumbs SET version_id = ? WHERE version_id = ?", (vx, vy)),
         ("UPDATE thumbs SET version_id = ? WHERE version_id = -1", (vy,)))
    r = s.iv("cat", "--thumb", "default/small.jpg")
    refused(r, ty.stdout)
    assert "fails authentication" in r.err, str(r)
    refused(s.iv("cat", "--thumb", "default/photo.jpg"), tx.stdout)
    fsck_damaged(s, r"thumbnail row \d+ fails authentication")


def test_replayed_thumbnail_row(filled, tmp_path):
    """thumbs --rebuild remakes x's thumbnail; the old row and blob, put back
    from a copy, authenticate as rows but the seal knows they are old."""
    s = filled
    rx = rowid_of(s, "default", "small.jpg")
    copy = copy_store(s, tmp_path / "copy")
    r = s.iv("thumbs", "--rebuild")
    assert r.rc == 0, str(r)
    vx, new_blob = thumb_row(s, rx)
    with sqlite3.connect(str(copy / "catalog.db")) as c:
        (old_blob,) = c.execute("SELECT hex(blob_id) FROM thumbs WHERE version_id = ?",
                                (vx,)).fetchone()
    if old_blob == new_blob:
        pytest.fail("thumbs --rebuild kept the same blob id: nothing to replay")
    old_thumb_file = copy / "blobs" / old_blob.lower()[0:2] / old_blob.lower()[2:4] / \
        old_blob.lower()
    edit(s, ("DELETE FROM thumbs WHERE version_id = ?", (vx,)),
         ("INSERT INTO thumbs SELECT * FROM old.thumbs WHERE version_id = ?", (vx,)),
         attach=copy / "catalog.db")
    dst = s.blob_path(old_blob)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(old_thumb_file, dst)
    r = s.iv("cat", "--thumb", "default/small.jpg")
    refused(r)
    assert ROLLED.search(r.err), str(r)
    fsck_damaged(s, ROLLED.pattern)


def test_thumbnail_swap_through_the_mount(store, image_set, tmp_path, desktop_mount):
    m = desktop_mount
    s = store
    import_as(s, image_set["small.jpg"], "x.jpg", tmp_path)
    import_as(s, image_set["photo.jpg"], "y.jpg", tmp_path)
    tx, ty = read_bytes(m.thumb("x.jpg")), read_bytes(m.thumb("y.jpg"))
    assert tx and ty and tx != ty
    rx, ry = rowid_of(s, "default", "x.jpg"), rowid_of(s, "default", "y.jpg")
    m.stop()
    (vx, _), (vy, _) = thumb_row(s, rx), thumb_row(s, ry)
    edit(s, ("UPDATE thumbs SET version_id = -1 WHERE version_id = ?", (vx,)),
         ("UPDATE thumbs SET version_id = ? WHERE version_id = ?", (vx, vy)),
         ("UPDATE thumbs SET version_id = ? WHERE version_id = -1", (vy,)))
    m.daemon.expect_errors = True
    m.start()
    for name, own, other in (("x.jpg", tx, ty), ("y.jpg", ty, tx)):
        try:
            got = read_bytes(m.thumb(name))
        except OSError as e:
            assert e.errno == errno.EIO, f"thumb/{name}: {e}"
        else:
            assert got != other, f"thumb/{name} served the other image's thumbnail"
            # a thumbnail remade from the image itself is no harm
            assert got == own, f"thumb/{name} served {len(got)} bytes, neither its own " \
                               f"thumbnail nor the other's"
    m.stop()
    with s.db() as c:
        rows = dict(c.execute("SELECT version_id, hex(blob_id) FROM thumbs"))
    print("thumb rows after the mount:", rows, "swapped:", vx, vy)


# ---- 8. sealed names and tags are padded ----

def test_names_are_padded(store, image_set, tmp_path):
    s = store
    import_as(s, image_set["small.jpg"], "a", tmp_path, album="b")
    import_as(s, image_set["small.jpg"], "abcdefghijklmnopqrst", tmp_path,
              album="abcdefghijklmnopqrst")
    with s.db() as c:
        album_lens = {n for (n,) in c.execute("SELECT length(name_enc) FROM albums a"
                                              " WHERE (SELECT count(*) FROM images i"
                                              " WHERE i.album_id = a.id) > 0")}
        image_lens = {n for (n,) in c.execute("SELECT length(name_enc) FROM images")}
    assert len(album_lens) == 1, f"album names of 1 and 20 bytes seal to {album_lens}"
    assert len(image_lens) == 1, f"image names of 1 and 20 bytes seal to {image_lens}"


def test_tags_are_padded(store, image_set, tmp_path, desktop_mount):
    m = desktop_mount
    s = store
    import_as(s, image_set["small.jpg"], "x.jpg", tmp_path)
    import_as(s, image_set["icon.gif"], "y.gif", tmp_path)
    os.setxattr(m.original("x.jpg"), "user.xdg.tags", b"a")
    os.setxattr(m.original("y.gif"), "user.xdg.tags", b"abcdefghijklmnopqrst")
    os.setxattr(m.original("x.jpg"), "user.xdg.comment", b"c")
    os.setxattr(m.original("y.gif"), "user.xdg.comment", b"abcdefghijklmnopqrst")
    assert os.getxattr(m.original("y.gif"), "user.xdg.tags") == b"abcdefghijklmnopqrst"
    m.stop()
    with s.db() as c:
        tags = {n for (n,) in c.execute("SELECT length(tags_enc) FROM images")}
        comments = {n for (n,) in c.execute("SELECT length(comment_enc) FROM images")}
    assert None not in tags and len(tags) == 1, f"tags of 1 and 20 bytes seal to {tags}"
    assert None not in comments and len(comments) == 1, \
        f"comments of 1 and 20 bytes seal to {comments}"


# ---- 5. rows added or widened in a system store: links, partners, web-read ----

def ed25519_keypair():
    """(sign(msg) -> 64 bytes, raw 32-byte public key), without libsodium's python."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    sk = Ed25519PrivateKey.generate()
    return sk.sign, sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def forge_token(sign, kid, tid, image_pid, not_before, expires, partner=0, uses=0):
    from gatewaylib import b64url_encode
    payload = (bytes([1]) + kid + tid + image_pid + bytes([0, 0]) +
               not_before.to_bytes(8, "little") + expires.to_bytes(8, "little") +
               partner.to_bytes(8, "little") + uses.to_bytes(4, "little"))
    assert len(payload) == 71
    sig = sign(b"imgvault share token v1\0" + payload)
    return b64url_encode(payload) + "." + b64url_encode(sig)


def keyring_kids(path):
    return {line.split()[0] for line in Path(path).read_text().splitlines()
            if line and not line.startswith("#") and not line.startswith("imgvault-keyring")}


@pytest.fixture
def gw_system(system_store, image_set, tmp_path, unix_users, passfile):
    """A system store: bob (no passphrase, so imgvaultd opens his vault with the
    server key) holds photo.jpg, alice has a passphrase (her vault stays locked
    in the daemon); share.base-url set; not served yet."""
    if not is_root():
        pytest.skip("system stores need root")
    from gatewaylib import free_port, short_dir
    s = system_store
    add_user(s, s.alice, passfile)
    add_user(s, s.bob)
    x = image_set["photo.jpg"].read_bytes()
    r = s.iv("--user", s.bob, "import", image_set["photo.jpg"])
    assert r.rc == 0, str(r)
    s.port = free_port()
    r = s.iv("config", f"share.base-url=http://127.0.0.1:{s.port}")
    assert r.rc == 0, str(r)
    s.sockdir = short_dir()
    s.mnt = tmp_path / "mnt"
    s.x = x
    s.daemon = None
    s.gwuser = unix_users("ivgw")
    yield s
    if s.daemon is not None:
        from gatewaylib import stop_daemon
        stop_daemon(s.daemon)
    shutil.rmtree(s.sockdir, ignore_errors=True)


def serve(s):
    """Starts imgvaultd --system on @s; None when it refuses to start (with its log)."""
    from gatewaylib import start_daemon
    try:
        s.daemon = start_daemon(s, s.mnt, s.sockdir / "control.sock", "--gateway-user",
                                s.gwuser, system=True)
    except pytest.fail.Exception as e:
        s.daemon = None
        return str(e)
    return None


def unserve(s):
    from gatewaylib import stop_daemon
    if s.daemon is not None:
        stop_daemon(s.daemon)
        s.daemon = None


def share_as(s, user, spec, *args):
    """@user mints a link through the running daemon (as test_gateway's
    system-mode test does: @user cannot read the store's lock, so a lock of
    the test's own, held as the daemon holds the real one, points at it)."""
    import fcntl
    pointer = s.sockdir / f"pointer-{user}"
    pointer.mkdir(mode=0o755, exist_ok=True)
    (pointer / "lock").write_text(f"imgvaultd control={s.daemon.control} (test)\n")
    (pointer / "lock").chmod(0o644)
    with open(pointer / "lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = run_cli(s.binary, "-s", pointer, "--json", "share", spec, *args, as_user=user)
    assert r.rc == 0, str(r)
    from gatewaylib import Link
    return Link(r.json()[-1])


def test_forged_signing_key_and_share_row(gw_system, gateway):
    """A signing key of the attacker's own (under the store's scope, under
    bob's uid, under the uid of alice, whose vault the daemon has not
    unlocked) and a share row for bob's image expiring in 10 years: the
    forged token gets no 200, and the daemon does not publish the keys."""
    from gatewaylib import curl
    s = gw_system
    bob_uid = uid_of(s.bob)
    # control: a real link works
    assert serve(s) is None
    good = share_as(s, s.bob, "default/photo.jpg")
    g = gateway(s, as_user=s.gwuser)
    r = curl(good.url)
    assert r.status == 200 and r.body, repr(r)
    unserve(s)

    with s.db() as c:
        image_rowid, pid = c.execute("SELECT id, pid FROM images WHERE uid = ?",
                                     (bob_uid,)).fetchone()
    now = int(time.time())
    forged = []
    alice_uid = uid_of(s.alice)
    for owner in (-1, bob_uid, alice_uid):
        sign, pk = ed25519_keypair()
        kid, tid = os.urandom(8), os.urandom(16)
        edit(s, ("INSERT INTO signing_keys(kid, owner, public, secret_enc, created, retired,"
                 " mac) VALUES (?, ?, ?, ?, ?, 0, ?)",
                 (kid, owner, pk, os.urandom(72), now - 60, os.urandom(32))),
             ("INSERT INTO shares(tid, kid, uid, image_id, variant, disposition, not_before,"
              " expires, partner_id, uses_max, uses, created, revoked, served, mac)"
              " VALUES (?, ?, ?, ?, 0, 0, ?, ?, 0, 0, 0, ?, 0, 0, ?)",
              (tid, kid, bob_uid, image_rowid, now - 60, now + 10 * 365 * 86400, now - 60,
               os.urandom(32))))
        forged.append((owner, kid, forge_token(sign, kid, tid, pid, now - 60,
                                               now + 10 * 365 * 86400)))

    refusal = serve(s)
    print("daemon after the forgery:", "refused: " + refusal[-600:] if refusal else "served")
    if refusal is not None:
        assert re.search(r"seal|authentic|rolled back|damaged", refusal), refusal
        return        # the daemon refused the forged catalog: nothing is served
    published = keyring_kids(s.daemon.keyring)
    g = gateway(s, port=free_port_(), as_user=s.gwuser)
    for owner, kid, token in forged:
        r = curl(g.url(f"/s/{token}"))
        print("forged", owner, r.status, r.body[:80], "published:", kid.hex() in published)
        assert r.status != 200, f"forged token (key owner {owner}) served: {r!r}"
        assert sha256(r.body) != sha256(s.x)
        assert r.status in (403, 404, 410, 503), repr(r)
        r = curl(g.url(f"/v/{token}"))
        assert r.status != 200, f"forged token (key owner {owner}) got a preview page: {r!r}"
    for owner, kid, token in forged:
        assert kid.hex() not in published, \
            f"imgvaultd published the forged key {kid.hex()} (owner {owner}) to the gateway"


def free_port_():
    from gatewaylib import free_port
    return free_port()


def test_widened_partner_and_uses_are_not_obeyed(gw_system, gateway):
    """A partner limited to 192.0.2.0/24 widened to everywhere, and a one-use
    link used up and its uses_max zeroed: neither edit is obeyed."""
    from gatewaylib import curl
    s = gw_system
    assert serve(s) is None
    r = s.iv("partner", "add", "far", "--cidr", "192.0.2.0/24")
    assert r.rc == 0, str(r)
    r = s.iv("partner", "add", "near", "--cidr", "127.0.0.0/8")
    assert r.rc == 0, str(r)
    far = share_as(s, s.bob, "default/photo.jpg", "--partner", "far")
    once = share_as(s, s.bob, "default/photo.jpg", "--partner", "near", "--uses", "1")
    g = gateway(s, as_user=s.gwuser)
    assert curl(far.url).status == 403
    r = curl(once.url)
    assert r.status == 200 and r.body, repr(r)
    assert curl(once.url).status == 410
    unserve(s)

    with s.db() as c:
        (cidrs,) = c.execute("SELECT cidrs FROM partners WHERE name = 'far'").fetchone()
    wide = cidrs.replace("192.0.2.0/24", "0.0.0.0/0") if "192.0.2.0/24" in cidrs \
        else "0.0.0.0/0"
    edit(s, ("UPDATE partners SET cidrs = ? WHERE name = 'far'", (wide,)),
         ("UPDATE shares SET uses_max = 0 WHERE tid = ?", (bytes.fromhex(once.token_id),)))
    refusal = serve(s)
    print("daemon after the edit:", "refused: " + refusal[-600:] if refusal else "served")
    if refusal is not None:
        return
    g = gateway(s, port=free_port_(), as_user=s.gwuser)
    for link in (far, once):
        for route in ("s", "v"):
            r = curl(link.at(route).replace(f":{s.port}/", f":{g.port}/"))
            print(route, link.token_id, r.status, r.body[:80])
            assert r.status != 200, f"/{route}/ of an edited link served: {r!r}"
            assert sha256(r.body) != sha256(s.x)


def test_web_read_flipped_for_a_user_who_did_not_opt_in(system_mount, image_set):
    """users.web_read set to 1 for bob, behind the store's back: the readers
    group still cannot read his images."""
    m = system_mount
    data = image_set["icon.gif"].read_bytes()
    as_user(m.bob, write_file, m.original("b.gif", user=m.bob), data)
    assert err_of(m.web, read_bytes, m.original("b.gif", user=m.bob)) == errno.EACCES
    m.daemon.stop()
    edit(m.store, ("UPDATE users SET web_read = 1 WHERE uid = ?", (uid_of(m.bob),)))
    m.daemon.expect_errors = True
    m.daemon.start()
    time.sleep(1.2)
    e = err_of(m.web, read_bytes, m.original("b.gif", user=m.bob))
    assert e in (errno.EACCES, errno.EIO, errno.ENOENT), e
    e = err_of(m.web, os.listdir, m.base(m.bob))
    assert e in (errno.EACCES, errno.EIO, errno.ENOENT), e
    m.daemon.stop()
    r = m.store.iv("fsck")
    assert r.rc == EXIT_DAMAGE and re.search(r"user row \d+ fails authentication",
                                             r.out + r.err), str(r)


def test_share_rows_rolled_back_while_served(gw_system, gateway, tmp_path):
    """A one-use link used up, and another revoked; their rows then put back
    from a copy taken before (each row's own MAC is good: it is an older copy
    of itself) while imgvaultd keeps serving: neither link may work again."""
    from gatewaylib import curl
    s = gw_system
    assert serve(s) is None
    once = share_as(s, s.bob, "default/photo.jpg", "--uses", "1")
    gone = share_as(s, s.bob, "default/photo.jpg")
    g = gateway(s, as_user=s.gwuser)
    copy = copy_store(s, tmp_path / "copy")
    r = curl(once.url)
    assert r.status == 200 and r.body, repr(r)
    assert curl(once.url).status == 410
    r = s.iv("--user", s.bob, "revoke", gone.token_id)
    assert r.rc == 0, str(r)
    assert curl(gone.url).status == 410

    for link in (once, gone):
        edit(s, ("DELETE FROM shares WHERE tid = ?", (bytes.fromhex(link.token_id),)),
             ("INSERT INTO shares SELECT * FROM old.shares WHERE tid = ?",
              (bytes.fromhex(link.token_id),)), attach=copy / "catalog.db")
    served = {}
    for name, link in (("used-up one-use link", once), ("revoked link", gone)):
        r = curl(link.url)
        served[name] = (r.status, len(r.body))
    assert all(st != 200 for st, _ in served.values()), \
        f"rolled-back share rows obeyed by the running daemon: {served}"


def test_audit_tail_cut_survives_later_activity_system_store(system_store, image_set):
    """System store: the tail cut, then root does something audited (an
    import into alice's vault); audit verify -k must still find the cut."""
    s = system_store
    add_user(s, s.alice)
    add_user(s, s.bob)
    with s.db() as c:
        (before,) = c.execute("SELECT max(seq) FROM audit").fetchone()
    cut_audit_tail(s, 2)
    r = s.iv("--user", s.alice, "import", image_set["small.jpg"])
    assert r.rc == 0, str(r)
    r = s.iv("audit", "verify")
    assert r.rc == EXIT_DAMAGE, f"cut of entries {before - 1}..{before} not found\n{r}"
    assert "removed" in r.out, str(r)


def test_blob_sizes_are_padded(store, image_set, tmp_path):
    """T1 sees padded sizes (Padmé, FORMAT.md §2.3): the catalog's size and the
    blob's length name a bucket, not the file; reads, ls and stat give the
    exact content, and fsck checks the padding."""
    s = store
    data = image_set["photo.jpg"].read_bytes()
    import_as(s, image_set["photo.jpg"], "p.jpg", tmp_path)
    r = s.iv("thumbs")
    assert r.rc == 0, str(r)
    with s.db() as c:
        (vsize, blob) = c.execute("SELECT size, hex(blob_id) FROM versions").fetchone()
        (tsize,) = c.execute("SELECT size FROM thumbs").fetchone()
    assert vsize == padded(len(data)) and vsize > len(data), (vsize, len(data))
    assert padded(tsize) == tsize
    on_disk = s.blob_path(blob.lower()).stat().st_size
    chunks = -(-vsize // 65536)
    assert on_disk == 128 + vsize + 40 * chunks      # the header says the padded size
    assert s.cat("default/p.jpg").stdout == data
    assert s.ls_json()[0]["size"] == len(data)
    assert_fsck_clean(s)
    # The padding is sealed like the content: a byte flipped in the blob's
    # padded tail fails its chunk.
    path = s.blob_path(blob.lower())
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 1
    path.write_bytes(bytes(raw))
    r = s.iv("fsck")
    assert r.rc == EXIT_DAMAGE and "damaged:" in r.out, str(r)
