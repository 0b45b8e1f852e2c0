"""`gthread`: keep-alive connections, and complete requests handed to `--threads` threads.

The engine's loop reads and parses every connection. A connection with a complete request is
handed to a thread through a queue; it sits in the epoll set with EPOLLONESHOT, so it stays
silent while the thread serves it (and any requests pipelined behind it), and the thread re-arms
it when the response has gone: no wake-up of the loop, no hand-back queue. With `--threads 1`
there is nothing to gain from a hand-off, so the application runs inline in the loop, like
`sync` but with keep-alive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import threading

from corral.config import Settings
from corral.errors import ProtocolError
from corral.http.parser import Request, parse_head
from corral.http.writer import error_response
from corral.workers.connection import Connection
from corral.workers.engine import Worker

log = logging.getLogger("corral.error")

Job = tuple[Connection, Request, bytes]


class ThreadWorker(Worker):
    keep_alive_allowed = True

    @staticmethod
    def multithread_for(settings: Settings) -> bool:
        return settings.threads > 1

    def init_process(self) -> None:
        self.multithread = self.settings.threads > 1
        if self.multithread:
            self.oneshot = True
            self.conn_events = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT
        super().init_process()
        if self.settings.keepalive <= 0:
            self.keep_alive_allowed = False
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self.run_thread, name=f"corral-{n}", daemon=True)
            for n in range(self.settings.threads if self.multithread else 0)
        ]
        for thread in self.threads:
            thread.start()

    def dispatch(self, conn: Connection, req: Request, pending: bytes) -> bytes | None:
        if not self.multithread:
            return super().dispatch(conn, req, pending)
        self.busy.add(conn)
        self.jobs.put((conn, req, pending))
        return None

    def run_thread(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self.work(*job)
            except Exception:
                log.exception("Unexpected error in a request thread")

    def work(self, conn: Connection, req: Request, pending: bytes) -> None:
        rest: bytes | None = None
        try:
            rest = self.handle(conn, req, pending)
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
            self.release(conn, rest)

    def release(self, conn: Connection, rest: bytes | None) -> None:
        """Back to the loop: re-armed for its next request, or closed."""
        fd = conn.fd
        if rest is not None:
            # Even while stopping, a kept-alive connection stays until its client sends again
            # (answered with Connection: close) or it idles out: closing it now could reset a
            # request already on its way.
            conn.buf = rest
            try:
                self.arm(conn)  # before leaving `busy`: the loop must not arm it too
                self.busy.discard(conn)
                return
            except OSError:
                pass
        self.conns.pop(fd, None)
        self.busy.discard(conn)
        conn.close()
        if not self.alive:
            # Stopping: the loop waits for the last connection to go; tell it now rather than
            # at its next turn.
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"\0")

    def finish(self) -> None:
        # Past this point nothing is in flight, or graceful_timeout has run out: threads still
        # busy end with the process.
        for _ in self.threads:
            self.jobs.put(None)
