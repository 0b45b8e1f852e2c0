"""One accepted client connection: the worker's side of the adapters' `Transport`.

Sockets stay non-blocking for their whole life. Reads and writes are tried first and wait for
readiness (with the connection's timeout) only when the kernel says they would block: the
common case costs one system call, and a slow client can never hold a worker past `timeout`.
"""

from __future__ import annotations

import _socket
import contextlib
import os
import select

from corral.errors import ClientDisconnected

RECV_SIZE = 65536
_READ = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_WRITE = select.POLLOUT | select.POLLERR | select.POLLHUP


def peer_strings(peer: object) -> tuple[str, str]:
    """REMOTE_ADDR and REMOTE_PORT for a peer address (unix sockets have no port)."""
    if isinstance(peer, tuple):
        return str(peer[0]), str(peer[1])
    return "" if peer is None else str(peer), ""


class Connection:
    scheme = "http"  # wsgi.url_scheme; TLS connections say https

    __slots__ = (
        "buf",
        "fd",
        "proxy_mode",
        "registered",
        "remote_addr",
        "remote_port",
        "requests",
        "server_name",
        "server_port",
        "since",
        "sock",
        "timeout",
        "trusted",
    )

    def __init__(
        self,
        sock: _socket.socket,
        peer: object,
        server: tuple[str, str],
        trusted: bool,
        timeout: float,
        now: float,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.remote_addr, self.remote_port = peer_strings(peer)
        self.server_name, self.server_port = server
        self.trusted = trusted
        self.timeout = timeout
        self.buf: bytes | bytearray = b""
        self.since = now  # when waiting for the current request began
        self.requests = 0
        self.registered = False  # in the worker's epoll set
        self.proxy_mode = ""  # "v1", "v2" or "auto" while a PROXY header is still expected

    def _wait(self, events: int) -> None:
        poller = select.poll()
        poller.register(self.fd, events)
        if not poller.poll(self.timeout * 1000 if self.timeout > 0 else None):
            raise ClientDisconnected("client timed out")

    def recv(self) -> bytes:
        """Up to RECV_SIZE bytes; waits at most `timeout` for them; b"" at end of stream."""
        while True:
            try:
                return self.sock.recv(RECV_SIZE)
            except BlockingIOError:
                self._wait(_READ)

    def send(self, data: bytes) -> None:
        """All of data, or raise: a client that stops reading cannot hold us past `timeout`."""
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                self._wait(_WRITE)
                continue
            view = view[sent:]

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """os.sendfile in a readiness loop; returns the bytes sent (less at end of file)."""
        total = 0
        while total < count:
            try:
                sent = os.sendfile(self.fd, fd, offset + total, count - total)
            except BlockingIOError:
                self._wait(_WRITE)
                continue
            if sent == 0:
                break
            total += sent
        return total

    def send_nowait(self, data: bytes) -> None:
        """Best effort, never waits, never raises: error answers before closing."""
        with contextlib.suppress(OSError):
            self.sock.send(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
