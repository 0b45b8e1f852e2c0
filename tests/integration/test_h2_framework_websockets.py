"""A FastAPI WebSocket route over HTTP/2 by RFC 8441's extended CONNECT, on the asgi worker,
over TLS and h2c by prior knowledge, with the `h2` client (no common client opens one): the
SETTINGS that invite it, echoes both ways (more than a window, permessage-deflate as browsers
offer it), several WebSockets and requests on one connection, the closing handshake and a
reset.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.h2_servers import make_tls, need
from support.h2_sites import TRANSPORTS, Site, h2_socket, start_site
from support.h2_sync_client import H2Client
from support.h2_ws_client import WebSocketOverH2, open_websocket
from support.server import TESTS

pytest.importorskip("httpx")
pytest.importorskip("h2")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module", params=TRANSPORTS)
def fastapi_site(request: pytest.FixtureRequest, pki: Path) -> Iterator[Site]:
    yield from start_site("fastapi", request.param, pki)


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


def test_fastapi_websocket_from_nodes_http2_client(fastapi_site: Site) -> None:
    """Node.js's own http2 client (no code of ours on the client side) opens the WebSocket by
    extended CONNECT once the SETTINGS allow it, gets two echoes and a clean close: the
    server's Close 1000, then the stream ended, not reset (rstCode 0 is NO_ERROR)."""
    node = need("node")
    script = TESTS / "support" / "h2_node_websocket.js"
    ca = [str(fastapi_site.tls / "ca.pem")] if fastapi_site.tls else []
    result = subprocess.run(
        [node, str(script), f"{fastapi_site.base}/ws", *ca],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "connectProtocol": True,
        "status": 200,
        "messages": ["echo: first from node", "echo: second from node"],
        "closeCode": 1000,
        "ended": True,
        "rstCode": 0,
    }
