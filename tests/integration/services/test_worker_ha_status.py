"""An HA pair is ONE gateway to the broker (docs/ha.md, "One gateway to the broker").

Two members (namespaces with wireguard-go, one worker each) share the identity `pairgw`: one
worker name in topics, one MQTT user, two client ids, the mqtt role's real ACL. The state
files stand in for keepalived and `wgmesh-ha`. The retained status the broker reads must stay
"1" while a member is active, whatever the standby does, and also when a crashed host's last
will arrives after the partner took over; it must go "0" when no member is left. How long a
wrong value was visible is printed (pytest -s), never asserted: the host is shared.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.ha_pair import (
    CLIENT_IDS,
    PASSWORDS,
    Timeline,
    cut_silently,
    pair_acl,
    retained_status,
    set_role,
    start_member,
)
from tests.support.procs import wait_until
from wgmesh.ha import state

WILL_DELAY = 5  # the default of worker.ha_will_delay; keepalive 2 s (ha_pair.start_member)


@pytest.fixture
def pair_broker(mosquitto_factory, domain):
    return mosquitto_factory(users=dict(PASSWORDS), acl=pair_acl(domain))


@pytest.fixture
def timeline(pair_broker, domain):
    watch = Timeline(pair_broker.port, domain)
    yield watch
    watch.close()


def start_pair(gateways, mq, domain, timeline):
    """Member a active, member b standby, both connected; returns once a said "1"."""
    a, b = gateways(vxlan=False), gateways(vxlan=False)
    start_member(a, mq.port, domain, CLIENT_IDS[0], state.ACTIVE)
    start_member(b, mq.port, domain, CLIENT_IDS[1], state.STANDBY)
    wait_until(lambda: timeline.first("1", 0.0), what=f"the active member online\n{a.log_text()}")
    for gw in (a, b):
        wait_until(lambda gw=gw: "MQTT connected" in gw.log_text(), what=f"{gw.id} connected\n{gw.log_text()}")
    return a, b


def report(what: str, seconds: float) -> None:
    print(f"\n{what}: {seconds:.3f} s")


def test_a_standby_says_nothing_and_its_promotion_says_online(gateways, pair_broker, domain, timeline):
    (b,) = [gateways(vxlan=False)]
    start_member(b, pair_broker.port, domain, CLIENT_IDS[1], state.STANDBY)
    wait_until(lambda: "MQTT connected" in b.log_text(), what=f"the standby connected\n{b.log_text()}")
    time.sleep(1)  # what it would publish on connect has arrived by now
    assert timeline.statuses() == [], "a standby alone must not say the pair is online"
    assert timeline.data() == [], "nor publish the pair's data"
    promoted = time.monotonic()
    set_role(b, state.ACTIVE)
    online = wait_until(lambda: timeline.first("1", promoted), what=f"online after promotion\n{b.log_text()}")
    report("promotion -> status 1", online - promoted)
    data = json.loads(wait_until(timeline.data, what="the pair's data after promotion")[-1])
    assert data["PublicKey"] == b.public_key


def test_a_standby_clean_stop_keeps_the_pair_online(gateways, pair_broker, domain, timeline):
    a, b = start_pair(gateways, pair_broker, domain, timeline)
    stopped = time.monotonic()
    b.stop_worker()
    assert "MQTT" in b.log_text()
    time.sleep(WILL_DELAY + 2)  # past the will delay: a will, had there been one, has arrived
    assert timeline.first("0", stopped) is None, timeline.statuses(stopped)
    assert retained_status(pair_broker.port) == "1"
    assert a.worker_proc.poll() is None


def test_a_standby_killed_never_leaves_the_pair_offline(gateways, pair_broker, domain, timeline):
    a, b = start_pair(gateways, pair_broker, domain, timeline)
    killed = time.monotonic()
    b.stop_worker(hard=True)  # its TCP closes at once: mosquitto sends its will after the delay
    zero = wait_until(lambda: timeline.first("0", killed), what="the standby's (delayed) last will")
    back = wait_until(lambda: timeline.first("1", zero), what=f"the active member says 1 again\n{a.log_text()}")
    report("standby SIGKILL: will after", zero - killed)
    report("standby SIGKILL: status 0 visible for", back - zero)
    assert retained_status(pair_broker.port) == "1"


def test_a_crashed_hosts_late_will_does_not_outlive_the_promoted_partner(gateways, pair_broker, domain, timeline):
    a, b = start_pair(gateways, pair_broker, domain, timeline)
    crashed = time.monotonic()
    cut_silently(a)  # mosquitto notices only after 1.5 x keepalive, then waits the will delay
    set_role(b, state.ACTIVE)  # keepalived promotes the partner within a second
    online = wait_until(lambda: timeline.first("1", crashed), what=f"the promoted partner says 1\n{b.log_text()}")
    zero = wait_until(lambda: timeline.first("0", crashed), timeout=60, what="the crashed member's late will")
    back = wait_until(lambda: timeline.first("1", zero), what=f"the new active member says 1 again\n{b.log_text()}")
    report("crash: promotion -> status 1", online - crashed)
    report("crash: late will after", zero - crashed)
    report("crash: status 0 visible for", back - zero)
    assert retained_status(pair_broker.port) == "1"


def test_a_pair_with_no_member_left_goes_offline(gateways, pair_broker, domain, timeline):
    a, b = start_pair(gateways, pair_broker, domain, timeline)
    gone = time.monotonic()
    b.stop_worker(hard=True)
    a.stop_worker()  # the active member's clean stop: offline unless a member is back within the delay
    zero = wait_until(lambda: timeline.first("0", gone), what="the pair offline")
    report("both gone -> status 0 after", zero - gone)
    time.sleep(1)
    assert timeline.statuses(gone)[-1][1] == "0"
    assert retained_status(pair_broker.port) == "0"


def test_the_active_members_worker_restart_does_not_take_the_pair_offline(gateways, pair_broker, domain, timeline):
    a, _partner = start_pair(gateways, pair_broker, domain, timeline)
    stopped = time.monotonic()
    a.stop_worker()  # an upgrade or a handler: the member stays active, its peers stay in place
    a.start_worker(pair_broker.port)
    wait_until(lambda: a.log_text().count("MQTT connected") == 2, what=f"a reconnected\n{a.log_text()}")
    time.sleep(WILL_DELAY + 2)  # past the will delay of the first connection
    assert timeline.first("0", stopped) is None, timeline.statuses(stopped)
    assert retained_status(pair_broker.port) == "1"


def test_a_pair_whose_hosts_both_crashed_goes_offline(gateways, pair_broker, domain, timeline):
    a, b = start_pair(gateways, pair_broker, domain, timeline)
    crashed = time.monotonic()
    cut_silently(b)
    cut_silently(a)
    zero = wait_until(lambda: timeline.first("0", crashed), timeout=60, what="the pair offline")
    report("both hosts crashed -> status 0 after", zero - crashed)  # 1.5 x keepalive + the will delay
    time.sleep(1)
    assert timeline.statuses(crashed)[-1][1] == "0"
    assert retained_status(pair_broker.port) == "0"
