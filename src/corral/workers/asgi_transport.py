"""The transport side of an `asgi` worker connection: what `adapters.asgi.Exchange` and the
WebSocket session write through (the `AsgiTransport` interface), with write backpressure,
read pausing and sendfile, over asyncio's or uvloop's transports.

What this module must never do: write after the transport is gone (uvloop raises where asyncio
drops the bytes), or let a writer go on past a full transport without waiting.
"""

from __future__ import annotations

import asyncio
from typing import Any

from corral.adapters.asgi import ClientGone


class AsgiConnection(asyncio.Protocol):
    """Write backpressure (pause_writing/resume_writing), read pausing and the writes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reading = True
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.transport_gone = False
        # Cached: asyncio.get_running_loop() costs a getpid() per call before Python 3.12.
        self.loop = asyncio.get_running_loop()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def write(self, data: bytes) -> None:
        # After connection_lost uvloop's transports raise where asyncio's drop the bytes.
        if self.transport is not None and data and not self.transport_gone:
            self.transport.write(data)

    @property
    def must_drain(self) -> bool:
        """Whether a writer must wait: the transport is above its high-water mark, or gone."""
        transport = self.transport
        return (
            self.transport_gone
            or not self.can_write.is_set()
            or transport is None
            or transport.is_closing()
        )

    async def drain(self) -> None:
        if not self.can_write.is_set():
            await self.can_write.wait()
        if self.transport_gone or self.transport is None or self.transport.is_closing():
            raise ClientGone("the client has gone")

    def resume_reading(self) -> None:
        if not self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = True
            self.transport.resume_reading()

    async def sendfile(self, file: Any, offset: int, count: int) -> None:
        """`http.response.pathsend`: sendfile() on a plain socket; the loop falls back to
        reads and writes under TLS (and uvloop, which has no sendfile, gets the same here)."""
        await self.drain()
        transport = self.transport
        assert transport is not None
        loop = self.loop
        try:
            try:
                await loop.sendfile(transport, file, offset, count)
            except (NotImplementedError, AttributeError):
                file.seek(offset)
                while count > 0:
                    chunk = file.read(min(count, 262144))
                    if not chunk:
                        break
                    count -= len(chunk)
                    self.write(chunk)
                    await self.drain()
        except ConnectionError as exc:
            raise ClientGone("the client has gone") from exc

    def pause(self) -> None:
        if self.reading and self.transport is not None:
            self.reading = False
            self.transport.pause_reading()

    def close_transport(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
