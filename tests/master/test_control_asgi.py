"""`show workers` on the control socket of a real `asgi` server: requests served and in flight
as numbers, without metrics (the gauge block, set by the worker's loop) and with Prometheus
on (the counting block), whose counts the control socket does not change."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path
from typing import Any

import pytest

from corral.control.client import ControlClient
from support.client import connect, get_status, read_response
from support.server import Server, wait_for

APP = "support.asgi_h2_apps:app"


def get(port: int, target: str) -> int:
    return get_status(port, target)


def worker_row(path: Path) -> dict[str, Any]:
    with ControlClient(str(path)) as client:
        rows = client.send("show workers")["workers"]
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


def served_and_in_flight(path: Path) -> tuple[int, int]:
    row = worker_row(path)
    return row["requests"], row["in_flight"]


def hold_a_request(port: int) -> socket.socket:
    """A request whose response has begun and waits for /release: one in flight."""
    sock = connect(port)
    sock.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"holding" not in got:
        chunk = sock.recv(4096)
        assert chunk, got
        got += chunk
    return sock


def release(sock: socket.socket, port: int) -> None:
    assert get(port, "/release") == 200
    got = b""
    while not got.endswith(b"\r\n0\r\n\r\n"):  # the held response's last chunk
        chunk = sock.recv(4096)
        assert chunk, got
        got += chunk
    sock.close()


def test_show_workers_without_metrics(tmp_path: Path) -> None:
    path = tmp_path / "c.ctl"
    with Server(APP, "-k", "asgi", "--control-socket", str(path)) as srv:
        srv.wait_log("Control socket listening at " + str(path))
        for i in range(3):
            assert get(srv.port, f"/r{i}") == 200
        wait_for(lambda: served_and_in_flight(path) == (3, 0), what="3 served, none in flight")
        row = worker_row(path)
        assert row["state"] == "serving"
        held = hold_a_request(srv.port)
        # In flight from the connections' states, which the loop counts once a second.
        wait_for(lambda: served_and_in_flight(path) == (4, 1), what="one request in flight")
        release(held, srv.port)
        wait_for(lambda: served_and_in_flight(path) == (5, 0), what="5 served, none in flight")


def test_show_workers_and_prometheus_with_metrics_on(tmp_path: Path) -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    path = tmp_path / "c.ctl"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    args = ["-k", "asgi", "--control-socket", str(path)]
    args += ["--metrics-bind", f"127.0.0.1:{metrics_port}"]
    with Server(APP, *args) as srv:
        for i in range(4):
            assert get(srv.port, f"/r{i}") == 200
        sock = connect(srv.port)
        sock.sendall(b"GET /boom-before HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0].status == 500
        sock.close()
        held = hold_a_request(srv.port)
        # The live gauge: in flight at once, not at the loop's next count.
        assert worker_row(path)["in_flight"] == 1
        release(held, srv.port)
        wait_for(lambda: served_and_in_flight(path) == (7, 0), what="7 served, none in flight")
        body = ""
        conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode()
        finally:
            conn.close()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parser.text_string_to_metric_families(body)
        for sample in family.samples
    }
    assert samples[("corral_requests_total", (("method", "GET"), ("status_class", "2xx")))] == 6
    assert samples[("corral_requests_total", (("method", "GET"), ("status_class", "5xx")))] == 1
    assert samples[("corral_request_duration_seconds_count", ())] == 7
    assert samples[("corral_requests_in_flight", ())] == 0
