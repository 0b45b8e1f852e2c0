"""systemd integration: socket activation (LISTEN_FDS) and readiness notification (sd_notify).

Socket activation: systemd binds the sockets of a `.socket` unit, starts the service with them
open from file descriptor 3 onwards, and names the receiving process in LISTEN_PID.
`listen_fds` reads that contract from an environ mapping and, by default, removes the variables
so that workers, applications and re-executed children do not claim the sockets a second time.

Notification: with `Type=notify` (or `notify-reload`) systemd passes NOTIFY_SOCKET, a unix
datagram socket (a path, or an abstract name written `@name`) to which the service reports
`READY=1`, `RELOADING=1`, `STOPPING=1` and a one-line `STATUS=`. `Notifier` sends those
datagrams.

This module must never raise out of a notification (a supervisor that stopped listening is no
reason for the server to fail), never open, close or change the flags of inherited descriptors,
and never read os.environ behind its caller's back: every function takes the mapping to use.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, MutableMapping

# The first descriptor systemd passes (SD_LISTEN_FDS_START in sd-daemon.h).
LISTEN_FDS_START = 3
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
# A datagram to a supervisor that stopped reading must not hang the master.
_SEND_TIMEOUT = 1.0


def listen_fds(
    environ: MutableMapping[str, str], pid: int | None = None, unset: bool = True
) -> list[int]:
    """The descriptors systemd passed to process `pid` (default: this process), or [].

    The descriptors are only for us when LISTEN_PID is our pid: a LISTEN_PID naming another
    process means the variables were inherited from a parent that was activated, and the
    descriptors (if still open) are not ours to use. With `unset`, LISTEN_PID, LISTEN_FDS and
    LISTEN_FDNAMES are removed from `environ` in every case, as sd_listen_fds(3) does.
    """
    if pid is None:
        pid = os.getpid()
    ours = _int(environ.get("LISTEN_PID")) == pid
    count = (_int(environ.get("LISTEN_FDS")) or 0) if ours else 0
    if unset:
        for name in _LISTEN_VARS:
            environ.pop(name, None)
    return list(range(LISTEN_FDS_START, LISTEN_FDS_START + max(count, 0)))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def notify_address(environ: Mapping[str, str]) -> bytes | None:
    """The NOTIFY_SOCKET address as sendto() wants it, or None when absent or unsupported.

    `@name` is a Linux abstract socket (the `@` becomes a NUL byte); otherwise the value must be
    an absolute path. Other forms systemd knows (such as `vsock:`) are not supported.
    """
    value = environ.get("NOTIFY_SOCKET", "")
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return os.fsencode(value)
    return None


class Notifier:
    """Sends sd_notify state lines to the socket named by NOTIFY_SOCKET in `environ`.

    With `unset`, NOTIFY_SOCKET is removed from `environ` after it is read, so that workers and
    applications do not send their own READY=1 for the whole service. `enabled` is False when
    there is no usable NOTIFY_SOCKET; every send then returns False without doing anything.
    """

    def __init__(self, environ: MutableMapping[str, str], unset: bool = False) -> None:
        self.address = notify_address(environ)
        if unset:
            environ.pop("NOTIFY_SOCKET", None)
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, state: str) -> bool:
        """Send one datagram of `KEY=VALUE` lines; True when it was sent. Never raises."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(_SEND_TIMEOUT)
            self._sock.sendto(state.encode("utf-8"), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete: the service is now serving."""
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def reloading(self) -> bool:
        """A reload started; send `ready()` when it is done (Type=notify-reload needs both)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutdown started."""
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """A free-form line `systemctl status` shows."""
        return self.notify(f"STATUS={_one_line(text)}")

    def main_pid(self, pid: int) -> bool:
        """Tell systemd which process is now the service's main process (after a re-exec)."""
        return self.notify(f"MAINPID={pid}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    # A newline would start another KEY=VALUE assignment in the datagram.
    return " ".join(text.splitlines())
