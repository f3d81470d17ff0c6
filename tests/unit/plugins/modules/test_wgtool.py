"""The wg CLI wrapper: normalization, dump parsing, batch building (no wg needed)."""

import socket

import pytest

from ansible_collections.freifunk.wgmesh.plugins.module_utils import _wgtool
from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgtool import (
    ZERO_KEY,
    Peer,
    WgError,
    WgTool,
    addconf_text,
    endpoint_forms,
    normalize_network,
    parse_dump,
    removal_argvs,
    split_endpoint,
)

KEY_A = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
KEY_B = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="
PSK = "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg="


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("fe80::0f57/128", "fe80::f57/128"),
        ("fe80::0f57", "fe80::f57/128"),
        ("FE80:0:0:0:0:0:0:1/128", "fe80::1/128"),
        ("10.1.2.3/24", "10.1.2.0/24"),
        ("10.1.2.3", "10.1.2.3/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("2001:db8::1/32", "2001:db8::/32"),
        (" fd00::1/64 ", "fd00::/64"),
    ],
)
def test_normalize_network_matches_what_wg_prints(given, canonical):
    assert normalize_network(given) == canonical


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ("fe80::g/128", "not an IPv4 or IPv6 address"),
        ("10.0.0.256/32", "not an IPv4 or IPv6 address"),
        ("10.0.0.1/33", "prefix length must be 0-32"),
        ("fe80::1/129", "prefix length must be 0-128"),
        ("fe80::1/-1", "prefix length"),
        ("fe80::1/", "prefix length"),
        ("", "not an IPv4 or IPv6 address"),
        (42, "must be a string"),
    ],
)
def test_normalize_network_rejects_with_reason(given, complaint):
    with pytest.raises(ValueError, match=complaint):
        normalize_network(given)


def test_split_endpoint():
    assert split_endpoint("192.0.2.1:51820") == ("192.0.2.1", 51820)
    assert split_endpoint("[2001:db8::1]:1") == ("2001:db8::1", 1)
    assert split_endpoint("gw.example.org:65535") == ("gw.example.org", 65535)
    for bad in ("2001:db8::1:51820", "host", "host:0", "host:65536", "[::1]", "", "a b:1"):
        with pytest.raises(ValueError):
            split_endpoint(bad)


def test_endpoint_forms_literals_are_canonical_without_resolving():
    def no_dns(*_args):
        raise AssertionError("an IP literal must not be resolved")

    assert endpoint_forms("[2001:0db8:0::1]:51820", resolve=no_dns) == {"[2001:db8::1]:51820"}
    assert endpoint_forms("192.0.2.1:7", resolve=no_dns) == {"192.0.2.1:7"}


def test_endpoint_forms_resolves_host_names_on_the_target():
    # localhost resolves through the real resolver (/etc/hosts) on every Debian host.
    forms = endpoint_forms("localhost:51820")
    assert "127.0.0.1:51820" in forms or "[::1]:51820" in forms


def test_endpoint_forms_unresolvable_name_is_an_input_error():
    def fail(*_args):
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(ValueError, match="does not resolve on the target"):
        endpoint_forms("gw.invalid:51820", resolve=fail)


# A dump as `wg show <if> dump` prints it (fields tab-separated); the private key is a
# throwaway test value.
DUMP = (
    "\t".join(["cL3eVsKp+Fgj2Bk4vS3hPq5Pf0dW4qPc4m7mOKXcp1Y=", KEY_A, "51820", "off"])
    + "\n"
    + "\t".join([KEY_B, PSK, "[fd00::1]:51820", "10.1.2.0/24,fe80::f57/128", "0", "0", "0", "25"])
    + "\n"
    + "\t".join([KEY_A, "(none)", "(none)", "(none)", "1700000000", "10", "20", "off"])
    + "\n"
)


def test_parse_dump_reads_peers_and_drops_the_private_key():
    interface, peers = parse_dump(DUMP)
    assert interface == {"public_key": KEY_A, "listen_port": 51820, "fwmark": None}
    assert "cL3eVsKp+Fgj2Bk4vS3hPq5Pf0dW4qPc4m7mOKXcp1Y=" not in repr(interface)
    b = peers[KEY_B]
    assert b.allowed_ips == {"10.1.2.0/24", "fe80::f57/128"}
    assert b.endpoint == "[fd00::1]:51820"
    assert b.persistent_keepalive == 25
    assert b.preshared_key == PSK
    a = peers[KEY_A]
    assert (a.allowed_ips, a.endpoint, a.persistent_keepalive, a.preshared_key) == (frozenset(), None, 0, None)


def test_parse_dump_errors_never_quote_the_line():
    broken = DUMP.replace("\t25\n", "\n")
    with pytest.raises(WgError) as caught:
        parse_dump(broken)
    assert PSK not in str(caught.value)
    assert "line 2" in str(caught.value)


def test_parse_dump_bad_field_is_a_wg_error_without_the_psk():
    broken = DUMP.replace("10.1.2.0/24,", "10.1.2.0/99,")
    with pytest.raises(WgError, match=r"line 2 in wg show dump: .*prefix length") as caught:
        parse_dump(broken)
    assert PSK not in str(caught.value)


def test_describe_never_shows_the_preshared_key():
    peer = Peer(KEY_B, allowed_ips=frozenset({"fe80::1/128"}), preshared_key=PSK)
    text = peer.describe()
    assert PSK not in text
    assert "PresharedKey = (set)" in text


def test_addconf_text_sets_only_managed_fields():
    text = addconf_text(
        [
            Peer(
                KEY_A, allowed_ips=frozenset({"fe80::2/128", "10.0.0.1/32"}), endpoint=None, persistent_keepalive=None
            ),
            Peer(KEY_B, allowed_ips=frozenset(), endpoint="[::1]:1", persistent_keepalive=0, preshared_key=""),
        ]
    )
    first, second = text.split("[Peer]\n")[1:]
    assert first == "PublicKey = %s\nAllowedIPs = 10.0.0.1/32, fe80::2/128\n" % KEY_A
    # No AllowedIPs line clears them; an empty PSK becomes the all-zero key WireGuard treats as none.
    assert second == "PublicKey = %s\nEndpoint = [::1]:1\nPersistentKeepalive = 0\nPresharedKey = %s\n" % (
        KEY_B,
        ZERO_KEY,
    )


def test_removal_argvs_split_under_the_budget():
    keys = [KEY_A, KEY_B] * 5
    argvs = removal_argvs("wg0", keys, budget=200)
    assert len(argvs) > 1
    assert all(sum(len(part) + 1 for part in argv) <= 200 for argv in argvs)
    assert [argv[:3] for argv in argvs] == [["wg", "set", "wg0"]] * len(argvs)
    flat = [part for argv in argvs for part in argv[3:]]
    assert flat == [part for key in keys for part in ("peer", key, "remove")]
    assert removal_argvs("wg0", []) == []


def test_wgtool_reports_stderr():
    def run(argv, data=None):
        return 1, "", "Unable to access interface: No such device\n"

    with pytest.raises(WgError, match="No such device"):
        WgTool(run, "wg-nope").dump()


def test_wgtool_feeds_addconf_through_stdin():
    calls = []

    def run(argv, data=None):
        calls.append((argv, data))
        return 0, "", ""

    tool = WgTool(run, "wg0")
    tool.addconf([Peer(KEY_A, allowed_ips=frozenset({"fe80::1/128"}), preshared_key=PSK)])
    tool.addconf([])
    ((argv, data),) = calls
    assert argv == ["wg", "addconf", "wg0", "/dev/stdin"]
    assert PSK not in " ".join(argv)
    assert "PresharedKey = %s" % PSK in data


def test_argv_budget_is_below_linux_arg_max():
    assert _wgtool.ARGV_BUDGET < 2 * 1024 * 1024
