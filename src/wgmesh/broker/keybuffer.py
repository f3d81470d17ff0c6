"""The keys the broker answered 200 for, kept on disk and published again after every reconnect.

mosquitto keeps queued messages in memory and writes them to its persistence file only at
autosave (``autosave_interval``, 1800 s on Debian) and at a clean shutdown: a SIGKILL or a
crash loses every key since, also those queued for a worker that is away. The broker closes
that window: a key is answered 200 only once it is in this file (and mosquitto acknowledged
it), entries stay `retention` seconds, and after every (re)connect the transport publishes
them all again. Workers treat a repeated key as a no-op.

The file holds one JSON object per line, ``{"topic": ..., "key": ..., "at": <unix time>}``,
appended in groups: every `add()` that arrives while a write is under way waits for the next
one, so a burst shares one write and one fdatasync (done in a thread, the event loop goes
on). Reading it back keeps what is valid and warns about the rest (a cut-off last line after a
crash, garbage). Entries expire only when a newer key is written, i.e. while mosquitto takes
keys, so an outage of any length loses nothing; a republish counts as written again. The
file is rewritten compactly (atomically) when it holds twice as many lines as live entries;
at most `max_keys` entries are kept, the oldest dropped first (with a warning).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import OrderedDict

from wgmesh import fsutil, protocol

log = logging.getLogger(__name__)

COMPACT_MIN_LINES = 1024  # below this a rewrite is not worth it


class KeyBufferError(OSError):
    """The buffer file cannot be written; str() names the file and the reason."""


class KeyBuffer:
    def __init__(self, path: str, retention: float, max_keys: int):
        self.path = path
        self.retention = retention
        self.max_keys = max_keys
        self._entries: OrderedDict[tuple[str, str], float] = OrderedDict()  # (topic, key) -> at, oldest first
        self._lines_in_file = 0
        self._batch: list[tuple[str, str, float]] = []
        self._batch_done: asyncio.Future | None = None
        self._writing = False
        self._dropped = 0  # entries pushed out by max_keys since the last warning

    def __len__(self) -> int:
        return len(self._entries)

    # --- start-up -----------------------------------------------------------------

    def load(self) -> None:
        """Read what is valid, warn about the rest, rewrite the file clean; KeyBufferError if unwritable."""
        bad = 0
        try:
            with open(self.path, "rb") as fh:
                for line in fh:
                    entry = _parse(line)
                    if entry is None:
                        bad += 1
                        continue
                    self._remember(*entry)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise KeyBufferError(f"key buffer {self.path}: cannot read: {exc.strerror}") from None
        if bad:
            log.warning("key buffer %s: %d unreadable line(s) skipped (cut short by a crash?)", self.path, bad)
        self._trim()
        self._rewrite()  # also proves at start that the file can be written (KeyBufferError if not)
        log.info("key buffer %s: %d key(s) to publish again after connecting", self.path, len(self))

    # --- the asyncio side ---------------------------------------------------------

    def add(self, topic: str, key: str) -> asyncio.Future:
        """Remember a key; the future resolves once it is on disk (OSError if that failed)."""
        now = time.time()
        self._remember(topic, key, now)
        self._batch.append((topic, key, now))
        if self._batch_done is None:
            self._batch_done = asyncio.get_running_loop().create_future()
            self._batch_done.add_done_callback(_retrieve)  # failed batches may have no one waiting
        done = self._batch_done
        if not self._writing:
            asyncio.get_running_loop().call_soon(self._start_write)  # collect this tick's keys first
            self._writing = True
        return done

    def _start_write(self) -> None:
        batch, done = self._batch, self._batch_done
        self._batch, self._batch_done = [], None
        self._expire(time.time())
        compact = self._lines_in_file + len(batch) > max(COMPACT_MIN_LINES, 2 * len(self._entries))
        data = self._snapshot() if compact else b"".join(_line(*entry) for entry in batch)
        lines_after = len(self._entries) if compact else self._lines_in_file + len(batch)
        loop = asyncio.get_running_loop()
        write = loop.run_in_executor(None, _write_atomic if compact else _append, self.path, data)
        write.add_done_callback(lambda w: self._written(w, done, lines_after))

    def _written(self, write: asyncio.Future, done: asyncio.Future, lines_after: int) -> None:
        exc = write.exception()
        if exc is None:
            self._lines_in_file = lines_after
            done.set_result(None)
        else:
            done.set_exception(exc if isinstance(exc, KeyBufferError) else KeyBufferError(str(exc)))
        if self._batch:
            self._start_write()
        else:
            self._writing = False

    def touch_all(self) -> list[tuple[str, str]]:
        """Every buffered (topic, key), oldest first, counted as written now (they are being republished)."""
        now = time.time()
        for entry in self._entries:
            self._entries[entry] = now
        return list(self._entries)

    # --- helpers -----------------------------------------------------------------

    def _remember(self, topic: str, key: str, at: float) -> None:
        self._entries.pop((topic, key), None)  # a repeated key moves to the end
        self._entries[(topic, key)] = at
        self._trim()

    def _trim(self) -> None:
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
            self._dropped += 1
        if self._dropped:
            log.warning(
                "key buffer %s is full (%d keys): dropped the %d oldest; raise broker.key_buffer_max_keys",
                self.path,
                self.max_keys,
                self._dropped,
            )
            self._dropped = 0

    def _expire(self, now: float) -> None:
        while self._entries:
            entry, at = next(iter(self._entries.items()))
            if now - at < self.retention:
                break
            del self._entries[entry]

    def _snapshot(self) -> bytes:
        return b"".join(_line(topic, key, at) for (topic, key), at in self._entries.items())

    def _rewrite(self) -> None:
        _write_atomic(self.path, self._snapshot())
        self._lines_in_file = len(self._entries)


def _write_atomic(path: str, data: bytes) -> None:
    try:
        fsutil.write_atomic(path, data)
    except OSError as exc:
        raise KeyBufferError(f"key buffer {path}: cannot write: {exc}") from None


def _append(path: str, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fdatasync(fd)  # the data is what matters; the size change comes with it
        finally:
            os.close(fd)
    except OSError as exc:
        raise KeyBufferError(f"key buffer {path}: cannot write: {exc.strerror or exc}") from None


def _line(topic: str, key: str, at: float) -> bytes:
    return (json.dumps({"topic": topic, "key": key, "at": round(at, 3)}, separators=(",", ":")) + "\n").encode()


def _parse(line: bytes) -> tuple[str, str, float] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    topic, key, at = entry.get("topic"), entry.get("key"), entry.get("at")
    if not isinstance(topic, str) or not isinstance(key, str) or not protocol.is_valid_key(key):
        return None
    parts = protocol.split_topic(topic)
    if len(parts) != 3 or protocol.topic_key(parts[1]) != topic or not parts[1] or set("+#\0") & set(parts[1]):
        return None  # only what the broker itself publishes: one key topic, no wildcard
    if isinstance(at, bool) or not isinstance(at, int | float):
        return None
    return topic, key, float(at)


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()
