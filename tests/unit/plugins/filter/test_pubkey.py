"""wg_pubkey against the real `wg` tool (wireguard-tools), and its secret-safe errors."""

import shutil
import subprocess

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.filter.keys import wg_pubkey
from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgkey import key_problem


def _wg(*args, stdin=None):
    if shutil.which("wg") is None:
        pytest.skip("wireguard-tools `wg` is not installed")
    return subprocess.run(["wg", *args], input=stdin, capture_output=True, text=True, check=True).stdout.strip()


def test_matches_wg_pubkey_on_fresh_keys():
    for attempt in range(20):
        private = _wg("genkey")
        assert wg_pubkey(private) == _wg("pubkey", stdin=private + "\n"), "key %d" % attempt


def test_matches_wg_pubkey_on_unclamped_private_keys():
    # `wg genkey` clamps; a private key from elsewhere may not be. Both sides must clamp alike.
    for raw in ("/" * 42 + "w=", "A" * 43 + "=", "QUJD" * 10 + "QUI="):
        assert key_problem(raw) is None
        assert wg_pubkey(raw) == _wg("pubkey", stdin=raw + "\n")


def test_result_is_a_public_key_the_other_filters_accept():
    assert key_problem(wg_pubkey(_wg("genkey"))) is None


def test_bad_private_keys_never_echo_the_secret(vectors):
    for bad in vectors["invalid_keys"]:
        with pytest.raises(AnsibleFilterError) as err:
            wg_pubkey(bad["key"])
        msg = str(err.value)
        assert msg.startswith("the private key is not a WireGuard key: "), bad
        secret = bad["key"].strip()
        if len(secret) > 4:
            assert secret[:8] not in msg and secret[-8:] not in msg, bad
    # The one problem report that quotes a character of the key is reworded.
    with pytest.raises(AnsibleFilterError) as err:
        wg_pubkey("XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx9=")
    assert "'9'" not in str(err.value)
    assert "cannot end 32 bytes" in str(err.value)


@pytest.mark.parametrize("value", [None, 7, b"XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="])
def test_non_strings(value):
    with pytest.raises(AnsibleFilterError, match="must be a string"):
        wg_pubkey(value)
