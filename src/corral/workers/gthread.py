"""`gthread`: keep-alive connections, and requests served by `--threads` threads.

The engine's loop reads, parses and receives bodies for every connection. A complete request
goes to a thread through a queue; the thread runs the application and writes the response
until it is done or the socket is full, then hands the connection back through a completion
queue and wakes the loop (one pipe write, as Gunicorn's gthread does). The
loop alone re-arms, parks or closes it. A worker takes new connections only while it has a
free thread, so a burst spreads over the workers instead of queueing behind busy threads.

With `--threads 1` there is nothing to gain from a hand-off, so the application runs inline in
the loop, like `sync` but with keep-alive.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import threading
import time

from corral.config import Settings
from corral.workers.connection import QUEUED, SERVING, Connection
from corral.workers.engine import Worker
from corral.workers.lifecycle import drain_pipe
from corral.workers.writing import CLOSE

log = logging.getLogger("corral.error")


class ThreadWorker(Worker):
    keep_alive_allowed = True

    @staticmethod
    def multithread_for(settings: Settings) -> bool:
        return settings.threads > 1

    def init_process(self) -> None:
        self.multithread = self.settings.threads > 1
        self.oneshot = self.multithread
        super().init_process()
        if self.settings.keepalive <= 0:
            self.keep_alive_allowed = False
        self.jobs: queue.SimpleQueue[Connection | None] = queue.SimpleQueue()
        # (connection, outcome) handed back by threads; only the loop pops.
        self.completed: collections.deque[tuple[Connection, int]] = collections.deque()
        if self.multithread:
            self.capacity = self.settings.threads
            self.execute = self.execute_in_pool  # type: ignore[method-assign]
            self.inline = False
            # The loop learns of completions through the wake-up pipe it already watches.
            self.fd_handlers[self.wake_r] = self.on_wake
        self.threads = [
            threading.Thread(target=self.run_thread, name=f"corral-{n}", daemon=True)
            for n in range(self.settings.threads if self.multithread else 0)
        ]
        for thread in self.threads:
            thread.start()

    def execute_in_pool(self, conn: Connection) -> None:
        conn.state = QUEUED
        self.in_flight += 1
        self.jobs.put(conn)

    def run_thread(self) -> None:
        jobs = self.jobs
        completed = self.completed
        while True:
            conn = jobs.get()
            if conn is None:
                return
            # The connection is this thread's until it is handed back below.
            conn.thread = threading.get_ident()
            conn.started = time.monotonic()
            conn.state = SERVING
            try:
                outcome = conn.context.run(self.pump, conn)
            except BaseException:
                log.exception("Unexpected error in a request thread")
                outcome = CLOSE
            completed.append((conn, outcome))
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"\0")

    def on_wake(self) -> None:
        drain_pipe(self.wake_r)
        self.after_events()

    def after_events(self) -> None:
        completed = self.completed
        if not completed:
            return
        now = time.monotonic()
        while True:
            try:
                conn, outcome = completed.popleft()
            except IndexError:
                break
            self.in_flight -= 1
            try:
                self.settle(conn, outcome, now)
            except Exception:
                log.exception("Unexpected error on the connection from %s", conn.remote_addr)
                self.abandon(conn)

    def drained(self) -> bool:
        self.after_events()
        return super().drained()

    def finish(self) -> None:
        # Past this point nothing is in flight, or graceful_timeout has run out: threads still
        # busy end with the process.
        # Requests still queued are not started: their connections are closing.
        with contextlib.suppress(queue.Empty):
            while True:
                self.jobs.get_nowait()
        for _ in self.threads:
            self.jobs.put(None)
