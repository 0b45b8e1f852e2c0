"""A raw WebSocket client over a socket, for what a well-behaved client library never does:
compressed bombs, floods, silence in the face of pings."""

from __future__ import annotations

import base64
import os
import socket
import struct
import zlib

from support.client import connect, read_response


class RawWebSocket:
    """The client end after a 101: masked frames out, frames in (opcode byte and payload)."""

    def __init__(self, sock: socket.socket, rest: bytes, extensions: str | None) -> None:
        self.sock = sock
        self.buf = rest
        self.extensions = extensions

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> None:
        self.sock.sendall(frame(opcode, payload, fin, rsv1))

    def read_exactly(self, size: int) -> bytes:
        while len(self.buf) < size:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed with {len(self.buf)} of {size} bytes read")
            self.buf += data
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def read_frame(self) -> tuple[int, bytes]:
        """(first byte, payload) of the server's next frame; ConnectionError at EOF."""
        first, second = self.read_exactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.read_exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.read_exactly(8))[0]
        return first, self.read_exactly(length)

    def read_close(self) -> int:
        """Skip frames up to the server's Close and return its code."""
        while True:
            first, payload = self.read_frame()
            if first & 0x0F == 0x8:
                return int.from_bytes(payload[:2], "big")

    def closed_by_server(self) -> bool:
        """Whether the server closed TCP (EOF, or a reset) after what is already read."""
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """One masked client frame (RFC 6455 §5.2, §5.3)."""
    first = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    size = len(payload)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0x80 | 126)) + struct.pack("!H", size)
    else:
        head = bytes((first, 0x80 | 127)) + struct.pack("!Q", size)
    key = os.urandom(4)
    stream = key * (size // 4 + 1)
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream[:size], "big")).to_bytes(
        size, "big"
    )
    return head + key + masked


def deflate(data: bytes) -> bytes:
    """A compressed message payload as a client sends it (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def open_websocket(
    port: int, path: str = "/ws", extensions: str | None = None, timeout: float = 10.0
) -> RawWebSocket:
    sock = connect(port, timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n".encode()
    )
    resp, rest = read_response(sock, head_only=True)
    assert resp.status == 101, resp.status
    return RawWebSocket(sock, rest, resp.header("Sec-WebSocket-Extensions"))
