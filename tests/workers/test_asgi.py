"""The asgi worker through a real server: HTTP/1.1 with the shared parser, lifespan, streaming,
errors and keep-alive. (WebSocket and the extensions are still to come: issue 11.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.client import connect, read_response
from support.server import Server, run_corral, wait_for


def get(port: int, raw: bytes) -> list[tuple[int, bytes]]:
    out = []
    with connect(port, timeout=10) as sock:
        sock.sendall(raw)
        rest = b""
        for _ in range(raw.count(b"HTTP/1.1\r\n")):
            resp, rest = read_response(sock, rest)
            out.append((resp.status, resp.body))
    return out


def test_scope_lifespan_state_and_keepalive_pipelining() -> None:
    with Server("support.asgi_apps:app", "-k", "asgi", "--root-path", "/mnt") as srv:
        raw = b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n"
        (status, body), (status2, body2) = get(srv.port, raw)
        info = json.loads(body)
        assert status == status2 == 200
        assert info["path"] == "/mnt/a b" and info["root_path"] == "/mnt"
        assert info["query_string"] == "x=1" and info["http_version"] == "1.1"
        assert info["state"] == "hello from lifespan"
        assert ["host", "h"] in info["headers"]
        assert json.loads(body2)["path"] == "/mnt/two"


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 11\r\n\r\nhello world",
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ],
)
def test_request_body_then_streamed_response(framing: bytes) -> None:
    with Server("support.asgi_apps:app", "-k", "asgi") as srv:
        [(status, body)] = get(srv.port, b"POST /echo HTTP/1.1\r\nHost: h\r\n" + framing)
        assert (status, body) == (200, b"hello world")
        [(status, body)] = get(srv.port, b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        assert body == b"".join(b"part %d\n" % n for n in range(5))


def test_exception_is_500_and_the_worker_goes_on() -> None:
    with Server("support.asgi_apps:app", "-k", "asgi") as srv:
        [(status, _)] = get(srv.port, b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")
        assert status == 500
        [(status, _)] = get(srv.port, b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        assert status == 200
        assert "boom from the asgi test app" in srv.log()


def test_bad_request_is_refused_by_the_shared_parser() -> None:
    with Server("support.asgi_apps:app", "-k", "asgi") as srv, connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n")
        assert read_response(sock)[0].status == 400


def test_requests_run_concurrently() -> None:
    """Two one-second requests on two connections end together: one event loop, many tasks."""
    import threading
    import time

    with Server("support.asgi_apps:app", "-k", "asgi") as srv:
        results: list[int] = []

        def one() -> None:
            results.extend(s for s, _ in get(srv.port, b"GET /sleep?1 HTTP/1.1\r\nHost: h\r\n\r\n"))

        started = time.monotonic()
        clients = [threading.Thread(target=one) for _ in range(10)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(20)
        assert results == [200] * 10
        assert time.monotonic() - started < 5  # ten seconds if they ran one after another


def test_app_without_lifespan_in_auto_mode() -> None:
    with Server("support.asgi_apps:no_lifespan", "-k", "asgi") as srv:
        [(status, _)] = get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert status == 200
        assert "lifespan' protocol appears unsupported" in srv.log()


def test_startup_failure_stops_the_server() -> None:
    tests = str(Path(__file__).resolve().parents[1])
    args = ["-k", "asgi", "--pythonpath", tests, "--bind", "127.0.0.1:0"]
    result = run_corral([*args, "support.asgi_apps:failing_startup"])
    assert result.returncode != 0
    assert "no database" in result.stderr


def test_uvicorn_worker_names_select_asgi() -> None:
    with Server("support.asgi_apps:app", "-k", "uvicorn.workers.UvicornWorker") as srv:
        [(status, _)] = get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert status == 200


def test_app_that_returns_on_lifespan_does_not_hang_the_worker() -> None:
    with Server("support.asgi_apps:http_only", "-k", "asgi") as srv:
        [(status, _)] = get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert status == 200


def test_expect_100_continue_is_answered_when_the_app_reads() -> None:
    with Server("support.asgi_apps:app", "-k", "asgi") as srv, connect(srv.port) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim, rest = read_response(sock, head_only=True)
        assert interim.status == 100
        sock.sendall(b"hello")
        resp, _ = read_response(sock, rest)
        assert (resp.status, resp.body) == (200, b"hello")


def test_stalled_body_ends_after_timeout() -> None:
    with Server("support.asgi_apps:app", "-k", "asgi", "--timeout", "2") as srv:
        with connect(srv.port, timeout=10) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc")
            resp, _ = read_response(sock)
            assert resp.status == 408
        [(status, _)] = get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert status == 200


def test_lifespan_off_never_runs_it() -> None:
    """`--asgi-lifespan off`: an application whose startup would fail is never asked."""
    with Server("support.asgi_apps:failing_startup", "-k", "asgi", "--asgi-lifespan", "off") as srv:
        [(status, _)] = get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert status == 200


def test_lifespan_on_with_an_app_without_it_stops_the_server() -> None:
    tests = str(Path(__file__).resolve().parents[1])
    args = ["-k", "asgi", "--asgi-lifespan", "on", "--pythonpath", tests, "--bind", "127.0.0.1:0"]
    result = run_corral([*args, "support.asgi_apps:no_lifespan"])
    assert result.returncode != 0


def test_asgi_loop_asyncio_serves_and_missing_uvloop_is_a_startup_error() -> None:
    with Server("support.asgi_apps:app", "-k", "asgi", "--asgi-loop", "asyncio") as srv:
        [(status, _)] = get(srv.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert status == 200
    try:
        import uvloop  # noqa: F401
    except ImportError:
        tests = str(Path(__file__).resolve().parents[1])
        args = ["-k", "asgi", "--asgi-loop", "uvloop", "--pythonpath", tests]
        result = run_corral([*args, "--bind", "127.0.0.1:0", "support.asgi_apps:app"])
        assert result.returncode != 0
        assert "uvloop is not installed" in result.stderr


def test_request_task_is_cancelled_after_the_disconnect_grace_period(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    args = ["-k", "asgi", "--asgi-disconnect-grace-period", "1"]
    with Server("support.asgi_apps:ignores_disconnect", *args) as srv:
        with connect(srv.port) as sock:
            sock.sendall(f"GET /hold?{marker} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            with connect(srv.port) as other:  # the request is running: the server answers others
                other.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                assert read_response(other)[0].status == 200
        wait_for(marker.exists, 10, "the abandoned request to be cancelled")
