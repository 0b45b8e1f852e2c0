"""HTTP/2 through clients nobody here wrote: curl (h2c by prior knowledge and by
`Upgrade: h2c`, h2 over TLS, a 1 MiB upload), h2load and httpx, against the real server on the
gthread and asgi workers. nghttp is in test_h2_nghttp.py, ALPN and the cleartext negotiation
rules in test_h2_client_negotiation.py.

The application (tests/support/h2_apps.py) is the same for both worker families. With
CORRAL_TEST_H2_PEER=hypercorn these tests run against Hypercorn instead, to check the tests
(tests/support/h2_servers.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import ssl
import uuid
from pathlib import Path

import pytest

from support.h2_apps import HELLO
from support.h2_servers import WORKERS, corral_only, make_tls, need, worker_server
from support.h2_tools import curl, h2load_counts, nghttp, run, upload_file, url

httpx = pytest.importorskip("httpx")
pytest.importorskip("h2")

worker_ids = pytest.mark.parametrize("worker", list(WORKERS))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls(tmp_path_factory.mktemp("pki"))


# -- curl -----------------------------------------------------------------------------------------


@worker_ids
def test_curl_h2c_by_prior_knowledge(worker: str, tmp_path: Path) -> None:
    with worker_server(worker, cleartext="prior-knowledge") as srv:
        # One URL per run: curl 7.88.1 (Debian 12's) fails a second request on a reused
        # prior-knowledge connection itself (curl/curl#10634, fixed after 7.88.1).
        lines, bodies, _ = curl(tmp_path, "--http2-prior-knowledge", url(srv))
        assert (lines, bodies) == (["2 200"], [HELLO])
        lines, [body], _ = curl(tmp_path, "--http2-prior-knowledge", url(srv, "/peer"))
        assert lines == ["2 200"] and json.loads(body)["protocol"] == "HTTP/2"


@worker_ids
def test_curl_h2c_by_upgrade_switches_with_101(worker: str, tmp_path: Path) -> None:
    with worker_server(worker, cleartext="upgrade") as srv:
        lines, bodies, log = curl(tmp_path, "-v", "--http2", url(srv), url(srv, "/peer"))
        assert "< HTTP/1.1 101" in log
        # The first request is answered on stream 1 after the 101; the second is a new stream
        # on the same connection.
        assert lines == ["2 200", "2 200"]
        assert bodies[0] == HELLO
        assert json.loads(bodies[1])["protocol"] == "HTTP/2"
        assert log.count("Connected to") == 1


@worker_ids
def test_curl_h2_over_tls(worker: str, tmp_path: Path, pki: Path) -> None:
    with worker_server(worker, tls=pki) as srv:
        cacert = str(pki / "ca.pem")
        peers = [url(srv, f"/peer?n={n}", tls=True) for n in range(3)]
        # -Z: the transfers run in parallel, multiplexed on one connection.
        lines, bodies, log = curl(
            tmp_path, "-v", "-Z", "--http2", "--cacert", cacert, url(srv, tls=True), *peers
        )
        assert "ALPN: server accepted h2" in log or "ALPN, server accepted to use h2" in log
        assert lines == ["2 200"] * 4
        assert bodies[0] == HELLO
        seen = [json.loads(body) for body in bodies[1:]]
        assert {peer["protocol"] for peer in seen} == {"HTTP/2"}
        assert len({peer["port"] for peer in seen}) == 1, seen  # one connection


@worker_ids
def test_curl_field_over_limit_request_field_size_is_431(worker: str, tmp_path: Path) -> None:
    """The same limits as HTTP/1.1: a 9000-byte field (limit_request_field_size is 8190) is
    answered 431 on its stream; the list (64 KiB by default) was within the announced size."""
    corral_only()
    with worker_server(worker, cleartext="prior-knowledge") as srv:
        big = ["-H", "x-big: " + "a" * 9000]
        lines, _, _ = curl(tmp_path, "--http2-prior-knowledge", *big, url(srv))
        assert lines == ["2 431"]
        fits = ["-H", "x-big: " + "a" * 8000]
        lines, bodies, _ = curl(tmp_path, "--http2-prior-knowledge", *fits, url(srv))
        assert (lines, bodies) == (["2 200"], [HELLO])


TRANSPORTS = {
    # transport -> (http2_cleartext, curl arguments, the HTTP version of the answer)
    "h2c": ("prior-knowledge", ["--http2-prior-knowledge"], "2"),
    # A request with a body is not switched: the server reads bodies in HTTP/1.1 only
    # before a switch, so it answers in HTTP/1.1, as RFC 7540 §3.2 allows.
    "upgrade": ("upgrade", ["--http2"], "1.1"),
    "tls": ("off", ["--http2"], "2"),
}


@worker_ids
@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_curl_posts_a_mebibyte_and_gets_it_back(
    worker: str, transport: str, tmp_path: Path, pki: Path
) -> None:
    cleartext, curl_args, version = TRANSPORTS[transport]
    tls = transport == "tls"
    upload = tmp_path / "upload.bin"
    upload.write_bytes(hashlib.shake_256(b"corral h2").digest(1 << 20))
    digest = hashlib.sha256(upload.read_bytes()).hexdigest()
    heads = tmp_path / "heads.txt"
    with worker_server(worker, tls=pki if tls else None, cleartext=cleartext) as srv:
        extra = ["--cacert", str(pki / "ca.pem")] if tls else []
        lines, [body], _ = curl(
            tmp_path, *curl_args, *extra, "-D", str(heads),
            "-H", "Content-Type: application/octet-stream",
            "--data-binary", f"@{upload}", url(srv, "/sha256", tls=tls),
        )  # fmt: skip
        assert lines == [f"{version} 200"]
        assert hashlib.sha256(body).hexdigest() == digest
        fields = dict(
            line.lower().split(": ", 1) for line in heads.read_text().splitlines() if ": " in line
        )
        assert fields["x-body-sha256"] == digest
        assert fields["x-body-length"] == str(1 << 20)


# -- h2load ---------------------------------------------------------------------------------------


@worker_ids
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_h2load_2000_requests_none_failed(worker: str, tls: bool, pki: Path) -> None:
    with worker_server(worker, tls=pki if tls else None, cleartext="prior-knowledge") as srv:
        result = run(need("h2load"), "-n", "2000", "-c", "4", "-m", "10", url(srv, tls=tls))
        out = result.stdout
        assert result.returncode == 0, out + result.stderr
        assert "Application protocol: h2" in out, out
        assert h2load_counts(out) == [2000, 2000, 2000, 2000, 0, 0, 0], out
        assert "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx" in out, out


@worker_ids
def test_h2load_20000_streams_on_one_connection(worker: str) -> None:
    """Far more streams on one connection than the server remembers closed ones (late frames
    for forgotten streams must not end the connection), 100 at a time. corral sets no limit
    of requests per connection (Hypercorn ends one after 1000, by its keep_alive_max_requests)."""
    corral_only()
    with worker_server(worker, cleartext="prior-knowledge") as srv:
        result = run(need("h2load"), "-n", "20000", "-c", "1", "-m", "100", url(srv))
        assert h2load_counts(result.stdout) == [20000] * 4 + [0, 0, 0], result.stdout
        assert "status codes: 20000 2xx, 0 3xx, 0 4xx, 0 5xx" in result.stdout, result.stdout


@worker_ids
def test_h2load_uploads_into_small_client_windows_over_tls(
    worker: str, tmp_path: Path, pki: Path
) -> None:
    """Forty 256 KiB uploads echoed back into client windows of 1 KiB a stream and 16 KiB
    for the connection: the server sends only as the client's windows allow."""
    upload = upload_file(tmp_path)
    with worker_server(worker, tls=pki) as srv:
        result = run(
            need("h2load"), "-n", "40", "-c", "2", "-m", "10", "-w", "10", "-W", "14",
            "-d", str(upload), url(srv, "/sha256", tls=True),
        )  # fmt: skip
        assert h2load_counts(result.stdout) == [40, 40, 40, 40, 0, 0, 0], result.stdout
        assert f"{40 * 256 * 1024}) data" in result.stdout, result.stdout


@worker_ids
def test_h2load_under_a_lower_stream_limit(worker: str) -> None:
    """h2load wants 10 streams at a time and the server allows 3. Its first flight goes out
    before it has read the server's SETTINGS (RFC 9113 §6.5.3: the limit binds the client
    only from then on), so up to 7 streams a connection are refused, with REFUSED_STREAM,
    which h2load counts as errors and does not retry; after that it keeps to the limit and
    none is refused."""
    corral_only()
    extra = ("--http2-max-concurrent-streams", "3")
    with worker_server(worker, cleartext="prior-knowledge", extra=extra) as srv:
        result = run(need("h2load"), "-n", "2000", "-c", "2", "-m", "10", url(srv))
        total, started, done, succeeded, failed, errored, timeout = h2load_counts(result.stdout)
        assert (total, started, done, timeout) == (2000, 2000, 2000, 0), result.stdout
        assert failed == errored <= 2 * (10 - 3), result.stdout
        assert succeeded == 2000 - failed, result.stdout
        assert f"status codes: {succeeded} 2xx, 0 3xx, 0 4xx, 0 5xx" in result.stdout
        statuses, log = nghttp(*[url(srv, f"/?n={n}") for n in range(5)])
        refused = re.findall(
            r"recv RST_STREAM frame <[^>]*stream_id=(\d+)>\s*\(error_code=(\w+)", log
        )
        assert len(statuses) + len(refused) == 5, log
        assert set(statuses.values()) == {200} and len(statuses) >= 3, log
        assert {code for _, code in refused} <= {"REFUSED_STREAM"}, log


# -- httpx ----------------------------------------------------------------------------------------


async def httpx_concurrent(base: str, verify: ssl.SSLContext | bool, http1: bool) -> None:
    async with httpx.AsyncClient(
        http2=True, http1=http1, verify=verify, base_url=base, timeout=30
    ) as client:
        first = await client.get("/")
        assert (first.status_code, first.http_version, first.content) == (200, "HTTP/2", HELLO)
        port = (await client.get("/peer")).json()["port"]
        group, n = uuid.uuid4().hex, 6
        responses = await asyncio.gather(
            *(client.get("/barrier", params={"group": group, "n": n}) for _ in range(n))
        )
        # Every request of the group was in the application at the same time: the streams of
        # one connection are served side by side, not one after another.
        assert [r.status_code for r in responses] == [200] * n, [r.text for r in responses]
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert [r.json() for r in responses] == [{"protocol": "HTTP/2", "port": port}] * n


@worker_ids
def test_httpx_http2_over_tls_concurrent_streams_on_one_connection(worker: str, pki: Path) -> None:
    with worker_server(worker, tls=pki) as srv:
        verify = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        asyncio.run(httpx_concurrent(url(srv, "", tls=True), verify, http1=True))


@worker_ids
def test_httpx_h2c_by_prior_knowledge_concurrent_streams(worker: str) -> None:
    with worker_server(worker, cleartext="prior-knowledge") as srv:
        # httpx speaks h2c by prior knowledge when HTTP/1.1 is turned off.
        asyncio.run(httpx_concurrent(url(srv, ""), False, http1=False))


@worker_ids
def test_httpx_keeps_to_a_lower_stream_limit(worker: str) -> None:
    corral_only()
    extra = ("--http2-max-concurrent-streams", "3")

    async def twenty(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(http2=True, http1=False, base_url=base, timeout=30) as client:
            return await asyncio.gather(*(client.get("/peer") for _ in range(20)))

    with worker_server(worker, cleartext="prior-knowledge", extra=extra) as srv:
        responses = asyncio.run(twenty(url(srv, "")))
        assert [r.status_code for r in responses] == [200] * 20
        assert len({r.json()["port"] for r in responses}) == 1  # one connection
