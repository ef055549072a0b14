"""
Share links from the command line (DESIGN §8, imgvault(1)): share, shares,
revoke, keys and partner, through a real running imgvaultd, which alone
holds the signing key.

Tokens are checked to the byte (docs/GATEWAY.md: payload.signature in
base64url, a 71-byte payload, a 64-byte Ed25519 signature) and must never
appear anywhere but share's standard output: not in shares, not in errors,
not in the daemon's log.
"""
import base64
import os
import signal
import struct
import subprocess
import time

import pytest

from conftest import (BUILD, EXIT_FAIL, EXIT_OK, EXIT_USAGE, add_user, clean_env, is_root,
                      run_cli)

SYSTEM_SOCKET = "/run/imgvault/control.sock"
NO_DAEMON = ("share links are made by a running imgvaultd: mount the vault first "
             "(imgvault mount MOUNTPOINT, or imgvaultd)")
VARIANT = {"original": 0, "pristine": 1, "thumb": 2}


# ---- the daemon ----

class Daemon:
    def __init__(self, proc, mnt, log):
        self.proc, self.mnt, self.log = proc, mnt, log

    def output(self):
        return self.log.read_bytes()


def start_daemon(store, mnt, system=False, control=None):
    """imgvaultd in the foreground on @store: desktop with its passphrase file,
    or system mode (root) with its server key."""
    mnt.mkdir(exist_ok=True)
    log = mnt.parent / (mnt.name + ".log")
    args = [str(BUILD / "imgvaultd")]
    if system:
        args += ["--system", "-k", str(store.server_key)]
    else:
        args += ["--passphrase-file", str(store.passfile)]
    if control:
        args += ["--control", str(control), "--keyring", str(control) + ".pub"]
    args += ["-f", str(store.path), str(mnt)]
    with open(log, "wb") as f:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                             env=clean_env())
    for _ in range(150):
        if os.path.ismount(mnt):
            return Daemon(p, mnt, log)
        if p.poll() is not None:
            break
        time.sleep(0.1)
    p.kill()
    p.wait()
    pytest.fail("imgvaultd did not mount: " + log.read_text(errors="replace"))


def stop_daemon(d):
    d.proc.send_signal(signal.SIGTERM)
    try:
        d.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        d.proc.kill()
        d.proc.wait()
        subprocess.run(["fusermount3", "-u", "-z", str(d.mnt)])
        pytest.fail("imgvaultd did not stop on SIGTERM")
    out = d.output().decode(errors="replace")
    assert "<2>" not in out and "AddressSanitizer" not in out, out


@pytest.fixture
def desktop(filled, tmp_path):
    """`filled` (root's desktop store with the image set) served by imgvaultd."""
    d = start_daemon(filled, tmp_path / "mnt", control=tmp_path / "control.sock")
    filled.daemon = d
    yield filled
    stop_daemon(d)


# ---- tokens ----

def b64url(s):
    assert "=" not in s and "+" not in s and "/" not in s, s
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def decode(token):
    """A token's fields (token.h): checks the lengths and the base64url."""
    assert len(token) == 182, token
    payload_s, sig_s = token.split(".")
    payload, sig = b64url(payload_s), b64url(sig_s)
    assert len(payload) == 71 and len(sig) == 64
    assert payload[0] == 1, "token version"
    nb, exp, partner, uses = struct.unpack_from("<qqQI", payload, 43)
    return {"kid": payload[1:9].hex(), "tid": payload[9:25].hex(),
            "image": payload[25:41].hex(), "variant": payload[41],
            "disposition": payload[42], "not_before": nb, "expires": exp,
            "partner": partner, "uses": uses}


def share(store, *args, **kw):
    """Runs share with --json; -> (token, the JSON object)."""
    r = store.iv("--json", "share", *args, **kw)
    assert r.rc == EXIT_OK, str(r)
    (obj,) = r.json()
    url = obj["url"]
    assert "/s/" in url, url
    token = url.rsplit("/s/", 1)[1]
    assert obj["page"] == url.replace("/s/", "/v/"), obj
    return token, obj


def shares(store, *args, **kw):
    r = store.iv("--json", "shares", *args, **kw)
    assert r.rc == EXIT_OK, str(r)
    return r


def listed_ids(store, *args, **kw):
    return {e["token_id"] for e in shares(store, *args, **kw).json()}


def assert_no_token(texts, *tokens):
    for text in texts:
        for t in tokens:
            assert t not in text, "a token leaked"
            # neither half on its own
            for half in t.split("."):
                assert half not in text, "half a token leaked"


# ---- desktop store ----

def test_share_prints_a_link_and_its_id(desktop):
    s = desktop
    before = int(time.time())
    r = s.iv("share", "default/small.jpg")
    assert r.rc == EXIT_OK, str(r)
    lines = r.out.splitlines()
    assert lines[0].startswith("http") and "/s/" in lines[0], str(r)
    base, token = lines[0].rsplit("/s/", 1)
    t = decode(token)
    assert lines[1] == f"preview: {base}/v/{token}", str(r)
    assert lines[2].startswith("expires: ") and lines[2].endswith("(in 1h)"), str(r)
    assert lines[3] == f"id: {t['tid']}", str(r)
    assert t["image"] == s.image_id("default", "small.jpg").lower()
    assert t["variant"] == 0 and t["disposition"] == 0 and t["partner"] == 0
    assert t["expires"] - t["not_before"] == 3600
    assert before - 1 <= t["not_before"] <= int(time.time()) + 1
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t["expires"]))
    assert lines[2] == f"expires: {iso} (in 1h)", str(r)

    token2, obj = share(s, "default/photo.jpg", "--ttl", "2h", "--download", "--uses", "3",
                        "--variant", "thumb", "--not-before", "+10m")
    t2 = decode(token2)
    assert set(obj) == {"url", "page", "token_id", "not_before", "expires"}, obj
    assert obj["token_id"] == t2["tid"] and obj["expires"] == t2["expires"]
    assert obj["not_before"] == t2["not_before"]
    assert t2["variant"] == VARIANT["thumb"] and t2["disposition"] == 1 and t2["uses"] == 3
    assert t2["expires"] - t2["not_before"] == 7200
    assert abs(t2["not_before"] - (int(time.time()) + 600)) <= 5

    # ISO and Unix times for --not-before
    when = int(time.time()) + 3600
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    assert decode(share(s, "default/small.jpg", "--not-before", iso)[0])["not_before"] == when
    assert decode(share(s, "default/small.jpg", "--not-before", str(when))[0])["not_before"] \
        == when

    # shares names the links by token id and never shows a token
    listing = shares(s)
    ids = {e["token_id"] for e in listing.json()}
    assert {t["tid"], t2["tid"]} <= ids
    entry = next(e for e in listing.json() if e["token_id"] == t2["tid"])
    assert entry["image"] == "photo.jpg" and entry["variant"] == "thumb"
    assert entry["download"] is True and entry["uses"] == 0 and entry["uses_max"] == 3
    assert entry["partner"] is None and entry["expires"] == t2["expires"]
    table = s.iv("shares")
    assert table.rc == EXIT_OK and t["tid"] in table.out and "0/3" in table.out, str(table)
    assert_no_token([listing.out, listing.err, table.out, table.err], token, token2)
    assert_no_token([s.daemon.output().decode(errors="replace")], token, token2)


def test_share_refusals_say_why(desktop):
    s = desktop
    r = s.iv("share", "default/small.jpg", "--ttl", "8d")
    assert r.rc == EXIT_FAIL and r.out == "", str(r)
    assert "share:" in r.err and "over the maximum of 7d" in r.err and "--ttl 7d" in r.err, \
        str(r)
    r = s.iv("share", "default/small.jpg", "--partner", "nosuch")
    assert r.rc == EXIT_FAIL and "no partner named 'nosuch'" in r.err and r.out == "", str(r)
    r = s.iv("share", "default/nosuch.jpg")
    assert r.rc == EXIT_FAIL and r.out == "", str(r)
    for bad in (["--ttl", "soon"], ["--variant", "big"], ["--uses", "0"],
                ["--not-before", "tomorrow"]):
        r = s.iv("share", "default/small.jpg", *bad)
        assert r.rc == EXIT_USAGE and bad[0] in r.err and r.out == "", str(r)
    r = s.iv("share", "default/small.jpg", "--cidr", "10.0.0.0/8")
    assert r.rc == EXIT_USAGE, str(r)
    r = s.iv("ls", "--ttl", "1h")
    assert r.rc == EXIT_USAGE, str(r)
    assert listed_ids(s) == set(), "a refused share made a link"


def test_partners(desktop):
    s = desktop
    r = s.iv("partner", "add", "acme", "--cidr", "10.0.0.0/8",
             "--cidr", "192.0.2.0/24,2001:db8::/32", "--ttl", "2h", "--max-ttl", "3d")
    assert r.rc == EXIT_OK and "added partner acme" in r.out, str(r)
    for bad in ("10.1.2.3/8", "300.1.1.1"):
        r = s.iv("partner", "add", "bad", "--cidr", bad)
        assert r.rc == EXIT_FAIL, str(r)
        assert f"'{bad}' is not an address or a CIDR network" in r.err, str(r)
    r = s.iv("partner", "add", "acme")
    assert r.rc == EXIT_FAIL and "already a partner named acme" in r.err, str(r)
    r = s.iv("partner", "add", "long", "--max-ttl", "30d")
    assert r.rc == EXIT_FAIL and "over the vault's maximum" in r.err, str(r)
    r = s.iv("--json", "partner", "list")
    assert r.rc == EXIT_OK, str(r)
    (p,) = r.json()
    assert p["name"] == "acme" and p["disabled"] is False
    assert p["cidrs"] == ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"], p
    assert p["ttl"] == 7200 and p["max_ttl"] == 3 * 86400, p

    # a partner's link: its default lifetime, its maximum, its id in the token
    token, _ = share(s, "default/small.jpg", "--partner", "acme")
    t = decode(token)
    assert t["partner"] != 0 and t["expires"] - t["not_before"] == 7200
    r = s.iv("share", "default/small.jpg", "--partner", "acme", "--ttl", "4d")
    assert r.rc == EXIT_FAIL and "over the maximum of 3d" in r.err, str(r)
    e = shares(s, "--partner", "acme").json()
    assert [x["token_id"] for x in e] == [t["tid"]] and e[0]["partner"] == "acme"

    r = s.iv("partner", "disable", "acme")
    assert r.rc == EXIT_OK and "disabled partner acme" in r.out, str(r)
    assert s.iv("--json", "partner", "list").json()[0]["disabled"] is True
    r = s.iv("share", "default/small.jpg", "--partner", "acme")
    assert r.rc == EXIT_FAIL and "acme is disabled" in r.err, str(r)
    r = s.iv("partner", "disable", "nosuch")
    assert r.rc == EXIT_FAIL and "no partner named 'nosuch'" in r.err, str(r)
    r = s.iv("partner", "list", "--cidr", "10.0.0.0/8")
    assert r.rc == EXIT_USAGE, str(r)


def test_revoke(desktop):
    s = desktop
    assert s.iv("partner", "add", "acme").rc == EXIT_OK
    one = decode(share(s, "default/small.jpg")[0])["tid"]
    orig = decode(share(s, "default/photo.jpg")[0])["tid"]
    thumb = decode(share(s, "default/photo.jpg", "--variant", "thumb")[0])["tid"]
    other = decode(share(s, "default/icon.gif")[0])["tid"]
    p1 = decode(share(s, "default/icon.gif", "--partner", "acme")[0])["tid"]
    p2 = decode(share(s, "default/small.jpg", "--partner", "acme")[0])["tid"]
    assert listed_ids(s) == {one, orig, thumb, other, p1, p2}

    r = s.iv("revoke", one)
    assert r.rc == EXIT_OK and r.out.strip() == "revoked 1 link", str(r)
    assert one not in listed_ids(s)
    r = s.iv("revoke", one)
    assert r.rc == EXIT_FAIL and "no live link" in r.err, str(r)

    # by image: every variant's links to it, and nothing else
    assert listed_ids(s, "--image", "default/photo.jpg") == {orig, thumb}
    r = s.iv("revoke", "--image", "default/photo.jpg")
    assert r.rc == EXIT_OK and r.out.strip() == "revoked 2 links", str(r)
    assert listed_ids(s) == {other, p1, p2}

    r = s.iv("--json", "revoke", "--partner", "acme")
    assert r.rc == EXIT_OK and r.json() == [{"revoked": 2}], str(r)
    assert listed_ids(s) == {other}

    for bad in ("xyz", other[:-2], other + "00"):
        r = s.iv("revoke", bad)
        assert r.rc == EXIT_USAGE and "a token id is 32 hex digits" in r.err, str(r)
    token, _ = share(s, "default/gradient.png")
    r = s.iv("revoke", token)
    assert r.rc == EXIT_USAGE and "token id" in r.err, str(r)
    assert_no_token([r.out, r.err], token)
    r = s.iv("revoke", other, "--partner", "acme")
    assert r.rc == EXIT_USAGE, str(r)


def test_keys(desktop, tmp_path):
    s = desktop
    r = s.iv("--json", "keys")
    assert r.rc == EXIT_OK, str(r)
    (k1,) = r.json()
    assert k1["current"] is True and k1["retired"] == 0 and k1["owner"] == os.getuid()
    assert decode(share(s, "default/small.jpg")[0])["kid"] == k1["kid"]

    r = s.iv("--json", "keys", "rotate")
    assert r.rc == EXIT_OK, str(r)
    new = r.json()[0]["kid"]
    assert len(new) == 16 and new != k1["kid"]
    keys = {k["kid"]: k for k in s.iv("--json", "keys", "list").json()}
    assert set(keys) == {k1["kid"], new}
    assert keys[new]["current"] is True and keys[k1["kid"]]["current"] is False
    assert decode(share(s, "default/small.jpg")[0])["kid"] == new

    out = tmp_path / "keyring.pub"
    r = s.iv("keys", "export", out)
    assert r.rc == EXIT_OK, str(r)
    assert (out.stat().st_mode & 0o777) == 0o644
    text = out.read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "imgvault-keyring 1", text
    listed = {ln.split()[0]: ln.split()[2] for ln in lines[1:]}
    assert listed == {k1["kid"]: "live", new: "live"}, text
    r = s.iv("keys", "export")
    assert r.rc == EXIT_OK and r.out == text, str(r)

    r = s.iv("keys", "retire", k1["kid"])
    assert r.rc == EXIT_OK and "retired key" in r.out, str(r)
    keys = {k["kid"]: k for k in s.iv("--json", "keys").json()}
    assert keys[k1["kid"]]["retired"] > 0 and keys[new]["current"] is True
    assert s.iv("keys", "export", out).rc == EXIT_OK
    assert f"{k1['kid']} " in out.read_text() and "retired" in out.read_text()
    r = s.iv("keys", "retire", k1["kid"])
    assert r.rc == EXIT_FAIL and "no live signing key" in r.err, str(r)
    r = s.iv("keys", "retire", "nothex")
    assert r.rc == EXIT_USAGE and "16 hex digits" in r.err, str(r)
    r = s.iv("keys", "shred")
    assert r.rc == EXIT_USAGE, str(r)


def test_a_path_inside_the_mount(desktop, tmp_path):
    s = desktop
    mnt = s.daemon.mnt
    thumb = mnt / "default" / "thumb" / "small.jpg"
    assert thumb.exists()
    token, _ = share(s, thumb)
    t = decode(token)
    assert t["variant"] == VARIANT["thumb"]
    assert t["image"] == s.image_id("default", "small.jpg").lower()
    # relative to the working directory; --variant wins over the view
    assert decode(share(s, "mnt/default/pristine/small.jpg", cwd=tmp_path)[0])["variant"] == 1
    assert decode(share(s, "default/original/small.jpg", cwd=mnt,
                        )[0])["variant"] == VARIANT["original"]
    assert decode(share(s, thumb, "--variant", "original")[0])["variant"] == 0
    # revoke --image with a mount path revokes every variant's links
    assert len(listed_ids(s, "--image", thumb)) == 4
    r = s.iv("revoke", "--image", mnt / "default" / "original" / "small.jpg")
    assert r.rc == EXIT_OK and "revoked 4 links" in r.out, str(r)

    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(b"x")
    r = s.iv("share", outside)
    assert r.rc == EXIT_FAIL and "not inside the mount" in r.err, str(r)
    r = s.iv("share", mnt / "default")
    assert r.rc == EXIT_FAIL and "not an image file of the mount" in r.err, str(r)


def test_without_a_daemon(filled):
    if os.path.exists(SYSTEM_SOCKET):
        pytest.skip(f"{SYSTEM_SOCKET} exists: the commands would ask that daemon")
    for args in (["share", "default/small.jpg"], ["shares"], ["keys"], ["partner", "list"],
                 ["revoke", "--partner", "x"]):
        r = filled.iv(*args)
        assert r.rc == EXIT_FAIL and NO_DAEMON in r.err and r.out == "", str(r)


# ---- system store ----

def test_system_mode_peers(system_store, image_set, shared_dir):
    if not is_root():
        pytest.skip("system mode needs root")
    s = system_store
    add_user(s, s.alice)
    add_user(s, s.bob)
    for who in (s.alice, s.bob):
        r = s.iv("--user", who, "import", image_set["small.jpg"])
        assert r.rc == EXIT_OK, str(r)
    mnt = shared_dir / "mnt"
    d = start_daemon(s, mnt, system=True)
    try:
        def as_(user, *args, **kw):
            return run_cli(s.binary, "-s", s.path, *args, as_user=user, **kw)

        r = as_(s.alice, "--json", "share", "default/small.jpg")
        assert r.rc == EXIT_OK, str(r)
        a_token = r.json()[0]["url"].rsplit("/s/", 1)[1]
        a_tid = decode(a_token)["tid"]
        # a file of the mount, as alice: its view picks the variant
        thumb = mnt / s.alice / "default" / "thumb" / "small.jpg"
        r = as_(s.alice, "--json", "share", thumb)
        assert r.rc == EXIT_OK, str(r)
        assert decode(r.json()[0]["url"].rsplit("/s/", 1)[1])["variant"] == 2
        r = as_(s.bob, "share", mnt / s.alice / "default" / "original" / "small.jpg")
        assert r.rc == EXIT_FAIL and f"in {s.alice}'s vault" in r.err, str(r)

        r = as_(s.bob, "--json", "share", "default/small.jpg")
        assert r.rc == EXIT_OK, str(r)
        b_tid = r.json()[0]["token_id"]

        # each lists only their own links
        r = as_(s.alice, "--json", "shares")
        assert r.rc == EXIT_OK and len(r.json()) == 2 and b_tid not in r.out, str(r)
        # alice cannot revoke bob's link, nor learn it exists
        r = as_(s.alice, "revoke", b_tid)
        assert r.rc == EXIT_FAIL and "no live link" in r.err, str(r)
        r = as_(s.bob, "--json", "shares")
        assert [e["token_id"] for e in r.json()] == [b_tid], str(r)
        # admin operations are root's
        r = as_(s.alice, "keys", "rotate")
        assert r.rc == EXIT_FAIL and "only root rotates and retires" in r.err, str(r)
        r = as_(s.alice, "partner", "add", "acme")
        assert r.rc == EXIT_FAIL and "only root adds and disables partners" in r.err, str(r)

        r = s.iv("--json", "keys")
        assert r.rc == EXIT_OK, str(r)
        (key,) = r.json()
        assert key["owner"] is None and key["current"] is True, str(r)
        assert decode(a_token)["kid"] == key["kid"]
        r = s.iv("partner", "add", "acme", "--cidr", "198.51.100.0/24")
        assert r.rc == EXIT_OK, str(r)
        r = as_(s.alice, "--json", "partner", "list")
        assert r.rc == EXIT_OK and r.json()[0]["name"] == "acme", str(r)
        r = as_(s.alice, "--json", "share", "default/small.jpg", "--partner", "acme")
        assert r.rc == EXIT_OK, str(r)
        # root sees everyone's links
        assert {a_tid, b_tid} <= {e["token_id"] for e in s.iv("--json", "shares").json()}
        r = as_(s.alice, "revoke", a_tid)
        assert r.rc == EXIT_OK and "revoked 1 link" in r.out, str(r)
        assert_no_token([d.output().decode(errors="replace")], a_token)
    finally:
        stop_daemon(d)
