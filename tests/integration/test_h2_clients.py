"""HTTP/2 through clients nobody here wrote: curl, nghttp, h2load, httpx and Python's ssl with
ALPN, against the real server on the gthread and asgi workers, over h2c (prior knowledge and
`Upgrade: h2c`) and h2 over TLS; then corral's negotiation rules (which connections may become
HTTP/2 at all).

The application (tests/support/h2_apps.py) is the same for both worker families. With
CORRAL_TEST_H2_PEER=hypercorn the client tests run against Hypercorn instead, to check the tests
(tests/support/h2_servers.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import signal
import socket
import ssl
import subprocess
import uuid
from pathlib import Path

import pytest

from support.client import connect, read_response
from support.h2_apps import HELLO, TRAILED_BODY
from support.h2_servers import PEER, WORKERS, corral_only, make_tls, need, worker_server
from support.h2_sync_client import H2Client
from support.server import Server

httpx = pytest.importorskip("httpx")
pytest.importorskip("h2")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # RFC 9113 §6.5, no parameters

worker_ids = pytest.mark.parametrize("worker", list(WORKERS))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls(tmp_path_factory.mktemp("pki"))


def url(srv: Server, path: str = "/", tls: bool = False) -> str:
    return f"{'https' if tls else 'http'}://127.0.0.1:{srv.port}{path}"


def run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


# -- curl ------------------------------------------------------------------------------------


def curl(tmp_path: Path, *args: str) -> tuple[list[str], list[bytes], str]:
    """curl's `%{http_version} %{response_code}` per URL, each URL's body, and its stderr
    (with -v, the HTTP/1.1 lines of an upgrade)."""
    urls = [a for a in args if a.startswith("http")]
    outs = [tmp_path / f"body-{n}" for n in range(len(urls))]
    out_args = [x for out in outs for x in ("-o", str(out))]
    result = run(
        need("curl"), "-sS", "--max-time", "30", "-w", "%{http_version} %{response_code}\n",
        *out_args, *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\n")[:-1], [out.read_bytes() for out in outs], result.stderr


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


# -- nghttp ----------------------------------------------------------------------------------


def upload_file(tmp_path: Path, size: int = 256 * 1024) -> Path:
    path = tmp_path / "upload.bin"
    path.write_bytes(hashlib.shake_256(b"upload").digest(size))
    return path


def nghttp(*args: str) -> tuple[dict[int, int], str]:
    """Run `nghttp -nv`; the :status of each stream it received, and its frame log."""
    if "--timeout" not in args:
        args = ("--timeout", "20", *args)
    result = run(need("nghttp"), "-nv", *args)
    statuses = {
        int(stream): int(status)
        for stream, status in re.findall(r"recv \(stream_id=(\d+)\) :status: (\d+)", result.stdout)
    }
    assert result.returncode == 0, (
        f"nghttp exited {result.returncode} ({result.stderr.strip()}); statuses by stream: "
        f"{statuses}; the end of its frame log:\n{result.stdout[-4000:]}"
    )
    return statuses, result.stdout


def ended_streams(log: str) -> set[int]:
    """Streams whose END_STREAM the client received."""
    frames = re.findall(r"recv \w+ frame <[^>]*flags=0x(\w+), stream_id=(\d+)>", log)
    return {int(stream) for flags, stream in frames if int(flags, 16) & 0x1}


def several(srv: Server, tls: bool = False) -> list[str]:
    return [url(srv, path, tls) for path in ("/", "/peer", "/?n=3", "/missing")]


@worker_ids
def test_nghttp_by_prior_knowledge_several_requests_on_one_connection(worker: str) -> None:
    with worker_server(worker, cleartext="prior-knowledge") as srv:
        statuses, log = nghttp(*several(srv))
        assert sorted(statuses.values()) == [200, 200, 200, 404], log
        assert ended_streams(log) >= set(statuses), log
        assert log.count("Connected") == 1
        assert "recv GOAWAY" not in log and "recv RST_STREAM" not in log, log


@worker_ids
def test_nghttp_by_upgrade(worker: str) -> None:
    with worker_server(worker, cleartext="upgrade") as srv:
        statuses, log = nghttp("-u", *several(srv))
        assert "HTTP Upgrade success" in log, log
        assert statuses[1] == 200, log  # the upgraded request is stream 1
        assert sorted(statuses.values()) == [200, 200, 200, 404], log
        assert ended_streams(log) >= set(statuses), log
        assert "recv GOAWAY" not in log and "recv RST_STREAM" not in log, log


@worker_ids
def test_nghttp_upgrades_with_options_then_uploads(worker: str, tmp_path: Path) -> None:
    # With a body to send, nghttp upgrades with `OPTIONS *` (stream 1) and sends the POST on
    # a new stream once the connection is HTTP/2.
    upload = upload_file(tmp_path)
    with worker_server(worker, cleartext="upgrade") as srv:
        statuses, log = nghttp("-u", "-d", str(upload), url(srv, "/sha256"))
        assert "OPTIONS * HTTP/1.1" in log and "HTTP Upgrade success" in log, log
        assert 1 in statuses, log  # the application's answer to OPTIONS *, whatever it is
        assert [status for stream, status in statuses.items() if stream != 1] == [200], log
        assert "recv GOAWAY" not in log and "recv RST_STREAM" not in log, log


@worker_ids
def test_nghttp_padding_continuation_and_request_trailers(worker: str, tmp_path: Path) -> None:
    """Legal framing few clients use, all at once: every frame padded by 255 bytes, an 18 kB
    header block split into HEADERS and CONTINUATION (`--continuation`), no HPACK dynamic table
    on the client's side, and the body followed by request trailers."""
    upload = upload_file(tmp_path, 1 << 20)
    with worker_server(worker, cleartext="prior-knowledge") as srv:
        result = subprocess.run(
            [
                need("nghttp"), "--timeout", "20", "--continuation", "-b", "255",
                "--encoder-header-table-size", "0", "--trailer", "x-checksum: none",
                "-d", str(upload), url(srv, "/sha256"),
            ],
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == upload.read_bytes()  # the echoed body: the request was whole


@worker_ids
def test_nghttp_upload_answered_before_it_is_read(worker: str, tmp_path: Path) -> None:
    """The application answers 404 without reading the 1 MiB body nghttp is sending. The
    server may then end the stream with RST_STREAM NO_ERROR (RFC 9113 §8.1), and must ignore
    the DATA frames the client had already sent (§5.1: an endpoint MUST ignore frames it
    receives on closed streams after it has sent a RST_STREAM), not answer each with another
    reset; the next upload on the connection is served."""
    upload = upload_file(tmp_path, 1 << 20)
    with worker_server(worker, cleartext="prior-knowledge") as srv:
        statuses, log = nghttp("-d", str(upload), url(srv, "/nothing"), url(srv, "/sha256"))
        assert sorted(statuses.values()) == [200, 404], log
        codes = re.findall(r"recv RST_STREAM frame <[^>]*>\s*\(error_code=(\w+)", log)
        assert set(codes) <= {"NO_ERROR"} and len(codes) <= 1, codes
        assert "recv GOAWAY" not in log, log


@worker_ids
def test_nghttp_over_tls(worker: str, pki: Path) -> None:
    with worker_server(worker, tls=pki) as srv:
        statuses, log = nghttp(*several(srv, tls=True))
        assert sorted(statuses.values()) == [200, 200, 200, 404], log


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_nghttp_receives_response_trailers_from_asgi(tls: bool, pki: Path) -> None:
    with worker_server("asgi", tls=pki if tls else None, cleartext="prior-knowledge") as srv:
        if not PEER:
            # corral offers the extension only to a client that said it takes trailers
            # (`TE: trailers`, RFC 9110 §10.1.4), as gRPC clients do.
            assert list(nghttp(url(srv, "/trailers", tls=tls))[0].values()) == [501]
        statuses, log = nghttp("-H", "te: trailers", url(srv, "/trailers", tls=tls))
        assert list(statuses.values()) == [200], log
        [stream] = statuses
        # Data, then a HEADERS frame that ends the stream and carries the trailers.
        after_data = log[log.index(f"recv DATA frame <length={len(TRAILED_BODY)}") :]
        trailer_frame = re.search(
            rf"recv HEADERS frame <[^>]*flags=0x(\w+), stream_id={stream}>", after_data
        )
        assert trailer_frame is not None and int(trailer_frame.group(1), 16) & 0x1, log
        assert f"recv (stream_id={stream}) grpc-status: 0" in after_data, log
        assert f"recv (stream_id={stream}) grpc-message: done" in after_data, log


@worker_ids
def test_nghttp_sees_the_configured_settings(worker: str) -> None:
    corral_only()
    extra = (
        "--http2-max-concurrent-streams", "7",
        "--http2-max-frame-size", "32768",
        "--http2-max-header-list-size", "20000",
    )  # fmt: skip
    with worker_server(worker, cleartext="prior-knowledge", extra=extra) as srv:
        statuses, log = nghttp(url(srv))
        assert list(statuses.values()) == [200], log
        received = log[log.index("recv SETTINGS frame") :]
        assert "[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7]" in received, log
        assert "[SETTINGS_MAX_FRAME_SIZE(0x05):32768]" in received, log
        assert "[SETTINGS_MAX_HEADER_LIST_SIZE(0x06):20000]" in received, log
        # WebSockets over HTTP/2 (RFC 8441) are served by the asgi worker only: a WSGI worker
        # does not invite extended CONNECT.
        connect = "1" if worker == "asgi" else "0"
        announced = re.search(r"\[SETTINGS_ENABLE_CONNECT_PROTOCOL\(0x08\):(\d+)\]", received)
        assert (announced.group(1) if announced else "0") == connect, log


@worker_ids
@pytest.mark.parametrize("window", [1024, 16384])
def test_nghttp_uploads_on_four_streams_under_a_smaller_window(
    worker: str, window: int, tmp_path: Path
) -> None:
    """nghttp sends its first DATA frames before it has read the server's SETTINGS (until
    then a stream's window is 65535, RFC 9113 §6.9.2), so once it applies a smaller window,
    those streams' windows are below zero (§6.9.2 allows it). The server must still grant
    more as the application reads the bodies, or the uploads wait for ever."""
    corral_only()
    upload = upload_file(tmp_path)
    extra = ("--http2-initial-window-size", str(window))
    with worker_server(worker, cleartext="prior-knowledge", extra=extra) as srv:
        urls = [url(srv, f"/sha256?n={n}") for n in range(4)]
        statuses, log = nghttp("--timeout", "10", "-d", str(upload), *urls)
        assert f"[SETTINGS_INITIAL_WINDOW_SIZE(0x04):{window}]" in log, log
        assert sorted(statuses.values()) == [200] * 4, f"{statuses} (by stream)\n{log[-3000:]}"


@worker_ids
def test_a_zero_window_is_announced_and_an_upload_still_completes(
    worker: str, tmp_path: Path
) -> None:
    """`http2_initial_window_size = 0` (documented as allowed) is what the client is told;
    the server then opens the window itself as the application reads."""
    corral_only()
    upload = upload_file(tmp_path)
    extra = ("--http2-initial-window-size", "0")
    with worker_server(worker, cleartext="prior-knowledge", extra=extra) as srv:
        statuses, log = nghttp("--timeout", "10", "-d", str(upload), url(srv, "/sha256"))
        received = log[log.index("recv SETTINGS frame") :]
        assert "[SETTINGS_INITIAL_WINDOW_SIZE(0x04):0]" in received, log[:3000]
        assert list(statuses.values()) == [200], f"{statuses} (by stream)\n{log[-3000:]}"


@worker_ids
def test_nghttp_sees_a_graceful_stop_finish_its_stream(worker: str) -> None:
    """TERM while a request is inside the application: the client hears GOAWAY (NO_ERROR,
    its stream included), the stream is still answered, and the server exits cleanly."""
    corral_only()
    extra = ("--graceful-timeout", "30")
    with worker_server(worker, cleartext="prior-knowledge", extra=extra) as srv:
        # A group of two that only one request joins: answered 504 after 2 seconds.
        target = url(srv, "/barrier?group=stop&n=2&wait=2")
        client = subprocess.Popen(
            [need("nghttp"), "-nv", "--timeout", "20", target], stdout=subprocess.PIPE, text=True
        )
        try:
            srv.wait_log("barrier stop waiting")
            srv.signal(signal.SIGTERM)
            log, _ = client.communicate(timeout=30)
        finally:
            if client.poll() is None:
                client.kill()
        assert client.returncode == 0, log
        goaway = re.search(
            r"recv GOAWAY frame[^\n]*\n\s*\(last_stream_id=(\d+), error_code=(\w+)", log
        )
        assert goaway is not None, log
        statuses = re.findall(r"recv \(stream_id=(\d+)\) :status: (\d+)", log)
        [(stream, status)] = statuses
        assert int(goaway.group(1)) >= int(stream) and goaway.group(2).startswith("NO_ERROR"), log
        assert status == "504", log  # the application's answer, not a reset
        assert log.index("recv GOAWAY") < log.index(":status: 504"), log
        assert srv.wait_exit(30) == 0


# -- h2load ----------------------------------------------------------------------------------


def h2load_counts(out: str) -> list[int]:
    """total, started, done, succeeded, failed, errored, timeout, from h2load's summary."""
    counts = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
    )
    assert counts is not None, out
    return [int(n) for n in counts.groups()]


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


# -- httpx -----------------------------------------------------------------------------------


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


# -- Python's ssl with ALPN ------------------------------------------------------------------


def tls_socket(port: int, pki: Path, offer: list[str]) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.set_alpn_protocols(offer)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def http1_peer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    sock.sendall(b"GET /peer HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    resp, _ = read_response(sock)
    return resp.status, json.loads(resp.body)


@worker_ids
def test_alpn_h2_is_selected_and_served(worker: str, pki: Path) -> None:
    with (
        worker_server(worker, tls=pki) as srv,
        tls_socket(srv.port, pki, ["h2", "http/1.1"]) as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        client = H2Client(tls, f"127.0.0.1:{srv.port}", scheme="https")
        peer = client.request("GET", "/peer")
        assert peer.status == 200 and json.loads(peer.data)["protocol"] == "HTTP/2"
        echoed = client.request("POST", "/sha256", body=b"x" * 200_000)
        assert echoed.status == 200 and bytes(echoed.data) == b"x" * 200_000
        assert echoed.header("x-body-sha256") == hashlib.sha256(b"x" * 200_000).hexdigest()


@worker_ids
def test_alpn_offers_http1_only_when_h2_is_not_served(worker: str, pki: Path) -> None:
    corral_only()
    with (
        worker_server(worker, tls=pki, protocols="h1") as srv,
        tls_socket(srv.port, pki, ["h2", "http/1.1"]) as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert http1_peer(tls) == (200, {"protocol": "HTTP/1.1", "port": tls.getsockname()[1]})


@worker_ids
def test_alpn_http1_client_of_an_h2_server_is_served_http1(worker: str, pki: Path) -> None:
    with worker_server(worker, tls=pki) as srv, tls_socket(srv.port, pki, ["http/1.1"]) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        status, peer = http1_peer(tls)
        assert (status, peer["protocol"]) == (200, "HTTP/1.1")


# -- Negotiation rules (corral's settings) ---------------------------------------------------


def preface_answer(port: int) -> bytes:
    """What a prior-knowledge client hears back: everything until the server closes."""
    with connect(port) as sock:
        sock.sendall(PREFACE + EMPTY_SETTINGS)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def assert_refused_as_http1(answer: bytes) -> None:
    # Not HTTP/2 (its first frame would be the server's SETTINGS): the preface's first line,
    # `PRI * HTTP/2.0`, read as an HTTP/1.1 request line and refused (an HTTP version this
    # server does not serve over HTTP/1.1).
    assert re.match(rb"HTTP/1\.1 (400|505) ", answer), answer[:200]


@worker_ids
def test_cleartext_off_refuses_the_preface_as_http1(worker: str) -> None:
    corral_only()
    with worker_server(worker, cleartext="off") as srv:
        assert_refused_as_http1(preface_answer(srv.port))
        with connect(srv.port) as sock:
            assert http1_peer(sock)[1]["protocol"] == "HTTP/1.1"


@worker_ids
def test_cleartext_without_h2_in_http_protocols_is_not_http2(worker: str, tmp_path: Path) -> None:
    corral_only()
    with worker_server(worker, cleartext="both", protocols="h1") as srv:
        assert_refused_as_http1(preface_answer(srv.port))
        with connect(srv.port) as sock:
            assert http1_peer(sock)[1]["protocol"] == "HTTP/1.1"
        lines, bodies, log = curl(tmp_path, "-v", "--http2", url(srv))
        assert (lines, bodies) == (["1.1 200"], [HELLO])
        assert "< HTTP/1.1 101" not in log


@worker_ids
def test_prior_knowledge_mode_answers_http1_with_400(worker: str) -> None:
    corral_only()
    with worker_server(worker, cleartext="prior-knowledge") as srv, connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock)[0].status == 400


@worker_ids
def test_upgrade_mode_serves_plain_http1_and_refuses_the_preface(worker: str) -> None:
    corral_only()
    with worker_server(worker, cleartext="upgrade") as srv:
        with connect(srv.port) as sock:
            assert http1_peer(sock)[1]["protocol"] == "HTTP/1.1"
        assert_refused_as_http1(preface_answer(srv.port))


@worker_ids
def test_both_modes_serve_http1_prior_knowledge_and_upgrade(worker: str, tmp_path: Path) -> None:
    corral_only()
    with worker_server(worker, cleartext="both") as srv:
        with connect(srv.port) as sock:
            assert http1_peer(sock)[1]["protocol"] == "HTTP/1.1"
        assert curl(tmp_path, "--http2-prior-knowledge", url(srv))[:2] == (["2 200"], [HELLO])
        assert curl(tmp_path, "--http2", url(srv))[:2] == (["2 200"], [HELLO])


@worker_ids
def test_untrusted_peer_gets_no_h2c(worker: str, tmp_path: Path) -> None:
    corral_only()
    extra = ("--forwarded-allow-ips", "10.0.0.1")  # 127.0.0.1 is no longer trusted
    with worker_server(worker, cleartext="both", extra=extra) as srv:
        assert_refused_as_http1(preface_answer(srv.port))
        # An upgrade request is served as the HTTP/1.1 request it also is, without a 101.
        lines, bodies, log = curl(tmp_path, "-v", "--http2", url(srv))
        assert (lines, bodies) == (["1.1 200"], [HELLO])
        assert "< HTTP/1.1 101" not in log
        with connect(srv.port) as sock:
            assert http1_peer(sock)[1]["protocol"] == "HTTP/1.1"
