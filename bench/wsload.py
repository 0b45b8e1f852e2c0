"""The WebSocket echo load generator: `python wsload.py --port P --path /ws --size N ...`.

wrk speaks no WebSocket, so this plays its part for the echo scenarios: C connections (64,
like wrk's), each opened with an HTTP/1.1 upgrade, then each keeping exactly one binary
message of N bytes in flight: send it (masked, as RFC 6455 requires of a client), wait for the
whole echo, send the next. It prints one JSON line: messages echoed within the measured time,
that time, p50 and p99 of the round trips, and errors.

It must cost far less per message than any server does, or it would be the bottleneck rather
than the server (the server's CPU-seconds come from /proc, so the client's own cost never
enters the per-CPU-second figure, but a starved server batches less). Hence: raw asyncio
Protocols on uvloop when installed, one frame built once per connection and written as is,
and echoes not parsed but counted: with one message in flight, the server can only be sending
that message back, one unmasked frame of a size known in advance. Anything else (a ping, a
close, more bytes than expected) counts as an error and ends that connection.

Also `check(port, path, size)`: one blocking round trip, verifying the handshake and the
echoed bytes, which the benchmark runs before the load. Only 127.0.0.1 is ever connected to.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import socket
import time
from typing import cast

HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BINARY_FIN = 0x82
HANDSHAKE_TIMEOUT = 10.0


def client_frame(payload: bytes) -> bytes:
    """One final binary frame, masked with a random key (RFC 6455 section 5.3)."""
    size = len(payload)
    if size < 126:
        head = bytes([BINARY_FIN, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([BINARY_FIN, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([BINARY_FIN, 0x80 | 127]) + size.to_bytes(8, "big")
    key = os.urandom(4)
    mask = (key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(size, "big")
    return head + key + masked


def server_frame_size(size: int) -> int:
    """Bytes of the server's unmasked frame carrying `size` bytes."""
    return size + (2 if size < 126 else 4 if size < 1 << 16 else 10)


def upgrade_request(path: str, port: int) -> tuple[bytes, bytes]:
    """The opening handshake's request and the Sec-WebSocket-Accept it must be answered with."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    return request, accept


def accepted(head: bytes, accept: bytes) -> bool:
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 101"):
        return False
    fields = (line.split(b":", 1) for line in lines[1:] if b":" in line)
    return any(
        name.strip().lower() == b"sec-websocket-accept" and value.strip() == accept
        for name, value in fields
    )


class Stats:
    def __init__(self) -> None:
        self.running = False
        self.latencies: list[float] = []
        self.errors = 0


class EchoClient(asyncio.Protocol):
    """One connection: the handshake, then one message in flight at a time."""

    def __init__(self, request: bytes, accept: bytes, frame: bytes, expect: int, stats: Stats):
        self.request, self.accept, self.frame, self.expect = request, accept, frame, expect
        self.stats = stats
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head = b""
        self.pending = 0
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as such.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def send(self) -> None:
        assert self.transport is not None
        self.pending = self.expect
        self.sent_at = time.perf_counter()
        self.transport.write(self.frame)

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self.handshake(data)
            return
        self.pending -= len(data)
        if self.pending > 0:
            return
        if self.pending < 0:
            self.fail()
            return
        stats = self.stats
        if stats.running:
            stats.latencies.append(time.perf_counter() - self.sent_at)
            self.send()

    def handshake(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        if not accepted(self.head[:end], self.accept) or len(self.head) > end + 4:
            self.ready.set_exception(ConnectionError(self.head[:200].decode("latin-1")))
            return
        self.ready.set_result(None)

    def fail(self) -> None:
        if not self.failed and self.stats.running:
            self.stats.errors += 1
        self.failed = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed during the handshake"))
        elif not self.failed and self.stats.running:
            self.stats.errors += 1
            self.failed = True


async def load(
    port: int, path: str, size: int, connections: int, seconds: float
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    stats = Stats()
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    clients = []
    expect = server_frame_size(size)
    for _ in range(connections):
        request, accept = upgrade_request(path, port)
        frame = client_frame(payload)

        def factory(r: bytes = request, a: bytes = accept, f: bytes = frame) -> EchoClient:
            return EchoClient(r, a, f, expect, stats)

        _, client = await loop.create_connection(factory, HOST, port)
        clients.append(client)
    results = await asyncio.wait_for(
        asyncio.gather(*(c.ready for c in clients), return_exceptions=True), HANDSHAKE_TIMEOUT
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise SystemExit(f"handshake failed on {len(failures)} connections: {failures[0]!r}")
    stats.running = True
    started = time.perf_counter()
    for client in clients:
        client.send()
    await asyncio.sleep(seconds)
    stats.running = False
    elapsed = time.perf_counter() - started
    for client in clients:
        if client.transport is not None:
            client.transport.abort()
    return report(stats, elapsed)


def report(stats: Stats, seconds: float) -> dict[str, float]:
    latencies = sorted(stats.latencies)

    def percentile(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000.0

    return {
        "messages": len(latencies),
        "seconds": seconds,
        "p50_ms": percentile(0.5),
        "p99_ms": percentile(0.99),
        "errors": stats.errors,
    }


def check(port: int, path: str, size: int, timeout: float = 10.0) -> None:
    """One handshake and one echoed message, verified; raises ConnectionError if wrong."""
    payload = os.urandom(size)
    request, accept = upgrade_request(path, port)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {head[:200]!r}")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        if not accepted(head, accept):
            raise ConnectionError(f"handshake refused: {head[:200]!r}")
        sock.sendall(client_frame(payload))
        expect = server_frame_size(size)
        while len(rest) < expect:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(rest)} of {expect} echoed bytes")
            rest += chunk
        if rest[0] != BINARY_FIN or rest[expect - size :] != payload:
            raise ConnectionError(f"wrong echo: {rest[:16]!r}...")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws")
    parser.add_argument("--size", type=int, required=True, help="message size in bytes")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    args = parser.parse_args()
    try:
        import uvloop  # the client's own cost: the less the better

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    figures = runner(load(args.port, args.path, args.size, args.connections, args.duration))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
