"""`--daemon`: detach the master from its terminal and its parent, as a classic Unix daemon.

The sequence: fork (the parent exits, so the shell sees the command finish and the child is not
a process group leader), setsid (a new session with no controlling terminal), fork again (the
session leader exits, so the daemon can never acquire a terminal by opening one), set the umask,
and point stdin, stdout and stderr at /dev/null.

This module must never change directory (corral's --chdir is applied elsewhere, and relative
paths in the configuration were resolved before this runs), never close descriptors other than
0, 1 and 2 (inherited sockets such as fd://N or systemd's must stay open), and never run the
exiting parents' atexit handlers or flush their copies of buffers the daemon also holds.
"""

from __future__ import annotations

import contextlib
import os
import sys


def daemonize(umask: int) -> None:
    """Detach into the background; returns in the daemon (grandchild) process only."""
    _flush_std_streams()  # or the bytes still buffered would be written by two processes
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.umask(umask)
    _redirect_std_fds_to_devnull()


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to lose
                stream.flush()


def _redirect_std_fds_to_devnull() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != null:
            os.dup2(null, fd)
    if null > 2:
        os.close(null)
