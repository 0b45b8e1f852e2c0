"""Real ASGI frameworks on the asgi worker, through their real routes and real clients (httpx
for HTTP, `websockets` for WebSockets).

Every framework app answers the same routes (tests/apps/asgi_common.py lists them), so each
test below runs once per framework: JSON, path and query parameters, a JSON body, a multipart
upload, a streamed response, an exception (500, and the same worker goes on serving), a
WebSocket echo, and the lifespan startup (state read in a route) and shutdown (a file written
as the server stops). A framework that is not installed skips its own cases.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import signal
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apps.asgi_common import SHUTDOWN_FILE
from support.client import connect
from support.server import Server

httpx = pytest.importorskip("httpx")
sync_client = pytest.importorskip("websockets.sync.client")
ws_exceptions = pytest.importorskip("websockets.exceptions")


@dataclass(frozen=True)
class Framework:
    module: str  # skipped when this cannot be imported
    app: str
    websocket: bool = True
    lifespan: bool = True


FRAMEWORKS = {
    "fastapi": Framework("fastapi", "apps.fastapi_app:app"),
    "starlette": Framework("starlette", "apps.starlette_app:app"),
    "litestar": Framework("litestar", "apps.litestar_app:app"),
    "quart": Framework("quart", "apps.quart_app:app"),
    # Django answers HTTP only (WebSockets need Channels) and has no lifespan.
    "django": Framework(
        "django", "apps.django_asgi.asgi:application", websocket=False, lifespan=False
    ),
}


def framework_param(name: str) -> object:
    installed = importlib.util.find_spec(FRAMEWORKS[name].module) is not None
    return pytest.param(
        name, marks=pytest.mark.skipif(not installed, reason=f"{name} is not installed")
    )


PARAMS = [framework_param(name) for name in FRAMEWORKS]


@dataclass
class Site:
    name: str
    srv: Server
    client: httpx.Client  # one keep-alive connection for the whole module

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.srv.port}"


@pytest.fixture(scope="module", params=PARAMS)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    name = request.param
    mark = tmp_path_factory.mktemp(name) / "shutdown"
    args = [FRAMEWORKS[name].app, "-k", "asgi", "--access-logfile", "-"]
    with (
        Server(*args, env={SHUTDOWN_FILE: str(mark)}) as srv,
        httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=10) as client,
    ):
        yield Site(name, srv, client)


def test_json_and_parameters(site: Site) -> None:
    resp = site.client.get("/json")
    assert (resp.status_code, resp.json()) == (200, {"framework": site.name})
    assert resp.headers["content-type"].startswith("application/json")
    resp = site.client.get("/items/7", params={"q": "a b/é"})
    assert (resp.status_code, resp.json()) == (200, {"item_id": 7, "q": "a b/é"})
    resp = site.client.get("/items/8")
    assert (resp.status_code, resp.json()) == (200, {"item_id": 8, "q": None})
    assert site.client.get("/missing").status_code == 404


def test_json_body_and_multipart_upload(site: Site) -> None:
    payload = {"a": [1, 2, {"b": None}], "text": "ünïcode"}
    resp = site.client.post("/echo", json=payload)
    assert (resp.status_code, resp.json()) == (200, {"received": payload})
    data = os.urandom(300_000)  # several reads' worth
    resp = site.client.post(
        "/upload",
        files={"file": ("blob.bin", data, "application/octet-stream")},
        data={"field": "value"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "filename": "blob.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "field": "value",
    }


def test_streamed_response(site: Site) -> None:
    with site.client.stream("GET", "/stream", params={"count": 20}) as resp:
        assert resp.status_code == 200
        assert resp.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in resp.headers
        body = b"".join(resp.iter_bytes())
    assert body == b"".join(b"chunk %d\n" % n for n in range(20))


def test_exception_is_500_and_the_worker_goes_on(site: Site) -> None:
    pid = site.client.get("/pid").json()["pid"]
    for _ in range(3):
        resp = httpx.get(f"{site.url}/boom", timeout=10)
        assert resp.status_code == 500
    assert site.client.get("/pid").json()["pid"] == pid
    assert httpx.get(f"{site.url}/json", timeout=10).status_code == 200
    # Some frameworks log the exception themselves, some re-raise it to the server, which logs
    # it; either way no worker was replaced.
    assert site.srv.log().count("Booting worker with pid") == 1


def test_client_leaving_a_stream_is_no_error(site: Site) -> None:
    """Starlette (so FastAPI) turns the OSError that a send raises once the client has gone
    (ASGI 2.4) into its own ClientDisconnect and lets it out of the application: the worker
    knows the client left, so that is no application error either."""
    before = len(site.srv.log())
    with connect(site.srv.port) as sock:
        sock.sendall(b"GET /stream?count=100000 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
    # The access line is written once the request has ended, after any error line.
    site.srv.wait_log('"GET /stream?count=100000 HTTP/1.1"')
    assert site.client.get("/json").status_code == 200
    log = site.srv.log()[before:]
    assert "[ERROR]" not in log and "Traceback" not in log, log


def test_websocket_echo(site: Site) -> None:
    if not FRAMEWORKS[site.name].websocket:
        pytest.skip(f"{site.name} has no WebSocket without an add-on")
    with sync_client.connect(f"ws://127.0.0.1:{site.srv.port}/ws") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "echo: hello"
        payload = os.urandom(100_000)
        ws.send(payload)
        assert ws.recv(timeout=5) == payload
        ws.send("close")
        with pytest.raises(ws_exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "asked")


WITH_BOTH = [n for n, f in FRAMEWORKS.items() if f.lifespan and f.websocket]


@pytest.mark.parametrize("name", [framework_param(n) for n in WITH_BOTH])
def test_lifespan_and_a_websocket_across_a_graceful_stop(name: str, tmp_path: Path) -> None:
    """State set at startup is read in a route; on TERM an open WebSocket is closed with 1001
    (going away), the framework's shutdown handler runs, and the server exits with 0."""
    mark = tmp_path / "shutdown"
    with (
        Server(FRAMEWORKS[name].app, "-k", "asgi", env={SHUTDOWN_FILE: str(mark)}) as srv,
        sync_client.connect(f"ws://127.0.0.1:{srv.port}/ws") as ws,
    ):
        body = httpx.get(f"http://127.0.0.1:{srv.port}/state", timeout=10).json()
        assert body["started"] == f"{name} {body['pid']}"  # set in this worker, at startup
        ws.send("before the stop")
        assert ws.recv(timeout=5) == "echo: before the stop"
        assert not mark.exists()
        srv.signal(signal.SIGTERM)
        with pytest.raises(ws_exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert srv.wait_exit() == 0
        assert mark.read_text() == f"shutdown {body['pid']}"
        assert "Traceback" not in srv.log(), srv.log()


def test_django_without_lifespan_serves_and_says_so() -> None:
    pytest.importorskip("django")
    with Server(FRAMEWORKS["django"].app, "-k", "asgi") as srv:
        assert httpx.get(f"http://127.0.0.1:{srv.port}/json", timeout=10).status_code == 200
        assert "ASGI 'lifespan' protocol appears unsupported." in srv.log()


def test_fastapi_dependency_state_and_validation() -> None:
    pytest.importorskip("fastapi")
    with (
        Server("apps.fastapi_app:app", "-k", "asgi") as srv,
        httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=10) as client,
    ):
        body = client.get("/state").json()
        assert (body["db"], body["env"]) == ("connected", "test")
        assert client.get("/items/not-a-number").status_code == 422
        assert "Traceback" not in srv.log()


def test_fastapi_over_tls(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from integration.test_tls_server import make_pki, tls_args

    make_pki(tmp_path)
    with Server("apps.fastapi_app:app", "-k", "asgi", *tls_args(tmp_path)) as srv:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=context, timeout=10)
        conn.request("GET", "/items/3")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b'{"item_id":3,"q":null}')
        conn.request(
            "POST",
            "/echo",
            body=json.dumps({"tls": True}),
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        assert (resp.status, json.loads(resp.read())) == (200, {"received": {"tls": True}})
        conn.close()
