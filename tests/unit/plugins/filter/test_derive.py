"""wg_mac, wg_lladdr, wg_vni against the shared vectors (tests/vectors/derivation.json)."""

import ipaddress
import json
import subprocess

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.filter.derive import wg_lladdr, wg_mac, wg_vni
from ansible_collections.freifunk.wgmesh.plugins.module_utils import _derive
from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgkey import key_problem

SEED = "1f0b31cecdf980317f453b162ac476ee09cf9997b03e684d4f2f484e75d9cd26"


def _valid_lladdr_vectors(vectors):
    return [v for v in vectors["lladdr"] if key_problem(v["key"]) is None]


def test_vectors_cover_both_rules_and_valid_keys(vectors):
    # Guards the tests below against an emptied or one-sided vector file.
    rules = {v["rule"] for v in _valid_lladdr_vectors(vectors)}
    assert rules == set(_derive.RULES)
    assert {v["rule"] for v in vectors["vni"]} == set(_derive.RULES)


def test_lladdr_and_mac_match_vectors(vectors):
    for v in _valid_lladdr_vectors(vectors):
        got = wg_lladdr(v["key"], rule=v["rule"])
        # Compare as addresses (the kernel prints f57 where others write 0f57) ...
        assert ipaddress.IPv6Address(got) == ipaddress.IPv6Address(v["lladdr"]), v
        # ... and insist on canonical text, which is what templates write into configs.
        assert got == str(ipaddress.IPv6Address(v["lladdr"])), v
        assert wg_mac(v["key"], rule=v["rule"]) == v["mac"], v


def test_raw_derivation_of_non_key_vector(vectors):
    # Upstream wgkex's own unit-test vector is the literal string "public_key":
    # the rule itself derives it, the filters refuse it as a key.
    raw = [v for v in vectors["lladdr"] if key_problem(v["key"]) is not None]
    assert raw, "the vector file lost its raw-derivation vector"
    for v in raw:
        assert _derive.lladdr_from_key(v["key"], v["rule"]) == ipaddress.IPv6Address(v["lladdr"])
        assert _derive.mac_from_key(v["key"], v["rule"]) == v["mac"]
        with pytest.raises(AnsibleFilterError, match="not a WireGuard key"):
            wg_lladdr(v["key"], rule=v["rule"])


def test_rules_differ_and_default_is_ffmuc(vectors):
    v = _valid_lladdr_vectors(vectors)[0]
    assert wg_lladdr(v["key"]) == wg_lladdr(v["key"], rule="ffmuc")
    assert wg_lladdr(v["key"], rule="gluon") != wg_lladdr(v["key"], rule="ffmuc")


def test_lladdr_is_eui64_of_mac(vectors):
    for v in _valid_lladdr_vectors(vectors):
        mac = bytes.fromhex(wg_mac(v["key"], v["rule"]).replace(":", ""))
        addr = ipaddress.IPv6Address(wg_lladdr(v["key"], v["rule"]))
        assert addr in ipaddress.IPv6Network("fe80::/64")
        assert addr.packed[8:] == mac[:3] + b"\xff\xfe" + mac[3:]


def test_canonical_text_drops_leading_zeros():
    # Search a key whose lladdr has a group with a leading zero: the filter must
    # print it the way the kernel does (f57, not 0f57), i.e. canonical form.
    for i in range(1000):
        key = ("%043d" % i)[:42] + "A="
        text = wg_lladdr(key)
        groups = ipaddress.IPv6Address(text).exploded.split(":")
        if any(g.startswith("0") and g != "0000" for g in groups[4:]):
            assert text == str(ipaddress.IPv6Address(text))
            assert not any(g.startswith("0") and len(g) > 1 for g in text.split(":") if g)
            return
    pytest.fail("no key with a leading-zero group found in 1000 tries")


def test_prefixlen():
    key = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
    assert wg_lladdr(key, prefixlen=128) == wg_lladdr(key) + "/128"
    assert ipaddress.IPv6Interface(wg_lladdr(key, prefixlen=64)).network == ipaddress.IPv6Network("fe80::/64")
    for bad in (129, -1, "128", True):
        with pytest.raises(AnsibleFilterError, match="prefixlen must be an integer from 0 to 128"):
            wg_lladdr(key, prefixlen=bad)


@pytest.mark.parametrize("flt", [wg_lladdr, wg_mac])
def test_invalid_keys_name_the_problem(vectors, flt):
    for bad in vectors["invalid_keys"]:
        with pytest.raises(AnsibleFilterError) as err:
            flt(bad["key"])
        msg = str(err.value)
        assert "not a WireGuard key" in msg, bad
        # the message says why, in the words of the shared key check
        assert key_problem(bad["key"]) in msg, bad


@pytest.mark.parametrize("value", [None, 42, ["XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="]])
def test_non_string_keys(value):
    with pytest.raises(AnsibleFilterError, match="must be a string"):
        wg_lladdr(value)


@pytest.mark.parametrize("flt", [wg_lladdr, wg_mac])
def test_unknown_rule_lists_allowed(flt):
    with pytest.raises(AnsibleFilterError, match=r"unknown derivation rule 'gluon2'.*'ffmuc', 'gluon'"):
        flt("XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8=", rule="gluon2")


def test_vni_matches_vectors(vectors):
    for v in vectors["vni"]:
        assert wg_vni(v["domain_seed"], rule=v["rule"]) == v["vni"], v
        assert _derive.VNI_SEED_KEYS[v["rule"]] == v["seed_key"], v
        # Gluon lower-cases the seed before hashing.
        assert wg_vni(v["domain_seed"].upper(), rule=v["rule"]) == v["vni"], v


def test_vni_is_24_bits():
    for i in range(200):
        assert 0 <= wg_vni("%064x" % i) < 2**24


@pytest.mark.parametrize(
    ("seed", "problem"),
    [
        (SEED[:-1], "must be 64 hex digits (32 bytes), got 63"),
        (SEED + "0", "must be 64 hex digits (32 bytes), got 65"),
        (SEED[:-1] + "g", "contains non-hex characters 'g'"),
        (SEED + "\n", "leading or trailing whitespace"),
        ("", "got 0"),
        (1234, "must be a string of 64 hex digits, got int"),
    ],
)
def test_vni_bad_seed(seed, problem):
    with pytest.raises(AnsibleFilterError) as err:
        wg_vni(seed)
    assert problem in str(err.value)
    assert str(err.value).startswith("domain seed ")


def test_vni_unknown_rule():
    with pytest.raises(AnsibleFilterError, match="unknown derivation rule 'ffmuc2'"):
        wg_vni(SEED, rule="ffmuc2")


def test_kernel_prints_the_same_text(vectors, netns):
    """The addresses the kernel reports (`ip -j addr`) are our canonical text, exactly."""
    keys = [(v["key"], v["rule"]) for v in _valid_lladdr_vectors(vectors)]
    # plus keys whose address has a group with a leading zero (0f57 -> f57)
    keys += [
        (k, "ffmuc")
        for k in ("%042dA=" % i for i in range(200))
        if ":0" in ipaddress.IPv6Address(wg_lladdr(k)).exploded[20:]
    ][:3]
    assert len(keys) == len(_valid_lladdr_vectors(vectors)) + 3
    ip = ["ip", "-n", netns]
    subprocess.run([*ip, "link", "add", "h1lladdr", "type", "bridge"], check=True)
    ours = set()
    for key, rule in keys:
        ours.add(wg_lladdr(key, rule))
        subprocess.run([*ip, "addr", "add", wg_lladdr(key, rule, 128), "dev", "h1lladdr", "nodad"], check=True)
    shown = json.loads(
        subprocess.run(
            [*ip, "-j", "addr", "show", "dev", "h1lladdr"], capture_output=True, text=True, check=True
        ).stdout
    )
    kernel = {a["local"] for link in shown for a in link["addr_info"] if a["family"] == "inet6"}
    assert kernel == ours
