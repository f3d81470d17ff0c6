"""KeyBuffer: the broker's on-disk record of keys answered 200 (real files in tmp_path)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os

import pytest

from wgmesh.broker import keybuffer
from wgmesh.broker.keybuffer import KeyBuffer, KeyBufferError
from wgmesh.broker.server import open_key_buffer
from wgmesh.config import parse_config

TOPIC = "wireguard/ffmuc_welt/all"


def key(i: int) -> str:
    # Distinct valid keys; the leading 0x42 keeps them off the low-order points (u = 0, 1).
    return base64.b64encode((0x42 << 248 | i).to_bytes(32, "big")).decode()


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.asyncio
async def test_a_burst_is_one_write_and_one_fdatasync_and_reads_back(tmp_path, monkeypatch):
    path = tmp_path / "state" / "keys.jsonl"
    syncs = []
    real = os.fdatasync
    monkeypatch.setattr(keybuffer.os, "fdatasync", lambda fd: (syncs.append(fd), real(fd)))
    buf = KeyBuffer(str(path), retention=3600, max_keys=1000)
    buf.load()  # creates the directory and an empty file
    await asyncio.gather(*(buf.add(TOPIC, key(i)) for i in range(50)))
    assert len(syncs) == 1
    assert [e["key"] for e in lines(path)] == [key(i) for i in range(50)]
    again = KeyBuffer(str(path), retention=3600, max_keys=1000)
    again.load()
    assert again.touch_all() == [(TOPIC, key(i)) for i in range(50)]


@pytest.mark.asyncio
async def test_a_corrupt_or_cut_off_file_keeps_what_is_valid(tmp_path, caplog):
    path = tmp_path / "keys.jsonl"
    good = [json.dumps({"topic": TOPIC, "key": key(i), "at": 1.0}) for i in range(3)]
    bad = [
        "garbage",
        json.dumps({"topic": TOPIC, "key": "not-a-key", "at": 1.0}),
        json.dumps({"topic": "wireguard/#/all", "key": key(9), "at": 1.0}),
        json.dumps({"topic": TOPIC, "key": key(9), "at": "yesterday"}),
        json.dumps([1, 2]),
    ]
    path.write_text("\n".join([good[0], *bad, good[1], good[2]]) + "\n" + good[0][:20])  # cut short
    buf = KeyBuffer(str(path), retention=3600, max_keys=1000)
    with caplog.at_level(logging.WARNING):
        buf.load()
    assert buf.touch_all() == [(TOPIC, key(i)) for i in range(3)]
    assert "6 unreadable line(s)" in caplog.text
    assert [e["key"] for e in lines(path)] == [key(i) for i in range(3)]  # rewritten clean


@pytest.mark.asyncio
async def test_size_is_bounded_oldest_dropped_with_a_warning(tmp_path, caplog):
    buf = KeyBuffer(str(tmp_path / "keys.jsonl"), retention=3600, max_keys=5)
    buf.load()
    with caplog.at_level(logging.WARNING):
        await asyncio.gather(*(buf.add(TOPIC, key(i)) for i in range(8)))
    assert buf.touch_all() == [(TOPIC, key(i)) for i in range(3, 8)]
    assert "is full (5 keys)" in caplog.text
    await buf.add(TOPIC, key(3))  # a repeat moves to the end instead of taking a second place
    assert buf.touch_all()[-1] == (TOPIC, key(3)) and len(buf) == 5


@pytest.mark.asyncio
async def test_entries_expire_only_when_newer_keys_are_written_and_the_file_is_compacted(tmp_path, monkeypatch):
    path = tmp_path / "keys.jsonl"
    monkeypatch.setattr(keybuffer, "COMPACT_MIN_LINES", 4)
    now = [1000.0]
    monkeypatch.setattr(keybuffer.time, "time", lambda: now[0])
    buf = KeyBuffer(str(path), retention=60, max_keys=1000)
    buf.load()
    await asyncio.gather(*(buf.add(TOPIC, key(i)) for i in range(4)))
    now[0] += 3600  # mosquitto down for an hour: nothing written, nothing expires
    assert len(buf) == 4
    await buf.add(TOPIC, key(99))
    assert buf.touch_all() == [(TOPIC, key(99))]
    assert [e["key"] for e in lines(path)] == [key(99)]  # 5 lines for 1 live entry: rewritten


@pytest.mark.asyncio
async def test_a_failed_write_is_an_error_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "keys.jsonl"
    buf = KeyBuffer(str(path), retention=3600, max_keys=1000)
    buf.load()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keybuffer.os, "fdatasync", disk_full)
    with pytest.raises(KeyBufferError, match=r"key buffer .*keys.jsonl: cannot write: No space left on device"):
        await buf.add(TOPIC, key(1))
    monkeypatch.undo()
    await buf.add(TOPIC, key(2))  # the next batch writes again


def test_an_unusable_path_is_refused_at_start(tmp_path):
    (tmp_path / "file").write_text("")
    buf = KeyBuffer(str(tmp_path / "file" / "keys.jsonl"), retention=3600, max_keys=1000)
    with pytest.raises(KeyBufferError, match=r"key buffer .*file/keys.jsonl"):
        buf.load()


def test_the_broker_stops_with_exit_2_when_its_buffer_file_is_unusable(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    cfg = parse_config(
        {
            "domains": ["ffmuc_welt"],
            "domain_prefixes": ["ffmuc_"],
            "broker": {"key_buffer": str(tmp_path / "file" / "keys.jsonl")},
        },
        "/etc/wgkex.yaml",
    )
    with pytest.raises(SystemExit) as exit_info:
        open_key_buffer(cfg)
    assert exit_info.value.code == 2
    assert "broker.key_buffer in /etc/wgkex.yaml" in caplog.text


def test_a_retention_below_mosquittos_default_autosave_warns():
    base = {"domains": ["ffmuc_welt"], "domain_prefixes": ["ffmuc_"]}
    cfg = parse_config({**base, "broker": {"key_buffer": "/x/keys.jsonl", "key_buffer_retention": 600}})
    assert any("broker.key_buffer_retention: 600" in w and "autosave_interval" in w for w in cfg.warnings)
    assert not parse_config({**base, "broker": {"key_buffer": "/x/keys.jsonl"}}).warnings
