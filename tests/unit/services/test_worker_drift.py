"""wgmesh-worker --drift: the reconcile's own plan, printed one finding a line, changing nothing.

WireGuard and rtnetlink are replaced by the daemon tests' FakeBackend/FakeLinks (the real ones
are covered in a namespace by tests/integration/services/test_worker_drift_reload.py).
"""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
import yaml

from tests.unit.services.test_worker_daemon import KEY1, KEY2, NOW, STATIC, FakeBackend, FakeLinks
from wgmesh import derive
from wgmesh.config import parse_config
from wgmesh.worker import drift
from wgmesh.worker.__main__ import main
from wgmesh.worker.backend import BackendError, InterfaceMissing, Peer
from wgmesh.worker.daemon import Reload, Worker

KEY3 = "lkVna4iqXrjofPIPAViQpspLI4dWT1snDamTyui+qmM="
PASSWORD = "s3cret-mqtt-password"


def ll(key):
    return derive.lladdr_from_key(key, "ffmuc")


def config(tmp_path, journal: dict | None = None, stale_after=3600):
    path = tmp_path / "journal.json"
    if journal is not None:
        path.write_text(json.dumps({"version": 1, "domains": {"ffmuc_welt": journal}}))
    return parse_config(
        {
            "domains": ["ffmuc_welt"],
            "domain_prefixes": ["ffmuc_"],
            "mqtt": {"broker_url": "127.0.0.1", "username": "gw1", "password": PASSWORD},
            "worker": {
                "name": "gw1",
                "journal": str(path),
                "static_peers": [STATIC],
                "stale_after": stale_after,
                "grace_period": 60,
            },
        }
    )


def in_sync_kernel(keys, handshake=NOW - 10):
    backend, links = FakeBackend(), FakeLinks()
    for key in keys:
        backend.peers[key] = Peer(key, (f"{ll(key)}/128",), handshake)
        links.routes.add(ll(key))
        links.fdb.add(ll(key))
    return backend, links


def run(cfg, backend, links):
    out, err = io.StringIO(), io.StringIO()
    selector = SimpleNamespace(for_interface=lambda name: backend, forget=lambda name: None)
    code = drift.report(cfg, selector=selector, links=links, clock=lambda: NOW, out=out, err=err)
    return code, out.getvalue().splitlines(), err.getvalue()


def test_in_sync_exits_0_and_prints_no_finding(tmp_path):
    cfg = config(tmp_path, {KEY1: NOW - 100, KEY2: NOW - 100})
    backend, links = in_sync_kernel([KEY1, KEY2, STATIC])
    code, lines, err = run(cfg, backend, links)
    assert (code, lines) == (drift.EXIT_IN_SYNC, [])
    assert "in sync" in err


def test_each_kind_of_drift_is_one_line_and_exits_with_the_drift_code(tmp_path):
    cfg = config(tmp_path, {KEY1: NOW - 100, KEY2: NOW - 100, KEY3: NOW - 100})
    backend, links = in_sync_kernel([KEY1, KEY2, KEY3])
    del backend.peers[KEY1]  # peer deleted by hand; its route and FDB entry stay
    links.routes.discard(ll(KEY2))
    links.fdb.discard(ll(KEY3))
    code, lines, err = run(cfg, backend, links)
    assert code == drift.EXIT_DRIFT == 3
    assert lines == [
        f"ffmuc_welt wg-welt {KEY1} peer missing",
        f"ffmuc_welt wg-welt {KEY2} route {ll(KEY2)}/128 missing",
        f"ffmuc_welt vx-welt {KEY3} FDB entry dst {ll(KEY3)} missing",
    ]
    assert "3 findings in 1 domains" in err


def test_wrong_allowed_ips_are_drift_and_say_what_is_there(tmp_path):
    cfg = config(tmp_path, {KEY1: NOW - 100})
    backend, links = in_sync_kernel([KEY1])
    backend.peers[KEY1] = Peer(KEY1, (f"{ll(KEY1)}/128", "10.0.0.0/8"), NOW - 10)
    code, lines, dummy = run(cfg, backend, links)
    assert code == drift.EXIT_DRIFT
    assert lines == [f"ffmuc_welt wg-welt {KEY1} allowed-ips {ll(KEY1)}/128,10.0.0.0/8, want {ll(KEY1)}/128"]


def test_a_stale_peer_is_listed_but_is_not_drift(tmp_path):
    cfg = config(tmp_path, {KEY1: NOW - 7200}, stale_after=3600)
    backend, links = in_sync_kernel([KEY1], handshake=NOW - 7200)
    code, lines, dummy = run(cfg, backend, links)
    assert code == drift.EXIT_IN_SYNC
    assert lines == [f"ffmuc_welt wg-welt {KEY1} stale: no handshake; the worker removes it (not drift)"]
    assert KEY1 in backend.peers, "read-only: nothing removed"


def test_peers_the_journal_does_not_hold_are_not_drift(tmp_path):
    cfg = config(tmp_path, {KEY1: NOW - 100})
    backend, links = in_sync_kernel([KEY1, KEY2])
    assert run(cfg, backend, links)[:2] == (drift.EXIT_IN_SYNC, [])


def test_a_missing_interface_is_listed_but_a_reconcile_cannot_make_it(tmp_path):
    cfg = config(tmp_path, {KEY1: NOW - 100})

    class NoInterface(FakeBackend):
        def device(self, ifname):
            raise InterfaceMissing(f"interface {ifname} does not exist")

    code, lines, dummy = run(cfg, NoInterface(), FakeLinks())
    assert code == drift.EXIT_IN_SYNC
    assert lines == [
        "ffmuc_welt wg-welt - interface missing (interface wg-welt does not exist): "
        "1 journal keys wait for it (not drift)"
    ]


def test_a_kernel_that_cannot_be_read_is_an_error_not_a_verdict(tmp_path):
    cfg = config(tmp_path, {KEY1: NOW - 100})

    class Refusing(FakeBackend):
        def device(self, ifname):
            raise BackendError(f"interface {ifname}: netlink: Operation not permitted")

    code, dummy, err = run(cfg, Refusing(), FakeLinks())
    assert code == drift.EXIT_ERROR
    assert "domain ffmuc_welt: cannot read the kernel state: interface wg-welt: netlink" in err


def test_nothing_is_changed_in_the_kernel(tmp_path):
    cfg = config(tmp_path, {KEY1: NOW - 100, KEY2: NOW - 100})
    backend, links = in_sync_kernel([KEY2])
    links.routes.clear()
    before = (dict(backend.peers), set(links.routes), set(links.fdb))
    assert run(cfg, backend, links)[0] == drift.EXIT_DRIFT
    assert (backend.peers, links.routes, links.fdb) == before


def test_a_damaged_journal_is_read_as_the_daemon_reads_it_and_left_in_place(tmp_path, caplog):
    cfg = config(tmp_path)
    journal = tmp_path / "journal.json"
    damaged = json.dumps({"version": 1, "domains": {"ffmuc_welt": {KEY1: NOW - 100, "not-a-key": NOW}}})
    journal.write_text(damaged)
    backend, links = in_sync_kernel([KEY1])
    del backend.peers[KEY1]
    code, lines, dummy = run(cfg, backend, links)
    assert (code, lines) == (drift.EXIT_DRIFT, [f"ffmuc_welt wg-welt {KEY1} peer missing"])
    assert journal.read_text() == damaged
    assert [p.name for p in tmp_path.iterdir()] == ["journal.json"], "nothing set aside"
    assert "is damaged" in caplog.text


def test_the_daemon_reconciles_every_domain_on_reload(tmp_path):
    cfg = config(tmp_path, {KEY1: NOW - 100, KEY2: NOW - 100})
    backend, links = in_sync_kernel([KEY1, KEY2])
    selector = SimpleNamespace(for_interface=lambda name: backend, forget=lambda name: None)
    worker = Worker(cfg, selector=selector, links=links, clock=lambda: NOW)
    del backend.peers[KEY1]
    links.fdb.discard(ll(KEY2))
    worker.reload()  # what the SIGHUP handler does: only queue
    assert KEY1 not in backend.peers, "the signal handler itself changes nothing"
    events = worker.drain()
    assert events == [Reload()]
    worker._handle(events)
    assert KEY1 in backend.peers and ll(KEY2) in links.fdb
    assert run(cfg, backend, links)[:2] == (drift.EXIT_IN_SYNC, [])


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "No such file"),
        ({"domains": ["ffmuc_welt"], "domain_prefixes": ["ffmuc_"], "worker": {"nonsense": 1}}, "nonsense"),
    ],
)
def test_a_missing_or_broken_config_exits_2_with_a_message(tmp_path, capsys, content, message):
    path = tmp_path / "worker.yaml"
    if content is not None:
        path.write_text(yaml.safe_dump(content))
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(path), "--drift"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_the_report_never_shows_the_mqtt_password(tmp_path):
    cfg = config(tmp_path, {KEY1: NOW - 100})
    backend, links = in_sync_kernel([])
    code, lines, err = run(cfg, backend, links)
    assert code == drift.EXIT_DRIFT
    assert PASSWORD not in "\n".join(lines) + err


def test_a_journal_it_cannot_open_is_an_error_not_an_empty_journal(tmp_path):
    """The daemon starts empty from an unreadable journal; --drift must not call that in sync
    (e.g. run without the right to read the file)."""
    cfg = config(tmp_path)
    (tmp_path / "journal.json").mkdir()  # open() fails with an OSError, as without read permission
    backend, links = in_sync_kernel([])
    code, lines, err = run(cfg, backend, links)
    assert (code, lines) == (drift.EXIT_ERROR, [])
    assert f"journal {tmp_path / 'journal.json'}: cannot read" in err


def test_without_the_vxlan_device_no_fdb_entry_is_missing_and_the_device_is_named(tmp_path):
    cfg = config(tmp_path, {KEY1: NOW - 100})
    backend, links = in_sync_kernel([KEY1])
    links.ifindex = {"wg-welt": 5}.get  # vx-welt is absent
    code, lines, dummy = run(cfg, backend, links)
    assert code == drift.EXIT_IN_SYNC
    assert lines == ["ffmuc_welt vx-welt - interface missing: no FDB entries (not drift)"]
