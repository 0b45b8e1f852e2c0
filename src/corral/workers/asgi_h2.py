"""An HTTP/2 connection of the `asgi` worker: `H2Session`'s events in, streams run as tasks.

`HttpProtocol` (workers/asgi_http.py) hands a connection to `Http2Connection` once it speaks
HTTP/2 (ALPN h2, the cleartext preface, or an accepted `Upgrade: h2c`); the transport and its
write backpressure stay the protocol's. Each request stream runs the application as its own
task (workers/asgi_h2_stream.py; extended CONNECT WebSockets in asgi_h2_websocket.py), started
like an HTTP/1.1 request's task: in a fresh copy of the connection's first context, eagerly on
Python 3.12+. The session's output is written after each batch of frames read and after the
streams' sends (batched to once per loop turn for small ones).

Reading stops while the transport is above its high-water mark: a peer that does not read
cannot make the server queue control-frame answers (PING and SETTINGS acknowledgements)
without bound. Request bodies need no such pause: flow control (credited as the application
reads) bounds them.

What this module must never do: parse frames itself (the session does), call the application
outside a stream's task, or keep a connection whose session has ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from corral.adapters.asgi import ClientGone
from corral.errors import ProtocolError
from corral.http.h2 import (
    BodyData,
    BodyEnded,
    H2Session,
    StreamAborted,
    StreamOpened,
    WindowOpened,
)
from corral.http.parser import Request
from corral.workers.asgi_h2_stream import H2Stream, answer_error
from corral.workers.asgi_request import connection_scope, request_began, request_ended

if TYPE_CHECKING:
    from corral.workers.asgi_h2_websocket import H2WebSocket
    from corral.workers.asgi_http import HttpProtocol

log = logging.getLogger("corral.error")

# A complete response to a request whose body is still coming: the rest of the body is taken
# (and dropped) up to this much within `timeout`, so that clients that send the whole body
# before they read the response (curl, httpx) get it; past that the body is stopped with
# RST_STREAM NO_ERROR (RFC 9113 §8.1).
LINGER_BYTES = 1 << 20

# The HTTP/1.1 fields of an `Upgrade: h2c` request that were about the switch, not the request.
_UPGRADE_FIELDS = frozenset({"UPGRADE", "CONNECTION", "HTTP2-SETTINGS"})


def join_cookies(req: Request) -> Request:
    """RFC 9113 §8.2.3: a client may split Cookie into several fields to compress them
    better; an application (as an HTTP/1.1 hop would) gets them as one, joined with "; "."""
    cookies = "; ".join(value for name, value in req.headers if name == "COOKIE")
    headers = [(name, value) for name, value in req.headers if name != "COOKIE"]
    headers.append(("COOKIE", cookies))
    return replace(req, headers=headers)


class Http2Connection:
    """One HTTP/2 connection: the session, its streams, and the connection's deadlines."""

    def __init__(self, conn: HttpProtocol) -> None:
        self.conn = conn
        self.worker = conn.worker
        limits = self.worker.h2_limits
        assert limits is not None
        self.session = H2Session(limits, time.monotonic())
        self.streams: dict[int, H2Stream | H2WebSocket] = {}
        self.flush_due = False
        self.idle_deadline = 0.0
        self.closed = False
        self.retiring = False  # the worker hit max_requests: drain once the streams are done
        # Streams answered whose request body is still coming: (bytes still taken, since).
        self.lingering: dict[int, tuple[int, float]] = {}

    # --- starting ------------------------------------------------------------------------

    def start(self, upgrade: tuple[bytes, Request] | None = None) -> None:
        """Send the server preface; after an `Upgrade: h2c`, serve its request as stream 1."""
        if upgrade is None:
            self.session.start()
        else:
            settings, req = upgrade
            self.session.start(upgrade_settings=settings)
            headers = [(name, value) for name, value in req.headers if name not in _UPGRADE_FIELDS]
            self.open_stream(
                StreamOpened(1, replace(req, version="HTTP/2", headers=headers), True, None)
            )
        self.flush()
        self.arm_idle()

    # --- input -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        session = self.session
        for event in session.receive(data, time.monotonic()):
            _DISPATCH[type(event)](self, event)
        self.flush()
        if session.ended:
            self.end()
        elif not self.conn.can_write.is_set():
            self.conn.pause()  # resumed by resume_writing once the peer has read

    def open_stream(self, event: StreamOpened) -> None:
        worker = self.worker
        stream_id = event.stream_id
        req = event.request
        self.idle_deadline = 0.0
        if req.path == worker.health_path and event.protocol is None:
            self.answer(stream_id, 200 if worker.alive else 503, event.ended)
            return
        if not worker.count_request():
            self.retiring = True
            self.session.drain()  # this stream is the last one served here
        if event.protocol is not None:
            self.open_websocket(event)
            return
        limit = worker.settings.limit_request_body
        if limit and req.content_length is not None and req.content_length > limit:
            self.answer(stream_id, 413, event.ended)
            return
        if sum(name == "COOKIE" for name, _ in req.headers) > 1:
            req = join_cookies(req)
        stream = H2Stream(self, stream_id, req, event.ended)
        try:
            scope = connection_scope(self.conn, req, stream)
        except ProtocolError as exc:
            self.answer(stream_id, exc.status, event.ended)
            return
        self.streams[stream_id] = stream
        task = self.conn.start_task(self.run(stream, scope))
        if not task.done():
            stream.task = task

    def open_websocket(self, event: StreamOpened) -> None:
        from corral.workers.asgi_h2_websocket import H2WebSocket

        try:
            socket = H2WebSocket.open(self, event)
        except ProtocolError as exc:
            self.answer(event.stream_id, exc.status, event.ended)
            return
        self.streams[event.stream_id] = socket
        task = self.conn.start_task(socket.run())
        if not task.done():
            socket.task = task

    def answer(self, stream_id: int, status: int, ended: bool) -> None:
        """Answered by the worker itself (a refusal, or the health path): a short text body."""
        answer_error(self.session, stream_id, status)
        if not ended:
            self.session.reset(stream_id, ErrorCodes.NO_ERROR)  # RFC 9113 §8.1: stop the body
        self.session.finished(stream_id)
        self.after_stream()

    def on_data(self, event: BodyData) -> None:
        stream_id = event.stream_id
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.feed(event.data, event.flow)
            return
        self.session.consumed(stream_id, event.flow)
        linger = self.lingering.get(stream_id)
        if linger is not None:
            left = linger[0] - len(event.data)
            if left < 0:
                self.stop_lingering(stream_id, reset=True)
            else:
                self.lingering[stream_id] = (left, linger[1])

    def on_end(self, event: BodyEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.feed_end()
        elif event.stream_id in self.lingering:
            self.stop_lingering(event.stream_id, reset=False)

    def on_abort(self, event: StreamAborted) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.disconnected()
            self.cancel_after_grace(stream)
        elif event.stream_id in self.lingering:
            self.stop_lingering(event.stream_id, reset=False)

    def stop_lingering(self, stream_id: int, reset: bool) -> None:
        del self.lingering[stream_id]
        if reset:
            self.session.reset(stream_id, ErrorCodes.NO_ERROR)
        self.session.finished(stream_id)
        self.after_stream()
        self.flush_soon()

    def on_window(self, event: WindowOpened) -> None:
        if event.stream_id == 0:
            for stream in self.streams.values():
                stream.window_opened()
        elif (one := self.streams.get(event.stream_id)) is not None:
            one.window_opened()

    # --- running a stream --------------------------------------------------------------------

    async def run(self, stream: H2Stream, scope: dict[str, Any]) -> None:
        worker = self.worker
        if not worker.timed and worker.request_hooks is None:
            try:
                await self.run_app(stream, scope)
            finally:
                self.stream_done(stream)
            return
        began = request_began(self.conn, stream.req)
        try:
            await self.run_app(stream, scope)
        finally:
            self.stream_done(stream)
            request_ended(self.conn, stream.req, scope, stream, began)

    async def run_app(self, stream: H2Stream, scope: dict[str, Any]) -> None:
        req = stream.req
        try:
            await self.worker.asgi_app(scope, stream.receive, stream.send)
        except ClientGone:
            pass
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # one stream's failure stays its own
            if stream.client_gone:
                if not isinstance(exc, asyncio.CancelledError):
                    log.info(
                        "ASGI application %s %s ended after its client left: %r",
                        req.method,
                        req.target,
                        exc,
                    )
                return
            log.error("Exception in ASGI application %s %s", req.method, req.target, exc_info=exc)
            stream.error_answer(500)  # or, after the head, RST_STREAM INTERNAL_ERROR
            return
        stream.finish()

    def stream_done(self, stream: H2Stream | H2WebSocket) -> None:
        """A stream's task has ended: its place is free; stop a body nobody will read."""
        stream_id = stream.stream_id
        if self.streams.get(stream_id) is stream:
            del self.streams[stream_id]
        session = self.session
        stream.release()
        if stream.peer_ended or stream.client_gone:
            session.finished(stream_id)
        elif stream.ended and not self.closed:
            # Answered while the body still comes: take the rest of it, within bounds. The
            # stream keeps its place against the concurrency limit meanwhile.
            self.lingering[stream_id] = (LINGER_BYTES, time.monotonic())
        else:
            session.reset(stream_id, ErrorCodes.NO_ERROR)  # RFC 9113 §8.1
            session.finished(stream_id)
        if stream.grace is not None:
            stream.grace.cancel()
        self.after_stream()
        self.flush_soon()

    def after_stream(self) -> None:
        if self.streams or self.lingering:
            return
        if self.retiring or self.session.draining or not self.worker.alive:
            # Not at once: a task started eagerly (Python 3.12+) may end inside data_received,
            # before the read's later streams, which the GOAWAY promised, have been opened.
            self.conn.loop.call_soon(self.close_when_done)
        else:
            self.arm_idle()

    def close_when_done(self) -> None:
        if not self.streams and not self.lingering:
            self.close()

    def cancel_after_grace(self, stream: H2Stream | H2WebSocket) -> None:
        """The peer reset the stream: its task hears http.disconnect, and is cancelled
        `asgi_disconnect_grace_period` seconds later unless it ends first. Work after a
        complete response (background tasks) is left to end on its own."""
        task = stream.task
        if task is None or task.done() or stream.grace is not None or stream.ended:
            return
        grace = self.worker.settings.asgi_disconnect_grace_period
        stream.grace = self.conn.loop.call_later(grace, task.cancel)

    # --- output ----------------------------------------------------------------------------

    def flush(self) -> None:
        self.flush_due = False
        data = self.session.output()
        transport = self.conn.transport
        # Closing: after a failed send asyncio refuses (and logs) writes until connection_lost.
        if data and transport is not None and not transport.is_closing():
            self.conn.write(data)

    def flush_soon(self) -> None:
        """Write the session's output at the end of this loop turn: the streams that ran in
        it share one write."""
        if not self.flush_due:
            self.flush_due = True
            self.conn.loop.call_soon(self.flush_if_due)

    def flush_if_due(self) -> None:
        if self.flush_due:
            self.flush()

    # --- the end -----------------------------------------------------------------------------

    def close(self, code: int = ErrorCodes.NO_ERROR, why: str = "") -> None:
        """GOAWAY, then close the transport once it has flushed."""
        if self.closed:
            return
        self.closed = True
        self.session.close(code, why)
        self.flush()
        for stream in list(self.streams.values()):
            stream.disconnected()
            self.cancel_after_grace(stream)
        self.conn.close_transport()

    def end(self) -> None:
        """The session ended (a protocol error, a flood, or the peer's GOAWAY)."""
        if self.session.error:
            log.info("HTTP/2 connection from %s closed: %s", self.conn.client, self.session.error)
        self.close()

    def connection_lost(self) -> None:
        self.closed = True
        for stream in list(self.streams.values()):
            stream.disconnected()
            self.cancel_after_grace(stream)
            task = stream.task
            if task is not None and not task.done():
                orphans = self.worker.orphans
                orphans.add(task)
                task.add_done_callback(orphans.discard)

    def tasks(self) -> list[asyncio.Task[None]]:
        return [s.task for s in self.streams.values() if s.task is not None and not s.task.done()]

    # --- deadlines (from the worker's sweep) --------------------------------------------------

    def arm_idle(self) -> None:
        keepalive = float(self.worker.settings.keepalive)
        self.idle_deadline = time.monotonic() + max(keepalive, 0.001)

    def sweep(self, now: float) -> None:
        if self.idle_deadline and now >= self.idle_deadline and not self.streams:
            self.idle_deadline = 0.0
            self.close()
            return
        timeout = self.worker.timeout
        for stream_id, (_, since) in list(self.lingering.items()):
            if now - since > timeout:
                self.stop_lingering(stream_id, reset=True)
        for stream in list(self.streams.values()):
            if stream.body_wait_since and now - stream.body_wait_since > timeout:
                if not self.peer_may_send(stream.stream_id):
                    # Held back by windows the other streams' unread bodies fill: the
                    # application side is slow, not the client (HTTP/1.1 makes the same call).
                    stream.body_wait_since = now
                    continue
                # As HTTP/1.1 answers a body that stops coming: 408, the stream stopped.
                log.info(
                    "Ending stream %d from %s: no request body for %s seconds",
                    stream.stream_id,
                    self.conn.client,
                    timeout,
                )
                assert isinstance(stream, H2Stream)
                stream.refuse_body(408)
                self.cancel_after_grace(stream)
            elif stream.blocked_since and now - stream.blocked_since > timeout:
                # The peer opened no window for `timeout` seconds: the response is given up.
                log.info(
                    "Resetting stream %d from %s: no flow-control window",
                    stream.stream_id,
                    self.conn.client,
                )
                stream.reset(ErrorCodes.CANCEL)
                self.cancel_after_grace(stream)

    def peer_may_send(self, stream_id: int) -> bool:
        """Whether the client has window to send body bytes on the stream now."""
        conn = self.session.conn
        stream = conn.streams.get(stream_id)
        return (
            conn.inbound_flow_control_window > 0
            and stream is not None
            and stream.inbound_flow_control_window > 0
        )

    def wind_down(self) -> None:
        """The worker is stopping: GOAWAY with the last stream served; the open ones finish
        (within graceful_timeout), then the connection closes."""
        if not self.session.draining and not self.closed:
            for stream in self.streams.values():
                stream.going_away()
            self.session.drain()
            self.flush()
        if not self.streams and not self.lingering:
            self.close()

    def disconnect_streams(self) -> None:
        for stream in list(self.streams.values()):
            stream.disconnected()

    @property
    def state(self) -> str:
        return "serving" if self.streams else "idle"


_DISPATCH: dict[type, Any] = {
    StreamOpened: Http2Connection.open_stream,
    BodyData: Http2Connection.on_data,
    BodyEnded: Http2Connection.on_end,
    StreamAborted: Http2Connection.on_abort,
    WindowOpened: Http2Connection.on_window,
}
