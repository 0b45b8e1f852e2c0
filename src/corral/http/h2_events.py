"""The events an HTTP/2 session (http/h2.py) hands its worker: what a connection's frames
came to, in the terms a worker acts on.

What this module must never do: depend on the h2 library (a worker names these events
without importing it).
"""

from __future__ import annotations

from corral.http.parser import Request


class StreamOpened:
    """A request head arrived: serve it. `protocol` is RFC 8441's :protocol, or None."""

    __slots__ = ("ended", "protocol", "request", "stream_id")

    def __init__(self, stream_id: int, request: Request, ended: bool, protocol: str | None) -> None:
        self.stream_id = stream_id
        self.request = request
        self.ended = ended
        self.protocol = protocol


class BodyData:
    """Body bytes for a stream; `flow` is what to pass to `consumed` once they are read."""

    __slots__ = ("data", "flow", "stream_id")

    def __init__(self, stream_id: int, data: bytes, flow: int) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow = flow


class BodyEnded:
    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamAborted:
    """The peer reset the stream (or broke its framing): stop producing its response."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class WindowOpened:
    """The peer granted more send window: on a stream, or (stream_id 0) on all of them."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


Event = StreamOpened | BodyData | BodyEnded | StreamAborted | WindowOpened
