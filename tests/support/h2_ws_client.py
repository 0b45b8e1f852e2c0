"""A WebSocket client over HTTP/2 (RFC 8441) on the h2 client: the extended CONNECT, then
RFC 6455 frames, masked as a client's must be, in DATA frames.

What this module must never do: accept a frame a server may not send (masked, RSV2/RSV3 set)
without failing the test.
"""

from __future__ import annotations

from support.h2_sync_client import H2Client

MASK = b"\x37\xfa\x21\x3d"


def ws_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """A final client frame, masked as RFC 6455 §5.3 requires of clients (RSV1: compressed)."""
    size = len(payload)
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    if size < 126:
        head = bytes([first, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([first, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + size.to_bytes(8, "big")
    key = (MASK * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return head + MASK + masked


class WebSocketOverH2:
    """One RFC 8441 WebSocket: frames go out in DATA on `stream_id`, come back in DATA."""

    def __init__(self, client: H2Client, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.buf = b""
        self.rsv1 = False

    def send(self, opcode: int, payload: bytes, rsv1: bool = False) -> None:
        frame = ws_frame(opcode, payload, rsv1)
        self.client.send_body(self.stream_id, frame, end=False)

    def receive(self) -> tuple[int, bytes]:
        """The next server frame (final and unmasked, as a server's must be); `rsv1` says
        whether it was compressed (RFC 7692)."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            stream = self.client.streams[self.stream_id]
            assert not stream.ended, f"stream ended (reset {stream.reset}) before a frame"
            self.buf += self.client.wait_data(self.stream_id, 1)

    def _parse(self) -> tuple[int, bytes] | None:
        if len(self.buf) < 2:
            return None
        first, second = self.buf[0], self.buf[1]
        assert second & 0x80 == 0, "a server frame must not be masked (RFC 6455 §5.1)"
        size, offset = second & 0x7F, 2
        if size in (126, 127):
            width = 2 if size == 126 else 8
            if len(self.buf) < 2 + width:
                return None
            size, offset = int.from_bytes(self.buf[2 : 2 + width], "big"), 2 + width
        if len(self.buf) < offset + size:
            return None
        assert first & 0x80, "the app sends whole messages: every frame is final"
        assert first & 0x30 == 0, "RSV2 and RSV3 are never set (RFC 6455 §5.2)"
        self.rsv1 = bool(first & 0x40)
        payload, self.buf = self.buf[offset : offset + size], self.buf[offset + size :]
        return first & 0x0F, payload


def open_websocket(
    client: H2Client, path: str = "/ws", extra: list[tuple[str, str]] | None = None
) -> WebSocketOverH2:
    head = [(":protocol", "websocket"), ("sec-websocket-version", "13"), *(extra or [])]
    stream_id = client.open("CONNECT", path, head, end=False)
    assert client.wait_headers(stream_id).status == 200
    return WebSocketOverH2(client, stream_id)
