"""wg_peers through ansible-playbook against a wireguard-go interface in a namespace.

Every assertion about the interface reads `wg show <if> dump` directly.
"""

from tests.support.keys import new_key

PEERS = "freifunk.wgmesh.wg_peers"
# dump peer fields
PSK, ENDPOINT, ALLOWED, KEEPALIVE = 1, 2, 3, 7


def interface_untouched(wg_iface):
    interface = wg_iface.dump()[0]
    return interface[:3] == wg_iface.expected_interface


def secrets_absent(text, *secrets):
    return not [secret for secret in secrets if secret in text]


def test_add_change_rerun_and_check_mode(playbook, wg_iface, tmp_path):
    psk_file = tmp_path / "peer.psk"
    psk = wg_iface.wg("genpsk").strip()
    psk_file.write_text(psk + "\n")
    psk_file.chmod(0o600)
    a, b, c = new_key(), new_key(), new_key()
    peers = [
        {"public_key": a, "allowed_ips": ["fe80::0f57/128"]},
        {"public_key": b, "allowed_ips": ["10.7.0.2/32", "fd00:7::2/128"], "endpoint": "[fd00::0001]:51820"},
        {
            "public_key": c,
            "allowed_ips": ["10.7.1.0/24"],
            "endpoint": "192.0.2.7:4500",
            "persistent_keepalive": 25,
            "preshared_key_file": str(psk_file),
        },
    ]
    task = {PEERS: {"interface": "{{ ifname }}", "peers": "{{ peers }}"}}
    variables = {"ifname": wg_iface.ifname, "peers": peers}

    (checked,), output = playbook([task], variables, check=True)
    assert checked["changed"] is True
    assert sorted(checked["added"]) == sorted([a, b, c])
    assert wg_iface.dump()[1] == {}, "check mode changed the interface"
    assert secrets_absent(output, psk, wg_iface.expected_interface[0])

    (applied,), output = playbook([task], variables)
    assert applied["changed"] is True
    assert applied["counts"] == {"added": 3, "updated": 0, "removed": 0, "unchanged": 0}
    dump = wg_iface.peers()
    assert dump[a][ALLOWED] == "fe80::f57/128"
    assert dump[a][PSK] == "(none)"
    assert sorted(dump[b][ALLOWED].split(",")) == ["10.7.0.2/32", "fd00:7::2/128"]
    assert dump[b][ENDPOINT] == "[fd00::1]:51820"
    assert dump[c][ENDPOINT] == "192.0.2.7:4500"
    assert dump[c][KEEPALIVE] == "25"
    assert dump[c][PSK] == psk
    assert interface_untouched(wg_iface)
    assert secrets_absent(output, psk, wg_iface.expected_interface[0])
    assert "PresharedKey = (set)" in applied["diff"]["after"]

    (rerun,), output = playbook([task], variables)
    assert rerun["changed"] is False
    assert rerun["counts"]["unchanged"] == 3

    new_psk = wg_iface.wg("genpsk").strip()
    psk_file.write_text(new_psk + "\n")
    peers[0]["allowed_ips"] = ["fe80::0f58/128", "10.7.9.0/28"]
    peers[1]["endpoint"] = "[fd00::2]:51821"
    peers[2]["persistent_keepalive"] = 0
    (changed,), output = playbook([task], variables)
    assert changed["changed"] is True
    assert changed["updated"] == sorted([a, b, c])
    assert changed["added"] == changed["removed"] == []
    dump = wg_iface.peers()
    assert sorted(dump[a][ALLOWED].split(",")) == ["10.7.9.0/28", "fe80::f58/128"]
    assert dump[b][ENDPOINT] == "[fd00::2]:51821"
    assert dump[c][KEEPALIVE] == "off"
    assert dump[c][PSK] == new_psk
    assert dump[c][ALLOWED] == "10.7.1.0/24", "unchanged allowed IPs must survive an update"
    assert interface_untouched(wg_iface)
    assert secrets_absent(output + repr(changed), psk, new_psk, wg_iface.expected_interface[0])
    assert "(set, replaced from %s)" % psk_file in changed["diff"]["after"]

    psk_file.write_text("")
    (cleared,), _output = playbook([task], variables)
    assert cleared["updated"] == [c]
    assert wg_iface.dump()[1][c][PSK] == "(none)"


def test_exclusive_keeps_protected_and_absent_removes(playbook, wg_iface):
    partner, stray, node = new_key(), new_key(), new_key()
    wg_iface.wg("set", wg_iface.ifname, "peer", partner, "allowed-ips", "10.9.0.2/32", "endpoint", "192.0.2.2:51820")
    wg_iface.wg("set", wg_iface.ifname, "peer", stray, "allowed-ips", "fe80::99/128")
    args = {"interface": wg_iface.ifname, "peers": [{"public_key": node, "allowed_ips": ["fe80::1/128"]}]}

    (not_exclusive,), _output = playbook([{PEERS: args}])
    assert not_exclusive["removed"] == []
    assert set(wg_iface.dump()[1]) == {partner, stray, node}

    exclusive = dict(args, exclusive=True, protected=[partner])
    (checked,), _output = playbook([{PEERS: exclusive}], check=True)
    assert checked["removed"] == [stray]
    assert set(wg_iface.dump()[1]) == {partner, stray, node}

    (applied,), _output = playbook([{PEERS: exclusive}])
    assert applied["removed"] == [stray]
    dump = wg_iface.peers()
    assert set(dump) == {partner, node}
    assert dump[partner][ALLOWED] == "10.9.0.2/32"
    assert dump[partner][ENDPOINT] == "192.0.2.2:51820"

    (again,), _output = playbook([{PEERS: exclusive}])
    assert again["changed"] is False

    absent = {"interface": wg_iface.ifname, "state": "absent", "peers": [{"public_key": node}, {"public_key": stray}]}
    (removed,), _output = playbook([{PEERS: absent}])
    assert removed["removed"] == [node]
    assert set(wg_iface.dump()[1]) == {partner}
    assert interface_untouched(wg_iface)


def test_bad_input_fails_and_changes_nothing(playbook, wg_iface):
    keep = new_key()
    wg_iface.wg("set", wg_iface.ifname, "peer", keep, "allowed-ips", "fe80::5/128")
    before = wg_iface.dump()
    peers = [{"public_key": new_key(), "allowed_ips": ["fe80::%x/128" % (i + 16)]} for i in range(300)]
    peers[250]["allowed_ips"] = ["fe80::1/200"]
    args = {"interface": wg_iface.ifname, "peers": peers, "exclusive": True}
    (failed,), _output = playbook([{PEERS: args}], {"peers": peers})
    assert failed["failed"] is True
    assert "peers[250].allowed_ips[0]" in failed["msg"]
    assert "nothing was changed" in failed["msg"]
    assert wg_iface.dump() == before


def test_wg_errors_are_reported_with_stderr(playbook, wg_iface):
    missing = wg_iface.ifname[:-1] + ("x" if wg_iface.ifname[-1] != "x" else "y")
    (failed,), _output = playbook([{PEERS: {"interface": missing, "peers": []}}])
    assert failed["failed"] is True
    assert "wg show %s" % missing in failed["msg"]
    assert "Unable to access interface" in failed["msg"]
