"""--help works for the program and every command, and bad command lines say so."""
import re
import subprocess

import pytest

from conftest import BUILD, clean_env

# The commands there must be; any others --help lists are checked as well.
REQUIRED = ["init", "user", "import", "export", "ls", "cat", "rm", "fsck", "rekey", "audit"]


def listed_commands():
    try:
        out = subprocess.run([str(BUILD / "imgvault"), "--help"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env=clean_env(), timeout=30).stdout
    except OSError:
        return []
    text = out.decode(errors="replace")
    block = text.split("Commands:\n", 1)[-1].split("\n\n", 1)[0]
    return re.findall(r"^  ([a-z][a-z-]*)", block, re.M)


COMMANDS = REQUIRED + [c for c in listed_commands() if c not in REQUIRED]


def test_global_help(iv):
    r = iv("--help")
    assert r.rc == 0, str(r)
    assert r.out.startswith("usage: imgvault"), str(r)
    for cmd in COMMANDS:
        assert f"\n  {cmd}" in r.out, f"--help does not list {cmd}\n{r}"
    assert "Exit codes" in r.out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_command_help(iv, cmd):
    for form in ([cmd, "--help"], [cmd, "-h"], ["--help", cmd]):
        r = iv(*form)
        assert r.rc == 0, str(r)
        assert r.out.startswith(f"usage: imgvault {cmd}"), str(r)
        assert "usage" in r.out
        assert r.err == "", str(r)


def test_no_command_is_a_usage_error(iv):
    r = iv()
    assert r.rc == 2, str(r)
    assert "usage" in r.err


def test_unknown_command(iv):
    r = iv("frobnicate")
    assert r.rc == 2, str(r)
    assert "unknown command 'frobnicate'" in r.err


def test_option_of_another_command_is_refused(iv, tmp_path):
    r = iv("-s", tmp_path, "ls", "--full")
    assert r.rc == 2, str(r)
    assert "ls does not take" in r.err


def test_version(iv):
    r = iv("--version")
    assert r.rc == 0, str(r)
    assert r.out.startswith("imgvault "), str(r)
