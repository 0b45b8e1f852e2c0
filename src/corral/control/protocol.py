"""The control socket's wire format, sans-IO: frames of a 4-byte big-endian length and a JSON
object, as Gunicorn 25.1+ defines them, so `gunicornc` and `corral ctl` talk to either server.

    request   {"id": 1, "command": "show", "args": ["workers"]}
    answers   {"id": 1, "status": "ok", "data": {...}}
              {"id": 1, "status": "error", "error": "..."}

`FrameReader` takes bytes as they arrive and hands back whole messages; a frame longer than
its limit, or one that is not a JSON object, raises FrameError (the caller closes that
connection). This module never touches a socket.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from typing import Any

_LENGTH = struct.Struct(">I")
# A command is a few words: 1 MiB is far above any real one and bounds what a client can make
# the master buffer. Answers (a large `show config`) are allowed more.
MAX_REQUEST_SIZE = 1 << 20
MAX_RESPONSE_SIZE = 64 << 20
SOCKET_NAME = "corral.ctl"
GUNICORN_SOCKET_NAME = "gunicorn.ctl"


class FrameError(Exception):
    """A frame that breaks the protocol: too long, not UTF-8 JSON, or not an object."""


def encode(message: Mapping[str, Any]) -> bytes:
    payload = json.dumps(message, separators=(",", ":"), default=str).encode()
    return _LENGTH.pack(len(payload)) + payload


def request(request_id: int, command: str, args: list[str] | None = None) -> dict[str, Any]:
    return {"id": request_id, "command": command, "args": list(args or [])}


def ok(request_id: object, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "status": "ok", "data": dict(data)}


def error(request_id: object, message: str) -> dict[str, Any]:
    return {"id": request_id, "status": "error", "error": message}


class FrameReader:
    """Bytes in, whole messages out."""

    def __init__(self, limit: int = MAX_REQUEST_SIZE) -> None:
        self.limit = limit
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The messages `data` completes, in order; FrameError on a broken frame."""
        self.buffer += data
        messages = []
        while len(self.buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self.buffer)
            if length > self.limit:
                raise FrameError(f"frame of {length} bytes is over the {self.limit} limit")
            end = _LENGTH.size + length
            if len(self.buffer) < end:
                break
            payload = bytes(self.buffer[_LENGTH.size : end])
            del self.buffer[:end]
            messages.append(decode(payload))
        return messages

    @property
    def pending(self) -> bool:
        """Whether part of a frame is waiting for the rest."""
        return bool(self.buffer)


def decode(payload: bytes) -> dict[str, Any]:
    try:
        message = json.loads(payload.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise FrameError("not a JSON object")
    return message


def default_socket_path(environ: Mapping[str, str] | None = None, name: str = SOCKET_NAME) -> str:
    """Where the control socket is when no path is given: `$XDG_RUNTIME_DIR/<name>` when that
    directory exists, else `~/.corral/<name>` (Gunicorn's rule, with corral's names; pass
    GUNICORN_SOCKET_NAME and ".gunicorn" is used for the fallback directory)."""
    env = os.environ if environ is None else environ
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, name)
    home = env.get("HOME") or os.path.expanduser("~")
    folder = ".gunicorn" if name == GUNICORN_SOCKET_NAME else ".corral"
    return os.path.join(home, folder, name)
