"""Wire facts shared with upstream wgkex and the FFMUC Gluon client (docs/architecture.md).

Everything a peer on the wire can observe lives here and only here: MQTT topic
names, payload meanings, the key syntax, HTTP paths and time constants.
"""

from __future__ import annotations

import re
import unicodedata

# --- Keys -------------------------------------------------------------------
# base64 of 32 bytes; the whole string must match (no trailing newline).
KEY_RE = re.compile(r"\A[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=\Z")

# Low-order Curve25519 points: every shared secret with them is zero, so such a
# "peer" can never complete a handshake (docs/broker.md, "Low-order keys"). The
# small-order u-coordinates (32 bytes little-endian) are 0 (order 2), 1 and
# p-1 (order 4, curve and twist) and two points of order 8; p = 2^255 - 19.
# Also refused: the non-canonical aliases u + p that fit in 255 bits (p and
# p + 1), and all seven with bit 255 set, which X25519 ignores (RFC 7748).
LOW_ORDER_KEYS: frozenset[str] = frozenset(
    (
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # 0
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # 1
        "4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=",  # order 8
        "X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEVc=",  # order 8
        "7P///////////////////////////////////////38=",  # p - 1
        "7f///////////////////////////////////////38=",  # p (= 0)
        "7v///////////////////////////////////////38=",  # p + 1 (= 1)
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA=",  # the same seven with bit 255 set
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIA=",
        "4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuIA=",
        "X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEdc=",
        "7P////////////////////////////////////////8=",
        "7f////////////////////////////////////////8=",
        "7v////////////////////////////////////////8=",
    )
)

# --- HTTP (broker) ----------------------------------------------------------
PATH_V1_EXCHANGE = "/api/v1/wg/key/exchange"
PATH_V2_EXCHANGE = "/api/v2/wg/key/exchange"

# --- MQTT topics ------------------------------------------------------------
TOPIC_KEY = "wireguard/{domain}/all"  # broker -> workers: bare public key
TOPIC_KEY_SUB = "wireguard/+/all"
TOPIC_METRICS = "wireguard-metrics/{domain}/{worker}/connected_peers"  # int text, -1 = offline
TOPIC_METRICS_SUB = "wireguard-metrics/+/+/connected_peers"
TOPIC_STATUS = "wireguard-worker/{worker}/status"  # "1" online / "0" offline (last will)
TOPIC_STATUS_SUB = "wireguard-worker/+/status"
TOPIC_DATA = "wireguard-worker/{worker}/{domain}/data"  # JSON, see DATA_FIELDS
TOPIC_DATA_SUB = "wireguard-worker/+/+/data"
TOPIC_BROKER_SYNC = "wgmesh-broker/{client_id}/sync"  # broker -> itself: end of the retained state
# HA pair members -> each other (docs/ha.md, "The sync channel"): per domain the active member's
# keys, learnt endpoints and recent drops; the payload is wgmesh.ha.sync's (encode/decode)
TOPIC_HA_PEERS = "wgmesh-ha/{identity}/{client_id}/{domain}/peers"
TOPIC_HA_PEERS_SUB = "wgmesh-ha/{identity}/+/+/peers"

STATUS_ONLINE = "1"
STATUS_OFFLINE = "0"
METRICS_OFFLINE = -1
DATA_FIELDS = ("ExternalAddress", "Port", "PublicKey", "LinkAddress")

QOS_KEY = 1  # upstream publishes keys with QoS 0; QoS 1 + persistent sessions lose none
QOS_STATUS = 1
QOS_DATA = 1
QOS_METRICS = 1
QOS_HA_PEERS = 1

# --- Time -------------------------------------------------------------------
METRICS_INTERVAL_S = 60
HANDSHAKE_ACTIVE_S = 180  # a peer counts as connected with a handshake this recent


def topic_key(domain: str) -> str:
    return TOPIC_KEY.format(domain=domain)


def topic_metrics(domain: str, worker: str) -> str:
    return TOPIC_METRICS.format(domain=domain, worker=worker)


def topic_status(worker: str) -> str:
    return TOPIC_STATUS.format(worker=worker)


def topic_data(worker: str, domain: str) -> str:
    return TOPIC_DATA.format(worker=worker, domain=domain)


# MQTT 3.1.1/5 section 1.5.3/4.7: a topic is UTF-8 of at most 65,535 bytes without U+0000;
# "+", "#" are wildcards and "/" separates levels. Mosquitto also refuses control characters.
MAX_TOPIC_BYTES = 65535
_LONGEST_DOMAIN_TOPIC = max((TOPIC_KEY, TOPIC_METRICS, TOPIC_DATA), key=len)


def topic_level_problem(level: str) -> str | None:
    """Why ``level`` (a domain) cannot be one level of our topic names, or None."""
    if "\0" in level:
        return "contains NUL, which MQTT refuses in topic names"
    bad = next((c for c in level if c in "+#/"), None)
    if bad:
        return f"contains {bad!r}, an MQTT wildcard or level separator"
    bad = next((c for c in level if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad:
        return f"contains the control character {bad!r}, which MQTT brokers refuse in topic names"
    size = len(level.encode())
    room = MAX_TOPIC_BYTES - len(_LONGEST_DOMAIN_TOPIC.format(domain="", worker="").encode())
    if size > room:
        return f"is {size} bytes long; MQTT topics allow at most {room} bytes for it"
    return None


def topic_ha_peers(identity: str, client_id: str, domain: str) -> str:
    return TOPIC_HA_PEERS.format(identity=identity, client_id=client_id, domain=domain)


def split_topic(topic: str) -> list[str]:
    return topic.split("/")


def is_valid_key(value: str) -> bool:
    """A WireGuard public key a peer can handshake with: 44 chars of base64, not low-order."""
    return isinstance(value, str) and KEY_RE.match(value) is not None and value not in LOW_ORDER_KEYS


def is_low_order_key(value: str) -> bool:
    return value in LOW_ORDER_KEYS
