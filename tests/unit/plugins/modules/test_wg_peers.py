"""wg_peers input validation and planning (no interface needed).

Applying to a real interface is covered by tests/integration/modules with wireguard-go.
Here validation runs through the module's real entry point: it must fail before ``wg``
is even looked up, which is how "nothing applied" is guaranteed.
"""

import base64
import os
from types import SimpleNamespace

import pytest

from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgtool import Peer
from ansible_collections.freifunk.wgmesh.plugins.modules import wg_peers

KEY_A = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
KEY_B = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="
KEY_C = "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg="


def random_key():
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def no_wg(monkeypatch):
    """Fail loudly if the module gets as far as looking for the wg tool."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("validation must fail before wg is used")

    monkeypatch.setattr(wg_peers.AnsibleModule, "get_bin_path", refuse)


def test_bad_key_deep_in_the_list_names_its_index(run_module, no_wg):
    peers = [{"public_key": random_key(), "allowed_ips": ["fe80::%x/128" % (i + 1)]} for i in range(6000)]
    peers[4999]["public_key"] = peers[4999]["public_key"][:-1] + "\n"
    code, result = run_module(wg_peers.main, {"interface": "wg-test", "peers": peers})
    assert code == 1
    assert result["failed"]
    assert "nothing was changed" in result["msg"]
    assert "peers[4999].public_key" in result["msg"]
    assert "trailing newline" in result["msg"]
    assert len(result["errors"]) == 1


@pytest.mark.parametrize(
    ("peer", "complaint"),
    [
        ({"allowed_ips": ["fe80::1/129"]}, "peers[1].allowed_ips[0]: 'fe80::1/129' is not an IP network"),
        ({"allowed_ips": ["fe80::x"]}, "peers[1].allowed_ips[0]"),
        ({"endpoint": "2001:db8::1:51820"}, "peers[1].endpoint: '2001:db8::1:51820' is not host:port"),
        ({"endpoint": "gw.invalid:51820"}, "peers[1].endpoint: 'gw.invalid:51820': host name 'gw.invalid'"),
        ({"persistent_keepalive": 70000}, "peers[1].persistent_keepalive: 70000 is outside 0-65535"),
        ({"preshared_key_file": "/nonexistent/h2.psk"}, "peers[1].preshared_key_file: cannot read"),
        ({"allowed_ips": ["fe80::0001/128"]}, "fe80::1/128 is also given to peers[0]"),
        ({"public_key": KEY_A}, "peers[1].public_key %s is listed twice (also peers[0])" % KEY_A),
    ],
)
def test_invalid_peer_fields_are_reported_with_place_and_reason(run_module, no_wg, peer, complaint):
    peers = [{"public_key": KEY_A, "allowed_ips": ["fe80::1/128"]}, dict({"public_key": KEY_B}, **peer)]
    code, result = run_module(wg_peers.main, {"interface": "wg-test", "peers": peers})
    assert code == 1
    assert complaint in result["msg"]


@pytest.mark.parametrize("content", [b"s3cr3t-but-not-a-key\n", b"s3cr3t\xff\xfe binary"])
def test_psk_file_with_garbage_is_rejected_without_quoting_it(run_module, no_wg, tmp_path, content):
    psk = tmp_path / "bad.psk"
    psk.write_bytes(content)
    peers = [{"public_key": KEY_A, "preshared_key_file": str(psk)}]
    code, result = run_module(wg_peers.main, {"interface": "wg-test", "peers": peers})
    assert code == 1
    assert "does not hold a WireGuard key" in result["msg"]
    assert "s3cr3t" not in repr(result)


def test_protected_key_cannot_be_absent(run_module, no_wg):
    args = {"interface": "wg-test", "state": "absent", "peers": [{"public_key": KEY_C}], "protected": [KEY_C]}
    code, result = run_module(wg_peers.main, args)
    assert code == 1
    assert "is in protected but has state absent" in result["msg"]


@pytest.mark.parametrize(
    ("interface", "complaint"),
    [
        ("wg-much-too-long-name", "is 21 bytes long, Linux allows at most 15"),
        # 14 characters but 16 bytes: Linux counts bytes.
        ("wg-\u00fc\u00fc\u00fcabcdefgh", "is 17 bytes long"),
        ("wg-%d", "contains '%'"),
        ("wg:welt", "contains ':'"),
        ("wg welt", "contains ' '"),
        ("..", "is a path component"),
        ("", "is empty"),
    ],
)
def test_interface_name_follows_the_collections_naming_rule(run_module, no_wg, interface, complaint):
    code, result = run_module(wg_peers.main, {"interface": interface, "peers": []})
    assert code == 1
    assert "interface %r" % interface in result["msg"]
    assert complaint in result["msg"]


def test_low_order_peer_key_is_refused(run_module, no_wg):
    zero = "A" * 43 + "="  # u = 0: every secret shared with it is all zeros
    code, result = run_module(wg_peers.main, {"interface": "wg-test", "peers": [{"public_key": zero}]})
    assert code == 1
    assert "peers[0].public_key" in result["msg"]
    assert "low-order" in result["msg"]


def test_interface_name_is_checked(run_module, no_wg):
    code, result = run_module(wg_peers.main, {"interface": "wg-much-too-long-name", "peers": []})
    assert code == 1
    assert "not a valid interface name" in result["msg"]


def test_many_problems_are_summarised(run_module, no_wg):
    peers = [{"public_key": "short%d" % i} for i in range(30)]
    code, result = run_module(wg_peers.main, {"interface": "wg-test", "peers": peers})
    assert code == 1
    assert len(result["errors"]) == wg_peers.MAX_REPORTED_ERRORS
    assert "(and 10 more problems)" in result["msg"]


def declaration(peers, **params):
    """A PeerDeclaration over a stand-in module: planning is pure logic."""
    merged = {"interface": "wg-test", "peers": peers, "state": "present", "exclusive": False, "protected": []}
    merged.update(params)
    for peer in merged["peers"]:
        for field in ("allowed_ips", "endpoint", "persistent_keepalive", "preshared_key_file", "state"):
            peer.setdefault(field, None)
    module = SimpleNamespace(params=merged, fail_json=lambda **kw: pytest.fail(kw["msg"]))
    decl = wg_peers.PeerDeclaration(module)
    decl.validate()
    return decl


def test_plan_compares_normalized_values():
    current = {
        KEY_A: Peer(
            KEY_A, allowed_ips=frozenset({"fe80::f57/128"}), endpoint="[2001:db8::1]:51820", persistent_keepalive=0
        ),
    }
    decl = declaration(
        [
            {
                "public_key": KEY_A,
                "allowed_ips": ["fe80::0f57"],
                "endpoint": "[2001:0db8::0001]:51820",
                "persistent_keepalive": 0,
            }
        ]
    )
    to_apply, added, updated, removed, _diff = decl.plan(current)
    assert (to_apply, added, updated, removed) == ([], [], [], [])


def test_plan_adds_updates_and_removes_only_what_differs():
    current = {
        KEY_A: Peer(KEY_A, allowed_ips=frozenset({"fe80::1/128"})),
        KEY_B: Peer(KEY_B, allowed_ips=frozenset({"fe80::2/128"}), persistent_keepalive=25),
        KEY_C: Peer(KEY_C, allowed_ips=frozenset({"10.0.0.1/32"})),
    }
    new = random_key()
    decl = declaration(
        [
            {"public_key": KEY_A, "allowed_ips": ["fe80::1/128"]},
            {"public_key": KEY_B, "persistent_keepalive": 0},
            {"public_key": new, "allowed_ips": ["fe80::3/128"]},
        ],
        exclusive=True,
    )
    to_apply, added, updated, removed, diff = decl.plan(current)
    assert added == [new]
    assert updated == [KEY_B]
    assert removed == [KEY_C]
    change = {peer.public_key: peer for peer in to_apply}
    # Unmanaged allowed IPs are carried over (a config section always replaces them).
    assert change[KEY_B].allowed_ips == {"fe80::2/128"}
    assert change[KEY_B].persistent_keepalive == 0
    assert {key for key, _before, _after in diff} == {new, KEY_B, KEY_C}
    assert decl.plan(current, with_diff=False)[4] == []


def test_exclusive_keeps_protected_and_state_absent_removes_only_listed():
    current = {key: Peer(key) for key in (KEY_A, KEY_B, KEY_C)}
    exclusive = declaration([{"public_key": KEY_A}], exclusive=True, protected=[KEY_B])
    assert exclusive.plan(current)[3] == [KEY_C]
    absent = declaration([{"public_key": KEY_A}, {"public_key": random_key()}], state="absent")
    assert absent.plan(current)[3] == [KEY_A]


def test_psk_changes_are_planned_but_never_described(tmp_path):
    old, new = random_key(), random_key()
    psk = tmp_path / "peer.psk"
    psk.write_text(new + "\n")
    empty = tmp_path / "empty.psk"
    empty.write_text("")
    current = {KEY_A: Peer(KEY_A, preshared_key=old), KEY_B: Peer(KEY_B, preshared_key=old)}
    decl = declaration(
        [{"public_key": KEY_A, "preshared_key_file": str(psk)}, {"public_key": KEY_B, "preshared_key_file": str(empty)}]
    )
    to_apply, _added, updated, _removed, diff = decl.plan(current)
    assert updated == sorted([KEY_A, KEY_B])
    change = {peer.public_key: peer for peer in to_apply}
    assert change[KEY_A].preshared_key == new
    assert change[KEY_B].preshared_key == ""  # written as the all-zero key: no PSK
    text = repr(diff)
    assert old not in text
    assert new not in text
    assert "PresharedKey = (set, replaced from %s)" % psk in text
