"""What the Molecule scenarios' testinfra tests share: the scenario's inventory, its hosts
by group (reached with testinfra's podman backend: its ansible backend would run every command
as an ad-hoc task) and HTTP requests made from inside a host.

A scenario's tests put the repository root on sys.path first (like molecule/smoke-vm).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
EXAMPLE_INVENTORY = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "inventories" / "example"


def example_vars() -> dict:
    """The example inventory's site-wide facts (group_vars/all/wgmesh.yml), as scenarios converge it."""
    import yaml  # in the test venv; the other helpers need only testinfra

    return yaml.safe_load((EXAMPLE_INVENTORY / "group_vars" / "all" / "wgmesh.yml").read_text())


def example_host_vars(host: str) -> dict:
    """One host's variables in the example inventory (host_vars/<host>.yml)."""
    import yaml

    return yaml.safe_load((EXAMPLE_INVENTORY / "host_vars" / f"{host}.yml").read_text()) or {}


def podman_hosts(group: str) -> list[str]:
    """testinfra host specs of a group, for a module's ``testinfra_hosts``."""
    return [f"podman://{name}" for name in INVENTORY.get_hosts(group)]


def podman_host(name: str):
    return testinfra.get_host(f"podman://{name}")


# Runs inside the host: prints the status, then the body (or a redirect's Location).
# Redirects are not followed; a test certificate may be self-signed.
_REQUEST = """
import ssl, sys, urllib.request as u, urllib.error as e
class Stay(u.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None
opener = u.build_opener(Stay, u.HTTPSHandler(context=ssl._create_unverified_context()))
data = sys.argv[2].encode() if len(sys.argv) > 2 else None
req = u.Request(sys.argv[1], data=data, headers={'Content-Type': 'application/json'})
try:
    r = opener.open(req, timeout=30); print(r.status); print(r.read().decode())
except e.HTTPError as x:
    print(x.code); print(x.headers.get('Location') or x.read().decode())
"""


def uplink_status(host, lladdr: str, ifname: str) -> int:
    """What a Gluon node's uplink check asks, from inside ``host``: GET http://[<lladdr>%<ifname>]:80/.

    http.client, not urllib: urllib cannot take an IPv6 zone in a URL.
    """
    script = (
        "import http.client, sys; c = http.client.HTTPConnection(sys.argv[1], 80, timeout=10); "
        'c.request("GET", "/"); print(c.getresponse().status)'
    )
    return int(host.check_output(f"python3 -c {shlex.quote(script)} {shlex.quote(f'{lladdr}%{ifname}')}"))


def http(host, url: str, body=None) -> tuple[int, str]:
    """GET ``url`` from inside ``host``, or POST ``body`` as JSON; (status, text)."""
    args = [url] + ([json.dumps(body)] if body is not None else [])
    output = host.check_output(f"python3 -c {shlex.quote(_REQUEST)} {' '.join(map(shlex.quote, args))}")
    status, dummy, text = output.partition("\n")
    return int(status), text
