"""Shared pytest setup: `tests/` is on sys.path so tests import `support.*`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    """Leave corral.error and corral.access as they were: other tests share the process."""
    from corral.logs.logger import access_log, close_logging, error_log

    saved = [
        (logger, list(logger.handlers), logger.level, logger.propagate, logger.disabled)
        for logger in (error_log, access_log)
    ]
    yield
    close_logging()
    for logger, handlers, level, propagate, disabled in saved:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


@pytest.fixture
def access_file(tmp_path: Path, restore_loggers: None) -> Path:
    """An access log file set up with the plain logging path."""
    from corral.logs.logger import setup_logging

    path = tmp_path / "access.log"
    setup_logging("-", "info", str(path))
    return path
