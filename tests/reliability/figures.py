"""One row of figures per scenario, and the table they make at the end of the session."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

ROWS: list[Figures] = []


@dataclass
class Figures:
    """What a scenario measured. `failed`: answered with a status the scenario did not expect;
    `lost`: no answer at all (reset, closed early, timed out)."""

    scenario: str
    sent: int = 0
    failed: int = 0
    lost: int = 0
    p99_ms: float | None = None
    rss_mib: tuple[float | None, float | None] = (None, None)
    fds: tuple[int | None, int | None] = (None, None)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def report(self) -> None:
        """Print this scenario's line (shown with -s or on failure) and add it to the table."""
        ROWS.append(self)
        sys.stdout.write(" | ".join(cells(self)) + "\n")


COLUMNS = ("scenario", "sent", "failed", "lost", "p99 ms", "RSS MiB", "fds", "notes")


def _pair(pair: tuple[float | int | None, float | int | None], spec: str) -> str:
    before, after = pair
    if before is None and after is None:
        return "-"
    return " -> ".join("?" if v is None else format(v, spec) for v in (before, after))


def cells(row: Figures) -> tuple[str, ...]:
    return (
        row.scenario,
        str(row.sent),
        str(row.failed),
        str(row.lost),
        "-" if row.p99_ms is None else f"{row.p99_ms:.1f}",
        _pair(row.rss_mib, ".1f"),
        _pair(row.fds, "d"),
        "; ".join(row.notes),
    )


def table(rows: list[Figures]) -> list[str]:
    body = [cells(row) for row in rows]
    widths = [max(len(c) for c in column) for column in zip(COLUMNS, *body, strict=False)]
    widths[-1] = 0  # notes: no padding, they run to the end of the line

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return [line(COLUMNS), line(tuple("-" * max(w, 5) for w in widths)), *map(line, body)]
