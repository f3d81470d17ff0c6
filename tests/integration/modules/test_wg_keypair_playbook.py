"""wg_keypair through ansible-playbook inside a namespace, checked against `wg pubkey`."""

import os
import stat

KEYPAIR = "freifunk.wgmesh.wg_keypair"


def test_key_is_made_0600_kept_on_rerun_and_matches_wg_pubkey(playbook, wg_iface, tmp_path):
    path = tmp_path / "keys" / "wg-node.key"
    path.parent.mkdir()
    task = {KEYPAIR: {"path": str(path)}}

    (checked,), output = playbook([task], check=True)
    assert checked["changed"] is True
    assert checked["public_key"] is None
    assert not path.exists(), "check mode wrote the key"

    (made,), output = playbook([task])
    assert made["changed"] is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    private_key = path.read_text()
    assert made["public_key"] == wg_iface.wg("pubkey", input=private_key).strip()
    assert private_key.strip() not in output
    assert made["public_key"] in output  # the diff shows the public key

    path.chmod(0o644)
    (again,), output = playbook([task])
    assert again["changed"] is True, "a wrong mode must be fixed"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == private_key
    assert again["public_key"] == made["public_key"]

    (third,), output = playbook([task])
    assert third["changed"] is False
    assert path.read_text() == private_key
    assert private_key.strip() not in output


def test_key_file_works_as_interface_key(playbook, wg_iface, tmp_path):
    """The file format is the one `wg set private-key` reads."""
    path = tmp_path / "wg.key"
    (made,), _output = playbook([{KEYPAIR: {"path": str(path)}}])
    wg_iface.wg("set", wg_iface.ifname, "private-key", str(path))
    assert wg_iface.wg("show", wg_iface.ifname, "public-key").strip() == made["public_key"]


def test_invalid_key_file_fails_and_stays(playbook, tmp_path):
    path = tmp_path / "wg.key"
    path.write_text("not a key\n")
    (failed,), _output = playbook([{KEYPAIR: {"path": str(path)}}])
    assert failed["failed"] is True
    assert "does not hold a WireGuard private key" in failed["msg"]
    assert path.read_text() == "not a key\n"
