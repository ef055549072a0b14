"""
Packaging: the systemd units, the bash completion, the system unit's command
line run by hand, and the Debian package (make deb, installed and purged).

- Units are checked as `make install` writes them (paths substituted), with
  `systemd-analyze verify`: any line it prints about a unit fails the test.
  The security exposure of both system services must rate "OK" or better.
- This machine may not run systemd as PID 1, so the system unit's ExecStart
  is also run by hand, the way systemd would run it: a credentials directory
  holding server.key (0400), NOTIFY_SOCKET for Type=notify, SIGTERM to stop,
  the ExecStopPost command on a stale mount.
- test_deb installs the package on this machine (root only), so it refuses
  to run where an imgvault package or a /var/lib/imgvault already exists,
  and purges what it installed, whatever happens.
"""
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, clean_env, need_root, run_cli, write_secret
from mountlib import mountinfo_has

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SYSTEM_UNITS = ["imgvaultd.service", "imgvault-gateway.service"]
USER_UNITS = ["imgvault@.service"]
UNIT_DIR = ROOT / "packaging" / "systemd"
COMPLETION = ROOT / "packaging" / "bash-completion" / "imgvault"
# Settings that give a service its own mount namespace, where a FUSE mount
# would be invisible to the rest of the system (systemd.exec(5), PrivateMounts=).
MOUNT_NS_SETTINGS = {
    "PrivateMounts", "PrivateTmp", "PrivateDevices", "ProtectSystem", "ProtectHome",
    "ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths",
    "BindPaths", "BindReadOnlyPaths", "TemporaryFileSystem", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc",
    "ProcSubset", "PrivateIPC", "RootDirectory", "RootImage", "MountAPIVFS",
    "DynamicUser", "PrivateNetwork", "NetworkNamespacePath", "LogNamespace",
}


def make(*args, timeout=600):
    """make -C ROOT ARGS, using the build the tests run against."""
    build = Path(BUILD)
    extra = [f"BUILD={build}"]
    if build.name == "build-san":
        extra.append("SANITIZE=1")
    p = subprocess.run(["make", "-s", "-C", str(ROOT), *extra, *args],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    assert p.returncode == 0, f"make {' '.join(args)}:\n{p.stdout.decode(errors='replace')}"
    return p.stdout.decode(errors="replace")


def unit_settings(path):
    """{section: [(key, value), ...]} of a unit file."""
    out, section = {}, None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, [])
            continue
        k, _, v = line.partition("=")
        out[section].append((k.strip(), v.strip()))
    return out


def setting(path, key, section="Service"):
    return [v for k, v in unit_settings(path).get(section, []) if k == key]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`make install` into a fresh prefix (the gateway stubbed if not built yet,
    so that verify can find its ExecStart): the prefix's Path."""
    prefix = tmp_path_factory.mktemp("prefix") / "usr"
    out = make("install", f"PREFIX={prefix}", f"SYSCONFDIR={prefix.parent}/etc")
    gw = prefix / "sbin" / "imgvault-gateway"
    if not gw.exists():
        assert "imgvault-gateway not installed" in out, out
        gw.write_text("#!/bin/sh\nexit 0\n")
        gw.chmod(0o755)
    return prefix


# ---- the units ----

def need_analyze():
    if not SYSTEMD_ANALYZE:
        pytest.skip("systemd-analyze is not installed (package systemd)")


def analyze(*args, user=False, tmp=None):
    env = clean_env()
    cmd = [SYSTEMD_ANALYZE]
    if user:
        rt = Path(tmp) / "xdg-runtime"
        rt.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(rt)
        cmd.append("--user")
    p = subprocess.run(cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, timeout=120)
    return p.returncode, p.stdout.decode(errors="replace")


@pytest.mark.parametrize("unit", SYSTEM_UNITS)
def test_system_unit_verifies(installed, unit):
    need_analyze()
    path = installed / "lib" / "systemd" / "system" / unit
    rc, out = analyze("verify", "--man=no", str(path))
    assert rc == 0 and out.strip() == "", f"systemd-analyze verify {unit}:\n{out}"


@pytest.mark.parametrize("unit", USER_UNITS)
def test_user_unit_verifies(installed, unit, tmp_path):
    need_analyze()
    # A template is verified as one of its instances.
    inst = tmp_path / unit.replace("@.", "@Vault.")
    shutil.copy(installed / "lib" / "systemd" / "user" / unit, inst)
    rc, out = analyze("verify", "--man=no", str(inst), user=True, tmp=tmp_path)
    assert rc == 0 and out.strip() == "", f"systemd-analyze --user verify {unit}:\n{out}"


@pytest.mark.parametrize("unit", SYSTEM_UNITS + USER_UNITS)
def test_unit_man_pages_exist(unit):
    """verify runs with --man=no (man(1) cannot see uninstalled pages): every
    man: link of a unit must be one of ours or a system page."""
    for docs in setting(UNIT_DIR / unit, "Documentation", "Unit"):
        for ref in docs.split():
            m = re.fullmatch(r"man:([\w.-]+)\((\d)\)", ref)
            if m:
                assert (ROOT / "packaging" / "man" / f"{m.group(1)}.{m.group(2)}").exists(), \
                    f"{unit}: {ref} is not in packaging/man"


# Exposure levels of systemd-analyze security, best first.
GOOD_ENOUGH = ("PERFECT", "SAFE", "OK")


@pytest.mark.parametrize("unit", SYSTEM_UNITS)
def test_security_exposure_ok(installed, unit):
    need_analyze()
    path = installed / "lib" / "systemd" / "system" / unit
    rc, out = analyze("security", "--offline=true", "--no-pager", str(path))
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", out)
    assert m, f"systemd-analyze security {unit}: no overall level\n{out}"
    assert m.group(2) in GOOD_ENOUGH, \
        f"{unit}: exposure {m.group(1)} {m.group(2)} (must be OK or better)\n{out}"


def test_imgvaultd_unit_has_no_mount_namespace():
    """A mount made in a service's own mount namespace never reaches the host
    (systemd remounts everything MS_SLAVE first): the system daemon's FUSE
    mount must be made in the host's namespace."""
    unit = UNIT_DIR / "imgvaultd.service"
    used = {k for k, _ in unit_settings(unit)["Service"]} & MOUNT_NS_SETTINGS
    assert not used, f"imgvaultd.service: {sorted(used)} would hide the mount from the host"


def test_imgvaultd_unit_essentials():
    unit = UNIT_DIR / "imgvaultd.service"
    assert setting(unit, "Type") == ["notify"]
    assert setting(unit, "NotifyAccess") == ["main"]
    assert setting(unit, "RuntimeDirectory") == ["imgvault"]
    assert setting(unit, "RuntimeDirectoryMode") == ["0755"]
    assert setting(unit, "CapabilityBoundingSet") == ["CAP_SYS_ADMIN"]
    assert setting(unit, "DevicePolicy") == ["closed"]
    assert setting(unit, "DeviceAllow") == ["/dev/fuse rw"]
    assert setting(unit, "NoNewPrivileges") == ["yes"]
    assert setting(unit, "LoadCredential") == ["server.key:/etc/imgvault/server.key"]
    start = setting(unit, "ExecStart")[0].split()
    assert start[:5] == ["/usr/sbin/imgvaultd", "--system", "-f", "-k",
                         "${CREDENTIALS_DIRECTORY}/server.key"]


def test_gateway_unit_essentials():
    unit = UNIT_DIR / "imgvault-gateway.service"
    assert setting(unit, "User") == ["imgvault-gw"]
    assert setting(unit, "CapabilityBoundingSet") == [""]
    assert setting(unit, "Requires", "Unit") == ["imgvaultd.service"]
    hidden = " ".join(setting(unit, "InaccessiblePaths")).split()
    assert "/var/lib/imgvault" in hidden and "-/etc/imgvault" in hidden
    assert setting(unit, "MemoryMax") == ["64M"]
    # Its settings come from imgvault.conf, handed over as a credential
    # (the sandbox hides /etc/imgvault).
    assert setting(unit, "LoadCredential") == ["imgvault.conf:/etc/imgvault/imgvault.conf"]
    start = setting(unit, "ExecStart")[0].split()
    assert start == ["/usr/sbin/imgvault-gateway", "--config",
                     "${CREDENTIALS_DIRECTORY}/imgvault.conf"]


# ---- the system unit's ExecStart, by hand ----

class Notify:
    """A NOTIFY_SOCKET, as systemd gives a Type=notify service."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def wait(self, proc, timeout=60):
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.1)
        while time.monotonic() < deadline:
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                if proc.poll() is not None:
                    return None
                continue
            if "READY=1" in msg.split("\n"):
                return msg
        return None

    def close(self):
        self.sock.close()


def test_system_unit_command_by_hand(imgvault, tmp_path, shared_dir):
    """ExecStart as imgvaultd.service runs it: --system -f -k
    $CREDENTIALS_DIRECTORY/server.key STORE MOUNT, readiness by sd_notify,
    clean unmount on SIGTERM; then a stale mount detached by ExecStopPost."""
    need_root("system mode mounts as root")
    store, mnt, creds = shared_dir / "store", shared_dir / "srv-imgvault", tmp_path / "creds"
    key = tmp_path / "server.key"
    r = run_cli(imgvault, "init", store, "--server-key", key)
    assert r.rc == 0, str(r)
    # systemd copies the credential into a private directory, 0400 root.
    creds.mkdir(mode=0o500)
    shutil.copy(key, creds / "server.key")
    (creds / "server.key").chmod(0o400)
    mnt.mkdir()
    notify = Notify(tmp_path / "notify.sock")
    env = clean_env({"CREDENTIALS_DIRECTORY": str(creds), "NOTIFY_SOCKET": notify.path,
                     "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    log = open(tmp_path / "imgvaultd.log", "wb")
    cmd = [str(BUILD / "imgvaultd"), "--system", "-f", "-k", f"{creds}/server.key",
           # The unit uses the default /run/imgvault/control.sock; a test must
           # not take the machine's.
           "--control", str(tmp_path / "control.sock"), str(store), str(mnt)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd="/", start_new_session=True)
    try:
        ready = notify.wait(proc)
        text = (tmp_path / "imgvaultd.log").read_text(errors="replace")
        assert ready, f"no READY=1 from imgvaultd (exit {proc.poll()}):\n{text}"
        assert mountinfo_has(mnt), f"READY=1 but {mnt} is not mounted:\n{text}"
        # systemctl stop: SIGTERM (KillSignal=), the daemon unmounts and exits 0.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (tmp_path / "imgvaultd.log").read_text()
        assert not mountinfo_has(mnt), "still mounted after SIGTERM"

        # A daemon that had to be killed leaves a stale mount: ExecStopPost.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd="/",
                                start_new_session=True)
        assert notify.wait(proc), (tmp_path / "imgvaultd.log").read_text()
        proc.kill()
        proc.wait(timeout=60)
        assert mountinfo_has(mnt)
        post = setting(UNIT_DIR / "imgvaultd.service", "ExecStopPost")[0]
        assert post.startswith("-")
        argv = [str(BUILD / "imgvaultd") if a == "/usr/sbin/imgvaultd" else a
                for a in post[1:].split()] + ["--mountpoint", str(mnt)]
        subprocess.run(argv, timeout=60)
        assert not mountinfo_has(mnt), f"{' '.join(argv)} left the stale mount"
        # ...and on a clean stop it finds nothing to do, quietly.
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        assert p.stdout == b"", p.stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        if mountinfo_has(mnt):
            subprocess.run(["umount", "-l", str(mnt)], timeout=60)
        notify.close()
        log.close()


# ---- bash completion ----

def complete(words, env=None, cwd=None):
    """COMPREPLY of _imgvault for @words (the last one being completed)."""
    script = (f"source {COMPLETION}\n"
              "COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); COMPREPLY=()\n"
              "_imgvault\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    e = clean_env({"PATH": f"{BUILD}:/usr/bin:/bin", **(env or {})})
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "imgvault", *words],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=cwd,
                       timeout=60)
    assert p.returncode == 0 and p.stderr == b"", p.stderr.decode(errors="replace")
    return [w for w in p.stdout.decode().split("\n") if w]


def help_text(*args):
    p = subprocess.run([str(BUILD / "imgvault"), *args, "--help"], stdout=subprocess.PIPE,
                       env=clean_env(), timeout=30)
    return p.stdout.decode()


def listed_commands():
    block = help_text().split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  ([a-z][a-z-]*)", block, re.M)


def test_completion_offers_every_command():
    cmds = listed_commands()
    assert cmds
    assert sorted(complete(["imgvault", ""])) == sorted(cmds)
    assert complete(["imgvault", "im"]) == ["import"]


def test_completion_offers_every_global_option():
    opts = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", help_text().split("Options:", 1)[1]))
    offered = set(complete(["imgvault", "-"]))
    # The command-specific ones come after their command.
    general = {"-s", "--store", "-k", "--server-key", "-u", "--user", "--passphrase-file", "--control",
               "--config", "--check-config", "--json", "--no-progress", "-q", "--quiet", "-h", "--help", "-V", "--version"}
    assert general <= opts, "imgvault --help no longer lists some options"
    assert offered == general


@pytest.mark.parametrize("cmd", listed_commands())
def test_completion_command_options(cmd, tmp_path):
    """The options a command's usage line names are offered after it, and the
    CLI accepts every option offered for it."""
    usage = help_text(cmd).split("\n", 1)[0]
    named = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[a-zA-Z])\b", usage))
    offered = set(complete(["imgvault", cmd, "-"]))
    assert named <= offered, f"{cmd}: {sorted(named - offered)} not offered"
    takes_arg = {"--kdf": "moderate", "-a": "x", "--album": "x", "-n": "1",
                 "--new-passphrase-file": "/dev/null", "--recovery-code-file": "/dev/null"}
    for opt in sorted(offered):
        if opt in ("-h", "--help", "-V", "--version"):
            continue
        args = [opt] + ([takes_arg[opt]] if opt in takes_arg else [])
        if opt in ("-s", "--store", "-k", "--server-key", "-u", "--user", "--passphrase-file"):
            continue   # global, taken by every command
        r = run_cli(BUILD / "imgvault", "-s", tmp_path / "none", cmd, *args)
        assert "does not take" not in r.err, f"offered {opt} after {cmd}, but: {r.err}"


def test_completion_option_arguments(tmp_path):
    assert complete(["imgvault", "--kdf", ""]) == ["interactive", "moderate", "sensitive"]
    assert "root" in complete(["imgvault", "-u", "ro"])
    (tmp_path / "somedir").mkdir()
    (tmp_path / "somefile").write_text("x")
    assert complete(["imgvault", "-s", "some"], cwd=tmp_path) == ["somedir"]
    assert sorted(complete(["imgvault", "--passphrase-file", "some"], cwd=tmp_path)) == \
        ["somedir", "somefile"]
    assert complete(["imgvault", "user", ""]) == ["add", "list", "passwd", "recover", "set",
                                                   "del"]
    assert complete(["imgvault", "user", "set", "root", "web"]) == ["web-read=on",
                                                                    "web-read=off"]
    assert complete(["imgvault", "audit", ""]) == ["verify", "head"]
    assert "thumb.size=" in complete(["imgvault", "config", ""])


def test_completion_albums_and_names(filled, image_set):
    """Albums and ALBUM/NAME from the store named on the line, with its
    passphrase file; without one, nothing (and no prompt)."""
    r = filled.iv("import", "--album", "my trip", image_set["small.jpg"])
    assert r.rc == 0, str(r)
    pre = ["imgvault", "-s", str(filled.path), "--passphrase-file", str(filled.passfile)]
    assert sorted(complete(pre + ["ls", ""])) == ["default", "my\\ trip"]
    assert complete(pre + ["cat", "my"]) == ["my\\ trip/"]
    assert complete(pre + ["cat", "my\\ trip/"]) == ["my\\ trip/small.jpg"]
    assert sorted(complete(pre + ["rm", "default/g"])) == ["default/gradient.png"]
    assert complete(pre + ["import", "--album", "my"]) == ["my\\ trip"]
    # No passphrase on the line and no daemon: imgvault cannot ask (setsid),
    # so completion offers nothing rather than hang.
    t = time.monotonic()
    assert complete(["imgvault", "-s", str(filled.path), "ls", ""]) == []
    assert time.monotonic() - t < 10


# ---- the Debian package ----

def sh(*cmd, check=True, timeout=300):
    for _ in range(60):
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, env=clean_env({"DEBIAN_FRONTEND": "noninteractive"}))
        out = p.stdout.decode(errors="replace")
        if "dpkg frontend lock" not in out and "lock-frontend" not in out:
            break
        time.sleep(2)      # someone else's apt or dpkg: wait for it
    if check:
        assert p.returncode == 0, f"$ {' '.join(cmd)}\n{out}"
    return out


def dpkg_installed(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return p.stdout.decode() not in ("", "not-installed")


def test_deb(tmp_path):
    """make deb; dpkg -i; the programs, conffile, user and directories; a
    changed conffile survives a reinstall; remove keeps the config; purge
    removes it and the gateway user, keeps a store and says so."""
    need_root("installs a .deb")
    if Path(BUILD).name == "build-san":
        pytest.skip("the package is built without sanitizers: the plain run tests it")
    for tool in ("dpkg-buildpackage", "dh", "lintian"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: packaging/deps.sh installs it")
    if dpkg_installed("imgvault"):
        pytest.skip("an imgvault package is installed on this machine: not touching it")
    if os.path.lexists("/var/lib/imgvault") or os.path.lexists("/etc/imgvault"):
        pytest.skip("/var/lib/imgvault or /etc/imgvault exists here: not touching it")
    gw_existed = subprocess.run(["getent", "passwd", "imgvault-gw"],
                                stdout=subprocess.DEVNULL).returncode == 0

    make("deb", timeout=900)
    debs = [d for d in (Path(BUILD) / "deb").glob("imgvault_*.deb")]
    assert len(debs) == 1, debs
    deb = str(debs[0])
    conf = Path("/etc/imgvault/imgvault.conf")
    try:
        sh("dpkg", "-i", deb)
        assert sh("/usr/bin/imgvault", "--version").startswith("imgvault ")
        assert sh("/usr/sbin/imgvaultd", "--help").startswith("usage: imgvaultd")
        for f in ("/lib/systemd/system/imgvaultd.service",
                  "/lib/systemd/system/imgvault-gateway.service",
                  "/usr/lib/systemd/user/imgvault@.service",
                  "/usr/libexec/imgvault/imgvault-user-mount",
                  "/usr/share/bash-completion/completions/imgvault",
                  "/usr/share/man/man1/imgvault.1.gz", "/usr/share/man/man8/imgvaultd.8.gz",
                  "/usr/share/man/man5/imgvault.conf.5.gz",
                  "/usr/share/man/man8/imgvault-gateway.8.gz",
                  ):
            assert os.path.exists(f), f"{f} not installed"
        assert list(Path("/usr/share/doc/imgvault").glob("OPERATIONS.md*"))
        assert "/etc/imgvault/imgvault.conf" in sh("dpkg-query", "-W", "-f=${Conffiles}",
                                                   "imgvault")
        pw = sh("getent", "passwd", "imgvault-gw").strip().split(":")
        assert int(pw[2]) < 1000 and pw[5] == "/nonexistent" and \
            pw[6] == "/usr/sbin/nologin", pw
        assert not os.path.exists("/nonexistent")
        st = os.stat("/var/lib/imgvault")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o700)
        st = os.stat("/etc/imgvault")
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755)

        # A changed conffile survives a reinstall (and an upgrade: dpkg
        # keeps a changed conffile unless the package's own copy changed,
        # and then asks).
        changed = "\n[imgvaultd]\nlog-json = yes\n"
        conf.write_text(conf.read_text() + changed)
        sh("dpkg", "-i", deb)
        assert changed in conf.read_text(), "conffile overwritten"

        sh("dpkg", "--remove", "imgvault")
        assert not os.path.exists("/usr/bin/imgvault")
        assert changed in conf.read_text(), "remove took the config"
        assert subprocess.run(["getent", "passwd", "imgvault-gw"],
                              stdout=subprocess.DEVNULL).returncode == 0

        # A store's files are never purged: a stand-in for one.
        Path("/var/lib/imgvault/catalog.db").write_bytes(b"not really")
        out = sh("dpkg", "--purge", "imgvault")
        assert not conf.exists(), "purge kept the config"
        assert "removed the system user imgvault-gw" in out, out
        assert subprocess.run(["getent", "passwd", "imgvault-gw"],
                              stdout=subprocess.DEVNULL).returncode != 0
        assert "kept the store /var/lib/imgvault" in out, out
        assert Path("/var/lib/imgvault/catalog.db").read_bytes() == b"not really"
        leftovers = [str(p) for p in Path("/etc/systemd").rglob("*imgvault*")]
        assert not leftovers, f"purge left {leftovers}"
    finally:
        if dpkg_installed("imgvault"):
            sh("dpkg", "--purge", "imgvault", check=False)
        shutil.rmtree("/var/lib/imgvault", ignore_errors=True)
        shutil.rmtree("/etc/imgvault", ignore_errors=True)
        if not gw_existed:
            subprocess.run(["userdel", "imgvault-gw"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            subprocess.run(["groupdel", "imgvault-gw"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


# ---- the desktop unit's start helper ----

def test_user_mount_helper(store, tmp_path):
    """imgvault-user-mount takes the passphrase from the keyring (a stand-in
    secret-tool here), execs imgvaultd (the main process: READY=1 comes from
    it), and the mount goes away on SIGTERM; no keyring entry: a clear error."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "secret-tool"
    fake.write_text("#!/bin/sh\n"
                    f"[ \"$1 $2 $3 $4 $5\" = 'lookup service imgvault store {store.path}' ] || exit 1\n"
                    f"cat {store.passfile}\n")
    fake.chmod(0o755)
    mnt = tmp_path / "Vault"
    notify = Notify(tmp_path / "notify.sock")
    env = clean_env({"IMGVAULT_STORE": str(store.path), "IMGVAULT_MOUNT": str(mnt),
                     "IMGVAULTD": str(BUILD / "imgvaultd"), "NOTIFY_SOCKET": notify.path,
                     "XDG_RUNTIME_DIR": str(tmp_path),
                     "PATH": f"{bindir}:/usr/bin:/bin:/usr/sbin:/sbin"})
    helper = ROOT / "packaging" / "systemd" / "imgvault-user-mount"
    log = open(tmp_path / "helper.log", "wb")
    proc = subprocess.Popen([str(helper)], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        ready = notify.wait(proc)
        assert ready, (tmp_path / "helper.log").read_text()
        assert mountinfo_has(mnt)
        assert Path(f"/proc/{proc.pid}/exe").resolve() == (BUILD / "imgvaultd").resolve(), \
            "the helper did not exec imgvaultd"
        assert (mnt / "default").is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (tmp_path / "helper.log").read_text()
        assert not mountinfo_has(mnt)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        if mountinfo_has(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], timeout=60)
        notify.close()
        log.close()
    # Another store: the keyring has nothing for it.
    env["IMGVAULT_STORE"] = str(tmp_path)
    p = subprocess.run([str(helper)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, timeout=60)
    assert p.returncode == 1
    assert b"no passphrase for" in p.stdout and b"secret-tool store" in p.stdout, p.stdout
