"""corral.metrics.statsd: Gunicorn's StatsD metrics, received on real UDP and unix sockets."""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.config import load_settings
from corral.config.settings import Settings
from corral.logs.logger import Logger, error_log, load_logger
from corral.metrics.statsd import MAX_DATAGRAM, StatsdClient, StatsdLogHandler, normalize_prefix


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def udp_server() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def address(server: socket.socket) -> str:
    host, port = server.getsockname()
    return f"{host}:{port}"


def receive_lines(server: socket.socket) -> list[str]:
    """The lines of one datagram."""
    return server.recv(65536).decode("ascii").split("\n")


def nothing_waiting(server: socket.socket) -> bool:
    """No datagram queued (loopback delivery completes inside sendto: nothing is in transit)."""
    readable, _, _ = select.select([server], [], [], 0)
    return not readable


def test_requests_arrive_over_udp_with_prefix_and_dogstatsd_tags(
    udp_server: socket.socket,
) -> None:
    client = StatsdClient(address(udp_server), "myapp", "env:prod,service:shop")
    try:
        for _ in range(3):
            client.request(200, 0.0123)
        client.request(404, 0.5)
        client.flush()
        lines = receive_lines(udp_server)
    finally:
        client.close()
    tags = "|#env:prod,service:shop"
    assert sorted(lines) == sorted(
        [
            *[f"myapp.gunicorn.request.duration:12.300|ms{tags}"] * 3,
            f"myapp.gunicorn.request.duration:500.000|ms{tags}",
            f"myapp.gunicorn.requests:4|c{tags}",
            f"myapp.gunicorn.request.status.200:3|c{tags}",
            f"myapp.gunicorn.request.status.404:1|c{tags}",
        ]
    )


def test_unix_datagram_socket_without_prefix_or_tags(tmp_path: Path) -> None:
    path = str(tmp_path / "statsd.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    client = StatsdClient(f"unix:{path}")
    try:
        client.request(503, 0.002)
        client.workers(4)
        client.backlog(7)
        client.flush()
        lines = receive_lines(server)
    finally:
        client.close()
        server.close()
    assert sorted(lines) == sorted(
        [
            "gunicorn.request.duration:2.000|ms",
            "gunicorn.backlog:7|ms",
            "gunicorn.requests:1|c",
            "gunicorn.request.status.503:1|c",
            "gunicorn.workers:4|g",
        ]
    )


def test_nothing_is_sent_until_the_interval_passes(udp_server: socket.socket) -> None:
    clock = FakeClock()
    client = StatsdClient(address(udp_server), flush_interval=1.0, clock=clock)
    try:
        client.request(200, 0.001)
        client.flush_if_due()
        clock.now += 0.9
        client.flush_if_due()
        assert nothing_waiting(udp_server), "one request must not cost a datagram"
        clock.now += 0.2
        client.flush_if_due()
        assert "gunicorn.requests:1|c" in receive_lines(udp_server)
        client.flush_if_due()  # the next interval starts at the flush: nothing more now
        assert nothing_waiting(udp_server)
    finally:
        client.close()


def test_a_full_buffer_is_sent_without_waiting_for_the_interval(
    udp_server: socket.socket,
) -> None:
    client = StatsdClient(address(udp_server), clock=FakeClock())
    try:
        sent = 0
        while nothing_waiting(udp_server):
            client.request(200, 0.25)
            sent += 1
            assert sent < 100, "no datagram after 100 requests"
        # Each duration line is ~36 bytes, so about 1 KB is 28 of them.
        assert 20 <= sent <= 40
    finally:
        client.close()


def test_datagrams_stay_below_the_size_limit_and_lose_no_line(udp_server: socket.socket) -> None:
    client = StatsdClient(address(udp_server), "a" * 20, flush_bytes=10**9)
    try:
        for n in range(300):
            client.timing("custom.timer", n + 0.5)
        client.increment("custom.count", 5)
        client.flush()
        lines: list[str] = []
        while len(lines) < 301:
            datagram = udp_server.recv(65536)
            assert len(datagram) <= MAX_DATAGRAM
            lines.extend(datagram.decode().split("\n"))
    finally:
        client.close()
    assert len(lines) == 301
    assert f"{'a' * 20}.custom.count:5|c" in lines
    assert f"{'a' * 20}.custom.timer:299.500|ms" in lines


def test_network_errors_never_raise(tmp_path: Path) -> None:
    missing = StatsdClient(f"unix:{tmp_path / 'nobody-listens'}")
    missing.request(200, 0.1)
    missing.flush()
    assert missing.dropped == 1
    missing.close()

    unresolvable = StatsdClient("no-such-host.invalid:8125")
    assert not unresolvable.enabled
    assert unresolvable.error and "no-such-host.invalid" in unresolvable.error
    unresolvable.request(200, 0.1)
    unresolvable.flush_if_due()
    unresolvable.close()


def test_counts_from_many_threads_are_exact(udp_server: socket.socket) -> None:
    client = StatsdClient(address(udp_server), flush_bytes=10**9, clock=FakeClock())
    per_thread, threads = 2_000, 4

    def work() -> None:
        for _ in range(per_thread):
            client.increment("gunicorn.requests")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    client.flush()
    assert receive_lines(udp_server) == [f"gunicorn.requests:{per_thread * threads}|c"]
    client.close()


def test_a_forked_worker_sends_with_its_own_client(udp_server: socket.socket) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            client = StatsdClient(address(udp_server), "w")
            client.request(201, 0.004)
            client.close()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "w.gunicorn.request.status.201:1|c" in receive_lines(udp_server)


def test_log_handler_counts_levels_as_gunicorn_does(udp_server: socket.socket) -> None:
    client = StatsdClient(address(udp_server), flush_bytes=10**9, clock=FakeClock())
    logger = logging.getLogger("test_statsd.counted")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = StatsdLogHandler(client)
    logger.addHandler(handler)
    try:
        logger.info("not counted")
        logger.warning("w")
        logger.error("e")
        logger.error("e2")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("x")
        logger.critical("c")
        # Each record is sent at once, as Gunicorn sends it: no flush, no interval.
        lines = [line for _ in range(5) for line in receive_lines(udp_server)]
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert lines == [
        "gunicorn.log.warning:1|c",
        "gunicorn.log.error:1|c",
        "gunicorn.log.error:1|c",
        "gunicorn.log.exception:1|c",
        "gunicorn.log.critical:1|c",
    ]
    assert nothing_waiting(udp_server)


# --- the error logger sends them: corral.logs.logger.Logger with statsd_host ----------------


@pytest.fixture
def error_logger() -> Iterator[Callable[..., Logger]]:
    """A Logger set up from argv, its handlers removed afterwards."""
    made: list[Logger] = []

    def make(*argv: str) -> Logger:
        settings = load_settings(["--error-logfile", os.devnull, *argv], {}, cwd=".").settings
        logger = load_logger(settings)
        logger.setup(settings)
        made.append(logger)
        return logger

    saved = (list(error_log.handlers), error_log.level, error_log.propagate)
    yield make
    for logger in made:
        logger.close()
    error_log.handlers[:] = saved[0]
    error_log.setLevel(saved[1])
    error_log.propagate = saved[2]


def test_error_logger_sends_gunicorn_log_counters(
    udp_server: socket.socket, error_logger: Callable[..., Logger]
) -> None:
    error_logger("--statsd-host", address(udp_server), "--statsd-prefix", "shop")
    error_log.info("Booting worker with pid: 1")  # not counted, as in Gunicorn
    error_log.warning("Worker timeout")
    error_log.error("Reload failed")
    try:
        raise RuntimeError("app")
    except RuntimeError:
        error_log.exception("Error handling request")
    error_log.critical("WORKER TIMEOUT")
    lines = [receive_lines(udp_server)[0] for _ in range(4)]
    assert lines == [
        "shop.gunicorn.log.warning:1|c",
        "shop.gunicorn.log.error:1|c",
        "shop.gunicorn.log.exception:1|c",
        "shop.gunicorn.log.critical:1|c",
    ]
    assert nothing_waiting(udp_server)


def test_a_reload_does_not_count_twice(
    udp_server: socket.socket, error_logger: Callable[..., Logger]
) -> None:
    argv = ("--statsd-host", address(udp_server))
    logger = error_logger(*argv)
    logger.setup(logger.settings)  # HUP sets the logging up again
    error_log.warning("once")
    assert receive_lines(udp_server) == ["gunicorn.log.warning:1|c"]
    assert nothing_waiting(udp_server)


def test_a_forked_worker_counts_with_its_own_buffer(
    udp_server: socket.socket, error_logger: Callable[..., Logger]
) -> None:
    error_logger("--statsd-host", address(udp_server))
    handler = next(h for h in error_log.handlers if isinstance(h, StatsdLogHandler))
    # Something the master had waiting when it forked belongs to the master alone.
    handler.client.increment("gunicorn.master.only")
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child reports through its exit code)
        code = 1
        try:
            error_log.error("in the worker")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert receive_lines(udp_server) == ["gunicorn.log.error:1|c"]
    handler.client.flush()
    assert receive_lines(udp_server) == ["gunicorn.master.only:1|c"]


def test_an_unusable_statsd_host_is_a_warning(
    tmp_path: Path, error_logger: Callable[..., Logger]
) -> None:
    error_path = tmp_path / "error.log"
    error_logger("--error-logfile", str(error_path), "--statsd-host", "no-such-host.invalid:8125")
    assert not any(isinstance(h, StatsdLogHandler) for h in error_log.handlers)
    assert "StatsD disabled: cannot use no-such-host.invalid:8125" in error_path.read_text()


def test_from_settings(udp_server: socket.socket) -> None:
    assert StatsdClient.from_settings(Settings()) is None
    settings = dataclasses.replace(
        Settings(), statsd_host=address(udp_server), statsd_prefix="p", dogstatsd_tags="a:b"
    )
    client = StatsdClient.from_settings(settings)
    assert client is not None
    client.increment("gunicorn.requests")
    client.close()
    assert receive_lines(udp_server) == ["p.gunicorn.requests:1|c|#a:b"]


@pytest.mark.parametrize(
    ("prefix", "normalized"),
    [("", ""), ("app", "app."), ("app.", "app."), ("app..", "app."), (" a.b ", "a.b.")],
)
def test_prefix_gets_exactly_one_dot(prefix: str, normalized: str) -> None:
    assert normalize_prefix(prefix) == normalized
