"""The table of why a worker exited: every row usable, every restart cause reachable, and the
codes a worker stores in its heartbeat stable."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from corral.exit_reasons import (
    EXITS,
    RESTART_CAUSES,
    TOLD_BY_MASTER,
    ExitReason,
    told_reason,
)
from corral.workers import heartbeat

# Every field a message may name, as the master fills them in.
FIELDS = {
    "pid": 42,
    "code": 3,
    "signal": "SIGSEGV",
    "source": "/proc/vmstat",
    "before": 1,
    "now": 2,
}


def test_every_reason_has_one_row() -> None:
    assert set(EXITS) == set(ExitReason)


@pytest.mark.parametrize("reason", list(ExitReason), ids=lambda r: r.name)
def test_every_message_formats(reason: ExitReason) -> None:
    row = EXITS[reason]
    line = row.message % FIELDS
    assert "%" not in line
    assert row.level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)


def test_restart_causes_are_exactly_those_in_the_table() -> None:
    assert {row.cause for row in EXITS.values()} - {None} == set(RESTART_CAUSES)
    assert len(set(RESTART_CAUSES)) == len(RESTART_CAUSES)


def test_stuck_request_is_its_own_cause_and_replaced_at_once() -> None:
    row = EXITS[ExitReason.STUCK_REQUEST]
    assert row.cause == "stuck_request"
    assert row.replace_at_once
    assert row.level == logging.ERROR
    assert row.told == "a request ran past timeout"
    assert [r for r, x in EXITS.items() if x.replace_at_once] == [ExitReason.STUCK_REQUEST]


def test_only_boot_and_load_failures_halt_with_gunicorns_statuses() -> None:
    halting = {reason: row.halt for reason, row in EXITS.items() if row.halt}
    assert halting == {ExitReason.BOOT_FAILED: 3, ExitReason.APP_LOAD_FAILED: 4}
    assert EXITS[ExitReason.BOOT_FAILED].message == "Worker failed to boot."


def test_heartbeat_codes_are_stable() -> None:
    """Workers and the master of one version share memory, but the codes are also what the
    engine is written against: renumbering them is a change to notice."""
    assert heartbeat.REASON_MAX_REQUESTS == 1
    assert heartbeat.REASON_MAX_MEMORY == 2
    assert heartbeat.REASON_RELOAD == 3
    assert heartbeat.REASON_ORPHANED == 4
    assert heartbeat.REASON_STUCK_REQUEST == 5


def test_told_reasons_and_their_words() -> None:
    told = [r for r in ExitReason if r < TOLD_BY_MASTER and r != ExitReason.EXITED]
    for reason in told:
        row = EXITS[reason]
        assert row.told and row.message == f"Worker exiting (pid: %(pid)s): {row.told}"
    assert [r for r in ExitReason if r >= TOLD_BY_MASTER and EXITS[r].told] == []


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (0, ExitReason.EXITED),
        (1, ExitReason.MAX_REQUESTS),
        (5, ExitReason.STUCK_REQUEST),
        (6, ExitReason.EXITED),  # unknown
        (-1, ExitReason.EXITED),
        (int(ExitReason.BOOT_FAILED), ExitReason.EXITED),  # a worker cannot tell that one
    ],
)
def test_told_reason(code: int, reason: ExitReason) -> None:
    assert told_reason(code) is reason


def test_heartbeat_carries_the_reason() -> None:
    beat = heartbeat.Heartbeat()
    try:
        assert beat.exit_reason() is ExitReason.EXITED
        beat.set_exit_reason(heartbeat.REASON_STUCK_REQUEST)
        assert beat.exit_reason() is ExitReason.STUCK_REQUEST
    finally:
        beat.close()


PLACEHOLDERS = {
    "pid": "N",
    "code": "CODE",
    "signal": "SIGNAL",
    "source": "FILE",
    "before": "A",
    "now": "B",
}


@pytest.mark.parametrize("reason", list(ExitReason), ids=lambda r: r.name)
def test_every_log_line_is_documented(reason: ExitReason) -> None:
    """docs/running.md lists each line with its fields as placeholders."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "running.md").read_text()
    line = re.sub(r"%\((\w+)\)[sd]", lambda m: PLACEHOLDERS[m[1]], EXITS[reason].message)
    assert f"`{line}`" in docs
