"""Which reason of corral.exit_reasons applies to a worker the master reaped, said in the log.

The master calls `report()` for every reaped worker. A SIGKILL it did not send itself is
checked against the kernel's OOM-kill counter (read before reaping, compared after), so the log
says whether the OOM killer did it instead of guessing. A worker that left on its own tells why
through its heartbeat block. The status of a boot failure (3) or of an application that would
not load (4) stops the whole server only when the worker never became ready: a worker that
served and then died that way is replaced like any other crash.

The words, the restart causes and which reasons halt the server are rows of the one table in
corral.exit_reasons; this module only picks the row. It reads counters and heartbeats and
writes log lines: it never signals or reaps a process.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable
from typing import Protocol

from corral.errors import EXIT_APP_LOAD_ERROR, EXIT_WORKER_BOOT_ERROR, HaltServer
from corral.exit_reasons import EXITS, ExitReason, RestartCause
from corral.resources import OomCounter
from corral.workers.heartbeat import Heartbeat

log = logging.getLogger("corral.error")

# A worker's exit status that, before the worker was ready, means it could not start.
_BOOT_STATUSES = {
    EXIT_WORKER_BOOT_ERROR: ExitReason.BOOT_FAILED,
    EXIT_APP_LOAD_ERROR: ExitReason.APP_LOAD_FAILED,
}

Details = dict[str, object]


class Reaped(Protocol):
    """What the reporter reads of a worker (corral.workers.engine.Worker, or a test's fake)."""

    pid: int
    alive: bool  # False once the master has decided to stop it
    aborted_at: float  # when the master sent the timeout abort; 0.0 if never
    heartbeat: Heartbeat


class ExitReporter:
    def __init__(self, oom: OomCounter | None = None) -> None:
        self.oom = oom if oom is not None else OomCounter()
        self.baseline = self.oom.read()
        self.mark_value: int | None = None

    def mark(self) -> None:
        """Read the OOM counter before reaping: a kill seen while reaping is compared with
        the count from before it."""
        self.mark_value = self.oom.read()

    def settle(self) -> None:
        """After reaping: kills counted so far are accounted for."""
        if self.baseline is None:
            self.baseline = self.mark_value
        elif self.mark_value is not None:
            self.baseline = max(self.baseline, self.mark_value)

    def report(self, worker: Reaped, status: int, stopping: bool) -> RestartCause | None:
        """Log why the worker ended; return the restart cause, or None when it is not one.
        Raises HaltServer when a worker could not boot or load the application (unless the
        server is stopping anyway)."""
        reason, details = self.classify(worker, status)
        row = EXITS[reason]
        if row.halt and not stopping:
            raise HaltServer(row.message, row.halt)
        log.log(row.level, row.message, details)
        return row.cause

    def classify(self, worker: Reaped, status: int) -> tuple[ExitReason, Details]:
        """The reason for a wait() status, and the fields its log line names."""
        details: Details = {"pid": worker.pid}
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            details["signal"] = signal.Signals(sig).name
            if worker.aborted_at:
                return ExitReason.TIMED_OUT, details
            if sig == signal.SIGKILL:
                return self.classify_sigkill(details)
            if sig == signal.SIGTERM and not worker.alive:
                return ExitReason.STOPPED, details
            return ExitReason.SIGNALLED, details
        code = details["code"] = os.WEXITSTATUS(status)
        if code in _BOOT_STATUSES:
            # Only the heartbeat tells a boot failure from a worker that served, then died.
            ready = worker.heartbeat.ready()
            return (ExitReason.FAILED_AFTER_SERVING if ready else _BOOT_STATUSES[code]), details
        if worker.aborted_at:
            details["signal"] = "SIGABRT; stacks above"
            return ExitReason.TIMED_OUT, details
        if code != 0:
            return ExitReason.CRASHED, details
        return worker.heartbeat.exit_reason(), details

    def classify_sigkill(self, details: Details) -> tuple[ExitReason, Details]:
        """Whether the kernel's OOM killer did it, from its kill counter, not a guess."""
        now = self.oom.read()
        before = self.baseline
        if now is None or before is None:
            return ExitReason.KILLED_UNKNOWN, details
        details.update(source=self.oom.source, before=before, now=now)
        if now > before:
            self.baseline = now
            return ExitReason.OOM_KILLED, details
        return ExitReason.KILLED, details

    def leaving(self, workers: Iterable[Reaped]) -> list[Reaped]:
        """Of these running workers, those whose heartbeat tells a reason to be replaced at
        once (a request stuck past timeout), each logged; the caller stops counting them."""
        found = []
        for worker in workers:
            reason = worker.heartbeat.exit_reason()
            row = EXITS[reason]
            if row.replace_at_once:
                log.log(
                    row.level,
                    "Worker (pid:%s) is retiring: %s; starting its replacement now",
                    worker.pid,
                    row.told,
                )
                found.append(worker)
        return found
