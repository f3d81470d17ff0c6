"""The worker's desired state: which node keys each domain should have, and since when.

A small JSON file, rewritten atomically (temp file, fsync, rename, fsync of the directory) so
a crash or power cut leaves either the old or the new version, never a torn one. It lets a
rebooted gateway put every peer back at once instead of waiting for nodes to re-register.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class JournalError(Exception):
    """The journal cannot be written; the message names the file."""


class Journal:
    def __init__(self, path: str):
        self.path = path
        self.domains: dict[str, dict[str, float]] = {}
        self.dirty = False
        self.load()

    def load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            self.domains = {}
            return
        except (OSError, ValueError) as exc:
            self._set_aside(f"unreadable ({exc})")
            return
        if (
            not isinstance(data, dict)
            or data.get("version") != FORMAT_VERSION
            or not isinstance(data.get("domains"), dict)
        ):
            self._set_aside(f"not a version {FORMAT_VERSION} journal")
            return
        self.domains = {
            str(domain): {str(k): float(v) for k, v in keys.items()}
            for domain, keys in data["domains"].items()
            if isinstance(keys, dict)
        }

    def _set_aside(self, why: str) -> None:
        # Start empty rather than refuse to run: with an empty journal reconcile only adds what
        # arrives and never removes a live peer, and the bad file is kept for a human to read.
        aside = f"{self.path}.bad-{int(time.time())}"
        log.error("journal %s is %s; moved to %s, starting with an empty journal", self.path, why, aside)
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            log.error("journal %s: cannot move it aside: %s", self.path, exc)
        self.domains = {}

    def keys(self, domain: str) -> dict[str, float]:
        """key -> added-at (epoch seconds) for one domain (a live view: do not modify)."""
        return self.domains.get(domain, {})

    def add(self, domain: str, key: str, now: float) -> None:
        """Record (or refresh: a node that registers again gets a new grace period) a key."""
        self.domains.setdefault(domain, {})[key] = now
        self.dirty = True

    def remove(self, domain: str, keys) -> None:
        entries = self.domains.get(domain, {})
        for key in keys:
            if entries.pop(key, None) is not None:
                self.dirty = True

    def snapshot(self) -> bytes:
        """The current content, to be written by write_atomic() (possibly in another thread)."""
        data = json.dumps({"version": FORMAT_VERSION, "domains": self.domains}, separators=(",", ":")).encode()
        self.dirty = False
        return data

    def save(self) -> None:
        if self.dirty:
            try:
                write_atomic(self.path, self.snapshot())
            except JournalError:
                self.dirty = True
                raise


def write_atomic(path: str, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over `path`, fsync the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".journal-", dir=directory)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise JournalError(f"journal {path}: cannot write: {exc}") from None
