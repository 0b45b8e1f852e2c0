"""The `asgi` worker's listeners: connections are accepted by the loop, only while there is room.

asyncio's `create_server` accepts for ever and cannot pause, so the worker watches its
listeners itself: `worker_connections` open (or opening) connections take the listeners out of
the loop until one closes, as the WSGI engine does. On the standard library's epoll loop each
listener is registered with EPOLLEXCLUSIVE, so a new connection wakes one worker, not all of
them. A graceful stop of the whole server takes the connections the kernel has already queued
(their clients saw them established) before the listeners close.

What this module must never do: read or write a connection (HttpProtocol does), or close a
listener while the master may still hand it to new workers on a reload (only this worker's
copy is closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import functools
import logging
import select
import socket
import ssl
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.errors import ProtocolError
from corral.http.proxy import V2_MAX_HEADER, ProxyInfo, parse_proxy_header
from corral.trust import is_trusted

if TYPE_CHECKING:
    from corral.workers.asgi import AsgiWorker

log = logging.getLogger("corral.error")

_EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)
_ACCEPT_BATCH = 16  # connections taken per wake-up, so one busy worker cannot hoard a burst


class Acceptor:
    """Watches the listeners while the worker has room, and opens each accepted connection."""

    def __init__(
        self,
        worker: AsgiWorker,
        factory: Callable[[tuple[str, int] | None], asyncio.Protocol],
        tls: ssl.SSLContext | None,
    ) -> None:
        self.worker = worker
        self.factory = factory
        self.tls = tls
        self.loop = asyncio.get_running_loop()
        self.listeners = list(worker.listeners)
        self.limit = max(1, worker.settings.worker_connections)
        self.accepting = False
        self.opening = 0  # accepted, TLS handshake or connection_made still to come
        self.retry: asyncio.TimerHandle | None = None  # accepting again after EMFILE
        # The context the worker started with: connections are opened in copies of it.
        self.clean = contextvars.copy_context()
        # The standard library's loop keeps an epoll object under its selector; uvloop's
        # loop does not expose one, and then each listener wakes every worker.
        selector = getattr(self.loop, "_selector", None)
        epoll = getattr(selector, "_selector", None)
        self.epoll = epoll if isinstance(epoll, select.epoll) and _EXCLUSIVE else None

    @property
    def room(self) -> bool:
        return len(self.worker.protocols) + self.opening < self.limit

    def start(self) -> None:
        self.set_accepting(True)

    def set_accepting(self, on: bool) -> None:
        if on == self.accepting:
            return
        self.accepting = on
        for sock in self.listeners:
            fd = sock.fileno()
            if fd < 0:
                continue
            if on:
                # In the worker's own context: asyncio runs the callback in the context
                # current here, which may be a request's (a connection closing in its task).
                self.clean.run(self.loop.add_reader, fd, self.accept, sock)
                if self.epoll is not None:
                    self.make_exclusive(fd)
            else:
                self.loop.remove_reader(fd)

    def make_exclusive(self, fd: int) -> None:
        """Same events, one waiter woken per connection (the loop's selector keeps its own
        record of the fd, which this does not change). A kernel that refuses the flag gets
        the plain registration back, never none."""
        epoll = self.epoll
        assert epoll is not None
        try:
            epoll.unregister(fd)
            epoll.register(fd, select.EPOLLIN | _EXCLUSIVE)
        except OSError:
            self.epoll = None  # not again
            with contextlib.suppress(OSError):
                epoll.register(fd, select.EPOLLIN)

    def released(self) -> None:
        """A connection has closed: take new ones again if that made room."""
        if not self.accepting and self.worker.alive and self.room and self.retry is None:
            self.set_accepting(True)

    def retry_accepting(self) -> None:
        self.retry = None
        self.released()

    def accept(self, listener: socket.socket) -> None:
        for _ in range(_ACCEPT_BATCH):
            if not self.room:
                self.set_accepting(False)  # level-triggered: it would wake the loop for ever
                return
            if not self.accept_one(listener):
                return

    def accept_one(self, listener: socket.socket) -> bool:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # Out of descriptors or memory: the listener stays readable, so watching it
                # would spin. Look again in a moment (a connection closing also reopens).
                if self.retry is None:  # one retry, one line, however many connections close
                    log.warning("accept() failed: %s; accepting again in 0.5 s", exc)
                    self.retry = self.clean.run(self.loop.call_later, 0.5, self.retry_accepting)
                self.set_accepting(False)
            else:
                log.debug("accept() failed: %s", exc)
            return False
        sock.setblocking(False)
        self.opening += 1
        task = self.loop.create_task(self.open(sock))
        task.add_done_callback(self.opened)
        return True

    async def open(self, sock: socket.socket) -> None:
        tls = self.tls
        handshake = float(self.worker.timeout) if tls is not None else None
        # Closing a TLS connection waits for the client's close_notify at most this long
        # (asyncio's default, 30 s, would hold the slot and every graceful stop).
        shutdown: dict[str, float] = {}
        if tls is not None and sys.version_info >= (3, 11):
            shutdown["ssl_shutdown_timeout"] = min(5.0, float(self.worker.timeout))
        client: tuple[str, int] | None = None
        try:
            if self.proxy_first(sock):
                info = await self.read_proxy_header(sock)
                if info is None:
                    sock.close()
                    return
                if info.client_addr is not None:
                    client = (info.client_addr, int(info.client_port or 0))
            await self.loop.connect_accepted_socket(
                functools.partial(self.factory, client),
                sock,
                ssl=tls,
                ssl_handshake_timeout=handshake,
                **shutdown,
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
            log.debug("Connection not opened: %s", exc)
            sock.close()

    def proxy_first(self, sock: socket.socket) -> bool:
        """Whether this connection starts with a PROXY protocol header (a trusted proxy)."""
        if not self.worker.proxy_mode:
            return False
        try:
            peer = sock.getpeername()
        except OSError:
            return False
        return is_trusted(peer, self.worker.proxy_allow_ips)

    async def read_proxy_header(self, sock: socket.socket) -> ProxyInfo | None:
        """The PROXY protocol header a trusted proxy sends first, taken off the socket
        exactly (peeked, then received to its length), so that what follows, a TLS
        ClientHello included, is still in the kernel for the transport. None: closed."""
        deadline = self.loop.time() + self.worker.timeout
        seen = -1
        while True:
            try:
                data = sock.recv(V2_MAX_HEADER, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                data = None
            if data == b"":
                return None  # the proxy closed before sending anything
            if data is not None:
                try:
                    parsed = parse_proxy_header(data, self.worker.proxy_mode)
                except ProtocolError as exc:
                    peer = sock.getpeername()
                    where = peer[0] if isinstance(peer, tuple) else "a unix socket"
                    log.info("Closing connection from %s: %s", where, exc.reason)
                    return None
                if parsed is not None:
                    info, used = parsed
                    sock.recv(used)
                    return info
            if self.loop.time() > deadline:
                return None
            if data is None or len(data) == seen:
                await self.readable(sock, 0.05 if data else deadline - self.loop.time())
            seen = -1 if data is None else len(data)

    async def readable(self, sock: socket.socket, timeout: float) -> None:
        """Wait until the socket has (more) bytes, at most `timeout` seconds."""
        waiter: asyncio.Future[None] = self.loop.create_future()
        fd = sock.fileno()

        def ready() -> None:
            if not waiter.done():
                waiter.set_result(None)

        self.loop.add_reader(fd, ready)
        try:
            await asyncio.wait_for(waiter, max(timeout, 0.001))
        except asyncio.TimeoutError:
            pass
        finally:
            self.loop.remove_reader(fd)

    def opened(self, task: asyncio.Task[None]) -> None:
        self.opening -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("Cannot open a connection", exc_info=task.exception())
        self.released()

    def stop(self, take_queued: bool) -> None:
        """Stop accepting. When the whole server stops, this worker first takes what the
        kernel has queued (served with Connection: close) rather than resetting it."""
        self.set_accepting(False)
        for sock in self.listeners:
            if take_queued:
                for _ in range(self.limit):
                    if not self.accept_one(sock):
                        break
            sock.close()
