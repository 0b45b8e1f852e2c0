"""WebSocket flow control on the asgi worker, through real servers: permessage-deflate and
its bound on inflation, server pings, and the bounded receive queue. The `websockets` library
is the well-behaved client; support/ws_client.py sends what it never would."""

from __future__ import annotations

import random
import threading

import pytest

from support.client import connect, read_response
from support.server import Server, wait_for
from support.ws_client import deflate, open_websocket

sync_client = pytest.importorskip("websockets.sync.client")
exceptions = pytest.importorskip("websockets.exceptions")
permessage_deflate = pytest.importorskip("websockets.extensions.permessage_deflate")

ECHO = "support.asgi_apps:websocket_app"
HOARDER = "support.asgi_websocket_apps:hoarder"
TEXT, BINARY, PING, PONG = 0x1, 0x2, 0x9, 0xA


def get(port: int, path: str) -> bytes:
    with connect(port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        response = read_response(sock)[0]
        assert response.status == 200
        return response.body


# --- permessage-deflate (RFC 7692) ------------------------------------------------------------


def test_deflate_negotiated_with_the_websockets_client() -> None:
    with (
        Server(ECHO, "-k", "asgi") as srv,
        sync_client.connect(f"ws://127.0.0.1:{srv.port}/ws") as ws,
    ):
        assert ws.response.headers["Sec-WebSocket-Extensions"] == "permessage-deflate"
        text = "the same words again and again " * 10_000
        ws.send(text)
        assert ws.recv(timeout=5) == "echo: " + text
        for size in (0, 1, 16384, 300_000):
            data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            ws.send(data)
            assert ws.recv(timeout=5) == data


def test_deflate_frames_on_the_wire_and_off_by_setting() -> None:
    with Server(ECHO, "-k", "asgi") as srv:
        ws = open_websocket(srv.port, extensions="permessage-deflate; client_max_window_bits")
        try:
            assert ws.extensions == "permessage-deflate; client_max_window_bits=15" or (
                ws.extensions == "permessage-deflate"
            )
            ws.send_frame(TEXT, deflate(b"hello " * 1000), rsv1=True)
            first, payload = ws.read_frame()
            assert first == 0x80 | 0x40 | TEXT  # our answer is compressed too
            assert len(payload) < 100
        finally:
            ws.close()
    with Server(ECHO, "-k", "asgi", "--no-websocket-per-message-deflate") as srv:
        ws = open_websocket(srv.port, extensions="permessage-deflate")
        try:
            assert ws.extensions is None
            ws.send_frame(TEXT, deflate(b"hello"), rsv1=True)  # RSV1 was not negotiated
            assert ws.read_close() == 1002
        finally:
            ws.close()


def test_deflate_parameters_negotiated_with_the_websockets_client() -> None:
    """Every combination of context takeover and window the client may ask for (RFC 7692
    §7.1), each carrying messages that repeat earlier ones (the window matters) both ways."""
    factory = permessage_deflate.ClientPerMessageDeflateFactory
    offers = [
        factory(server_no_context_takeover=True),
        factory(client_no_context_takeover=True),
        factory(server_no_context_takeover=True, client_no_context_takeover=True),
        factory(server_max_window_bits=9, client_max_window_bits=9),
        factory(server_max_window_bits=12),
        factory(client_max_window_bits=None),
    ]
    rng = random.Random(12)
    words = [rng.randbytes(40).hex() for _ in range(50)]
    with Server(ECHO, "-k", "asgi") as srv:
        for offer in offers:
            url = f"ws://127.0.0.1:{srv.port}/ws"
            with sync_client.connect(url, extensions=[offer], compression=None) as ws:
                agreed = ws.response.headers["Sec-WebSocket-Extensions"]
                assert agreed.startswith("permessage-deflate"), agreed
                for size in (10, 300, 5000, 70_000):
                    text = " ".join(rng.choice(words) for _ in range(size // 80 + 1))
                    ws.send(text)
                    assert ws.recv(timeout=5) == "echo: " + text, (agreed, size)
        assert "Traceback" not in srv.log()


def test_a_compressed_bomb_closes_1009_without_inflating_it() -> None:
    bomb = deflate(bytes(512 * 1024 * 1024))  # 512 MiB of zeros in about 500 KB
    assert len(bomb) < 1_000_000
    with Server(ECHO, "-k", "asgi", "--websocket-max-message-size", "1048576") as srv:
        ws = open_websocket(srv.port, extensions="permessage-deflate")
        try:
            assert ws.extensions == "permessage-deflate"
            ws.send_frame(BINARY, deflate(b"fine " * 100), rsv1=True)
            assert ws.read_frame()[1]  # a small compressed message is echoed
            before = worker_rss_kib(srv)
            ws.send_frame(BINARY, bomb, rsv1=True)
            assert ws.read_close() == 1009
            assert ws.closed_by_server()
        finally:
            ws.close()
        # Inflating it would have cost 512 MiB; the limit is 1 MiB.
        assert worker_rss_kib(srv) - before < 64 * 1024
        assert "Traceback" not in srv.log()


def worker_rss_kib(srv: Server) -> int:
    (pid,) = srv.worker_pids()
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1])


# --- server pings ---------------------------------------------------------------------------


def test_a_client_that_never_answers_pings_is_closed_1011() -> None:
    args = ("--websocket-ping-interval", "1", "--websocket-ping-timeout", "1")
    with Server(ECHO, "-k", "asgi", *args) as srv:
        ws = open_websocket(srv.port)
        try:
            first, payload = ws.read_frame()
            assert first == 0x80 | PING
            ws.send_frame(PONG, payload)  # answered: the connection lives on
            first, payload = ws.read_frame()
            assert first == 0x80 | PING  # the next ping, after another quiet interval
            # Not answered this time.
            first, payload = ws.read_frame()
            assert first == 0x88 and int.from_bytes(payload[:2], "big") == 1011
            assert ws.closed_by_server()
        finally:
            ws.close()
        assert "no answer to a ping" in srv.log()


def test_the_websockets_client_answers_pings_and_stays() -> None:
    args = ("--websocket-ping-interval", "1", "--websocket-ping-timeout", "1")
    with Server(ECHO, "-k", "asgi", *args) as srv:
        with sync_client.connect(f"ws://127.0.0.1:{srv.port}/ws", ping_interval=None) as ws:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=3.5)  # three intervals of silence from the application
            ws.send("still here")
            assert ws.recv(timeout=5) == "echo: still here"
        assert "no answer to a ping" not in srv.log()


# --- the bounded receive queue ----------------------------------------------------------------


def flood(ws: object, count: int, size: int, progress: list[int]) -> None:
    payload = bytes(size)
    for _ in range(count):
        ws.send_frame(BINARY, payload)  # type: ignore[attr-defined]
        progress[0] += 1
    ws.send_frame(TEXT, b"end")  # type: ignore[attr-defined]


def test_an_application_that_does_not_receive_stops_the_reading() -> None:
    count, size = 4000, 64 * 1024  # 250 MiB offered
    with Server(HOARDER, "-k", "asgi", "--websocket-max-queue", "8") as srv:
        ws = open_websocket(srv.port, path="/hoard")
        start_rss = worker_rss_kib(srv)
        progress = [0]
        sender = threading.Thread(target=flood, args=(ws, count, size, progress), daemon=True)
        ws.sock.settimeout(60)
        sender.start()
        try:
            # The sender stalls: the worker stopped reading once 8 messages waited.
            def stalled() -> bool:
                seen = progress[0]
                sender.join(0.5)
                return progress[0] == seen and seen > 0

            wait_for(stalled, 30, "the flood to stall")
            assert progress[0] < count // 4
            assert get(srv.port, "/") == b"ok"  # the worker serves others meanwhile
            assert worker_rss_kib(srv) - start_rss < 64 * 1024
            get(srv.port, "/release")  # the application receives: reading resumes
            sender.join(60)
            assert not sender.is_alive()
            _, payload = ws.read_frame()
            assert payload == str(count).encode()  # every message arrived, in order
        finally:
            ws.close()


def test_bad_compressed_data_and_a_fragmented_bomb_close_without_a_traceback() -> None:
    with Server(ECHO, "-k", "asgi", "--websocket-max-message-size", "65536") as srv:
        ws = open_websocket(srv.port, extensions="permessage-deflate")
        try:
            ws.send_frame(BINARY, b"\xff\xff\xff\xff not deflate", rsv1=True)
            assert ws.read_close() == 1002
        finally:
            ws.close()
        ws = open_websocket(srv.port, extensions="permessage-deflate")
        try:
            bomb = deflate(bytes(64 * 1024 * 1024))
            # The first fragment already inflates past 64 KiB: closed before the rest is sent.
            ws.send_frame(BINARY, bomb[:4096], fin=False, rsv1=True)
            assert ws.read_close() == 1009
        finally:
            ws.close()
        assert "Traceback" not in srv.log()


def test_a_connection_paused_for_a_slow_application_is_not_pinged_to_death() -> None:
    args = ("--websocket-max-queue", "2", "--websocket-ping-interval", "1")
    with Server(HOARDER, "-k", "asgi", *args, "--websocket-ping-timeout", "1") as srv:
        ws = open_websocket(srv.port, path="/hoard")
        try:
            for _ in range(10):
                ws.send_frame(BINARY, b"waiting")
            # Reading stopped with the queue full: the client's silence is ours, so three
            # intervals pass without a Ping (nor a close).
            ws.sock.settimeout(3.5)
            with pytest.raises(TimeoutError):
                ws.read_frame()
            ws.sock.settimeout(10)
            get(srv.port, "/release")
            ws.send_frame(TEXT, b"end")
            while True:
                first, payload = ws.read_frame()
                if first & 0x0F == PING:
                    ws.send_frame(PONG, payload)
                elif first & 0x0F == TEXT:
                    break
            assert payload == b"10"
        finally:
            ws.close()
        assert "no answer to a ping" not in srv.log()
