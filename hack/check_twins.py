"""Prove that the rules the collection plugins and the daemons both hold are equal.

The plugins (run by Ansible on the controller or the target) and the daemon package
src/wgmesh (run on the gateways) cannot import each other, so a few constants live
twice. Each pair below names a plugin module, its daemon twin and the constants they
share. A constant that is defined on both sides must have the same value; a constant
that must be shared and is defined on one side only is an error too (the other side
lost it or never got it). Run by `make lint`: python hack/check_twins.py
"""

import argparse
import importlib.util
import re
import sys
from pathlib import Path


def _pattern(value):
    """Compiled regexes compare by pattern and flags."""
    return (value.pattern, value.flags) if isinstance(value, re.Pattern) else value


def _name_patterns(value):
    """Interface name patterns: ("wg", "wg-{0}") pairs or a {"wg": "wg-{}"} dict, as kind -> example."""
    pairs = value.items() if isinstance(value, dict) else value
    return {kind: pattern.format("dom") for kind, pattern in pairs}


# (plugin file, daemon file, [(plugin name, daemon name, normalize)]); paths from the repo root.
TWINS = (
    (
        "plugins/module_utils/_wgkey.py",
        "src/wgmesh/protocol.py",
        [("KEY_RE", "KEY_RE", _pattern), ("LOW_ORDER_KEYS", "LOW_ORDER_KEYS", frozenset)],
    ),
    (
        "plugins/module_utils/_derive.py",
        "src/wgmesh/derive.py",
        [("RULES", "RULES", tuple), ("VNI_SEED_KEYS", "VNI_SEED_KEYS", dict)],
    ),
    (
        "plugins/module_utils/_naming.py",
        "src/wgmesh/derive.py",
        [("IFNAME_MAX_BYTES", "IFNAMSIZ", int), ("IFNAME_PATTERNS", "IFNAME_KINDS", _name_patterns)],
    ),
)

_MISSING = object()


def _load(path):
    """Import one file on its own (neither runtime's package needs to be importable)."""
    spec = importlib.util.spec_from_file_location("twin_" + path.stem.lstrip("_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def problems(root, twins=TWINS):
    """One line per twin that is missing on one side or differs; empty when all agree."""
    found = []
    for plugin_file, daemon_file, names in twins:
        plugin, daemon = _load(Path(root, plugin_file)), _load(Path(root, daemon_file))
        for plugin_name, daemon_name, normalize in names:
            left = getattr(plugin, plugin_name, _MISSING)
            right = getattr(daemon, daemon_name, _MISSING)
            where = "%s:%s and %s:%s" % (plugin_file, plugin_name, daemon_file, daemon_name)
            if left is _MISSING and right is _MISSING:
                found.append("%s: defined on neither side (remove the pair from hack/check_twins.py?)" % where)
            elif left is _MISSING or right is _MISSING:
                lacking = "%s:%s" % ((plugin_file, plugin_name) if left is _MISSING else (daemon_file, daemon_name))
                found.append("%s: %s is missing; both runtimes need this rule" % (where, lacking))
            elif normalize(left) != normalize(right):
                found.append("%s differ: %r != %r" % (where, normalize(left), normalize(right)))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=Path(__file__).resolve().parents[1], help="repository root")
    args = parser.parse_args(argv)
    found = problems(args.root)
    for line in found:
        print("check_twins: " + line, file=sys.stderr)
    if not found:
        print("check_twins: %d twin constants equal" % sum(len(names) for _p, _d, names in TWINS))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
