"""HTTP/2 (RFC 9113): one connection's protocol state, sans-IO, on the h2 library.

`H2Session` wraps an `h2.connection.H2Connection` with corral's limits and turns its events into
the few the workers act on: a stream opened with a `Request` (built by http/h2_request.py under
the same header policy and limits as HTTP/1.1), body data, the end of a body, a stream the peer
reset, a window that opened, and the connection ending. Bytes go in through `receive` and come
out of `output`; the worker does every read and write.

What the session decides itself, so that every worker family gets it the same:
- Concurrency counts the streams whose handler has not finished (`finished`), not the streams
  the protocol still considers open: a stream the peer resets keeps its place until its handler
  is done, so resetting streams (CVE-2023-44487, "rapid reset") never buys more concurrent work
  than `http2_max_concurrent_streams`. A stream over the limit is refused (REFUSED_STREAM).
- Peers that make the server work without asking for anything (resets of running streams,
  refused streams, PING, SETTINGS, PRIORITY, empty DATA frames, unknown frames) spend a budget
  that refills over time; a peer that exhausts it gets GOAWAY ENHANCE_YOUR_CALM.
- A request that breaks a limit or the header policy is answered on its stream (400, 414, 431)
  and the connection goes on; a malformed one (RFC 9113 §8.1.1) has its stream reset with
  PROTOCOL_ERROR; a protocol error ends the connection with GOAWAY.
- Request bodies are credited back to the peer only when the worker says they were consumed
  (`consumed`), so a slow application cannot make the server buffer without bound: at most a
  stream window per stream and the connection window per connection.

What this module must never do: read or write a socket, wait, or call the application.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h2.events as h2e
from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.exceptions import FlowControlError, StreamClosedError
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from corral.errors import ProtocolError
from corral.http.h2_connection import ServerConnection, rfc_error_code
from corral.http.h2_events import (
    BodyData,
    BodyEnded,
    Event,
    StreamAborted,
    StreamOpened,
    WindowOpened,
)
from corral.http.h2_request import MalformedRequest, build_request, check_trailers
from corral.http.parser import Limits
from corral.http.writer import REASONS

# RFC 9113 §3.4: what a client sends first on a connection that starts in HTTP/2.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# The connection's receive window: every stream can still send while a few others have
# filled their windows with data their applications have not read yet.
CONNECTION_WINDOW = 1 << 20
# Budgets: how many such frames a peer may send in a burst, and how many per second after.
FLOOD_BURST, FLOOD_RATE = 1000.0, 100.0
RESET_RATE_SECONDS = 10.0
_MAX_WINDOW = 2**31 - 1
# With http2_initial_window_size 0, what a stream is granted once its request is in.
ZERO_WINDOW_GRANT = 16384

__all__ = [
    "CONNECTION_WINDOW",
    "PREFACE",
    "BodyData",
    "BodyEnded",
    "Budget",
    "Event",
    "H2Limits",
    "H2Session",
    "StreamAborted",
    "StreamOpened",
    "WindowOpened",
]


@dataclass(frozen=True, slots=True)
class H2Limits:
    """The HTTP/2 settings (Gunicorn's names) and the request limits streams are held to."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 65535
    max_frame_size: int = 16384
    max_header_list_size: int = 65536
    connect_protocol: bool = False  # RFC 8441 extended CONNECT (WebSocket over HTTP/2)
    request: Limits = Limits()  # noqa: RUF009 (immutable)


class Budget:
    """A leaky bucket: `spend` says whether the peer is still within `burst` after paying."""

    __slots__ = ("at", "burst", "level", "rate")

    def __init__(self, burst: float, rate: float) -> None:
        self.burst = burst
        self.rate = rate
        self.level = 0.0
        self.at = 0.0

    def spend(self, now: float, cost: float = 1.0) -> bool:
        level = max(0.0, self.level - (now - self.at) * self.rate) + cost
        self.level, self.at = level, now
        return level <= self.burst


# --- the session -----------------------------------------------------------------------------


class H2Session:
    """One HTTP/2 connection, server side. Everything here runs in the worker's loop."""

    def __init__(self, limits: H2Limits, now: float = 0.0) -> None:
        self.limits = limits
        config = H2Configuration(
            client_side=False,
            header_encoding=None,
            # h2_request checks request fields: a malformed request is a stream error (RFC
            # 9113 §8.1.1), where h2's own check would end the whole connection.
            validate_inbound_headers=False,
            validate_outbound_headers=False,  # the adapters validated them already
            normalize_outbound_headers=False,
        )
        conn = ServerConnection(config)
        initial = {
            SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
            SettingCodes.ENABLE_PUSH: 0,
        }
        if limits.initial_window_size >= 65535:
            # Larger than the default is in force at once (the peer cannot send more than the
            # default before it reads our SETTINGS); smaller waits for the acknowledgement.
            initial[SettingCodes.INITIAL_WINDOW_SIZE] = limits.initial_window_size
        if limits.connect_protocol:
            initial[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        conn.local_settings = Settings(client=False, initial_values=initial)
        conn.max_inbound_frame_size = limits.max_frame_size
        conn.decoder.max_header_list_size = limits.max_header_list_size
        self.conn = conn
        self.active: set[int] = set()  # streams whose handler has not finished
        self.receiving: set[int] = set()  # active streams whose request body is still coming
        self.unread: dict[int, int] = {}  # flow-controlled bytes received, not yet consumed
        self.ended = False  # GOAWAY sent or received: nothing new will start
        self.error = ""  # why the connection ended, for the log
        self.last_stream_id = 0  # after our graceful GOAWAY: streams above it are refused
        self.draining = False
        self.flood = Budget(FLOOD_BURST, FLOOD_RATE)
        burst = max(100.0, 2.0 * limits.max_concurrent_streams)
        self.resets = Budget(burst, burst / RESET_RATE_SECONDS)
        self.pending_output = bytearray()
        # No header list within the limit needs more encoded bytes than this: HPACK spends
        # fewer bytes on a field than the 32 it adds to the list size (RFC 7541 §4.1).
        self.header_block_cap = limits.max_header_list_size + 16384

    # ---- starting ---------------------------------------------------------------------------

    def start(self, upgrade_settings: bytes | None = None) -> None:
        """Queue the server preface. With `upgrade_settings` (an HTTP/1.1 `Upgrade: h2c`
        request's HTTP2-Settings), stream 1 is that request, half-closed by the peer."""
        conn = self.conn
        if upgrade_settings is None:
            conn.initiate_connection()
        else:
            conn.initiate_upgrade_connection(upgrade_settings)
            self.active.add(1)
        if self.limits.initial_window_size < 65535:  # 0 included: announced, not assumed
            conn.update_settings(
                {SettingCodes.INITIAL_WINDOW_SIZE: self.limits.initial_window_size}
            )
        extra = max(CONNECTION_WINDOW, self.limits.initial_window_size) - 65535
        if extra > 0:
            conn.increment_flow_control_window(min(extra, _MAX_WINDOW - 65535))

    # ---- input ------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; the events the worker must act on, in order."""
        if self.ended:
            return []
        try:
            events = self.conn.receive_data(data)
        except H2ProtocolError as exc:
            # h2 has queued a GOAWAY already; a few of its codes are not the RFC's.
            if (code := rfc_error_code(exc)) is not None:
                self.recode_goaway(code)
            why = str(exc)
            self.fail(why if why and not why.isdigit() else f"{type(exc).__name__} {why}")
            return []
        if self.conn.header_block_size() > self.header_block_cap:
            # RFC 9113 §6.10 puts no bound on a header block's CONTINUATION frames: without
            # this one, a peer could make the server hold them until h2 counts 64 frames
            # (64 x 16 MiB at the largest frame size) before anything is decoded.
            self.calm("header block too large")
            return []
        out: list[Event] = []
        for event in events:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event, now, out)
            elif not self.flood.spend(now):
                self.calm("too many control frames")
            if self.ended:
                break
        for stream_id in self.receiving:
            self.keep_open(stream_id)
        return out

    def on_request(self, event: h2e.RequestReceived, now: float, out: list[Event]) -> None:
        stream_id = event.stream_id
        if self.draining and stream_id > self.last_stream_id:
            self.refuse(stream_id, now)
            return
        limit = self.limits.max_concurrent_streams
        if len(self.active) >= limit or self.conn.inbound_streams(stream_id) > limit:
            # RFC 9113 §5.1.2: a stream over the advertised limit is a stream error; the
            # others go on (h2 would end the whole connection: see h2_connection.py).
            self.refuse(stream_id, now)
            return
        try:
            request, protocol = build_request(
                event.headers or [], self.limits.request, self.limits.connect_protocol
            )
        except MalformedRequest:
            self.malformed(stream_id, now)
            return
        except ProtocolError as exc:
            self.answer_error(stream_id, exc.status)
            if event.stream_ended is None:
                self.reset(stream_id, ErrorCodes.NO_ERROR)  # RFC 9113 §8.1: stop its body
            return
        self.active.add(stream_id)
        if event.stream_ended is None:
            self.receiving.add(stream_id)
        out.append(StreamOpened(stream_id, request, event.stream_ended is not None, protocol))

    def on_data(self, event: h2e.DataReceived, now: float, out: list[Event]) -> None:
        stream_id = event.stream_id
        flow = event.flow_controlled_length or 0
        data = event.data or b""
        if stream_id not in self.active:
            self.consumed(stream_id, flow)  # a stream we refused or answered: drop its body
            return
        if not data and event.stream_ended is None and not self.flood.spend(now):
            self.calm("too many empty DATA frames")
            return
        self.unread[stream_id] = self.unread.get(stream_id, 0) + flow
        out.append(BodyData(stream_id, data, flow))

    def on_end(self, event: h2e.StreamEnded, now: float, out: list[Event]) -> None:
        self.receiving.discard(event.stream_id)
        if event.stream_id in self.active:
            out.append(BodyEnded(event.stream_id))

    def on_reset(self, event: h2e.StreamReset, now: float, out: list[Event]) -> None:
        stream_id = event.stream_id
        self.receiving.discard(stream_id)
        if stream_id in self.active:
            out.append(StreamAborted(stream_id))
            if event.remote_reset and not self.resets.spend(now):
                self.calm("too many streams reset")

    def on_window(self, event: h2e.WindowUpdated, now: float, out: list[Event]) -> None:
        out.append(WindowOpened(event.stream_id or 0))

    def on_settings(self, event: h2e.RemoteSettingsChanged, now: float, out: list[Event]) -> None:
        if not self.flood.spend(now):
            self.calm("too many SETTINGS frames")
        elif SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            out.append(WindowOpened(0))

    def on_terminated(self, event: h2e.ConnectionTerminated, now: float, out: list[Event]) -> None:
        # The peer's GOAWAY. h2 lets nothing more be sent after it, so the streams end here.
        code = event.error_code
        self.error = "" if code in (0, ErrorCodes.NO_ERROR) else f"peer sent GOAWAY ({code!s})"
        self.ended = True
        out.extend(StreamAborted(stream_id) for stream_id in sorted(self.active))

    def on_trailers(self, event: h2e.TrailersReceived, now: float, out: list[Event]) -> None:
        """Request trailers are checked, not passed on (no interface takes them yet)."""
        try:
            check_trailers(event.headers or [])
        except ProtocolError:
            if event.stream_id in self.active:
                out.append(StreamAborted(event.stream_id))
            self.malformed(event.stream_id, now)

    def on_ignored(self, event: object, now: float, out: list[Event]) -> None:
        """Frames that need no action (trailers of a request body, acknowledgements)."""

    # ---- output -----------------------------------------------------------------------------

    def output(self) -> bytes:
        """Bytes to send to the peer, in order (b"" when there are none)."""
        data = self.conn.data_to_send()
        if self.pending_output:
            data, self.pending_output = bytes(self.pending_output) + data, bytearray()
        return data

    def respond(
        self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]], end: bool
    ) -> bool:
        """Send a response head (header names lower case, no connection-specific fields).
        False when the stream is gone (the peer reset it)."""
        fields = [(b":status", b"%d" % status), *headers]
        try:
            self.conn.send_headers(stream_id, fields, end_stream=end)
        except (StreamClosedError, H2ProtocolError):
            return False
        return True

    def window(self, stream_id: int) -> int:
        """How many body bytes the peer takes on this stream now; 0 also when it is gone."""
        try:
            return self.conn.local_flow_control_window(stream_id)
        except (StreamClosedError, H2ProtocolError):
            return 0

    def send_body(self, stream_id: int, data: bytes | memoryview, end: bool) -> int:
        """Send as much of `data` as the peer's windows allow, in frames it accepts; the
        number of bytes taken (END_STREAM goes with the last of them when `end`). -1 when
        the stream is gone."""
        conn = self.conn
        size = len(data)
        taken = 0
        stream = conn.streams.get(stream_id)
        if stream is None or stream.closed:
            return -1  # reset by either side (h2 would take a closed stream's window as 0)
        try:
            room = conn.local_flow_control_window(stream_id)
            frame = conn.max_outbound_frame_size
            while taken < size and room > 0:
                n = min(size - taken, room, frame)
                last = end and taken + n == size
                conn.send_data(stream_id, data[taken : taken + n], end_stream=last)
                taken += n
                room -= n
            if end and size == 0:
                conn.end_stream(stream_id)
        except (StreamClosedError, FlowControlError, H2ProtocolError):
            return -1
        return taken

    def send_trailers(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> bool:
        try:
            self.conn.send_headers(stream_id, headers, end_stream=True)
        except (StreamClosedError, H2ProtocolError):
            return False
        return True

    def reset(self, stream_id: int, code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        """End a stream abruptly (a response that failed half way, a cancelled handler)."""
        with contextlib.suppress(StreamClosedError, H2ProtocolError):
            self.conn.reset_stream(stream_id, code)

    def consumed(self, stream_id: int, flow: int) -> None:
        """Body bytes were read by the application: let the peer send as many again."""
        if flow <= 0 or self.ended:
            return
        if stream_id in self.unread:
            self.unread[stream_id] = max(0, self.unread[stream_id] - flow)
        with contextlib.suppress(StreamClosedError, H2ProtocolError):
            self.conn.acknowledge_received_data(flow, stream_id)
        if stream_id in self.receiving:
            self.keep_open(stream_id)

    def keep_open(self, stream_id: int) -> None:
        """Reopen a stream whose body is still coming, whose window is shut and of which
        nothing is left to read: else the upload would wait for ever. That happens when a
        smaller http2_initial_window_size applies to bytes the client sent before it knew
        (RFC 9113 §6.9.2: the window goes below zero, and h2 credits only past half a
        window), and with a window of 0, which opens a frame's worth once the request is in."""
        if self.unread.get(stream_id) or self.ended:
            return
        stream = self.conn.streams.get(stream_id)
        if stream is None or not stream.open:
            return
        window = stream.inbound_flow_control_window
        if window <= 0:
            target = self.limits.initial_window_size or ZERO_WINDOW_GRANT
            with contextlib.suppress(StreamClosedError, H2ProtocolError):
                self.conn.increment_flow_control_window(target - window, stream_id)

    def finished(self, stream_id: int) -> None:
        """The stream's handler is done: its place counts no more against the limit."""
        self.active.discard(stream_id)
        self.receiving.discard(stream_id)
        self.unread.pop(stream_id, None)

    # ---- refusing and ending ----------------------------------------------------------------

    def refuse(self, stream_id: int, now: float) -> None:
        self.reset(stream_id, ErrorCodes.REFUSED_STREAM)
        if not self.resets.spend(now):
            self.calm("too many streams over the concurrency limit")

    def malformed(self, stream_id: int, now: float) -> None:
        """RFC 9113 §8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR.
        Such resets cost the peer's budget as refusals do."""
        self.reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
        if not self.resets.spend(now):
            self.calm("too many malformed requests")

    def answer_error(self, stream_id: int, status: int) -> None:
        """A bad request on an otherwise sound connection: its status, on its stream."""
        body = f"{status} {REASONS.get(status, 'Error')}\n".encode()
        if self.window(stream_id) < len(body):
            # No room for the text (a client that opened with a zero window): the status
            # alone, so that the stream still ends.
            self.respond(stream_id, status, [(b"content-length", b"0")], end=True)
            return
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        if self.respond(stream_id, status, headers, end=False):
            self.send_body(stream_id, body, end=True)

    def recode_goaway(self, code: int) -> None:
        """Replace the error code of the GOAWAY h2 has just queued (its last frame)."""
        data = self.conn.data_to_send()
        head = 9 + 8  # a GOAWAY without debug data, as h2 sends it
        last_stream_id = self.conn.highest_inbound_stream_id
        if len(data) >= head and data[-head + 3] == GoAwayFrame.type:
            last_stream_id = int.from_bytes(data[-8:-4], "big") & _MAX_WINDOW
            data = data[:-head]
        frame = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=code)
        self.pending_output += data + frame.serialize()

    def calm(self, why: str) -> None:
        self.close(ErrorCodes.ENHANCE_YOUR_CALM, why)

    def fail(self, why: str) -> None:
        self.ended = True
        self.error = why

    def close(self, code: int = ErrorCodes.NO_ERROR, why: str = "") -> None:
        """End the connection now with GOAWAY: open streams get no more frames."""
        if not self.ended:
            with contextlib.suppress(H2ProtocolError):
                self.conn.close_connection(code, last_stream_id=self.conn.highest_inbound_stream_id)
        self.fail(why)

    def drain(self) -> None:
        """Graceful shutdown (RFC 9113 §6.8): announce that no new stream will be served,
        and go on serving the ones already open; `close` once they are done."""
        if self.draining or self.ended:
            return
        self.draining = True
        self.last_stream_id = self.conn.highest_inbound_stream_id
        # Sent beside h2's state machine, which would refuse every frame after its own GOAWAY.
        frame = GoAwayFrame(0, last_stream_id=self.last_stream_id, error_code=0)
        self.pending_output += self.conn.data_to_send() + frame.serialize()

    @property
    def idle(self) -> bool:
        return not self.active


_HANDLERS: dict[type, Callable[[H2Session, Any, float, list[Event]], None]] = {
    h2e.RequestReceived: H2Session.on_request,
    h2e.DataReceived: H2Session.on_data,
    h2e.StreamEnded: H2Session.on_end,
    h2e.StreamReset: H2Session.on_reset,
    h2e.WindowUpdated: H2Session.on_window,
    h2e.RemoteSettingsChanged: H2Session.on_settings,
    h2e.ConnectionTerminated: H2Session.on_terminated,
    h2e.TrailersReceived: H2Session.on_trailers,
    h2e.SettingsAcknowledged: H2Session.on_ignored,
    h2e.PingAckReceived: H2Session.on_ignored,
}
