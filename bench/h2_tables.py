"""The HTTP/2 part of the Markdown report: one table of every HTTP/2 row beside its HTTP/1.1
twin, rendered from the results document alone.

A cell reads "failed" when no round of that server answered its check or load, and carries
"(flagged)" when every round that ran had failed requests (h2load's "failed"): such figures
are shown so that a broken run can be seen, never as a result. The last columns divide a
server's HTTP/2 req/CPU-s by its twin's HTTP/1.1 figures under the same client: below 1.00x,
HTTP/2 costs that server more CPU per request than HTTP/1.1.
"""

from __future__ import annotations

from typing import Any

from servers import H1_TWINS, H2_BASELINE, H2_H1_BASELINE

MISSING = "-"
H2 = ("h2c", "h2-tls")
H1 = ("h1-keepalive", "h1-pipelined")


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def cell_of(doc: dict[str, Any], scenario: str, server: str | None) -> dict[str, Any] | None:
    if server is None:
        return None
    found: dict[str, Any] | None = doc["summary"].get(scenario, {}).get(server)
    return found


def good(cell: dict[str, Any] | None) -> bool:
    return cell is not None and cell["rounds_ok"] > 0


def figure(cell: dict[str, Any] | None, metric: str, fmt: str, with_ratio: bool = False) -> str:
    if cell is None:
        return MISSING
    if not cell["rounds_ok"] and not cell.get("rounds_flagged"):
        return "failed"
    value = cell["median"].get(metric)
    if value is None:
        return MISSING
    text = fmt.format(value)
    ratio = cell["ratio"].get(metric)
    if with_ratio and ratio is not None:
        text += f" ({ratio:.2f}x)"
    return text + (" (flagged)" if cell.get("only_flagged") else "")


def protocol_ratio(h2: dict[str, Any] | None, h1: dict[str, Any] | None) -> str:
    if not good(h2) or not good(h1):
        return MISSING
    assert h2 is not None and h1 is not None
    mine, theirs = h2["median"]["requests_per_cpu_s"], h1["median"]["requests_per_cpu_s"]
    return f"{mine / theirs:.2f}x" if mine and theirs else MISSING


def errors(cells: list[dict[str, Any] | None]) -> str:
    counts = [c["median"].get("errors") for c in cells if c is not None and c["median"]]
    flagged = sum(c.get("rounds_flagged", 0) for c in cells if c is not None)
    failed = sum(c.get("rounds_failed", 0) for c in cells if c is not None)
    text = f"{max((n or 0 for n in counts), default=0):,.0f}"
    return (
        text
        + (f"; {flagged} flagged" if flagged else "")
        + (f"; {failed} failed" if failed else "")
    )


def render(doc: dict[str, Any]) -> str:
    """The HTTP/2 table, or "" when no HTTP/2 scenario ran."""
    if not any(name in doc["summary"] for name in (*H2, *H1)):
        return ""
    head = ["server", "h2c req/CPU-s", "h2c p99 ms", "h2-tls req/CPU-s", "h2-tls p99 ms"]
    head += ["HTTP/1.1 twin", "h1-keepalive req/CPU-s", "h1-pipelined req/CPU-s"]
    head += ["h2c / h1-keepalive", "h2c / h1-pipelined", "errors (worst median); rounds"]
    lines = [row(head), row(["---"] + ["--:"] * 4 + ["---"] + ["--:"] * 4 + ["---"])]
    for server, twin in H1_TWINS.items():
        h2c, tls = cell_of(doc, "h2c", server), cell_of(doc, "h2-tls", server)
        keep, piped = cell_of(doc, "h1-keepalive", twin), cell_of(doc, "h1-pipelined", twin)
        if all(c is None for c in (h2c, tls, keep, piped)):
            continue
        cells = [server]
        for h2 in (h2c, tls):
            cells += [figure(h2, "requests_per_cpu_s", "{:,.0f}", True)]
            cells += [figure(h2, "p99_ms", "{:.1f}")]
        cells += [twin or MISSING]
        cells += [figure(c, "requests_per_cpu_s", "{:,.0f}", True) for c in (keep, piped)]
        cells += [protocol_ratio(h2c, keep), protocol_ratio(h2c, piped)]
        cells += [errors([h2c, tls, keep, piped])]
        lines.append(row(cells))
    intro = (
        "## HTTP/2 (issue 12)\n\n"
        "h2load, 8 connections x 16 streams (h2c: cleartext by prior knowledge; h2-tls: ALPN), "
        "1 worker pinned to core 0, h2load on core 1; the HTTP/1.1 twin is the same server "
        "without HTTP/2 under `h2load --h1` (keep-alive: 128 connections x 1 request; "
        "pipelined: 8 x 16). Medians of the good rounds; `N.NNx` in the HTTP/2 columns is the "
        f"ratio to **{H2_BASELINE}**, in the HTTP/1.1 ones to **{H2_H1_BASELINE}**; the last "
        "two ratio columns are the server's own HTTP/2 figure over its twin's HTTP/1.1 one.\n\n"
    )
    return intro + "\n".join(lines)
