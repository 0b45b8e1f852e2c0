"""The gevent worker's reason to exist, through the real server: a Flask view that waits on an
outbound HTTP call (plain urllib, made cooperative by the worker's monkey-patching) does not
hold the worker, so 200 such requests on ONE worker wait on the slow upstream together.

The upstream is a threading HTTP server on loopback that holds every request for a second and
counts how many it holds at once: that count, not a duration, is what the test asserts.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from support.server import Server

# Looked up, not imported: the test process itself must stay unpatched and gevent-free.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gevent") is None, reason="needs gevent (corral[gevent])"
)

CLIENTS = 200


class SlowUpstream(ThreadingHTTPServer):
    """Answers every request after UPSTREAM_DELAY seconds, counting requests in flight."""

    daemon_threads = True
    request_queue_size = 1024  # 200 connections at once must not wait in SYN retries
    delay = 1.0

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SlowHandler)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.served = 0

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1
            self.served += 1


class SlowHandler(BaseHTTPRequestHandler):
    server: SlowUpstream

    def do_GET(self) -> None:
        self.server.enter()
        try:
            time.sleep(self.server.delay)
            body = b"slow answer"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            self.server.leave()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[SlowUpstream]:
    server = SlowUpstream()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def fetch(port: int) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/fetch", timeout=60) as resp:
        return resp.status, resp.read()


def test_two_hundred_outbound_calls_wait_together_on_one_worker(upstream: SlowUpstream) -> None:
    url = f"http://127.0.0.1:{upstream.server_address[1]}/"
    env = {"CORRAL_TEST_UPSTREAM": url}
    args = ("-k", "gevent", "--worker-connections", "300", "--backlog", "1024")
    with Server("apps.gevent_flask_app:app", *args, workers=1, env=env) as srv:
        assert len(srv.worker_pids()) == 1
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(fetch, [srv.port] * CLIENTS))
    assert results == [(200, b"slow answer")] * CLIENTS
    assert upstream.served == CLIENTS
    # One worker held (nearly) all of them open on the upstream at the same time; a worker
    # that blocked on each call would have held one.
    print(f"upstream held {upstream.most_in_flight} requests at once")
    assert upstream.most_in_flight >= 150, upstream.most_in_flight


def test_without_preload_the_application_is_imported_after_patching() -> None:
    with Server("apps.gevent_flask_app:app", "-k", "gevent") as srv:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/patched", timeout=10) as r:
            info = json.loads(r.read())
        assert info["patched"] == {"socket": True, "time": True, "select": True}
        assert info["loaded_in"] == info["serving_in"]
        assert "--preload" not in srv.log()


def test_under_preload_the_worker_warns_that_the_application_was_imported_unpatched() -> None:
    with Server("apps.gevent_flask_app:app", "-k", "gevent", "--preload") as srv:
        srv.wait_log("loaded in the master (--preload), before this gevent worker")
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/patched", timeout=10) as r:
            info = json.loads(r.read())
        # What the warning says: imported in the master, before any patching.
        assert info["patched"] == {"socket": False, "time": False, "select": False}
        assert info["loaded_in"] != info["serving_in"]
        assert "[WARNING]" in srv.log()
