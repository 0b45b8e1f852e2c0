"""corral.metrics.prometheus: the exposition text, checked with prometheus_client's own parser, and
the master's metrics endpoint answering real HTTP clients."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from corral.errors import HaltServer
from corral.metrics.prometheus import CONTENT_TYPE, MetricsServer, render
from corral.metrics.stats import RESTART_CAUSES, StatsAggregator, WorkerStats

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """(family name -> type, (sample name, labels) -> value) as Prometheus would read them."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


@pytest.fixture
def stats() -> Iterator[tuple[StatsAggregator, WorkerStats]]:
    aggregator = StatsAggregator()
    block = WorkerStats()
    aggregator.add(block)
    yield aggregator, block
    block.close()


def test_render_is_valid_exposition_with_the_recorded_values(
    stats: tuple[StatsAggregator, WorkerStats],
) -> None:
    aggregator, block = stats
    block.record("GET", 200, 0.003)
    block.record("GET", 200, 0.2)
    block.record("POST", 502, 3.0)
    block.begin()
    aggregator.count_restart("max_requests")
    listener = socket.create_server(("127.0.0.1", 0), backlog=32)
    waiting = [socket.create_connection(listener.getsockname()[:2], timeout=5) for _ in range(2)]
    try:
        text = render(aggregator, [listener])
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        for sock in [*waiting, listener]:
            sock.close()

    types, samples = parse(text)
    assert types == {
        "corral_requests": "counter",
        "corral_responses": "counter",
        "corral_request_duration_seconds": "histogram",
        "corral_requests_in_flight": "gauge",
        "corral_connections": "gauge",
        "corral_workers": "gauge",
        "corral_worker_restarts": "counter",
        "corral_listen_queue": "gauge",
        "corral_listen_queue_max": "gauge",
    }
    assert value(samples, "corral_requests_total", method="GET", status_class="2xx") == 2
    assert value(samples, "corral_requests_total", method="POST", status_class="5xx") == 1
    assert value(samples, "corral_requests_total", method="PUT", status_class="2xx") == 0
    assert value(samples, "corral_responses_total", code="200") == 2
    assert value(samples, "corral_responses_total", code="502") == 1
    duration = "corral_request_duration_seconds"
    assert value(samples, duration + "_bucket", le="0.005") == 1
    assert value(samples, duration + "_bucket", le="0.25") == 2
    assert value(samples, duration + "_bucket", le="2.5") == 2
    assert value(samples, duration + "_bucket", le="5.0") == 3
    assert value(samples, duration + "_bucket", le="+Inf") == 3
    assert value(samples, duration + "_count") == 3
    assert value(samples, duration + "_sum") == pytest.approx(3.203)
    assert value(samples, "corral_requests_in_flight") == 1
    assert value(samples, "corral_workers") == 1
    for cause in RESTART_CAUSES:
        expected = 1 if cause == "max_requests" else 0
        assert value(samples, "corral_worker_restarts_total", cause=cause) == expected
    assert value(samples, "corral_listen_queue", listener=url) == 2
    assert value(samples, "corral_listen_queue_max", listener=url) >= 32
    assert text.endswith("\n") and "# HELP corral_workers " in text


def test_render_skips_unix_and_closed_listeners(
    stats: tuple[StatsAggregator, WorkerStats], tmp_path: os.PathLike[str]
) -> None:
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(os.path.join(tmp_path, "s"))
    unix.listen()
    closed = socket.create_server(("127.0.0.1", 0))
    closed.close()
    try:
        types, _ = parse(render(stats[0], [unix, closed]))
    finally:
        unix.close()
    assert "corral_listen_queue" not in types
    assert "corral_workers" in types


# --- the endpoint -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def serving(server: MetricsServer) -> Iterator[MetricsServer]:
    """Drive the server as the master does: select on fileno(), handle_ready() when ready."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                ready, _, _ = select.select([server], [], [], 0.05)
                if ready:
                    server.handle_ready()
        except BaseException as exc:  # surfaced in the test below
            failures.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
    assert not failures, failures


def make_server(
    page: Callable[[], str] = lambda: "corral_workers 1\n", **kwargs: object
) -> MetricsServer:
    return MetricsServer("127.0.0.1:0", page, **kwargs)  # type: ignore[arg-type]


def fetch(
    server: MetricsServer, method: str = "GET", path: str = "/metrics", body: bytes | None = None
) -> tuple[http.client.HTTPResponse, bytes]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def test_get_metrics_returns_the_page(stats: tuple[StatsAggregator, WorkerStats]) -> None:
    aggregator, block = stats
    block.record("GET", 200, 0.01)
    with serving(make_server(lambda: render(aggregator, []))) as server:
        response, body = fetch(server)
        assert response.status == 200
        assert response.getheader("Content-Type") == CONTENT_TYPE
        assert int(response.getheader("Content-Length") or -1) == len(body)
        _, samples = parse(body.decode())
        assert value(samples, "corral_requests_total", method="GET", status_class="2xx") == 1
        block.record("GET", 200, 0.01)
        _, samples = parse(fetch(server, path="/metrics?name[]=x")[1].decode())
        assert value(samples, "corral_requests_total", method="GET", status_class="2xx") == 2


def test_head_gets_headers_only() -> None:
    with serving(make_server()) as server:
        response, body = fetch(server, "HEAD")
        assert response.status == 200 and body == b""
        assert response.getheader("Content-Length") == str(len("corral_workers 1\n"))


def test_other_paths_are_404_and_other_methods_405() -> None:
    with serving(make_server()) as server:
        assert fetch(server, path="/")[0].status == 404
        assert fetch(server, path="/metrics/x")[0].status == 404
        response, _ = fetch(server, "POST", body=b"x" * 100)
        assert response.status == 405
        assert response.getheader("Allow") == "GET, HEAD"
        assert fetch(server, "DELETE")[0].status == 405


def test_malformed_and_oversized_requests_are_refused() -> None:
    with serving(make_server()) as server:
        with socket.create_connection(server.address, timeout=5) as raw:
            raw.sendall(b"NONSENSE\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400 ")
        with socket.create_connection(server.address, timeout=5) as raw:
            raw.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000)
            assert raw.recv(100).startswith(b"HTTP/1.1 431 ")


def test_a_page_that_fails_is_a_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> str:
        raise RuntimeError("no page today")

    with caplog.at_level(logging.ERROR, logger="corral.error"), serving(make_server(broken)) as s:
        assert fetch(s)[0].status == 500
        assert fetch(s)[0].status == 500, "the endpoint keeps serving after a failure"
    assert "Error rendering the metrics page" in caplog.text
    assert "no page today" in caplog.text


def test_a_page_larger_than_the_socket_buffer_arrives_whole() -> None:
    page = "".join(f'corral_big{{n="{i}"}} {i}\n' for i in range(200_000))  # ~5 MB
    with serving(make_server(lambda: page)) as server:
        response, body = fetch(server)
    assert response.status == 200 and body.decode() == page


def test_silent_clients_do_not_block_scrapes_and_are_dropped_at_their_deadline() -> None:
    clock = FakeClock()
    with serving(make_server(request_timeout=2.0, clock=clock)) as server:
        silent = socket.create_connection(server.address, timeout=5)
        partial = socket.create_connection(server.address, timeout=5)
        partial.sendall(b"GET /metr")
        try:
            response, body = fetch(server)
            assert response.status == 200 and body == b"corral_workers 1\n"
            clock.now += 2.5
            assert fetch(server)[0].status == 200  # this wake-up also expires the stalled two
            assert silent.recv(1) == b"", "a client silent past its deadline is disconnected"
            assert partial.recv(1) == b""
        finally:
            silent.close()
            partial.close()


def test_only_max_clients_are_held_the_oldest_goes_first() -> None:
    clock = FakeClock()
    with serving(make_server(max_clients=2, clock=clock)) as server:
        oldest = socket.create_connection(server.address, timeout=5)
        # Connections accepted in one wake-up share a deadline; make the first one older.
        assert fetch(server)[0].status == 200
        clock.now += 0.5
        others = [socket.create_connection(server.address, timeout=5) for _ in range(2)]
        try:
            assert fetch(server)[0].status == 200
            assert oldest.recv(1) == b"", "the oldest idle client makes room"
        finally:
            for sock in [oldest, *others]:
                sock.close()


def test_close_in_a_forked_child_leaves_the_parent_serving() -> None:
    with serving(make_server()) as server:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                server.close()
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert fetch(server)[0].status == 200


def test_an_address_in_use_halts_with_a_clear_message() -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        with pytest.raises(HaltServer, match=f"Can't serve metrics at 127.0.0.1:{port}"):
            MetricsServer(f"127.0.0.1:{port}", lambda: "")
    finally:
        taken.close()


def test_ipv6_endpoint() -> None:
    try:
        server = MetricsServer("[::1]:0", lambda: "x 1\n")
    except HaltServer:
        pytest.skip("::1 not available")
    with serving(server):
        assert fetch(server)[0].status == 200


def test_a_scrape_sees_what_forked_workers_recorded_and_retired_ones_too() -> None:
    aggregator = StatsAggregator()
    blocks = [WorkerStats(), WorkerStats()]
    for block in blocks:
        aggregator.add(block)
    pids = []
    for n, block in enumerate(blocks, start=1):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                for _ in range(10 * n):
                    block.record("GET", 200, 0.002)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    try:
        with serving(make_server(lambda: render(aggregator, []))) as server:
            _, samples = parse(fetch(server)[1].decode())
            assert value(samples, "corral_requests_total", method="GET", status_class="2xx") == 30
            assert value(samples, "corral_workers") == 2
            aggregator.retire(blocks[0])  # as the master does once it has reaped the worker
            blocks[0].close()
            _, samples = parse(fetch(server)[1].decode())
            assert value(samples, "corral_requests_total", method="GET", status_class="2xx") == 30
            assert value(samples, "corral_workers") == 1
    finally:
        for block in blocks:
            block.close()
