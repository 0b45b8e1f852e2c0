"""Why a worker process ended: the one table from reason to log line and restart cause.

A worker that leaves on its own tells the master why through its heartbeat block
(`Heartbeat.set_exit_reason`, workers/heartbeat.py), with one of the codes below that are marked
as told by the worker. The master reads the exit status and signal of every worker it reaps,
picks the reason that applies (master/exits.py) and writes the line and counts the cause given
here. Keeping the words, the codes and the metrics causes in one row each means the log, the
heartbeat and `corral_worker_restarts_total` cannot drift apart.

This module imports only corral.errors (which imports nothing): the workers, the master and
the metrics all use it. It decides nothing and logs nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, get_args

from corral.errors import EXIT_APP_LOAD_ERROR, EXIT_WORKER_BOOT_ERROR

# The `cause` label of corral_worker_restarts_total (docs/metrics.md).
RestartCause = Literal[
    "timeout", "oom", "max_requests", "max_worker_memory", "crash", "reload", "stuck_request"
]
RESTART_CAUSES: tuple[RestartCause, ...] = get_args(RestartCause)


class ExitReason(IntEnum):
    """Codes below TOLD_BY_MASTER are stored in the heartbeat by the worker; the others are
    what the master concludes from the exit status, a signal, or the OOM-kill counter."""

    EXITED = 0  # left without saying why (a graceful stop)
    MAX_REQUESTS = 1
    MAX_MEMORY = 2
    RELOAD = 3
    ORPHANED = 4
    STUCK_REQUEST = 5

    TIMED_OUT = 100  # the master aborted it: no heartbeat for `timeout` seconds
    OOM_KILLED = 101
    KILLED = 102  # SIGKILL from another process, and the OOM-kill counter did not move
    KILLED_UNKNOWN = 103  # SIGKILL, and no OOM-kill counter is readable here
    SIGNALLED = 104  # another signal the master did not send
    STOPPED = 105  # the SIGTERM the master sent to stop it
    CRASHED = 106  # a non-zero exit status
    FAILED_AFTER_SERVING = 107  # status 3 or 4, but after it had served: not a boot failure
    BOOT_FAILED = 108  # status 3 before it became ready
    APP_LOAD_FAILED = 109  # status 4 before it became ready


TOLD_BY_MASTER = 100


@dataclass(frozen=True)
class Exit:
    """One row: how the master reports a worker that ended for this reason.

    `message` is %-style with named fields, given as one mapping: pid always; code, signal,
    source, before and now where the reason has them. `halt` is the exit status the whole
    server stops with (0: it does not), and then `message` is the reason it gives.
    `replace_at_once`: as soon as the heartbeat tells this reason, the master starts the
    replacement, without waiting for the worker to finish its other requests and exit.
    """

    level: int
    message: str
    cause: RestartCause | None = None
    halt: int = 0
    replace_at_once: bool = False
    told: str = ""  # for reasons the worker tells: the words after "Worker exiting (pid: N): "


def _told(
    words: str,
    cause: RestartCause | None,
    level: int = logging.INFO,
    replace_at_once: bool = False,
) -> Exit:
    message = f"Worker exiting (pid: %(pid)s): {words}"
    return Exit(level, message, cause, replace_at_once=replace_at_once, told=words)


ERROR = logging.ERROR  # most rows
EXITS: dict[ExitReason, Exit] = {
    ExitReason.EXITED: Exit(logging.INFO, "Worker exiting (pid: %(pid)s)"),
    ExitReason.MAX_REQUESTS: _told("max_requests reached", "max_requests"),
    ExitReason.MAX_MEMORY: _told("max_worker_memory exceeded", "max_worker_memory"),
    ExitReason.RELOAD: _told("source files changed (--reload)", "reload"),
    ExitReason.ORPHANED: _told("master gone", None),
    ExitReason.STUCK_REQUEST: _told(
        "a request ran past timeout", "stuck_request", ERROR, replace_at_once=True
    ),
    ExitReason.TIMED_OUT: Exit(
        ERROR, "Worker (pid:%(pid)s) was killed after timing out (%(signal)s)", "timeout"
    ),
    ExitReason.OOM_KILLED: Exit(
        ERROR,
        "Worker (pid:%(pid)s) was killed by the kernel's OOM killer "
        "(oom_kill in %(source)s went from %(before)d to %(now)d)",
        "oom",
    ),
    ExitReason.KILLED: Exit(
        ERROR,
        "Worker (pid:%(pid)s) was sent SIGKILL by another process; not the OOM killer "
        "(oom_kill in %(source)s unchanged at %(now)d)",
        "crash",
    ),
    ExitReason.KILLED_UNKNOWN: Exit(
        ERROR,
        "Worker (pid:%(pid)s) was sent SIGKILL! (no OOM-kill counter is readable here, "
        "so whether the OOM killer did it is unknown)",
        "crash",
    ),
    ExitReason.SIGNALLED: Exit(ERROR, "Worker (pid:%(pid)s) was sent %(signal)s!", "crash"),
    ExitReason.STOPPED: Exit(logging.DEBUG, "Worker (pid:%(pid)s) stopped (%(signal)s)"),
    ExitReason.CRASHED: Exit(ERROR, "Worker (pid:%(pid)s) exited with code %(code)s", "crash"),
    ExitReason.FAILED_AFTER_SERVING: Exit(
        ERROR,
        "Worker (pid:%(pid)s) exited with code %(code)s after it had served, "
        "so not a boot failure: starting a new one",
        "crash",
    ),
    # The words users grep for, as Gunicorn's; the master logs "Shutting down: <message>".
    ExitReason.BOOT_FAILED: Exit(ERROR, "Worker failed to boot.", halt=EXIT_WORKER_BOOT_ERROR),
    ExitReason.APP_LOAD_FAILED: Exit(ERROR, "App failed to load.", halt=EXIT_APP_LOAD_ERROR),
}


def told_reason(code: int) -> ExitReason:
    """The reason a heartbeat code stands for; EXITED for 0 and for any code a worker cannot
    tell (a master-side reason, or garbage)."""
    if not 0 <= code < TOLD_BY_MASTER:
        return ExitReason.EXITED
    try:
        return ExitReason(code)
    except ValueError:
        return ExitReason.EXITED
