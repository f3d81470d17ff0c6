"""WireGuard keys for tests."""

from __future__ import annotations

import base64
import os


def new_key() -> str:
    """A random public key: 32 random bytes in base64 (WireGuard accepts any as a peer's key)."""
    return base64.b64encode(os.urandom(32)).decode()
