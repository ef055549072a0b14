"""
The preview page in a real browser: headless Chromium (Debian's chromium)
opens /v/TOKEN through imgvault-gateway; the screenshot shows the image, the
page's Content-Security-Policy allows nothing but images from the gateway,
and a hostile image name stays text.
"""
import shutil
import subprocess
import tempfile
import urllib.request

import pytest
from PIL import Image

from conftest import convert
from gatewaylib import gateway, gw_image_master, gw_images, gw_port, gw_store  # noqa: F401

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed")

HOSTILE = '<script>alert(1)</script>.jpg'


@pytest.fixture
def served(gw_store, gateway, tmp_path):
    """gatewaylib's store and gateway, with a red picture and one with a
    hostile name in the album "web"."""
    red = tmp_path / "red.jpg"
    convert("-size", "640x480", "xc:#e01010", "-quality", "92", str(red))
    hostile = tmp_path / HOSTILE.replace("/", "_")
    shutil.copy(red, hostile)
    assert gw_store.iv("import", "--album", "web", str(red), str(hostile)).rc == 0
    gateway(gw_store)
    return gw_store, gw_store.port, tmp_path


def share(store, name, *args):
    link = store.share(f"web/{name}", *args)
    return {"url": link.url, "page": link.page, "token_id": link.token_id}


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
