"""wsgi.input and wsgi.file_wrapper: request bodies, buffered or streamed, and files as responses.

`BodyBuffer` holds a body the worker's loop receives before the application is called (in
memory, then an unnamed temporary file); the application reads it as a plain file object.
`Body` is the streamed form, for bodies above `request_body_buffer` (or with buffering off):
pulled from the connection only when the application reads it, one receive at a time, through
the sans-IO decoder. What this module must never do: read past the end of the body without
handing the excess back (it is the next pipelined request), or block without the connection's
timeout.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import IO

from corral.errors import ClientDisconnected
from corral.http.body import ChunkedDecoder, ContentLengthDecoder
from corral.http.writer import CONTINUE

# Between keep-alive requests an unread body is drained only up to this many bytes;
# past it the connection is closed instead (a client cannot make us read forever).
DRAIN_LIMIT = 1 << 20
DRAIN_SECONDS = 2.0
RECV_CHUNK = 65536


class BodyBuffer:
    """A request body received by the worker's loop before the application is called.

    Decoded bytes stay in memory up to `memory_limit` and go to an unnamed temporary file
    beyond it. The loop feeds what the socket gives; `feed` returns the bytes past the body
    (the next pipelined request) once it is complete. A body that grows past `max_size` (only
    a chunked one can: a Content-Length above it is never buffered) is handed to the
    application as a stream that starts with what was buffered (`stream`).
    """

    __slots__ = ("_file", "_memory", "decoder", "max_size", "memory_limit", "size")

    def __init__(
        self, decoder: ContentLengthDecoder | ChunkedDecoder, memory_limit: int, max_size: int
    ) -> None:
        self.decoder = decoder
        self.memory_limit = memory_limit
        self.max_size = max_size
        self.size = 0
        self._memory = bytearray()
        self._file: IO[bytes] | None = None

    @property
    def over_max(self) -> bool:
        return self.size > self.max_size

    def feed(self, data: bytes) -> bytes | None:
        """Take received bytes; the bytes past the body once it is complete, else None.
        Raises ProtocolError when the body's framing is broken."""
        chunk, rest = self.decoder.feed(data)
        if chunk:
            self.size += len(chunk)
            if self._file is None and len(self._memory) + len(chunk) <= self.memory_limit:
                self._memory += chunk
            else:
                if self._file is None:
                    self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the request)
                    self._file.write(self._memory)
                    self._memory = bytearray()
                self._file.write(chunk)
        return rest if self.decoder.done else None

    def input(self) -> IO[bytes]:
        """The buffered body as a file object read from the start (wsgi.input)."""
        if self._file is None:
            return io.BytesIO(self._memory)
        self._file.seek(0)
        return self._file

    def stream(self, recv: Callable[[], bytes]) -> Body:
        """What was buffered so far, then the rest straight from the connection."""
        return Body(self.decoder, b"", recv, None, prefix=self.input())

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()


class Body:
    """wsgi.input (PEP 3333): read, readline, readlines and iteration over the request body."""

    __slots__ = (
        "_buf",
        "_continue",
        "_decoder",
        "_pending",
        "_prefix",
        "_recv",
        "failed",
        "leftover",
    )

    def __init__(
        self,
        decoder: ContentLengthDecoder | ChunkedDecoder,
        pending: bytes,
        recv: Callable[[], bytes],
        send_continue: Callable[[bytes], None] | None,
        prefix: IO[bytes] | None = None,
    ) -> None:
        self._decoder = decoder
        self._recv = recv
        self._continue = send_continue
        self._buf = bytearray()
        # The part the worker already received (a chunked body that outgrew the buffer).
        self._prefix = prefix
        self.failed = False
        if decoder.done:
            self._pending = b""
            self.leftover = pending
        else:
            self._pending = pending
            self.leftover = b""

    @property
    def done(self) -> bool:
        return self._decoder.done

    def _fill(self) -> bool:
        """Append more decoded body to the buffer; False once the body has ended."""
        if self._prefix is not None:
            data = self._prefix.read(RECV_CHUNK)
            if data:
                self._buf += data
                return True
            self._prefix.close()
            self._prefix = None
        decoder = self._decoder
        while not decoder.done:
            if self._pending:
                data, self._pending = self._pending, b""
            else:
                if self._continue is not None:
                    # RFC 9110 §10.1.1: the client waits for this before sending the body.
                    self._continue(CONTINUE)
                    self._continue = None
                try:
                    data = self._recv()
                except BaseException:
                    self.failed = True
                    raise
                if not data:
                    self.failed = True
                    raise ClientDisconnected("client closed the connection mid-body")
            try:
                chunk, rest = decoder.feed(data)
            except BaseException:
                self.failed = True
                raise
            if decoder.done:
                self.leftover = rest
            if chunk:
                self._buf += chunk
                return True
        return False

    def read(self, size: int | None = -1) -> bytes:
        buf = self._buf
        if size is None or size < 0:
            while self._fill():
                pass
        else:
            while len(buf) < size and self._fill():
                pass
            if len(buf) > size:
                data = bytes(buf[:size])
                del buf[:size]
                return data
        data = bytes(buf)
        buf.clear()
        return data

    def readline(self, size: int | None = -1) -> bytes:
        buf = self._buf
        limit = -1 if size is None else size
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if 0 <= limit <= len(buf):
                end = limit
                break
            start = len(buf)
            if not self._fill():
                end = len(buf)
                break
        if 0 <= limit < end:
            end = limit
        data = bytes(buf[:end])
        del buf[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self, seconds: float = DRAIN_SECONDS) -> bool:
        """Skip what the application left unread; False when that is too much to wait for
        (over DRAIN_LIMIT bytes or `seconds`): the connection is then closed instead."""
        deadline = time.monotonic() + seconds
        skipped = len(self._buf)
        self._buf.clear()
        self._continue = None  # the client never got a 100: do not invite the body now
        while skipped <= DRAIN_LIMIT and time.monotonic() < deadline:
            if not self._fill():
                return True
            skipped += len(self._buf)
            self._buf.clear()
        return False


class EmptyBody:
    """wsgi.input of a request without a body (most of them): stateless, so one is shared."""

    __slots__ = ()

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())


EMPTY_BODY = EmptyBody()


class FileWrapper:
    """wsgi.file_wrapper (PEP 3333 "Optional Platform-Specific File Handling").

    The worker sends a wrapped regular file with os.sendfile when sendfile is enabled;
    otherwise, or for file-like objects without a file descriptor, it iterates in blocks.
    """

    __slots__ = ("blksize", "close", "filelike")

    def __init__(self, filelike: IO[bytes], blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        blksize = self.blksize
        while True:
            data = read(blksize)
            if not data:
                return
            yield data
