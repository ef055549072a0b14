"""System stores with real Unix users (root only): user add/list/set/del,
root acting for a user with --user, and users kept apart (T2)."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import EXIT_AUTH, EXIT_FAIL, add_user, padded, run_cli, sha256, uid_of, write_secret


def open_up(path):
    """Lets every user reach a store: the test's stand-in for the daemon,
    which is what gives users access to a system store."""
    subprocess.run(["chmod", "-R", "a+rwX", str(path)], check=True, timeout=30)


def user_file(path, text, owner=None, mode=0o600):
    write_secret(path, text)
    if owner:
        os.chown(path, uid_of(owner), -1)
    os.chmod(path, mode)
    return path


@pytest.fixture
def two_users(system_store, image_set, shared_dir):
    """alice (passphrase and server slots) holds the image set, imported by
    root; bob (server slot only) holds one image of his own."""
    s = system_store
    s.alice_pass = user_file(shared_dir / "alice.pass", "alice's secret phrase", s.alice,
                             0o644)     # bob gets to try it too
    s.alice_code = add_user(s, s.alice, s.alice_pass)
    s.bob_code = add_user(s, s.bob)
    r = s.iv("--user", s.alice, "import", *image_set.values())
    assert r.rc == 0, str(r)
    bob_img = shared_dir / "bob-only.gif"
    shutil.copy(image_set["icon.gif"], bob_img)
    r = s.iv("--user", s.bob, "import", "--album", "bobs", bob_img)
    assert r.rc == 0, str(r)
    s.expected = {f"default/{n}": p.read_bytes() for n, p in image_set.items()}
    s.bob_expected = {"bobs/bob-only.gif": bob_img.read_bytes()}
    return s


def test_user_add_and_list(two_users):
    s = two_users
    r = s.iv("--json", "user", "list")
    assert r.rc == 0, str(r)
    users = {u["user"]: u for u in r.json()}
    assert set(users) == {s.alice, s.bob}
    a, b = users[s.alice], users[s.bob]
    assert (a["uid"], a["passphrase"], a["server_key"], a["recovery"]) == \
        (uid_of(s.alice), True, True, True)
    assert (b["uid"], b["passphrase"], b["server_key"], b["recovery"]) == \
        (uid_of(s.bob), False, True, True)
    assert a["images"] == len(s.expected) and b["images"] == 1
    assert a["bytes"] == sum(padded(len(v)) for v in s.expected.values())   # as stored

    r = s.iv("user", "list")
    assert r.rc == 0, str(r)
    assert re.search(rf"^{s.alice}\s+{uid_of(s.alice)}\s+passphrase,server\s", r.out, re.M), str(r)
    assert re.search(rf"^{s.bob}\s+{uid_of(s.bob)}\s+server\s", r.out, re.M), str(r)

    r = s.iv("user", "add", s.alice, "--no-passphrase")
    assert r.rc == EXIT_FAIL, str(r)
    assert "already has a vault" in r.err, str(r)
    r = s.iv("user", "add", "no-such-user-here", "--no-passphrase")
    assert r.rc == EXIT_FAIL, str(r)
    assert "no Unix user 'no-such-user-here'" in r.err, str(r)
    r = s.iv("user", "add", "root", "--no-passphrase")
    assert r.rc == EXIT_FAIL, str(r)
    assert "root is not a vault user" in r.err, str(r)


def test_root_acts_for_a_user(two_users, tmp_path):
    s = two_users
    for spec, data in s.expected.items():
        r = s.iv("--user", s.alice, "cat", spec)
        assert r.rc == 0 and r.stdout == data, str(r)
    r = s.iv("--user", s.bob, "cat", "bobs/bob-only.gif")
    assert r.rc == 0 and r.stdout == s.bob_expected["bobs/bob-only.gif"], str(r)
    # Each vault sees only its own albums.
    r = s.iv("--user", s.alice, "cat", "bobs/bob-only.gif")
    assert r.rc == EXIT_FAIL and r.stdout == b"", str(r)
    assert "no album 'bobs'" in r.err
    r = s.iv("--user", s.bob, "--json", "ls")
    assert sorted(a["album"] for a in r.json()) == ["bobs", "default"], str(r)
    r = s.iv("--user", s.bob, "ls", "default")
    assert r.rc == 0 and r.out == "", str(r)
    dest = tmp_path / "alice-export"
    r = s.iv("--user", s.alice, "export", dest)
    assert r.rc == 0, str(r)
    assert sorted(os.listdir(dest / "default")) == sorted(k.split("/")[1] for k in s.expected)
    r = s.iv("fsck")
    assert r.rc == 0, str(r)
    assert "damaged:" not in r.out


def test_users_are_kept_apart(two_users, image_set):
    s = two_users
    open_up(s.path)
    # alice, as herself, with her passphrase: her vault, imported by root.
    for spec, data in s.expected.items():
        r = s.iv("cat", spec, passfile=s.alice_pass, as_user=s.alice)
        assert r.rc == 0 and r.stdout == data, str(r)
    # bob's vault has no passphrase slot: alice's passphrase opens nothing.
    r = s.iv("ls", passfile=s.alice_pass, as_user=s.bob)
    assert r.rc != 0, str(r)
    assert "no passphrase slot" in r.err, str(r)
    r = s.iv("cat", "bobs/bob-only.gif", passfile=s.alice_pass, as_user=s.bob)
    assert r.rc != 0 and r.stdout == b"", str(r)
    # Neither may name the other's vault.
    r = s.iv("--user", s.alice, "ls", passfile=s.alice_pass, as_user=s.bob)
    assert r.rc != 0 and "only root" in r.err, str(r)
    r = s.iv("--user", s.bob, "cat", "bobs/bob-only.gif", passfile=s.alice_pass,
             as_user=s.alice)
    assert r.rc != 0 and r.stdout == b"" and "only root" in r.err, str(r)
    # A user cannot use the server key, even when told where it is.
    r = s.iv("ls", passfile=None, as_user=s.bob)
    assert r.rc != 0 and r.stdout == b"", str(r)
    # And a user cannot delete or reconfigure another user's vault.
    r = s.iv("user", "del", s.bob, "--yes", passfile=None, as_user=s.alice)
    assert r.rc != 0 and "only root" in r.err, str(r)
    r = s.iv("user", "set", s.bob, "quota=1K", passfile=None, as_user=s.alice)
    assert r.rc != 0 and "only root" in r.err, str(r)
    r = s.iv("--user", s.bob, "cat", "bobs/bob-only.gif")
    assert r.rc == 0 and r.stdout == s.bob_expected["bobs/bob-only.gif"], str(r)


def test_user_set_quota_and_web_read(two_users, image_set, tmp_path):
    s = two_users
    r = s.iv("user", "set", s.alice, "web-read=on")
    assert r.rc == 0, str(r)
    r = s.iv("user", "set", s.alice, "quota=1M")
    assert r.rc == 0, str(r)
    users = {u["user"]: u for u in s.iv("--json", "user", "list").json()}
    assert users[s.alice]["web_read"] is True
    assert users[s.alice]["quota"] in (1 << 20, 10 ** 6)
    assert users[s.bob]["web_read"] is False and users[s.bob]["quota"] == 0

    used = users[s.alice]["bytes"]
    assert used < users[s.alice]["quota"]
    extra = tmp_path / "more"
    extra.mkdir()
    # Enough distinct bytes to cross the quota.
    big = image_set["big.png"].read_bytes()
    for i in range((users[s.alice]["quota"] - used) // len(big) + 2):
        (extra / f"copy{i}.png").write_bytes(big + bytes([i]) * 16)
    r = s.iv("--user", s.alice, "--json", "import", "--album", "more", extra)
    assert r.rc not in (0, 3, 4, 5), str(r)
    assert "quota" in r.err, str(r)
    users = {u["user"]: u for u in s.iv("--json", "user", "list").json()}
    assert users[s.alice]["bytes"] <= users[s.alice]["quota"], "the quota was overrun"
    # What was reported is there; nothing else is lost; bob is not limited.
    for line in r.json():
        if "sha256" in line:
            got = s.iv("--user", s.alice, "cat", f"more/{line['name']}")
            assert got.rc == 0 and sha256(got.stdout) == line["sha256"], str(got)
    for spec, data in s.expected.items():
        got = s.iv("--user", s.alice, "cat", spec)
        assert got.rc == 0 and got.stdout == data, str(got)
    r = s.iv("--user", s.bob, "import", extra)
    assert r.rc == 0, str(r)

    for bad in ("web-read=maybe", "quota=lots", "colour=blue", "noequals"):
        r = s.iv("user", "set", s.alice, bad)
        assert r.rc != 0, str(r)
        assert bad.split("=")[0] in r.err, str(r)
    r = s.iv("user", "set", s.alice, "quota=none")
    assert r.rc == 0, str(r)
    r = s.iv("--user", s.alice, "import", "--album", "more", extra)
    assert r.rc == 0, str(r)


def test_user_del_crypto_shreds(two_users):
    s = two_users
    bob_uid = uid_of(s.bob)
    bob_blobs = [s.blob_path(h) for h in s.blobs_of_uid(bob_uid)]
    with s.db() as c:
        assert c.execute("SELECT count(*) FROM key_slots WHERE uid = ?",
                         (bob_uid,)).fetchone()[0] == 2
    assert bob_blobs and all(p.exists() for p in bob_blobs)
    all_before = set(s.blob_files())

    r = s.iv("user", "del", s.bob)                       # no --yes, no terminal
    assert r.rc != 0, str(r)
    assert "--yes" in r.err
    assert all(p.exists() for p in bob_blobs)

    r = s.iv("user", "del", s.bob, "--yes")
    assert r.rc == 0, str(r)
    assert "destroyed" in r.out
    assert not any(p.exists() for p in bob_blobs), "bob's blobs are still on disk"
    assert set(s.blob_files()) == all_before - set(bob_blobs)
    with s.db() as c:
        assert c.execute("SELECT count(*) FROM key_slots WHERE uid = ?",
                         (bob_uid,)).fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM users WHERE uid = ?",
                         (bob_uid,)).fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM images WHERE uid = ?",
                         (bob_uid,)).fetchone()[0] == 0

    r = s.iv("--user", s.bob, "ls")
    assert r.rc == EXIT_FAIL, str(r)
    assert "has no vault" in r.err
    users = [u["user"] for u in s.iv("--json", "user", "list").json()]
    assert users == [s.alice]
    for spec, data in s.expected.items():
        r = s.iv("--user", s.alice, "cat", spec)
        assert r.rc == 0 and r.stdout == data, str(r)
    r = s.iv("fsck")
    assert r.rc == 0 and "damaged:" not in r.out, str(r)
    # The recovery code of the deleted vault opens nothing either.
    code = write_secret(s.path.parent / "bob.code", s.bob_code)
    newp = write_secret(s.path.parent / "bob.new", "whatever it is now")
    r = s.iv("--user", s.bob, "user", "recover", "--recovery-code-file", code,
             "--new-passphrase-file", newp, "--kdf", "interactive")
    assert r.rc != 0, str(r)


def test_user_passwd_and_recover_as_root(two_users, tmp_path):
    s = two_users
    open_up(s.path)
    new = user_file(s.path.parent / "alice.new", "alice's brand new phrase", s.alice)
    r = s.iv("user", "passwd", s.alice, "--new-passphrase-file", new, "--kdf", "interactive")
    assert r.rc == 0, str(r)
    r = s.iv("ls", passfile=s.alice_pass, as_user=s.alice)
    assert r.rc == EXIT_AUTH, str(r)
    r = s.iv("ls", "default", passfile=new, as_user=s.alice)
    assert r.rc == 0 and "big.png" in r.out, str(r)
    # bob gets a passphrase from his recovery code.
    code = user_file(s.path.parent / "bob.code", s.bob_code, s.bob)
    bobp = user_file(s.path.parent / "bob.pass", "bob finally has one", s.bob)
    r = s.iv("user", "recover", "--recovery-code-file", code, "--new-passphrase-file", bobp,
             "--kdf", "interactive", passfile=None, as_user=s.bob)
    assert r.rc == 0, str(r)
    r = s.iv("cat", "bobs/bob-only.gif", passfile=bobp, as_user=s.bob)
    assert r.rc == 0 and r.stdout == s.bob_expected["bobs/bob-only.gif"], str(r)


def test_root_rekeys_a_users_vault(two_users):
    s = two_users
    alice_before = s.blobs_of_uid(uid_of(s.alice))
    bob_before = s.blobs_of_uid(uid_of(s.bob))
    r = s.iv("--user", s.alice, "--json", "rekey", "--full", "--kdf", "interactive")
    assert r.rc == 0, str(r)
    assert r.json()[-1]["recovery_code"] != s.alice_code
    for spec, data in s.expected.items():
        got = s.iv("--user", s.alice, "cat", spec)
        assert got.rc == 0 and got.stdout == data, str(got)
    on_disk = {p.name for p in s.blob_files()}
    assert not alice_before & on_disk, "rekey --full left some of alice's blobs in place"
    assert bob_before <= on_disk and s.blobs_of_uid(uid_of(s.bob)) == bob_before, \
        "rekeying alice's vault touched bob's blobs"
    r = s.iv("fsck")
    assert r.rc == 0, str(r)


def test_root_makes_a_desktop_store_for_a_user(imgvault, unix_users, shared_dir, image_set):
    user, other = unix_users("ivd"), unix_users("ivo")
    pf = user_file(shared_dir / "pass", "desktop phrase for a user", user)
    r = run_cli(imgvault, "--json", "init", shared_dir / "store", "--user", user,
                "--passphrase-file", pf, "--kdf", "interactive")
    assert r.rc == 0, str(r)
    assert r.json()[-1]["uid"] == uid_of(user)
    for p in [shared_dir / "store", *(shared_dir / "store").iterdir()]:
        assert p.stat().st_uid == uid_of(user), p
    img = shared_dir / "mine.jpg"
    shutil.copy(image_set["photo.jpg"], img)
    os.chmod(img, 0o644)
    r = run_cli(imgvault, "-s", shared_dir / "store", "--passphrase-file", pf, "import", img,
                as_user=user)
    assert r.rc == 0, str(r)
    r = run_cli(imgvault, "-s", shared_dir / "store", "--passphrase-file", pf, "cat",
                "default/mine.jpg", as_user=user)
    assert r.rc == 0 and r.stdout == img.read_bytes(), str(r)
    # Another user cannot even open it.
    os.chmod(pf, 0o644)
    r = run_cli(imgvault, "-s", shared_dir / "store", "--passphrase-file", pf, "ls",
                as_user=other)
    assert r.rc == EXIT_FAIL, str(r)
    assert "permission denied" in r.err and f"uid {uid_of(user)}" in r.err, str(r)
