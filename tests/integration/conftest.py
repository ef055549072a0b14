"""
Integration tests of the imgvault command line: real processes, real stores.

Every test gets its own store (under pytest's tmp_path), its own copy of the
generated images and, when it needs Unix users, its own freshly created users:
tests never share a directory, a user or a lock.

Fixtures
  imgvault      path of the binary ($IMGVAULT_BUILD/imgvault, default build/)
  iv            iv(*args, **kw): run the CLI with a timeout -> CompletedProcess
  passfile      a file holding the store's passphrase
  store         a fresh desktop store (Argon2 cost "interactive") -> Store
  image_set     a few generated JPEG/PNG/GIF files, one > 200 KB (several chunks)
  filled        `store` with the image set imported into album "default"
  unix_users    factory making real Unix users (root only; removed afterwards)
  shared_dir    a directory other Unix users can reach (for tests run as them)
  system_store  a system store, its server key and two new Unix users (root)

Images are generated with Debian's ImageMagick (/usr/bin/convert); nothing
binary is committed.
"""
import hashlib
import json
import os
import pwd
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("IMGVAULT_BUILD") or ROOT / "build")
# A sanitizer build (make SANITIZE=1: build-san/) inflates memory: ASan's shadow
# and quarantine.  Memory bounds are asserted on the normal build only.
SANITIZED = BUILD.name == "build-san"
memory_bound = pytest.mark.skipif(SANITIZED, reason="memory bounds are measured on the "
                                  "normal build (ASan inflates resident memory)")
CONVERT = "/usr/bin/convert"
TIMEOUT = 60                     # seconds, any one CLI run
PASSPHRASE = "correct horse battery staple"
CHUNK = 65536                    # plaintext bytes per sealed chunk
SEALED_CHUNK = 24 + CHUNK + 16   # nonce + ciphertext + tag
HEADER = 128                     # blob header bytes

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_AUTH, EXIT_BUSY, EXIT_DAMAGE, EXIT_PARTIAL = range(7)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def padded(n):
    """The bytes a store keeps for @n bytes of content (Padmé, FORMAT.md §2.3):
    what quotas and `user list` count."""
    if n < 2:
        return n
    e = n.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (n + mask) & ~mask


def is_root():
    return os.geteuid() == 0


def fsbytes(x):
    """An argument as bytes (names need not be UTF-8)."""
    if isinstance(x, bytes):
        return x
    return os.fsencode(str(x))


class Run(subprocess.CompletedProcess):
    """A CompletedProcess (stdout and stderr are bytes) with conveniences."""

    @property
    def rc(self):
        return self.returncode

    @property
    def out(self):
        return self.stdout.decode("utf-8", "surrogateescape")

    @property
    def err(self):
        return self.stderr.decode("utf-8", "surrogateescape")

    def json(self):
        """stdout as JSON lines (the CLI's --json output)."""
        # split("\n"), not splitlines(): names may hold U+2028 or U+0085.
        return [json.loads(line) for line in self.out.split("\n") if line.strip()]

    def __str__(self):
        return (f"$ {' '.join(os.fsdecode(a) for a in self.args)}\n"
                f"exit {self.returncode}\n--- stdout ---\n{self.out[:4000]}\n"
                f"--- stderr ---\n{self.err[:4000]}")


def clean_env(extra=None):
    """The environment for the CLI: none of the caller's imgvault settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("IMGVAULT_") and k not in ("CREDENTIALS_DIRECTORY",)}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    if extra:
        env.update(extra)
    return env


def run_cli(binary, *args, input=None, timeout=TIMEOUT, env=None, as_user=None, cwd=None):
    cmd = [fsbytes(binary)] + [fsbytes(a) for a in args]
    if as_user is not None:
        cmd = [b"runuser", b"-u", fsbytes(as_user), b"--"] + cmd
    if isinstance(input, str):
        input = input.encode()
    p = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=clean_env(env), cwd=cwd,
                       stdin=None if input is not None else subprocess.DEVNULL)
    return Run(p.args, p.returncode, p.stdout, p.stderr)


@pytest.fixture(scope="session")
def imgvault():
    path = BUILD / "imgvault"
    if not os.access(path, os.X_OK):
        pytest.exit(f"{path} is missing: run make first (or set IMGVAULT_BUILD)", returncode=1)
    return path


@pytest.fixture
def iv(imgvault):
    """iv(*args, input=, timeout=, env=, as_user=, cwd=) -> CompletedProcess."""
    def _iv(*args, **kw):
        return run_cli(imgvault, *args, **kw)
    return _iv


def write_secret(path, text):
    path = Path(path)
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def passfile(tmp_path):
    return write_secret(tmp_path / "passphrase", PASSPHRASE)


class Store:
    """A store on disk plus the means to drive it."""

    def __init__(self, binary, path, passfile=None, recovery=None, server_key=None,
                 as_user=None):
        self.binary = binary
        self.path = Path(path)
        self.passfile = passfile
        self.recovery = recovery
        self.server_key = server_key
        self.as_user = as_user

    def iv(self, *args, passfile="default", **kw):
        """Runs the CLI on this store, with its passphrase file unless told otherwise."""
        pre = ["-s", self.path]
        if self.server_key is not None:
            pre += ["-k", self.server_key]
        pf = self.passfile if passfile == "default" else passfile
        if pf is not None:
            pre += ["--passphrase-file", pf]
        kw.setdefault("as_user", self.as_user)
        return run_cli(self.binary, *pre, *args, **kw)

    __call__ = iv

    # ---- looking inside ----
    def db(self):
        return sqlite3.connect(str(self.path / "catalog.db"))

    def blob_files(self):
        return sorted(p for p in (self.path / "blobs").rglob("*") if p.is_file())

    def blob_path(self, blob_hex):
        h = blob_hex.lower()
        return self.path / "blobs" / h[0:2] / h[2:4] / h

    def ls_json(self, album="default", **kw):
        r = self.iv("--json", "ls", album, **kw)
        assert r.rc == 0, str(r)
        return r.json()

    def image_id(self, album, name, **kw):
        """The image's public id (the "id" of ls --json)."""
        want = fsbytes(name)
        for im in self.ls_json(album, **kw):
            if im["name"].encode("utf-8", "surrogateescape") == want:
                return im["id"]
        raise KeyError(f"{album}/{name} not listed")

    def blob_of(self, album, name, pristine=False, **kw):
        """Path of the blob holding an image's current (or pristine) version."""
        pid = self.image_id(album, name, **kw)
        col = "pristine_version" if pristine else "current_version"
        with self.db() as c:
            row = c.execute(f"SELECT hex(v.blob_id) FROM images i JOIN versions v "
                            f"ON v.id = i.{col} WHERE hex(i.pid) = upper(?)", (pid,)).fetchone()
        assert row, f"no version row for image {pid}"
        return self.blob_path(row[0])

    def referenced_blobs(self):
        """Hex ids of every blob the catalog points at (any table's blob_id)."""
        ids = set()
        with self.db() as c:
            tables = [t for (t,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for t in tables:
                cols = [row[1] for row in c.execute(f"PRAGMA table_info({t})")]
                if "blob_id" in cols:
                    ids |= {h.lower() for (h,) in c.execute(f"SELECT hex(blob_id) FROM {t}")}
        return ids

    def blobs_of_uid(self, uid):
        """Hex ids of every blob of @uid's vault: its versions and their thumbnails."""
        with self.db() as c:
            ids = {h.lower() for (h,) in c.execute(
                "SELECT hex(v.blob_id) FROM versions v JOIN images i ON i.id = v.image_id "
                "WHERE i.uid = ?", (uid,))}
            if c.execute("SELECT 1 FROM sqlite_master WHERE name = 'thumbs'").fetchone():
                ids |= {h.lower() for (h,) in c.execute(
                    "SELECT hex(t.blob_id) FROM thumbs t JOIN versions v ON v.id = t.version_id"
                    " JOIN images i ON i.id = v.image_id WHERE i.uid = ?", (uid,))}
        return ids

    def cat(self, spec, **kw):
        return self.iv("cat", spec, **kw)

    def checkpoint(self):
        """Folds the WAL into catalog.db (the CLI leaves none behind; be sure)."""
        c = self.db()
        try:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            c.close()


def assert_reads_back(store, expected, **kw):
    """Every "ALBUM/NAME" -> bytes of @expected reads back byte-exact with cat."""
    for spec, data in expected.items():
        r = store.cat(spec, **kw)
        assert r.rc == 0, str(r)
        assert sha256(r.stdout) == sha256(data), f"{spec} reads back different bytes"


def assert_fsck_clean(store, **kw):
    r = store.iv("fsck", **kw)
    assert r.rc == 0, str(r)
    assert "damaged:" not in r.out, str(r)
    return r


def make_store(binary, path, passfile, kdf="interactive", as_user=None):
    r = run_cli(binary, "--json", "init", path, "--passphrase-file", passfile, "--kdf", kdf,
                as_user=as_user)
    assert r.rc == 0, str(r)
    lines = r.json()
    assert lines and "recovery_code" in lines[-1], str(r)
    return Store(binary, path, passfile, lines[-1]["recovery_code"], as_user=as_user)


@pytest.fixture
def store(imgvault, tmp_path, passfile):
    return make_store(imgvault, tmp_path / "store", passfile)


# ---- images ----

def convert(*args, timeout=120):
    p = subprocess.run([CONVERT, *map(str, args)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    assert p.returncode == 0, p.stderr.decode(errors="replace")


def make_noise_images(dest, count, prefix="img", ext="jpg", w=200, h=150, seed=1, step=4):
    """@count distinct images in one ImageMagick run: dest/prefix-NN.ext."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    args = ["-seed", seed]
    for i in range(count):
        args += ["-size", f"{w + i * step}x{h + i * step}", "plasma:"]
    if ext == "png":
        args += ["+noise", "Random"]
    args += ["-quality", "92", "+adjoin", dest / f"{prefix}-%02d.{ext}"]
    convert(*args)
    files = sorted(dest.glob(f"{prefix}-*.{ext}"))
    assert len(files) == count
    assert len({sha256(f.read_bytes()) for f in files}) == count, "images are not distinct"
    return files


@pytest.fixture(scope="session")
def image_master(tmp_path_factory):
    if not os.access(CONVERT, os.X_OK):
        pytest.exit(f"{CONVERT} (Debian's imagemagick) is needed to generate test images",
                    returncode=1)
    d = tmp_path_factory.mktemp("images")
    convert("-size", "64x48", "xc:red", "-quality", "90", d / "small.jpg")
    convert("-seed", "3", "-size", "640x480", "plasma:", "-quality", "92", d / "photo.jpg")
    convert("-size", "24x24", "xc:blue", d / "icon.gif")
    convert("-seed", "4", "-size", "120x90", "gradient:white-black", d / "gradient.png")
    # Several 64 KiB chunks, and not a multiple of the chunk size.
    convert("-seed", "5", "-size", "420x300", "plasma:", "+noise", "Random", d / "big.png")
    assert (d / "big.png").stat().st_size > 200 * 1024
    assert (d / "big.png").stat().st_size % CHUNK != 0
    return d


@pytest.fixture
def image_set(image_master, tmp_path):
    """This test's own copy of the generated images: {filename: Path}."""
    d = tmp_path / "images"
    shutil.copytree(image_master, d)
    return {p.name: p for p in sorted(d.iterdir())}


def aligned_image(src, dest, chunks=4):
    """A PNG padded (after IEND, which readers ignore) to exactly @chunks x 64 KiB,
    so its blob ends on a chunk boundary."""
    data = Path(src).read_bytes()
    assert len(data) < chunks * CHUNK
    data += b"\0" * (chunks * CHUNK - len(data))
    Path(dest).write_bytes(data)
    return Path(dest)


@pytest.fixture
def filled(store, image_set):
    """`store` with the image set imported into "default"; store.expected maps
    "default/NAME" to the bytes it must read back as."""
    r = store.iv("--json", "import", *image_set.values())
    assert r.rc == 0, str(r)
    store.expected = {f"default/{n}": p.read_bytes() for n, p in image_set.items()}
    return store


# ---- Unix users (root only) ----

def need_root(why):
    if not is_root():
        pytest.skip(f"needs root: {why}")


@pytest.fixture
def unix_users():
    """make(prefix) -> a new Unix user's name (unique, no home), deleted afterwards."""
    need_root("creates Unix users with useradd")
    if not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("useradd and runuser are needed")
    made = []

    def make(prefix="ivt"):
        name = f"{prefix}{secrets.token_hex(3)}"[:31]
        p = subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        assert p.returncode == 0, p.stdout.decode(errors="replace")
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["userdel", name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)


def uid_of(name):
    return pwd.getpwnam(name).pw_uid


@pytest.fixture
def shared_dir():
    """A directory under /tmp that other users can traverse (tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="imgvault-it-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def system_store(imgvault, tmp_path, unix_users, shared_dir):
    """A system store, its server key (0400) and two real Unix users, alice and
    bob (names made unique: alice3f9a0c), not yet added to the store (root only).
    The store sits in `shared_dir`, so tests may let those users reach it."""
    key = tmp_path / "server.key"
    path = shared_dir / "sysstore"
    r = run_cli(imgvault, "init", path, "--server-key", key)
    assert r.rc == 0, str(r)
    assert (key.stat().st_mode & 0o777) == 0o400
    s = Store(imgvault, path, passfile=None, server_key=key)
    s.alice = unix_users("alice")
    s.bob = unix_users("bob")
    return s


def add_user(store, name, passfile=None):
    """Root adds @name's vault to a system store; returns its recovery code."""
    how = ["--passphrase-file", passfile, "--kdf", "interactive"] if passfile \
        else ["--no-passphrase"]
    r = store.iv("--json", "user", "add", name, *how)
    assert r.rc == 0, str(r)
    return r.json()[-1]["recovery_code"]
