"""files/ha-member-state, which the rolling maintenance reads on each member of a pair.

The script's own logic (which member is in its place) is tested here. `systemctl` and `ip` are
stand-ins on PATH: this host runs no systemd and holds no pair's addresses. The real commands
run in molecule/ha, where the rolling maintenance hands a member over and back.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "keepalived" / "files" / "ha-member-state"
VIPS = ["192.0.2.10", "2001:db8::10"]


def run(tmp_path: Path, *, state: str | None, keepalived: str, synced: bool, held: list[str]) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(f"#!/bin/sh\necho {keepalived}\n")
    # `ip -o addr show to VIP`: a line for an address this host holds, nothing otherwise
    cases = "\n".join(f'  {vip}) echo "2: eth0 inet {vip}/24 scope global eth0" ;;' for vip in held)
    (bin_dir / "ip").write_text(f'#!/bin/sh\ncase "$5" in\n{cases}\nesac\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    state_file, marker = tmp_path / "ha-state", tmp_path / "ha-synced"
    if state is not None:
        state_file.write_text(state + "\n")
    if synced:
        marker.write_text("1700000000\n")
    out = subprocess.run(
        [SCRIPT, state_file, marker, *VIPS],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@pytest.mark.parametrize(
    ("state", "keepalived", "synced", "held", "ok"),
    [
        ("active", "active", False, VIPS, "yes"),  # the active member follows nobody
        ("active", "active", False, VIPS[:1], "no"),  # one family did not move
        ("standby", "active", True, [], "yes"),
        ("standby", "active", False, [], "no"),  # not synced from its partner yet
        ("standby", "active", True, VIPS[:1], "no"),  # a standby holding an address
        ("standby", "inactive", True, [], "no"),  # keepalived stopped: out of the pair
        (None, "active", True, [], "no"),  # wgmesh-ha has not said anything yet
    ],
    ids=["active", "active-one-family", "standby", "standby-unsynced", "standby-with-vip", "stopped", "no-state"],
)
def test_a_member_is_in_its_place_only_when_keepalived_runs_and_the_addresses_match(
    tmp_path, state, keepalived, synced, held, ok
):
    read = run(tmp_path, state=state, keepalived=keepalived, synced=synced, held=held)
    assert read["ok"] == ok, read
    assert read["state"] == (state or "none")
    assert read["vips"] == str(len(held))
    assert read["synced"] == ("yes" if synced else "no")
    assert read["keepalived"] == keepalived
