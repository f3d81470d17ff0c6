"""Benchmark: the controller filters vs the naive way (a subprocess per key).

Prints figures; asserts nothing. Run from the checkout: .venv/bin/python bench/filters.py
"""

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

from machine import describe  # bench/machine.py: the machine line every benchmark prints

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".build" / "collections"))

from ansible_collections.freifunk.wgmesh.plugins.filter.derive import wg_lladdr  # noqa: E402
from ansible_collections.freifunk.wgmesh.plugins.filter.keys import wg_pubkey  # noqa: E402


def keys(n):
    # valid keys: base64 of 32 random bytes
    return [base64.b64encode(os.urandom(32)).decode() for dummy in range(n)]


def per_item(fn, items):
    t = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - t) / len(items)


def shell_lladdr(key):
    # what a role would do without the filter: hash in a shell per key
    subprocess.run(["sh", "-c", 'printf "%s\\n" "$1" | md5sum', "sh", key], capture_output=True, check=True)


def wg_tool_pubkey(private):
    subprocess.run(["wg", "pubkey"], input=private + "\n", capture_output=True, text=True, check=True)


print("machine: " + describe())
ks = keys(20000)
print("wg_lladdr filter        : %8.1f us/key (20000 keys)" % (per_item(wg_lladdr, ks) * 1e6))
print("shell md5sum per key    : %8.1f us/key (300 keys)" % (per_item(shell_lladdr, ks[:300]) * 1e6))
print("wg_pubkey filter        : %8.1f us/key (20000 keys)" % (per_item(wg_pubkey, ks) * 1e6))
print("`wg pubkey` per key     : %8.1f us/key (300 keys)" % (per_item(wg_tool_pubkey, ks[:300]) * 1e6))

# Through Ansible: one play deriving 1000 addresses in a template.
play = ROOT / ".build" / "bench-filters-play.yml"
play.write_text(
    "- hosts: localhost\n  gather_facts: false\n  connection: local\n  tasks:\n"
    "    - ansible.builtin.set_fact:\n"
    "        addrs: \"{{ keys | map('freifunk.wgmesh.wg_lladdr') | list }}\"\n"
    "    - ansible.builtin.assert:\n        that: addrs | length == keys | length\n"
)
import json  # noqa: E402

keyfile = ROOT / ".build" / "bench-filters-keys.json"
for n in (1, 1000, 10000):
    keyfile.write_text(json.dumps({"keys": ks[:n]}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    ansible_playbook = str(Path(sys.executable).parent / "ansible-playbook")
    t = time.perf_counter()
    subprocess.run(
        [ansible_playbook, "-i", "localhost,", str(play), "-e", "@" + str(keyfile)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    print("ansible-playbook, %5d keys through map(wg_lladdr): %.2f s" % (n, time.perf_counter() - t))
play.unlink()
keyfile.unlink()
