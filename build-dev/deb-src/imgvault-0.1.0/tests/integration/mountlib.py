"""
Helpers and fixtures for the tests of the mounted tree (imgvaultd, docs/MOUNT.md).

A test module loads it as a plugin for its fixtures, and imports helpers:

    pytest_plugins = ["mountlib"]
    from mountlib import as_user, write_file

Daemon         one imgvaultd started with -f: start() waits for the mount (and
               fails if the daemon dies first), stop() unmounts with
               fusermount3 -u -z and waits for the process, kill9() crashes it,
               check_output() fails on "<2>"/"<3>" lines or crash traces.
daemons        fixture: a list every Daemon is registered in; at teardown each
               is stopped and its output checked (unless daemon.expect_errors).
desktop_mount  the conftest `store` (root's desktop store) mounted -> DesktopMount
desktop_mount_as  factory: a desktop store of a new Unix user, mounted by that
               user through fusermount3 (an unprivileged mount)
system_mount   a system store with real Unix users alice, bob (vaults, alice with
               web-read=on) and web (no vault, in a new readers group), mounted
               by root with --system --readers-group -> SystemMount

as_user(name, fn, *args)   runs fn in a forked child with name's credentials
err_of(name, fn, *args)    0, or the errno fn's OSError carried
"""
import errno
import grp
import hashlib
import os
import pickle
import pwd
import re
import secrets
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, PASSPHRASE, add_user, clean_env, make_store, write_secret

IMGVAULTD = BUILD / "imgvaultd"
MOUNT_TIMEOUT = 30          # seconds from start to a usable mount
STOP_TIMEOUT = 30           # seconds for the daemon to exit after the unmount
OP_TIMEOUT = 60             # seconds any one operation in a child may take
VIEWS = ("original", "thumb", "pristine")

# What must never appear in a daemon's output, unless a test expects errors:
# journald priorities crit (2) and err (3), crash reports, sanitizer reports.
BAD_OUTPUT = re.compile(rb"^<[0-3]>.*$|^.*(?:crash|AddressSanitizer|runtime error|"
                        rb"LeakSanitizer|Segmentation fault).*$", re.M | re.I)


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def mountinfo_has(path):
    """Whether @path is a mount point, by /proc/self/mountinfo: unlike
    os.path.ismount this needs no access to the mount (another user's FUSE
    mount refuses even root)."""
    want = os.fsencode(os.path.realpath(path))
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = line.split(b" ")[4]
            mp = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), mp)
            if mp == want:
                return True
    return False


def fusermount_unmount(mnt):
    return subprocess.run(["fusermount3", "-u", "-z", str(mnt)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30)


def is_stale(mnt):
    """A FUSE mount whose daemon is gone answers ENOTCONN (to statfs: stat
    may come from the kernel's attribute cache)."""
    try:
        os.statvfs(mnt)
    except OSError as e:
        return e.errno == errno.ENOTCONN
    return False


class Daemon:
    """One imgvaultd in the foreground (-f), its output in a log file."""

    def __init__(self, args, mnt, log, as_user=None):
        self.args = [str(a) for a in args]
        self.mnt = Path(mnt)
        self.log_path = Path(log)
        self.as_user = as_user
        self.proc = None
        self.logf = None
        self.expect_errors = False    # a test that provokes <3> lines sets this
        self.killed = False           # kill9() was used: exit status not checked
        self.exit_codes = []

    # ---- life cycle ----
    def start(self, timeout=MOUNT_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        before = self.output().count(b"imgvaultd: serving ")
        self.logf = open(self.log_path, "ab")
        kw = {}
        if self.as_user:
            pw = pwd.getpwnam(self.as_user)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid,
                      extra_groups=os.getgrouplist(self.as_user, pw.pw_gid))
        env = clean_env({"HOME": "/", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        self.proc = subprocess.Popen([str(IMGVAULTD), *self.args, "-f"],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=env, cwd="/",
                                     start_new_session=True, **kw)
        self.killed = False
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.exit_codes.append(rc)
                self.logf.close()
                pytest.fail(f"imgvaultd exited ({rc}) before mounting {self.mnt}:\n"
                            f"{self.text()}")
            if self.output().count(b"imgvaultd: serving ") > before and \
                    mountinfo_has(self.mnt):
                return self
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
                fusermount_unmount(self.mnt)
                self.logf.close()
                pytest.fail(f"imgvaultd did not mount {self.mnt} within {timeout} s:\n"
                            f"{self.text()}")
            time.sleep(0.02)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, timeout=STOP_TIMEOUT):
        """Unmounts (fusermount3 -u -z) and waits for the daemon to exit;
        returns its exit status."""
        if self.proc is None:
            if mountinfo_has(self.mnt):       # left stale by kill9()
                fusermount_unmount(self.mnt)
            return None
        if self.running:
            p = fusermount_unmount(self.mnt)
            assert p.returncode == 0 or not mountinfo_has(self.mnt), \
                f"fusermount3 -u -z {self.mnt}: {p.stdout.decode(errors='replace')}"
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
                self._close()
                pytest.fail(f"imgvaultd did not exit within {timeout} s of the unmount "
                            f"of {self.mnt}:\n{self.text()}")
        else:
            rc = self.proc.wait()
            if mountinfo_has(self.mnt):
                fusermount_unmount(self.mnt)
        self._close()
        self.exit_codes.append(rc)
        self.proc = None
        return rc

    def kill9(self):
        """Crashes the daemon, leaving its mount stale."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)
        self.killed = True
        self._close()
        self.proc = None

    def _close(self):
        if self.logf and not self.logf.closed:
            self.logf.close()

    # ---- output ----
    def output(self):
        try:
            return self.log_path.read_bytes()
        except FileNotFoundError:
            return b""

    def text(self):
        return self.output().decode("utf-8", "replace")[-8000:]

    def bad_lines(self):
        return [m.group(0).decode("utf-8", "replace") for m in BAD_OUTPUT.finditer(self.output())]

    def check_output(self):
        """A list of complaints: error lines, crash traces, a bad exit status."""
        problems = []
        if not self.expect_errors:
            bad = self.bad_lines()
            if bad:
                problems.append(f"imgvaultd on {self.mnt} printed errors:\n  " +
                                "\n  ".join(bad[:20]))
        bad_exit = [rc for rc in self.exit_codes if rc not in (0, -signal.SIGKILL)]
        if bad_exit and not self.expect_errors:
            problems.append(f"imgvaultd on {self.mnt} exited with {bad_exit}")
        return problems


@pytest.fixture
def daemons():
    """Every Daemon a test starts goes here; at teardown each is stopped and
    its output checked (the libfuse test suite's output checker)."""
    started = []
    yield started
    problems = []
    for d in reversed(started):
        try:
            d.stop()
        except BaseException as e:     # keep stopping the others
            problems.append(f"stopping imgvaultd on {d.mnt}: {e}")
        problems += d.check_output()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# ---- running things as other users ----

def _drop_to(name):
    pw = pwd.getpwnam(name)
    os.setgroups(os.getgrouplist(name, pw.pw_gid))
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def as_user(name, fn, *args, timeout=OP_TIMEOUT):
    """fn(*args) in a forked child with @name's uid, gid and groups (a fresh
    process each time, as the kernel caches nothing per process).  Returns
    what fn returned (picklable); re-raises an OSError with its errno."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            os.close(r)
            _drop_to(name)
            try:
                res = ("ok", fn(*args))
            except OSError as e:
                res = ("oserror", e.errno, str(e))
            except BaseException as e:   # noqa: B902 - reported to the parent
                res = ("exc", repr(e))
            data = pickle.dumps(res)
            while data:
                data = data[os.write(w, data):]
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"{getattr(fn, '__name__', fn)}{args!r} as {name} "
                                     f"did not finish within {timeout} s (a hang?)")
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if not chunks:
        raise AssertionError(f"the child running {fn!r} as {name} died")
    res = pickle.loads(b"".join(chunks))
    if res[0] == "oserror":
        raise OSError(res[1], res[2])
    if res[0] == "exc":
        raise AssertionError(f"{fn!r} as {name}: {res[1]}")
    return res[1]


def err_of(name, fn, *args):
    """0 if fn(*args) succeeds as @name, else the errno of its OSError."""
    try:
        as_user(name, fn, *args)
    except OSError as e:
        return e.errno
    return 0


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_file(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC, fsync=False):
    """Writes @data with os calls, so that close()'s error is seen (Python's
    file objects and the shell hide it)."""
    fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        try:
            os.close(fd)
        except OSError:
            pass
        raise
    os.close(fd)


def wait_for(pred, timeout, what, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


# ---- mounts ----

class Mount:
    """A mounted tree: paths into it and its daemon."""

    def __init__(self, daemon, store):
        self.daemon = daemon
        self.store = store
        self.root = daemon.mnt

    def start(self):
        self.daemon.start()
        return self

    def stop(self):
        return self.daemon.stop()

    def restart(self):
        self.daemon.stop()
        self.daemon.start()

    def base(self, user=None):
        raise NotImplementedError

    def album(self, album="default", user=None):
        return self.base(user) / album

    def view(self, view, album="default", user=None):
        return self.album(album, user) / view

    def original(self, name, album="default", user=None):
        return self.view("original", album, user) / name

    def thumb(self, name, album="default", user=None):
        return self.view("thumb", album, user) / name

    def pristine(self, name, album="default", user=None):
        return self.view("pristine", album, user) / name


class DesktopMount(Mount):
    def base(self, user=None):
        return self.root


class SystemMount(Mount):
    def base(self, user=None):
        return self.root / (user or self.alice)

    def offline(self, *cli_args):
        """Runs the CLI on the store with the daemon stopped, then mounts
        again (settings are read at mount)."""
        self.daemon.stop()
        r = self.store.iv(*cli_args)
        self.daemon.start()
        return r


def new_mountpoint(parent, name="mnt", owner=None, mode=0o755):
    p = Path(parent) / name
    p.mkdir()
    if owner:
        os.chown(p, pwd.getpwnam(owner).pw_uid, -1)
    p.chmod(mode)
    return p


@pytest.fixture
def desktop_mount(store, tmp_path, daemons):
    """root's desktop store (conftest `store`) mounted on tmp_path/mnt."""
    mnt = new_mountpoint(tmp_path, mode=0o700)
    d = Daemon([store.path, mnt, "--passphrase-file", store.passfile], mnt,
               tmp_path / "imgvaultd.log")
    daemons.append(d)
    return DesktopMount(d, store).start()


@pytest.fixture
def desktop_mount_as(imgvault, unix_users, shared_dir, daemons):
    """make(prefix) -> a DesktopMount of a new Unix user's own store, mounted by
    that user (unprivileged, through fusermount3); .user is the name."""
    if os.stat("/dev/fuse").st_mode & 0o006 != 0o006:
        pytest.skip("/dev/fuse is not open to other users here (Debian's udev rule "
                    "makes it 0666): no unprivileged FUSE mounts")

    def make(prefix="desk"):
        user = unix_users(prefix)
        home = shared_dir / user
        home.mkdir(mode=0o700)
        pw = pwd.getpwnam(user)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        pf = write_secret(home / "passphrase", PASSPHRASE)
        os.chown(pf, pw.pw_uid, pw.pw_gid)
        st = make_store(imgvault, home / "store", pf, as_user=user)
        mnt = new_mountpoint(home, owner=user, mode=0o700)
        d = Daemon([st.path, mnt, "--passphrase-file", pf], mnt, home / "imgvaultd.log",
                   as_user=user)
        daemons.append(d)
        m = DesktopMount(d, st).start()
        m.user = user
        return m
    return make


@pytest.fixture
def readers_group():
    """A new Unix group (the web readers), deleted afterwards."""
    name = f"ivw{secrets.token_hex(3)}"
    p = subprocess.run(["groupadd", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    assert p.returncode == 0, p.stdout.decode(errors="replace")
    yield name
    subprocess.run(["groupdel", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)


@pytest.fixture
def system_mount(system_store, unix_users, readers_group, shared_dir, tmp_path, daemons):
    """The conftest system store with vaults for alice (web-read=on) and bob, a
    user web in the readers group (no vault), mounted by root with --system
    --readers-group on shared_dir/mnt."""
    s = system_store
    add_user(s, s.alice)
    add_user(s, s.bob)
    r = s.iv("user", "set", s.alice, "web-read=on")
    assert r.rc == 0, str(r)
    web = unix_users("web")
    p = subprocess.run(["usermod", "-a", "-G", readers_group, web], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    assert p.returncode == 0, p.stdout.decode(errors="replace")
    mnt = new_mountpoint(shared_dir, mode=0o755)
    # Its own control socket: the default system path is one per host.
    d = Daemon(["--system", "-k", s.server_key, "--readers-group", readers_group,
                "--control", shared_dir / "control.sock", s.path, mnt],
               mnt, tmp_path / "imgvaultd.log")
    daemons.append(d)
    m = SystemMount(d, s)
    m.alice, m.bob, m.web, m.group = s.alice, s.bob, web, readers_group
    m.gid = grp.getgrnam(readers_group).gr_gid
    return m.start()


def image_info(path_or_bytes):
    """(format, width, height) of an image, decoded in full by PIL (or
    identify when PIL is missing)."""
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        import io
        src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) \
            else open(path_or_bytes, "rb")
        with src, Image.open(src) as im:
            im.load()
            return im.format, im.size[0], im.size[1]
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else read_bytes(path_or_bytes)
    p = subprocess.run(["/usr/bin/identify", "-regard-warnings", "-format", "%m %w %h\n", "-"],
                       input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    fmt, w, h = p.stdout.decode().splitlines()[0].split()
    return fmt, int(w), int(h)

