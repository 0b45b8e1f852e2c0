"""A WSGI application instrumented with prometheus_client in multiprocess mode, as the
documented Gunicorn recipe sets it up (PROMETHEUS_MULTIPROC_DIR set before the import).

`/metrics` answers the sum over every worker, living or dead; `/sleep` blocks long enough for
the master's timeout to abort the worker; anything else counts one request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, multiprocess

REQUESTS = Counter("recipe_requests", "Requests served by the recipe app")
# A live gauge: its file belongs to one worker pid, and mark_process_dead removes it.
WORKERS_UP = Gauge("recipe_workers_up", "Workers alive", multiprocess_mode="livesum")
WORKERS_UP.set(1)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    path = environ["PATH_INFO"]
    if path == "/metrics":
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    elif path == "/sleep":
        time.sleep(30)
        body = b"late\n"
    else:
        REQUESTS.inc()
        body = f"{os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
