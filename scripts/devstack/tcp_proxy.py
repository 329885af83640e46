"""A TCP forwarder on loopback that stands for a managed Redis service's primary endpoint (#24): one address the
services are given, behind which the provider replaces the primary. `retarget` is the provider's switch.

The services see what they see behind ElastiCache's or Memorystore's endpoint: with `drop=True` every open
connection is cut (the old primary is gone); with `drop=False` open connections stay on the old server — which,
demoted to a replica, answers writes with READONLY — and only new ones reach the new primary.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from typing import cast

from scripts.devstack.ports import LOOPBACK


class TcpProxy:
    def __init__(self, target_port: int, *, port: int = 0) -> None:
        self._target = target_port
        self._listener = socket.create_server((LOOPBACK, port))
        self.port: int = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="tcp-proxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def target_port(self) -> int:
        return self._target

    def retarget(self, target_port: int, *, drop: bool) -> None:
        """New connections go to `target_port`; with `drop`, every open one is cut at once."""
        with self._lock:
            self._target = target_port
            if not drop:
                return
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _close(*pair)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _close(*pair)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                target = self._target
            try:
                upstream = socket.create_connection((LOOPBACK, target), timeout=2)
            except OSError:
                client.close()  # as a provider's endpoint does while no primary is there
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), name="tcp-proxy-pump", daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            try:
                while not self._closed.is_set():
                    for key, _ in selector.select(timeout=0.5):
                        sock = cast(socket.socket, key.fileobj)
                        data = sock.recv(65536)
                        if not data:
                            return
                        peers[sock].sendall(data)
            except (OSError, ValueError):  # cut by `retarget(drop=True)` or `close()`
                return
            finally:
                _close(client, upstream)
                with self._lock:
                    if (client, upstream) in self._pairs:
                        self._pairs.remove((client, upstream))


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
