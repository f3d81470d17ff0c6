"""The worker writes its HA sync files as its own user under its unit's sandbox; root reads them.

Writers and readers (docs/ha.md): the worker writes the learnt endpoints and the synced marker
(as `wgmesh-worker` with the kernel backend, as root with wireguard-go); `wgmesh-ha promote`
and keepalived's track script `check-ha-synced` read them as root (keepalived's
`script_user root`). The paths are the daemon's defaults, which the roles use.

This host does not run systemd (PID 1 is not systemd), so `systemd-run -p ...` is not
available. What the unit's sandbox does to these files is reproduced in a private mount
namespace with the kernel's own means, from the rendered unit's values:
- ProtectSystem=strict: /var/lib read-only (a tmpfs over it, remounted read-only, so nothing of
  the host's /var/lib is touched or seen);
- StateDirectory=/StateDirectoryMode=: the directory systemd makes, owned by User=, with that
  mode, bound read-write.
The kernel-backend user is played by `nobody` (no system user is created on the test host).
Not covered here: the other sandbox settings (system call filter, capabilities), which
affect no file access; the VM scenarios run the real unit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import worker_unit

ROOT = Path(__file__).resolve().parents[3]
CHECK_HA_SYNCED = ROOT / "roles" / "keepalived" / "files" / "check-ha-synced"
KEY = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
NOBODY = 65534

# The worker's own code writes the files (HaSync._learn, HaSync._set_synced); no kernel is
# needed for that, so its journal and kernel changes are left out.
WRITER = """
import sys, time
from types import SimpleNamespace
from wgmesh.config import WorkerConfig
from wgmesh.ha.sync import PartnerPeers
from wgmesh.worker.hasync import HaSync

cfg = WorkerConfig()
ha = HaSync("gw1", "gw1b", {}, SimpleNamespace(journal=None), frozenset(), cfg.ha_endpoints_file,
            cfg.ha_synced_file, publish=None, clock=time.time)
msg = PartnerPeers("ffmuc_welt", "gw1a", time.time(), frozenset([sys.argv[1]]), {sys.argv[1]: "198.51.100.7:51820"}, {})
ha._learn(msg)
ha._set_synced(True)
"""

# keepalived's side, as root: its track script with the keepalived role's default marker path,
# and wgmesh-ha's reader of the endpoints with its default path.
READER = """
import json, os, stat, subprocess, sys
from wgmesh.ha import endpoints
marker, check = sys.argv[1], sys.argv[2]
synced = subprocess.run([check, marker, "/nonexistent/ha-state"]).returncode
modes = {p: [oct(stat.S_IMODE(os.stat(p).st_mode)), os.stat(p).st_uid]
         for p in (os.path.dirname(marker), marker, endpoints.DEFAULT_PATH)}
print(json.dumps({"synced": synced, "learnt": endpoints.load(endpoints.DEFAULT_PATH, ["ffmuc_welt"]), "modes": modes}))
"""


def sandboxed(backend: str) -> dict:
    """Run the writer as the unit's user under its file system restrictions, then the readers."""
    unit = worker_unit.service(backend)
    (state_dir,) = worker_unit.state_dirs(unit)
    (mode,) = unit["StateDirectoryMode"]
    uid = 0 if unit["User"] == ["root"] else NOBODY
    marker = yaml.safe_load((ROOT / "roles" / "keepalived" / "defaults" / "main.yml").read_text())[
        "keepalived_ha_synced_file"
    ]
    script = f"""
set -eu
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mkdir -p {state_dir}
chown {uid}:{uid} {state_dir}
chmod {mode} {state_dir}
mount --bind {state_dir} {state_dir}
mount -o remount,bind,ro /var/lib
setpriv --reuid={uid} --regid={uid} --clear-groups {sys.executable} -c '{WRITER}' {KEY}
{sys.executable} -c '{READER}' {marker} {CHECK_HA_SYNCED}
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cannot" not in proc.stderr, proc.stderr  # HaSync logs a failed write and goes on
    return {**json.loads(proc.stdout), "state_dir": state_dir, "uid": uid, "marker": marker}


@pytest.fixture(scope="module", autouse=True)
def _needs_mount_namespaces():
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root, unshare and setpriv (util-linux) for a private mount namespace")


@pytest.mark.parametrize("backend", ["kernel", "userspace"])
def test_the_worker_writes_its_ha_files_and_root_reads_them(backend):
    seen = sandboxed(backend)
    assert seen["learnt"] == {"ffmuc_welt": {KEY: "198.51.100.7:51820"}}  # what promote would apply
    assert seen["synced"] == 0  # check-ha-synced: this member holds its partner's peers
    modes = seen["modes"]
    assert modes[seen["state_dir"]] == ["0o700", seen["uid"]]
    assert modes[seen["marker"]] == ["0o644", seen["uid"]]
    # node addresses: the worker's and root's only
    assert [m for p, m in modes.items() if p.endswith(".json")] == [["0o600", seen["uid"]]]
