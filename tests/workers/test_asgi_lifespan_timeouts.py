"""asgi_startup_timeout and asgi_shutdown_timeout through a real server, with applications that
sleep in their lifespan startup or shutdown (tests/support/slow_lifespan_apps.py)."""

from __future__ import annotations

import signal

from support.client import connect, read_response
from support.server import TESTS, Server, run_corral


def get_status(port: int) -> int:
    with connect(port, timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        return read_response(sock)[0].status


def test_startup_past_its_timeout_stops_the_server() -> None:
    args = ["-k", "asgi", "--pythonpath", str(TESTS), "--bind", "127.0.0.1:0"]
    args += ["--asgi-startup-timeout", "1", "support.slow_lifespan_apps:slow_startup"]
    result = run_corral(args, env={"LIFESPAN_SLEEP": "60"})
    assert result.returncode == 3, result.stderr
    assert (
        "Application startup failed: lifespan startup did not complete within 1 s"
        " (asgi_startup_timeout)" in result.stderr
    )
    assert "Worker failed to boot" in result.stderr
    assert result.stderr.count("Booting worker") == 1  # stopped, not respawned
    assert "Traceback" not in result.stderr


def test_startup_longer_than_timeout_but_within_its_own_is_served() -> None:
    """A startup that awaits keeps the worker's heartbeat going: the master's `timeout` is
    for a blocked loop, not for a slow startup."""
    args = ["-k", "asgi", "--timeout", "1", "--asgi-startup-timeout", "30"]
    env = {"LIFESPAN_SLEEP": "3"}
    with Server("support.slow_lifespan_apps:slow_startup", *args, env=env) as srv:
        assert get_status(srv.port) == 200
        assert "WORKER TIMEOUT" not in srv.log()
        assert srv.log().count("Booting worker") == 1


def test_shutdown_past_its_timeout_is_logged_and_the_worker_exits() -> None:
    args = ["-k", "asgi", "--asgi-shutdown-timeout", "1", "--graceful-timeout", "60"]
    env = {"LIFESPAN_SLEEP": "120"}
    with Server("support.slow_lifespan_apps:slow_shutdown", *args, env=env) as srv:
        assert get_status(srv.port) == 200
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(30) == 0
        log = srv.log()
        assert (
            "ASGI lifespan shutdown did not complete within 1 s (asgi_shutdown_timeout);"
            " exiting anyway" in log
        )
        assert "slow_shutdown: cancelled" in log  # its `finally` blocks ran
        assert "Worker exiting (pid" in log  # it left by itself, it was not killed


def test_shutdown_is_bounded_by_graceful_timeout() -> None:
    """asgi_shutdown_timeout 0 waits for ever, but never past what graceful_timeout leaves."""
    args = ["-k", "asgi", "--asgi-shutdown-timeout", "0", "--graceful-timeout", "3"]
    env = {"LIFESPAN_SLEEP": "120"}
    with Server("support.slow_lifespan_apps:slow_shutdown", *args, env=env) as srv:
        assert get_status(srv.port) == 200
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(30) == 0
        log = srv.log()
        assert "did not complete within" in log and "(graceful_timeout); exiting anyway" in log
        assert "Worker exiting (pid" in log


def test_shutdown_within_its_timeout_completes() -> None:
    args = ["-k", "asgi", "--asgi-shutdown-timeout", "30"]
    env = {"LIFESPAN_SLEEP": "1"}
    with Server("support.slow_lifespan_apps:slow_shutdown", *args, env=env) as srv:
        assert get_status(srv.port) == 200
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(30) == 0
        log = srv.log()
        assert "slow_shutdown: done" in log
        assert "did not complete" not in log
