"""Real frameworks over HTTP/2: a Flask application on the gthread worker and a FastAPI
application on the asgi worker, each over h2 with TLS (ALPN, as browsers reach a server) and
over h2c by prior knowledge (as a proxy reaches it), driven by httpx with `http2=True`. The
FastAPI WebSocket route over RFC 8441 is in test_h2_framework_websockets.py.

One server per framework and transport for the whole module (tests/support/h2_sites.py); every
test checks that its answer came over HTTP/2. With CORRAL_TEST_H2_PEER=hypercorn they run
against Hypercorn instead, to check the tests (tests/support/h2_servers.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.h2_servers import corral_only, make_tls
from support.h2_sites import TRANSPORTS, Site, h2_socket, start_site
from support.h2_sync_client import H2Client

httpx = pytest.importorskip("httpx")
pytest.importorskip("h2")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls(tmp_path_factory.mktemp("pki"))


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
                call
                for _ in range(5)  # fresh coroutines each time: gather runs a repeated one once
                for call in (
                    client.get("/stream"),
                    client.post("/form", data={"n": "1"}),
                    client.get("/items/3"),
                    client.get("/teapot"),
                )
            ]
            return await asyncio.gather(*calls)

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


def test_fastapi_mixed_requests_multiplexed_on_one_connection(fastapi_site: Site) -> None:
    from support.h2_fastapi_app import CHUNK, STREAM_CHUNKS

    async def mixed() -> list[httpx.Response]:
        async with fastapi_site.async_client() as client:
            calls = [
                call
                for _ in range(5)  # fresh coroutines each time: gather runs a repeated one once
                for call in (
                    client.get("/stream"),
                    client.post("/orders", json={"item": "tea", "quantity": 2}),
                    client.get("/items/3"),
                    client.get("/no/such/page"),
                )
            ]
            return await asyncio.gather(*calls)

    responses = asyncio.run(mixed())
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert [r.status_code for r in responses] == [200, 200, 200, 404] * 5
    assert {r.content for r in responses[::4]} == {CHUNK * STREAM_CHUNKS}


def test_fastapi_404_and_500_then_serving_goes_on(fastapi_site: Site) -> None:
    missing = fastapi_site.get("/no/such/page")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    assert fastapi_site.get("/boom").status_code == 500
    assert fastapi_site.get("/items/1").status_code == 200
    fastapi_site.srv.wait_log("boom from the h2 FastAPI app")
