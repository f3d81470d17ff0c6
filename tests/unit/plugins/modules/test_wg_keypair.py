"""wg_keypair on real files, with the real `wg` tool as the reference for public keys."""

import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.freifunk.wgmesh.plugins.modules import wg_keypair

WG = shutil.which("wg")
needs_wg = pytest.mark.skipif(WG is None, reason="wireguard-tools (wg) is not installed")


def wg_pubkey(private_key):
    return subprocess.run([WG, "pubkey"], input=private_key, capture_output=True, text=True, check=True).stdout.strip()


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=["cryptography", "wg"])
def backend(request, monkeypatch):
    """Both ways the module makes keys: the cryptography library and `wg genkey`."""
    if request.param == "wg":
        if WG is None:
            pytest.skip("wireguard-tools (wg) is not installed")
        monkeypatch.setattr(wg_keypair, "HAS_CRYPTOGRAPHY", False)
    return request.param


@needs_wg
def test_creates_key_0600_and_returns_its_public_key(run_module, tmp_path, backend):
    path = tmp_path / "wg0.key"
    old_umask = os.umask(0)  # the mode must not depend on the umask
    try:
        code, result = run_module(wg_keypair.main, {"path": str(path)}, diff=True)
    finally:
        os.umask(old_umask)
    assert code == 0
    assert result["changed"] is True
    assert mode_of(path) == 0o600
    private_key = path.read_text()
    assert private_key.endswith("\n")
    assert result["public_key"] == wg_pubkey(private_key)
    assert private_key.strip() not in repr(result)
    assert result["diff"]["before"] == "absent\n"
    assert result["public_key"] in result["diff"]["after"]
    assert not [name for name in os.listdir(tmp_path) if name != "wg0.key"], "temporary file left behind"


@needs_wg
def test_key_file_is_0600_before_it_gets_its_name(run_module, tmp_path, monkeypatch):
    """The file appears under its name only by rename, and is 0600 from creation on."""
    seen = []
    real_rename = os.rename

    def rename(src, dst):
        seen.append(mode_of(src))
        real_rename(src, dst)

    monkeypatch.setattr(wg_keypair.os, "rename", rename)
    old_umask = os.umask(0)
    try:
        run_module(wg_keypair.main, {"path": str(tmp_path / "k")})
    finally:
        os.umask(old_umask)
    assert seen == [0o600]


@needs_wg
def test_existing_key_is_kept_and_mode_fixed(run_module, tmp_path):
    path = tmp_path / "wg0.key"
    key = subprocess.run([WG, "genkey"], capture_output=True, text=True, check=True).stdout
    path.write_text(key)
    path.chmod(0o644)
    code, result = run_module(wg_keypair.main, {"path": str(path)}, check=True, diff=True)
    assert (code, result["changed"]) == (0, True)
    assert mode_of(path) == 0o644, "check mode must not change the mode"
    assert "mode 0644" in result["diff"]["before"]

    code, result = run_module(wg_keypair.main, {"path": str(path)})
    assert (code, result["changed"]) == (0, True)
    assert mode_of(path) == 0o600
    assert path.read_text() == key
    assert result["public_key"] == wg_pubkey(key)

    code, result = run_module(wg_keypair.main, {"path": str(path)})
    assert (code, result["changed"]) == (0, False)
    assert path.read_text() == key


def test_check_mode_writes_nothing(run_module, tmp_path):
    path = tmp_path / "wg0.key"
    code, result = run_module(wg_keypair.main, {"path": str(path)}, check=True, diff=True)
    assert (code, result["changed"], result["public_key"]) == (0, True, None)
    assert not path.exists()
    assert result["diff"]["before"] == "absent\n"
    assert os.listdir(tmp_path) == []


def test_invalid_key_file_fails_untouched_without_quoting_it(run_module, tmp_path):
    path = tmp_path / "wg0.key"
    path.write_text("-----BEGIN PRIVATE KEY----- secret stuff\n")
    path.chmod(0o640)
    code, result = run_module(wg_keypair.main, {"path": str(path)})
    assert code == 1
    assert "does not hold a WireGuard private key" in result["msg"]
    assert "force=true" in result["msg"]
    assert "secret stuff" not in repr(result)
    assert path.read_text() == "-----BEGIN PRIVATE KEY----- secret stuff\n"
    assert mode_of(path) == 0o640


@needs_wg
def test_force_replaces_only_an_invalid_key(run_module, tmp_path):
    path = tmp_path / "wg0.key"
    path.write_text("garbage\n")
    code, result = run_module(wg_keypair.main, {"path": str(path), "force": True})
    assert (code, result["changed"]) == (0, True)
    key = path.read_text()
    assert result["public_key"] == wg_pubkey(key)
    assert mode_of(path) == 0o600
    code, result = run_module(wg_keypair.main, {"path": str(path), "force": True})
    assert (code, result["changed"]) == (0, False)
    assert path.read_text() == key


def test_missing_directory_and_non_file_fail_clearly(run_module, tmp_path):
    code, result = run_module(wg_keypair.main, {"path": str(tmp_path / "nope" / "wg0.key")})
    assert code == 1
    assert "does not exist" in result["msg"]
    code, result = run_module(wg_keypair.main, {"path": str(tmp_path)})
    assert code == 1
    assert "is not a regular file" in result["msg"]


# private_key: an HA pair's members write one key (the partner's, or one from vault; docs/ha.md).
GIVEN_KEY = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
GIVEN_PUBLIC = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
OTHER_KEY = "kBFFKNkm9i3iYZGFgHn0EWXS5bYwFT9FXHU3WUe3qW0="


def test_given_key_is_written_0600_and_never_returned(run_module, tmp_path):
    path = tmp_path / "wg0.key"
    old_umask = os.umask(0)
    try:
        code, result = run_module(wg_keypair.main, {"path": str(path), "private_key": GIVEN_KEY}, diff=True)
    finally:
        os.umask(old_umask)
    assert (code, result["changed"], result["public_key"]) == (0, True, GIVEN_PUBLIC)
    assert path.read_text() == GIVEN_KEY + "\n"
    assert mode_of(path) == 0o600
    assert GIVEN_KEY not in repr(result)
    assert result["diff"]["before"] == "absent\n"
    assert result["diff"]["after"] == "present, mode 0600, public key %s\n" % GIVEN_PUBLIC


def test_given_key_again_is_no_change(run_module, tmp_path):
    path = tmp_path / "wg0.key"
    path.write_text(GIVEN_KEY + "\n")
    path.chmod(0o600)
    # A vault value written as a YAML block scalar ends in a newline; it is the same key.
    code, result = run_module(wg_keypair.main, {"path": str(path), "private_key": GIVEN_KEY + "\n"}, diff=True)
    assert (code, result["changed"], result["public_key"]) == (0, False, GIVEN_PUBLIC)
    assert GIVEN_KEY not in repr(result)


def test_given_key_in_check_mode_says_what_it_would_write(run_module, tmp_path):
    path = tmp_path / "wg0.key"
    code, result = run_module(wg_keypair.main, {"path": str(path), "private_key": GIVEN_KEY}, check=True, diff=True)
    assert (code, result["changed"], result["public_key"]) == (0, True, GIVEN_PUBLIC)
    assert GIVEN_PUBLIC in result["diff"]["after"]
    assert os.listdir(tmp_path) == []


def test_a_different_key_is_kept_unless_replace(run_module, tmp_path):
    path = tmp_path / "wg0.key"
    path.write_text(OTHER_KEY + "\n")
    path.chmod(0o600)
    other_public = wg_keypair.public_key_of(OTHER_KEY)
    code, result = run_module(wg_keypair.main, {"path": str(path), "private_key": GIVEN_KEY})
    assert code == 1
    assert other_public in result["msg"] and GIVEN_PUBLIC in result["msg"]
    assert "replace=true" in result["msg"]
    assert GIVEN_KEY not in repr(result) and OTHER_KEY not in repr(result)
    assert path.read_text() == OTHER_KEY + "\n"

    args = {"path": str(path), "private_key": GIVEN_KEY, "replace": True}
    code, result = run_module(wg_keypair.main, args, check=True, diff=True)
    assert (code, result["changed"], result["public_key"]) == (0, True, GIVEN_PUBLIC)
    assert path.read_text() == OTHER_KEY + "\n", "check mode replaced the key"
    assert result["diff"]["before"] == "present, mode 0600, public key %s\n" % other_public
    assert result["diff"]["after"] == "present, mode 0600, public key %s\n" % GIVEN_PUBLIC
    assert GIVEN_KEY not in repr(result) and OTHER_KEY not in repr(result)

    code, result = run_module(wg_keypair.main, args, diff=True)
    assert (code, result["changed"], result["public_key"]) == (0, True, GIVEN_PUBLIC)
    assert path.read_text() == GIVEN_KEY + "\n"
    assert mode_of(path) == 0o600

    code, result = run_module(wg_keypair.main, args)
    assert (code, result["changed"]) == (0, False)


def test_given_key_replaces_an_invalid_file_only_with_force(run_module, tmp_path):
    path = tmp_path / "wg0.key"
    path.write_text("garbage\n")
    code, result = run_module(wg_keypair.main, {"path": str(path), "private_key": GIVEN_KEY})
    assert code == 1
    assert path.read_text() == "garbage\n"
    code, result = run_module(wg_keypair.main, {"path": str(path), "private_key": GIVEN_KEY, "force": True})
    assert (code, result["changed"], result["public_key"]) == (0, True, GIVEN_PUBLIC)
    assert path.read_text() == GIVEN_KEY + "\n"


@pytest.mark.parametrize("bad", ["", "not a key", GIVEN_KEY[:-2] + "x=", GIVEN_KEY + GIVEN_KEY])
def test_a_bad_given_key_fails_naming_the_option_and_not_quoting_it(run_module, tmp_path, bad):
    path = tmp_path / "wg0.key"
    code, result = run_module(wg_keypair.main, {"path": str(path), "private_key": bad})
    assert code == 1
    assert "private_key" in result["msg"] and str(path) in result["msg"]
    if bad:
        assert bad not in result["msg"]
    assert not path.exists()


def test_replace_without_a_given_key_is_refused(run_module, tmp_path):
    code, result = run_module(wg_keypair.main, {"path": str(tmp_path / "k"), "replace": True})
    assert code == 1
    assert "private_key" in result["msg"]
