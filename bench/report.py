"""From runs to results: medians over rounds, ratios to the baseline, Markdown and JSON.

Every figure is the median of the rounds that succeeded, and its ratio is that median divided
by the baseline's median in the same scenario of the same run: gunicorn-sync's in the WSGI
scenarios, uvicorn-asgi's in the ASGI ones, the one each HTTP/2 scenario names in those. A
run flagged for failed requests is left out of the medians. Nothing here measures anything.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import slow_clients
from scenarios import ACCESS_LOG_REFERENCE, SCENARIOS
from servers import BASELINE
from session import RunResult
from slow_clients import SlowClientsResult
from starvation import TARGET_MS, StarvationResult

ACCESS_LOG_TARGET = 0.15


@dataclass(frozen=True)
class Metric:
    label: str
    fmt: str
    higher_is_better: bool
    has_ratio: bool = True


METRICS = {
    "requests_per_s": Metric("req/s", "{:,.0f}", True),
    "requests_per_cpu_s": Metric("req/CPU-s", "{:,.0f}", True),
    "p50_ms": Metric("p50 ms", "{:.2f}", False),
    "p99_ms": Metric("p99 ms", "{:.2f}", False),
    "errors": Metric("errors", "{:,.0f}", False),
    "worker_rss_mib": Metric("idle worker RSS MiB", "{:.1f}", False),
    "worker_pss_mib": Metric("idle worker PSS MiB", "{:.1f}", False),
    "start_ms": Metric("start → 1st response ms", "{:.0f}", False),
    # Not the server's figure but the run's noise: how much else the machine was doing.
    "other_load": Metric("other load (cores)", "{:.2f}", False, has_ratio=False),
}

Summary = dict[str, dict[str, dict[str, Any]]]  # scenario → server → figures


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def baseline_of(scenario: str) -> str:
    known = SCENARIOS.get(scenario)
    return known.baseline if known is not None else BASELINE


def summarize(runs: list[RunResult]) -> Summary:
    summary: Summary = {}
    for run in runs:
        cell = summary.setdefault(run.scenario, {}).setdefault(run.server, {"runs": []})
        cell["runs"].append(run)
    for scenario, servers in summary.items():
        for cell in servers.values():
            runs = cell.pop("runs")
            ok = [run for run in runs if run.ok and not run.flagged]
            flagged = [run for run in runs if run.ok and run.flagged]
            cell["rounds_ok"] = len(ok)
            cell["rounds_flagged"] = len(flagged)
            cell["rounds_failed"] = sum(not run.ok for run in runs)
            # A flagged run (failed requests) is never a good one: its figures show only
            # when no round of that server was good, and the report marks them.
            cell["only_flagged"] = not ok and bool(flagged)
            counted = ok or flagged
            cell["median"] = {m: median(getattr(run, m) for run in counted) for m in METRICS}
            cell["notes"] = sorted({run.note for run in counted if run.note})
            cell["notes"] += sorted({f"round {r.round} flagged: {r.flagged}" for r in flagged})
        base = servers.get(baseline_of(scenario), {}).get("median", {})
        for cell in servers.values():
            cell["ratio"] = {
                m: ratio(cell["median"][m], base.get(m))
                for m, metric in METRICS.items()
                if metric.has_ratio
            }
    return summary


def access_log_cost(summary: Summary) -> list[dict[str, Any]]:
    rows = []
    for server, on in summary.get("access-log", {}).items():
        off = summary.get(ACCESS_LOG_REFERENCE, {}).get(server)
        if off is None:
            continue
        row: dict[str, Any] = {"server": server}
        for metric in ("requests_per_s", "requests_per_cpu_s"):
            before, after = off["median"][metric], on["median"][metric]
            row[metric] = {"off": before, "on": after, "cost": cost(before, after)}
        rows.append(row)
    return rows


def cost(before: float | None, after: float | None) -> float | None:
    return 1.0 - after / before if before and after is not None else None


def starvation_summary(results: list[StarvationResult]) -> list[dict[str, Any]]:
    by_server: dict[str, list[StarvationResult]] = {}
    for result in results:
        by_server.setdefault(result.server, []).append(result)
    rows = []
    for server, checks in by_server.items():
        probes = [ms for check in checks for ms in check.probes_ms]
        worst = max(probes) if probes else None
        rows.append(
            {
                "server": server,
                "probes": len(probes),
                "median_ms": median(probes),
                "worst_ms": worst,
                "over_target": sum(ms >= TARGET_MS for ms in probes),
                "load_requests_per_s": median(c.load_requests_per_s for c in checks),
                "errors": [c.error for c in checks if c.error],
                "passed": worst is not None and worst < TARGET_MS,
            }
        )
    return rows


def slow_clients_summary(results: list[SlowClientsResult]) -> list[dict[str, Any]]:
    """Per server, every round's probes together; a percentile that falls on an unanswered
    probe is None (over the deadline)."""
    by_server: dict[str, list[SlowClientsResult]] = {}
    for result in results:
        by_server.setdefault(result.server, []).append(result)
    rows = []
    for server, checks in by_server.items():
        probes = [ms for c in checks for ms in c.probes_ms]
        p99 = slow_clients.percentile(probes, 0.99)
        unanswered = sum(c.unanswered for c in checks)
        rows.append(
            {
                "server": server,
                "probes": len(probes),
                "p50_ms": slow_clients.percentile(probes, 0.5),
                "p99_ms": p99,
                "max_ms": slow_clients.percentile(probes, 1.0),
                "unanswered": unanswered,
                "bad_answers": sum(c.bad_answers for c in checks),
                "readers_started": min((c.readers_started for c in checks), default=0),
                "slow_closed": max((c.slow_closed for c in checks), default=0),
                "idle_rss_mib": median(c.idle_rss_mib for c in checks),
                "loaded_rss_mib": median(c.loaded_rss_mib for c in checks),
                "errors": [c.error for c in checks if c.error],
                "passed": p99 is not None
                and p99 < slow_clients.TARGET_P99_MS
                and unanswered == 0
                and not any(c.error for c in checks),
            }
        )
    return rows


def document(
    meta: dict[str, Any],
    runs: list[RunResult],
    starvation: list[StarvationResult],
    slow: list[SlowClientsResult] | None = None,
) -> dict[str, Any]:
    """Everything the JSON file holds; the Markdown is rendered from this alone."""
    summary = summarize(runs)
    return {
        "meta": meta,
        "summary": summary,
        "access_log": access_log_cost(summary),
        "starvation": starvation_summary(starvation),
        "slow_clients": slow_clients_summary(slow or []),
        "failures": [
            f"{r.scenario} / {r.server} / round {r.round}: {r.error}" for r in runs if r.error
        ],
        "flagged": [
            f"{r.scenario} / {r.server} / round {r.round}: {r.flagged}" for r in runs if r.flagged
        ],
        "runs": [asdict(run) for run in runs],
        "starvation_runs": [asdict(s) for s in starvation],
        "slow_clients_runs": [asdict(s) for s in slow or []],
    }


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n")
