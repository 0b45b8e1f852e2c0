"""HTTP/2 on the asgi worker through a real server: h2c by prior knowledge and upgrade, h2 over
TLS, streams served concurrently as tasks, flow control credited as the application reads, and
the ASGI messages (errors, trailers, early hints, pathsend) on streams."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
from pathlib import Path

import h2.errors
import httpx

from support.asgi_h2_client import H2Client
from support.client import connect, read_response
from support.pki import make_pki, tls_args
from support.server import Server, wait_for

APP = "support.asgi_h2_apps:app"
H2C = ("-k", "asgi", "--http-protocols", "h2,h1", "--http2-cleartext", "both")


def h2c_server(*args: str, **kwargs: object) -> Server:
    return Server(APP, *H2C, *args, **kwargs)  # type: ignore[arg-type]


def test_prior_knowledge_get_scope_and_lifespan_state() -> None:
    with h2c_server("--root-path", "/mnt") as srv, H2Client(srv.port) as client:
        stream = client.get("/a%20b?x=1", headers=[("x-id", "7")])
        assert stream.status == 200
        info = json.loads(stream.data)
        assert info["http_version"] == "2" and info["method"] == "GET"
        assert info["path"] == "/mnt/a b" and info["scheme"] == "http"
        assert info["state"] == "hello from lifespan"
        assert ["host", "localhost"] in info["headers"] and ["x-id", "7"] in info["headers"]
        assert "http.response.pathsend" in info["extensions"]
        assert info["client"][0] == "127.0.0.1" and info["server"][1] == srv.port
        headers = dict(stream.headers)
        assert headers[b"content-type"] == b"application/json"
        assert headers[b"content-length"] == b"%d" % len(stream.data)
        # The connection goes on: a second stream on it.
        assert client.get("/second").status == 200


def test_post_body_and_big_response_with_window_updates() -> None:
    with h2c_server() as srv, H2Client(srv.port) as client:
        body = bytes(range(256)) * 4096  # 1 MiB: many windows' worth each way
        stream_id = client.request("/echo", method="POST", body=b"", end=False)
        sent = 0
        while sent < len(body):
            sent += client.send_data(stream_id, body[sent:], True)
            if sent < len(body):
                client.read_once(0.2)  # WINDOW_UPDATEs as the application reads
        client.wait(lambda: client.done(stream_id))
        assert client.streams[stream_id].status == 200
        assert client.streams[stream_id].data == body
        stream = client.get("/big?3000000")
        assert stream.status == 200 and len(stream.data) == 3000000


def test_slow_reader_holds_the_peer_to_its_window() -> None:
    """The server credits a body as the application reads it: while /hold reads nothing, the
    client's window stays closed after the first 64 KiB; once released, the whole MiB flows."""
    with h2c_server() as srv, H2Client(srv.port) as client:
        body = b"b" * (1 << 20)
        stream_id = client.request("/hold", method="POST", body=b"", end=False)
        sent = client.send_data(stream_id, body, True)
        assert sent == 65535  # the default initial window
        client.wait(lambda: client.streams[stream_id].data == b"holding\n")
        for _ in range(5):  # frames the server sends meanwhile: none opens the window
            client.read_once(0.1)
        assert client.conn.local_flow_control_window(stream_id) == 0
        client.get("/release")
        while sent < len(body):
            client.read_once(0.2)
            sent += client.send_data(stream_id, body[sent:], True)
        client.wait(lambda: client.done(stream_id))
        assert client.streams[stream_id].data == b"holding\n%d" % len(body)


def test_sixteen_streams_run_concurrently() -> None:
    """Each /gather waits until 16 wait together: they can only end if served side by side."""
    with h2c_server() as srv, H2Client(srv.port) as client:
        ids = [client.request("/gather?16") for _ in range(16)]
        client.wait(lambda: all(client.done(i) for i in ids))
        assert {client.streams[i].data for i in ids} == {b"together"}


def test_reset_of_a_running_stream_is_http_disconnect() -> None:
    with h2c_server() as srv, H2Client(srv.port) as client:
        stream_id = client.request("/wait-disconnect/1")
        client.wait(lambda: client.streams[stream_id].data == b"waiting\n")
        client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        client.flush()

        def seen() -> bool:
            return json.loads(client.get("/disconnects").data) == ["/wait-disconnect/1"]

        wait_for(seen, what="the application's http.disconnect")


def test_errors_before_and_after_the_head() -> None:
    with h2c_server() as srv, H2Client(srv.port) as client:
        assert client.get("/boom-before").status == 500
        stream = client.get("/boom-after")
        assert stream.status == 200 and stream.data == b"partial"
        assert stream.reset == h2.errors.ErrorCodes.INTERNAL_ERROR and not stream.ended
        short = client.get("/short")  # 5 of the 10 bytes announced: never a clean end
        assert short.reset == h2.errors.ErrorCodes.INTERNAL_ERROR and not short.ended
        assert client.get("/bad-header").status == 500
        assert client.get("/no-response").status == 500
        stream = client.get("/hop-by-hop")
        names = {name for name, _ in stream.headers}
        assert b"connection" not in names and b"transfer-encoding" not in names
        assert b"x-kept" in names and stream.data == b"ok"
        assert client.get("/after").status == 200  # the connection survived all of it
        srv.wait_log("boom before the head")
        srv.wait_log("boom after the head")
        srv.wait_log("returned without a response")


def test_trailers_early_hints_and_pathsend(tmp_path: Path) -> None:
    payload = tmp_path / "file.bin"
    payload.write_bytes(b"p" * 200_000)
    env = {"CORRAL_TEST_PATHSEND": str(payload)}
    with h2c_server(env=env) as srv, H2Client(srv.port) as client:
        stream = client.get("/trailers", headers=[("te", "trailers")])
        assert stream.data == b"data" and stream.trailers == [(b"grpc-status", b"0")]
        info = json.loads(client.get("/", headers=[("te", "trailers")]).data)
        assert "http.response.trailers" in info["extensions"]
        stream = client.get("/early")
        assert stream.informational[0][0] == (b":status", b"103")
        assert (b"link", b"</style.css>; rel=preload") in stream.informational[0]
        assert stream.status == 200 and stream.data == b"after the hint"
        stream = client.get("/pathsend")
        assert stream.data == payload.read_bytes()
        assert dict(stream.headers)[b"content-length"] == b"200000"


def test_bad_requests_are_answered_on_their_stream() -> None:
    args = ("--limit-request-body", "10", "--limit-request-line", "100")
    with h2c_server(*args) as srv, H2Client(srv.port) as client:
        assert client.get("/" + "p" * 200).status == 414  # :path held to the request line
        assert client.get("/x", headers=[("x-ctl", "a\x01b")]).status == 400
        stream = client.get(
            "/echo", method="POST", body=b"x" * 11, headers=[("content-length", "11")]
        )
        assert stream.status == 413
        stream = client.get("/echo", method="POST", body=b"y" * 100)  # no length, too long
        assert stream.status == 413
        assert client.get("/after").status == 200


def test_health_path_and_access_log() -> None:
    args = (
        "--health-path",
        "/healthz",
        "--access-logfile",
        "-",
        "--access-logformat",
        "%(H)s %(s)s %(U)s",
    )
    with h2c_server(*args) as srv, H2Client(srv.port) as client:
        stream = client.get("/healthz")
        assert stream.status == 200
        assert client.get("/logged").status == 200
        srv.wait_log("HTTP/2 200 /logged")


def test_http11_still_served_and_upgrade_h2c() -> None:
    with h2c_server() as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n")
            resp, _ = read_response(sock)
            assert resp.status == 200 and json.loads(resp.body)["http_version"] == "1.1"
        curl = shutil.which("curl")
        assert curl is not None
        url = f"http://127.0.0.1:{srv.port}/via-curl"
        for flag in ("--http2-prior-knowledge", "--http2"):
            out = subprocess.run(
                [curl, "-sS", flag, "-w", "\n%{http_version}", url],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            body, _, version = out.rpartition("\n")
            assert version == "2", (flag, out)
            assert json.loads(body)["http_version"] == "2"


def test_prior_knowledge_only_refuses_http11_from_trusted_peers() -> None:
    args = ("-k", "asgi", "--http-protocols", "h2,h1", "--http2-cleartext", "prior-knowledge")
    with Server(APP, *args) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(sock)[0].status == 400
        with H2Client(srv.port) as client:
            assert client.get("/").status == 200


def test_untrusted_peer_gets_http11_only() -> None:
    args = (*H2C, "--forwarded-allow-ips", "10.0.0.1")
    with Server(APP, *args) as srv, connect(srv.port) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        resp, _ = read_response(sock)
        assert resp.status == 505  # not HTTP/2 for this peer: an HTTP/1.1 parser's answer


def test_tls_alpn_h2_with_httpx(tmp_path: Path) -> None:
    make_pki(tmp_path)
    args = ("-k", "asgi", "--http-protocols", "h2,h1", *tls_args(tmp_path))
    with Server(APP, *args) as srv:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with httpx.Client(http2=True, verify=context) as http:
            url = f"https://127.0.0.1:{srv.port}"
            responses = [http.get(f"{url}/n{i}") for i in range(3)]
            assert {r.http_version for r in responses} == {"HTTP/2"}
            info = responses[0].json()
            assert info["scheme"] == "https" and info["http_version"] == "2"
            assert "tls" in info["extensions"]
            posted = http.post(f"{url}/echo", content=b"z" * 300_000)
            assert posted.content == b"z" * 300_000
        context.set_alpn_protocols(["http/1.1"])
        with httpx.Client(http2=False, verify=context) as http:
            assert http.get(f"{url}/h1").json()["http_version"] == "1.1"


def test_graceful_stop_finishes_open_streams_with_goaway() -> None:
    """nghttp shows the frames: GOAWAY (NO_ERROR, naming the running stream), then that
    stream's whole response."""
    nghttp = shutil.which("nghttp")
    assert nghttp is not None
    with h2c_server("--graceful-timeout", "20") as srv:
        proc = subprocess.Popen(
            [nghttp, "-nv", f"http://127.0.0.1:{srv.port}/sleep?2"],
            stdout=subprocess.PIPE,
            text=True,
        )
        srv.wait_log("sleeping in /sleep")
        for pid in srv.worker_pids():
            os.kill(pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert "recv GOAWAY frame" in out and "last_stream_id=13" in out, out
        assert "error_code=NO_ERROR" in out
        assert ":status: 200" in out and "END_STREAM" in out.split("recv GOAWAY")[1], out


def test_expect_100_continue_on_a_stream() -> None:
    """The client waits for 100 before its body (RFC 9110 §10.1.1); it comes when the
    application first asks for the body."""
    with h2c_server() as srv, H2Client(srv.port) as client:
        stream_id = client.request(
            "/echo", method="POST", headers=[("expect", "100-continue")], end=False
        )
        client.wait(lambda: client.streams[stream_id].informational)
        assert client.streams[stream_id].informational[0] == [(b":status", b"100")]
        client.send_data(stream_id, b"after continue", True)
        client.wait(lambda: client.done(stream_id))
        assert client.streams[stream_id].data == b"after continue"
