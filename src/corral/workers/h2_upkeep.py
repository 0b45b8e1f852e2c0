"""The loop's upkeep of HTTP/2 connections on the gthread worker: what threads report (a pull
done, body bytes read, write() output), the deadlines the sweep enforces, and the graceful stop.
Mixed into the worker with workers/h2_engine.py and workers/h2_output.py.

Deadlines, checked once a second: an idle connection (no stream) is closed with GOAWAY after
`keepalive`; a connection whose output the socket takes none of for `timeout` is closed; a
stream whose output waits on a closed window for `timeout`, or is still being delivered
`response_write_timeout` after it first had to wait, is reset (CANCEL); a body being collected
that makes no progress for `timeout` or outlasts `request_body_timeout` is answered 408; a
request running on a thread past `timeout` is reported and retires the worker, as on HTTP/1.1.

What this module must never do: let a failure on one connection reach the loop (it closes that
connection), or touch a stream a thread is running except through the notes.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from corral.adapters.response_h2 import RESET
from corral.workers.connection import Connection
from corral.workers.h2_output import H2Link
from corral.workers.h2_stream import CREDIT, PULLED, PUSHED, H2Stream, StreamHub

if TYPE_CHECKING:
    from corral.config import Settings

log = logging.getLogger("corral.error")

_CANCEL = 0x8


class H2Upkeep:
    """Mixed into the gthread worker (through H2Serving); the names below are the engine's."""

    settings: Settings
    alive: bool
    inline: bool
    in_flight: int
    timeout: float
    conns: dict[int, Connection]
    h2_hub: StreamHub

    if TYPE_CHECKING:

        def close(self, conn: Connection) -> None: ...
        def report_stuck(self, conn: Connection, now: float) -> None: ...
        def h2_service(self, conn: Connection, now: float) -> None: ...
        def h2_finish(self, conn: Connection, stream: H2Stream, now: float) -> None: ...
        def h2_close_exchange(self, stream: H2Stream) -> None: ...
        def h2_abort(self, conn: Connection, stream: H2Stream, now: float) -> None: ...
        def h2_refuse(self, stream: H2Stream, status: int) -> None: ...
        def h2_discard(self, conn: Connection, now: float) -> None: ...

    # ---- notes from threads ---------------------------------------------------------------------

    def h2_notes(self, now: float) -> None:
        """Take what threads reported (output pulled, body read, write() output) and serve
        each connection concerned once."""
        hub = self.h2_hub
        hub.woken = False
        notes = hub.notes
        dirty: dict[int, Connection] = {}
        for _ in range(len(notes)):
            stream, kind, value = notes.popleft()
            link: H2Link = stream.link
            if kind == PULLED and not self.inline:
                self.in_flight -= 1
            try:
                if kind == PULLED:
                    self.h2_pulled(stream, value[0], value[1], now)
                elif link.closed:
                    continue
                elif kind == CREDIT:  # even for a reset stream: the connection's window
                    link.session.consumed(stream.stream_id, value)
                elif stream.aborted:
                    continue
                elif kind == PUSHED:
                    stream.take_pushed()
            except Exception:
                self.h2_failed(link.conn)
                continue
            dirty[id(link)] = link.conn
        for conn in dirty.values():
            if conn.h2 is not None and not conn.h2.closed:
                try:
                    self.h2_service(conn, now)
                except Exception:
                    self.h2_failed(conn)

    def h2_failed(self, conn: Connection) -> None:
        """A bug met on this connection: it is closed (with its streams), the worker goes on."""
        log.exception("Unexpected error on the HTTP/2 connection from %s", conn.remote_addr)
        if conn.h2 is not None and not conn.h2.closed:
            self.close(conn)

    def h2_pulled(self, stream: H2Stream, items: list[Any], done: bool, now: float) -> None:
        stream.running = False
        stream.stuck = False
        link: H2Link = stream.link
        if done:
            stream.exchange = None
            stream.done = True
        if link.closed or stream.aborted:
            if link.closed:
                self.h2_close_exchange(stream)
            else:
                self.h2_finish(link.conn, stream, now)
            return
        stream.take_pushed()
        stream.add(items)
        if done and not stream.ending:
            # The response failed after its head, or the client went: never a clean end.
            stream.add([RESET])
        stream.progress = now

    # ---- deadlines and stopping ---------------------------------------------------------------

    def h2_sweep(self, conn: Connection, now: float) -> None:
        try:
            self.h2_deadlines(conn, now)
        except Exception:
            self.h2_failed(conn)

    def h2_deadlines(self, conn: Connection, now: float) -> None:
        link: H2Link = conn.h2
        if link.linger:
            self.h2_discard(conn, now)
            return
        session = link.session
        timeout = self.timeout
        if link.blocked and now - link.blocked > timeout:
            log.debug("Closing HTTP/2 connection from %s: it reads nothing", conn.remote_addr)
            self.close(conn)
            return
        if not link.streams:
            keepalive = float(self.settings.keepalive) if self.alive else 0.0
            if now - link.idle_since >= keepalive:
                session.close()
                self.h2_service(conn, now)
            return
        write_limit = self.settings.response_write_timeout
        for stream in list(link.streams.values()):
            if stream.buffer is not None:
                # A body being collected: `timeout` without progress, request_body_timeout
                # in total (as on HTTP/1.1).
                if now - stream.progress > timeout or 0 < stream.deadline < now:
                    self.h2_refuse(stream, 408)
                continue
            if stream.stalled and not stream.deadline and write_limit:
                # response_write_timeout bounds the delivery from when it first had to wait.
                stream.deadline = stream.stalled + write_limit
            if (stream.stalled and now - stream.stalled > timeout) or 0 < stream.deadline < now:
                log.debug("Resetting a stalled HTTP/2 stream from %s", conn.remote_addr)
                session.reset(stream.stream_id, _CANCEL)
                stream.reset_sent = True
                self.h2_abort(conn, stream, now)
            elif (
                stream.running
                and not stream.stuck
                and self.settings.timeout > 0
                and (0 < stream.started < now - timeout)
            ):
                self.h2_report_stuck(conn, stream, now)
        self.h2_service(conn, now)

    def h2_report_stuck(self, conn: Connection, stream: H2Stream, now: float) -> None:
        """As for HTTP/1.1 (engine.report_stuck): show where the thread is, then retire."""
        stream.stuck = True
        conn.thread, conn.started = stream.thread, stream.started
        self.report_stuck(conn, now)

    def h2_stuck_only(self, conn: Connection) -> bool:
        """Stopping: whether all that keeps this connection is streams stuck past `timeout`."""
        if conn.h2.linger:
            return True
        streams = conn.h2.streams
        return bool(streams) and all(stream.stuck for stream in streams.values())

    def h2_stop(self) -> None:
        """Graceful stop: GOAWAY on every HTTP/2 connection; idle ones close now."""
        now = time.monotonic()
        for conn in list(self.conns.values()):
            link = conn.h2
            if link is None or link.closed:
                continue
            if link.streams:
                link.session.drain()
            else:
                link.session.close()
            try:
                self.h2_service(conn, now)
            except Exception:
                self.h2_failed(conn)
