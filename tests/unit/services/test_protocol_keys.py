"""The key rule nodes depend on: syntax and the refused low-order Curve25519 points.

LOW_ORDER_KEYS is checked against the curve itself, not against a copy of the
list: a key is low-order when X25519 with any private key gives the all-zero
shared secret, which `cryptography` (OpenSSL) reports as an error.
"""

from __future__ import annotations

import base64

import pytest

from wgmesh import protocol

x25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.x25519")

P = 2**255 - 19
A = 486662  # Curve25519: v^2 = u^3 + A*u^2 + u


def shared_secret_is_zero(u_bytes: bytes) -> bool:
    peer = x25519.X25519PublicKey.from_public_bytes(u_bytes)
    try:
        x25519.X25519PrivateKey.generate().exchange(peer)
    except ValueError:  # OpenSSL refuses the all-zero result
        return True
    return False


def double_u(u: int) -> int | None:
    """u-coordinate of 2*(u, v) on the Montgomery curve; None for the point at infinity."""
    denominator = 4 * u * (u * u + A * u + 1) % P
    if denominator == 0:
        return None
    return (u * u - 1) ** 2 * pow(denominator, -1, P) % P


def small_order_u() -> set[int]:
    """u-coordinates whose point has order 2, 4 or 8 (curve or twist), found by halving from 0."""
    found, frontier = {0}, [0]
    while frontier:
        target = frontier.pop()
        # halving: roots of (u^2 - 1)^2 - target * 4u(u^2 + Au + 1) = 0, searched among
        # the candidates that the curve's 8-torsion can have (the roots of the quartic)
        for u in quartic_roots(target):
            if u not in found:
                found.add(u)
                frontier.append(u)
    return found


def quartic_roots(t: int) -> list[int]:
    """Roots in F_p of u^4 - 4t*u^3 - (2 + 4tA)u^2 - 4t*u + 1 (u with double_u(u) == t)."""
    # The quartic is palindromic: divide by u^2, set w = u + 1/u: w^2 - 4t*w - (4 + 4tA) = 0.
    roots = []
    for w in sqrt_quadratic(1, -4 * t, -(4 + 4 * t * A)):
        roots += sqrt_quadratic(1, -w, 1)  # u^2 - w*u + 1 = 0
    return sorted({r for r in roots if double_u(r) == t})


def sqrt_quadratic(a: int, b: int, c: int) -> list[int]:
    disc = (b * b - 4 * a * c) % P
    root = sqrt_mod_p(disc)
    if root is None:
        return []
    inv = pow(2 * a, -1, P)
    return [(-b + root) * inv % P, (-b - root) * inv % P]


def sqrt_mod_p(n: int) -> int | None:
    """Square root modulo p = 5 (mod 8) (Atkin), None when n is not a square."""
    n %= P
    if n == 0:
        return 0
    r = pow(n, (P + 3) // 8, P)
    if r * r % P != n:
        r = r * pow(2, (P - 1) // 4, P) % P
    return r if r * r % P == n else None


def as_key(u: int) -> str:
    return base64.b64encode(u.to_bytes(32, "little")).decode()


def low_order_forms() -> set[str]:
    """Every 32-byte encoding of a small-order point, derived from the curve."""
    canonical = small_order_u()
    aliases = {u + P for u in canonical if u + P < 2**255}  # non-canonical, same point
    forms = canonical | aliases
    # X25519 ignores bit 255 (RFC 7748), so each form also exists with it set.
    return {as_key(u) for u in forms} | {as_key(u | 1 << 255) for u in forms}


LOW_ORDER = sorted(low_order_forms())


def test_small_order_points_are_the_five_known_ones():
    # The 8-torsion of the curve and its twist: 0, 1, p-1 and two points of order 8.
    assert len(small_order_u()) == 5
    assert {0, 1, P - 1} <= small_order_u()
    assert len(LOW_ORDER) == 14


def test_protocol_lists_exactly_the_derived_low_order_keys():
    assert set(LOW_ORDER) == protocol.LOW_ORDER_KEYS
    assert isinstance(protocol.LOW_ORDER_KEYS, frozenset)


@pytest.mark.parametrize("key", LOW_ORDER)
def test_each_low_order_key_gives_a_zero_shared_secret_and_is_refused(key):
    assert shared_secret_is_zero(base64.b64decode(key))
    assert protocol.KEY_RE.match(key), "syntactically a key: only the low-order rule refuses it"
    assert not protocol.is_valid_key(key)


def test_ordinary_keys_stay_valid():
    for _key in range(20):
        key = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
        assert not shared_secret_is_zero(key)
        assert protocol.is_valid_key(base64.b64encode(key).decode())


@pytest.mark.parametrize("value", [None, 42, "", "not-a-key", "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8=\n"])
def test_non_keys_are_refused(value):
    assert not protocol.is_valid_key(value)
