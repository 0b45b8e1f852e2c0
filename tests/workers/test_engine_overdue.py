"""The stuck-request rule: a request on a thread past `timeout` is reported, and `timeout = 0`
turns the rule off (Gunicorn's meaning of 0), instead of falling back to 30 seconds."""

from __future__ import annotations

from types import SimpleNamespace

from corral.config import load_settings
from corral.workers.engine import Worker


def worker_with(timeout: int) -> Worker:
    worker = Worker.__new__(Worker)  # the rule only reads the settings and the timeout
    worker.settings = load_settings(["--timeout", str(timeout), "app:app"], {}).settings
    worker.timeout = float(timeout) if timeout > 0 else 30.0
    return worker


def test_a_request_past_timeout_is_overdue() -> None:
    conn = SimpleNamespace(stuck=False, started=0.0)
    assert worker_with(10).overdue(conn, 11.0)  # type: ignore[arg-type]
    assert not worker_with(10).overdue(conn, 9.0)  # type: ignore[arg-type]


def test_timeout_zero_never_reports_a_request() -> None:
    conn = SimpleNamespace(stuck=False, started=0.0)
    assert not worker_with(0).overdue(conn, 10_000.0)  # type: ignore[arg-type]
