"""Fixtures for running wg_keypair / wg_peers through real ansible-playbook.

The whole ansible-playbook process runs inside the test's network namespace
(``ip netns exec <ns> ansible-playbook ...``, connection local) instead of the modules
growing a ``netns`` option: on a real gateway the modules run in the namespace the
interface lives in, and with kernel WireGuard ``wg`` talks netlink in its own namespace,
so this is the same situation. (wireguard-go is found through its host-global socket.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.wgnetns import Unavailable, WgNetns

REPO_ROOT = Path(__file__).resolve().parents[3]
COLLECTION_LINK = REPO_ROOT / ".build" / "collections" / "ansible_collections" / "freifunk" / "wgmesh"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
# Fixed keys the fixture gives the interface, so tests can see they are never touched.
INTERFACE_PRIVATE_KEY = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
INTERFACE_PUBLIC_KEY = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
INTERFACE_LISTEN_PORT = "51820"


@pytest.fixture
def wg_iface(tmp_path):
    """A fresh wireguard-go interface with a private key and listen port, in namespace h2-*."""
    iface = WgNetns(prefix="h2")
    try:
        iface.start(tmp_path)
    except Unavailable as exc:
        pytest.skip("wireguard-go interface unavailable: %s" % exc)
    try:
        iface.set_identity(INTERFACE_PRIVATE_KEY, INTERFACE_LISTEN_PORT, tmp_path)
        iface.expected_interface = [INTERFACE_PRIVATE_KEY, INTERFACE_PUBLIC_KEY, INTERFACE_LISTEN_PORT]
        yield iface
    finally:
        iface.close()


class Playbook:
    """Runs one play of tasks on localhost inside the namespace and returns what they registered."""

    def __init__(self, netns: str, workdir: Path):
        self.netns = netns
        self.workdir = workdir
        self.runs = 0

    def __call__(self, tasks: list[dict], extra_vars: dict | None = None, check=False, diff=True):
        if not COLLECTION_LINK.is_dir():
            pytest.fail("%s is missing: run `make collection` (a setup error, not a reason to skip)" % COLLECTION_LINK)
        self.runs += 1
        out = self.workdir / ("results-%d.json" % self.runs)
        registered = []
        play_tasks = []
        for number, task in enumerate(tasks):
            name = "r%d" % number
            registered.append(name)
            play_tasks.append(dict(task, register=name, ignore_errors=True))
        play_tasks.append(
            {
                "name": "Save what the tasks registered",
                "ansible.builtin.copy": {
                    "content": "{{ [%s] | to_json }}" % ", ".join(registered),
                    "dest": str(out),
                    "mode": "0600",
                },
                "check_mode": False,
                "diff": False,
            }
        )
        playbook = self.workdir / ("play-%d.yml" % self.runs)
        playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": play_tasks}]))
        vars_file = self.workdir / ("vars-%d.json" % self.runs)
        vars_file.write_text(json.dumps(dict(extra_vars or {}, ansible_python_interpreter=sys.executable)))
        argv = ["ip", "netns", "exec", self.netns, str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local"]
        argv += [str(playbook), "-e", "@%s" % vars_file]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, env=env, check=False)
        assert out.exists(), "ansible-playbook did not get to the end (rc=%d):\n%s\n%s" % (
            proc.returncode,
            proc.stdout[-3000:],
            proc.stderr[-3000:],
        )
        return json.loads(out.read_text()), proc.stdout + proc.stderr


@pytest.fixture
def playbook(wg_iface, tmp_path):
    return Playbook(wg_iface.netns, tmp_path)
