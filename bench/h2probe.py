"""The start probe of the HTTP/2 scenarios: one `GET /` in HTTP/2 on a new connection, and
whether the response's HEADERS frame came back.

A server that speaks only HTTP/2 on its listener answers no HTTP/1.1 probe, so the time to
the first response is taken with this one: the client preface, an empty SETTINGS frame, then
a HEADERS frame for stream 1 made of fixed HPACK bytes (static-table entries for `:method GET`,
`:scheme`, `:path /`, and `:authority` as a literal). Cleartext is HTTP/2 by prior knowledge;
over TLS h2 is asked for by ALPN and the certificate is not verified (the benchmark made it).
It reads frame headers and skips payloads until a HEADERS frame on stream 1; it never
interprets the response (the check before the load does that, with h2load).
"""

from __future__ import annotations

import socket
import ssl
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, HEADERS = 0x4, 0x1
END_STREAM, END_HEADERS = 0x1, 0x4
# HPACK static table: 2 = :method GET, 4 = :path /, 6 = :scheme http, 7 = :scheme https;
# 0x41 = literal with incremental indexing, name :authority (1).
METHOD_GET, PATH_ROOT, SCHEME_HTTP, SCHEME_HTTPS, AUTHORITY = 0x82, 0x84, 0x86, 0x87, 0x41


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    head = struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream)
    return head + payload


def request(host: str, port: int, tls: bool) -> bytes:
    authority = f"{host}:{port}".encode()
    block = bytes([METHOD_GET, SCHEME_HTTPS if tls else SCHEME_HTTP, PATH_ROOT, AUTHORITY])
    block += bytes([len(authority)]) + authority
    return PREFACE + frame(SETTINGS, 0, 0, b"") + frame(HEADERS, END_STREAM | END_HEADERS, 1, block)


def connect(host: str, port: int, tls: bool, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    if not tls:
        return sock
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        wrapped = context.wrap_socket(sock, server_hostname=host)
    except (OSError, ssl.SSLError):
        sock.close()
        raise
    if wrapped.selected_alpn_protocol() != "h2":
        wrapped.close()
        raise ConnectionError("the server did not choose h2 by ALPN")
    return wrapped


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def answered(host: str, port: int, tls: bool, timeout: float) -> bool:
    """Whether a GET / in HTTP/2 got its response headers back within `timeout`."""
    try:
        with connect(host, port, tls, timeout) as sock:
            sock.sendall(request(host, port, tls))
            for _ in range(64):  # SETTINGS, its ACK, WINDOW_UPDATE... before the answer
                head = read_exactly(sock, 9)
                length = int.from_bytes(head[:3], "big")
                kind, stream = head[3], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                read_exactly(sock, length)
                if kind == HEADERS and stream == 1:
                    return True
    except (OSError, ssl.SSLError):
        return False
    return False
