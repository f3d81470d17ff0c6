"""wg_ifnames / wg_ifname: prefix stripping and Linux's interface-name rules."""

import subprocess

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.filter.naming import wg_ifname, wg_ifnames
from ansible_collections.freifunk.wgmesh.plugins.module_utils import _naming


def test_design_example():
    assert wg_ifnames("ffmuc_welt", ["ffmuc_"]) == {
        "wg": "wg-welt",
        "vx": "vx-welt",
        "bat": "bat-welt",
        "br": "br-welt",
    }


def test_single_prefix_string_is_a_list_of_one():
    assert wg_ifnames("ffmuc_welt", "ffmuc_") == wg_ifnames("ffmuc_welt", ["ffmuc_"])


@pytest.mark.parametrize(
    "prefixes", [["ffmuc_", "ffmuc_muc_"], ["ffmuc_muc_", "ffmuc_"], ["ff", "ffmuc_muc_", "ffmuc_"]]
)
def test_longest_prefix_wins_whatever_the_order(prefixes):
    assert wg_ifnames("ffmuc_muc_uml", prefixes)["wg"] == "wg-uml"


def test_kinds_and_single_name():
    names = wg_ifnames("ffmuc_welt", ["ffmuc_"])
    assert set(names) == set(_naming.KINDS)
    for kind in _naming.KINDS:
        assert wg_ifname("ffmuc_welt", ["ffmuc_"], kind) == names[kind]
    with pytest.raises(AnsibleFilterError, match="unknown interface kind 'wireguard': expected one of wg, vx, bat, br"):
        wg_ifname("ffmuc_welt", ["ffmuc_"], "wireguard")


def test_longest_name_exactly_15_is_accepted():
    # "bat-" is the longest pattern: 4 + 11 = 15 bytes.
    names = wg_ifnames("ffmuc_" + "a" * 11, ["ffmuc_"])
    assert len(names["bat"]) == _naming.IFNAME_MAX_BYTES == 15


def test_name_of_16_fails_naming_domain_and_name():
    domain = "ffmuc_" + "a" * 12
    with pytest.raises(AnsibleFilterError) as err:
        wg_ifnames(domain, ["ffmuc_"])
    msg = str(err.value)
    assert repr("bat-" + "a" * 12) in msg
    assert repr(domain) in msg
    assert "16 bytes long, Linux allows at most 15" in msg


def test_kind_that_fits_still_fails_when_another_does_not():
    # wg-aaaaaaaaaaaa is 15 bytes, but bat- of the same domain is 16.
    with pytest.raises(AnsibleFilterError, match=r"bat-a{12}"):
        wg_ifname("ffmuc_" + "a" * 12, ["ffmuc_"], "wg")


def test_length_counts_bytes_not_characters():
    # IFNAMSIZ is bytes: 11 characters of which one takes 2 bytes in UTF-8 is 16 bytes with "bat-".
    with pytest.raises(AnsibleFilterError, match="16 bytes long"):
        wg_ifnames("ffmuc_" + "ü" + "a" * 10, ["ffmuc_"])


@pytest.mark.parametrize("bad", ["/", ":", "%", " ", "\t", "\n"])
def test_characters_linux_refuses(bad):
    domain = "ffmuc_we" + bad + "lt"
    with pytest.raises(AnsibleFilterError) as err:
        wg_ifnames(domain, ["ffmuc_"])
    msg = str(err.value)
    assert repr(domain) in msg
    assert "%r, which Linux refuses" % bad in msg


def test_dot_names_are_fine_inside_a_name():
    assert wg_ifnames("ffmuc_a.b", ["ffmuc_"])["br"] == "br-a.b"


@pytest.mark.parametrize(
    ("domain", "prefixes", "fragment"),
    [
        ("ffhh_welt", ["ffmuc_"], "does not start with any configured prefix ('ffmuc_')"),
        ("ffmuc_", ["ffmuc_"], "does not start with any configured prefix"),
        ("welt", ["ffmuc_", "ffhh_"], "('ffmuc_', 'ffhh_')"),
        ("ffmuc_welt", [], "must be a non-empty list"),
        ("ffmuc_welt", [""], "must be non-empty strings"),
        ("ffmuc_welt", [None], "must be non-empty strings"),
        ("ffmuc_welt", None, "must be a non-empty list"),
        (None, ["ffmuc_"], "domain must be a string, got NoneType"),
    ],
)
def test_bad_domain_or_prefixes(domain, prefixes, fragment):
    with pytest.raises(AnsibleFilterError) as err:
        wg_ifnames(domain, prefixes)
    assert fragment in str(err.value)


def _kernel_link_add(ns, name):
    # A bridge: the bridge driver is always there, unlike dummy.
    return subprocess.run(
        ["ip", "-n", ns, "link", "add", "name", name, "type", "bridge"], capture_output=True, text=True, check=False
    )


def test_kernel_accepts_the_longest_name_we_accept(netns):
    longest = wg_ifnames("ffmuc_" + "a" * 11, ["ffmuc_"])["bat"]
    r = _kernel_link_add(netns, longest)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", ["bat-" + "a" * 12, "br-we/lt", "br-we:lt", "br-we lt", "br-we%lt"])
def test_kernel_refuses_what_we_refuse(netns, name):
    assert _naming.ifname_problem(name)
    r = _kernel_link_add(netns, name)
    assert r.returncode != 0, "the kernel accepted %r" % name


def test_kernel_treats_percent_d_as_a_template(netns):
    # Why '%' is refused: the kernel accepts "br-we%dlt" but names the link br-we0lt.
    assert _naming.ifname_problem("br-we%dlt")
    r = _kernel_link_add(netns, "br-we%dlt")
    assert r.returncode == 0, r.stderr
    links = subprocess.run(["ip", "-n", netns, "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert "br-we0lt" in links
    assert "br-we%dlt" not in links
