"""Metrics through the real server: a Prometheus scrape of the master, StatsD packets, and the
health-check path answered by corral itself."""

from __future__ import annotations

import http.client
import os
import signal
import socket

import pytest

from support.server import Server, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    parser = pytest.importorskip("prometheus_client.parser")
    status, body = get(port, "/metrics")
    assert status == 200
    samples = {}
    for family in parser.text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_prometheus_scrape_aggregates_workers_and_restarts() -> None:
    metrics_port = free_port()
    args = ["-k", "gthread", "--threads", "2", "--metrics-bind", f"127.0.0.1:{metrics_port}"]
    with Server("support.apps:echo", *args, workers=2) as srv:
        for i in range(30):
            assert get(srv.port, f"/m{i}")[0] == 200
        assert get(srv.port, "/boom")[0] == 500
        assert get(srv.port, "/x", method="POST")[0] == 200
        samples = scrape(metrics_port)
        get_total = samples[("corral_requests_total", (("method", "GET"), ("status_class", "2xx")))]
        assert get_total == 30
        assert samples[("corral_requests_total", (("method", "GET"), ("status_class", "5xx")))] == 1
        assert (
            samples[("corral_requests_total", (("method", "POST"), ("status_class", "2xx")))] == 1
        )
        assert samples[("corral_workers", ())] == 2
        assert samples[("corral_request_duration_seconds_count", ())] == 32
        assert samples[("corral_requests_in_flight", ())] == 0
        # A worker killed: its counts stay, and the restart is counted by cause.
        os.kill(srv.worker_pids()[0], signal.SIGKILL)
        srv.wait_booted(3)
        wait_for(
            lambda: (
                scrape(metrics_port)[("corral_worker_restarts_total", (("cause", "crash"),))] == 1
            )
        )
        samples = scrape(metrics_port)
        assert samples[("corral_request_duration_seconds_count", ())] == 32
        assert any(name == "corral_listen_queue" for name, _ in samples)


def test_statsd_packets() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    port = receiver.getsockname()[1]
    args = ["--statsd-host", f"127.0.0.1:{port}", "--statsd-prefix", "app"]
    try:
        with Server("support.apps:echo", *args) as srv:
            for _ in range(5):
                assert get(srv.port, "/s")[0] == 200
            seen = b""
            while b"request.status.200" not in seen or b"requests" not in seen:
                seen += receiver.recv(65536) + b"\n"
        assert b"app.gunicorn.request.status.200:" in seen or b"app.request.status.200:" in seen
    finally:
        receiver.close()


def test_health_path_answers_without_the_app(tmp_path: object) -> None:
    args = ["--health-path", "/healthz", "-k", "gthread", "--graceful-timeout", "5"]
    with Server("support.apps:echo", *args, env={"CORRAL_TEST_SEEN": f"{tmp_path}/seen"}) as srv:
        assert get(srv.port, "/healthz") == (200, b"ok\n")
        assert get(srv.port, "/healthz?verbose=1") == (200, b"ok\n")
        assert not os.path.exists(f"{tmp_path}/seen")  # the application never saw them
        # Once stopping, a request on a kept-alive connection gets 503.
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/slow?1")  # keeps the worker busy draining after TERM
        conn2 = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn2.request("GET", "/healthz")
        assert conn2.getresponse().read() == b"ok\n"
        srv.signal(signal.SIGTERM)

        def stopping_seen() -> bool:
            conn2.request("GET", "/healthz")
            resp = conn2.getresponse()
            return (resp.status, resp.read()) == (503, b"stopping\n")

        wait_for(stopping_seen, 10)
        assert conn.getresponse().status == 200
        conn.close()
        conn2.close()
