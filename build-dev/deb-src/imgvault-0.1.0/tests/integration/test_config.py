"""
imgvault.conf (imgvault.conf(5)): every program honours the file and flags
override it; a bad file stops a program with the line and exit 2 before it
starts anything; the shipped file is valid everywhere; the man pages render
and name every option; /etc/fstab mounts through mount.fuse3.

No test reads /etc/imgvault: every file is given with --config (or sits in
a temporary fstab), every socket and port is the test's own.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, clean_env, need_root, run_cli, write_secret
from mountlib import mountinfo_has

SHIPPED = ROOT / "packaging" / "imgvault.conf"
MAN = ROOT / "packaging" / "man"
PROGRAMS = {"imgvault": [], "imgvaultd": ["--system"], "imgvault-gateway": []}
PAGES = {"imgvault": "imgvault.1", "imgvaultd": "imgvaultd.8",
         "imgvault-gateway": "imgvault-gateway.8"}


def run(prog, *args, env=None, timeout=30):
    return run_cli(BUILD / prog, *args, env=env, timeout=timeout)


def conf(tmp_path, text, name="imgvault.conf"):
    p = tmp_path / name
    p.write_text(text)
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---- the shipped file ----

@pytest.mark.parametrize("prog", PROGRAMS)
def test_shipped_conf_is_valid(prog):
    r = run(prog, *PROGRAMS[prog], "--config", SHIPPED, "--check-config")
    assert r.rc == 0 and "settings are valid" in r.out, str(r)


@pytest.mark.parametrize("prog", PROGRAMS)
def test_shipped_conf_every_key_uncommented_is_valid(prog, tmp_path):
    """Every key of the shipped file, its comment removed, is a valid setting."""
    text = re.sub(r"(?m)^#([a-z-]+ = )", r"\1", SHIPPED.read_text())
    text = text.replace("readers-group = \n", "readers-group = root\n")
    assert text.count("\n#store = ") == 0
    r = run(prog, *PROGRAMS[prog], "--config", conf(tmp_path, text), "--check-config")
    assert r.rc == 0, str(r)


def test_shipped_conf_lists_every_gateway_option():
    """Each long option of imgvault-gateway --help is a key of [gateway]."""
    help_text = run("imgvault-gateway", "--help").out
    opts = set(re.findall(r"--([a-z][a-z-]+)", help_text)) - {
        "help", "version", "config", "check-config"}
    gateway = SHIPPED.read_text().split("[gateway]", 1)[1].split("\n[", 1)[0]
    keys = set(re.findall(r"(?m)^#?([a-z-]+) = ", gateway))
    assert opts <= keys, f"missing from [gateway]: {sorted(opts - keys)}"


# ---- bad files: the line, exit 2, nothing started ----

BAD = [
    ("[gateway]\nlisten = 127.0.0.1:{port}\nmax-per-ipp = 3\n", 3, "unknown key 'max-per-ipp'"),
    ("[gateway]\nlisten = 127.0.0.1:{port}\n\nthreads = 99\n", 4, "from 1 to 64"),
    ("[gateway]\nlisten = 127.0.0.1:{port}\nban-time = 10x\n", 3, "bad value '10x'"),
    ("[gateway]\nlisten = 127.0.0.1:{port}\ntrusted-proxy = 10.0.0.0/8, 10.1.2.3/8\n", 3,
     "bad value '10.1.2.3/8'"),
    ("[gateway]\nlisten = 127.0.0.1:{port}\ncors-origin = *\n", 3, "bad value '*'"),
    ("[gateway]\nlisten = 127.0.0.1:{port}\nlisten = 127.0.0.1:1\n", 3, "set twice"),
    ("[gateway]\nlisten = 127.0.0.1:{port}\n[imgvaultd]\nstore = relative/path\n", 4,
     "an absolute path"),
    ("[gateway]\nlisten = 127.0.0.1:{port}\n[imgvaultd]\nlog-json = maybe\n", 4, "yes or no"),
    ("listen = 127.0.0.1:{port}\n", 1, "outside a section"),
    ("[gatewy]\nlisten = 127.0.0.1:{port}\n", 1, "unknown section [gatewy]"),
    ("[gateway]\nlisten 127.0.0.1:{port}\n", 2, "expected 'key = value'"),
    ("[imgvault]\nshare.ttl = 1h\n", 2, "unknown key 'share.ttl'"),
]


@pytest.mark.parametrize("prog", PROGRAMS)
@pytest.mark.parametrize("text,line,what", BAD)
def test_bad_file_names_the_line(prog, text, line, what, tmp_path):
    port = free_port()
    path = conf(tmp_path, text.format(port=port))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = {"imgvault": ["ls"], "imgvault-gateway": [],
            "imgvaultd": ["-f", "--control", tmp_path / "c.sock", tmp_path, mnt]}[prog]
    r = run(prog, "--config", path, *args, timeout=20)
    assert r.rc == 2, str(r)
    assert f"{path}:{line}: " in r.err and what in r.err, str(r)
    assert not listening(port) and not mountinfo_has(mnt)


@pytest.mark.parametrize("prog", PROGRAMS)
def test_missing_config_file(prog, tmp_path):
    r = run(prog, *PROGRAMS[prog], "--config", tmp_path / "nope.conf", "--check-config")
    assert r.rc == 2, str(r)
    assert "nope.conf" in r.err and "No such file" in r.err, str(r)


def test_bad_value_message_says_what_is_expected(tmp_path):
    r = run("imgvault-gateway", "--config",
            conf(tmp_path, "# limits\n[gateway]\nmax-per-ip = lots\n"), "--check-config")
    assert r.rc == 2
    assert re.search(r"imgvault.conf:3: bad value 'lots' for max-per-ip: expected a whole "
                     r"number from 1 to 65536", r.err), r.err


# ---- honoured, and overridden by flags ----

def test_gateway_honours_file_and_flags_override(tmp_path):
    path = conf(tmp_path, "[gateway]\nlisten = 127.0.0.1:18181   # inline comment\n"
                f"keys = {tmp_path}/from-file.pub\ntimeout = 2m\n")
    r = run("imgvault-gateway", "--config", path, "--check-config")
    assert r.rc == 0 and "127.0.0.1:18181" in r.out, str(r)
    r = run("imgvault-gateway", "--config", path, "--listen", "127.0.0.1:18182",
            "--check-config")
    assert r.rc == 0 and "127.0.0.1:18182" in r.out, str(r)
    # Started for real: the file's keyring is where it looks...
    port = free_port()
    r = run("imgvault-gateway", "--config", path, "--listen", f"127.0.0.1:{port}")
    assert r.rc == 1 and f"{tmp_path}/from-file.pub" in r.err, str(r)
    # ...unless a flag says otherwise.
    r = run("imgvault-gateway", "--config", path, "--listen", f"127.0.0.1:{port}",
            "--keys", tmp_path / "from-flag.pub")
    assert r.rc == 1 and "from-flag.pub" in r.err and "from-file" not in r.err, str(r)


def test_gateway_log_json_from_file(tmp_path):
    """log-json = yes in the file: even the start-up error is a JSON line."""
    port = free_port()
    path = conf(tmp_path, f"[gateway]\nlisten = 127.0.0.1:{port}\nkeys = {tmp_path}/k.pub\n"
                f"control = {tmp_path}/c.sock\nlog-json = yes\n")
    r = run("imgvault-gateway", "--config", path)
    lines = r.err.splitlines()
    assert r.rc == 1 and lines and all(l.startswith('{"priority":') for l in lines), str(r)
    assert not listening(port)


def test_cli_honours_file_env_and_flags(store, tmp_path):
    path = conf(tmp_path, f"[imgvault]\nstore = {store.path}\n")
    r = run("imgvault", "--config", path, "--passphrase-file", store.passfile, "ls")
    assert r.rc == 0, str(r)
    r = run("imgvault", "--config", path, "--store", tmp_path / "other", "ls")
    assert r.rc != 0 and "other" in r.err, str(r)
    r = run("imgvault", "--config", path, "ls", env={"IMGVAULT_STORE": str(tmp_path / "env")})
    assert r.rc != 0 and f"{tmp_path}/env" in r.err, str(r)


def test_imgvaultd_honours_file(store, tmp_path):
    """store, mountpoint, control and passphrase-file from the file: no
    arguments; positional arguments override them (--check-config)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sock = tmp_path / "ctl.sock"
    path = conf(tmp_path, f"[imgvaultd]\nstore = {store.path}\nmountpoint = {mnt}\n"
                f"control = {sock}\npassphrase-file = {store.passfile}\n")
    r = run("imgvaultd", "--config", path, "--check-config")
    assert r.rc == 0 and f"serve {store.path} on {mnt}" in r.out, str(r)
    r = run("imgvaultd", "--config", path, "--check-config", "/x", "/y")
    assert r.rc == 0 and "serve /x on /y" in r.out, str(r)
    log = open(tmp_path / "d.log", "wb")
    p = subprocess.Popen([BUILD / "imgvaultd", "--config", path, "-f"], stdout=log,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=clean_env())
    try:
        deadline = time.monotonic() + 30
        while not mountinfo_has(mnt) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert mountinfo_has(mnt), (tmp_path / "d.log").read_text()
        assert "default" in os.listdir(mnt)
        assert sock.exists()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        log.close()
        if mountinfo_has(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
    assert p.returncode == 0, (tmp_path / "d.log").read_text()
    assert not mountinfo_has(mnt)


def test_imgvaultd_needs_store_and_mountpoint(tmp_path):
    r = run("imgvaultd", "--config", conf(tmp_path, "[imgvaultd]\nlog-json = no\n"))
    assert r.rc == 2 and "no store or mount point" in r.err, str(r)


# ---- man pages ----

@pytest.mark.parametrize("page", sorted(p.name for p in MAN.iterdir()))
def test_man_page_renders_without_warnings(page):
    p = subprocess.run(["man", "--warnings", "-l", str(MAN / page)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=clean_env({"MANWIDTH": "80"}), timeout=60)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr.decode()
    assert p.stderr.decode().strip() == "", p.stderr.decode()


@pytest.mark.parametrize("prog", PAGES)
def test_man_page_names_every_option(prog):
    text = (MAN / PAGES[prog]).read_text().replace("\\-", "-")
    opts = set(re.findall(r"--[a-z][a-z-]*", run(prog, "--help").out))
    missing = sorted(o for o in opts if not re.search(re.escape(o) + r"(?![a-z-])", text))
    assert not missing, f"{PAGES[prog]} lacks {missing}"


def test_conf_man_page_names_every_key():
    text = (MAN / "imgvault.conf.5").read_text().replace("\\-", "-")
    keys = re.findall(r"(?m)^#?([a-z-]+) = ", SHIPPED.read_text())
    missing = sorted({k for k in keys if not re.search(r"\.BI? " + re.escape(k) + r"\b", text)})
    assert not missing, f"imgvault.conf(5) lacks {missing}"


def test_make_install_puts_every_man_page(tmp_path):
    p = subprocess.run(["make", "-s", "-C", str(ROOT), f"BUILD={BUILD}", "install",
                        f"DESTDIR={tmp_path}", "PREFIX=/usr", "SYSCONFDIR=/etc"]
                       + (["SANITIZE=1"] if BUILD.name == "build-san" else []),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert p.returncode == 0, p.stdout.decode()
    for sec, name in (("1", "imgvault.1"), ("5", "imgvault.conf.5"), ("8", "imgvaultd.8"),
                      ("8", "imgvault-gateway.8")):
        assert (tmp_path / f"usr/share/man/man{sec}/{name}").exists(), name
    assert (tmp_path / "etc/imgvault/imgvault.conf").read_text() == SHIPPED.read_text()


# ---- /etc/fstab through mount.fuse3 ----

def fstab_mount(tmp_path, line, mnt, listing):
    """In a private mount namespace, with imgvaultd on mount(8)'s PATH (a bind
    mount over /usr/local/sbin, seen by no one else): mount -T FSTAB MNT, list
    it into @listing, umount.  Returns the completed shell."""
    fstab = tmp_path / "fstab"
    fstab.write_text(line + "\n")
    bindir = tmp_path / "sbin"
    bindir.mkdir()
    (bindir / "imgvaultd").symlink_to(BUILD / "imgvaultd")
    script = (f"set -e\nmount --bind {bindir} /usr/local/sbin\n"
              f"mount -T {fstab} {mnt}\n"
              f"grep -q ' {mnt} .* fuse.imgvaultd ' /proc/self/mountinfo\n"
              f"ls {mnt} > {listing}\n"
              f"umount {mnt}\n"
              f"! grep -q ' {mnt} ' /proc/self/mountinfo\n")
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                          env=clean_env())


def test_fstab_system_mount(system_store, tmp_path):
    need_root("mounts with mount(8)")
    from conftest import add_user
    add_user(system_store, system_store.alice)
    mnt = tmp_path / "srv"
    mnt.mkdir()
    line = (f"{system_store.path} {mnt} fuse.imgvaultd system,server-key="
            f"{system_store.server_key},control={tmp_path}/c.sock,"
            f"gateway-user=root,nofail,_netdev,noatime,nosuid,nodev 0 0")
    p = fstab_mount(tmp_path, line, mnt, tmp_path / "ls.out")
    assert p.returncode == 0, p.stdout.decode()
    assert (tmp_path / "ls.out").read_text().split() == [system_store.alice]


def test_fstab_desktop_mount_with_passphrase_file(store, tmp_path):
    need_root("mounts with mount(8)")
    mnt = tmp_path / "vault"
    mnt.mkdir()
    line = (f"{store.path} {mnt} fuse.imgvaultd passphrase-file={store.passfile},"
            f"control={tmp_path}/c.sock,noauto,x-systemd.automount,rw 0 0")
    p = fstab_mount(tmp_path, line, mnt, tmp_path / "ls.out")
    assert p.returncode == 0, p.stdout.decode()
    assert "default" in (tmp_path / "ls.out").read_text().split()


def test_fstab_options_with_a_bad_config_fail(tmp_path):
    """config= in -o is read like --config: a bad file stops the mount."""
    bad = conf(tmp_path, "[imgvaultd]\nfrobnicate = 1\n")
    mnt = tmp_path / "m"
    mnt.mkdir()
    r = run("imgvaultd", tmp_path, mnt, "-o", f"rw,config={bad},nosuid")
    assert r.rc == 2 and f"{bad}:2: unknown key 'frobnicate'" in r.err, str(r)
