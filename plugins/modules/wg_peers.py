#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: wg_peers
short_description: Declare the peers of a WireGuard interface
version_added: 0.1.0
description:
  - Adds, updates and removes peers of an existing WireGuard interface through the C(wg) tool, so it works with
    kernel WireGuard and with userspace implementations such as C(wireguard-go) alike.
  - Reads the interface once (C(wg show <interface> dump)), validates every input before changing anything and
    applies all additions and changes in one C(wg addconf) call fed through a pipe, then the removals with
    C(wg set ... peer <key> remove). A second run with the same input changes nothing and reads the interface once.
  - Never touches the interface's private key, listen port or fwmark.
  - Allowed IPs are compared as networks (V(fe80::0f57/128) equals V(fe80::f57/128), host bits are masked as
    WireGuard does), endpoints as addresses, a keepalive of V(0) means off.
  - A peer's fields that are not given (O(peers[].allowed_ips), O(peers[].endpoint),
    O(peers[].persistent_keepalive), O(peers[].preshared_key_file)) are left as they are on an existing peer;
    a new peer gets none of them.
author:
  - freifunk.wgmesh contributors (@freifunk-wgmesh)
requirements:
  - C(wg) from wireguard-tools on the target
  - a WireGuard interface (kernel or userspace), run as a user allowed to configure it
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - The diff lists the affected peers before and after in a wg-config-like form. Preshared keys are shown only
        as V((set)) or V((none)), never their value.
options:
  interface:
    description:
      - Name of the WireGuard interface, for example V(wg-welt). It must exist.
    type: str
    required: true
  peers:
    description:
      - The peers to declare.
      - Allowed IPs must not overlap between the listed peers (WireGuard gives an address to one peer only, so
        overlapping input could never settle).
    type: list
    elements: dict
    default: []
    suboptions:
      public_key:
        description:
          - The peer's public key (44 characters of base64). Low-order Curve25519 points such as the all-zero key
            are refused, since every secret shared with them is zero and no node can own one.
        type: str
        required: true
      allowed_ips:
        description:
          - Networks routed to this peer. Replaces the peer's allowed IPs; V([]) removes them all.
          - Omit to leave an existing peer's allowed IPs as they are.
        type: list
        elements: str
      endpoint:
        description:
          - V(host:port) or V([ipv6]:port). A host name must resolve on the target.
          - Omit to leave the endpoint alone, for example for roaming peers whose endpoint WireGuard learns.
          - WireGuard cannot unset an endpoint.
        type: str
      persistent_keepalive:
        description:
          - Persistent keepalive interval in seconds, V(0) turns it off. Omit to leave it as it is.
        type: int
      preshared_key_file:
        description:
          - Path B(on the target) of a file holding the preshared key, as C(wg genpsk) writes it. An empty file
            (for example V(/dev/null)) removes the preshared key. Omit to leave it as it is.
          - The key is read on the target to compare it and is never returned or shown in a diff.
        type: path
      state:
        description:
          - V(absent) removes this peer. Defaults to O(state).
        type: str
        choices: [present, absent]
  state:
    description:
      - V(present) adds or updates the listed peers, V(absent) removes them (only O(peers[].public_key) is used).
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - Also remove every peer of the interface that is not listed as present and not in O(protected).
    type: bool
    default: false
  protected:
    description:
      - Public keys that O(exclusive) never removes, for example the HA partner or other static peers.
      - Listing a protected key with state V(absent) is an error.
    type: list
    elements: str
    default: []
notes:
  - With O(exclusive=true) every unlisted peer goes, including peers another program (such as the wgmesh worker)
    added; list those keys in O(protected) or use O(exclusive) only on interfaces this module owns alone.
  - To run against an interface in another network namespace, run the task in that namespace (with kernel
    WireGuard C(wg) talks netlink in its own namespace; userspace interfaces are found through their control
    socket in C(/var/run/wireguard/)).
seealso:
  - module: freifunk.wgmesh.wg_keypair
"""

EXAMPLES = r"""
- name: Declare two nodes on wg-welt
  freifunk.wgmesh.wg_peers:
    interface: wg-welt
    peers:
      - public_key: XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8=
        allowed_ips: [fe80::26f:79ff:fe39:ac8b/128]
      - public_key: 3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg=
        allowed_ips: [fe80::264:99ff:fe96:8759/128]

- name: Static peer to the other gateway, with keepalive and a preshared key
  freifunk.wgmesh.wg_peers:
    interface: wg-backbone
    peers:
      - public_key: o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg=
        allowed_ips: [10.0.0.2/32, fd00::2/128]
        endpoint: gw2.example.org:51820
        persistent_keepalive: 25
        preshared_key_file: /etc/wireguard/gw2.psk

- name: Make the interface hold exactly these peers, keeping the HA partner
  freifunk.wgmesh.wg_peers:
    interface: wg-welt
    peers: "{{ wg_nodes }}"
    exclusive: true
    protected:
      - o52Ge+Rpj4CUSitVag9mS7pSXUesNM0ESnvj/wwehkg=

- name: Remove one peer
  freifunk.wgmesh.wg_peers:
    interface: wg-welt
    state: absent
    peers:
      - public_key: XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8=
"""

RETURN = r"""
interface:
  description: The interface name.
  returned: always
  type: str
  sample: wg-welt
added:
  description: Public keys of the peers added (or that would be added in check mode).
  returned: always
  type: list
  elements: str
  sample: [XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8=]
updated:
  description: Public keys of existing peers whose settings changed.
  returned: always
  type: list
  elements: str
  sample: []
removed:
  description: Public keys of the peers removed.
  returned: always
  type: list
  elements: str
  sample: []
counts:
  description: How many peers were added, updated, removed, and listed as present but already right.
  returned: always
  type: dict
  sample: {added: 1, updated: 0, removed: 0, unchanged: 1}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (imports follow the docs, as in every module)

from ansible_collections.freifunk.wgmesh.plugins.module_utils._naming import ifname_problem  # noqa: E402
from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgkey import public_key_problem  # noqa: E402
from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgtool import (  # noqa: E402
    Peer,
    WgError,
    WgTool,
    endpoint_forms,
    normalize_network,
    read_key_file,
)

# Input errors reported at once; the rest are counted.
MAX_REPORTED_ERRORS = 20


class Desired:
    """One listed peer, validated. None in a field means "leave it as it is"."""

    __slots__ = ("allowed_ips", "endpoint", "endpoint_forms", "persistent_keepalive", "preshared_key", "psk_file")

    def __init__(self):
        self.allowed_ips = None
        self.endpoint = None
        self.endpoint_forms = None
        self.persistent_keepalive = None
        self.preshared_key = None
        self.psk_file = None


class PeerDeclaration:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.interface = self.params["interface"]
        self.present = {}  # public key -> Desired
        self.absent = set()
        self.protected = set()

    # --- validation: everything is checked before anything is read or changed ---

    def validate(self):
        errors = []
        interface = self.interface
        problem = ifname_problem(interface)
        if problem:
            errors.append("interface %r is not a valid interface name: it %s" % (interface, problem))

        for index, key in enumerate(self.params["protected"]):
            problem = public_key_problem(key)
            if problem:
                errors.append("protected[%d] %r is not a WireGuard key: %s" % (index, key, problem))
            self.protected.add(key)

        seen = {}
        owner_of_network = {}
        for index, spec in enumerate(self.params["peers"]):
            where = "peers[%d]" % index
            key = spec["public_key"]
            problem = public_key_problem(key)
            if problem:
                errors.append("%s.public_key %r is not a WireGuard key: %s" % (where, key, problem))
                continue
            if key in seen:
                errors.append("%s.public_key %s is listed twice (also peers[%d])" % (where, key, seen[key]))
                continue
            seen[key] = index
            state = spec["state"] or self.params["state"]
            if state == "absent":
                if key in self.protected:
                    errors.append("%s.public_key %s is in protected but has state absent" % (where, key))
                self.absent.add(key)
                continue
            try:
                self.present[key] = self._desired(spec, index, owner_of_network)
            except ValueError as exc:
                errors.append("%s.%s" % (where, exc))

        if errors:
            shown = errors[:MAX_REPORTED_ERRORS]
            more = len(errors) - len(shown)
            self.module.fail_json(
                msg="Invalid input, nothing was changed: %s%s"
                % ("; ".join(shown), " (and %d more problems)" % more if more else ""),
                errors=shown,
            )

    def _desired(self, spec, index, owner_of_network):
        want = Desired()
        if spec["allowed_ips"] is not None:
            networks = set()
            for position, value in enumerate(spec["allowed_ips"]):
                try:
                    network = normalize_network(value)
                except ValueError as exc:
                    raise ValueError("allowed_ips[%d]: %s" % (position, exc)) from None
                other = owner_of_network.setdefault(network, index)
                if other != index:
                    raise ValueError("allowed_ips[%d]: %s is also given to peers[%d]" % (position, network, other))
                networks.add(network)
            want.allowed_ips = frozenset(networks)
        if spec["endpoint"] is not None:
            try:
                want.endpoint_forms = endpoint_forms(spec["endpoint"])
            except ValueError as exc:
                raise ValueError("endpoint: %s" % exc) from None
            want.endpoint = spec["endpoint"]
        keepalive = spec["persistent_keepalive"]
        if keepalive is not None:
            if not 0 <= keepalive <= 65535:
                raise ValueError("persistent_keepalive: %d is outside 0-65535 (0 turns it off)" % keepalive)
            want.persistent_keepalive = keepalive
        if spec["preshared_key_file"] is not None:
            want.psk_file = spec["preshared_key_file"]
            try:
                want.preshared_key = read_key_file(want.psk_file)
            except (IOError, OSError) as exc:
                raise ValueError("preshared_key_file: cannot read %s: %s" % (want.psk_file, exc.strerror)) from None
            except ValueError as exc:
                raise ValueError("preshared_key_file: %s" % exc) from None
        return want

    # --- planning: compare with one dump ---

    def plan(self, current, with_diff=True):
        """Return (to_apply, added, updated, removed, diff_pairs) for the current peers.

        ``diff_pairs`` (key, text before, text after) is only built ``with_diff``: describing
        10,000 peers costs more than comparing them.
        """
        to_apply, added, updated, diff_pairs = [], [], [], []
        for key, want in self.present.items():
            have = current.get(key)
            if have is None:
                peer = Peer(
                    key,
                    allowed_ips=want.allowed_ips or frozenset(),
                    endpoint=want.endpoint,
                    persistent_keepalive=want.persistent_keepalive,
                    preshared_key=want.preshared_key,
                )
                to_apply.append(peer)
                added.append(key)
                if with_diff:
                    diff_pairs.append((key, None, self._after(None, want, peer)))
                continue
            change = Peer(key, allowed_ips=have.allowed_ips, endpoint=None, persistent_keepalive=None)
            differs = False
            if want.allowed_ips is not None and want.allowed_ips != have.allowed_ips:
                change.allowed_ips = want.allowed_ips
                differs = True
            if want.endpoint is not None and have.endpoint not in want.endpoint_forms:
                change.endpoint = want.endpoint
                differs = True
            if want.persistent_keepalive is not None and want.persistent_keepalive != have.persistent_keepalive:
                change.persistent_keepalive = want.persistent_keepalive
                differs = True
            if want.preshared_key is not None and (want.preshared_key or None) != have.preshared_key:
                change.preshared_key = want.preshared_key
                differs = True
            if differs:
                to_apply.append(change)
                updated.append(key)
                if with_diff:
                    diff_pairs.append((key, have.describe(), self._after(have, want, change)))

        removed = [key for key in self.absent if key in current]
        if self.params["exclusive"]:
            keep = set(self.present) | self.protected | self.absent
            removed.extend(key for key in current if key not in keep)
        if with_diff:
            diff_pairs.extend((key, current[key].describe(), None) for key in removed)
        return to_apply, sorted(added), sorted(updated), sorted(removed), diff_pairs

    @staticmethod
    def _after(have, want, change):
        """What the peer will look like, for the diff (secrets shown as set/none only)."""
        after = Peer(
            change.public_key,
            allowed_ips=change.allowed_ips,
            endpoint=change.endpoint if change.endpoint is not None else (have.endpoint if have else None),
            persistent_keepalive=(
                change.persistent_keepalive
                if change.persistent_keepalive is not None
                else (have.persistent_keepalive if have else 0)
            ),
            preshared_key=(
                change.preshared_key if change.preshared_key is not None else (have.preshared_key if have else None)
            )
            or None,
        )
        note = None
        if change.preshared_key and have is not None and have.preshared_key:
            note = "(set, replaced from %s)" % want.psk_file
        return after.describe(psk_note=note)

    def run(self):
        self.validate()
        wg = self.module.get_bin_path("wg", required=True)

        def run(argv, data=None):
            argv = [wg, *argv[1:]]
            return self.module.run_command(argv, data=data, binary_data=True)

        tool = WgTool(run, self.interface)
        try:
            _interface, current = tool.dump()
            to_apply, added, updated, removed, diff_pairs = self.plan(current, with_diff=self.module._diff)
            if not self.module.check_mode:
                tool.addconf(to_apply)
                tool.remove(removed)
        except WgError as exc:
            self.module.fail_json(msg="%s: %s" % (self.interface, exc))

        result = {
            "changed": bool(to_apply or removed),
            "interface": self.interface,
            "added": added,
            "updated": updated,
            "removed": removed,
            "counts": {
                "added": len(added),
                "updated": len(updated),
                "removed": len(removed),
                "unchanged": len(self.present) - len(added) - len(updated),
            },
        }
        if self.module._diff:
            diff_pairs.sort(key=lambda pair: pair[0])
            result["diff"] = {
                "before_header": "%s (wg show)" % self.interface,
                "after_header": "%s (declared)" % self.interface,
                "before": "".join(before for _key, before, _after in diff_pairs if before),
                "after": "".join(after for _key, _before, after in diff_pairs if after),
            }
        self.module.exit_json(**result)


def main():
    peer_spec = {
        "public_key": {"type": "str", "required": True, "no_log": False},
        "allowed_ips": {"type": "list", "elements": "str"},
        "endpoint": {"type": "str"},
        "persistent_keepalive": {"type": "int"},
        "preshared_key_file": {"type": "path", "no_log": False},
        "state": {"type": "str", "choices": ["present", "absent"]},
    }
    module = AnsibleModule(
        argument_spec={
            "interface": {"type": "str", "required": True},
            "peers": {"type": "list", "elements": "dict", "default": [], "options": peer_spec},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "exclusive": {"type": "bool", "default": False},
            "protected": {"type": "list", "elements": "str", "default": [], "no_log": False},
        },
        supports_check_mode=True,
    )
    PeerDeclaration(module).run()


if __name__ == "__main__":
    main()
