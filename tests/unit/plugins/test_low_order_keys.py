"""Low-order Curve25519 points are refused as public keys.

A peer whose public key is a point of small order shares an all-zero secret with
everyone: no node can own it, so the plugins refuse it wherever a public key goes
in. The set is computed here from the curve, independently of _wgkey.LOW_ORDER_KEYS.
"""

import base64

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.filter.derive import wg_lladdr
from ansible_collections.freifunk.wgmesh.plugins.module_utils import _wgkey

P = 2**255 - 19
A = 486662  # Curve25519: v^2 = u^3 + A u^2 + u


def _sqrt(n):
    """Both square roots of n mod P, or none (P = 5 mod 8: Atkin's method)."""
    n %= P
    root = pow(n, (P + 3) // 8, P)
    if root * root % P != n:
        root = root * pow(2, (P - 1) // 4, P) % P
    return {root, P - root} if root * root % P == n else set()


def small_order_u():
    """u-coordinates of every point whose order divides 8, on the curve or its twist.

    Doubling maps u to (u^2-1)^2 / (4u(u^2+Au+1)). Order 2: u = 0. Order 4: the points
    that double to u = 0, i.e. u = 1 and u = -1. Order 8: the points that double to
    u = k for k in (1, -1): (u^2-1)^2 = 4ku(u^2+Au+1), palindromic, so with
    t = u + 1/u: t^2 - 4kt - 4 - 4kA = 0 and then u^2 - tu + 1 = 0.
    """
    found = {0, 1, P - 1}
    for k in (1, -1):
        for root in _sqrt(4 * k * k + 4 + 4 * k * A):
            t = (2 * k + root) % P
            for s in _sqrt(t * t - 4):
                found.add((t + s) * pow(2, P - 2, P) % P)
    return found


def encodings(u_values):
    """Every 32-byte little-endian encoding: non-canonical u + p below 2^255 too, and each
    again with bit 255 set, which X25519 masks off (RFC 7748, section 5)."""
    out = set()
    for u in u_values:
        for value in (u, u + P):
            if value < 2**255:
                for top in (0, 2**255):
                    out.add(base64.b64encode((value | top).to_bytes(32, "little")).decode())
    return out


def test_the_set_is_the_curves_small_order_points():
    computed = encodings(small_order_u())
    assert len(small_order_u()) == 5  # 0, 1, -1 and the two u of order 8
    # plus p and p + 1, the only non-canonical forms below 2^255; twice with bit 255
    assert len(computed) == 14
    assert frozenset(computed) == _wgkey.LOW_ORDER_KEYS


def test_every_low_order_key_gives_an_all_zero_secret():
    x25519 = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.x25519")
    for key in _wgkey.LOW_ORDER_KEYS:
        peer = x25519.X25519PublicKey.from_public_bytes(base64.b64decode(key))
        # cryptography refuses to return an all-zero shared secret.
        with pytest.raises(ValueError):
            x25519.X25519PrivateKey.generate().exchange(peer)
    ordinary = x25519.X25519PrivateKey.generate().public_key()
    assert len(x25519.X25519PrivateKey.generate().exchange(ordinary)) == 32


def test_low_order_keys_are_valid_syntax_but_not_public_keys():
    for key in _wgkey.LOW_ORDER_KEYS:
        assert _wgkey.key_problem(key) is None, key  # a private key may be anything
        assert "low-order" in _wgkey.public_key_problem(key), key
    assert _wgkey.public_key_problem("XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8=") is None


def test_filters_refuse_a_low_order_public_key():
    with pytest.raises(AnsibleFilterError, match="low-order"):
        wg_lladdr("A" * 43 + "=")
