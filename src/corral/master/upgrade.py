"""USR2 binary upgrade: start a new master that inherits the listening sockets.

The old master forks; the child marks the listeners inheritable and execs corral again with the
same arguments, from the same directory, with two environment variables: `CORRAL_FD` (the
listener descriptors, comma-separated) and `CORRAL_UPGRADE_PARENT` (the old master's PID). The
new master adopts the sockets instead of binding (nothing is ever re-bound, so no connection is
refused), writes `<pidfile>.2`, and takes the plain pidfile name once the old master is gone.
This module must never close or re-bind a listener: both masters serve from the same sockets.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, MutableMapping, Sequence

log = logging.getLogger("corral.error")

FD_VARIABLE = "CORRAL_FD"
PARENT_VARIABLE = "CORRAL_UPGRADE_PARENT"


def spawn_new_master(
    argv: Sequence[str], cwd: str, listeners: Sequence[socket.socket], pre_exec: Callable[[], None]
) -> int:
    """Fork and exec a new master; returns its PID in the old master."""
    pid = os.fork()
    if pid:
        return pid
    try:
        env = dict(os.environ)
        fds = [sock.fileno() for sock in listeners]
        for fd in fds:
            os.set_inheritable(fd, True)
        env[FD_VARIABLE] = ",".join(str(fd) for fd in fds)
        env[PARENT_VARIABLE] = str(os.getppid())
        os.chdir(cwd)
        pre_exec()
        args = [sys.executable, "-m", "corral", *argv]
        os.execve(sys.executable, args, env)
    except BaseException:
        log.exception("Could not exec the new master")
    finally:
        os._exit(1)


def inherited_listeners(environ: MutableMapping[str, str]) -> list[socket.socket]:
    """Listeners handed over by an old master (`CORRAL_FD`, or Gunicorn's `GUNICORN_FD`)."""
    value = environ.pop(FD_VARIABLE, "") or environ.pop("GUNICORN_FD", "")
    listeners = []
    for item in value.split(","):
        if item.strip():
            sock = socket.socket(fileno=int(item))
            os.set_inheritable(sock.fileno(), False)
            sock.setblocking(False)
            listeners.append(sock)
    return listeners


def upgrade_parent(environ: MutableMapping[str, str]) -> int:
    """The old master's PID when we are the new master of an upgrade still in progress."""
    value = environ.pop(PARENT_VARIABLE, "")
    if value.isdigit() and int(value) == os.getppid():
        return int(value)
    return 0
