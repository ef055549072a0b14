"""The mounted tree, one operation at a time (docs/MOUNT.md, DESIGN §5):
layout, exact bytes, versions and pristine, thumbnails, refused writes,
renames the way rsync and editors do them, albums, links, extended
attributes, expiry, quota, and the store's lock while mounted."""
import errno
import os
import signal
import stat
import subprocess
import time

import pytest

pytest.register_assert_rewrite("mountlib")   # before the import below

from conftest import EXIT_BUSY, convert, padded, sha256
from mountlib import (VIEWS, file_sha, image_info, mountinfo_has, read_bytes, wait_for,
                      write_file)

pytest_plugins = ["mountlib"]      # its fixtures


def listing(path):
    return sorted(os.listdir(path))


def put(m, name, data, album="default", **kw):
    write_file(m.original(name, album), data, **kw)


def close_error(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    """Writes @data to @path; returns the errno close() failed with (0: none)."""
    fd = os.open(path, flags, 0o600)
    os.write(fd, data)
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return 0


def xget(path, name):
    return os.getxattr(path, name).decode()


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory):
    """A 12-megapixel JPEG: its thumbnail takes a while to make."""
    d = tmp_path_factory.mktemp("bigjpeg")
    convert("-seed", "21", "-size", "4000x3000", "plasma:", "-quality", "90", d / "big.jpg")
    return d / "big.jpg"


@pytest.fixture
def other_jpeg(tmp_path):
    """A portrait JPEG, unlike every image of the image set."""
    p = tmp_path / "portrait.jpg"
    convert("-seed", "9", "-size", "150x300", "plasma:", "-quality", "90", p)
    return p


# ---- layout ----

def test_tree_layout(desktop_mount, image_set):
    m = desktop_mount
    root = os.stat(m.root)
    assert stat.S_ISDIR(root.st_mode) and stat.S_IMODE(root.st_mode) == 0o700
    assert root.st_uid == os.getuid()
    assert listing(m.root) == ["default"]
    assert listing(m.album()) == sorted(VIEWS)
    for v in VIEWS:
        st = os.stat(m.view(v))
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700, v
        assert st.st_uid == os.getuid()
        assert listing(m.view(v)) == []
    assert len({os.stat(m.view(v)).st_ino for v in VIEWS} | {os.stat(m.album()).st_ino}) == 4

    put(m, "photo.jpg", image_set["photo.jpg"].read_bytes())
    want = {"original": 0o600, "thumb": 0o400, "pristine": 0o400}
    for v, mode in want.items():
        assert listing(m.view(v)) == ["photo.jpg"], v
        st = os.stat(m.view(v) / "photo.jpg")
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == mode, v
        assert st.st_uid == os.getuid() and st.st_nlink == 1
    assert len({os.stat(m.view(v) / "photo.jpg").st_ino for v in VIEWS}) == 3

    # A new album has the three views; nothing else can be made in an album.
    os.mkdir(m.album("trips"))
    assert listing(m.root) == ["default", "trips"]
    assert listing(m.album("trips")) == sorted(VIEWS)
    with pytest.raises(OSError) as ei:
        os.mkdir(m.album() / "more")
    assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        write_file(m.album() / "loose.jpg", b"x")
    assert ei.value.errno == errno.EACCES
    with pytest.raises(OSError) as ei:
        write_file(m.root / "loose.jpg", b"x")
    assert ei.value.errno == errno.EACCES
    assert listing(m.album()) == sorted(VIEWS)


# ---- content ----

def test_exact_bytes_in_and_out(desktop_mount, image_set, tmp_path):
    m = desktop_mount
    for name, p in image_set.items():
        r = subprocess.run(["cp", str(p), str(m.view("original"))], timeout=60)
        assert r.returncode == 0, name
    assert listing(m.view("original")) == sorted(image_set)
    out = tmp_path / "out"
    out.mkdir()
    for name, p in image_set.items():
        r = subprocess.run(["cmp", str(p), str(m.original(name))], stdout=subprocess.PIPE,
                           timeout=60)
        assert r.returncode == 0, r.stdout.decode()
        want = sha256(p.read_bytes())
        assert file_sha(m.original(name)) == want, name
        assert file_sha(m.pristine(name)) == want, name
        assert xget(m.original(name), "user.imgvault.sha256") == want
        assert os.stat(m.original(name)).st_size == p.stat().st_size
        assert os.stat(m.pristine(name)).st_size == p.stat().st_size
        r = subprocess.run(["cp", str(m.original(name)), str(out / name)], timeout=60)
        assert r.returncode == 0 and sha256((out / name).read_bytes()) == want, name

    # Reads at odd offsets across chunk boundaries (64 KiB) give the same bytes.
    data = image_set["big.png"].read_bytes()
    with open(m.original("big.png"), "rb", buffering=0) as f:
        for off, n in [(0, 1), (65535, 2), (65536, 65536), (131000, 70000),
                       (len(data) - 10, 100), (len(data), 10)]:
            f.seek(off)
            assert f.read(n) == data[off:off + n], (off, n)


def test_pristine_kept_across_an_overwrite(desktop_mount, image_set, other_jpeg):
    m = desktop_mount
    first, second = image_set["photo.jpg"].read_bytes(), other_jpeg.read_bytes()
    put(m, "p.jpg", first)
    pid = xget(m.original("p.jpg"), "user.imgvault.id")
    assert image_info(m.thumb("p.jpg"))[1:] == (256, 192)

    put(m, "p.jpg", second)                           # open(O_TRUNC), write, close
    assert read_bytes(m.original("p.jpg")) == second
    assert read_bytes(m.pristine("p.jpg")) == first
    assert os.stat(m.pristine("p.jpg")).st_size == len(first)
    assert xget(m.original("p.jpg"), "user.imgvault.id") == pid
    assert xget(m.original("p.jpg"), "user.imgvault.sha256") == sha256(second)
    assert xget(m.original("p.jpg"), "user.imgvault.width") == "150"
    assert image_info(m.thumb("p.jpg")) == ("JPEG", 128, 256)   # of the new version

    put(m, "p.jpg", image_set["small.jpg"].read_bytes())       # a third version
    assert read_bytes(m.original("p.jpg")) == image_set["small.jpg"].read_bytes()
    assert read_bytes(m.pristine("p.jpg")) == first


def test_thumbnail_read_waits_until_it_is_made(desktop_mount, big_jpeg, image_set):
    m = desktop_mount
    data = big_jpeg.read_bytes()
    sizes_before = []
    for i in range(3):
        name = f"big{i}.jpg"
        put(m, name, data)
        # Straight after the commit: listed, but not made yet (size 0) ...
        assert name in os.listdir(m.view("thumb"))
        sizes_before.append(os.stat(m.thumb(name)).st_size)
        # ... and a read waits for it and returns a whole thumbnail.
        t = read_bytes(m.thumb(name))
        assert image_info(t) == ("JPEG", 256, 192), name
        assert os.stat(m.thumb(name)).st_size == len(t)
        assert read_bytes(m.thumb(name)) == t
    assert 0 in sizes_before, \
        f"every thumbnail was ready before it was read ({sizes_before}): the wait is untested"

    # Same format family; never enlarged; PNG keeps its alpha.
    put(m, "icon.gif", image_set["icon.gif"].read_bytes())
    assert image_info(m.thumb("icon.gif")) == ("GIF", 24, 24)
    put(m, "gradient.png", image_set["gradient.png"].read_bytes())
    assert image_info(m.thumb("gradient.png")) == ("PNG", 120, 90)


def test_thumbnail_keeps_png_alpha(desktop_mount, tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image
    src = tmp_path / "alpha.png"
    convert("-size", "600x400", "xc:none", "-fill", "red", "-draw", "circle 300,200 300,50",
            src)
    put(desktop_mount, "alpha.png", src.read_bytes())
    with Image.open(desktop_mount.thumb("alpha.png")) as im:
        assert im.format == "PNG" and im.size == (256, 171)
        assert im.mode in ("RGBA", "LA") or "transparency" in im.info
        im = im.convert("RGBA")
        assert im.getpixel((0, 0))[3] == 0 and im.getpixel((128, 85))[3] == 255


def test_write_of_a_non_image_fails_close(desktop_mount, image_set):
    m = desktop_mount
    photo = image_set["photo.jpg"].read_bytes()
    put(m, "photo.jpg", photo)
    time.sleep(1.2)                       # attributes cached before are stale now
    assert read_bytes(m.original("photo.jpg")) == photo     # cached by the kernel

    # Over an existing image: EINVAL at close(), the old content stays.
    html = b"<!DOCTYPE html><html><body>not a picture</body></html>\n"
    assert close_error(m.original("photo.jpg"), html) == errno.EINVAL
    assert read_bytes(m.original("photo.jpg")) == photo
    assert read_bytes(m.pristine("photo.jpg")) == photo
    assert xget(m.original("photo.jpg"), "user.imgvault.sha256") == sha256(photo)

    # The same with exactly as many bytes: the kernel's page cache must not
    # keep what was refused.
    same_size = (html * (len(photo) // len(html) + 1))[:len(photo)]
    assert close_error(m.original("photo.jpg"), same_size) == errno.EINVAL
    assert read_bytes(m.original("photo.jpg")) == photo
    with open(m.original("photo.jpg"), "rb") as f:          # a second, separate open
        assert f.read() == photo

    # fsync() reports it too (the commit is at fsync), and so does the close after it.
    fd = os.open(m.original("photo.jpg"), os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"plain text\n")
    with pytest.raises(OSError) as ei:
        os.fsync(fd)
    assert ei.value.errno == errno.EINVAL
    os.close(fd)                      # nothing left to commit
    assert read_bytes(m.original("photo.jpg")) == photo

    # A new file that was refused stays as an empty placeholder, original/ only.
    assert close_error(m.original("notes.txt"), b"shopping list\n") == errno.EINVAL
    assert os.stat(m.original("notes.txt")).st_size == 0
    assert "notes.txt" not in os.listdir(m.view("thumb"))
    assert "notes.txt" not in os.listdir(m.view("pristine"))
    # and it can be written properly afterwards
    put(m, "notes.txt", image_set["small.jpg"].read_bytes())
    assert read_bytes(m.pristine("notes.txt")) == image_set["small.jpg"].read_bytes()

    # An empty write over an image does not empty it.
    assert close_error(m.original("photo.jpg"), b"") == errno.EINVAL
    assert read_bytes(m.original("photo.jpg")) == photo

    assert "not an image" in m.daemon.text()
    m.stop()
    r = m.store.iv("--json", "audit")
    assert r.rc == 0, str(r)
    refused = [a for a in r.json() if a["action"] == "import" and a["result"] == "refused"]
    assert len(refused) >= 3, str(r)


def test_rsync_style_temp_then_rename(desktop_mount, image_set, other_jpeg, tmp_path):
    m = desktop_mount
    first = image_set["photo.jpg"].read_bytes()
    put(m, "photo.jpg", first)
    os.setxattr(m.original("photo.jpg"), "user.xdg.tags", b"holiday")
    pid = xget(m.original("photo.jpg"), "user.imgvault.id")
    read_bytes(m.original("photo.jpg"))            # in the kernel's caches

    # rsync itself: writes .photo.jpg.XXXXXX, then renames it over.
    src = tmp_path / "src"
    src.mkdir()
    (src / "photo.jpg").write_bytes(other_jpeg.read_bytes())
    r = subprocess.run(["rsync", "--checksum", str(src / "photo.jpg"),
                        str(m.view("original")) + "/"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    second = other_jpeg.read_bytes()
    assert read_bytes(m.original("photo.jpg")) == second
    assert read_bytes(m.pristine("photo.jpg")) == first
    assert xget(m.original("photo.jpg"), "user.imgvault.id") == pid
    assert xget(m.original("photo.jpg"), "user.xdg.tags") == "holiday"
    for v in VIEWS:
        assert listing(m.view(v)) == ["photo.jpg"], v
    assert image_info(m.thumb("photo.jpg")) == ("JPEG", 128, 256)

    # By hand, reading straight after the rename, many times over.
    third = image_set["small.jpg"].read_bytes()
    for i in range(12):
        data = (second, third)[i % 2]
        tmp = m.original(f".photo.jpg.{i:06d}")
        write_file(tmp, data)
        os.rename(tmp, m.original("photo.jpg"))
        assert read_bytes(m.original("photo.jpg")) == data, f"round {i}"
        assert os.stat(m.original("photo.jpg")).st_size == len(data), f"round {i}"
        assert xget(m.original("photo.jpg"), "user.imgvault.id") == pid, f"round {i}"
    assert read_bytes(m.pristine("photo.jpg")) == first
    assert listing(m.view("original")) == ["photo.jpg"]


def test_editor_style_save(desktop_mount, image_set, other_jpeg):
    """Write a temporary, fsync it, rename it over the original (vim,
    GIMP, LibreOffice and most editors save this way)."""
    m = desktop_mount
    first, second = image_set["photo.jpg"].read_bytes(), other_jpeg.read_bytes()
    put(m, "edit.jpg", first)
    pid = xget(m.original("edit.jpg"), "user.imgvault.id")
    os.setxattr(m.original("edit.jpg"), "user.xdg.comment", "the beach".encode())

    tmp = m.original("edit.jpg.sb-1234-tmp")
    write_file(tmp, second, flags=os.O_WRONLY | os.O_CREAT | os.O_EXCL, fsync=True)
    assert read_bytes(tmp) == second                      # committed at fsync
    os.rename(tmp, m.original("edit.jpg"))
    assert not os.path.exists(tmp)
    assert read_bytes(m.original("edit.jpg")) == second
    assert read_bytes(m.pristine("edit.jpg")) == first
    assert xget(m.original("edit.jpg"), "user.imgvault.id") == pid
    assert xget(m.original("edit.jpg"), "user.xdg.comment") == "the beach"
    assert xget(m.original("edit.jpg"), "user.imgvault.sha256") == sha256(second)
    assert listing(m.view("original")) == ["edit.jpg"]
    assert listing(m.view("pristine")) == ["edit.jpg"]

    # A backup copy first (vim's "edit.jpg~"): rename away, write anew, unlink.
    os.rename(m.original("edit.jpg"), m.original("edit.jpg~"))
    write_file(m.original("edit.jpg"), first)
    os.unlink(m.original("edit.jpg~"))
    assert listing(m.view("original")) == ["edit.jpg"]
    assert read_bytes(m.original("edit.jpg")) == first
    assert xget(m.original("edit.jpg"), "user.imgvault.id") != pid    # a new image


def test_rename_over_an_image_keeps_its_id(desktop_mount, image_set):
    m = desktop_mount
    a, b = image_set["photo.jpg"].read_bytes(), image_set["gradient.png"].read_bytes()
    put(m, "a.jpg", a)
    put(m, "b.png", b)
    id_a = xget(m.original("a.jpg"), "user.imgvault.id")
    id_b = xget(m.original("b.png"), "user.imgvault.id")
    assert id_a != id_b
    os.rename(m.original("b.png"), m.original("a.jpg"))
    assert listing(m.view("original")) == ["a.jpg"]
    assert xget(m.original("a.jpg"), "user.imgvault.id") == id_a
    assert read_bytes(m.original("a.jpg")) == b
    assert read_bytes(m.pristine("a.jpg")) == a
    assert image_info(m.thumb("a.jpg")) == ("PNG", 120, 90)

    # RENAME_NOREPLACE (mv --no-clobber uses it): EEXIST, nothing changes.
    put(m, "c.gif", image_set["icon.gif"].read_bytes())
    r = subprocess.run(["mv", "--no-clobber", "-v", str(m.original("c.gif")),
                        str(m.original("a.jpg"))], stdout=subprocess.PIPE, timeout=30)
    assert listing(m.view("original")) == ["a.jpg", "c.gif"], r.stdout
    assert read_bytes(m.original("a.jpg")) == b


def test_mv_between_albums(desktop_mount, image_set):
    m = desktop_mount
    data = image_set["photo.jpg"].read_bytes()
    put(m, "photo.jpg", data)
    pid = xget(m.original("photo.jpg"), "user.imgvault.id")
    os.mkdir(m.album("trips"))
    r = subprocess.run(["mv", str(m.original("photo.jpg")), str(m.view("original", "trips"))],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert r.returncode == 0, r.stdout.decode()
    for v in VIEWS:
        assert listing(m.view(v)) == [], v
        assert listing(m.view(v, "trips")) == ["photo.jpg"], v
    assert read_bytes(m.original("photo.jpg", "trips")) == data
    assert read_bytes(m.pristine("photo.jpg", "trips")) == data
    assert xget(m.original("photo.jpg", "trips"), "user.imgvault.id") == pid
    assert image_info(m.thumb("photo.jpg", "trips"))[0] == "JPEG"

    # ... and renamed on the way back.
    os.rename(m.original("photo.jpg", "trips"), m.original("back.jpg"))
    assert listing(m.view("original")) == ["back.jpg"]
    assert listing(m.view("original", "trips")) == []
    assert read_bytes(m.original("back.jpg")) == data

    # Only original/ moves images: thumb/ and pristine/ refuse.
    with pytest.raises(OSError) as ei:
        os.rename(m.thumb("back.jpg"), m.thumb("other.jpg"))
    assert ei.value.errno == errno.EACCES
    with pytest.raises(OSError) as ei:
        os.rename(m.original("back.jpg"), m.view("pristine", "trips") / "back.jpg")
    assert ei.value.errno == errno.EACCES
    assert listing(m.view("original")) == ["back.jpg"]


def test_albums_mkdir_rmdir_rename(desktop_mount, image_set):
    m = desktop_mount
    os.mkdir(m.album("trips"))
    with pytest.raises(FileExistsError):
        os.mkdir(m.album("trips"))
    os.rename(m.album("trips"), m.album("journeys 2024"))
    assert listing(m.root) == ["default", "journeys 2024"]
    assert listing(m.album("journeys 2024")) == sorted(VIEWS)
    with pytest.raises(FileNotFoundError):
        os.stat(m.album("trips"))

    put(m, "x.gif", image_set["icon.gif"].read_bytes(), album="journeys 2024")
    with pytest.raises(OSError) as ei:
        os.rmdir(m.album("journeys 2024"))
    assert ei.value.errno == errno.ENOTEMPTY
    # Renaming over an album that holds images: ENOTEMPTY, as rename(2) says.
    os.mkdir(m.album("other"))
    with pytest.raises(OSError) as ei:
        os.rename(m.album("other"), m.album("journeys 2024"))
    assert ei.value.errno in (errno.ENOTEMPTY, errno.EEXIST)
    assert read_bytes(m.original("x.gif", "journeys 2024")) == image_set["icon.gif"].read_bytes()

    os.unlink(m.original("x.gif", "journeys 2024"))
    os.rmdir(m.album("journeys 2024"))
    os.rmdir(m.album("other"))
    assert listing(m.root) == ["default"]
    with pytest.raises(FileNotFoundError):
        os.rmdir(m.album("nope"))
    # The views cannot go, nor can anything be made beside them.
    with pytest.raises(OSError) as ei:
        os.rmdir(m.view("thumb"))
    assert ei.value.errno == errno.EPERM
    assert listing(m.album()) == sorted(VIEWS)

    # An album survives a remount.
    os.mkdir(m.album("kept"))
    m.restart()
    assert listing(m.root) == ["default", "kept"]


def test_unlink(desktop_mount, image_set, other_jpeg):
    m = desktop_mount
    put(m, "a.jpg", image_set["photo.jpg"].read_bytes())
    put(m, "a.jpg", other_jpeg.read_bytes())          # two versions
    put(m, "b.gif", image_set["icon.gif"].read_bytes())
    image_info(m.thumb("a.jpg"))
    for v in ("thumb", "pristine"):
        with pytest.raises(OSError) as ei:
            os.unlink(m.view(v) / "a.jpg")
        assert ei.value.errno == errno.EACCES, v
    os.unlink(m.original("a.jpg"))
    for v in VIEWS:
        assert listing(m.view(v)) == ["b.gif"], v
        with pytest.raises(FileNotFoundError):
            os.stat(m.view(v) / "a.jpg")
    with pytest.raises(FileNotFoundError):
        os.unlink(m.original("a.jpg"))
    # The name is free again: a new image, with a new pristine.
    put(m, "a.jpg", other_jpeg.read_bytes())
    assert read_bytes(m.pristine("a.jpg")) == other_jpeg.read_bytes()
    # The blobs went with it: fsck finds nothing to remove.
    m.stop()
    r = m.store.iv("fsck")
    assert r.rc == 0, str(r)
    assert "damaged" not in r.out, str(r)


def test_links_nodes_and_chown_are_refused(desktop_mount, image_set):
    m = desktop_mount
    put(m, "a.jpg", image_set["photo.jpg"].read_bytes())
    cases = {
        "hard link": lambda: os.link(m.original("a.jpg"), m.original("b.jpg")),
        "hard link into another view": lambda: os.link(m.original("a.jpg"),
                                                       m.pristine("c.jpg")),
        "symlink": lambda: os.symlink("a.jpg", m.original("l.jpg")),
        "symlink in an album": lambda: os.symlink("original", m.album() / "l"),
        "fifo": lambda: os.mkfifo(m.original("fifo")),
        "device node": lambda: os.mknod(m.original("null"), 0o600 | stat.S_IFCHR,
                                        os.makedev(1, 3)),
        "chown": lambda: os.chown(m.original("a.jpg"), 1, -1),
        "chgrp": lambda: os.chown(m.original("a.jpg"), -1, 1),
        "chown of an album": lambda: os.chown(m.album(), 1, 1),
    }
    for what, fn in cases.items():
        with pytest.raises(OSError) as ei:
            fn()
        assert ei.value.errno == errno.EPERM, what
    assert listing(m.view("original")) == ["a.jpg"]
    st = os.stat(m.original("a.jpg"))
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())

    # chmod is accepted and changes nothing.
    os.chmod(m.original("a.jpg"), 0o666)
    os.chmod(m.view("thumb"), 0o777)
    time.sleep(1.1)
    assert stat.S_IMODE(os.stat(m.original("a.jpg")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(m.view("thumb")).st_mode) == 0o700


def test_extended_attributes(desktop_mount, image_set):
    m = desktop_mount
    p = m.original("photo.jpg")
    data = image_set["photo.jpg"].read_bytes()
    put(m, "photo.jpg", data)
    assert xget(p, "user.imgvault.mime") == "image/jpeg"
    assert (xget(p, "user.imgvault.width"), xget(p, "user.imgvault.height")) == ("640", "480")
    assert xget(p, "user.imgvault.sha256") == sha256(data)
    pid = xget(p, "user.imgvault.id")
    assert len(pid) == 32 and int(pid, 16) >= 0
    with pytest.raises(OSError) as ei:
        os.getxattr(p, "user.xdg.tags")
    assert ei.value.errno == errno.ENODATA

    # setfattr/getfattr, the way people and file managers use them.
    r = subprocess.run(["setfattr", "-n", "user.xdg.tags", "-v", "beach,2024,Ålesund", str(p)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert r.returncode == 0, r.stdout.decode()
    os.setxattr(p, "user.xdg.comment", "sunset\nover the fjord".encode())
    assert xget(p, "user.xdg.tags") == "beach,2024,Ålesund"
    assert xget(p, "user.xdg.comment") == "sunset\nover the fjord"
    names = set(os.listxattr(p))
    assert {"user.xdg.tags", "user.xdg.comment", "user.imgvault.id", "user.imgvault.sha256",
            "user.imgvault.mime", "user.imgvault.width", "user.imgvault.height"} <= names
    r = subprocess.run(["getfattr", "-d", "--absolute-names", str(p)], stdout=subprocess.PIPE,
                       timeout=30)
    assert r.returncode == 0 and b"user.xdg.comment=" in r.stdout, r.stdout
    # Readable in the other views, settable only in original/.
    assert xget(m.pristine("photo.jpg"), "user.xdg.tags") == "beach,2024,Ålesund"
    assert xget(m.thumb("photo.jpg"), "user.imgvault.id") == pid
    for v in ("thumb", "pristine"):
        with pytest.raises(OSError) as ei:
            os.setxattr(m.view(v) / "photo.jpg", "user.xdg.tags", b"x")
        assert ei.value.errno == errno.EACCES, v
    # Read-only ones: EPERM, whether set or removed.
    for name in ("user.imgvault.id", "user.imgvault.sha256", "user.imgvault.mime",
                 "user.imgvault.width", "user.imgvault.height"):
        with pytest.raises(OSError) as ei:
            os.setxattr(p, name, b"0")
        assert ei.value.errno == errno.EPERM, name
        with pytest.raises(OSError) as ei:
            os.removexattr(p, name)
        assert ei.value.errno == errno.EPERM, name
    assert xget(p, "user.imgvault.id") == pid
    # They survive a remount (sealed in the catalog) ...
    m.restart()
    assert xget(p, "user.xdg.comment") == "sunset\nover the fjord"
    # ... and go when removed.
    os.removexattr(p, "user.xdg.tags")
    with pytest.raises(OSError) as ei:
        os.getxattr(p, "user.xdg.tags")
    assert ei.value.errno == errno.ENODATA
    assert "user.xdg.tags" not in os.listxattr(p)
    # A new version keeps tags and comment.
    os.setxattr(p, "user.xdg.tags", b"kept")
    put(m, "photo.jpg", image_set["small.jpg"].read_bytes())
    assert xget(p, "user.xdg.tags") == "kept"
    assert xget(p, "user.imgvault.width") == "64"


def test_expiry_deletes_the_image(desktop_mount, image_set):
    m = desktop_mount
    put(m, "gone.jpg", image_set["photo.jpg"].read_bytes())
    put(m, "stays.gif", image_set["icon.gif"].read_bytes())
    put(m, "later.png", image_set["gradient.png"].read_bytes())
    os.setxattr(m.original("later.png"), "user.imgvault.expires", b"2099-01-01T00:00:00Z")
    assert "2099" in xget(m.original("later.png"), "user.imgvault.expires")
    with pytest.raises(OSError) as ei:
        os.setxattr(m.original("stays.gif"), "user.imgvault.expires", b"next tuesday")
    assert ei.value.errno == errno.EINVAL
    when = int(time.time()) + 2
    os.setxattr(m.original("gone.jpg"), "user.imgvault.expires", str(when).encode())
    assert read_bytes(m.original("gone.jpg")) == image_set["photo.jpg"].read_bytes()
    wait_for(lambda: "gone.jpg" not in os.listdir(m.view("original")), 15,
             "the expired image to disappear")
    assert time.time() >= when
    for v in VIEWS:
        assert "gone.jpg" not in os.listdir(m.view(v)), v
    time.sleep(1.1)                    # past the kernel's entry cache
    with pytest.raises(FileNotFoundError):
        os.stat(m.original("gone.jpg"))
    assert listing(m.view("original")) == ["later.png", "stays.gif"]
    assert "expired images deleted" in m.daemon.text()


def test_statfs_reports_the_quota_and_edquot(desktop_mount, image_set):
    m = desktop_mount
    photo = image_set["photo.jpg"].read_bytes()           # ~140 KB
    big = image_set["big.png"].read_bytes()               # > 200 KB
    # Quotas count the bytes stored: content padded (FORMAT.md §2.3).
    quota = padded(len(photo)) + padded(len(big)) + 10000
    m.stop()
    r = m.store.iv("user", "set", "root", f"quota={quota}")
    assert r.rc == 0, str(r)
    m.start()
    st = os.statvfs(m.root)
    assert st.f_blocks * st.f_frsize == quota - quota % st.f_frsize
    assert st.f_bavail * st.f_frsize == quota - quota % st.f_frsize
    assert st.f_namemax == 255

    put(m, "one.jpg", photo)
    st = os.statvfs(m.root)
    assert (quota - padded(len(photo))) - st.f_frsize < st.f_bavail * st.f_frsize <= \
        quota - padded(len(photo))
    put(m, "two.png", big)
    assert close_error(m.original("three.png"), big) == errno.EDQUOT
    assert os.stat(m.original("three.png")).st_size == 0           # a placeholder
    # An overwrite over quota: EDQUOT, the old version stays.
    assert close_error(m.original("one.jpg"), big) == errno.EDQUOT
    assert read_bytes(m.original("one.jpg")) == photo
    # Room again once something goes.
    os.unlink(m.original("two.png"))
    put(m, "three.png", big)
    assert read_bytes(m.original("three.png")) == big
    assert "over quota" in m.daemon.text()


def test_cli_while_mounted(desktop_mount, image_set):
    """While the daemon owns the store, the command line's ls/cat go through
    it and see what the mount shows; commands that need the store itself
    are refused with a message naming imgvaultd."""
    m = desktop_mount
    put(m, "photo.jpg", image_set["photo.jpg"].read_bytes())
    r = m.store.iv("ls", "default")
    assert r.rc == 0 and "photo.jpg" in r.out, str(r)
    r = m.store.iv("cat", "default/photo.jpg")
    assert r.rc == 0 and r.stdout == image_set["photo.jpg"].read_bytes(), str(r)
    for args in (["fsck"], ["audit"], ["config"]):
        r = m.store.iv(*args)
        assert r.rc == EXIT_BUSY, str(r)
        assert "imgvaultd" in r.err and f"pid {m.daemon.pid}" in r.err, str(r)
    m.stop()
    r = m.store.iv("fsck")
    assert r.rc == 0, str(r)


def test_sigterm_commits_open_files_and_unmounts(desktop_mount, image_set):
    """SIGTERM with a writer still open: what it wrote is committed, the
    mount goes away and the daemon exits 0."""
    m = desktop_mount
    data = image_set["gradient.png"].read_bytes()
    fd = os.open(m.original("pending.png"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, data)
    m.daemon.proc.send_signal(signal.SIGTERM)
    rc = m.daemon.proc.wait(timeout=30)
    assert rc == 0, m.daemon.text()
    assert not mountinfo_has(m.root), "still mounted after SIGTERM"
    try:
        os.close(fd)                    # the connection is gone
    except OSError:
        pass
    m.daemon.stop()                     # collects the exit status
    m.start()
    assert read_bytes(m.original("pending.png")) == data
    assert "unmounting" in m.daemon.text()
