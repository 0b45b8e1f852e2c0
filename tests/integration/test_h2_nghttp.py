"""HTTP/2 through nghttp (nghttp2's client, `-nv` prints every frame): several requests on one
connection by prior knowledge, by `Upgrade: h2c` and over TLS, uploads under small windows,
padding, CONTINUATION and request trailers, response trailers, the SETTINGS it receives, and
a graceful stop, on the gthread and asgi workers. An upload answered before it is read is in
test_h2_early_response.py.

With CORRAL_TEST_H2_PEER=hypercorn these tests run against Hypercorn instead (those of corral's
own settings skip themselves).
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from support.h2_apps import TRAILED_BODY
from support.h2_servers import PEER, WORKERS, corral_only, make_tls, need, worker_server
from support.h2_tools import ended_streams, nghttp, several, upload_file, url

pytest.importorskip("h2")

worker_ids = pytest.mark.parametrize("worker", list(WORKERS))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls(tmp_path_factory.mktemp("pki"))


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
