"""One rule, two runtimes: the controller's filters and the daemon's wgmesh.derive give
the same answers on the same shared vector file (docs/architecture.md, "One rule per fact")."""

import base64
import ipaddress
import re

import pytest

from ansible_collections.freifunk.wgmesh.plugins.module_utils import _derive, _naming, _wgkey
from wgmesh import derive, protocol  # installed editable by `make venv`: one rule checked in both runtimes
from wgmesh.worker.uapi import public_from_private_hex  # the daemon's public-from-private rule


def test_lladdr_and_mac(vectors):
    assert vectors["lladdr"]
    for v in vectors["lladdr"]:
        daemon = derive.lladdr_from_key(v["key"], v["rule"])
        plugin = _derive.lladdr_from_key(v["key"], v["rule"])
        assert ipaddress.IPv6Address(daemon) == plugin == ipaddress.IPv6Address(v["lladdr"]), v
        assert derive.mac_from_key(v["key"], v["rule"]) == _derive.mac_from_key(v["key"], v["rule"]) == v["mac"], v


def test_vni(vectors):
    assert vectors["vni"]
    for v in vectors["vni"]:
        assert derive.vni_from_seed(v["domain_seed"], v["rule"]) == _derive.vni_from_seed(v["domain_seed"], v["rule"])
        assert _derive.vni_from_seed(v["domain_seed"], v["rule"]) == v["vni"]
    for i in range(100):  # beyond the vectors: the same function on many seeds
        seed = "%064x" % (i * 0x9E3779B97F4A7C15)
        for rule in _derive.RULES:
            assert derive.vni_from_seed(seed, rule) == _derive.vni_from_seed(seed, rule)


def test_same_rule_names():
    assert tuple(derive.RULES) == _derive.RULES
    assert derive.VNI_SEED_KEYS == _derive.VNI_SEED_KEYS


@pytest.mark.parametrize("runtime", ["daemon", "plugin"])
def test_interface_names(vectors, runtime):
    interface_names = derive.interface_names if runtime == "daemon" else _naming.interface_names
    assert vectors["ifnames"]
    for v in vectors["ifnames"]:
        if "names" in v:
            assert interface_names(v["domain"], v["prefixes"]) == v["names"], v
        else:
            with pytest.raises(ValueError, match=re.escape(v["error"])):
                interface_names(v["domain"], v["prefixes"])


@pytest.mark.parametrize("runtime", ["daemon", "plugin"])
def test_key_syntax(vectors, runtime):
    """The shared key vectors, through each runtime's own key check."""

    def is_key(value):
        return protocol.is_valid_key(value) if runtime == "daemon" else _wgkey.key_problem(value) is None

    assert vectors["valid_keys"] and vectors["invalid_keys"]
    for key in vectors["valid_keys"]:
        assert is_key(key), key
    for bad in vectors["invalid_keys"]:
        assert not is_key(bad["key"]), bad


@pytest.mark.parametrize("runtime", ["daemon", "plugin"])
def test_public_key_from_private_key(vectors, runtime):
    """RFC 7748's unclamped private keys: both runtimes clamp as `wg pubkey` does."""

    def public_of(private):
        if runtime == "daemon":
            return public_from_private_hex(base64.b64decode(private).hex())
        return _wgkey.public_key_of(private)

    assert vectors["keypairs"]
    for v in vectors["keypairs"]:
        assert public_of(v["private"]) == v["public"], v["source"]
