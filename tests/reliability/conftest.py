"""The reliability suite's figures: each scenario records one row, and the session ends with
the table of them all (requests sent, failed, lost, p99 latency, worker RSS and descriptors).

`CORRAL_SOAK=1` (what `make soak` sets) selects the full sizes and durations; without it every
scenario runs its short form, sized to keep the whole suite within CI's budget.
"""

from __future__ import annotations

import pytest

from reliability.budget import SOAK
from reliability.figures import ROWS, Figures, table


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    """A row for this scenario, named after the test; printed and added to the table."""
    return Figures(request.node.name.removeprefix("test_"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    form = "full (CORRAL_SOAK=1)" if SOAK else "short"
    terminalreporter.section(f"reliability figures, {form} form")
    for line in table(ROWS):
        terminalreporter.write_line(line)
