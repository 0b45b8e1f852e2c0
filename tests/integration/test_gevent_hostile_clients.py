"""Nothing a client does may crash a gevent worker: a crowd of clients that leave at every
point of an exchange (before sending, mid-head, mid-body, mid-response, with a reset), send
garbage, or pipeline and vanish, all at once, while well-behaved clients keep being served.
Afterwards the same worker process still serves, and the log holds no traceback."""

from __future__ import annotations

import contextlib
import importlib.util
import random
import shutil
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.client import connect, read_response
from support.pki import make_pki, tls_args
from support.server import Server

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gevent") is None, reason="needs gevent (corral[gevent])"
)

HEAD = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n"


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def leave_silent(sock: socket.socket) -> None:
    sock.close()


def leave_mid_head(sock: socket.socket) -> None:
    sock.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: ")
    reset(sock)


def leave_mid_body(sock: socket.socket) -> None:
    sock.sendall(HEAD + b"x" * 5000)
    sock.close()


def leave_mid_response(sock: socket.socket) -> None:
    sock.sendall(b"GET /file?8000000 HTTP/1.1\r\nHost: h\r\n\r\n")
    sock.recv(1000)
    reset(sock)


def send_garbage(sock: socket.socket) -> None:
    sock.sendall(bytes(random.randrange(256) for _ in range(3000)) + b"\r\n\r\n")
    sock.settimeout(5)
    with contextlib.suppress(OSError):
        sock.recv(100)
    sock.close()


def pipeline_and_vanish(sock: socket.socket) -> None:
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n" * 50)
    reset(sock)


def tls_hello_on_plain(sock: socket.socket) -> None:
    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 200)
    sock.close()


BEHAVIOURS: list[Callable[[socket.socket], None]] = [
    leave_silent,
    leave_mid_head,
    leave_mid_body,
    leave_mid_response,
    send_garbage,
    pipeline_and_vanish,
    tls_hello_on_plain,
]


@pytest.fixture(params=["plain", "tls"])
def dial(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dialer]:
    """How clients connect: plain TCP, or TLS (the hostile behaviours then run after the
    handshake, inside the encrypted stream)."""
    if request.param == "plain":
        yield Dialer([], connect)
        return
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    make_pki(tmp_path)
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))

    def tls_connect(port: int) -> socket.socket:
        raw = connect(port)
        return context.wrap_socket(raw, server_hostname="127.0.0.1")

    yield Dialer(tls_args(tmp_path), tls_connect)


class Dialer:
    def __init__(self, args: list[str], connect: Callable[[int], socket.socket]) -> None:
        self.args = args
        self.connect = connect


def test_hostile_clients_do_not_disturb_the_worker(dial: Dialer) -> None:
    with Server("support.apps:echo", "-k", "gevent", "--timeout", "5", *dial.args) as srv:
        [pid] = srv.worker_pids()
        errors: list[BaseException] = []
        served: list[int] = []

        def hostile(n: int) -> None:
            try:
                with dial.connect(srv.port) as sock:
                    BEHAVIOURS[n % len(BEHAVIOURS)](sock)
            except OSError:
                pass  # the server may well hang up first: that is its right
            except BaseException as exc:
                errors.append(exc)

        def polite() -> None:
            try:
                for _ in range(10):
                    with dial.connect(srv.port) as sock:
                        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n")
                        served.append(read_response(sock)[0].status)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=hostile, args=(n,)) for n in range(280)]
        threads += [threading.Thread(target=polite) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert served == [200] * 50
        assert srv.worker_pids() == [pid]
        with dial.connect(srv.port) as sock:
            sock.sendall(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(sock)[0].status == 200
        log = srv.log()
        assert "Traceback" not in log and "Unexpected error" not in log, log
