"""Real frameworks over HTTP/2: a Flask application on the gthread worker and a FastAPI
application on the asgi worker, each over h2 with TLS (ALPN, as browsers reach a server) and
over h2c by prior knowledge (as a proxy reaches it), driven by httpx with `http2=True`; and the
FastAPI WebSocket route over HTTP/2 by RFC 8441's extended CONNECT, with the `h2` client.

One server per framework and transport for the whole module; every test checks that its answer
came over HTTP/2. With CORRAL_TEST_H2_PEER=hypercorn they run against Hypercorn instead, to
check the tests (tests/support/h2_servers.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import ssl
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.h2_servers import corral_only, h2_server, make_tls
from support.h2_sync_client import H2Client
from support.server import Server

httpx = pytest.importorskip("httpx")
pytest.importorskip("h2")

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


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls(tmp_path_factory.mktemp("pki"))


def start_site(framework: str, transport: str, pki: Path) -> Iterator[Site]:
    module, app, worker_args = FRAMEWORKS[framework]
    pytest.importorskip(module)
    tls = pki if transport == "tls" else None
    with h2_server(app, worker_args, tls=tls, cleartext="prior-knowledge") as srv:
        site = Site(srv, tls)
        with site.sync_client() as site.client:
            yield site


@pytest.fixture(scope="module", params=TRANSPORTS)
def flask_site(request: pytest.FixtureRequest, pki: Path) -> Iterator[Site]:
    yield from start_site("flask", request.param, pki)


@pytest.fixture(scope="module", params=TRANSPORTS)
def fastapi_site(request: pytest.FixtureRequest, pki: Path) -> Iterator[Site]:
    yield from start_site("fastapi", request.param, pki)


# -- Flask on gthread ------------------------------------------------------------------------


def test_flask_json_with_authority_as_host(flask_site: Site) -> None:
    response = flask_site.get("/items/42", params={"q": "h2"}, headers={"X-Agent": "test"})
    assert response.status_code == 200
    assert response.json() == {
        "id": 42,
        "q": "h2",
        "protocol": "HTTP/2",
        "host": flask_site.authority,  # :authority, as Host would be
        "scheme": "https" if flask_site.tls else "http",
        "agent": "test",
    }


def behind_a_proxy(site: Site) -> None:
    """h2c is how a proxy that ended TLS talks to the server: X-Forwarded-Proto from a trusted
    peer (127.0.0.1 by default) sets the scheme the framework sees, as over HTTP/1.1."""
    if site.tls:
        pytest.skip("the proxy case is h2c")
    corral_only()
    response = site.get("/items/1", headers={"x-forwarded-proto": "https"})
    assert response.json()["scheme"] == "https"


def test_flask_behind_a_proxy_over_h2c(flask_site: Site) -> None:
    behind_a_proxy(flask_site)


def test_flask_form_post_larger_than_a_window(flask_site: Site) -> None:
    fields = {"name": "corral", "tags": ["a", "b"], "big": "z" * 200_000}
    response = flask_site.post("/form", data=fields)
    assert response.status_code == 200
    body = response.json()
    assert body["fields"] == {"name": ["corral"], "tags": ["a", "b"], "big": ["z" * 200_000]}
    assert body["length"] == len(response.request.content)


def test_flask_form_of_unknown_length(flask_site: Site) -> None:
    """A body streamed by the client without content-length (DATA until END_STREAM): the
    application reads it to its end (wsgi.input_terminated, which Werkzeug relies on)."""

    def body() -> Iterator[bytes]:
        yield b"name=corral&"
        yield b"big=" + b"z" * 100_000

    response = flask_site.post(
        "/form", content=body(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 200
    assert response.json()["fields"] == {"name": ["corral"], "big": ["z" * 100_000]}


def test_flask_streamed_generator(flask_site: Site) -> None:
    from support.h2_flask_app import LINE, STREAM_LINES

    with flask_site.client.stream("GET", "/stream") as response:
        assert (response.status_code, response.http_version) == (200, "HTTP/2")
        body = b"".join(response.iter_bytes())
    assert body == "".join(LINE % n for n in range(STREAM_LINES)).encode()


def check_file_download(site: Site, data: bytes) -> None:
    whole = site.get("/file")
    assert (whole.status_code, len(whole.content)) == (200, len(data))
    assert whole.content == data
    part = site.get("/file", headers={"range": "bytes=100000-100999"})
    assert part.status_code == 206, part.headers
    assert part.headers["content-range"] == f"bytes 100000-100999/{len(data)}"
    assert part.content == data[100000:101000]


def test_flask_send_file_whole_and_a_range(flask_site: Site) -> None:
    from support.h2_flask_app import FILE_DATA

    check_file_download(flask_site, FILE_DATA)


def test_flask_stream_reset_by_the_client_leaves_the_connection_serving(
    flask_site: Site,
) -> None:
    """A browser that navigates away resets the stream of a response still being generated:
    the connection's other streams go on, and nothing is logged as an error."""
    scheme = "https" if flask_site.tls else "http"
    log_before = len(flask_site.srv.log())
    with h2_socket(flask_site) as sock:
        client = H2Client(sock, flask_site.authority, scheme=scheme)
        client.wait_settings()
        stream_id = client.open("GET", "/stream", [], end=True)
        assert client.wait_headers(stream_id).status == 200
        assert client.wait_data(stream_id, 1)  # the generator is running
        client.conn.reset_stream(stream_id, error_code=0x8)  # CANCEL
        client.flush()
        for n in range(3):
            after = client.request("GET", f"/items/{n}")
            assert after.status == 200 and json.loads(after.data)["id"] == n
        assert client.goaway is None
    assert "Traceback" not in flask_site.srv.log()[log_before:]


def test_flask_404_and_error_handler(flask_site: Site) -> None:
    missing = flask_site.get("/no/such/page")
    assert missing.status_code == 404 and "Not Found" in missing.text
    teapot = flask_site.get("/teapot")
    assert (teapot.status_code, teapot.json()) == (
        418,
        {"error": "teapot", "detail": "short and stout"},
    )


def test_flask_unhandled_exception_is_500_and_serving_goes_on(flask_site: Site) -> None:
    assert flask_site.get("/boom").status_code == 500
    assert flask_site.get("/items/1").status_code == 200
    flask_site.srv.wait_log("boom from the h2 Flask app")


def test_flask_mixed_requests_multiplexed_on_one_connection(flask_site: Site) -> None:
    from support.h2_flask_app import STREAM_LINES

    async def mixed() -> list[httpx.Response]:
        async with flask_site.async_client() as client:
            calls = [
                client.get("/stream"),
                client.post("/form", data={"n": "1"}),
                client.get("/items/3"),
                client.get("/teapot"),
            ]
            return await asyncio.gather(*(calls * 5))

    responses = asyncio.run(mixed())
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert [r.status_code for r in responses] == [200, 200, 200, 418] * 5
    assert {len(r.content) for r in responses[::4]} == {STREAM_LINES * 1024}


# -- FastAPI on asgi -------------------------------------------------------------------------


def test_fastapi_json(fastapi_site: Site) -> None:
    response = fastapi_site.get("/items/7", params={"q": "x"}, headers={"X-Agent": "test"})
    assert response.status_code == 200
    assert response.json() == {
        "id": 7,
        "q": "x",
        "http_version": "2",
        "host": fastapi_site.authority,
        "scheme": "https" if fastapi_site.tls else "http",
        "agent": "test",
    }


def test_fastapi_behind_a_proxy_over_h2c(fastapi_site: Site) -> None:
    behind_a_proxy(fastapi_site)


def test_fastapi_json_body_and_validation_error(fastapi_site: Site) -> None:
    ok = fastapi_site.post("/orders", json={"item": "tea", "quantity": 4})
    assert (ok.status_code, ok.json()) == (200, {"item": "tea", "quantity": 4, "total": 12})
    bad = fastapi_site.post("/orders", json={"item": "tea", "quantity": "many"})
    assert bad.status_code == 422


def test_fastapi_upload_of_a_mebibyte(fastapi_site: Site) -> None:
    data = hashlib.shake_256(b"fastapi upload").digest(1 << 20)
    response = fastapi_site.post(
        "/upload",
        data={"note": "over h2"},
        files={"file": ("blob.bin", data, "application/octet-stream")},
    )
    assert response.status_code == 200
    assert response.json() == {
        "note": "over h2",
        "filename": "blob.bin",
        "size": 1 << 20,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_fastapi_streaming_response(fastapi_site: Site) -> None:
    from support.h2_fastapi_app import CHUNK, STREAM_CHUNKS

    with fastapi_site.client.stream("GET", "/stream") as response:
        assert (response.status_code, response.http_version) == (200, "HTTP/2")
        body = b"".join(response.iter_bytes())
    assert body == CHUNK * STREAM_CHUNKS


def test_fastapi_file_response_whole_and_a_range(fastapi_site: Site) -> None:
    from support.h2_fastapi_app import FILE_DATA

    check_file_download(fastapi_site, FILE_DATA)


def test_fastapi_404_and_500_then_serving_goes_on(fastapi_site: Site) -> None:
    missing = fastapi_site.get("/no/such/page")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    assert fastapi_site.get("/boom").status_code == 500
    assert fastapi_site.get("/items/1").status_code == 200
    fastapi_site.srv.wait_log("boom from the h2 FastAPI app")


# -- WebSocket over HTTP/2 (RFC 8441) --------------------------------------------------------

MASK = b"\x37\xfa\x21\x3d"


def ws_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """A final client frame, masked as RFC 6455 §5.3 requires of clients (RSV1: compressed)."""
    size = len(payload)
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    if size < 126:
        head = bytes([first, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([first, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + size.to_bytes(8, "big")
    key = (MASK * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return head + MASK + masked


class WebSocketOverH2:
    """One RFC 8441 WebSocket: frames go out in DATA on `stream_id`, come back in DATA."""

    def __init__(self, client: H2Client, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.buf = b""
        self.rsv1 = False

    def send(self, opcode: int, payload: bytes, rsv1: bool = False) -> None:
        frame = ws_frame(opcode, payload, rsv1)
        self.client.send_body(self.stream_id, frame, end=False)

    def receive(self) -> tuple[int, bytes]:
        """The next server frame (final and unmasked, as a server's must be); `rsv1` says
        whether it was compressed (RFC 7692)."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            stream = self.client.streams[self.stream_id]
            assert not stream.ended, f"stream ended (reset {stream.reset}) before a frame"
            self.buf += self.client.wait_data(self.stream_id, 1)

    def _parse(self) -> tuple[int, bytes] | None:
        if len(self.buf) < 2:
            return None
        first, second = self.buf[0], self.buf[1]
        assert second & 0x80 == 0, "a server frame must not be masked (RFC 6455 §5.1)"
        size, offset = second & 0x7F, 2
        if size in (126, 127):
            width = 2 if size == 126 else 8
            if len(self.buf) < 2 + width:
                return None
            size, offset = int.from_bytes(self.buf[2 : 2 + width], "big"), 2 + width
        if len(self.buf) < offset + size:
            return None
        assert first & 0x80, "the app sends whole messages: every frame is final"
        assert first & 0x30 == 0, "RSV2 and RSV3 are never set (RFC 6455 §5.2)"
        self.rsv1 = bool(first & 0x40)
        payload, self.buf = self.buf[offset : offset + size], self.buf[offset + size :]
        return first & 0x0F, payload


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


def test_fastapi_websocket_over_http2_extended_connect(fastapi_site: Site) -> None:
    scheme = "https" if fastapi_site.tls else "http"
    with h2_socket(fastapi_site) as sock:
        client = H2Client(sock, fastapi_site.authority, scheme=scheme)
        client.wait_settings()
        # RFC 8441 §3: a client may use extended CONNECT only once the server's SETTINGS
        # carry SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
        assert client.conn.remote_settings.enable_connect_protocol == 1
        head = [(":protocol", "websocket"), ("sec-websocket-version", "13")]
        stream_id = client.open("CONNECT", "/ws", head, end=False)
        assert client.wait_headers(stream_id).status == 200  # RFC 8441 §5: a 2xx opens it
        ws = WebSocketOverH2(client, stream_id)

        ws.send(0x1, b"hello over h2")
        assert ws.receive() == (0x1, b"echo: hello over h2")
        ws.send(0x1, b"scope?")
        opcode, payload = ws.receive()
        assert opcode == 0x1
        assert json.loads(payload) == {
            "http_version": "2",
            "scheme": "wss" if fastapi_site.tls else "ws",
        }
        # A message larger than a stream window, both ways.
        blob = hashlib.shake_256(b"ws over h2").digest(100_000)
        ws.send(0x2, blob)
        assert ws.receive() == (0x2, blob[::-1])

        # Plain requests share the connection with the WebSocket's stream.
        plain = client.request("GET", "/items/5")
        assert plain.status == 200 and json.loads(plain.data)["http_version"] == "2"

        # The closing handshake; the server then ends its side of the stream, as it would
        # close the TCP connection in HTTP/1.1 (RFC 8441 §5.1: a TCP FIN is END_STREAM), not
        # with a reset, and the client ends its own.
        ws.send(0x8, (1000).to_bytes(2, "big") + b"bye")
        opcode, payload = ws.receive()
        assert (opcode, payload[:2]) == (0x8, (1000).to_bytes(2, "big"))
        stream = client.wait_end(stream_id)
        assert stream.reset is None, f"the stream was reset ({stream.reset}), not ended"
        client.conn.end_stream(stream_id)
        client.flush()
        # The connection goes on.
        after = client.request("GET", "/items/6")
        assert after.status == 200 and client.goaway is None


def open_websocket(
    client: H2Client, path: str = "/ws", extra: list[tuple[str, str]] | None = None
) -> WebSocketOverH2:
    head = [(":protocol", "websocket"), ("sec-websocket-version", "13"), *(extra or [])]
    stream_id = client.open("CONNECT", path, head, end=False)
    assert client.wait_headers(stream_id).status == 200
    return WebSocketOverH2(client, stream_id)


def test_fastapi_websocket_over_http2_with_permessage_deflate(fastapi_site: Site) -> None:
    """What a browser offers: permessage-deflate (RFC 7692), negotiated on the extended
    CONNECT's fields; messages go compressed both ways, the context kept between them."""
    scheme = "https" if fastapi_site.tls else "http"
    with h2_socket(fastapi_site) as sock:
        client = H2Client(sock, fastapi_site.authority, scheme=scheme)
        client.wait_settings()
        offer = [("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")]
        ws = open_websocket(client, extra=offer)
        agreed = client.streams[ws.stream_id].header("sec-websocket-extensions") or ""
        assert agreed.split(";")[0].strip() == "permessage-deflate", agreed
        compress = zlib.compressobj(wbits=-15)
        decompress = zlib.decompressobj(wbits=-15)
        for n in range(3):
            text = f"over h2, compressed, message {n} " * 50
            data = compress.compress(text.encode()) + compress.flush(zlib.Z_SYNC_FLUSH)
            assert data.endswith(b"\x00\x00\xff\xff")
            ws.send(0x1, data[:-4], rsv1=True)
            opcode, payload = ws.receive()
            if ws.rsv1:
                payload = decompress.decompress(payload + b"\x00\x00\xff\xff")
            assert (opcode, payload.decode()) == (0x1, "echo: " + text)


def test_fastapi_two_websockets_and_requests_share_a_connection(fastapi_site: Site) -> None:
    scheme = "https" if fastapi_site.tls else "http"
    with h2_socket(fastapi_site) as sock:
        client = H2Client(sock, fastapi_site.authority, scheme=scheme)
        client.wait_settings()
        first, second = open_websocket(client), open_websocket(client)
        for n in range(5):
            first.send(0x1, b"first %d" % n)
            second.send(0x1, b"second %d" % n)
            assert client.request("GET", f"/items/{n}").status == 200
            assert second.receive() == (0x1, b"echo: second %d" % n)
            assert first.receive() == (0x1, b"echo: first %d" % n)


def test_fastapi_websocket_reset_by_the_client_leaves_the_connection_serving(
    fastapi_site: Site,
) -> None:
    scheme = "https" if fastapi_site.tls else "http"
    log_before = len(fastapi_site.srv.log())
    with h2_socket(fastapi_site) as sock:
        client = H2Client(sock, fastapi_site.authority, scheme=scheme)
        client.wait_settings()
        ws = open_websocket(client)
        ws.send(0x1, b"before the reset")
        assert ws.receive() == (0x1, b"echo: before the reset")
        # RFC 8441 §5.1: RST_STREAM is the abrupt end, as a TCP reset would be.
        client.conn.reset_stream(ws.stream_id, error_code=0x8)  # CANCEL
        client.flush()
        after = client.request("GET", "/items/9")
        assert after.status == 200 and client.goaway is None
        again = open_websocket(client)
        again.send(0x1, b"after the reset")
        assert again.receive() == (0x1, b"echo: after the reset")
    assert "Traceback" not in fastapi_site.srv.log()[log_before:]
