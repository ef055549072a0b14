"""
imgvault-gateway and imgvaultd under the findings of issue 10: what the
gateway does when the daemon closes idle control connections, whose word
an absolute URL rests on, oversized request headers, memory under slow
readers, and what the daemon hands out whatever the gateway asks.

Each test failed on the code before the fix (run it with IMGVAULT_BUILD
pointing at an older build to see).
"""
import re
import shutil
import socket
import struct
import time

import pytest

from conftest import convert, memory_bound

from gatewaylib import (  # noqa: F401  (fixtures)
    curl, free_port, gateway, gw_image_master, gw_images, gw_port, gw_store, kill_daemon,
    make_gw_store,
    raw_request, short_dir, start_daemon, stop_daemon)

# ---- the control protocol, spoken directly (docs/PROTOCOL.md) ----

P_ERROR, P_OK, P_DATA = 1, 2, 8
P_FETCH_OPEN, P_FETCH_BODY, P_FETCH_READ, P_FETCH_DONE = 18, 19, 20, 21
T_ERRNO, T_MESSAGE, T_SIZE, T_DATA, T_TOKEN, T_URL = 4, 5, 6, 13, 23, 31
T_CLIENT, T_OFFSET, T_LENGTH, T_STATUS, T_BYTES, T_COMPLETE, T_USES_MAX = 39, 41, 42, 43, 44, 45, 47
EPERM, EKEYREVOKED = 1, 128


def field(tag, value):
    if isinstance(value, int):
        value = struct.pack("<Q", value)
    return struct.pack("<BH", tag, len(value)) + value


def message(mtype, *fields):
    body = b"".join(fields)
    return b"IV\x01" + bytes([mtype]) + struct.pack("<I", len(body)) + body


def parse(reply):
    assert reply[:3] == b"IV\x01", reply[:16]
    mtype, n, i, out = reply[3], struct.unpack_from("<I", reply, 4)[0], 8, {}
    while i < 8 + n:
        tag, ln = struct.unpack_from("<BH", reply, i)
        out[tag] = reply[i + 3:i + 3 + ln]
        i += 3 + ln
    return mtype, out


def u64(fields, tag):
    return int.from_bytes(fields[tag], "little") if tag in fields else None


class Control:
    """A connection to imgvaultd's control socket as this process's uid (the
    desktop daemon's owner, which may fetch like its gateway)."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(20)
        self.s.connect(str(path))

    def ask(self, mtype, *fields):
        self.s.send(message(mtype, *fields))
        return parse(self.s.recv(1 << 17))

    def close(self):
        self.s.close()


def errno_of(reply):
    mtype, f = reply
    return u64(f, T_ERRNO) if mtype == P_ERROR else None


# ---- 1: pooled control connections the daemon closed ----

@pytest.fixture
def idle_store(imgvault, tmp_path, passfile, gw_images, gw_port):
    """gw_store, its daemon closing control connections idle for 1 s."""
    sockdir = short_dir()
    s = make_gw_store(imgvault, tmp_path, passfile, gw_images, f"http://127.0.0.1:{gw_port}",
                      sockdir)
    stop_daemon(s.daemon)
    s.daemon = start_daemon(s.store, tmp_path / "mnt", sockdir / "control.sock",
                            "--control-timeout", "1")
    s.port = gw_port
    yield s
    stop_daemon(s.daemon)
    shutil.rmtree(sockdir, ignore_errors=True)


def test_fetch_after_the_daemon_closed_idle_connections(idle_store, gateway):
    s = idle_store
    g = gateway(s)
    small = s.share("default/photo.jpg")
    big = s.share("default/big.png")
    for _ in range(2):
        assert curl(small.url).status == 200
        assert curl(big.url).status == 200
        assert curl(g.url("/healthz")).status == 200
        time.sleep(2.0)                      # past the daemon's idle timeout
        r = curl(small.url)
        assert r.status == 200, repr(r) + g.output()
        r = curl(small.page)
        assert r.status == 200, repr(r)
        r = curl(big.url)
        assert r.status == 200 and len(r.body) > 4 << 20, repr(r)
        time.sleep(2.0)
        r = curl(g.url("/healthz"))
        assert r.status == 200 and r.body == b"ok\n", repr(r) + g.output()
    assert "not answering" not in g.output(), g.output()


def test_healthz_is_503_when_the_daemon_is_gone(idle_store, gateway):
    s = idle_store
    g = gateway(s)
    link = s.share("default/photo.jpg")
    assert curl(link.url).status == 200      # a pooled connection exists
    assert curl(g.url("/healthz")).status == 200
    kill_daemon(s.daemon)
    r = curl(g.url("/healthz"))
    assert r.status == 503 and r.h("retry-after"), repr(r)
    r = curl(link.url)
    assert r.status == 503, repr(r)
    assert g.alive()


# ---- 2: absolute URLs never from the Host header ----

def page_request(port, token, host):
    return raw_request(f"GET /v/{token} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                       .encode(), port, timeout=10)


def test_preview_page_ignores_host_header(gw_store, gateway):
    s = gw_store
    g = gateway(s)                           # no --public-url
    link = s.share("default/photo.jpg")
    got = page_request(g.port, link.token, "evil.example")
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    assert b"evil.example" not in got, got
    # the store's share.base-url, which the daemon tells the gateway
    assert f'content="{s.base_url}/v/{link.token}"'.encode() in got, got
    assert f'content="{s.base_url}/p/{link.token}"'.encode() in got, got
    r = curl(link.page, "-H", "Host: evil.example:8080")
    assert r.status == 200 and b"evil.example" not in r.body, repr(r)

    # --public-url wins over the store's setting
    g2 = gateway(s, "--public-url", "https://share.example.org", port=free_port())
    got = page_request(g2.port, link.token, "evil.example")
    assert got.startswith(b"HTTP/1.1 200") and b"evil.example" not in got, got[:200]
    assert f'content="https://share.example.org/v/{link.token}"'.encode() in got, got


# ---- 5: bytes only inside a reservation, whatever the gateway says ----

def test_fetch_read_needs_the_announced_range(gw_store):
    """A compromised gateway could claim a partner's address, but it cannot
    read a one-time link more than once: FETCH_READ serves only the range
    FETCH_BODY announced (and, for a limited link, reserved)."""
    s = gw_store
    r = s.iv("partner", "add", "printshop", "--cidr", "192.0.2.0/24")
    assert r.rc == 0, str(r)
    link = s.share("default/photo.jpg", "--uses", "1", "--partner", "printshop")
    tok = link.token.encode()
    c = Control(s.daemon.control)
    try:
        # three reads without a reservation, from a claimed partner address
        for _ in range(3):
            mtype, f = c.ask(P_FETCH_OPEN, field(T_TOKEN, tok), field(T_CLIENT, b"192.0.2.7"))
            assert mtype == P_OK and u64(f, T_USES_MAX) == 1, f
            size = u64(f, T_SIZE)
            reply = c.ask(P_FETCH_READ, field(T_OFFSET, 0), field(T_LENGTH, 60000))
            assert errno_of(reply) == EPERM, reply
            assert "FETCH_BODY" in reply[1][T_MESSAGE].decode(), reply
            assert T_DATA not in reply[1]
            assert c.ask(P_FETCH_DONE, field(T_STATUS, 200), field(T_BYTES, size),
                         field(T_COMPLETE, 1))[0] == P_OK

        # a reservation of 100 bytes hands out those 100 bytes, once
        mtype, f = c.ask(P_FETCH_OPEN, field(T_TOKEN, tok), field(T_CLIENT, b"192.0.2.7"))
        assert mtype == P_OK, f
        assert c.ask(P_FETCH_BODY, field(T_OFFSET, 0), field(T_LENGTH, 100))[0] == P_OK
        reply = c.ask(P_FETCH_BODY, field(T_OFFSET, 0), field(T_LENGTH, size))
        assert reply[0] == P_ERROR, reply                     # one range per fetch
        reply = c.ask(P_FETCH_READ, field(T_OFFSET, 100), field(T_LENGTH, 1000))
        assert errno_of(reply) == EPERM, reply                # outside the range
        mtype, f = c.ask(P_FETCH_READ, field(T_OFFSET, 0), field(T_LENGTH, 60000))
        assert mtype == P_DATA and len(f[T_DATA]) == 100, (mtype, len(f.get(T_DATA, b"")))
        reply = c.ask(P_FETCH_READ, field(T_OFFSET, 0), field(T_LENGTH, 100))
        assert errno_of(reply) == EPERM, reply                # each byte once
        assert c.ask(P_FETCH_DONE, field(T_STATUS, 206), field(T_BYTES, 100),
                     field(T_COMPLETE, 1))[0] == P_OK

        # the whole file, announced: a complete transfer uses the link up
        mtype, f = c.ask(P_FETCH_OPEN, field(T_TOKEN, tok), field(T_CLIENT, b"192.0.2.7"))
        assert mtype == P_OK, f
        assert c.ask(P_FETCH_BODY, field(T_OFFSET, 0), field(T_LENGTH, size))[0] == P_OK
        got = b""
        while len(got) < size:
            mtype, f = c.ask(P_FETCH_READ, field(T_OFFSET, len(got)), field(T_LENGTH, 60000))
            assert mtype == P_DATA and f[T_DATA], (mtype, f)
            got += f[T_DATA]
        assert len(got) == size and got[:2] == b"\xff\xd8"
        assert c.ask(P_FETCH_DONE, field(T_STATUS, 200), field(T_BYTES, size),
                     field(T_COMPLETE, 1))[0] == P_OK
        reply = c.ask(P_FETCH_OPEN, field(T_TOKEN, tok), field(T_CLIENT, b"192.0.2.7"))
        assert errno_of(reply) == EKEYREVOKED, reply         # used up: 410
    finally:
        c.close()


# ---- 3: too many or too large request headers: 431, with a body ----

def headers_request(path, n, value="v"):
    extra = "".join(f"X-H{i:03d}: {value}{i:03d}\r\n" for i in range(n))
    return f"GET {path} HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n".encode()


def test_too_many_headers_get_431(gw_store, gateway):
    s = gw_store
    g = gateway(s, "--rate", "1000", "--burst", "1000")
    link = s.share("default/photo.jpg")
    data = headers_request(f"/s/{link.token}", 200)
    assert 2700 < len(data) < 3400                 # 200 small headers, ~2.8 KB
    got = raw_request(data, g.port, timeout=10)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), got[:200]
    assert b"headers too large" in body, got
    # every count around and past the limit gets an answer, never a bare close
    for n in (99, 100, 150, 205, 210, 250, 300, 600):
        for path in (f"/s/{link.token}", f"/v/{link.token}", "/healthz"):
            got = raw_request(headers_request(path, n), g.port, timeout=10)
            assert re.match(rb"HTTP/1\.1 (200|431) ", got), (n, path, got[:200])
            assert got.partition(b"\r\n\r\n")[2], (n, path, got[:200])
    got = raw_request(headers_request("/healthz", 1, "x" * 9000), g.port, timeout=10)
    assert got.startswith(b"HTTP/1.1 431 "), got[:200]
    # an ordinary request still works, on the same gateway
    r = curl(link.url)
    assert r.status == 200 and r.body[:2] == b"\xff\xd8", repr(r)
    r = curl(link.url, *sum((["-H", f"X-Ok-{i}: {i}"] for i in range(60)), []))
    assert r.status == 200, repr(r)
    assert g.alive()


# ---- 4: memory under slow readers ----

def vm_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def metric(g, name):
    r = curl(f"http://127.0.0.1:{g.metrics_port}/metrics")
    m = re.search(rf"^{name} (\d+)$", r.body.decode(), re.M)
    return int(m.group(1)) if m else None


def stalled_get(port, token):
    """A client that asks for a link and reads nothing: a small receive
    buffer and a small MSS keep the kernel from taking the body off the
    gateway's hands (loopback would otherwise buffer megabytes)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /s/{token} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    return sock


GATEWAY_MEMORY_BOUND_MIB = 64      # docs/GATEWAY.md: the unit's MemoryMax


@memory_bound
def test_slow_readers_do_not_grow_the_gateway(gw_store, gateway, tmp_path):
    s = gw_store
    img = tmp_path / "mib.png"
    convert("-seed", "3", "-size", "900x900", "xc:gray", "+noise", "Random", "-colorspace",
            "gray", "-depth", "8", img)
    assert 512 << 10 < img.stat().st_size < 1 << 20         # read whole before the fix
    r = s.iv("import", img)
    assert r.rc == 0, str(r)
    n = 60
    g = gateway(s, "--max-per-ip", str(2 * n), "--rate", "1000", "--burst", "1000")
    link = s.share("default/mib.png")
    r = curl(link.url)
    assert r.status == 200 and len(r.body) > 512 << 10, repr(r)
    pid = g.proc.pid
    base = vm_kib(pid, "VmRSS")
    socks = []
    try:
        for _ in range(n):
            socks.append(stalled_get(g.port, link.token))
        # until every client has the start of an answer (or 20 s)
        heads = {}
        end = time.monotonic() + 20
        while len(heads) < n and time.monotonic() < end:
            for i, sock in enumerate(socks):
                if i in heads:
                    continue
                try:
                    got = sock.recv(12, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                if len(got) == 12:
                    heads[i] = got
            time.sleep(0.1)
        time.sleep(1.0)                                      # let the gateway settle
        rss, hwm = vm_kib(pid, "VmRSS"), vm_kib(pid, "VmHWM")
        buffered = metric(g, "imgvault_gateway_buffered_bytes")
        statuses = sorted(h[9:12].decode() for h in heads.values())
        # the bound: far below n MiB of bodies held for clients that read nothing
        print(f"gateway memory: VmRSS {base} KiB before, {rss} KiB stalled, VmHWM {hwm} KiB")
        assert hwm < GATEWAY_MEMORY_BOUND_MIB << 10, (base, rss, hwm)
        assert hwm - base < 32 << 10, (base, rss, hwm)
        assert len(heads) == n, f"{n - len(heads)} clients got no answer: {statuses}"
        assert set(statuses) <= {"200", "503"}, statuses   # 503: every daemon connection busy
        assert statuses.count("200") >= 32, statuses
        assert buffered is not None and buffered <= 8 << 20, buffered
    finally:
        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    end = time.monotonic() + 10
    while metric(g, "imgvault_gateway_buffered_bytes") and time.monotonic() < end:
        time.sleep(0.2)
    assert metric(g, "imgvault_gateway_buffered_bytes") == 0
    r = curl(link.url)
    assert r.status == 200 and len(r.body) > 512 << 10, repr(r)
    assert g.alive()
