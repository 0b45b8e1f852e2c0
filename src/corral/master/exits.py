"""Why a worker died, said clearly in the log, and as a cause the metrics can count.

The master calls `report()` for every reaped worker. A SIGKILL it did not send itself is
checked against the kernel's OOM-kill counter (read before reaping, compared after), so the log
says whether the OOM killer did it instead of guessing. A worker that left on its own tells why
through its heartbeat block. This module only reads counters and writes log lines: it never
signals or reaps a process.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

from corral.errors import EXIT_APP_LOAD_ERROR, EXIT_WORKER_BOOT_ERROR, HaltServer
from corral.metrics.stats import RestartCause
from corral.resources import OomCounter
from corral.workers.heartbeat import (
    EXIT_REASONS,
    REASON_MAX_MEMORY,
    REASON_MAX_REQUESTS,
    REASON_RELOAD,
)

if TYPE_CHECKING:
    from corral.workers.engine import Worker

log = logging.getLogger("corral.error")

# Heartbeat exit reasons -> restart causes (the names metrics use).
_CAUSES: dict[str, RestartCause] = {
    EXIT_REASONS[REASON_MAX_REQUESTS]: "max_requests",
    EXIT_REASONS[REASON_MAX_MEMORY]: "max_worker_memory",
    EXIT_REASONS[REASON_RELOAD]: "reload",
}


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

    def report(self, worker: Worker, status: int, stopping: bool) -> RestartCause | None:
        """Log why the worker ended; return the restart cause, or None for a clean exit.
        Raises HaltServer when a worker could not boot or load the application."""
        pid = worker.pid
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            name = signal.Signals(sig).name
            if worker.aborted_at:
                log.error("Worker (pid:%s) was killed after timing out (%s)", pid, name)
                return "timeout"
            if sig == signal.SIGKILL:
                return self.report_sigkill(pid)
            if sig != signal.SIGTERM or worker.alive:
                log.error("Worker (pid:%s) was sent %s!", pid, name)
                return "crash"
            return None
        code = os.WEXITSTATUS(status)
        if code == EXIT_WORKER_BOOT_ERROR and not stopping:
            raise HaltServer("Worker failed to boot.", EXIT_WORKER_BOOT_ERROR)
        if code == EXIT_APP_LOAD_ERROR and not stopping:
            raise HaltServer("App failed to load.", EXIT_APP_LOAD_ERROR)
        if worker.aborted_at:
            log.error("Worker (pid:%s) was killed after timing out (SIGABRT; stacks above)", pid)
            return "timeout"
        if code != 0:
            log.error("Worker (pid:%s) exited with code %s", pid, code)
            return "crash"
        reason = worker.heartbeat.exit_reason()
        if reason:
            log.info("Worker exiting (pid: %s): %s", pid, reason)
            return _CAUSES.get(reason)
        log.info("Worker exiting (pid: %s)", pid)
        return None

    def report_sigkill(self, pid: int) -> RestartCause:
        """Say whether the kernel's OOM killer did it, from its kill counter, not a guess."""
        now = self.oom.read()
        before = self.baseline
        if now is None or before is None:
            log.error(
                "Worker (pid:%s) was sent SIGKILL! (no OOM-kill counter is readable here, "
                "so whether the OOM killer did it is unknown)",
                pid,
            )
            return "crash"
        if now > before:
            log.error(
                "Worker (pid:%s) was killed by the kernel's OOM killer "
                "(oom_kill in %s went from %d to %d)",
                pid,
                self.oom.source,
                before,
                now,
            )
            self.baseline = now
            return "oom"
        log.error(
            "Worker (pid:%s) was sent SIGKILL by another process; not the OOM killer "
            "(oom_kill in %s unchanged at %d)",
            pid,
            self.oom.source,
            now,
        )
        return "crash"
