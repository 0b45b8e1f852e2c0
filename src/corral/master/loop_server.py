"""A small non-blocking socket server driven by the master's own loop: the machinery under the
control socket (master/control.py) and the Prometheus endpoint (metrics/prometheus.py).

`LoopServer` takes a bound, listening, non-blocking socket and holds one epoll set for it and
its clients, so the master selects on a single descriptor (`fileno()`) and calls
`handle_ready()` on each turn of its loop. That call accepts, reads, writes and drops what is
ready now and returns. Each client has a deadline set at accept; the protocol may move it, and
a client still there at its deadline is dropped. At most `max_clients` are held: a new one
makes room by dropping those that have already left (a burst accepted after a long turn of the
master may hold many), else the one whose deadline is nearest. Bytes received go to the
protocol's `received` callable, which queues its answer on `client.outbox` (`reply`); while an
answer waits, nothing more is read from that client, and an outbox longer than `max_outbox`
drops it. A reply marked last half-closes the connection once it is out; the client is then
read only to see it close (or its deadline pass), so a close with unread request bytes cannot
reset the connection under the answer.

This module never blocks, never binds or unlinks anything, and knows no protocol: what the
bytes mean, and what to answer, belongs to the callables it is given. It raises only what those
callables raise.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger("corral.error")

ACCEPTS_PER_CALL = 16  # one wake-up never spends itself accepting a flood
Session = TypeVar("Session")


@dataclass(eq=False)
class Client(Generic[Session]):
    """One accepted connection: its socket, deadline, the protocol's own state, its outbox."""

    sock: socket.socket
    deadline: float
    session: Session
    outbox: bytearray = field(default_factory=bytearray)
    ending: bool = False  # the last reply is queued: half-close once sent, read only for EOF

    def reply(self, data: bytes, *, last: bool = False) -> None:
        """Queue `data`; the server sends it once `received` returns."""
        self.outbox += data
        self.ending = self.ending or last


# received(client, data, now) -> whether to keep the client (False drops it).
Received = Callable[[Client[Session], bytes, float], bool]


class LoopServer(Generic[Session]):
    def __init__(
        self,
        listener: socket.socket,
        *,
        name: str,
        open_session: Callable[[socket.socket], Session],
        received: Received[Session],
        first_timeout: float,
        max_clients: int,
        recv_size: int = 65536,
        max_outbox: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`name` starts log lines; `first_timeout` is each client's deadline from its accept."""
        self.sock = listener
        self.name = name
        self.open_session = open_session
        self.received = received
        self.first_timeout = first_timeout
        self.max_clients = max_clients
        self.recv_size = recv_size
        self.max_outbox = max_outbox
        self.clock = clock
        self._selector = selectors.EpollSelector()
        self._selector.register(listener, selectors.EVENT_READ)
        self._clients: dict[int, Client[Session]] = {}

    def fileno(self) -> int:
        """Readable whenever there is something for `handle_ready` to do."""
        return self._selector.fileno()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def handle_ready(self) -> None:
        """Accept, read and write what is ready now; drop clients past their deadline. Cheap
        when nothing is ready (one epoll_wait with no timeout), so the master may call it on
        every turn, ready or not, and stalled clients go on time."""
        now = self.clock()
        for key, events in self._selector.select(0):
            if key.fileobj is self.sock:
                self._accept(now)
            elif (client := self._clients.get(key.fd)) is not None:
                if events & selectors.EVENT_WRITE:
                    self._write(client)
                elif events & selectors.EVENT_READ:
                    self._read(client, now)
        for client in list(self._clients.values()):
            if client.deadline <= now:
                self.drop(client)

    def close(self) -> None:
        """Close every client, the epoll set and the listener. Nothing is unregistered first,
        so in a forked child this closes only the child's copies: the parent serves on."""
        for client in self._clients.values():
            client.sock.close()
        self._clients.clear()
        self._selector.close()
        self.sock.close()

    def drop(self, client: Client[Session]) -> None:
        self._clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        client.sock.close()

    # ---- connections ------------------------------------------------------------------------

    def _accept(self, now: float) -> None:
        for _ in range(ACCEPTS_PER_CALL):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ECONNABORTED, EMFILE...: the next wake-up tries again
                log.debug("%s: accept failed: %s", self.name, exc)
                return
            if len(self._clients) >= self.max_clients:
                self._make_room()
            conn.setblocking(False)
            client = Client(conn, now + self.first_timeout, self.open_session(conn))
            self._clients[conn.fileno()] = client
            self._selector.register(conn, selectors.EVENT_READ)

    def _make_room(self) -> None:
        """At the cap: clients that have already left go first (after a long turn of the
        master, a burst accepted together may hold many); only then the one whose deadline is
        nearest, which may be a client waiting for its answer."""
        for client in list(self._clients.values()):
            if _left(client):
                self.drop(client)
        if len(self._clients) >= self.max_clients:
            self.drop(min(self._clients.values(), key=lambda c: c.deadline))

    def _read(self, client: Client[Session], now: float) -> None:
        try:
            data = client.sock.recv(self.recv_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop(client)
            return
        if not data:
            self.drop(client)
            return
        if client.ending:
            return  # answered: what the client still sends is discarded
        if not self.received(client, data, now):
            self.drop(client)
        elif client.outbox:
            self._write(client)

    def _write(self, client: Client[Session]) -> None:
        try:
            sent = client.sock.send(client.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.drop(client)
            return
        del client.outbox[:sent]  # O(1) from the front of a bytearray
        if self.max_outbox is not None and len(client.outbox) > self.max_outbox:
            self.drop(client)
            return
        if client.ending and not client.outbox:
            try:
                client.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.drop(client)
                return
        # While an answer waits, read nothing more: a client that does not read cannot make
        # the master hold an ever longer queue of answers.
        wanted = selectors.EVENT_WRITE if client.outbox else selectors.EVENT_READ
        if self._selector.get_key(client.sock).events != wanted:
            self._selector.modify(client.sock, wanted)


def _left(client: Client[Session]) -> bool:
    """The peer has closed (or reset) and nothing it sent or is owed is pending: what is left
    of it only holds a place. One peek, without consuming what it sent."""
    try:
        eof = client.sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True  # reset: nothing can reach it any more
    return eof and not client.outbox
