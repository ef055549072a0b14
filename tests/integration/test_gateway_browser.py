"""
The preview page in a real browser: headless Chromium (Debian's chromium)
opens /v/TOKEN through imgvault-gateway; the screenshot shows the image, the
page's Content-Security-Policy allows nothing but images from the gateway,
and a hostile image name stays text.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
from PIL import Image

from conftest import BUILD, clean_env, convert, make_store, run_cli

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed")

HOSTILE = '<script>alert(1)</script>.jpg'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(imgvault, tmp_path, passfile):
    """A desktop store with a red and a hostile-named image, mounted, and
    the gateway in front of it."""
    port = free_port()
    store = make_store(imgvault, tmp_path / "store", passfile)
    red = tmp_path / "red.jpg"
    convert("-size", "640x480", "xc:#e01010", "-quality", "92", str(red))
    shutil.copy(red, tmp_path / HOSTILE.replace("/", "_"))
    assert store.iv("config", f"share.base-url=http://127.0.0.1:{port}").rc == 0
    assert store.iv("import", "--album", "web", str(red)).rc == 0
    assert store.iv("import", "--album", "web", str(tmp_path / HOSTILE.replace("/", "_"))).rc == 0
    sock_dir = tempfile.mkdtemp(prefix="ivbr-")   # a short path for the socket
    control = os.path.join(sock_dir, "ctl.sock")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    dlog = open(tmp_path / "imgvaultd.log", "wb")
    daemon = subprocess.Popen([str(BUILD / "imgvaultd"), "--passphrase-file", str(passfile),
                               "--control", control, "-f", str(store.path), str(mnt)],
                              stdin=subprocess.DEVNULL, stdout=dlog, stderr=dlog, env=clean_env())
    for _ in range(100):
        if os.path.ismount(mnt):
            break
        time.sleep(0.1)
    assert os.path.ismount(mnt), (tmp_path / "imgvaultd.log").read_text()
    glog = open(tmp_path / "gateway.log", "wb")
    gateway = subprocess.Popen([str(BUILD / "imgvault-gateway"), "--listen", f"127.0.0.1:{port}",
                                "--control", control, "--keys",
                                os.path.join(sock_dir, "signing-keys.pub")],
                               stdout=glog, stderr=glog, env=clean_env())
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield store, port, tmp_path
    gateway.send_signal(signal.SIGTERM)
    gateway.wait(timeout=10)
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=20)
    except subprocess.TimeoutExpired:
        daemon.kill()
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
    shutil.rmtree(sock_dir, ignore_errors=True)


def share(store, name, *args):
    r = store.iv("--json", "share", f"web/{name}", *args)
    assert r.rc == 0, str(r)
    return r.json()[-1]


def chromium(tmp_path, *args, timeout=90):
    profile = tempfile.mkdtemp(prefix="ivchrome-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, cwd=tmp_path)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def red_fraction(png):
    im = Image.open(png).convert("RGB")
    px = im.getdata()
    red = sum(1 for r, g, b in px if r > 180 and g < 80 and b < 80)
    return red / (im.width * im.height)


def test_preview_page_shows_the_image(served):
    store, port, tmp = served
    link = share(store, "red.jpg")
    shot = tmp / "page.png"
    r = chromium(tmp, f"--screenshot={shot}", "--window-size=1000,900", link["page"])
    assert shot.exists(), r.stderr.decode(errors="replace")[-2000:]
    # The 640x480 red picture, drawn 800 wide, fills a good part of the window.
    assert red_fraction(shot) > 0.25, "the screenshot does not show the image"


def test_page_without_the_image_link_shows_nothing_red(served):
    """The check above can fail: a page whose image is refused shows no red."""
    store, port, tmp = served
    link = share(store, "red.jpg")
    assert store.iv("revoke", link["token_id"]).rc == 0
    shot = tmp / "revoked.png"
    chromium(tmp, f"--screenshot={shot}", "--window-size=1000,900", link["page"])
    assert shot.exists()
    assert red_fraction(shot) < 0.01


def test_csp_allows_only_images_from_the_gateway(served):
    store, port, tmp = served
    link = share(store, "red.jpg")
    with urllib.request.urlopen(link["page"], timeout=10) as resp:
        csp = resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["img-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "script-src" not in directives and "style-src" not in directives


def test_hostile_name_stays_text(served):
    store, port, tmp = served
    name = HOSTILE.replace("/", "_")
    link = share(store, name)
    r = chromium(tmp, "--dump-dom", link["page"])
    dom = r.stdout.decode(errors="replace")
    assert "&lt;script&gt;alert(1)&lt;_script&gt;.jpg" in dom, dom[:2000]
    assert "<script>" not in dom


def test_open_graph_tags_are_absolute_and_do_not_use_up_a_link(served):
    store, port, tmp = served
    link = share(store, "red.jpg", "--uses", "1", "--download")
    r = chromium(tmp, "--dump-dom", link["page"])
    dom = r.stdout.decode(errors="replace")
    base = f"http://127.0.0.1:{port}"
    token = link["url"].rsplit("/", 1)[1]
    assert f'property="og:image" content="{base}/p/{token}"' in dom
    assert f'property="og:url" content="{base}/v/{token}"' in dom
    assert ">Download</a>" in dom
    # The browser loaded the page and its preview image: the one use is left.
    with urllib.request.urlopen(link["url"], timeout=10) as resp:
        assert resp.status == 200
        assert resp.read()[:2] == b"\xff\xd8"


def test_inline_link_page_has_no_download_button(served):
    store, port, tmp = served
    link = share(store, "red.jpg")
    with urllib.request.urlopen(link["page"], timeout=10) as resp:
        page = resp.read().decode()
    assert "Download" not in page
    assert f'src="/s/{link["url"].rsplit("/", 1)[1]}"' in page
