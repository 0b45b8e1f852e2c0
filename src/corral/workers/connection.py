"""One accepted client connection: its state in the engine, and its socket I/O.

The engine's loop owns every `Connection`: only the loop registers it with epoll, changes its
`state`, and closes it. A request thread may use a connection only while the loop has handed it
over (state SERVING): then it reads the request body, writes the response with `write_some`
(never waiting), and hands the connection back through the engine's completion queue.

Sockets stay non-blocking for their whole life. The non-blocking calls (`write_some`,
`sendfile_some`) are what the engine uses for responses: when the kernel would block, the
response is parked in the loop. The waiting calls (`recv`, `send`) exist for the two places
that are push-style by contract: a streamed request body the application reads itself, and
PEP 3333's `write()` callable. Each of their waits is bounded by `timeout`.
"""

from __future__ import annotations

import _socket
import contextlib
import contextvars
import os
import select
from typing import Any

from corral.adapters.response import FileRange
from corral.errors import ClientDisconnected

RECV_SIZE = 65536
_EMPTY_CONTEXT = contextvars.Context()
_READ = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_WRITE = select.POLLOUT | select.POLLERR | select.POLLHUP

# Connection states. Exactly one at a time; the loop moves a connection between them.
HEAD = 0  # reading a request head (the first one, or one after a response)
BODY = 1  # reading a request body into the worker's buffer, before the app is called
QUEUED = 2  # a complete request waits for a free thread
SERVING = 3  # the application (or a thread producing its response) has it
WRITING = 4  # response bytes wait for the socket to drain; parked in the loop
IDLE = 5  # between requests on a kept-alive connection
CLOSED = 6
H2 = 7  # an HTTP/2 connection: the loop owns it for good (workers/h2_engine.py)
STATE_NAMES = ("head", "body", "queued", "serving", "writing", "idle", "closed", "h2")


def peer_strings(peer: object) -> tuple[str, str]:
    """REMOTE_ADDR and REMOTE_PORT for a peer address (unix sockets have no port)."""
    if isinstance(peer, tuple):
        return str(peer[0]), str(peer[1])
    return "" if peer is None else str(peer), ""


class Connection:
    scheme = "http"  # wsgi.url_scheme; TLS connections say https

    __slots__ = (
        "accepted",
        "body",
        "buf",
        "context",
        "deadline",
        "events",
        "exchange",
        "fd",
        "h2",
        "keep_after",
        "leftover",
        "outbox",
        "progress",
        "proxy_mode",
        "remote_addr",
        "remote_port",
        "requests",
        "server_name",
        "server_port",
        "since",
        "sock",
        "started",
        "state",
        "stuck",
        "thread",
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
        self.state = HEAD
        self.accepted = now  # for the control socket's `show connections` age
        self.buf: bytes | bytearray = b""  # an incomplete head (or PROXY header)
        self.since = now  # when the current wait began (head, idle) or the request started
        self.progress = now  # last time bytes moved while reading a body or writing
        self.deadline = 0.0  # total deadline of the body read or response write; 0 = none
        self.requests = 0
        self.events = 0  # what the epoll set watches for; 0 = not registered
        self.proxy_mode = ""  # "v1", "v2" or "auto" while a PROXY header is still expected
        self.body: Any = None  # the body being read in the loop (engine's BodyReader)
        self.exchange: Any = None  # the response being produced (a generator of output)
        self.context = _EMPTY_CONTEXT  # the request's contextvars (set per request)
        self.outbox: bytes | memoryview | FileRange | None = None  # output not yet sent
        self.keep_after = False  # for output without an exchange: keep alive once sent
        self.leftover: bytes | None = None  # set by an exchange as it ends (adapters/wsgi.py)
        self.started = now  # when the current request was handed to the application
        self.thread = 0  # ident of the thread serving it (stack dumps of stuck requests)
        self.stuck = False  # reported as running past `timeout`
        self.h2: Any = None  # the HTTP/2 side (workers/h2_engine.py) once it speaks HTTP/2

    # --- non-blocking output, for the engine ---

    def write_some(self, data: bytes | bytearray | memoryview) -> int:
        """Send what the socket takes now; 0 when it would block. Raises OSError when the
        connection is broken."""
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0

    def sendfile_some(self, fd: int, offset: int, count: int) -> int | None:
        """os.sendfile what the socket takes now: None when it would block, 0 at end of file."""
        try:
            return os.sendfile(self.fd, fd, offset, count)
        except BlockingIOError:
            return None

    @property
    def flushed(self) -> bool:
        """Whether output accepted by write_some has all gone to the socket (TLS buffers)."""
        return True

    def flush_some(self) -> bool:
        """Push buffered output (TLS) to the socket; True once none is left."""
        return True

    # --- waiting I/O, for push-style callers in request threads ---

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
        """All of data, or raise: a client that stops reading cannot hold us past `timeout`
        per wait. Only for PEP 3333 write(), which is push-style by contract."""
        view = memoryview(data)
        while view:
            sent = self.write_some(view)
            if sent:
                view = view[sent:]
            else:
                self._wait(_WRITE)

    def send_nowait(self, data: bytes) -> None:
        """Best effort, never waits, never raises: error answers before closing."""
        with contextlib.suppress(OSError):
            self.sock.send(data)

    def shutdown_write(self) -> bool:
        """Send FIN but keep reading (a lingering close); False when the socket has failed."""
        try:
            self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
