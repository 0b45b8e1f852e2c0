"""A blocking client for the control socket, for `corral ctl` and for scripts.

    with ControlClient(path) as client:
        data = client.send("show workers")

It speaks the protocol of corral.control.protocol to corral and to Gunicorn 25.1+ alike. An
error answer raises CommandFailed with the server's message; a connection that cannot be made
or breaks raises ClientError. It never retries a command on its own (`corral ctl`'s prompt
reconnects once, because a server drops a session idle for long).
"""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Any

from corral.control.protocol import MAX_RESPONSE_SIZE, FrameError, FrameReader, encode, request


class ClientError(Exception):
    """The socket could not be reached, or the connection broke."""


class CommandFailed(Exception):
    """The server answered with an error."""


class ControlClient:
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.reader = FrameReader(limit=MAX_RESPONSE_SIZE)
        self.last_id = 0

    def connect(self) -> None:
        if self.sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise ClientError(f"Cannot connect to {self.path}: {exc.strerror or exc}") from None
        self.sock = sock
        self.reader = FrameReader(limit=MAX_RESPONSE_SIZE)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, command: str, args: list[str] | None = None) -> dict[str, Any]:
        """Send one command and return the answer's data."""
        self.connect()
        assert self.sock is not None
        self.last_id += 1
        try:
            self.sock.sendall(encode(request(self.last_id, command, args)))
            answer = self._receive(self.sock)
        except (OSError, FrameError) as exc:
            self.close()
            raise ClientError(f"Connection to {self.path} failed: {exc}") from None
        if answer.get("status") != "ok":
            raise CommandFailed(str(answer.get("error", "unknown error")))
        data = answer.get("data")
        return data if isinstance(data, dict) else {}

    def _receive(self, sock: socket.socket) -> dict[str, Any]:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise FrameError("the server closed the connection")
            messages = self.reader.feed(chunk)
            if messages:
                return messages[0]

    def __enter__(self) -> ControlClient:
        self.connect()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
