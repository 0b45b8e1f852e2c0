"""Process-level helpers shared by master and workers: titles, pidfiles, privileges.

setproctitle is an optional extra (`corral[setproctitle]`); without it titles are unchanged.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable


def _find_setproctitle() -> Callable[[str], None] | None:
    try:
        module = importlib.import_module("setproctitle")
    except ImportError:  # the optional extra is not installed
        return None
    func: Callable[[str], None] = module.setproctitle
    return func


_setproctitle = _find_setproctitle()


def set_process_title(title: str) -> None:
    if _setproctitle is not None:
        _setproctitle(f"corral: {title}")


class Pidfile:
    """Writes the master's PID; refuses to overwrite the pidfile of a live process."""

    def __init__(self, path: str) -> None:
        self.path = path

    def create(self, pid: int) -> None:
        if os.path.lexists(self.path) and not os.path.isfile(self.path):
            from corral.errors import HaltServer

            # Never rename over a device, directory or socket (think --pid /dev/null).
            raise HaltServer(f"pid file {self.path!r} exists and is not a regular file")
        old = self.read()
        if old and old != pid and _alive(old):
            from corral.errors import HaltServer

            raise HaltServer(f"Already running on PID {old} (or pid file '{self.path}' is stale)")
        tmp = f"{self.path}.{pid}.tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{pid}\n")
        os.replace(tmp, self.path)

    def read(self) -> int:
        try:
            with open(self.path) as fh:
                return int(fh.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def unlink(self, pid: int) -> None:
        if self.read() == pid:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
