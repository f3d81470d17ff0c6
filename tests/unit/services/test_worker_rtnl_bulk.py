"""The bulk rtnetlink packer/parser, cross-checked against pyroute2's own message classes."""

from __future__ import annotations

import ipaddress
import socket

from pyroute2.netlink.rtnl import RTM_NEWNEIGH, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ndmsg import NTF_SELF, NUD_PERMANENT, ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from wgmesh.worker import rtnl_bulk

ADDR = ipaddress.IPv6Address("fe80::26f:79ff:fe39:ac8b")


def test_route_request_decodes_as_pyroute2_reads_it():
    data = rtnl_bulk._message(RTM_NEWROUTE, 0x405, 7, rtnl_bulk.route_body(ADDR, 42))
    msg = rtmsg(data)
    msg.decode()
    assert msg["header"]["type"] == RTM_NEWROUTE and msg["header"]["sequence_number"] == 7
    assert msg["family"] == socket.AF_INET6 and msg["dst_len"] == 128 and msg["table"] == 254
    assert msg.get_attr("RTA_DST") == str(ADDR)
    assert msg.get_attr("RTA_OIF") == 42


def test_fdb_request_decodes_as_pyroute2_reads_it():
    data = rtnl_bulk._message(RTM_NEWNEIGH, 0xC05, 8, rtnl_bulk.fdb_body(ADDR, 5, 4))
    msg = ndmsg(data)
    msg.decode()
    assert msg["family"] == socket.AF_BRIDGE and msg["ifindex"] == 5
    assert msg["state"] == NUD_PERMANENT and msg["flags"] == NTF_SELF
    assert msg.get_attr("NDA_LLADDR") == "00:00:00:00:00:00"
    assert msg.get_attr("NDA_DST") == str(ADDR)
    assert msg.get_attr("NDA_IFINDEX") == 4


def test_messages_encoded_by_pyroute2_are_split_and_parsed():
    def route(addr, oif):
        msg = rtmsg()
        msg["family"] = socket.AF_INET6
        msg["dst_len"] = 128
        msg["table"] = 254
        msg["attrs"] = [["RTA_DST", addr], ["RTA_OIF", oif], ["RTA_PRIORITY", 1024]]
        msg["header"]["type"] = RTM_NEWROUTE
        msg["header"]["sequence_number"] = oif
        msg.encode()
        return msg.data

    buf = route("fe80::1", 3) + route("fe80::2", 4)
    parts = list(rtnl_bulk.split_messages(buf))
    assert [(p[0], p[2]) for p in parts] == [(RTM_NEWROUTE, 3), (RTM_NEWROUTE, 4)]
    dummy_a, dummy_b, dummy_c, start, end = parts[1]
    attrs = rtnl_bulk.parse_attrs(buf, start + rtnl_bulk.RTMSG.size, end)
    assert ipaddress.IPv6Address(attrs[rtnl_bulk.RTA_DST]) == ipaddress.IPv6Address("fe80::2")
    assert rtnl_bulk.U32.unpack(attrs[rtnl_bulk.RTA_OIF])[0] == 4
