"""A raw-socket HTTP client: send exact bytes, read a response head and body back."""

from __future__ import annotations

import contextlib
import http.client
import socket


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def recv_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def exchange(port: int, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, half-close, return all the server sent until it closed."""
    with connect(port, timeout) as sock:
        sock.sendall(raw)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


class Response:
    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def read_response(
    sock: socket.socket, buf: bytes = b"", head_only: bool = False
) -> tuple[Response, bytes]:
    """Read one response (Content-Length, chunked or close-delimited); returns it and the rest."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a full head: {buf!r}")
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    _, code, reason = lines[0].split(" ", 2)
    headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
    resp = Response(int(code), reason, headers, b"")  # type: ignore[arg-type]
    if head_only or resp.status in (204, 304) or 100 <= resp.status < 200:
        return resp, buf
    length = resp.header("Content-Length")
    if length is not None:
        while len(buf) < int(length):
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed mid-body")
            buf += data
        resp.body, buf = buf[: int(length)], buf[int(length) :]
        return resp, buf
    if resp.header("Transfer-Encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += sock.recv(65536)
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line, 16)
            while len(buf) < size + 2:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed mid-chunk")
                buf += data
            body += buf[:size]
            buf = buf[size + 2 :]
            if size == 0:
                resp.body = body
                return resp, buf
    resp.body = buf + recv_all(sock)
    return resp, b""


def get_status(port: int, target: str, headers: dict[str, str] | None = None) -> int:
    """GET `target` with the standard library's client on a fresh connection; its status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()
