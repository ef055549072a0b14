"""
A local user against someone else (issue 10, DESIGN §1 T2): a pre-made
runtime directory and a fake daemon, root's export and import turned
against root, a starved control socket, a faked audit line.  Each runs the
attacker as a real Unix user.
"""
import json
import os
import socket
import sqlite3
import struct
import subprocess
import time

import pytest

from conftest import (BUILD, EXIT_OK, add_user, clean_env, is_root, make_store, run_cli,
                      uid_of)


def need_root():
    if not is_root():
        pytest.skip("needs root: makes Unix users")


# ---- 4. the audit printer ----

CRAFTED = "10.0.0.1\x1b[2J\x1b]0;owned\x07\r\n     9 2026-01-01T00:00:00Z root root fake ok \u009b31m\u202e\\"


def test_audit_escapes_crafted_fields(store):
    r = store.iv("audit")
    assert r.rc == EXIT_OK, str(r)
    with store.db() as db:
        seq, = db.execute("SELECT max(seq) FROM audit").fetchone()
        db.execute("INSERT INTO audit(seq, time, actor, subject, action, object, result, "
                    "detail, hash) VALUES (?, 0, 0, -1, ?, ?, ?, ?, zeroblob(32))",
                    (seq + 1, "share.\x1b[1mfetch", "obj\nect", "o\x9bk",
                     "client=" + CRAFTED))
        db.execute("INSERT INTO audit(seq, time, actor, subject, action, object, result, "
                    "detail, hash) VALUES (?, 0, 0, -1, 'x', 'y', 'z', ?, zeroblob(32))",
                    (seq + 2, b"not utf-8 \xff\xfe \x1b[0m"))
    r = store.iv("audit")
    assert r.rc == EXIT_OK, str(r)
    lines = r.stdout.split(b"\n")
    assert lines[-1] == b""
    entries = lines[:-1]
    assert len(entries) == seq + 2, str(r)   # one line per entry, no forged ones
    for line in entries:
        assert not any(b < 0x20 or b == 0x7f for b in line), line
        assert b"\xc2\x9b" not in line and "\u202e".encode() not in line, line
        line.decode("utf-8")                 # no stray bytes either
    assert b"\\x1b[2J" in entries[-2] and b"\\x0d\\n" in entries[-2], entries[-2]
    assert b"\\\\" in entries[-2] and b"\\xff\\xfe" in entries[-1], entries
    # --json stays JSON, one object per line, with the exact text
    r = store.iv("--json", "audit")
    assert r.rc == EXIT_OK, str(r)
    assert not any(b < 0x20 and b != 0x0a for b in r.stdout)
    objs = r.json()
    assert len(objs) == seq + 2
    assert objs[-2]["detail"] == "client=" + CRAFTED and objs[-2]["object"] == "obj\nect"
