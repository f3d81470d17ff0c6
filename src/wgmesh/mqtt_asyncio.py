"""paho's network loop run by an asyncio event loop instead of paho's own thread.

The broker answers HTTP on an asyncio loop and waits there for each key's PUBACK.
With paho's thread (``loop_start``) every publish and every PUBACK crossed
threads: a wake-up of the other thread, a lock, and the GIL handed over, which
cost a third of the broker's CPU per request and held it at a third of what its
HTTP stack serves (docs/broker.md, "Throughput"). Here paho's socket is watched
by the event loop through paho's external-loop hooks (``on_socket_open``,
``on_socket_register_write``, ...), so all of paho's callbacks run on the loop
thread, and every publish made in one loop iteration leaves in one write.

Only the blocking part of connecting (DNS, TCP connect, TLS handshake) runs in
the default executor, so an unreachable MQTT broker never stalls HTTP. Reconnects
back off from ``RECONNECT_MIN_DELAY_S`` to ``RECONNECT_MAX_DELAY_S`` like paho's
own loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable

import paho.mqtt.client as paho

from wgmesh import mqtt

log = logging.getLogger(__name__)

MISC_INTERVAL_S = 1.0  # keepalive pings and the PINGRESP deadline, as paho's own loop checks them


class AsyncioLoopDriver:
    """Runs one paho Client on `loop`: call start() once connect_async() was called, stop() to end."""

    def __init__(
        self,
        client: paho.Client,
        loop: asyncio.AbstractEventLoop,
        on_connect_fail: Callable[[], None] | None = None,
    ):
        self.client = client
        self.loop = loop
        self.on_connect_fail = on_connect_fail
        self._loop_thread: int | None = None
        self._writing = False
        self._misc: asyncio.TimerHandle | None = None
        self._closed: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._accepted = False
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._closed = asyncio.Event()
        self._task = self.loop.create_task(self._connect_forever())

    def stop(self) -> None:
        """Send DISCONNECT if connected, close the socket, stop reconnecting."""
        if self._task is not None:
            self._task.cancel()
        if self.client.socket() is not None:
            self.client.disconnect()
            self.client.loop_write()  # sends DISCONNECT; paho then closes the socket
        sock = self.client.socket()
        if sock is not None:  # DISCONNECT did not leave in one write (mosquitto hung): close anyway
            self._unwatch(sock)
            sock.close()

    # --- connecting -------------------------------------------------------------

    async def _connect_forever(self) -> None:
        delay = mqtt.RECONNECT_MIN_DELAY_S
        while True:
            self._closed.clear()
            try:
                # Blocking DNS/connect/TLS, off the loop; it calls on_socket_open from there.
                await self.loop.run_in_executor(None, self.client.reconnect)
            except (OSError, ssl.SSLError) as exc:
                log.debug("MQTT connect failed: %s", exc)
                if self.on_connect_fail is not None:
                    self.on_connect_fail()
            else:
                await self._closed.wait()
            if self._accepted:  # as paho's loop: the backoff starts again after an accepted connect
                self._accepted = False
                delay = mqtt.RECONNECT_MIN_DELAY_S
            await asyncio.sleep(delay)
            delay = min(delay * 2, mqtt.RECONNECT_MAX_DELAY_S)

    def accepted(self) -> None:
        """Tell the driver that mosquitto accepted the connection (CONNACK success)."""
        self._accepted = True

    # --- paho's socket hooks ----------------------------------------------------

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _on_loop(self, fn: Callable, *args) -> None:
        """fn(*args) now if on the loop thread, else on the loop (connects run in the executor)."""
        if self.on_loop_thread():
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client, userdata, sock) -> None:
        self._on_loop(self._watch, sock)

    def _watch(self, sock) -> None:
        if self.client.socket() is not sock:
            return  # closed again before the loop got to it
        self.loop.add_reader(sock, self._read)
        self._misc = self.loop.call_later(MISC_INTERVAL_S, self._run_misc)

    def _on_socket_close(self, client, userdata, sock) -> None:
        self._on_loop(self._unwatch, sock)

    def _unwatch(self, sock) -> None:
        self.loop.remove_reader(sock)
        self.loop.remove_writer(sock)
        if self.client.socket() not in (None, sock):
            return  # an older socket, closed while a newer one is open and watched
        self._writing = False
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        if self._closed is not None:
            self._closed.set()

    def _on_register_write(self, client, userdata, sock) -> None:
        if not self._writing:  # called for every queued packet: only the first one registers
            self._on_loop(self._want_write, sock)

    def _want_write(self, sock) -> None:
        if self.client.socket() is sock and not self._writing:
            self._writing = True
            self.loop.add_writer(sock, self.client.loop_write)

    def _on_unregister_write(self, client, userdata, sock) -> None:
        if self._writing:
            self._writing = False
            self._on_loop(self.loop.remove_writer, sock)

    def _read(self) -> None:
        self.client.loop_read()
        sock = self.client.socket()
        # TLS may hold decrypted bytes the socket no longer signals as readable.
        while isinstance(sock, ssl.SSLSocket) and sock.pending() and self.client.socket() is sock:
            self.client.loop_read()

    def _run_misc(self) -> None:
        self._misc = None
        if self.client.socket() is None:
            return
        self.client.loop_misc()
        if self.client.socket() is not None:
            self._misc = self.loop.call_later(MISC_INTERVAL_S, self._run_misc)
