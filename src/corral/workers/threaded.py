"""`gthread`: keep-alive connections, and complete requests handed to `--threads` threads.

The engine's loop owns every idle connection; a connection with a complete request leaves the
loop for a thread, which serves it (and any requests pipelined behind it) and hands it back
through a queue and a wake-up pipe. With `--threads 1` there is nothing to gain from a hand-off,
so the application runs inline in the loop, like `sync` but with keep-alive.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
from concurrent.futures import ThreadPoolExecutor

from corral.errors import ProtocolError
from corral.http.parser import Request, parse_head
from corral.http.writer import error_response
from corral.workers.base import Worker, drain_pipe
from corral.workers.connection import Connection


class ThreadWorker(Worker):
    keep_alive_allowed = True

    def init_process(self) -> None:
        self.multithread = self.settings.threads > 1
        super().init_process()
        self.pool: ThreadPoolExecutor | None = None
        self.done: collections.deque[tuple[Connection, bytes | None]] = collections.deque()
        if self.multithread:
            self.pool = ThreadPoolExecutor(self.settings.threads, thread_name_prefix="corral")
            self.done_r, self.done_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self.watch(self.done_r, self.collect)
        if self.settings.keepalive <= 0:
            self.keep_alive_allowed = False

    def dispatch(self, conn: Connection, req: Request, pending: bytes) -> bytes | None:
        if self.pool is None:
            return super().dispatch(conn, req, pending)
        # The connection leaves the loop until its thread hands it back.
        self.conns.pop(conn.fd, None)
        with contextlib.suppress(FileNotFoundError):  # not registered yet: a new connection
            self.epoll.unregister(conn.fd)
        self.inflight += 1
        self.pool.submit(self.work, conn, req, pending)
        return None

    def work(self, conn: Connection, req: Request, pending: bytes) -> None:
        rest = self.handle(conn, req, pending)
        try:
            while rest:
                try:
                    parsed = parse_head(rest, self.limits)
                except ProtocolError as exc:
                    conn.send(error_response(exc.status))
                    rest = None
                    break
                if parsed is None:
                    break
                req, used = parsed
                rest = self.handle(conn, req, rest[used:])
        except OSError:
            rest = None
        finally:
            self.done.append((conn, rest))
            os.write(self.done_w, b"\0")

    def collect(self) -> None:
        """Take back connections from the threads (runs in the loop)."""
        drain_pipe(self.done_r)
        while self.done:
            conn, rest = self.done.popleft()
            self.inflight -= 1
            if rest is None:
                conn.close()
                continue
            # Even while stopping, a kept-alive connection stays until its client sends again
            # (answered with Connection: close) or it idles out: closing it now could reset a
            # request already on its way.
            conn.buf = rest
            self.conns[conn.fd] = conn
            self.epoll.register(conn.fd, select.EPOLLIN | select.EPOLLRDHUP)
            if rest:
                self.process(conn, rest)

    def finish(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
