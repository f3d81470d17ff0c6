"""sd_notify: one datagram to $NOTIFY_SOCKET, path or abstract; nothing without the variable."""

from __future__ import annotations

import secrets
import socket

from wgmesh import sdnotify


def test_ready_goes_to_a_path_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.notify("READY=1")
        assert listener.recv(64) == b"READY=1"


def test_an_at_sign_names_the_abstract_namespace(monkeypatch):
    name = f"wgmesh-test-{secrets.token_hex(4)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("READY=1")
        assert listener.recv(64) == b"READY=1"


def test_without_the_variable_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.notify("READY=1")


def test_a_socket_that_is_gone_is_logged_not_raised(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert not sdnotify.notify("READY=1")
    assert "cannot tell systemd 'READY=1'" in caplog.text
