"""Rate limiting, key lists and the client address behind (trusted) proxies."""

from __future__ import annotations

from wgmesh.broker.abuse import ClientAddress, KeyLists, RateLimiter, bucket_of, retry_after_header
from wgmesh.config import BrokerConfig, RateLimitConfig

KEY1 = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
KEY2 = "3NGl6gTOGs6ai0RE91VmVFgF+N4gw1EBG11KOeiKJAg="


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_token_bucket_burst_then_refill():
    clock = Clock()
    limiter = RateLimiter(RateLimitConfig(per_client_per_minute=6, burst=3), clock=clock)
    assert [limiter.check("a") for _request in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.check("a")
    assert 9.9 < wait <= 10.0  # 6 per minute: one token every 10 s
    assert retry_after_header(wait) == "10"
    assert limiter.check("b") == 0.0  # other clients have their own bucket
    clock.now += 10
    assert limiter.check("a") == 0.0
    assert limiter.check("a") > 0


def test_rate_limit_off():
    limiter = RateLimiter(RateLimitConfig(per_client_per_minute=0, burst=10))
    assert all(limiter.check("a") == 0.0 for _request in range(1000))


def test_buckets_are_pruned(monkeypatch):
    monkeypatch.setattr("wgmesh.broker.abuse.MAX_BUCKETS", 10)
    clock = Clock()
    limiter = RateLimiter(RateLimitConfig(per_client_per_minute=60, burst=5), clock=clock)
    for i in range(10):
        limiter.check(f"old{i}")
    clock.now += 60  # all old buckets are full again: nothing to remember
    limiter.check("new1")
    limiter.check("new2")
    assert set(limiter.buckets) <= {"new1", "new2"}


def test_blocklist_and_allowlist_per_domain():
    lists = KeyLists(BrokerConfig(blocklist={"ffmuc_a": frozenset({KEY1})}, allowlist={"ffmuc_b": frozenset({KEY2})}))
    assert "blocked" in lists.refusal("ffmuc_a", KEY1)
    assert lists.refusal("ffmuc_a", KEY2) is None
    assert "allowlist" in lists.refusal("ffmuc_b", KEY1)
    assert lists.refusal("ffmuc_b", KEY2) is None
    assert lists.refusal("ffmuc_c", KEY1) is None


def test_forwarded_for_ignored_without_trusted_proxies():
    assert ClientAddress(()).of("192.0.2.1", "198.51.100.7") == "192.0.2.1"


def test_forwarded_for_from_trusted_proxy():
    addr = ClientAddress(("127.0.0.1", "10.0.0.0/8"))
    assert addr.of("127.0.0.1", "198.51.100.7") == "198.51.100.7"
    # right-most untrusted hop: a client cannot spoof by prepending entries
    assert addr.of("127.0.0.1", "203.0.113.9, 198.51.100.7, 10.1.2.3") == "198.51.100.7"
    assert addr.of("::ffff:127.0.0.1", "198.51.100.7") == "198.51.100.7"
    assert addr.of("192.0.2.1", "198.51.100.7") == "192.0.2.1"  # peer is no proxy
    assert addr.of("127.0.0.1", None) == "127.0.0.1"


def test_ipv6_clients_share_a_bucket_per_64():
    assert bucket_of("2001:db8:1:2::1") == bucket_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert bucket_of("2001:db8:1:3::1") != bucket_of("2001:db8:1:2::1")
    assert bucket_of("::ffff:192.0.2.1") == "192.0.2.1"
    assert bucket_of("192.0.2.1") == "192.0.2.1"
    assert bucket_of("unknown") == "unknown"
