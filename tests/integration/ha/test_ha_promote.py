"""wgmesh-ha promote against real wireguard-go: a member and a node in two namespaces.

The member holds the node as a peer the way the worker leaves it (no endpoint, no keepalive)
and the pair's virtual address (added here as keepalived would, after its own address). The
node's only peer is the gateway at the VIP, with no keepalive: it never starts a handshake by
itself, so a handshake proves the member initiated it. The node's view of the gateway's
endpoint tells where the initiation came from: the VIP, not the member's own address.
"""

from __future__ import annotations

import functools
import json
import secrets
import socket
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.procs import Unavailable, out, run, wait_until
from tests.support.wgnetns import WgNetns
from wgmesh.ha import static
from wgmesh.ha.promote import promote
from wgmesh.ha.route import DEFAULT_FWMARK, DEFAULT_TABLE
from wgmesh.worker.domains import DomainLinks
from wgmesh.worker.selector import BackendSelector

HA_BIN = str(Path(sys.executable).with_name("wgmesh-ha"))
MEMBER_IP, VIP, NODE_IP = "10.77.0.2", "10.77.0.1", "10.77.0.10"
GW_PORT, NODE_PORT = 40011, 40100


def keypair(tmp_path: Path, name: str) -> tuple[Path, str]:
    path = tmp_path / f"{name}.key"
    path.touch(mode=0o600)
    path.write_text(out("wg", "genkey"))
    return path, out("wg", "pubkey", input=path.read_text()).strip()


@pytest.fixture
def pair(tmp_path):
    made = []
    try:
        member, node = WgNetns("hm").start(tmp_path), None
        made.append(member)
        node = WgNetns("hn").start(tmp_path)
        made.append(node)
    except Unavailable as exc:
        for ns in made:
            ns.close()
        pytest.skip(str(exc))
    veth = f"hv{secrets.token_hex(3)}"
    try:
        run(
            "ip",
            "link",
            "add",
            veth,
            "netns",
            member.netns,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            node.netns,
        )
        run("ip", "-n", member.netns, "link", "set", veth, "up")
        run("ip", "-n", node.netns, "link", "set", "eth0", "up")
        run("ip", "-n", member.netns, "addr", "add", f"{MEMBER_IP}/24", "dev", veth)
        run("ip", "-n", member.netns, "addr", "add", f"{VIP}/32", "dev", veth)  # keepalived's VIP: secondary
        run("ip", "-n", node.netns, "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
        gw_key, gw_pub = keypair(tmp_path, "gw")
        node_key, node_pub = keypair(tmp_path, "node")
        run("ip", "netns", "exec", member.netns, "wg", "set", member.ifname, "private-key", str(gw_key),
            "listen-port", str(GW_PORT), "peer", node_pub, "allowed-ips", "fe80::2/128")  # fmt: skip
        run("ip", "netns", "exec", node.netns, "wg", "set", node.ifname, "private-key", str(node_key),
            "listen-port", str(NODE_PORT), "peer", gw_pub, "allowed-ips", "fe80::1/128",
            "endpoint", f"{VIP}:{GW_PORT}")  # fmt: skip
        for ns in (member, node):
            run("ip", "-n", ns.netns, "link", "set", ns.ifname, "up")
        yield member, node, node_pub, gw_pub
    finally:
        for ns in made:
            ns.close()


def write_config(tmp_path: Path, ifname: str, static_peers: dict | None = None) -> Path:
    domain = f"t_{secrets.token_hex(3)}"
    path = tmp_path / "worker.yaml"
    worker = {"backend": "userspace", "interfaces": {domain: {"wg": ifname, "vx": "vx-none"}}}
    if static_peers is not None:
        worker["static_peers"] = static_peers
    path.write_text(yaml.safe_dump({"domains": [domain], "domain_prefixes": ["t_"], "worker": worker}))
    return path


def ha(netns: str, *args: str, check: bool = True):
    """wgmesh-ha in the member's namespace; its state file goes beside the config, not to /run."""
    if "--config" in args:
        args = (*args, "--state-file", str(state_file(args)))
    return run("ip", "netns", "exec", netns, HA_BIN, *args, check=check)


def state_file(args) -> Path:
    return Path(args[args.index("--config") + 1]).parent / "ha-state"


def dump(ns: WgNetns) -> dict[str, list[str]]:
    """`wg show dump` per peer: [key, psk, endpoint, allowed-ips, handshake, rx, tx, keepalive]."""
    return ns.peers()


def test_promotion_makes_the_node_handshake_from_the_vip_and_undoes_the_trigger(pair, tmp_path):
    member, node, node_pub, gw_pub = pair
    config = write_config(tmp_path, member.ifname)
    domain = yaml.safe_load(config.read_text())["domains"][0]
    learnt = tmp_path / "partner-endpoints.json"
    learnt.write_text(json.dumps({"domains": {domain: {node_pub: f"{NODE_IP}:{NODE_PORT}"}}}))
    assert dump(node)[gw_pub][4] == "0"  # no handshake before: the node never dials on its own

    result = ha(member.netns, "promote", "--config", str(config), "--vip", VIP, "--endpoints", str(learnt))
    assert "1 learnt endpoints applied, 1 peers asked to handshake" in result.stderr

    wait_until(lambda: dump(node)[gw_pub][4] != "0", timeout=20, what="the node's handshake with the member")
    assert dump(node)[gw_pub][2] == f"{VIP}:{GW_PORT}"  # the initiation came from the VIP
    peer = dump(member)[node_pub]
    assert peer[2] == f"{NODE_IP}:{NODE_PORT}"  # the learnt endpoint, applied
    assert peer[7] == "off"  # the trigger undone: keepalive back to 0
    assert member.wg("show", member.ifname, "fwmark").strip() == hex(DEFAULT_FWMARK)
    table = out("ip", "-n", member.netns, "route", "show", "table", str(DEFAULT_TABLE))
    assert f"src {VIP}" in table
    assert (tmp_path / "ha-state").read_text() == "active\n"  # the worker's stale cleanup may run

    ha(member.netns, "demote", "--config", str(config), "--vip", VIP)
    assert (tmp_path / "ha-state").read_text() == "standby\n"
    assert out("ip", "-n", member.netns, "route", "show", "table", str(DEFAULT_TABLE)).strip() == ""
    assert f"lookup {DEFAULT_TABLE}" not in out("ip", "-n", member.netns, "rule")


def test_without_the_source_route_the_initiation_leaves_from_the_member_address(pair, tmp_path):
    """The control for the test above: the same trigger with no route; the node then moves its
    endpoint to the member's own address (why the route exists)."""
    member, node, node_pub, gw_pub = pair
    member.wg(
        "set", member.ifname, "peer", node_pub, "endpoint", f"{NODE_IP}:{NODE_PORT}", "persistent-keepalive", "25"
    )
    wait_until(lambda: dump(node)[gw_pub][4] != "0", timeout=20, what="the node's handshake with the member")
    assert dump(node)[gw_pub][2] == f"{MEMBER_IP}:{GW_PORT}"


def test_bad_endpoints_file_is_not_used_but_known_endpoints_still_handshake(pair, tmp_path):
    member, node, node_pub, gw_pub = pair
    config = write_config(tmp_path, member.ifname)
    member.wg("set", member.ifname, "peer", node_pub, "endpoint", f"{NODE_IP}:{NODE_PORT}")
    learnt = tmp_path / "partner-endpoints.json"
    learnt.write_text(json.dumps({"domains": {"t_other": {}}}))
    result = ha(member.netns, "promote", "--config", str(config), "--vip", VIP, "--endpoints", str(learnt), check=False)
    assert result.returncode == 1
    assert f"learnt endpoints not used: {learnt}: domains.t_other: not a domain of this gateway" in result.stderr
    wait_until(lambda: dump(node)[gw_pub][4] != "0", timeout=20, what="the node's handshake with the member")
    assert dump(node)[gw_pub][2] == f"{VIP}:{GW_PORT}"
    ha(member.netns, "demote", "--config", str(config), "--vip", VIP)


def test_promotion_without_the_vip_on_the_host_touches_nothing(pair, tmp_path):
    member, node, node_pub, gw_pub = pair
    config = write_config(tmp_path, member.ifname)
    member.wg("set", member.ifname, "peer", node_pub, "endpoint", f"{NODE_IP}:{NODE_PORT}")
    result = ha(member.netns, "promote", "--config", str(config), "--vip", "10.77.0.99", check=False)
    assert result.returncode == 2
    assert "virtual address 10.77.0.99 is on no interface of this host" in result.stderr
    assert not (tmp_path / "ha-state").exists()  # not promoted: the worker must not think so
    assert dump(member)[node_pub][7] == "off"  # no trigger was sent
    assert member.wg("show", member.ifname, "fwmark").strip() == "off"
    assert dump(node)[gw_pub][4] == "0"


def test_promotion_again_while_holding_an_old_session_still_makes_a_handshake(pair, tmp_path):
    """The member was active minutes ago and still holds a session the node has dropped (the
    node moved to the partner). Promoted again, it must start a new handshake; a keepalive over
    the old session would be dropped by the node, which then stays cut off."""
    member, node, node_pub, gw_pub = pair
    config = write_config(tmp_path, member.ifname)
    member.wg("set", member.ifname, "peer", node_pub, "endpoint", f"{NODE_IP}:{NODE_PORT}")
    ha(member.netns, "promote", "--config", str(config), "--vip", VIP, "--endpoints", str(tmp_path / "none.json"))
    wait_until(lambda: dump(node)[gw_pub][4] != "0", timeout=20, what="the first handshake")
    # the node forgets its session (as when it moved to the partner): remove the peer, add it back
    node_key = dump(node)[gw_pub]
    node.wg("set", node.ifname, "peer", gw_pub, "remove")
    node.wg("set", node.ifname, "peer", gw_pub, "allowed-ips", node_key[3], "endpoint", f"{VIP}:{GW_PORT}")
    assert dump(node)[gw_pub][4] == "0"

    result = ha(
        member.netns, "promote", "--config", str(config), "--vip", VIP, "--endpoints", str(tmp_path / "none.json")
    )
    wait_until(lambda: dump(node)[gw_pub][4] != "0", timeout=20, what="a new handshake after the second promotion")
    assert "1 of them after dropping an old session" in result.stderr
    assert dump(node)[gw_pub][2] == f"{VIP}:{GW_PORT}"
    assert dump(member)[node_pub][2] == f"{NODE_IP}:{NODE_PORT}"  # the endpoint survived the re-add
    ha(member.netns, "demote", "--config", str(config), "--vip", VIP)


def test_demotion_drops_every_endpoint_so_the_standby_never_sends(pair, tmp_path):
    """A member demoted without a restart (preemption, a track-script FAULT, maintenance) must
    not keep its peers' endpoints: batman-adv/VXLAN traffic to a node's or a gateway's
    link-local would make it initiate a handshake with the pair's key from its own address and
    pull that peer away from the active member. WireGuard cannot unset an endpoint, so the
    peers are removed and added back: same allowed-ips, no endpoint, keepalive 0."""
    member, node, node_pub, gw_pub = pair
    config = write_config(tmp_path, member.ifname)
    member.wg("set", member.ifname, "peer", node_pub, "endpoint", f"{NODE_IP}:{NODE_PORT}")
    # another gateway's static peer: an endpoint and a keepalive of its own (nobody answers there)
    static_pub = keypair(tmp_path, "static")[1]
    member.wg("set", member.ifname, "peer", static_pub, "allowed-ips", "fe80::3/128,10.99.0.0/24",
              "endpoint", "10.77.0.30:40300", "persistent-keepalive", "25")  # fmt: skip
    quiet_pub = keypair(tmp_path, "quiet")[1]  # a node that never came: nothing to drop
    member.wg("set", member.ifname, "peer", quiet_pub, "allowed-ips", "fe80::4/128")
    ha(member.netns, "promote", "--config", str(config), "--vip", VIP, "--endpoints", str(tmp_path / "none.json"))
    wait_until(lambda: dump(node)[gw_pub][4] != "0", timeout=20, what="the node's handshake with the member")
    before = dump(member)

    result = ha(member.netns, "demote", "--config", str(config), "--vip", VIP)

    after = dump(member)
    assert sorted(after) == sorted(before)  # every peer is still there
    for key in (node_pub, static_pub, quiet_pub):
        assert after[key][2] == "(none)", key  # nowhere to send to
        assert after[key][7] == "off", key  # no keepalive that would send
        assert after[key][3] == before[key][3], key  # the same allowed-ips
        assert after[key][4] == "0", key  # the session is gone with the peer
    assert "2 endpoints dropped" in result.stderr
    assert out("ip", "-n", member.netns, "route", "show", "table", str(DEFAULT_TABLE)).strip() == ""
    assert (tmp_path / "ha-state").read_text() == "standby\n"


def test_promotion_gives_a_static_peer_its_configured_endpoint_when_none_was_learnt(pair, tmp_path):
    """A fresh pair: the members declare the other gateways' static peers without an endpoint (a
    standby must not send to them with the pair's key) and the partner taught nothing yet. The
    promotion takes the endpoint from the worker config's static_peers (the gateway role's). The
    node namespace plays the other gateway here."""
    member, other, other_pub, gw_pub = pair
    config = write_config(tmp_path, member.ifname, static_peers={other_pub: f"{NODE_IP}:{NODE_PORT}"})
    assert dump(member)[other_pub][2] == "(none)"

    result = ha(member.netns, "promote", "--config", str(config), "--vip", VIP, "--endpoints", str(tmp_path / "none"))

    assert "1 configured static-peer endpoints applied" in result.stderr
    wait_until(lambda: dump(other)[gw_pub][4] != "0", timeout=20, what="the other gateway's handshake with the member")
    assert dump(other)[gw_pub][2] == f"{VIP}:{GW_PORT}"  # from the VIP, as for nodes
    assert dump(member)[other_pub][2] == f"{NODE_IP}:{NODE_PORT}"


def test_promotion_resolves_a_configured_static_peer_name(pair, tmp_path):
    """The gateway role writes the other gateways' external names, which are often host names."""
    member, _other, other_pub, _gw_pub = pair
    config = write_config(tmp_path, member.ifname, static_peers={other_pub: f"localhost:{NODE_PORT}"})
    ha(member.netns, "promote", "--config", str(config), "--vip", VIP, "--endpoints", str(tmp_path / "none"))
    assert dump(member)[other_pub][2] in (f"127.0.0.1:{NODE_PORT}", f"[::1]:{NODE_PORT}")


def test_nodes_are_triggered_before_any_static_peer_name_is_resolved(pair, tmp_path, monkeypatch):
    """A slow or dead resolver (often part of the outage that caused the takeover) must not delay
    the nodes: their handshake initiations leave before the first name lookup. The promotion runs
    in this process, so that the lookup can be replaced by one that records what the member's
    interface looked like when it was asked (wireguard-go sends the initiation within the UAPI
    request that switches the keepalive on, so the node peer's tx counter shows it). No source
    route here: the tests above cover it."""
    member, node, node_pub, gw_pub = pair
    static_pub = keypair(tmp_path, "static")[1]  # another gateway: no endpoint, as a pair member declares it
    member.wg("set", member.ifname, "peer", static_pub, "allowed-ips", "fe80::3/128")
    seen = []

    def getaddrinfo(host, port, family, kind):
        seen.append((host, dump(member)))
        return [(socket.AF_INET, kind, 17, "", ("10.77.0.30", port))]

    monkeypatch.setattr(static, "resolve", functools.partial(static.resolve, getaddrinfo=getaddrinfo))
    dom = DomainLinks("t_order", member.ifname, "vx-none", "ffmuc")
    learnt = {dom.domain: {node_pub: f"{NODE_IP}:{NODE_PORT}"}}

    route_error, (outcome,) = promote(
        [dom], BackendSelector("userspace"), learnt, None, {static_pub: "gw3.example.net:40300"}
    )

    assert route_error is None and outcome.error is None
    ((host, at_lookup),) = seen
    assert host == "gw3.example.net"
    assert at_lookup[node_pub][2] == f"{NODE_IP}:{NODE_PORT}"  # the learnt endpoint was applied ...
    assert at_lookup[node_pub][6] != "0"  # ... and the trigger's initiation sent, before the lookup
    after = dump(member)
    assert after[static_pub][2] == "10.77.0.30:40300"  # then the static peer got its endpoint
    assert after[static_pub][6] != "0" and after[static_pub][7] == "off"  # its trigger, undone
    assert (outcome.handshakes, outcome.configured_applied, outcome.endpoints_applied) == (2, 1, 1)
    wait_until(lambda: dump(node)[gw_pub][4] != "0", timeout=20, what="the node's handshake with the member")
