"""Every file the worker writes lies where its unit's sandbox lets it write, for both backends.

The shared sandbox has ProtectSystem=strict: the whole file system is read-only to the worker
(root or not) but for its StateDirectory=, RuntimeDirectory= and ReadWritePaths=. The worker
writes its journal and, as a member of an HA pair, the learnt endpoints and the synced marker
(wgmesh.worker.hasync); the role sets the journal and leaves the HA files at the daemon's
defaults, which wgmesh-ha and keepalived's track script read. tests/integration/ha/
test_worker_state_dir.py writes and reads them for real under the same restrictions.
"""

from __future__ import annotations

import posixpath

import pytest

from tests.support import worker_unit


@pytest.mark.parametrize("backend", ["kernel", "userspace"])
def test_the_worker_may_write_every_file_it_writes(backend):
    dirs = worker_unit.writable(worker_unit.service(backend))
    written = worker_unit.written_by_the_worker(backend)
    outside = {name: path for name, path in written.items() if not worker_unit.under(path, dirs)}
    assert not outside, f"{backend}: read-only under ProtectSystem=strict (writable: {dirs}): {outside}"


@pytest.mark.parametrize("backend", ["kernel", "userspace"])
def test_systemd_makes_the_state_directory_for_the_worker_user(backend):
    # StateDirectory= is made and chowned to User= at every start: no directory made by hand,
    # none a reinstall leaves with another owner. Only that user may enter it; the readers
    # (wgmesh-ha, keepalived's track scripts) run as root.
    unit = worker_unit.service(backend)
    assert unit["User"] == ["wgmesh-worker" if backend == "kernel" else "root"]
    assert unit["StateDirectoryMode"] == ["0700"]
    dirs = worker_unit.state_dirs(unit)
    for name, path in worker_unit.written_by_the_worker(backend).items():
        assert posixpath.dirname(path) in dirs, f"{name} {path} is not directly in {dirs}"
