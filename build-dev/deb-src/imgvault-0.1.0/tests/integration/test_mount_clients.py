"""Ordinary programs on the mount: cp -r, rsync -a, mv, tar -x, find, ls -lR,
PIL, and a real nginx serving a web-read vault as its readers-group user."""
import hashlib
import os
import signal
import socket
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

pytest.register_assert_rewrite("mountlib")   # before the import below

from conftest import CONVERT, convert, uid_of
from mountlib import VIEWS, as_user, file_sha, image_info, read_bytes, wait_for, write_file

pytest_plugins = ["mountlib"]      # its fixtures


def tree_digest(root):
    """{relative path: SHA-256} of every file under @root."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = file_sha(p)
    return out


def run(*cmd, timeout=120, **kw):
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, **kw)
    return p.returncode, p.stdout.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """~15 photos of the kinds people have: JPEG of several sizes (one
    progressive, one with EXIF orientation), PNG with and without alpha, GIF
    (one animated), WebP."""
    assert os.access(CONVERT, os.X_OK), f"{CONVERT} is needed"
    d = tmp_path_factory.mktemp("corpus")
    for i, (w, h) in enumerate([(640, 480), (480, 640), (1024, 768), (300, 200), (200, 300),
                                (800, 600)]):
        convert("-seed", 40 + i, "-size", f"{w}x{h}", "plasma:", "-quality", 88,
                d / f"IMG_{1000 + i}.jpg")
    convert("-seed", 50, "-size", "700x500", "plasma:", "-interlace", "JPEG",
            d / "progressive.jpg")
    convert("-seed", 51, "-size", "400x300", "plasma:", "-orient", "RightTop",
            d / "rotated.jpg")
    convert("-seed", 52, "-size", "500x400", "gradient:navy-gold", d / "gradient.png")
    convert("-size", "320x240", "xc:none", "-fill", "#ff000080", "-draw",
            "circle 160,120 160,20", d / "alpha.png")
    convert("-seed", 53, "-size", "256x256", "plasma:", "+noise", "Random", d / "noisy.png")
    convert("-size", "64x64", "xc:green", d / "icon.gif")
    convert("-delay", 20, "-size", "48x48", "xc:red", "xc:blue", "xc:yellow", "-loop", 0,
            d / "anim.gif")
    convert("-seed", 54, "-size", "600x400", "plasma:", "-quality", 80, d / "photo.webp")
    convert("-seed", 55, "-size", "333x222", "plasma:", "-quality", 95,
            d / "name with spaces ünïcode.jpg")
    files = sorted(p for p in d.iterdir())
    assert len(files) == 15
    return d


@pytest.fixture
def photos(corpus, tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for p in corpus.iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    return d


def test_cp_r_in_and_out(desktop_mount, photos, tmp_path):
    m = desktop_mount
    rc, out = run("cp", "-r", f"{photos}/.", m.view("original"))
    assert rc == 0, out
    want = tree_digest(photos)
    assert tree_digest(m.view("original")) == want
    assert tree_digest(m.view("pristine")) == want
    assert sorted(os.listdir(m.view("thumb"))) == sorted(want)
    # out again, the whole album with its three views
    dest = tmp_path / "back"
    rc, out = run("cp", "-r", m.album(), dest)
    assert rc == 0, out
    assert tree_digest(dest / "original") == want
    assert tree_digest(dest / "pristine") == want
    assert sorted(os.listdir(dest / "thumb")) == sorted(want)
    # cp -p keeps times: the chown it does to the owner it already has is accepted
    rc, out = run("cp", "-p", photos / "IMG_1000.jpg", m.original("kept-times.jpg"))
    assert rc == 0, out
    assert int(os.stat(m.original("kept-times.jpg")).st_mtime) == \
        int((photos / "IMG_1000.jpg").stat().st_mtime)


def test_rsync_a_in_and_out(desktop_mount, photos, tmp_path, corpus):
    m = desktop_mount
    old = os.stat(photos / "IMG_1000.jpg").st_mtime - 86400
    for p in photos.iterdir():
        os.utime(p, (old, old))
    rc, out = run("rsync", "-a", f"{photos}/", f"{m.view('original')}/")
    assert rc == 0, out
    want = tree_digest(photos)
    assert tree_digest(m.view("original")) == want
    assert tree_digest(m.view("pristine")) == want
    for p in photos.iterdir():
        assert int(os.stat(m.original(p.name)).st_mtime) == int(old), p.name
    # No leftover temporaries (.NAME.XXXXXX) in any view.
    for v in VIEWS:
        assert sorted(os.listdir(m.view(v))) == sorted(want), v

    # A second run has nothing to do.
    rc, out = run("rsync", "-a", "--itemize-changes", f"{photos}/", f"{m.view('original')}/")
    assert rc == 0, out
    assert [line for line in out.splitlines() if line.startswith(">f")] == [], out

    # Changed sources become new versions; pristine keeps the first.
    convert("-seed", 99, "-size", "640x480", "plasma:", "-quality", 70, photos / "IMG_1000.jpg")
    (photos / "gradient.png").write_bytes((corpus / "noisy.png").read_bytes())
    rc, out = run("rsync", "-a", "--itemize-changes", f"{photos}/", f"{m.view('original')}/")
    assert rc == 0, out
    assert sorted(line.split()[-1] for line in out.splitlines() if line.startswith(">f")) == \
        ["IMG_1000.jpg", "gradient.png"], out
    assert tree_digest(m.view("original")) == tree_digest(photos)
    assert file_sha(m.pristine("IMG_1000.jpg")) == file_sha(corpus / "IMG_1000.jpg")
    assert file_sha(m.pristine("gradient.png")) == file_sha(corpus / "gradient.png")

    # And out: every view, byte for byte.  rsync copies as many bytes as
    # stat showed, and a thumbnail not made yet shows 0: read them first.
    for name in os.listdir(m.view("thumb")):
        read_bytes(m.thumb(name))
    dest = tmp_path / "out"
    rc, out = run("rsync", "-a", f"{m.album()}/", f"{dest}/")
    assert rc == 0, out
    assert tree_digest(dest / "original") == tree_digest(photos)
    assert tree_digest(dest / "pristine") == tree_digest(corpus)
    for name in os.listdir(dest / "thumb"):
        assert read_bytes(dest / "thumb" / name) == read_bytes(m.thumb(name)), name


def test_mv_between_albums(desktop_mount, photos):
    m = desktop_mount
    rc, out = run("cp", "-r", f"{photos}/.", m.view("original"))
    assert rc == 0, out
    os.mkdir(m.album("best of"))
    jpgs = sorted(p.name for p in photos.glob("*.jpg"))
    rc, out = run("mv", *[m.original(n) for n in jpgs], m.view("original", "best of"))
    assert rc == 0, out
    assert sorted(os.listdir(m.view("original", "best of"))) == jpgs
    assert sorted(os.listdir(m.view("pristine", "best of"))) == jpgs
    assert not set(jpgs) & set(os.listdir(m.view("original")))
    for n in jpgs:
        assert file_sha(m.original(n, "best of")) == file_sha(photos / n), n
    # mv of a whole album is a rename
    rc, out = run("mv", m.album("best of"), m.album("favourites"))
    assert rc == 0, out
    assert sorted(os.listdir(m.view("thumb", "favourites"))) == jpgs


def test_tar_x_into_original(desktop_mount, photos, tmp_path):
    m = desktop_mount
    tarball = tmp_path / "photos.tar"
    with tarfile.open(tarball, "w") as tf:
        for p in sorted(photos.iterdir()):
            tf.add(p, arcname=p.name)
    # As root tar restores owner, mode and times; all are accepted (the
    # chown to the owner it already has changes nothing).
    rc, out = run("tar", "-xf", tarball, "-C", m.view("original"))
    assert rc == 0, out
    assert tree_digest(m.view("original")) == tree_digest(photos)
    st = os.stat(m.original("IMG_1001.jpg"))
    assert int(st.st_mtime) == int((photos / "IMG_1001.jpg").stat().st_mtime)
    assert stat.S_IMODE(st.st_mode) == 0o600
    # And back out with tar -c from the mount.
    rc, out = run("tar", "-cf", tmp_path / "back.tar", "-C", m.view("original"), ".")
    assert rc == 0, out
    with tarfile.open(tmp_path / "back.tar") as tf:
        names = sorted(n[2:] for n in tf.getnames() if n != ".")
        assert names == sorted(p.name for p in photos.iterdir())
        for n in names:
            assert hashlib.sha256(tf.extractfile("./" + n).read()).hexdigest() == \
                file_sha(photos / n)


def test_find_and_ls_lR(desktop_mount, photos):
    m = desktop_mount
    rc, out = run("cp", "-r", f"{photos}/.", m.view("original"))
    assert rc == 0, out
    names = sorted(p.name for p in photos.iterdir())
    for n in names:
        read_bytes(m.thumb(n))                  # every thumbnail made
    rc, out = run("find", m.root, "-type", "f")
    assert rc == 0, out
    want = sorted(str(m.view(v) / n) for v in VIEWS for n in names)
    assert sorted(out.splitlines()) == want
    rc, out = run("find", m.root, "-type", "d")
    assert rc == 0, out
    assert sorted(out.splitlines()) == sorted([str(m.root), str(m.album())] +
                                              [str(m.view(v)) for v in VIEWS])
    rc, out = run("find", m.view("original"), "-name", "*.png", "-size", "+1k")
    assert rc == 0, out
    assert sorted(Path(line).name for line in out.splitlines()) == \
        sorted(n for n in names if n.endswith(".png"))
    rc, out = run("ls", "-lR", "--time-style=+%s", m.root)
    assert rc == 0, out
    for n in names:
        size = (photos / n).stat().st_size
        assert any(line.startswith("-rw-------") and f" {size} " in line and line.endswith(n)
                   for line in out.splitlines()), n
        assert sum(1 for line in out.splitlines()
                   if line.startswith("-r--------") and line.endswith(n)) == 2, n
    assert "cannot" not in out


def test_pil_reads_the_mount(desktop_mount, photos):
    pytest.importorskip("PIL")
    from PIL import Image
    m = desktop_mount
    rc, out = run("cp", "-r", f"{photos}/.", m.view("original"))
    assert rc == 0, out
    for p in sorted(photos.iterdir()):
        with Image.open(p) as src, Image.open(m.original(p.name)) as im:
            im.load()
            assert (im.format, im.size) == (src.format, src.size), p.name
            assert im.tobytes() == src.convert(im.mode).tobytes(), p.name
        with Image.open(m.thumb(p.name)) as th:
            th.load()
            assert max(th.size) <= 256, p.name
            if max(src.size) > 256:
                assert max(th.size) == 256, p.name
            assert th.format == {"MPO": "JPEG"}.get(src.format, src.format), p.name
    # Random access: PIL seeks around an animated GIF.
    with Image.open(m.original("anim.gif")) as im:
        assert im.n_frames == 3
        im.seek(2)
        assert im.convert("RGB").getpixel((0, 0)) == (255, 255, 0)


# ---- nginx ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nginx(system_mount, tmp_path):
    """start(root) -> base URL: nginx (master as root, workers as the web user
    in the readers group) serving @root on 127.0.0.1:<free port>."""
    if not os.access("/usr/sbin/nginx", os.X_OK):
        pytest.skip("nginx is not installed (packaging/deps.sh installs nginx-light)")
    m = system_mount
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    procs = []

    def start(root):
        port = free_port()
        conf = prefix / "nginx.conf"
        temps = "\n".join(f"    {k}_temp_path {prefix}/{k};"
                          for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf.write_text(f"""
user {m.web} {m.group};
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
{temps}
    sendfile on;
    types {{ image/jpeg jpg; image/png png; image/gif gif; image/webp webp; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
""")
        p = subprocess.Popen(["/usr/sbin/nginx", "-c", str(conf), "-p", str(prefix)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        procs.append(p)

        def up():
            if p.poll() is not None:
                pytest.fail("nginx exited: " + p.stdout.read().decode(errors="replace") +
                            (prefix / "error.log").read_text(errors="replace"))
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        wait_for(up, 20, "nginx to listen")
        return f"http://127.0.0.1:{port}"

    yield start
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGQUIT)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=20)


def curl(url, dest):
    p = subprocess.run(["curl", "-s", "-o", str(dest), "-w", "%{http_code}", url],
                       stdout=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, f"curl {url}: exit {p.returncode}"
    return int(p.stdout)


def test_nginx_serves_web_readable_files(system_mount, nginx, photos, tmp_path):
    m = system_mount
    names = ["IMG_1000.jpg", "alpha.png", "anim.gif", "photo.webp", "noisy.png"]
    for n in names:
        as_user(m.alice, write_file, m.original(n), read_bytes(photos / n))
    as_user(m.bob, write_file, m.original("bob.jpg", user=m.bob),
            read_bytes(photos / "IMG_1001.jpg"))
    thumbs = {n: as_user(m.alice, read_bytes, m.thumb(n)) for n in names}
    # nginx's workers really run as web, in the readers group
    base = nginx(m.root)
    out = tmp_path / "got"
    a = f"{base}/{m.alice}/default"
    for n in names:
        assert curl(f"{a}/original/{n}", out) == 200, n
        assert out.read_bytes() == read_bytes(photos / n), n
        assert curl(f"{a}/thumb/{n}", out) == 200, n
        assert out.read_bytes() == thumbs[n], n
        assert image_info(out.read_bytes())[1:] == image_info(thumbs[n])[1:]
        assert curl(f"{a}/pristine/{n}", out) == 403, n
    # a second round comes from the kernel's cache: the same bytes
    for n in names:
        assert curl(f"{a}/original/{n}", out) == 200 and \
            out.read_bytes() == read_bytes(photos / n), n
    assert curl(f"{a}/original/missing.jpg", out) == 404
    assert curl(f"{base}/{m.bob}/default/original/bob.jpg", out) == 403
    assert curl(f"{base}/{m.bob}/default/thumb/bob.jpg", out) == 403
    # alice overwrites an image: nginx serves the new bytes at once
    as_user(m.alice, write_file, m.original("IMG_1000.jpg"), read_bytes(photos / "IMG_1002.jpg"))
    assert curl(f"{a}/original/IMG_1000.jpg", out) == 200
    assert out.read_bytes() == read_bytes(photos / "IMG_1002.jpg")
    # the workers' uid is web's
    master = (tmp_path / "nginx" / "nginx.pid").read_text().strip()
    rc, ps = run("ps", "-o", "uid=", "--ppid", master)
    assert rc == 0 and set(ps.split()) == {str(uid_of(m.web))}, ps
