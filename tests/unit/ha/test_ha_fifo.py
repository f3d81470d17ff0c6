"""keepalived's notify FIFO: lines parsed, only the named instance or group acted on."""

from __future__ import annotations

import os
import threading

import pytest

from wgmesh.ha import fifo


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('INSTANCE "VI_welt" MASTER 150\n', fifo.Event("INSTANCE", "VI_welt", "MASTER", 150)),
        ('GROUP "gw1" BACKUP 0', fifo.Event("GROUP", "gw1", "BACKUP", 0)),
        ('VS "10.0.0.1:80" UP', None),  # checker lines share the FIFO
        ("garbage", None),
    ],
)
def test_parse_event(line, expected):
    assert fifo.parse_event(line) == expected


class Done(Exception):
    pass


def test_serve_acts_on_the_named_instance_only(tmp_path):
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    seen = []

    def handle(state: str) -> None:
        seen.append(state)
        if state == "STOP":
            raise Done

    def write() -> None:
        with open(path, "w") as fh:
            fh.write('INSTANCE "other" MASTER 100\n')
            fh.write('INSTANCE "VI_welt" MASTER 150\n')
            fh.write('INSTANCE "VI_welt" BACKUP 150\n')
            fh.write('GROUP "VI_welt" FAULT 0\n')  # a sync group of that name counts too
            fh.write('INSTANCE "VI_welt" STOP 150\n')

    writer = threading.Thread(target=write)
    writer.start()
    with pytest.raises(Done):
        fifo.serve(path, "VI_welt", handle)
    writer.join()
    assert seen == ["MASTER", "BACKUP", "FAULT", "STOP"]
