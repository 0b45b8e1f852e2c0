"""Worker liveness through memory shared between the master and one worker.

Gunicorn's workers prove they are alive by touching a file; when that file sits on a disk that
stalls, healthy workers block and get killed. corral's heartbeat is an anonymous shared mapping
made by the master before fork: the worker stores a monotonic timestamp in it and the master reads
it. No file, no system call on the beat. This module must never touch the file system.
"""

from __future__ import annotations

import mmap
import struct
import time

from corral.exit_reasons import ExitReason, told_reason

_STAMP = struct.Struct("d")
_READY_AT = _STAMP.size
_REASON_AT = 2 * _STAMP.size
_STOPPING_AT = 3 * _STAMP.size

# Why a worker leaves on its own, as it tells the master before exiting. The codes, their log
# wording and their restart causes are rows of corral.exit_reasons; these names are the ones
# the workers pass to `set_exit_reason`.
REASON_MAX_REQUESTS = ExitReason.MAX_REQUESTS
REASON_MAX_MEMORY = ExitReason.MAX_MEMORY
REASON_RELOAD = ExitReason.RELOAD
REASON_ORPHANED = ExitReason.ORPHANED
REASON_STUCK_REQUEST = ExitReason.STUCK_REQUEST


class Heartbeat:
    """Shared memory holding the worker's last sign of life (CLOCK_MONOTONIC) and, once it
    serves, the time it became ready (0.0 before)."""

    __slots__ = ("_mem",)

    def __init__(self) -> None:
        # fileno -1: anonymous memory; MAP_SHARED (the default) keeps it shared across fork.
        self._mem = mmap.mmap(-1, 4 * _STAMP.size)
        self.beat()

    def beat(self, now: float | None = None) -> None:
        _STAMP.pack_into(self._mem, 0, time.monotonic() if now is None else now)

    def last(self) -> float:
        stamp: float = _STAMP.unpack_from(self._mem, 0)[0]
        return stamp

    def mark_ready(self) -> None:
        """The worker has loaded the application and is about to accept connections."""
        _STAMP.pack_into(self._mem, _READY_AT, time.monotonic())

    def ready(self) -> bool:
        return bool(_STAMP.unpack_from(self._mem, _READY_AT)[0])

    def mark_master_stopping(self) -> None:
        """The master is shutting down for good (not a reload): nobody else will accept."""
        _STAMP.pack_into(self._mem, _STOPPING_AT, 1.0)

    def master_stopping(self) -> bool:
        return bool(_STAMP.unpack_from(self._mem, _STOPPING_AT)[0])

    def set_exit_reason(self, code: int) -> None:
        _STAMP.pack_into(self._mem, _REASON_AT, float(code))

    def exit_reason(self) -> ExitReason:
        """What the worker told; ExitReason.EXITED when it told nothing."""
        return told_reason(int(_STAMP.unpack_from(self._mem, _REASON_AT)[0]))

    def age(self) -> float:
        """Seconds since the last beat."""
        return time.monotonic() - self.last()

    def close(self) -> None:
        self._mem.close()
