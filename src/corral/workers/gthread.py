"""`gthread`: keep-alive connections, and requests served by `--threads` threads.

The engine's loop reads, parses and receives bodies for every connection. A complete request
goes to a thread through a queue; the thread runs the application and writes the response
until it is done or the socket is full, then hands the connection back through a completion
queue and wakes the loop (one pipe write, as Gunicorn's gthread does). The
loop alone re-arms, parks or closes it. A worker takes new connections only while it has a
free thread, so a burst spreads over the workers instead of queueing behind busy threads.

With `--threads 1` there is nothing to gain from a hand-off, so the application runs inline in
the loop, like `sync` but with keep-alive.

HTTP/2 (workers/h2_engine.py): the streams of a connection go to the same threads, each
stream's response pulled a piece at a time as the peer's window opens.
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
from corral.workers.h2_engine import H2Serving
from corral.workers.h2_setup import h2_enabled
from corral.workers.h2_stream import PULLED, H2Closing, H2Stream
from corral.workers.lifecycle import drain_pipe
from corral.workers.writing import CLOSE

log = logging.getLogger("corral.error")


class ThreadWorker(H2Serving, Worker):
    keep_alive_allowed = True
    h2_on = False

    @staticmethod
    def multithread_for(settings: Settings) -> bool:
        return settings.threads > 1

    def init_process(self) -> None:
        self.multithread = self.settings.threads > 1
        self.oneshot = self.multithread
        super().init_process()
        if self.settings.keepalive <= 0:
            self.keep_alive_allowed = False
        self.jobs: queue.SimpleQueue[Connection | H2Stream | H2Closing | None] = queue.SimpleQueue()
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
        if h2_enabled(self.settings):
            self.setup_h2()

    def setup_h2(self) -> None:
        s = self.settings
        self.h2_on = True
        self.h2_init(self.wake_w, self.tls is not None)
        self.h2_offload = not self.inline
        self.h2_alpn = self.tls is not None
        if self.tls is None and s.http2_cleartext != "off":
            self.h2c_prior = s.http2_cleartext in ("prior-knowledge", "both")
            self.h2c_prior_only = s.http2_cleartext == "prior-knowledge"
            self.h2c_upgrade = s.http2_cleartext in ("upgrade", "both")

    def h2_after_events(self) -> None:
        notes = self.h2_hub.notes
        for _ in range(8 if self.inline else 1):
            self.h2_notes(time.monotonic())
            if not notes:
                return
        if self.inline:  # responses still being produced: come back without waiting
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"\0")

    def submit_stream(self, stream: H2Stream) -> None:
        """Start (or go on with) an HTTP/2 stream's response: on a thread, or right here
        with --threads 1; the outcome comes back as a note either way."""
        if self.inline:
            self.pull_stream(stream)
        else:
            self.in_flight += 1
            self.jobs.put(stream)

    def submit_close(self, job: H2Closing) -> None:
        self.jobs.put(job)

    def pull_stream(self, stream: H2Stream) -> None:
        stream.thread = threading.get_ident()
        # From now on the pull counts against `timeout` (not while it waited for a thread).
        stream.started = time.monotonic()
        try:
            items, done = stream.context.run(stream.pull)
        except BaseException:
            log.exception("Unexpected error in a request thread")
            items, done = [], True
        self.h2_hub.post(stream, PULLED, (items, done))

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
            if isinstance(conn, H2Stream):
                self.pull_stream(conn)
                continue
            if isinstance(conn, H2Closing):
                conn.run()
                continue
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
        if self.h2_on and self.h2_hub.notes:
            self.h2_after_events()
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
        # An HTTP/2 connection is done with once every stream it still has is stuck: one
        # stuck stream must not cut the others of its connection short.
        return all(
            conn.stuck if conn.h2 is None else self.h2_stuck_only(conn)
            for conn in self.conns.values()
        )

    def finish(self) -> None:
        # Past this point nothing is in flight, or graceful_timeout has run out: threads still
        # busy end with the process.
        # Requests still queued are not started: their connections are closing. Closes of
        # HTTP/2 exchanges still queued run here (the application's close() and the access
        # log are owed), and from now on in the loop.
        self.h2_offload = False
        with contextlib.suppress(queue.Empty):
            while True:
                job = self.jobs.get_nowait()
                if isinstance(job, H2Closing):
                    job.run()
        for _ in self.threads:
            self.jobs.put(None)
