"""Answers of the control socket as text for people: a table per `show` command, aligned
columns, "-" for what the server did not say (Gunicorn's answers lack corral's columns).
Anything without a table of its own is shown as indented JSON. Pure formatting: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

Row = Sequence[object]


def table(headers: Sequence[str], rows: Sequence[Row]) -> str:
    cells = [[str(h) for h in headers]] + [[dash(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def dash(value: object) -> str:
    return "-" if value is None else str(value)


def size(value: object) -> str:
    if not isinstance(value, int):
        return "-"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value >= 1 << shift:
            return f"{value / (1 << shift):.1f} {unit}"
    return f"{value} B"


def seconds(value: object) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    value = float(value)
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def workers_table(workers: list[dict[str, Any]]) -> str:
    if not workers:
        return "No workers running"
    rows = [
        (
            w.get("pid"),
            w.get("age"),
            w.get("state") or ("serving" if w.get("booted") else "booting"),
            seconds(w.get("uptime")),
            w.get("requests"),
            w.get("in_flight"),
            size(w.get("rss")),
            seconds(w.get("last_heartbeat")) + " ago",
        )
        for w in workers
    ]
    headers = ("PID", "AGE", "STATE", "UPTIME", "REQUESTS", "IN FLIGHT", "RSS", "HEARTBEAT")
    return table(headers, rows)


def show_workers(data: dict[str, Any]) -> str:
    workers = data.get("workers", [])
    return f"{workers_table(workers)}\n\n{data.get('count', len(workers))} workers"


def show_all(data: dict[str, Any]) -> str:
    master = data.get("arbiter") or {}
    workers = data.get("web_workers", [])
    return f"Master pid {master.get('pid', '-')}\n\n{workers_table(workers)}"


def show_stats(data: dict[str, Any]) -> str:
    rows: list[Row] = [
        ("uptime", seconds(data.get("uptime"))),
        ("master pid", data.get("pid")),
        ("workers", f"{dash(data.get('workers_current'))} of {dash(data.get('workers_target'))}"),
        ("workers spawned", data.get("workers_spawned")),
        ("workers killed", data.get("workers_killed")),
        ("reloads", data.get("reloads")),
    ]
    optional = (
        ("requests served", "requests_served"),
        ("requests answered", "requests_total"),
        ("in flight", "in_flight"),
    )
    rows += [(label, data[key]) for label, key in optional if key in data]
    for group in ("connections", "requests", "status_codes", "restarts"):
        values = data.get(group) or {}
        rows += [(f"{group.replace('_', ' ')} {k}", v) for k, v in values.items() if v]
    return table(("", ""), rows).split("\n", 1)[1]


def show_connections(data: dict[str, Any]) -> str:
    """The counts by state per worker, then each worker's connections one by one (when the
    server lists them: older answers and Gunicorn's only count)."""
    workers = data.get("workers", [])
    states = list(data.get("total") or {})
    rows = [
        (w.get("pid"), *[(w.get("connections") or {}).get(s) for s in states], w.get("total"))
        for w in workers
    ]
    total = data.get("total") or {}
    rows.append(("all", *[total.get(s) for s in states], data.get("count")))
    parts = [table(("PID", *[s.upper() for s in states], "TOTAL"), rows)]
    parts += [connection_list(w) for w in workers if "list" in w]
    return "\n\n".join(parts)


def connection_list(worker: dict[str, Any]) -> str:
    listed = worker.get("list")
    title = f"Worker {dash(worker.get('pid'))}"
    if listed is None:
        return f"{title}: connections not available"
    reported = worker.get("reported")
    if reported is not None:
        title += f" (as of {seconds(reported)} ago)"
    if not listed:
        return f"{title}: no open connections"
    headers = ["PEER", "PROTOCOL", "STATE", "AGE", "REQUESTS"]
    rows: list[list[object]] = [
        [
            peer(c.get("address"), c.get("port")),
            c.get("protocol") + ("+tls" if c.get("tls") else "") if c.get("protocol") else None,
            c.get("state"),
            seconds(c.get("age")),
            c.get("requests"),
        ]
        for c in listed
    ]
    if any(c.get("streams") is not None for c in listed):  # HTTP/2 connections among them
        headers.append("STREAMS")
        for row, c in zip(rows, listed, strict=True):
            row.append(c.get("streams"))
    text = f"{title}\n" + table(headers, rows)
    unlisted = worker.get("unlisted")
    if unlisted:
        text += f"\n... and {unlisted} more not listed"
    return text


def peer(address: object, port: object) -> str:
    """host:port, [v6]:port, or the address alone (a unix socket)."""
    host = dash(address)
    if port is None:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def show_listeners(data: dict[str, Any]) -> str:
    listeners = data.get("listeners", [])
    if not listeners:
        return "No listeners"
    rows = [
        (lst.get("address"), lst.get("type"), lst.get("fd"), lst.get("queued"), lst.get("backlog"))
        for lst in listeners
    ]
    return table(("ADDRESS", "TYPE", "FD", "QUEUED", "BACKLOG"), rows)


def show_config(data: dict[str, Any]) -> str:
    width = max((len(k) for k in data), default=0)
    return "\n".join(f"{k:{width}} = {json.dumps(data[k])}" for k in sorted(data))


def show_help(data: dict[str, Any]) -> str:
    commands = data.get("commands", {})
    width = max((len(c) for c in commands), default=0)
    return "\n".join(f"  {c:{width}}  {d}" for c, d in commands.items())


FORMATS: dict[str, Callable[[dict[str, Any]], str]] = {
    "show workers": show_workers,
    "show all": show_all,
    "show stats": show_stats,
    "show connections": show_connections,
    "show listeners": show_listeners,
    "show config": show_config,
    "help": show_help,
}


def render(command: str, data: dict[str, Any]) -> str:
    """`data` as text: the command's table, or JSON."""
    words = command.lower().split()
    # A command with arguments (`show connections PID`) takes its command's table.
    formatter = FORMATS.get(" ".join(words)) or FORMATS.get(" ".join(words[:2]))
    if formatter is not None:
        try:
            return formatter(data)
        except (AttributeError, TypeError, ValueError):
            pass  # an answer of another shape (another server's version): show it as it is
    return json.dumps(data, indent=2, sort_keys=True) if data else "OK"
