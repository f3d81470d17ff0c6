"""A standby follows exactly the removals its partner reports, and nothing else (docs/ha.md,
"The sync channel"). The kernel is replaced by test_worker_daemon's doubles; the real channel
runs against mosquitto and wireguard-go in tests/integration/services/test_worker_ha_sync.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.unit.services.test_worker_daemon import KEY1, KEY2, NOW, FakeBackend, FakeClient, FakeLinks
from wgmesh import protocol
from wgmesh.config import parse_config
from wgmesh.ha import state, sync
from wgmesh.worker.daemon import Worker


@pytest.fixture
def standby(tmp_path):
    state.write(str(tmp_path / "ha-state"), state.STANDBY)
    cfg = parse_config(
        {
            "domains": ["ffmuc_welt"],
            "domain_prefixes": ["ffmuc_"],
            "mqtt": {"client_id": "gw1b"},
            "worker": {
                "name": "gw1",
                "journal": str(tmp_path / "journal.json"),
                "ha_state_file": str(tmp_path / "ha-state"),
                "ha_endpoints_file": str(tmp_path / "endpoints.json"),
                "ha_synced_file": str(tmp_path / "synced"),
            },
        }
    )
    backend = FakeBackend()
    selector = SimpleNamespace(for_interface=lambda name: backend, forget=lambda name: None)
    clock = SimpleNamespace(now=NOW)
    w = Worker(cfg, selector=selector, links=FakeLinks(), clock=lambda: clock.now)
    w.session.client = FakeClient()
    w.backend, w.clock_now = backend, clock
    return w


def follow(worker, keys, when, dropped=None):
    """The partner's message as the session hands it to the apply thread."""
    topic = protocol.topic_ha_peers("gw1", "gw1a", "ffmuc_welt")
    payload = sync.encode(keys, {}, when, dropped or {})
    worker._handle([sync.decode(topic, payload.encode(), "gw1", ["ffmuc_welt"])])


def test_a_rebuilt_partner_with_an_empty_set_takes_nothing_away(standby):
    follow(standby, [KEY1, KEY2], NOW)
    assert {KEY1, KEY2} <= set(standby.backend.peers)
    follow(standby, [], NOW + 3600)  # the partner lost its journal: it dropped nothing
    assert {KEY1, KEY2} <= set(standby.backend.peers)
    assert set(standby.journal.keys("ffmuc_welt")) == {KEY1, KEY2}


def test_the_standby_removes_what_its_partner_dropped_even_after_being_away(standby):
    follow(standby, [KEY1, KEY2], NOW)
    # the first message this standby hears after a restart already reports the drop
    standby.ha_sync.partner.clear()
    follow(standby, [KEY2], NOW + 100, dropped={KEY1: NOW + 50})
    assert KEY1 not in standby.backend.peers and KEY1 not in standby.journal.keys("ffmuc_welt")
    assert KEY2 in standby.backend.peers


def test_a_key_registered_again_after_the_drop_stays(standby):
    follow(standby, [KEY1], NOW)
    standby.journal.add("ffmuc_welt", KEY1, NOW + 60)  # the node registered again after the drop
    follow(standby, [], NOW + 70, dropped={KEY1: NOW + 50})
    assert KEY1 in standby.backend.peers
