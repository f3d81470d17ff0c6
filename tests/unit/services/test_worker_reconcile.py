"""Reconcile decisions: what is missing, and which peers are stale (by handshake age only)."""

from __future__ import annotations

import ipaddress

import pytest

from wgmesh import derive
from wgmesh.worker.backend import Peer
from wgmesh.worker.reconcile import StalePolicy, host_lladdrs, is_stale, plan

KEY_A = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
KEY_B = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="
KEY_C = "o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg="
STATIC = "gP3VJnTTvnQut+z4O+m0N9RgMyXbgyUbUkF3E3TKX2w="
POLICY = StalePolicy(stale_after=10800, grace_period=600)
NOW = 1_800_000_000.0
HOUR = 3600


def ll(key):
    return derive.lladdr_from_key(key)


def peer(key, handshake=0.0, ips=None):
    return Peer(key, tuple(ips) if ips is not None else (f"{ll(key)}/128",), handshake)


def make_plan(desired, peers, routes=None, fdb=..., since=None, static=(STATIC,)):
    peers = {p.public_key: p for p in peers}
    routes = {ll(k) for k in desired} if routes is None else routes
    fdb = {ll(k) for k in desired} if fdb is ... else fdb
    return plan(desired, peers, routes, fdb, ll, set(static), since or {}, NOW, POLICY)


@pytest.mark.parametrize(
    "handshake, since, stale",
    [
        (NOW - 60, NOW - 10 * HOUR, False),  # healthy node, registered long ago: never expire by registration
        (NOW - 4 * HOUR, NOW - 10 * HOUR, True),  # silent for longer than stale_after
        (NOW - 4 * HOUR, NOW - 300, False),  # old handshake but just registered again: grace period
        (0.0, NOW - 2 * HOUR, False),  # never handshaked, added 2 h ago: not yet stale_after
        (0.0, NOW - 4 * HOUR, True),  # never handshaked since stale_after
        (NOW - 3 * HOUR, NOW - 3 * HOUR, True),  # exactly stale_after counts as stale
    ],
)
def test_is_stale(handshake, since, stale):
    assert is_stale(handshake, since, NOW, POLICY) is stale


def test_missing_peers_routes_and_fdb_are_planned():
    desired = {KEY_A: NOW - 100, KEY_B: NOW - 100, KEY_C: NOW - 100}
    result = make_plan(
        desired,
        [peer(KEY_A, NOW - 10), peer(KEY_B, NOW - 10)],
        routes={ll(KEY_A), ll(KEY_C)},  # B: no route
        fdb={ll(KEY_A), ll(KEY_B)},  # C: no FDB entry
    )
    assert result.add_peers == [KEY_C]
    assert sorted(result.add_links) == sorted([KEY_B, KEY_C])
    # A peer missing from the interface keeps its route (as `wg set ... remove` leaves it):
    # --drift names the part that is missing.
    assert result.links_missing == {KEY_B: ("route",), KEY_C: ("fdb",)}
    assert result.remove == []


def test_wrong_allowed_ips_are_repaired_and_addresses_compare_as_addresses():
    expanded = ipaddress.IPv6Address(ll(KEY_A)).exploded + "/128"  # same address, other spelling
    ok = make_plan({KEY_A: NOW}, [peer(KEY_A, NOW, ips=[expanded])])
    assert ok.add_peers == ok.fix_peers == []
    wrong = make_plan({KEY_A: NOW, KEY_B: NOW}, [peer(KEY_A, NOW, ips=["fe80::1/128"]), peer(KEY_B, NOW, ips=[])])
    assert sorted(wrong.fix_peers) == sorted([KEY_A, KEY_B])  # corrected with replace_allowed_ips
    assert wrong.add_peers == []


def test_no_vxlan_device_means_no_fdb_work():
    assert make_plan({KEY_A: NOW}, [peer(KEY_A, NOW)], fdb=None).add_links == []


def test_static_peers_are_never_touched():
    desired = {STATIC: NOW - 10 * HOUR}  # even if someone published the key
    result = make_plan(desired, [peer(STATIC, 0.0, ips=["fe80::1234/128"])], since={STATIC: NOW - 10 * HOUR})
    assert result.add_peers == result.add_links == result.remove == []


def test_stale_managed_peer_is_removed_with_its_lladdr():
    result = make_plan({KEY_A: NOW - 10 * HOUR}, [peer(KEY_A, NOW - 5 * HOUR)])
    assert result.remove == [KEY_A]
    assert result.remove_lladdrs == {KEY_A: (ll(KEY_A),)}
    assert result.add_peers == [] and result.add_links == []


def test_peer_put_back_by_us_gets_a_grace_period():
    # a rebooted gateway: journal says added 10 h ago, the kernel has no handshake yet
    result = make_plan({KEY_A: NOW - 10 * HOUR}, [peer(KEY_A, 0.0)], since={KEY_A: NOW - 60})
    assert result.remove == []


def test_unmanaged_peers_stay_unless_stale():
    fresh, stale = (
        peer(KEY_B, NOW - 60, ips=["fe80::b/128"]),
        peer(KEY_C, NOW - 5 * HOUR, ips=["fe80::c/128", "10.0.0.0/8"]),
    )
    since = {KEY_B: NOW - 10 * HOUR, KEY_C: NOW - 10 * HOUR}
    result = make_plan({}, [fresh, stale], since=since)
    assert result.remove == [KEY_C]
    assert result.remove_lladdrs[KEY_C] == (ipaddress.IPv6Address("fe80::c"),)  # only its link-local /128
    assert result.add_peers == []
    # first seen just now: no decision before the grace period ran out
    assert make_plan({}, [stale], since={KEY_C: NOW - 10}).remove == []


def test_host_lladdrs_skips_other_prefixes_and_garbage():
    assert host_lladdrs(["fe80::1/128", "fe80::/64", "2001:db8::1/128", "10.0.0.1/32", "nonsense"]) == (
        ipaddress.IPv6Address("fe80::1"),
    )


def test_ha_standby_finds_nothing_stale():
    """A standby sees no handshakes: every node of its partner looks silent for hours."""
    silent = peer(KEY_A, NOW - 10 * HOUR)
    unmanaged = peer(KEY_B, 0.0)
    result = plan(
        {KEY_A: NOW - 20 * HOUR}, {KEY_A: silent, KEY_B: unmanaged}, set(), None, ll, set(), {KEY_B: NOW - 20 * HOUR},
        NOW, POLICY, active_since=None,
    )  # fmt: skip
    assert result.remove == []
    # the same inputs on an active member remove both
    active = plan(
        {KEY_A: NOW - 20 * HOUR}, {KEY_A: silent, KEY_B: unmanaged}, set(), None, ll, set(), {KEY_B: NOW - 20 * HOUR},
        NOW, POLICY, active_since=0.0,
    )  # fmt: skip
    assert sorted(active.remove) == sorted([KEY_A, KEY_B])


def test_ha_grace_period_starts_at_the_promotion():
    silent = peer(KEY_A, NOW - 10 * HOUR)
    just_promoted = plan({KEY_A: NOW - 20 * HOUR}, {KEY_A: silent}, set(), None, ll, set(), {}, NOW, POLICY, NOW - 60)
    assert just_promoted.remove == []
    long_ago = plan({KEY_A: NOW - 20 * HOUR}, {KEY_A: silent}, set(), None, ll, set(), {}, NOW, POLICY, NOW - 4 * HOUR)
    assert long_ago.remove == [KEY_A]
