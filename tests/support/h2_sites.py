"""The framework sites of the HTTP/2 framework tests: a Flask application on gthread and a
FastAPI application on asgi, each served over h2 with TLS or h2c by prior knowledge, with one
httpx client (`http2=True`) per site.

What this module must never do: start anything but the server under test (h2_servers.py).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.h2_servers import h2_server
from support.server import Server

FRAMEWORKS = {
    # framework -> (module to import, application, worker arguments)
    "flask": ("flask", "support.h2_flask_app:app", ["-k", "gthread", "--threads", "8"]),
    "fastapi": ("fastapi", "support.h2_fastapi_app:app", ["-k", "asgi"]),
}
TRANSPORTS = ["tls", "h2c"]


@dataclass
class Site:
    srv: Server
    tls: Path | None
    client: httpx.Client = None  # type: ignore[assignment]  # one for the whole module

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.srv.port}"

    @property
    def authority(self) -> str:
        return f"127.0.0.1:{self.srv.port}"

    # httpx speaks h2c by prior knowledge when HTTP/1.1 is turned off.
    def sync_client(self) -> httpx.Client:
        return httpx.Client(
            http2=True, http1=bool(self.tls), verify=self.verify(), base_url=self.base, timeout=30
        )

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            http2=True, http1=bool(self.tls), verify=self.verify(), base_url=self.base, timeout=30
        )

    def verify(self) -> ssl.SSLContext | bool:
        if self.tls is None:
            return False
        return ssl.create_default_context(cafile=str(self.tls / "ca.pem"))

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        response = self.client.get(path, **kwargs)  # type: ignore[arg-type]
        assert response.http_version == "HTTP/2"
        return response

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        response = self.client.post(path, **kwargs)  # type: ignore[arg-type]
        assert response.http_version == "HTTP/2"
        return response


def start_site(framework: str, transport: str, pki: Path) -> Iterator[Site]:
    module, app, worker_args = FRAMEWORKS[framework]
    pytest.importorskip(module)
    tls = pki if transport == "tls" else None
    with h2_server(app, worker_args, tls=tls, cleartext="prior-knowledge") as srv:
        site = Site(srv, tls)
        with site.sync_client() as site.client:
            yield site


def h2_socket(site: Site) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", site.srv.port), timeout=10)
    if site.tls is None:
        return raw
    context = site.verify()
    assert isinstance(context, ssl.SSLContext)
    context.set_alpn_protocols(["h2"])
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert tls.selected_alpn_protocol() == "h2"
    return tls
