"""ExitReporter: which reason the master gives for each way a worker can end, through a real
heartbeat block, a fake OOM-kill counter and wait() statuses built as Linux encodes them."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from corral.errors import HaltServer
from corral.exit_reasons import ExitReason
from corral.master.exits import ExitReporter
from corral.workers.heartbeat import REASON_MAX_REQUESTS, REASON_STUCK_REQUEST, Heartbeat


def exited(code: int) -> int:
    return code << 8


def killed(sig: int) -> int:
    return sig


class FakeOom:
    """The kernel's OOM-kill counter, as the test sets it (None: unreadable here)."""

    source = "/sys/fs/cgroup/memory.events"

    def __init__(self, value: int | None = 0) -> None:
        self.value = value

    def read(self) -> int | None:
        return self.value


@dataclass
class FakeWorker:
    pid: int = 4321
    alive: bool = True
    aborted_at: float = 0.0
    heartbeat: Heartbeat = field(default_factory=Heartbeat)


@pytest.fixture
def worker() -> Iterator[FakeWorker]:
    fake = FakeWorker()
    yield fake
    fake.heartbeat.close()


def reporter(oom: FakeOom | None = None) -> ExitReporter:
    return ExitReporter(oom if oom is not None else FakeOom())


def test_boot_failure_before_ready_halts(worker: FakeWorker) -> None:
    with pytest.raises(HaltServer) as info:
        reporter().report(worker, exited(3), stopping=False)
    assert (info.value.reason, info.value.exit_status) == ("Worker failed to boot.", 3)


def test_app_load_failure_before_ready_halts(worker: FakeWorker) -> None:
    with pytest.raises(HaltServer) as info:
        reporter().report(worker, exited(4), stopping=False)
    assert (info.value.reason, info.value.exit_status) == ("App failed to load.", 4)


@pytest.mark.parametrize("code", [3, 4])
def test_worker_that_served_is_never_a_boot_failure(
    worker: FakeWorker, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    worker.heartbeat.mark_ready()
    with caplog.at_level(logging.INFO, "corral.error"):
        cause = reporter().report(worker, exited(code), stopping=False)
    assert cause == "crash"
    assert f"Worker (pid:4321) exited with code {code} after it had served" in caplog.text


def test_boot_failure_while_stopping_does_not_halt(worker: FakeWorker) -> None:
    assert reporter().report(worker, exited(3), stopping=True) is None


@pytest.mark.parametrize(
    ("status", "alive", "cause", "words"),
    [
        (exited(0), False, None, "Worker exiting (pid: 4321)"),
        (exited(1), True, "crash", "Worker (pid:4321) exited with code 1"),
        (killed(signal.SIGSEGV), True, "crash", "Worker (pid:4321) was sent SIGSEGV!"),
        (killed(signal.SIGTERM), True, "crash", "Worker (pid:4321) was sent SIGTERM!"),
        (killed(signal.SIGTERM), False, None, ""),  # the master's own stop: not a restart
    ],
)
def test_statuses(
    worker: FakeWorker,
    caplog: pytest.LogCaptureFixture,
    status: int,
    alive: bool,
    cause: str | None,
    words: str,
) -> None:
    worker.alive = alive
    with caplog.at_level(logging.INFO, "corral.error"):
        assert reporter().report(worker, status, stopping=False) == cause
    assert words in caplog.text


@pytest.mark.parametrize(
    ("reason", "cause", "words"),
    [
        (REASON_MAX_REQUESTS, "max_requests", "max_requests reached"),
        (REASON_STUCK_REQUEST, "stuck_request", "a request ran past timeout"),
    ],
)
def test_reason_told_through_the_heartbeat(
    worker: FakeWorker, caplog: pytest.LogCaptureFixture, reason: int, cause: str, words: str
) -> None:
    worker.heartbeat.set_exit_reason(reason)
    with caplog.at_level(logging.INFO, "corral.error"):
        assert reporter().report(worker, exited(0), stopping=False) == cause
    assert f"Worker exiting (pid: 4321): {words}" in caplog.text


@pytest.mark.parametrize("status", [killed(signal.SIGKILL), killed(signal.SIGABRT), exited(1)])
def test_timed_out_worker(
    worker: FakeWorker, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    worker.aborted_at = 1.0
    worker.alive = False
    with caplog.at_level(logging.INFO, "corral.error"):
        assert reporter().report(worker, status, stopping=False) == "timeout"
    assert "Worker (pid:4321) was killed after timing out" in caplog.text


def test_sigkill_and_the_oom_counter(worker: FakeWorker, caplog: pytest.LogCaptureFixture) -> None:
    oom = FakeOom(5)
    exits = reporter(oom)
    exits.mark()
    oom.value = 6
    with caplog.at_level(logging.INFO, "corral.error"):
        assert exits.report(worker, killed(signal.SIGKILL), stopping=False) == "oom"
        exits.settle()
        assert exits.report(worker, killed(signal.SIGKILL), stopping=False) == "crash"
    assert "OOM killer (oom_kill in /sys/fs/cgroup/memory.events went from 5 to 6)" in caplog.text
    assert "by another process; not the OOM killer" in caplog.text


def test_sigkill_without_a_counter(worker: FakeWorker, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "corral.error"):
        assert reporter(FakeOom(None)).report(worker, killed(signal.SIGKILL), False) == "crash"
    assert "whether the OOM killer did it is unknown" in caplog.text


def test_leaving_finds_workers_to_replace_at_once(caplog: pytest.LogCaptureFixture) -> None:
    stuck, recycled, plain = FakeWorker(pid=1), FakeWorker(pid=2), FakeWorker(pid=3)
    try:
        stuck.heartbeat.set_exit_reason(REASON_STUCK_REQUEST)
        recycled.heartbeat.set_exit_reason(REASON_MAX_REQUESTS)  # exits soon on its own
        with caplog.at_level(logging.INFO, "corral.error"):
            assert reporter().leaving([stuck, recycled, plain]) == [stuck]
        assert (
            "Worker (pid:1) is retiring: a request ran past timeout; "
            "starting its replacement now" in caplog.text
        )
        assert stuck.heartbeat.exit_reason() is ExitReason.STUCK_REQUEST
    finally:
        for fake in (stuck, recycled, plain):
            fake.heartbeat.close()
