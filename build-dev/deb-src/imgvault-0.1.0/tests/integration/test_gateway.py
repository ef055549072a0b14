"""
imgvault-gateway end to end (DESIGN §8): a real imgvaultd on a real store, the
gateway on a free port, links minted with the CLI and fetched with the real
curl (and raw sockets where curl is too polite).

Every status code of §8 is reached by a real request: 200/206/304/416 for a
good link, 404 for forged, malformed and foreign tokens, 410 for expired,
revoked, retired and used-up links, 403 for not-yet-valid links and the wrong
partner network, 429 over the rate limit and when banned, 503 without the
daemon.  Then the abuse limits (garbage requests, slow headers, too many
connections), the logs (no token, ever) and the audit trail, and system mode
with the gateway as its own unprivileged user.
"""
import concurrent.futures
import fcntl
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import time

import pytest
from PIL import Image

from conftest import add_user, is_root, run_cli, sha256  # noqa: F401
from gatewaylib import (  # noqa: F401  (fixtures)
    Link, audit_text, b64url_decode, b64url_encode, curl, exif_gps, free_port, gateway,
    gw_image_master, gw_images, gw_port, gw_store, kill_daemon, kill_proc, make_gw_store, raw_request,
    short_dir, start_daemon, stop_daemon)

SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def assert_security_headers(r):
    for k, v in SECURITY.items():
        assert r.h(k) == v, f"{k}: {r!r}"
    csp = r.h("content-security-policy")
    assert csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, repr(r)


def wait_status(url, want, timeout=4.0, **kw):
    """Polls @url until it answers @want (the gateway re-reads keys every ~1 s)."""
    end = time.monotonic() + timeout
    while True:
        r = curl(url, **kw)
        if r.status == want or time.monotonic() > end:
            return r
        time.sleep(0.2)


def image_of(data):
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


# ---- good links ----

def test_original_is_served_stripped_thumb_and_pristine_as_stored(gw_store, gateway, tmp_path):
    s = gw_store
    gateway(s)
    for name in ("photo.jpg", "pic.png"):
        src = s.images[name]
        assert "GPSLatitude" in exif_gps(src), "the test image lost its GPS tags"
        orig = Image.open(src)
        link = s.share(f"default/{name}")
        r = curl(link.url)
        assert r.status == 200, repr(r)
        assert r.h("content-length") == str(len(r.body))
        assert r.h("content-type") == ("image/jpeg" if name.endswith("jpg") else "image/png")
        im = image_of(r.body)
        assert im.format == orig.format and im.size == orig.size
        got = tmp_path / f"got-{name}"
        got.write_bytes(r.body)
        assert exif_gps(got) == "", f"{name}: the original kept its GPS: {exif_gps(got)}"
        assert r.body != src.read_bytes(), "the original was not stripped"

        pristine = s.share(f"default/{name}", "--variant", "pristine")
        r = curl(pristine.url)
        assert r.status == 200, repr(r)
        assert sha256(r.body) == sha256(src.read_bytes()), "pristine is not the file as imported"

        thumb = s.share(f"default/{name}", "--variant", "thumb")
        r = curl(thumb.url)
        assert r.status == 200, repr(r)
        t = image_of(r.body)
        assert max(t.size) <= 256 and t.size != orig.size, t.size
        assert r.h("content-type").startswith("image/")


def test_preview_page_and_its_thumbnail(gw_store, gateway):
    s = gw_store
    gateway(s)
    link = s.share("default/photo.jpg")
    r = curl(link.page)
    assert r.status == 200 and r.h("content-type").startswith("text/html"), repr(r)
    assert b"photo.jpg" in r.body and b"<script" not in r.body.lower()
    assert_security_headers(r)
    assert "img-src 'self'" in r.h("content-security-policy")
    r = curl(link.at("p"))
    assert r.status == 200, repr(r)
    assert max(image_of(r.body).size) <= 256


def test_ranges_head_and_etag(gw_store, gateway):
    s = gw_store
    gateway(s)
    link = s.share("default/photo.jpg")
    full = curl(link.url)
    assert full.status == 200, repr(full)
    size = len(full.body)
    assert full.h("accept-ranges") == "bytes"
    etag = full.h("etag")
    assert etag and etag.startswith('"') and etag.endswith('"'), repr(full)

    cases = {"bytes=0-99": (0, 100), "bytes=1000-1999": (1000, 1000),
             "bytes=-100": (size - 100, 100), f"bytes={size - 10}-": (size - 10, 10),
             f"bytes=100-{size * 4}": (100, size - 100)}
    for spec, (off, n) in cases.items():
        r = curl(link.url, "-H", f"Range: {spec}")
        assert r.status == 206, f"{spec}: {r!r}"
        assert r.body == full.body[off:off + n], spec
        assert r.h("content-range") == f"bytes {off}-{off + n - 1}/{size}", f"{spec}: {r!r}"
        assert r.h("content-length") == str(n)

    r = curl(link.url, "-H", "Range: bytes=999999999-")
    assert r.status == 416, repr(r)
    assert r.h("content-range") == f"bytes */{size}", repr(r)

    # a Range with a stale If-Range gets the whole file
    r = curl(link.url, "-H", "Range: bytes=0-9", "-H", 'If-Range: "stale"')
    assert r.status == 200 and r.body == full.body, repr(r)

    # HEAD: the headers of a GET, no body
    r = curl(link.url, head=True)
    assert r.status == 200 and r.h("content-length") == str(size), repr(r)
    assert r.h("etag") == etag
    raw = raw_request(f"HEAD /s/{link.token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      .encode(), s.port)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw[:200]
    assert f"Content-Length: {size}".encode() in head and body == b"", raw[:300]

    # If-None-Match
    r = curl(link.url, "-H", f"If-None-Match: {etag}")
    assert r.status == 304 and r.body == b"", repr(r)
    r = curl(link.url, "-H", 'If-None-Match: "0000"')
    assert r.status == 200 and r.body == full.body, repr(r)


def test_headers(gw_store, gateway):
    s = gw_store
    g = gateway(s, "--cors-origin", "https://app.example")
    short = s.share("default/photo.jpg", "--ttl", "60s")
    r = curl(short.url)
    assert r.status == 200, repr(r)
    m = re.fullmatch(r"private, max-age=(\d+)", r.h("cache-control") or "")
    assert m, repr(r)
    assert 0 < int(m.group(1)) <= short.expires - int(time.time()) + 1 <= 61, repr(r)
    assert r.h("content-type") == "image/jpeg"
    assert r.h("content-disposition").startswith("inline"), repr(r)
    assert "photo.jpg" in r.h("content-disposition")
    assert_security_headers(r)
    assert "sandbox" in r.h("content-security-policy")
    assert r.h("access-control-allow-origin") is None, "CORS without an Origin"

    long_ = s.share("default/photo.jpg")           # 1 h
    r = curl(long_.url)
    age = int(re.fullmatch(r"private, max-age=(\d+)", r.h("cache-control")).group(1))
    assert 0 < age <= 300, repr(r)

    dl = s.share("default/pic.png", "--download")
    r = curl(dl.url)
    assert r.status == 200 and r.h("content-type") == "image/png", repr(r)
    assert r.h("content-disposition").startswith("attachment"), repr(r)
    assert 'filename="pic.png"' in r.h("content-disposition"), repr(r)

    # CORS: only for the configured origin, and never a wildcard
    r = curl(short.url, "-H", "Origin: https://app.example")
    assert r.h("access-control-allow-origin") == "https://app.example", repr(r)
    r = curl(short.url, "-H", "Origin: https://evil.example")
    assert r.status == 200 and r.h("access-control-allow-origin") is None, repr(r)
    r = curl(short.url, "-X", "OPTIONS", "-H", "Origin: https://evil.example")
    assert r.h("access-control-allow-origin") is None, repr(r)
    r = curl(short.url, "-X", "OPTIONS", "-H", "Origin: https://app.example")
    assert r.status in (200, 204) and \
        r.h("access-control-allow-origin") == "https://app.example", repr(r)
    # refusals carry the security headers too, and are not cached
    r = curl(g.url("/s/nonsense"))
    assert r.status == 404 and r.h("cache-control") == "no-store", repr(r)
    assert_security_headers(r)
    r = curl(g.url("/s/" + short.token), "-X", "POST", "-d", "x")
    assert r.status == 405, repr(r)
    r = curl(g.url("/nowhere"))
    assert r.status == 404, repr(r)


# ---- refused links ----

def test_expired_and_not_yet_valid(gw_store, gateway):
    s = gw_store
    gateway(s)
    brief = s.share("default/photo.jpg", "--ttl", "2s")
    later = s.share("default/photo.jpg", "--not-before", "+60s")
    assert curl(brief.url).status == 200
    r = curl(later.url)
    assert r.status == 403, repr(r)
    assert curl(later.page).status == 403
    time.sleep(max(0.0, brief.expires - time.time()) + 1.2)
    r = curl(brief.url)
    assert r.status == 410, repr(r)
    assert curl(brief.page).status == 410
    assert curl(brief.at("p")).status == 410


def test_revocation(gw_store, gateway):
    s = gw_store
    gateway(s)
    assert s.iv("partner", "add", "acme").rc == 0
    one = s.share("default/small.jpg")
    orig = s.share("default/photo.jpg")
    thumb = s.share("default/photo.jpg", "--variant", "thumb")
    other = s.share("default/pic.png")
    p1 = s.share("default/pic.png", "--partner", "acme")
    p2 = s.share("default/small.jpg", "--partner", "acme")
    for link in (one, orig, thumb, other, p1, p2):
        assert curl(link.url).status == 200, link.url

    r = s.iv("revoke", one.token_id)
    assert r.rc == 0, str(r)
    assert curl(one.url).status == 410
    assert curl(one.page).status == 410

    r = s.iv("revoke", "--image", "default/photo.jpg")
    assert r.rc == 0 and "2 links" in r.out, str(r)
    assert curl(orig.url).status == 410
    assert curl(thumb.url).status == 410
    assert curl(other.url).status == 200

    r = s.iv("revoke", "--partner", "acme")
    assert r.rc == 0, str(r)
    assert curl(p1.url).status == 410
    assert curl(p2.url).status == 410
    assert curl(other.url).status == 200


def test_retired_key(gw_store, gateway):
    s = gw_store
    gateway(s)
    (k1,) = s.keys()
    old = s.share("default/photo.jpg")
    assert curl(old.url).status == 200
    r = s.iv("keys", "retire", k1["kid"])
    assert r.rc == 0, str(r)
    r = wait_status(old.url, 410)
    assert r.status == 410, repr(r)
    new = s.share("default/photo.jpg")
    assert b64url_decode(new.token.split(".")[0])[1:9].hex() != k1["kid"]
    r = wait_status(new.url, 200)
    assert r.status == 200 and image_of(r.body).size == (640, 480), repr(r)
    # and the retired key's link stays dead
    assert curl(old.url).status == 410


def forge_cases(a, b):
    """Broken tokens built from two real ones."""
    pa, sa = a.token.split(".")
    pb, sb = b.token.split(".")
    payload = bytearray(b64url_decode(pa))
    flipped = []
    for i in (0, 1, 12, 30, 45, 55, len(payload) - 1):     # version, kid, tid, image, times
        p = bytearray(payload)
        p[i] ^= 0x01
        flipped.append(f"{b64url_encode(bytes(p))}.{sa}")
    sig = bytearray(b64url_decode(sa))
    sig[10] ^= 0x80
    return {
        "signature of another token": f"{pa}.{sb}",
        "flipped signature bit": f"{pa}.{b64url_encode(bytes(sig))}",
        "truncated": a.token[:-7],
        "truncated payload": f"{pa[:-4]}.{sa}",
        "payload only": pa,
        "no signature": pa + ".",
        "extra dot": f"{pa}.{sa}.x",
        "trailing junk": a.token + "AA",
        "empty": "",
        "non-base64": a.token.replace(a.token[5], "*", 1),
        **{f"flipped payload bit {i}": t for i, t in enumerate(flipped)},
    }


def test_forged_and_malformed_tokens_are_404(gw_store, gateway):
    s = gw_store
    # a ban would turn the later 404s into 429s
    g = gateway(s, "--ban-after", "1000")
    a = s.share("default/photo.jpg")
    b = s.share("default/pic.png")
    for why, tok in forge_cases(a, b).items():
        for route in ("s", "v", "p"):
            r = curl(g.url(f"/{route}/{tok}"))
            assert r.status == 404, f"{why} on /{route}/: {r!r}"
            assert b"expired" not in r.body and b"revoked" not in r.body
    assert curl(a.url).status == 200 and curl(b.url).status == 200


def test_token_of_another_store_is_404(gw_store, gateway, imgvault, tmp_path, passfile):
    s = gw_store
    gateway(s)
    root = tmp_path / "other"
    root.mkdir()
    sockdir = short_dir()
    other = make_gw_store(imgvault, root, passfile, s.images, s.base_url, sockdir)
    try:
        foreign = other.share("default/photo.jpg")
        assert foreign.url.startswith(s.base_url)
        r = curl(foreign.url)
        assert r.status == 404, repr(r)
        assert curl(foreign.page).status == 404
        # the same image's own link works: the 404 is about the key
        assert curl(s.share("default/photo.jpg").url).status == 200
    finally:
        stop_daemon(other.daemon)
        shutil.rmtree(sockdir, ignore_errors=True)
    s.tokens += other.tokens


def aborted_get(port, token, keep=65536):
    """GET the link, read @keep bytes of it, then drop the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /s/{token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = b""
    while len(got) < keep:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()                                  # RST: the transfer is cut
    return got


def uses_of(s, link):
    r = s.iv("--json", "shares")
    assert r.rc == 0, str(r)
    for e in r.json():
        if e["token_id"] == link.token_id:
            return e["uses"]
    return None


def test_one_time_link(gw_store, gateway):
    s = gw_store
    g = gateway(s)
    link = s.share("default/big.png", "--uses", "1")

    # none of these is a complete download
    r = curl(link.url, head=True)
    assert r.status == 200, repr(r)
    size = int(r.h("content-length"))
    assert size > 4 << 20
    etag = r.h("etag")
    assert curl(link.url, "-H", f"If-None-Match: {etag}").status == 304
    assert curl(link.page).status == 200
    assert curl(link.at("p")).status == 200
    r = curl(link.url, "-H", "Range: bytes=0-99")
    assert r.status == 206 and len(r.body) == 100, repr(r)
    r = curl(link.url, "-H", "Range: bytes=1000-200000")
    assert r.status == 206 and len(r.body) == 199001, repr(r)
    r = curl(link.url, "--max-filesize", "1000")
    assert r.rc == 63 and len(r.body) < size, repr(r)    # curl gave up at Content-Length
    got = aborted_get(g.port, link.token)
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
    time.sleep(0.5)
    assert uses_of(s, link) == 0, "an incomplete transfer used the link up"

    r = curl(link.url)
    assert r.status == 200 and len(r.body) == size, repr(r)
    assert image_of(r.body).size == (1800, 1400)
    time.sleep(0.3)
    r = curl(link.url)
    assert r.status == 410, repr(r)
    assert curl(link.url, head=True).status == 410
    assert uses_of(s, link) in (1, None)


def test_two_use_link_counts_only_complete_downloads(gw_store, gateway):
    s = gw_store
    gateway(s)
    link = s.share("default/photo.jpg", "--uses", "2")
    for _ in range(2):
        r = curl(link.url)
        assert r.status == 200 and image_of(r.body).size == (640, 480), repr(r)
        time.sleep(0.2)
    assert curl(link.url).status == 410


def test_limited_link_cannot_be_fetched_piecemeal_without_end(gw_store, gateway):
    """Ranges that stop short of the end never use a link up, but they spend
    its byte budget (twice the file per use): a one-time link cannot be read
    over and over in pieces.  A retried download still works."""
    s = gw_store
    gateway(s)
    link = s.share("default/photo.jpg", "--uses", "1")
    size = int(curl(link.url, head=True).h("content-length"))
    half = size // 2
    r = curl(link.url, "-H", f"Range: bytes=0-{half - 1}")      # a broken download
    assert r.status == 206 and len(r.body) == half, repr(r)
    r = curl(link.url, "-H", f"Range: bytes=0-{half - 1}")      # and another
    assert r.status == 206, repr(r)
    statuses = []
    for _ in range(6):                                           # piecemeal, never the end
        statuses.append(curl(link.url, "-H", f"Range: bytes=0-{half - 1}").status)
        time.sleep(0.1)
    assert 410 in statuses, statuses
    assert statuses[statuses.index(410):] == [410] * (len(statuses) - statuses.index(410))
    # Within budget, a retried whole download still works.
    again = s.share("default/photo.jpg", "--uses", "1")
    assert curl(again.url, "-H", f"Range: bytes=0-{half - 1}").status == 206
    r = curl(again.url)
    assert r.status == 200 and len(r.body) == size, repr(r)
    time.sleep(0.3)
    assert curl(again.url).status == 410


def test_partner_network(gw_store, gateway):
    s = gw_store
    gateway(s)
    r = s.iv("partner", "add", "printshop", "--cidr", "127.0.0.1/32")
    assert r.rc == 0, str(r)
    link = s.share("default/photo.jpg", "--partner", "printshop")
    r = curl(link.url, interface="127.0.0.2")
    assert r.status == 403, repr(r)
    assert curl(link.page, interface="127.0.0.2").status == 403
    r = curl(link.url, interface="127.0.0.1")
    assert r.status == 200 and image_of(r.body).size == (640, 480), repr(r)
    # X-Forwarded-For is not believed from an untrusted peer
    r = curl(link.url, "-H", "X-Forwarded-For: 127.0.0.1", interface="127.0.0.2")
    assert r.status == 403, repr(r)
    # an ordinary link works from anywhere
    assert curl(s.share("default/photo.jpg").url, interface="127.0.0.2").status == 200


def test_trusted_proxy(gw_store, gateway):
    s = gw_store
    gateway(s, "--trusted-proxy", "127.0.0.2/32")
    assert s.iv("partner", "add", "lab", "--cidr", "192.0.2.0/24").rc == 0
    link = s.share("default/photo.jpg", "--partner", "lab")
    assert curl(link.url, interface="127.0.0.2").status == 403
    r = curl(link.url, "-H", "X-Forwarded-For: 192.0.2.7", interface="127.0.0.2")
    assert r.status == 200, repr(r)
    # not from an untrusted peer
    r = curl(link.url, "-H", "X-Forwarded-For: 192.0.2.7", interface="127.0.0.1")
    assert r.status == 403, repr(r)


def test_tls(gw_store, gateway, tmp_path):
    """--tls-cert and --tls-key: the same links over HTTPS, with HSTS."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=60)
    s = gw_store
    g = gateway(s, "--tls-cert", cert, "--tls-key", key)
    link = s.share("default/photo.jpg")
    secure = link.url.replace("http://", "https://")
    r = curl(secure, "--cacert", str(cert))
    assert r.status == 200 and image_of(r.body).size == (640, 480), repr(r)
    assert r.h("strict-transport-security"), repr(r)
    assert curl(link.url).status != 200          # plain HTTP on the TLS port: no
    assert curl(secure).status == 0              # an unknown certificate: curl refuses
    assert g.alive()


# ---- health, metrics ----

def test_healthz_and_metrics(gw_store, gateway):
    s = gw_store
    g = gateway(s)
    r = curl(g.url("/healthz"))
    assert r.status == 200 and r.body == b"ok\n", repr(r)
    link = s.share("default/photo.jpg")
    assert curl(link.url).status == 200
    assert curl(g.url("/s/garbage")).status == 404
    r = curl(f"http://127.0.0.1:{g.metrics_port}/metrics")
    assert r.status == 200, repr(r)
    text = r.body.decode()
    assert "# TYPE imgvault_gateway_responses_total counter" in text, text
    m = re.search(r'^imgvault_gateway_responses_total\{status="200"\} (\d+)$', text, re.M)
    assert m and int(m.group(1)) >= 2, text
    assert re.search(r'^imgvault_gateway_responses_total\{status="404"\} [1-9]', text, re.M), text
    # metrics are not on the public address
    assert curl(g.url("/metrics")).status == 404

    kill_daemon(s.daemon)              # gone at once, as after a crash
    r = curl(g.url("/healthz"))
    assert r.status == 503 and r.h("retry-after"), repr(r)
    r = curl(link.url)
    assert r.status == 503, repr(r)
    assert g.alive()


def test_daemon_stops_on_sigterm_with_a_gateway_connected(gw_store, gateway):
    s = gw_store
    g = gateway(s)
    assert curl(s.share("default/photo.jpg").url).status == 200
    stopped = stop_daemon(s.daemon, timeout=10)
    assert stopped, "imgvaultd was still running 10 s after SIGTERM"
    assert curl(g.url("/healthz")).status == 503


# ---- abuse ----

def test_rate_limit(gw_store, gateway):
    s = gw_store
    g = gateway(s, "--rate", "5", "--burst", "5")
    link = s.share("default/small.jpg")
    codes = [curl(g.url("/healthz") if i % 2 else link.url).status for i in range(20)]
    assert codes.count(429) >= 8, codes
    assert 5 <= codes.count(200) <= 12, codes
    r = curl(link.url)
    if r.status == 429:
        assert r.h("retry-after"), repr(r)
    # another address has its own bucket
    assert curl(link.url, interface="127.0.0.2").status == 200
    time.sleep(1.5)
    assert curl(link.url).status == 200, "the bucket did not refill"


def test_ban_after_bad_tokens(gw_store, gateway):
    s = gw_store
    g = gateway(s, "--ban-after", "5", "--rate", "1000", "--burst", "1000")
    link = s.share("default/photo.jpg")
    assert curl(link.url, interface="127.0.0.2").status == 200
    bad = link.token[:-3] + ("AAA" if not link.token.endswith("AAA") else "BBB")
    codes = [curl(g.url(f"/s/{bad}"), interface="127.0.0.2").status for _ in range(5)]
    assert codes == [404] * 5, codes
    r = curl(link.url, interface="127.0.0.2")
    assert r.status == 429, repr(r)
    assert curl(g.url("/healthz"), interface="127.0.0.2").status == 429
    # other addresses are not banned
    assert curl(link.url, interface="127.0.0.1").status == 200


def fuzz_cases(token, n=1000, seed=20240611):
    rng = random.Random(seed)
    methods = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"TRACE", b"CONNECT", b"PATCH",
               b"get", b"G\x00T", b"GETT", b"", b"\xff\xfe", b"OPTIONS\x00", b"X" * 300]
    bad_ranges = [b"bytes=", b"bytes=-", b"bytes=abc", b"bytes=5-1", b"bytes=0-0,5-9",
                  b"bytes=-0", b"bytes=18446744073709551615-", b"bytes=0-18446744073709551616",
                  b"items=0-9", b"bytes=--5", b"bytes=1-2-3", b"bytes= 0-9", b"bytes=\x00-9",
                  b"bytes=99999999999999999999999-", b"bytes=0-99999999999999999999999"]
    out = []
    for i in range(n):
        kind = i % 10
        extra_ok = ()
        if kind == 0:                      # garbage bytes
            data = rng.randbytes(rng.randint(1, 2000)) + b"\r\n\r\n"
        elif kind == 1:                    # huge header
            data = (b"GET /s/x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"A" * rng.randint(17000, 70000)
                    + b"\r\n\r\n")
        elif kind == 2:                    # many headers
            data = b"GET /s/x HTTP/1.1\r\nHost: a\r\n" + b"".join(
                b"X-%d: %s\r\n" % (j, b"b" * 50) for j in range(rng.randint(300, 900))) + b"\r\n"
        elif kind == 3:                    # bad methods on a bad link
            m = rng.choice(methods)
            if m in (b"GET", b"HEAD"):
                m = b"BREW"
            if m == b"OPTIONS\x00":
                extra_ok = (204,)          # read as OPTIONS: test_nul_in_request_line
            data = m + b" /s/" + token[:-5].encode() + b" HTTP/1.1\r\nHost: a\r\n\r\n"
        elif kind == 4:                    # HTTP/0.9 and odd versions
            data = rng.choice([b"GET /healthz\r\n\r\n", b"GET /s/x HTTP/0.9\r\n\r\n",
                               b"GET /s/x HTTP/2.0\r\nHost: a\r\n\r\n",
                               b"GET /s/x HTTP/1.7\r\nHost: a\r\n\r\n",
                               b"GET /s/x HTTP/11\r\nHost: a\r\n\r\n",
                               b"GET /s/x FOO/1.1\r\nHost: a\r\n\r\n"])
        elif kind == 5:                    # NUL bytes
            extra_ok = (200,)              # "/healthz\0" is /healthz: test_nul_in_request_line
            data = rng.choice([b"GET /s/\x00abc HTTP/1.1\r\nHost: a\r\n\r\n",
                               b"GET /healthz\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
                               b"GET /s/x HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
                               b"GET /s/x HTTP/1.1\r\nX\x00Y: 1\r\nHost: a\r\n\r\n",
                               b"\x00" * rng.randint(1, 500) + b"\r\n\r\n"])
        elif kind == 6:                    # overlong URLs
            data = (b"GET /" + rng.choice([b"s/", b"v/", b"p/", b""]) +
                    bytes(rng.choice(b"AZaz09-_.%/") for _ in range(rng.randint(5000, 40000)))
                    + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        elif kind == 7:                    # bogus Range on a good link
            data = (b"GET /s/" + token.encode() + b" HTTP/1.1\r\nHost: a\r\nRange: " +
                    rng.choice(bad_ranges) + b"\r\n\r\n")
            extra_ok = (200, 206, 416)
        elif kind == 8:                    # missing Host (HTTP/1.1 requires it)
            data = rng.choice([b"GET /healthz HTTP/1.1\r\n\r\n",
                               b"GET /s/" + token.encode() + b" HTTP/1.1\r\n\r\n",
                               b"GET /v/x HTTP/1.1\r\nHost:\r\nHost: b\r\n\r\n"])
            extra_ok = (200,)              # served anyway: test_http11_without_host
        else:                              # mutations of a request for a bad link
            base = bytearray(b"GET /s/" + token[:-4].encode() + b"zzzz HTTP/1.1\r\nHost: a\r\n"
                             b"Range: bytes=0-9\r\nIf-None-Match: \"x\"\r\n\r\n")
            for _ in range(rng.randint(1, 8)):
                base[rng.randrange(len(base) - 4)] = rng.randrange(256)
            data = bytes(base)
        out.append((i, data, extra_ok))
    return out


def check_reply(i, data, extra_ok, got):
    if not got:
        return None
    first = got.split(b"\r\n", 1)[0]
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", first + b" ")
    if not m:
        return f"case {i} ({data[:60]!r}): not an HTTP/1 answer: {got[:80]!r}"
    code = int(m.group(1))
    if not (400 <= code < 600 or code in extra_ok):
        return f"case {i} ({data[:80]!r}): answered {code}"
    return None


def test_garbage_requests(gw_store, gateway):
    s = gw_store
    g = gateway(s, "--rate", "1000000", "--burst", "1000000", "--ban-after", "1000000",
                "--max-per-ip", "1000", "--header-timeout", "3", "--timeout", "3")
    link = s.share("default/photo.jpg")
    cases = fuzz_cases(link.token)
    bad = []

    def one(case):
        i, data, extra_ok = case
        got = raw_request(data, g.port, source="127.0.0.3", timeout=4)
        return check_reply(i, data, extra_ok, got)

    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        for problem in ex.map(one, cases):
            if problem:
                bad.append(problem)
    assert g.alive(), "the gateway died: " + g.output()[-3000:]
    assert not bad, "\n".join(bad[:20])
    r = curl(g.url("/healthz"))
    assert r.status == 200, repr(r)
    r = curl(link.url)
    assert r.status == 200 and image_of(r.body).size == (640, 480), repr(r)
    assert s.daemon.alive()


def test_nul_in_request_line_cuts_it(gw_store, gateway):
    """libmicrohttpd 0.9.75 (Debian 12) ends the request line's method and
    target at a NUL byte instead of refusing the request (RFC 9112 wants 400).
    Documented in docs/GATEWAY.md: what comes before the NUL is served as if it
    were the whole line, never anything more, and the NUL never reaches a
    token check half-parsed."""
    s = gw_store
    g = gateway(s)
    link = s.share("default/photo.jpg")
    for with_nul, without in (
            (b"GET /healthz\x00 HTTP/1.1", b"GET /healthz HTTP/1.1"),
            (b"OPTIONS\x00 /s/x HTTP/1.1", b"OPTIONS /s/x HTTP/1.1"),
            (b"GET /s/" + link.token.encode() + b"\x00junk HTTP/1.1",
             b"GET /s/" + link.token.encode() + b" HTTP/1.1"),
            (b"GET /s/" + link.token[:50].encode() + b"\x00" + link.token[50:].encode() +
             b" HTTP/1.1", b"GET /s/" + link.token[:50].encode() + b" HTTP/1.1")):
        a = raw_request(with_nul + b"\r\nHost: a\r\n\r\n", g.port).split(b"\r\n", 1)[0]
        b = raw_request(without + b"\r\nHost: a\r\n\r\n", g.port).split(b"\r\n", 1)[0]
        assert a == b or a == b"", (with_nul, a, b)
    assert g.alive()


def test_http11_without_host(gw_store, gateway):
    s = gw_store
    g = gateway(s)
    link = s.share("default/photo.jpg")
    got = {}
    for data in (b"GET /healthz HTTP/1.1\r\n\r\n",
                 b"GET /s/" + link.token.encode() + b" HTTP/1.1\r\n\r\n"):
        got[data[:14]] = raw_request(data, g.port).split(b"\r\n", 1)[0]
    assert all(v.startswith(b"HTTP/1.1 400") for v in got.values()), got


def test_huge_header_refused(gw_store, gateway):
    s = gw_store
    g = gateway(s)
    got = raw_request(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + b"A" * 20000 +
                      b"\r\n\r\n", g.port)
    assert got == b"" or re.match(rb"HTTP/1\.1 (431|413|400) ", got), got[:100]
    assert curl(g.url("/healthz")).status == 200


def test_slow_headers_are_cut_off(gw_store, gateway):
    s = gw_store
    g = gateway(s, "--header-timeout", "3", "--timeout", "60")
    sock = socket.create_connection(("127.0.0.1", g.port), timeout=10)
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 30 + b"\r\n\r\n"
    start = time.monotonic()
    closed_at = None
    sock.settimeout(1.0)
    for byte in request:
        try:
            sock.send(bytes([byte]))
        except OSError:
            closed_at = time.monotonic()
            break
        try:
            data = sock.recv(4096)
            if data == b"" or not data.startswith(b"HTTP/1.1 200"):
                closed_at = time.monotonic()
                break
        except socket.timeout:
            pass
        except OSError:
            closed_at = time.monotonic()
            break
        if time.monotonic() - start > 12:
            break
    sock.close()
    assert closed_at is not None, "a client sending a byte a second was never cut off"
    assert 2.5 <= closed_at - start <= 6, closed_at - start
    assert curl(g.url("/healthz")).status == 200


def test_idle_connections_do_not_starve_others(gw_store, gateway):
    s = gw_store
    g = gateway(s, "--header-timeout", "30", "--timeout", "30")
    link = s.share("default/photo.jpg")
    socks = []
    try:
        for _ in range(500):
            c = socket.socket()
            c.bind(("127.0.0.2", 0))
            c.settimeout(5)
            try:
                c.connect(("127.0.0.1", g.port))
            except OSError:
                c.close()
                continue
            socks.append(c)
        time.sleep(1.0)
        r = curl(link.url, timeout=10)
        assert r.status == 200 and image_of(r.body).size == (640, 480), repr(r)
        assert curl(g.url("/healthz"), timeout=10).status == 200
        still_open = 0
        for c in socks:
            c.setblocking(False)
            try:
                if c.recv(1) != b"":
                    still_open += 1
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        assert still_open <= 32, f"{still_open} connections from one address were kept"
        assert still_open >= 16, f"only {still_open} connections kept: the limit is 32"
    finally:
        for c in socks:
            c.close()
    assert g.alive()


# ---- logs and audit ----

def test_tokens_never_logged_and_fetches_audited(gw_store, gateway):
    s = gw_store
    g = gateway(s, "--ban-after", "1000")
    ok = s.share("default/photo.jpg")
    once = s.share("default/small.jpg", "--uses", "1")
    revoked = s.share("default/pic.png")
    later = s.share("default/pic.png", "--not-before", "+1h")
    assert curl(ok.url).status == 200
    assert curl(ok.page).status == 200
    assert curl(ok.url, "-H", "Range: bytes=0-9").status == 206
    assert curl(once.url).status == 200
    time.sleep(0.2)
    assert curl(once.url).status == 410
    assert s.iv("revoke", revoked.token_id).rc == 0
    assert curl(revoked.url).status == 410
    assert curl(later.url).status == 403
    pa, sa = ok.token.split(".")
    assert curl(g.url(f"/s/{pa}.{revoked.token.split('.')[1]}")).status == 404
    assert curl(g.url(f"/s/{pa}")).status == 404
    time.sleep(1.5)                    # the daemon writes fetches once a second
    gw_log = g.output()
    g.proc.terminate()
    g.proc.wait(timeout=10)
    assert stop_daemon(s.daemon), "imgvaultd did not stop on SIGTERM"
    daemon_log = s.daemon.output()
    audit = audit_text(s.store)

    for name, text in (("gateway log", gw_log + g.output()), ("daemon log", daemon_log),
                       ("audit trail", audit)):
        for tok in s.tokens:
            for part in [tok] + [p for p in tok.split(".") if len(p) > 20]:
                assert part not in text, f"a token leaked into the {name}"
    assert "tid=" + ok.token_id in gw_log
    fetches = [ln for ln in audit.splitlines() if "share.fetch" in ln]
    assert fetches, audit[-3000:]
    for link in (ok, once, revoked):
        assert any(link.token_id in ln for ln in fetches), \
            f"no share.fetch entry for {link.token_id}:\n" + "\n".join(fetches)
    assert any(once.token_id in ln and "410" in ln for ln in fetches), "\n".join(fetches)
    r = s.iv("audit", "verify")
    assert r.rc == 0, str(r)


# ---- system mode: the gateway as its own user ----

def test_share_honours_control_option(gw_store, tmp_path):
    s = gw_store
    elsewhere = tmp_path / "nostore"
    elsewhere.mkdir()
    ctl = str(s.daemon.control)
    r = run_cli(s.store.binary, "-s", elsewhere, "--passphrase-file", s.store.passfile,
                "--control", ctl, "ls")
    assert r.rc == 0, str(r)                       # ls goes where --control says
    r = run_cli(s.store.binary, "-s", elsewhere, "--passphrase-file", s.store.passfile,
                "--control", ctl, "--json", "share", "default/photo.jpg")
    assert r.rc == 0, str(r)
    s.tokens.append(Link(r.json()[0]).token)

CONTROL_CLIENT = r"""
import json, socket, struct, sys
tok = sys.argv[2].encode()
def field(t, v): return struct.pack("<BH", t, len(v)) + v
body = field(23, tok) + field(39, b"127.0.0.1")
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(10)
s.connect(sys.argv[1])
s.send(b"IV\x01" + bytes([18]) + struct.pack("<I", len(body)) + body)
r = s.recv(1 << 20)
t, n, i, out = r[3], struct.unpack_from("<I", r, 4)[0], 8, {}
while i < 8 + n:
    tag, ln = struct.unpack_from("<BH", r, i)
    out[tag] = r[i + 3:i + 3 + ln]
    i += 3 + ln
errno = int.from_bytes(out.get(4, b""), "little") if 4 in out else None
print(json.dumps({"type": t, "errno": errno, "message": out.get(5, b"").decode(errors="replace"),
                  "size": int.from_bytes(out[6], "little") if 6 in out else None}))
"""


def test_system_mode_gateway_user(system_store, unix_users, gw_images, tmp_path, gateway):
    if not is_root():
        pytest.skip("system mode needs root")
    s = system_store
    add_user(s, s.alice)
    r = s.iv("--user", s.alice, "import", gw_images["photo.jpg"])
    assert r.rc == 0, str(r)
    gwuser = unix_users("ivgw")
    sockdir = short_dir()
    mnt = s.path.parent / "mnt"
    d = start_daemon(s, mnt, sockdir / "control.sock", "--gateway-user", gwuser, system=True)
    s.daemon = d
    gws = []
    try:
        # the gateway's user can read neither the store nor the server key
        for cmd in (["cat", str(s.path / "catalog.db")], ["ls", str(s.path / "blobs")],
                    ["cat", str(s.server_key)]):
            p = subprocess.run(["runuser", "-u", gwuser, "--", *cmd], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
            assert p.returncode != 0 and b"Permission denied" in p.stderr, (cmd, p)
            assert p.stdout == b""
        port = free_port()
        g = gateway(s, port=port, as_user=gwuser)
        gws.append(g)
        # share ignores --control (test_share_honours_control_option) and alice cannot
        # read the store's lock: she is pointed at the daemon by a lock of her own,
        # held (as the daemon holds the real one) by this test
        pointer = sockdir / "pointer"
        pointer.mkdir(mode=0o755)
        (pointer / "lock").write_text(f"imgvaultd control={d.control} (test)\n")
        (pointer / "lock").chmod(0o644)
        with open(pointer / "lock") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            r = run_cli(s.binary, "-s", pointer, "--json", "share", "default/photo.jpg",
                        as_user=s.alice)
        assert r.rc == 0, str(r)
        link = Link(r.json()[0])
        r = curl(g.url(f"/s/{link.token}"))
        assert r.status == 200, repr(r) + g.output()
        im = image_of(r.body)
        assert im.size == (640, 480)
        got = tmp_path / "sys.jpg"
        got.write_bytes(r.body)
        assert exif_gps(got) == ""
        assert "running as root" not in g.output(), g.output()

        # another ordinary user may not fetch through links: the daemon says EPERM
        script = tmp_path.parent / "ctlclient.py"
        script.write_text(CONTROL_CLIENT)
        script.chmod(0o644)
        bob_py = shutil.copy(script, sockdir / "c.py")
        for user, want in ((s.bob, "EPERM"), (gwuser, "OK")):
            p = subprocess.run(["runuser", "-u", user, "--", "/usr/bin/python3", bob_py,
                                str(d.control), link.token], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
            assert p.returncode == 0, p.stderr.decode()
            reply = json.loads(p.stdout)
            if want == "EPERM":
                assert reply["type"] == 1 and reply["errno"] == 1, reply  # P_ERROR, EPERM
                assert "only the gateway" in reply["message"], reply
                assert reply["size"] is None, reply
            else:
                assert reply["type"] == 2 and reply["size"], reply  # P_OK, what it serves
        # and through a gateway run by that other user: refused, never the image
        kcopy = sockdir / "keys-copy.pub"
        shutil.copy(d.keyring, kcopy)
        kcopy.chmod(0o644)
        g2 = gateway(s, port=free_port(), as_user=s.bob, keys=kcopy,
                     log=tmp_path / "bobgw.log")
        gws.append(g2)
        r = curl(g2.url(f"/s/{link.token}"))
        assert r.status == 403 and not r.body.startswith(b"\xff\xd8"), repr(r)
        assert curl(g.url(f"/s/{link.token}")).status == 200
    finally:
        for one in gws:                # first: the daemon waits for their connections
            kill_proc(one.proc)
        stop_daemon(d)
        shutil.rmtree(sockdir, ignore_errors=True)


# ---- the daemon's cache of small bodies: never staler than the catalog ----

def test_small_bodies_follow_renames_new_versions_and_locks(gw_store, gateway):
    """imgvaultd keeps small bodies it served (thumbnails) in memory, by
    what they are: a rename, a new version and a lock must all show at once."""
    s = gw_store
    gateway(s)
    mnt = s.daemon.mnt
    link = s.share("default/small.jpg", "--variant", "thumb")
    first = curl(link.url)
    assert first.status == 200, repr(first)
    assert curl(link.url).body == first.body                 # served twice, same bytes
    assert 'filename="small.jpg"' in first.h("content-disposition")

    os.rename(mnt / "default" / "original" / "small.jpg",
              mnt / "default" / "original" / "tiny.jpg")
    r = curl(link.url)
    assert r.status == 200 and 'filename="tiny.jpg"' in r.h("content-disposition"), repr(r)

    assert s.iv("lock").rc == 0
    r = curl(link.url)
    assert r.status == 503, "a locked vault's thumbnail was still served: " + repr(r)
    r = s.iv("unlock")
    assert r.rc == 0, str(r)
    assert curl(link.url).status == 200

    shutil.copyfile(s.images["pic.png"], mnt / "default" / "original" / "tiny.jpg")
    r = wait_status(link.url, 200)
    for _ in range(50):                                      # the new thumbnail is made
        r = curl(link.url)
        if r.status == 200 and r.body != first.body:
            break
        time.sleep(0.1)
    assert r.status == 200 and r.body != first.body, "a stale thumbnail after a new version"
    assert image_of(r.body).format == "PNG"


def test_desktop_signing_key_goes_with_the_lock(gw_store, gateway):
    """A desktop store's signing key is sealed under its owner's key: locking
    the vault wipes it from the daemon, unlocking brings the same key back."""
    s = gw_store
    gateway(s)
    before = [k for k in s.keys() if k.get("current")]
    assert len(before) == 1, before
    link = s.share("default/photo.jpg")
    assert s.iv("lock").rc == 0
    for args in (("share", "default/photo.jpg"), ("keys", "rotate")):
        r = s.iv(*args)
        assert r.rc != 0 and "locked" in r.err, str(r)
    assert curl(link.url).status == 503                 # nothing is served while locked
    assert s.iv("unlock").rc == 0
    after = [k for k in s.keys() if k.get("current")]
    assert after == before, (before, after)
    again = s.share("default/photo.jpg")
    assert again.token.split(".")[0] != link.token.split(".")[0]
    assert curl(again.url).status == 200 and curl(link.url).status == 200
