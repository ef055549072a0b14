"""
Helpers and fixtures for the share gateway's integration tests
(test_gateway.py; DESIGN §8, share-gateway/gateway.c).

  gw_images    a JPEG and a PNG carrying EXIF GPS, a small JPEG and a large
               (> 1 MiB, several MB) noise PNG, made with ImageMagick and exiftool
  gw_store     a desktop store holding them, share.base-url set, served by a
               real imgvaultd (FUSE mount, --control in a short /tmp path) -> GwStore
  gateway      factory: gateway(store, *extra_args, as_user=None) starts
               imgvault-gateway on a free port, its log captured to a file,
               and stops it afterwards -> Gateway

GwStore.share(...) mints a link through the CLI and remembers every token
minted, so a test can check none ever reaches a log.  curl(...) runs the
real curl and returns (status, headers, body).
"""
import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BUILD, clean_env, convert, make_store, run_cli

EXIFTOOL = "/usr/bin/exiftool"
CURL = shutil.which("curl") or "/usr/bin/curl"
GPS_ARGS = ["-GPSLatitude=48.8584", "-GPSLatitudeRef=N", "-GPSLongitude=2.2945",
            "-GPSLongitudeRef=E", "-Make=TestCam", "-Model=GW-1"]


# ---- ports, processes ----

def free_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def kill_proc(p, timeout=10):
    """SIGTERM, then SIGKILL: the process @p (one we started), by its pid."""
    if p.poll() is not None:
        return p.returncode
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait(timeout=10)


# ---- images ----

def exif_gps(path):
    """exiftool's GPS tags of @path (empty when it has none)."""
    p = subprocess.run([EXIFTOOL, "-s", "-G", "-a", "-gps:all", "-xmp:GPS*", str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    return p.stdout.decode(errors="replace").strip()


def add_gps(path):
    p = subprocess.run([EXIFTOOL, "-q", "-overwrite_original", *GPS_ARGS, str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert "GPSLatitude" in exif_gps(path), f"exiftool wrote no GPS into {path}"


@pytest.fixture(scope="session")
def gw_image_master(tmp_path_factory):
    if not os.access(EXIFTOOL, os.X_OK):
        pytest.skip(f"{EXIFTOOL} is needed to give the test images GPS tags")
    d = tmp_path_factory.mktemp("gwimages")
    convert("-seed", "7", "-size", "640x480", "plasma:", "-quality", "92", d / "photo.jpg")
    convert("-seed", "8", "-size", "400x320", "plasma:", d / "pic.png")
    convert("-size", "64x48", "xc:red", "-quality", "90", d / "small.jpg")
    # Larger than the gateway's 1 MiB buffer and than loopback's socket buffers.
    convert("-seed", "9", "-size", "1800x1400", "xc:gray", "+noise", "Random", d / "big.png")
    add_gps(d / "photo.jpg")
    add_gps(d / "pic.png")
    assert (d / "big.png").stat().st_size > 4 << 20
    return d


@pytest.fixture
def gw_images(gw_image_master, tmp_path):
    d = tmp_path / "gwimages"
    shutil.copytree(gw_image_master, d)
    return {p.name: p for p in sorted(d.iterdir())}


# ---- the store and its daemon ----

def short_dir(prefix="ivgw-"):
    """A short directory for control sockets (sun_path holds 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


class Daemon:
    def __init__(self, proc, mnt, log, control, keyring):
        self.proc, self.mnt, self.log = proc, mnt, log
        self.control, self.keyring = control, keyring

    def output(self):
        return self.log.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None


def start_daemon(store, mnt, control, *extra, system=False):
    """imgvaultd -f on @store with its control socket at @control (the public
    keyring beside it, signing-keys.pub)."""
    mnt = Path(mnt)
    mnt.mkdir(exist_ok=True)
    log = mnt.parent / (mnt.name + ".log")
    args = [str(BUILD / "imgvaultd")]
    if system:
        args += ["--system", "-k", str(store.server_key)]
    else:
        args += ["--passphrase-file", str(store.passfile)]
    args += ["--control", str(control), *map(str, extra), "-f", str(store.path), str(mnt)]
    with open(log, "wb") as f:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                             env=clean_env())
    keyring = Path(control).parent / "signing-keys.pub"
    for _ in range(200):
        if os.path.ismount(mnt) and os.path.exists(control) and keyring.exists():
            return Daemon(p, mnt, log, Path(control), keyring)
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    p.wait()
    subprocess.run(["fusermount3", "-u", "-z", str(mnt)], stderr=subprocess.DEVNULL)
    pytest.fail("imgvaultd did not start: " + log.read_text(errors="replace"))


def stop_daemon(d, timeout=20):
    """Stops @d (SIGTERM; SIGKILL after @timeout s) and always detaches its
    mount (a dead FUSE mount is not os.path.ismount); -> True when it stopped
    on SIGTERM."""
    clean = True
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            clean = False
            d.proc.kill()
            d.proc.wait()
    subprocess.run(["fusermount3", "-u", "-z", str(d.mnt)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return clean


def kill_daemon(d):
    """SIGKILL: the daemon is gone at once (a crash); its mount detached."""
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()
    subprocess.run(["fusermount3", "-u", "-z", str(d.mnt)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def token_of(url):
    assert "/s/" in url, url
    return url.rsplit("/s/", 1)[1]


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url_encode(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


class Link:
    def __init__(self, obj):
        self.url = obj["url"]
        self.page = obj["page"]
        self.token_id = obj["token_id"]
        self.expires = obj["expires"]
        self.not_before = obj["not_before"]
        self.token = token_of(self.url)
        self.base = self.url.rsplit("/s/", 1)[0]

    def at(self, route):
        """The same token under another route: "s", "v" or "p"."""
        return f"{self.base}/{route}/{self.token}"


class GwStore:
    """A store served by imgvaultd, and the tokens minted on it."""

    def __init__(self, store, daemon, base_url, images):
        self.store, self.daemon, self.base_url, self.images = store, daemon, base_url, images
        self.tokens = []

    def iv(self, *args, **kw):
        return self.store.iv(*args, **kw)

    def share(self, spec, *args, **kw):
        r = self.store.iv("--json", "share", spec, *args, **kw)
        assert r.rc == 0, str(r)
        (obj,) = r.json()
        link = Link(obj)
        self.tokens.append(link.token)
        return link

    def keys(self):
        r = self.store.iv("--json", "keys")
        assert r.rc == 0, str(r)
        return r.json()


def make_gw_store(imgvault, root, passfile, images, base_url, sockdir):
    store = make_store(imgvault, root / "store", passfile)
    r = store.iv("--json", "import", *images.values())
    assert r.rc == 0, str(r)
    r = store.iv("config", f"share.base-url={base_url}")
    assert r.rc == 0, str(r)
    d = start_daemon(store, root / "mnt", sockdir / "control.sock")
    return GwStore(store, d, base_url, images)


@pytest.fixture
def gw_port():
    return free_port()


@pytest.fixture
def gw_store(imgvault, tmp_path, passfile, gw_images, gw_port):
    sockdir = short_dir()
    s = make_gw_store(imgvault, tmp_path, passfile, gw_images, f"http://127.0.0.1:{gw_port}",
                      sockdir)
    s.port = gw_port
    yield s
    stop_daemon(s.daemon)
    shutil.rmtree(sockdir, ignore_errors=True)


# ---- the gateway ----

class Gateway:
    def __init__(self, proc, port, metrics_port, log):
        self.proc, self.port, self.metrics_port, self.log = proc, port, metrics_port, log

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self):
        return self.log.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None


def start_gateway(control, keys, log, *extra, port=None, listen="127.0.0.1", as_user=None):
    port = port or free_port()
    mport = free_port()
    args = [str(BUILD / "imgvault-gateway"), "--listen", f"{listen}:{port}",
            "--control", str(control), "--keys", str(keys),
            "--metrics", f"127.0.0.1:{mport}", *map(str, extra)]
    if as_user:
        args = ["runuser", "-u", as_user, "--"] + args
    with open(log, "wb") as f:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                             env=clean_env())
    g = Gateway(p, port, mport, Path(log))
    for _ in range(200):
        if p.poll() is not None:
            pytest.fail(f"imgvault-gateway exited {p.returncode}: {g.output()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return g
        except OSError:
            time.sleep(0.05)
    kill_proc(p)
    pytest.fail("imgvault-gateway did not listen: " + g.output())


@pytest.fixture
def gateway(tmp_path):
    """gateway(store, *extra, port=None, as_user=None, control=, keys=) -> Gateway."""
    started = []

    def start(store, *extra, port=None, as_user=None, control=None, keys=None, log=None):
        d = store.daemon
        log = log or tmp_path / f"gateway{len(started)}.log"
        g = start_gateway(control or d.control, keys or d.keyring, log, *extra,
                          port=port or getattr(store, "port", None), as_user=as_user)
        started.append(g)
        return g

    yield start
    for g in started:
        kill_proc(g.proc)
        out = g.output()
        assert "AddressSanitizer" not in out, out


# ---- HTTP with the real curl ----

class Reply:
    def __init__(self, status, headers, body, raw_headers, rc, err):
        self.status, self.headers, self.body = status, headers, body
        self.raw_headers, self.rc, self.err = raw_headers, rc, err

    def h(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return (f"<Reply {self.status} rc={self.rc} {self.raw_headers!r} "
                f"body={self.body[:200]!r} err={self.err!r}>")


def curl(url, *args, interface=None, head=False, timeout=30):
    """One request with curl: -> Reply (status 0 when curl got no answer)."""
    with tempfile.TemporaryDirectory(prefix="ivgwc-") as d:
        hdr, body = Path(d) / "h", Path(d) / "b"
        cmd = [CURL, "-sS", "--max-time", str(timeout), "-D", str(hdr), "-o", str(body),
               "-w", "%{http_code}"]
        if head:
            cmd.append("--head")
        if interface:
            cmd += ["--interface", interface]
        cmd += [*map(str, args), url]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout + 10)
        raw = hdr.read_bytes().decode("latin-1") if hdr.exists() else ""
        data = body.read_bytes() if body.exists() else b""
    headers = {}
    for line in raw.split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    code = p.stdout.decode().strip()
    return Reply(int(code) if code.isdigit() else 0, headers, data, raw, p.returncode,
                 p.stderr.decode(errors="replace"))


def raw_request(data, port, source="127.0.0.1", timeout=3.0, host="127.0.0.1"):
    """Sends @data on a fresh TCP connection from @source; -> the bytes that
    came back before the connection closed or went quiet for @timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((source, 0))
        s.connect((host, port))
        try:
            s.sendall(data)
        except OSError:
            pass
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError, OSError):
                break
            if not chunk:
                break
            got += chunk
            if b"\r\n\r\n" in got and b"Content-Length" not in got.split(b"\r\n\r\n")[0]:
                break
            if b"\r\n\r\n" in got:
                head, _, body = got.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        try:
                            n = int(line.split(b":", 1)[1])
                        except ValueError:
                            n = 0
                        if len(body) >= n:
                            return got
        return got
    finally:
        s.close()


def audit_text(store):
    r = store.iv("audit", "-n", "100000")
    assert r.rc == 0, str(r)
    return r.out + r.err
