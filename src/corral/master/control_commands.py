"""The control socket's commands: Gunicorn 25.1+'s names, arguments and answer fields, plus
corral's own columns (requests served and in flight, RSS, state) and `show connections`.

Every command runs in the master's loop and returns at once: the ones that change something
only set the wanted number of workers, signal one worker, or queue a signal for the master's
own loop (reload, reopen, shutdown), exactly as the signals would. They never wait for it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.config.settings import SPECS
from corral.exit_reasons import ExitReason
from corral.master.control import CommandError
from corral.master.listeners import listener_url
from corral.metrics.stats import listen_queue_info

if TYPE_CHECKING:
    from corral.master.arbiter import Arbiter
    from corral.metrics.connections import ConnectionTable
    from corral.workers.engine import Worker

Handler = Callable[["Arbiter", list[str]], dict[str, Any]]

HELP = {
    "show all": "Show the master and its workers",
    "show workers": "List the workers: pid, age, state, requests, in flight, RSS, heartbeat",
    "show stats": "Show server statistics (what the Prometheus endpoint aggregates)",
    "show connections [PID]": "Each worker's open connections: peer, state, age, requests",
    "show config": "Show the current settings",
    "show listeners": "Show the listening sockets",
    "worker add [N]": "Run N more workers (default 1)",
    "worker remove [N]": "Run N fewer workers (default 1; at least one stays)",
    "worker kill <PID>": "Stop one worker gracefully (it is replaced)",
    "reload": "Reload the configuration and replace the workers (HUP)",
    "reopen": "Reopen the log files (USR1)",
    "shutdown [graceful|quick]": "Stop the server (TERM, or INT for quick)",
    "help": "Show this help",
}
_FAMILIES = {socket.AF_UNIX: "unix", socket.AF_INET: "tcp", socket.AF_INET6: "tcp6"}
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def dispatch(arbiter: Arbiter, words: list[str], privileged: bool) -> dict[str, Any]:
    """Run one command; CommandError for an error answer."""
    verb = words[0].lower()
    group = GROUPS.get(verb)
    if group is None:
        raise CommandError(f"Unknown command: {words[0]}")
    table, default = group
    rest = words[1:]
    target = rest[0].lower() if rest else default
    if target is None:
        raise CommandError(f"Missing {verb} target ({'|'.join(table)})")
    handler = table.get(target)
    if handler is None:
        if verb in SINGLE:
            handler, target = table[""], ""
        else:
            raise CommandError(f"Unknown {verb} target: {target}")
    else:
        rest = rest[1:]
    if verb in CHANGING and not privileged:
        raise CommandError(
            f"Permission denied: only the server's user (uid {os.geteuid()}) or root may run "
            f"'{verb}'"
        )
    data = handler(arbiter, rest)
    if handler is show_config and not privileged:
        # Variables passed with --env often hold secrets: their values are for the owner.
        data["raw_env"] = [item.partition("=")[0] + "=***" for item in arbiter.settings.raw_env]
    return data


# ---- show ------------------------------------------------------------------------------------


def show_workers(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    workers = [worker_row(arbiter, pid, w) for pid, w in arbiter.workers.items()]
    workers.sort(key=lambda row: row["age"])
    return {"workers": workers, "count": len(workers)}


def worker_row(arbiter: Arbiter, pid: int, worker: Worker) -> dict[str, Any]:
    heartbeat = worker.heartbeat
    counts = worker.stats.worker_counts() if worker.stats is not None else None
    spawned = arbiter.spawned_at.get(pid)
    return {
        # Gunicorn's fields
        "pid": pid,
        "age": worker.age,
        "booted": heartbeat.ready(),
        "aborted": bool(worker.aborted_at),
        "last_heartbeat": round(heartbeat.age(), 2),
        # corral's
        "state": worker_state(arbiter, pid, worker),
        "uptime": round(time.monotonic() - spawned, 2) if spawned is not None else None,
        "requests": counts.served if counts is not None else None,
        "in_flight": in_flight(counts) if counts is not None else None,
        "rss": rss_bytes(pid),
        "connections": counts.connections if counts is not None else None,
    }


def worker_state(arbiter: Arbiter, pid: int, worker: Worker) -> str:
    leaving = (
        pid in arbiter.retiring
        or not worker.alive
        or worker.heartbeat.exit_reason() is not ExitReason.EXITED
    )
    if leaving:
        return "retiring"
    return "serving" if worker.heartbeat.ready() else "booting"


def in_flight(counts: Any) -> int:
    """Requests begun and not yet answered: the live gauge when requests are counted, else
    the connections in those states at the loop's last count (once a second)."""
    if counts.in_flight is not None:
        return int(counts.in_flight)
    states = counts.connections
    return int(sum(states[s] for s in ("body", "queued", "serving", "writing")))


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def show_stats(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    totals = arbiter.stats.collect()
    counting = bool(arbiter.settings.metrics_bind or arbiter.settings.statsd_host)
    data: dict[str, Any] = {
        # Gunicorn's fields
        "uptime": round(time.time() - arbiter.started_at, 2),
        "pid": arbiter.pid,
        "workers_current": len(arbiter.workers),
        "workers_target": arbiter.num_workers,
        "workers_spawned": arbiter.worker_age,
        "workers_killed": arbiter.workers_killed,
        "reloads": arbiter.reloads,
        "dirty_arbiter_pid": None,
        # corral's: the Prometheus endpoint's numbers
        "requests_served": totals.served,
        "restarts": totals.restarts,
        "connections": totals.connections,
        "counting": counting,
    }
    if counting:
        data.update(
            requests_total=totals.requests_total,
            in_flight=totals.in_flight,
            requests={f"{m} {c}": n for (m, c), n in totals.requests.items() if n},
            status_codes={str(code): n for code, n in totals.status_codes.items()},
            duration_seconds={
                "sum": round(totals.duration_sum, 6),
                "count": totals.duration_count,
                "buckets": [[str(bound), n] for bound, n in totals.buckets],
            },
        )
    return data


def show_connections(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    """Per worker: the counts by state (its gauges) and its connections one by one (its
    connection table), oldest first; `show connections PID` for one worker."""
    workers = sorted(arbiter.workers.items(), key=lambda item: item[1].age)
    if args:
        pid = pid_arg(args[0])
        workers = [(p, w) for p, w in workers if p == pid]
        if not workers:
            raise CommandError(f"Worker {pid} not found")
    rows: list[dict[str, Any]] = []
    total: dict[str, int] = {}
    now = time.monotonic()
    for pid, worker in workers:
        row: dict[str, Any] = {"pid": pid, "connections": None, "total": None}
        if worker.stats is not None:
            states = worker.stats.worker_counts().connections
            for state, n in states.items():
                total[state] = total.get(state, 0) + n
            row.update(connections=states, total=sum(states.values()))
        row.update(connection_list(worker.connection_table, now))
        rows.append(row)
    return {"workers": rows, "total": total, "count": sum(total.values())}


def connection_list(table: ConnectionTable | None, now: float) -> dict[str, Any]:
    """A worker's rows: `list` (None when it has no table or no consistent copy could be
    taken), `unlisted` (open but beyond the table's rows), `reported` (seconds since the
    worker wrote them)."""
    listing = table.read() if table is not None and not table.closed else None
    if listing is None:
        return {"list": None, "unlisted": None, "reported": None}
    rows = sorted(listing.rows, key=lambda row: row.accepted)
    return {
        "list": [
            {
                "address": row.address,
                "port": row.port,
                "state": row.state,
                "protocol": row.protocol,
                "tls": row.tls,
                "age": round(max(0.0, now - row.accepted), 2),
                "requests": row.requests,
                "streams": row.streams,
            }
            for row in rows
        ],
        "unlisted": listing.unlisted,
        "reported": round(max(0.0, now - listing.published), 2) if listing.published else None,
    }


def show_listeners(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for sock in arbiter.listeners:
        info = listen_queue_info(sock)
        rows.append(
            {
                "address": listener_url(sock),
                "fd": sock.fileno(),
                "type": _FAMILIES.get(sock.family, "unknown"),
                "queued": info[0] if info is not None else None,
                "backlog": info[1] if info is not None else None,
            }
        )
    return {"listeners": rows, "count": len(rows)}


def show_config(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    settings = arbiter.settings
    return {spec.key: json_value(getattr(settings, spec.name)) for spec in SPECS}


def json_value(value: object) -> object:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_value(dataclasses.asdict(value))
    if callable(value):
        return f"<{getattr(value, '__qualname__', type(value).__name__)}()>"
    return str(value)


def show_all(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    workers = show_workers(arbiter, [])["workers"]
    return {
        "arbiter": {"pid": arbiter.pid, "type": "arbiter", "role": "master"},
        "web_workers": [dict(row, type="web") for row in workers],
        "web_worker_count": len(workers),
        "dirty_arbiter": None,
        "dirty_workers": [],
        "dirty_worker_count": 0,
    }


def show_dirty(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    """Gunicorn's dirty workers have no counterpart in corral: the answer says none run."""
    return {"enabled": False, "pid": None, "workers": [], "apps": []}


# ---- changes ---------------------------------------------------------------------------------


def count_arg(args: list[str]) -> int:
    try:
        return max(1, int(args[0])) if args else 1
    except ValueError:
        raise CommandError(f"Invalid argument: not a number: {args[0]!r}") from None


def pid_arg(word: str) -> int:
    try:
        return int(word)
    except ValueError:
        raise CommandError(f"Invalid argument: not a pid: {word!r}") from None


def worker_add(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    count = count_arg(args)
    previous = arbiter.num_workers
    arbiter.num_workers = previous + count  # the loop forks them on this same turn
    return {"added": count, "previous": previous, "total": arbiter.num_workers}


def worker_remove(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    previous = arbiter.num_workers
    total = max(1, previous - count_arg(args))
    arbiter.num_workers = total
    return {"removed": previous - total, "previous": previous, "total": total}


def worker_kill(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    if not args:
        raise CommandError("Missing PID for worker kill")
    pid = pid_arg(args[0])
    if pid not in arbiter.workers:
        return {"success": False, "error": f"Worker {pid} not found"}
    arbiter.kill_worker(pid, signal.SIGTERM)
    return {"success": True, "killed": pid}


def reload(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    arbiter.queue_signal(signal.SIGHUP)
    return {"status": "reloading"}


def reopen(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    arbiter.queue_signal(signal.SIGUSR1)
    return {"status": "reopening"}


SHUTDOWN_SIGNALS = {"graceful": signal.SIGTERM, "quick": signal.SIGINT}


def shutdown(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    mode = args[0].lower() if args else "graceful"
    if mode not in SHUTDOWN_SIGNALS:
        raise CommandError(f"Unknown shutdown mode: {args[0]} (graceful|quick)")
    arbiter.queue_signal(SHUTDOWN_SIGNALS[mode])
    return {"status": "shutting_down", "mode": mode}


def show_help(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    return {"commands": dict(HELP)}


def no_dirty(arbiter: Arbiter, args: list[str]) -> dict[str, Any]:
    raise CommandError("corral has no dirty workers")


# verb -> ({target: handler}, the target when none is given). Verbs in SINGLE take no target
# word: their table's "" entry gets every argument.
GROUPS: dict[str, tuple[dict[str, Handler], str | None]] = {
    "show": (
        {
            "all": show_all,
            "workers": show_workers,
            "stats": show_stats,
            "connections": show_connections,
            "config": show_config,
            "listeners": show_listeners,
            "dirty": show_dirty,
        },
        None,
    ),
    "worker": ({"add": worker_add, "remove": worker_remove, "kill": worker_kill}, None),
    "dirty": ({"add": no_dirty, "remove": no_dirty}, None),
    "reload": ({"": reload}, ""),
    "reopen": ({"": reopen}, ""),
    "shutdown": ({"": shutdown}, ""),
    "help": ({"": show_help}, ""),
}
SINGLE = frozenset({"reload", "reopen", "shutdown", "help"})
CHANGING = frozenset({"worker", "dirty", "reload", "reopen", "shutdown"})
