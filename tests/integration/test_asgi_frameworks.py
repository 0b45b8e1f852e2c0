"""Real ASGI frameworks on the asgi worker, through their real routes and a real client."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

import pytest

from support.server import Server

pytest.importorskip("fastapi")


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_fastapi_routes_lifespan_state_and_streaming() -> None:
    with Server("apps.fastapi_app:app", "-k", "asgi") as srv:
        assert request(srv.port, "GET", "/items/7?q=x") == (200, b'{"item_id":7,"q":"x"}')
        status, body = request(srv.port, "POST", "/echo", json.dumps({"a": [1, 2]}).encode())
        assert (status, json.loads(body)) == (200, {"received": {"a": [1, 2]}})
        status, body = request(srv.port, "GET", "/state")
        assert json.loads(body) == {"db": "connected", "env": "test"}
        assert request(srv.port, "GET", "/stream") == (200, b"chunk 0\nchunk 1\nchunk 2\n")
        status, body = request(srv.port, "GET", "/items/not-a-number")
        assert status == 422
        assert request(srv.port, "GET", "/missing")[0] == 404
        assert "Traceback" not in srv.log()


def test_fastapi_over_tls(tmp_path: Path) -> None:
    from integration.test_tls_server import make_pki, tls_args

    make_pki(tmp_path)
    with Server("apps.fastapi_app:app", "-k", "asgi", *tls_args(tmp_path)) as srv:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=context, timeout=10)
        conn.request("GET", "/items/3")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b'{"item_id":3,"q":null}')
        conn.close()
