"""The worker's desired state: which node keys each domain should have, and since when.

A small JSON file, rewritten atomically (temp file, fsync, rename, fsync of the directory) so
a crash or power cut leaves either the old or the new version, never a torn one. It lets a
rebooted gateway put every peer back at once instead of waiting for nodes to re-register.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

from wgmesh import fsutil, protocol

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SALVAGE_ATTEMPTS = 20  # cut points tried, from the end, in a damaged file


class JournalError(Exception):
    """The journal cannot be written (or, read-only, read); the message names the file."""


class Journal:
    def __init__(self, path: str, read_only: bool = False):
        """read_only (wgmesh-worker --drift): read exactly as the daemon does, but leave a
        damaged file where it is; the daemon sets it aside when it next loads it."""
        self.path = path
        self.read_only = read_only
        self.domains: dict[str, dict[str, float]] = {}
        self.dirty = False
        self.load()

    def load(self) -> None:
        """Read every valid entry; a damaged file is set aside whole and what it lost is logged
        and counted (entries_set_aside). Never raises for content: the worker must start."""
        self.domains, self.entries_set_aside = {}, 0
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            if self.read_only:  # no verdict from a journal never read (--drift without the right to read it)
                raise JournalError(f"journal {self.path}: cannot read: {exc}") from None
            self._set_aside(f"unreadable ({exc})")
            return
        problems: list[str] = []
        try:
            data = json.loads(text)
        except ValueError as exc:
            data = salvage(text)
            problems.append(f"not valid JSON ({exc})")
            self.entries_set_aside += 1  # the unreadable rest counts as one
        if (
            not isinstance(data, dict)
            or data.get("version") != FORMAT_VERSION
            or not isinstance(data.get("domains"), dict)
        ):
            self._set_aside(problems[0] if problems else f"not a version {FORMAT_VERSION} journal")
            return
        for domain, entries in data["domains"].items():
            if not isinstance(entries, dict):
                problems.append(f"domain {domain!r} is not a mapping of key to time ({type(entries).__name__})")
                self.entries_set_aside += 1
                continue
            valid = {}
            for key, added_at in entries.items():
                if not protocol.is_valid_key(key):
                    problems.append(f"domain {domain!r}: {key[:60]!r} is not a WireGuard public key")
                elif isinstance(added_at, bool) or not isinstance(added_at, int | float) or not math.isfinite(added_at):
                    problems.append(f"domain {domain!r}: key {key!r} has added-at {added_at!r}, not a number")
                else:
                    valid[key] = float(added_at)
                    continue
                self.entries_set_aside += 1
            self.domains[domain] = valid
        if problems:
            kept = sum(len(v) for v in self.domains.values())
            self._set_aside(f"damaged: {'; '.join(problems[:10])}", kept)

    def _set_aside(self, why: str, kept: int = 0) -> None:
        # Keep running rather than refuse to: with an empty journal reconcile only adds what
        # arrives and never removes a live peer. The bad file is kept whole for a human to read;
        # what could be read is written back at the next save (dirty).
        if self.read_only:
            log.warning("journal %s is %s; read as the worker reads it: its %d readable entries", self.path, why, kept)
            if not kept:
                self.domains = {}
            return
        aside = f"{self.path}.bad-{int(time.time())}"
        log.error("journal %s is %s; moved to %s, starting with its %d readable entries", self.path, why, aside, kept)
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            log.error("journal %s: cannot move it aside: %s", self.path, exc)
        if not kept:
            self.domains = {}
            self.entries_set_aside = max(1, self.entries_set_aside)  # an unreadable file counts as one
        self.dirty = bool(kept)

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
        if self.dirty and not self.read_only:
            try:
                write_atomic(self.path, self.snapshot())
            except JournalError:
                self.dirty = True
                raise


def write_atomic(path: str, data: bytes) -> None:
    """fsutil.write_atomic, failing with a JournalError that names the journal."""
    try:
        fsutil.write_atomic(path, data)
    except OSError as exc:
        raise JournalError(f"journal {path}: cannot write: {exc}") from None


def salvage(text: str) -> object:
    """The longest prefix of a cut-short JSON text that ends after a complete value, closed.

    A journal cut short (disk full mid-write on a filesystem without atomic rename, a copy
    gone wrong) still holds all entries before the cut. Only cuts right after a complete value
    ("}" or before ",") are tried, so a number cut short is never read as a wrong time.
    """
    stack: list[str] = []
    cuts: list[tuple[int, str]] = []  # (end, closers) at each point after a complete value
    in_string = escaped = False
    for pos, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            if stack:
                stack.pop()
            cuts.append((pos + 1, "".join(reversed(stack))))
        elif char == ",":
            cuts.append((pos, "".join(reversed(stack))))
    for end, closers in reversed(cuts[-SALVAGE_ATTEMPTS:]):
        try:
            return json.loads(text[:end] + closers)
        except ValueError:
            continue
    return None
