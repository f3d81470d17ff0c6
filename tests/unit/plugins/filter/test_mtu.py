"""wg_mtus: the MTU table, its boundaries, and the VXLAN headroom checked against the kernel."""

import subprocess

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.filter.mtu import wg_mtus
from ansible_collections.freifunk.wgmesh.plugins.module_utils import _mtu


def test_design_facts():
    # docs/architecture.md, "MTUs": WireGuard 1420 over an IPv6 underlay, VXLAN at most 1350,
    # clients are offered 1280.
    m = wg_mtus(1500, "ipv6")
    assert (m["wireguard"], m["vxlan"], m["client"]) == (1420, 1350, 1280)
    assert wg_mtus(1500) == m  # ipv6 is the default family


def test_wireguard_over_ipv4_saves_the_20_byte_difference():
    assert wg_mtus(1500, "ipv4")["wireguard"] - wg_mtus(1500, "ipv6")["wireguard"] == 20
    assert wg_mtus(1500, "ipv4")["wireguard"] == 1440  # wg-quick's figure for an IPv4-only path


def test_gluon_table():
    # Gluon docs/user/mtu.rst, WireGuard column: the smallest WAN MTU that carries a
    # 1280 byte payload unfragmented is 1442 over IPv4 and 1462 over IPv6 ...
    assert _mtu.min_underlay("ipv4") == 1442
    assert _mtu.min_underlay("ipv6") == 1462
    assert wg_mtus(1442, "ipv4")["batman"] == 1280
    assert wg_mtus(1462, "ipv6")["batman"] == 1280
    # ... and its recommended mesh-VPN MTU of 1376 (a 1436 DS-Lite WAN over IPv4) leaves
    # 1274 bytes unfragmented: below what clients are offered, so it is refused here.
    with pytest.raises(AnsibleFilterError) as err:
        wg_mtus(1436, "ipv4")
    assert "client packets of 1274 bytes" in str(err.value)


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_one_byte_below_the_minimum_fails_with_the_minimum(family):
    low = _mtu.min_underlay(family) - 1
    with pytest.raises(AnsibleFilterError) as err:
        wg_mtus(low, family)
    msg = str(err.value)
    assert "underlay MTU %d over %s is too small" % (low, family) in msg
    assert "at least %d over %s" % (low + 1, family) in msg
    assert "clients need 1280" in msg


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("underlay", [1462, 1480, 1492, 1500, 1600, 4000, 9000])
def test_layers_add_up(underlay, family):
    m = wg_mtus(underlay, family)
    ip = 20 if family == "ipv4" else 40
    # each layer is the one below minus its own headers
    assert m["wireguard"] + 32 + 8 + ip == underlay
    assert m["vxlan"] + 14 + 8 + 8 + 40 == m["wireguard"]
    assert m["batman"] == min(m["vxlan"] - 14 - 18, 1500)
    assert m["client"] == 1280 <= m["batman"]
    assert m["mss_ipv4"] == m["batman"] - 40
    assert m["mss_ipv6"] == m["batman"] - 60
    assert (m["underlay"], m["family"]) == (underlay, family)


def test_batman_is_capped_at_eth_data_len():
    assert wg_mtus(9000)["batman"] == 1500
    assert wg_mtus(9000)["vxlan"] == 8850  # 9000 - 80 - 70


def test_string_digits_from_inventory_are_accepted():
    assert wg_mtus("1500") == wg_mtus(1500)


@pytest.mark.parametrize(
    ("underlay", "family", "fragment"),
    [
        (1500, "inet6", "unknown underlay family 'inet6': expected one of ipv4, ipv6"),
        (1500, None, "unknown underlay family None"),
        (True, "ipv6", "got a boolean"),
        ("15oo", "ipv6", "must be an integer, got '15oo'"),
        (None, "ipv6", "must be an integer, got None"),
        (1500.5, "ipv6", "must be an integer"),
        (70000, "ipv6", "larger than an IP packet can be"),
        (0, "ipv6", "too small"),
        (1280, "ipv4", "too small"),
    ],
)
def test_bad_input(underlay, family, fragment):
    with pytest.raises(AnsibleFilterError) as err:
        wg_mtus(underlay, family)
    assert fragment in str(err.value)
    assert "underlay" in str(err.value)


def _ip(ns, *args, check=True):
    return subprocess.run(["ip", "-n", ns, *args], capture_output=True, text=True, check=check)


def test_kernel_vxlan_headroom_matches(netns):
    """The kernel agrees on the VXLAN term: over an IPv6 lower device of the WireGuard
    MTU, a VXLAN gets exactly our vxlan MTU and refuses one byte more.

    The lower device is a bridge standing in for wg-<dom>: the host kernel has no
    WireGuard module, and VXLAN only looks at the lower device's MTU.
    """
    m = wg_mtus(1500, "ipv6")
    _ip(netns, "link", "add", "wgx", "mtu", str(m["wireguard"]), "type", "bridge")
    _ip(netns, "link", "set", "wgx", "up")
    _ip(netns, "addr", "add", "fe80::1/64", "dev", "wgx", "nodad")
    r = _ip(
        netns,
        *("link", "add", "vxx", "type", "vxlan", "id", "4831583", "dstport", "8472"),
        *("local", "fe80::1", "dev", "wgx"),
        check=False,
    )
    if r.returncode != 0:
        pytest.skip("cannot create a VXLAN over IPv6 here: %s" % r.stderr.strip())
    shown = _ip(netns, "-o", "link", "show", "vxx").stdout
    assert " mtu %d " % m["vxlan"] in shown, shown
    assert _ip(netns, "link", "set", "vxx", "mtu", str(m["vxlan"] + 1), check=False).returncode != 0


def test_docs_table_matches_the_filter(repo_root):
    """docs/mtu.md shows a table of results; it must be what the filter computes."""
    rows = []
    for line in (repo_root / "docs" / "mtu.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1] in ("ipv4", "ipv6"):
            rows.append(cells)
    assert len(rows) >= 5
    for underlay, family, wireguard, vxlan, batman, client, mss in rows:
        m = wg_mtus(int(underlay.split()[0]), family)
        assert [m["wireguard"], m["vxlan"], m["batman"], m["client"]] == [
            int(wireguard),
            int(vxlan),
            int(batman),
            int(client),
        ], underlay
        assert mss == "%d / %d" % (m["mss_ipv4"], m["mss_ipv6"]), underlay
