"""The control socket: a unix socket the master serves from its own loop (`corral ctl`,
Gunicorn's `gunicornc`).

Everything here is non-blocking and bounded: the master calls `handle_ready` on every turn of
its loop, which accepts, reads, answers and drops what is due, and returns (that machinery is
master/loop_server.py's; this module holds the protocol and the socket's path). A client must send
its first command within `FIRST_COMMAND_TIMEOUT` seconds and finish any frame it starts as
fast; between commands it may stay `IDLE_TIMEOUT` seconds (an interactive session). A broken
or oversized frame closes that client only. The socket is created with its mode (umask held
around bind, so it is never more open than asked), its directory 0700 when we create it, and
only the owning user or root (SO_PEERCRED) may run commands that change anything.

This module never signals or forks: commands are run by the `dispatch` callable it is given.
It never removes a path it did not bind (a socket another server serves is left alone).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shlex
import socket
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral.control.protocol import FrameError, FrameReader, encode, error, ok
from corral.master.loop_server import Client, LoopServer

log = logging.getLogger("corral.error")

FIRST_COMMAND_TIMEOUT = 5.0
IDLE_TIMEOUT = 300.0  # Gunicorn's idle limit for a connected client
MAX_CLIENTS = 16
MAX_OUTBOX = 64 << 20  # answers waiting for a client that does not read
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class CommandError(Exception):
    """A command that cannot be run as asked; its message is the error answer."""


# dispatch(words, privileged) -> the answer's data; CommandError for an error answer.
Dispatch = Callable[[list[str], bool], dict[str, Any]]


class SocketInUse(Exception):
    """Another running server answers on the path."""


@dataclass
class _Peer:
    """What the control protocol keeps per client."""

    uid: int
    reader: FrameReader = field(default_factory=FrameReader)


class ControlServer:
    def __init__(
        self,
        path: str,
        mode: int,
        dispatch: Dispatch,
        *,
        clock: Callable[[], float] = time.monotonic,
        first_command_timeout: float = FIRST_COMMAND_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        """Bind `path`; SocketInUse when a live server answers there, OSError otherwise."""
        self.path = os.path.abspath(path)
        self.dispatch = dispatch
        self.first_command_timeout = first_command_timeout
        self.idle_timeout = idle_timeout
        self.owner = os.geteuid()
        self.sock = _bind(self.path, mode)
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        self._server = LoopServer(
            self.sock,
            name="Control socket",
            open_session=lambda conn: _Peer(_peer_uid(conn)),
            received=self._received,
            first_timeout=first_command_timeout,
            max_clients=MAX_CLIENTS,
            max_outbox=MAX_OUTBOX,
            clock=clock,
        )

    def fileno(self) -> int:
        """Readable whenever there is something for `handle_ready` to do."""
        return self._server.fileno()

    def handle_ready(self) -> None:
        self._server.handle_ready()

    def close(self) -> None:
        """Close everything, and remove the path if it is still the socket we bound."""
        self.close_in_child()
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                os.unlink(self.path)

    def close_in_child(self) -> None:
        """A forked worker's copies of the descriptors: closed so that a client the master
        drops sees its connection end. The path and the master's side are left alone."""
        self._server.close()

    def _received(self, client: Client[_Peer], data: bytes, now: float) -> bool:
        reader = client.session.reader
        try:
            messages = reader.feed(data)
        except FrameError as exc:
            log.info("Control socket: closing a client that sent a bad frame: %s", exc)
            return False
        for message in messages:
            client.reply(encode(self._answer(message, client.session.uid)))
        if messages or not reader.pending:
            client.deadline = now + self.idle_timeout
        if reader.pending:
            # A frame begun must be finished promptly, whatever the idle allowance.
            client.deadline = min(client.deadline, now + self.first_command_timeout)
        return True

    # ---- commands ---------------------------------------------------------------------------

    def _answer(self, message: dict[str, Any], uid: int) -> dict[str, Any]:
        request_id = message.get("id", 0)
        command = message.get("command", "")
        args = message.get("args") or []
        if not isinstance(command, str) or not isinstance(args, list):
            return error(request_id, "Invalid request: command must be a string, args a list")
        try:
            words = shlex.split(command) + [str(arg) for arg in args]
        except ValueError as exc:
            return error(request_id, f"Invalid command: {exc}")
        if not words:
            return error(request_id, "Empty command")
        try:
            return ok(request_id, self.dispatch(words, uid in (0, self.owner)))
        except CommandError as exc:
            return error(request_id, str(exc))
        except Exception as exc:
            log.exception("Control socket: command %r failed", " ".join(words))
            return error(request_id, f"Command failed: {exc}")


def _peer_uid(conn: socket.socket) -> int:
    """The connecting process's user id; -1 (no rights) when the kernel cannot tell."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except (OSError, AttributeError):
        return -1
    _pid, uid, _gid = _PEERCRED.unpack(creds)
    return int(uid)


def _bind(path: str, mode: int) -> socket.socket:
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # makedirs' mode is cut by the umask: say it exactly
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The socket is created by bind with 0777 minus the umask: hold a umask that leaves
    # exactly `mode`, so there is no moment when it is more open than asked.
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    sock.listen(MAX_CLIENTS)
    sock.setblocking(False)
    return sock


def _clear_stale(path: str) -> None:
    """Remove a socket nobody answers on; refuse to touch a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError:
        pass  # a timeout: a server too busy to accept is still a server
    finally:
        probe.close()
    raise SocketInUse(path)
