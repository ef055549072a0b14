"""The everyday paths: import, ls, cat, export, versions, rm, passphrases,
recovery, key rotation and the audit trail."""
import os
import re
import shutil

from conftest import (EXIT_AUTH, EXIT_DAMAGE, EXIT_FAIL, HEADER, assert_fsck_clean,
                      assert_reads_back, sha256, write_secret)


def test_import_ls_cat_export_round_trip(store, image_set, tmp_path):
    r = store.iv("import", *image_set.values())
    assert r.rc == 0, str(r)
    for name, path in image_set.items():
        assert f"imported {path} as default/{name}\n" in r.out, str(r)
    assert f"{len(image_set)} imported, 0 refused" in r.out

    r = store.iv("ls")
    assert r.rc == 0, str(r)
    assert re.search(rf"^\s*{len(image_set)} images .* default$", r.out, re.M), str(r)

    listed = {im["name"]: im for im in store.ls_json("default")}
    assert set(listed) == set(image_set)
    for name, path in image_set.items():
        data = path.read_bytes()
        assert listed[name]["size"] == len(data)
        assert listed[name]["sha256"] == sha256(data)
        assert listed[name]["album"] == "default"
        assert re.fullmatch(r"[0-9a-f]{32}", listed[name]["id"])
    assert listed["small.jpg"]["mime"] == "image/jpeg"
    assert listed["big.png"]["mime"] == "image/png"
    assert listed["icon.gif"]["mime"] == "image/gif"

    assert_reads_back(store, {f"default/{n}": p.read_bytes() for n, p in image_set.items()})

    dest = tmp_path / "export"
    r = store.iv("export", dest)
    assert r.rc == 0, str(r)
    assert sorted(os.listdir(dest)) == ["default"]
    assert sorted(os.listdir(dest / "default")) == sorted(image_set)
    for name, path in image_set.items():
        assert (dest / "default" / name).read_bytes() == path.read_bytes(), name
    assert_fsck_clean(store)


def test_import_json_reports_every_image(store, image_set):
    r = store.iv("--json", "import", *image_set.values())
    assert r.rc == 0, str(r)
    lines = r.json()
    assert (lines[-1]["imported"], lines[-1]["refused"]) == (len(image_set), 0)
    by_path = {line["path"]: line for line in lines[:-1]}
    assert set(by_path) == {str(p) for p in image_set.values()}
    for name, path in image_set.items():
        line = by_path[str(path)]
        data = path.read_bytes()
        assert (line["album"], line["name"], line["size"], line["sha256"]) == \
            ("default", name, len(data), sha256(data))
        assert store.image_id("default", name) == line["id"]


def test_directory_import_into_album_and_album_export(store, image_set, tmp_path):
    src = tmp_path / "trip"
    (src / "day2").mkdir(parents=True)
    shutil.copy(image_set["photo.jpg"], src / "beach.jpg")
    shutil.copy(image_set["icon.gif"], src / "day2" / "sign.gif")
    r = store.iv("import", "--album", "trip 2024", src)
    assert r.rc == 0, str(r)
    r = store.iv("import", image_set["small.jpg"])      # into "default"
    assert r.rc == 0, str(r)

    names = {im["name"] for im in store.ls_json("trip 2024")}
    assert names == {"beach.jpg", "sign.gif"}
    assert {im["name"] for im in store.ls_json("default")} == {"small.jpg"}

    dest = tmp_path / "out"
    r = store.iv("export", "--album", "trip 2024", dest)
    assert r.rc == 0, str(r)
    assert os.listdir(dest) == ["trip 2024"]
    assert (dest / "trip 2024" / "beach.jpg").read_bytes() == image_set["photo.jpg"].read_bytes()
    assert (dest / "trip 2024" / "sign.gif").read_bytes() == image_set["icon.gif"].read_bytes()

    r = store.iv("ls", "no such album")
    assert r.rc == EXIT_FAIL, str(r)
    assert "no album 'no such album'" in r.err


def test_reimport_makes_a_version_and_pristine_keeps_the_first(store, image_set, tmp_path):
    first, second = tmp_path / "v1" / "pic.jpg", tmp_path / "v2" / "pic.jpg"
    first.parent.mkdir()
    second.parent.mkdir()
    shutil.copy(image_set["small.jpg"], first)
    shutil.copy(image_set["photo.jpg"], second)
    assert store.iv("import", first).rc == 0
    blobs_before = len(store.blob_files())
    r = store.iv("import", second)
    assert r.rc == 0, str(r)
    assert len(store.blob_files()) == blobs_before + 1, "a new version is a new blob"

    listed = store.ls_json()
    assert [im["name"] for im in listed] == ["pic.jpg"], "one image, two versions"
    assert listed[0]["sha256"] == sha256(second.read_bytes())

    r = store.cat("default/pic.jpg")
    assert r.rc == 0 and r.stdout == second.read_bytes(), str(r)
    r = store.iv("cat", "--pristine", "default/pic.jpg")
    assert r.rc == 0 and r.stdout == first.read_bytes(), str(r)

    dest = tmp_path / "pristine"
    r = store.iv("export", "--pristine", dest)
    assert r.rc == 0, str(r)
    assert (dest / "default" / "pic.jpg").read_bytes() == first.read_bytes()
    assert_fsck_clean(store)


def test_rm(filled, tmp_path):
    victim = filled.blob_of("default", "photo.jpg")
    assert victim.exists()
    r = filled.iv("rm", "default/photo.jpg")
    assert r.rc == 0, str(r)
    assert "removed default/photo.jpg" in r.out

    r = filled.cat("default/photo.jpg")
    assert r.rc == EXIT_FAIL, str(r)
    assert "no image 'photo.jpg'" in r.err
    assert r.stdout == b""
    assert "photo.jpg" not in {im["name"] for im in filled.ls_json()}

    r = filled.iv("rm", "default/photo.jpg")
    assert r.rc == EXIT_FAIL, str(r)
    assert "photo.jpg" in r.err

    assert_fsck_clean(filled)
    assert not victim.exists(), "the removed image's blob is still on disk"
    rest = {k: v for k, v in filled.expected.items() if k != "default/photo.jpg"}
    assert_reads_back(filled, rest)


def test_passwd(filled, tmp_path):
    new = write_secret(tmp_path / "new-pass", "a different passphrase 42")
    r = filled.iv("user", "passwd", "--new-passphrase-file", new, "--kdf", "interactive")
    assert r.rc == 0, str(r)
    assert "passphrase changed" in r.out

    r = filled.iv("ls")
    assert r.rc == EXIT_AUTH, str(r)
    assert "wrong passphrase" in r.err

    assert_reads_back(filled, filled.expected, passfile=new)
    assert_fsck_clean(filled, passfile=new)


def test_passwd_refuses_a_short_passphrase(filled, tmp_path):
    short = write_secret(tmp_path / "short", "abc")
    r = filled.iv("user", "passwd", "--new-passphrase-file", short, "--kdf", "interactive")
    assert r.rc != 0, str(r)
    assert "at least" in r.err
    assert_reads_back(filled, filled.expected)       # the old passphrase still works


def test_recover_with_the_recovery_code(filled, tmp_path):
    code = write_secret(tmp_path / "code", filled.recovery)
    new = write_secret(tmp_path / "new-pass", "found my way back in")
    r = filled.iv("user", "recover", "--recovery-code-file", code,
                  "--new-passphrase-file", new, "--kdf", "interactive", passfile=None)
    assert r.rc == 0, str(r)
    assert "reset with the recovery code" in r.out

    r = filled.iv("ls")
    assert r.rc == EXIT_AUTH, f"the old passphrase still unlocks\n{r}"
    assert_reads_back(filled, filled.expected, passfile=new)


def test_recover_with_a_wrong_code(filled, tmp_path):
    wrong = "".join("A" if c != "-" else c for c in filled.recovery)
    code = write_secret(tmp_path / "code", wrong)
    new = write_secret(tmp_path / "new-pass", "never set by this")
    r = filled.iv("user", "recover", "--recovery-code-file", code,
                  "--new-passphrase-file", new, "--kdf", "interactive", passfile=None)
    assert r.rc == EXIT_AUTH, str(r)
    assert "wrong recovery" in r.err or "not a recovery code" in r.err, str(r)
    assert_reads_back(filled, filled.expected)        # old passphrase untouched


def version_blobs(store):
    """{blob id: header bytes} of every image version (thumbnails aside)."""
    with store.db() as c:
        ids = [h.lower() for (h,) in c.execute("SELECT hex(blob_id) FROM versions")]
    return {h: store.blob_path(h).read_bytes()[:HEADER] for h in ids}


def _rekey(filled, tmp_path, full):
    old_code = filled.recovery
    before = version_blobs(filled)
    all_before = {p.name for p in filled.blob_files()}
    args = ["--json", "rekey", "--kdf", "interactive"] + (["--full"] if full else [])
    r = filled.iv(*args)
    assert r.rc == 0, str(r)
    out = r.json()
    new_code = out[-1]["recovery_code"]
    assert new_code and new_code != old_code
    assert out[-1]["passphrase_removed"] is False

    # Content and passphrase unchanged.
    assert_reads_back(filled, filled.expected)
    assert_fsck_clean(filled)
    dest = tmp_path / "after-rekey"
    assert filled.iv("export", dest).rc == 0
    for spec, data in filled.expected.items():
        assert (dest / spec).read_bytes() == data

    after = version_blobs(filled)
    if full:
        assert not all_before & {p.name for p in filled.blob_files()}, \
            "rekey --full left blobs under their old ids"
    # The old recovery code is dead, the new one works.
    new_pass = write_secret(tmp_path / "p2", "after the rotation")
    old = write_secret(tmp_path / "old-code", old_code)
    r = filled.iv("user", "recover", "--recovery-code-file", old,
                  "--new-passphrase-file", new_pass, "--kdf", "interactive", passfile=None)
    assert r.rc == EXIT_AUTH, f"the old recovery code still works after rekey\n{r}"
    new = write_secret(tmp_path / "new-code", new_code)
    r = filled.iv("user", "recover", "--recovery-code-file", new,
                  "--new-passphrase-file", new_pass, "--kdf", "interactive", passfile=None)
    assert r.rc == 0, str(r)
    assert_reads_back(filled, filled.expected, passfile=new_pass)
    return before, after


def test_rekey_rewrap(filled, tmp_path):
    before, after = _rekey(filled, tmp_path, full=False)
    assert set(after) == set(before), "a rewrap keeps every version's blob id"
    for blob_id, header in before.items():
        assert after[blob_id] != header, f"blob {blob_id}'s header was not rewrapped"


def test_rekey_full(filled, tmp_path):
    before, after = _rekey(filled, tmp_path, full=True)
    assert len(after) == len(before)
    assert not set(after) & set(before), "rekey --full left blobs under their old ids"


def test_rekey_with_a_wrong_passphrase_changes_nothing(filled, tmp_path):
    wrong = write_secret(tmp_path / "wrong", "not the passphrase")
    before = [p.name for p in filled.blob_files()]
    r = filled.iv("rekey", "--full", "--kdf", "interactive", passfile=wrong)
    assert r.rc == EXIT_AUTH, str(r)
    assert [p.name for p in filled.blob_files()] == before
    code = write_secret(tmp_path / "code", filled.recovery)
    new = write_secret(tmp_path / "new", "still the old recovery code")
    r = filled.iv("user", "recover", "--recovery-code-file", code,
                  "--new-passphrase-file", new, "--kdf", "interactive", passfile=None)
    assert r.rc == 0, str(r)


def test_audit_trail(filled):
    r = filled.iv("audit", passfile=None)
    assert r.rc == 0, str(r)
    for action in ("init", "user-add", "unlock", "import"):
        assert re.search(rf"\s{action}\s", r.out), f"no {action} entry\n{r}"
    lines = r.out.splitlines()
    assert len(lines) >= 3 + len(filled.expected)

    r = filled.iv("audit", "-n", "2", passfile=None)
    assert r.rc == 0, str(r)
    assert len(r.out.splitlines()) == 2, str(r)

    r = filled.iv("--json", "audit", passfile=None)
    entries = r.json()
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # The trail names images by id, never by name (names are secret).
    for e in entries:
        for spec in filled.expected:
            assert spec.split("/")[1] not in e["object"] + e["detail"], e

    r = filled.iv("audit", "verify", passfile=None)
    assert r.rc == 0, str(r)
    assert "intact" in r.out
    r = filled.iv("--json", "audit", "verify", passfile=None)
    assert r.json()[-1]["intact"] is True


def _tamper(store, sql, drop):
    store.checkpoint()
    with store.db() as c:
        c.execute(f"DROP TRIGGER {drop}")
        c.execute(sql)
    store.checkpoint()


def test_audit_verify_finds_an_edited_entry(filled):
    entries = filled.iv("--json", "audit", passfile=None).json()
    victim = next(e for e in entries if e["action"] == "import")["seq"]
    _tamper(filled, f"UPDATE audit SET detail = 'nothing happened' WHERE seq = {victim}",
            "audit_no_update")
    r = filled.iv("audit", "verify", passfile=None)
    assert r.rc == EXIT_DAMAGE, str(r)
    assert re.search(rf"\bentry {victim}\b", r.out + r.err), str(r)
    r = filled.iv("--json", "audit", "verify", passfile=None)
    assert r.json()[-1]["first_bad"] == victim
    r = filled.iv("fsck")
    assert r.rc == EXIT_DAMAGE, str(r)
    assert re.search(rf"damaged: audit trail: entry {victim}\b", r.out), str(r)


def test_audit_verify_finds_a_deleted_entry(filled):
    entries = filled.iv("--json", "audit", passfile=None).json()
    victim = entries[len(entries) // 2]["seq"]
    _tamper(filled, f"DELETE FROM audit WHERE seq = {victim}", "audit_no_delete")
    r = filled.iv("audit", "verify", passfile=None)
    assert r.rc == EXIT_DAMAGE, str(r)
    assert "BROKEN" in r.out, str(r)


def test_nothing_readable_in_the_store(store, image_set, tmp_path):
    """T1: a copy of the store shows neither names, album names nor content."""
    src = tmp_path / "secret-src"
    src.mkdir()
    data = image_set["big.png"].read_bytes()
    (src / "ZanzibarHoneymoon.png").write_bytes(data)
    r = store.iv("import", "--album", "QuetzalcoatlAlbum", src / "ZanzibarHoneymoon.png")
    assert r.rc == 0, str(r)
    needles = [b"ZanzibarHoneymoon", b"QuetzalcoatlAlbum",
               data[1000:1032], data[70000:70032], data[-32:]]
    for p in store.path.rglob("*"):
        if p.is_file() and p.name != "lock":
            blob = p.read_bytes()
            for n in needles:
                assert n not in blob, f"{p} holds plaintext {n[:20]!r}"
