"""The Markdown report, rendered from the results document (the JSON file) and nothing else."""

from __future__ import annotations

from typing import Any

import h2_tables
import slow_clients
from report import ACCESS_LOG_TARGET, METRICS
from scenarios import SCENARIOS
from servers import ASGI_BASELINE, BASELINE, H2_BASELINE, H2_H1_BASELINE, SERVERS
from starvation import TARGET_MS

MISSING = "-"
CORRAL = "corral"
# The targets are corral's; the peers' rows are there to compare with.
REFERENCE = "(reference)"


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(head: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["--:"] * (len(head) - 1)
    return "\n".join([row(head), row(align), *(row(r) for r in rows)])


def number(value: float | None, fmt: str) -> str:
    return MISSING if value is None else fmt.format(value)


def times(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}x"


def percent(value: float | None) -> str:
    return MISSING if value is None else f"{value * 100:+.1f}%"


def ordered(names: Any, order: Any) -> list[str]:
    return [name for name in order if name in names]


def header(meta: dict[str, Any]) -> str:
    machine = meta["machine"]
    return "\n".join(
        [
            f"# corral benchmark, {meta['date']}",
            "",
            f"{machine['cores']} cores ({machine['cpu']}), Linux {machine['kernel']}, "
            f"Python {machine['python']}; load average {meta['loadavg_start']} at the start, "
            f"{meta['loadavg_end']} at the end (the machine is shared).",
            f"{meta['rounds']} round(s) of {meta['duration_s']} s per server and scenario "
            f"(after {meta['warmup_s']} s of warm-up), servers interleaved round-robin, "
            f"{meta.get('elapsed_s', 0) // 60} minutes in all; every figure is the median of "
            "the rounds. See bench/README.md for what each figure means.",
            f"`N.NNx` is the ratio to **{BASELINE}** (WSGI scenarios) or **{ASGI_BASELINE}** "
            "(ASGI scenarios) in the same scenario of the same run (HTTP/2 scenarios: see their "
            "section). "
            "For req/s and req/CPU-s higher is better; for everything else lower is better.",
            "Pinned scenarios: server on core 0, `wrk -t1 -c64` on core 1 (WebSocket echo: "
            "`wsload.py`, 64 connections, on core 1; a request there is one echoed message).",
        ]
    )


def ratio_matrix(doc: dict[str, Any], metric: str, title: str, interface: str) -> str:
    """One interface's scenarios (columns) by server (rows); empty if none of them ran."""
    summary = doc["summary"]
    scenarios = [
        name for name in ordered(summary, SCENARIOS) if SCENARIOS[name].interface == interface
    ]
    if not scenarios:
        return ""
    servers = ordered({s for sc in scenarios for s in summary[sc]}, SERVERS)
    rows = []
    for server in servers:
        cells = [summary[sc].get(server, {}).get("ratio", {}).get(metric) for sc in scenarios]
        rows.append([server, *(times(c) for c in cells)])
    return f"## {title}\n\n" + table(["server", *scenarios], rows)


def asgi_targets(doc: dict[str, Any]) -> str:
    """corral's ASGI targets (issue 11), from the req/CPU-s medians; empty if they did not run."""
    summary = doc["summary"]

    def per_cpu(scenario: str, server: str) -> float | None:
        value = summary.get(scenario, {}).get(server, {}).get("median", {})
        return value.get("requests_per_cpu_s")

    targets = [
        ("asgi-keepalive", "corral-asgi", ASGI_BASELINE, 1.2),
        ("asgi-keepalive", "corral-asgi", "granian-asgi", 1.0),
        ("asgi-keepalive", "corral-asgi-uvloop", "corral-asgi", 1.0),
        ("ws-echo-64", "corral-asgi", ASGI_BASELINE, 1.0),
        ("ws-echo-16k", "corral-asgi", ASGI_BASELINE, 1.0),
    ]
    rows = []
    for scenario, ours, theirs, factor in targets:
        mine, other = per_cpu(scenario, ours), per_cpu(scenario, theirs)
        if mine is None or other is None:
            continue
        verdict = "pass" if mine >= factor * other else "FAIL"
        want = f"≥ {factor:g}x {theirs}"
        ratio = times(mine / other) if other else MISSING
        rows.append([scenario, ours, number(mine, "{:,.0f}"), want, number(other, "{:,.0f}")])
        rows[-1] += [ratio, verdict]
    if not rows:
        return ""
    head = ["scenario", "server", "req/CPU-s", "target", "theirs", "ratio", "verdict"]
    return "## ASGI targets (issue 11)\n\n" + table(head, rows)


def scenario_table(doc: dict[str, Any], scenario: str) -> str:
    cells = doc["summary"][scenario]
    head = ["server", *(m.label for m in METRICS.values()), "rounds"]
    rows = []
    for server in ordered(cells, SERVERS):
        cell = cells[server]
        figures = [
            f"{number(cell['median'][key], m.fmt)} ({times(cell['ratio'][key])})"
            if cell["ratio"].get(key) is not None
            else number(cell["median"][key], m.fmt)
            for key, m in METRICS.items()
        ]
        rows.append([server, *figures, rounds(cell)])
    notes = [f"- {server}: {note}" for server in cells for note in cells[server]["notes"]]
    title = f"### {scenario}: {SCENARIOS[scenario].title}\n\n"
    return title + table(head, rows) + ("\n\n" + "\n".join(notes) if notes else "")


def rounds(cell: dict[str, Any]) -> str:
    """Good rounds, and those flagged for failed requests or failed outright, if any."""
    text = str(cell["rounds_ok"])
    if cell.get("rounds_flagged"):
        text += f" (+{cell['rounds_flagged']} flagged" + (", shown" if cell["only_flagged"] else "")
        text += ")"
    if cell.get("rounds_failed"):
        text += f" (+{cell['rounds_failed']} failed)"
    return text


def access_log_table(doc: dict[str, Any]) -> str:
    rows = []
    for entry in doc["access_log"]:
        rps, per_cpu = entry["requests_per_s"], entry["requests_per_cpu_s"]
        verdict = REFERENCE
        if entry["server"].startswith(CORRAL):
            under = per_cpu["cost"] is not None and per_cpu["cost"] < ACCESS_LOG_TARGET
            verdict = "pass" if under else "FAIL"
        rows.append(
            [
                entry["server"],
                *(number(rps[k], "{:,.0f}") for k in ("off", "on")),
                percent(rps["cost"]),
                *(number(per_cpu[k], "{:,.0f}") for k in ("off", "on")),
                percent(per_cpu["cost"]),
                verdict,
            ]
        )
    head = ["server", "req/s off", "req/s on", "cost", "req/CPU-s off", "req/CPU-s on", "cost"]
    return (
        "## Access log cost\n\n"
        "`--access-logfile /dev/null` (scenario access-log) against no access log (scenario "
        f"keepalive). corral's target: a cost under {ACCESS_LOG_TARGET:.0%} of req/CPU-s.\n\n"
        + table([*head, "verdict"], rows)
    )


def starvation_table(doc: dict[str, Any]) -> str:
    rows = [
        [
            entry["server"],
            str(entry["probes"]),
            number(entry["median_ms"], "{:.1f}"),
            number(entry["worst_ms"], "{:.1f}"),
            str(entry["over_target"]),
            number(entry["load_requests_per_s"], "{:,.0f}"),
            ("pass" if entry["passed"] else "FAIL")
            if entry["server"].startswith(CORRAL)
            else REFERENCE,
        ]
        for entry in doc["starvation"]
    ]
    head = ["server", "probes", "median ms", "worst ms", f"≥ {TARGET_MS:.0f} ms", "load req/s"]
    return (
        "## Starvation check\n\n"
        "One worker (pinned) serves 64 keep-alive wrk clients; meanwhile a new connection is "
        "opened every 0.2 s and its first response timed. Target: every probe under "
        f"{TARGET_MS:.0f} ms.\n\n" + table([*head, "verdict"], rows)
    )


def server_rank(name: str) -> int:
    """Where a server's row goes: the order of SERVERS, as in every table."""
    names = list(SERVERS)
    return names.index(name) if name in names else len(names)


def probe_ms(entry: dict[str, Any], key: str) -> str:
    """A percentile of the probes; None means it fell on a probe that got no answer."""
    if not entry["probes"]:
        return MISSING
    value = entry[key]
    return f"> {slow_clients.PROBE_DEADLINE * 1000:.0f}" if value is None else f"{value:.1f}"


def slow_clients_table(doc: dict[str, Any]) -> str:
    rows = [
        [
            entry["server"],
            str(entry["probes"]),
            *(probe_ms(entry, key) for key in ("p50_ms", "p99_ms", "max_ms")),
            str(entry["unanswered"]),
            f"{entry['readers_started']}/{slow_clients.READERS}",
            str(entry["slow_closed"]),
            f"{number(entry['idle_rss_mib'], '{:.1f}')} → "
            f"{number(entry['loaded_rss_mib'], '{:.1f}')}",
            ("pass" if entry["passed"] else "FAIL")
            if entry["server"].startswith(CORRAL)
            else REFERENCE,
        ]
        for entry in sorted(doc["slow_clients"], key=lambda e: server_rank(e["server"]))
    ]
    head = ["server", "probes", "p50 ms", "p99 ms", "max ms", "unanswered"]
    head += ["readers served", "slow closed", "worker RSS MiB"]
    size = slow_clients.BODY_SIZE >> 20
    return (
        "## Slow clients\n\n"
        f"One worker (pinned) holds {slow_clients.READERS} slow readers (a {size} MiB response "
        f"each, read {slow_clients.TRICKLE} bytes every {slow_clients.TRICKLE_INTERVAL:g} s) "
        f"and {slow_clients.UPLOADERS} slow uploaders (Content-Length {size} MiB, "
        f"{slow_clients.TRICKLE} bytes sent every {slow_clients.TRICKLE_INTERVAL:g} s); "
        f"meanwhile a new connection is opened every {slow_clients.PROBE_INTERVAL * 1000:g} ms "
        f"and timed to the whole answer of GET /. Unanswered: no answer within "
        f"{slow_clients.PROBE_DEADLINE:g} s. Readers served: whose response had begun when the "
        "probes started; slow closed: slow clients the server had closed by the end. "
        f"Target: p99 under {slow_clients.TARGET_P99_MS:g} ms, every probe answered.\n\n"
        + table([*head, "verdict"], rows)
    )


def listing(title: str, lines: list[str]) -> str:
    return f"## {title}\n\n" + "\n".join(f"- {line}" for line in lines) if lines else ""


def render(doc: dict[str, Any]) -> str:
    meta = doc["meta"]
    versions = [f"{name} {version}" for name, version in meta["versions"].items()]
    # A run of the checks alone (--scenarios starvation,slow-clients) has no load figures.
    loads = [
        ratio_matrix(
            doc, "requests_per_cpu_s", f"Requests per CPU-second, ratio to {BASELINE}", "wsgi"
        ),
        ratio_matrix(doc, "requests_per_s", f"Requests per second, ratio to {BASELINE}", "wsgi"),
        ratio_matrix(
            doc,
            "requests_per_cpu_s",
            f"ASGI: requests (WebSocket: messages) per CPU-second, ratio to {ASGI_BASELINE}",
            "asgi",
        ),
        ratio_matrix(
            doc,
            "requests_per_s",
            f"ASGI: requests (WebSocket: messages) per second, ratio to {ASGI_BASELINE}",
            "asgi",
        ),
        asgi_targets(doc),
        h2_tables.render(doc),
        ratio_matrix(
            doc,
            "requests_per_cpu_s",
            f"HTTP/2 scenarios: requests per CPU-second, ratio to {H2_BASELINE} "
            f"(h2c, h2-tls) or {H2_H1_BASELINE} (h1-*)",
            "http2",
        ),
        "## Scenarios",
        *(scenario_table(doc, name) for name in ordered(doc["summary"], SCENARIOS)),
    ]
    parts = [
        header(meta),
        *(loads if doc["summary"] else []),
        access_log_table(doc) if doc["access_log"] else "",
        starvation_table(doc) if doc["starvation"] else "",
        slow_clients_table(doc) if doc.get("slow_clients") else "",
        listing("Skipped", meta["skipped"]),
        listing("Failed runs", doc["failures"]),
        listing(
            "Runs flagged for failed requests (left out of the medians)", doc.get("flagged", [])
        ),
        listing("Versions", versions),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"
