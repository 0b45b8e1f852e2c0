"""TLS: contexts built from the settings, and TLSConnection driven by a real epoll loop.

The loop here is a miniature of the worker's: non-blocking sockets, `advance()` on readability,
a sweep for handshake deadlines, the request handled inline. Clients are real: Python's ssl,
curl and `openssl s_client` over loopback. Certificates are made at test time with the
openssl command (a CA, a server certificate for localhost and 127.0.0.1, a client
certificate), so nothing secret or expiring lives in the repository.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corral.config import Settings
from corral.errors import ClientDisconnected, ConfigError
from corral.workers.tls import TLSConnection, build_context

OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")

GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
DEADLINE = 10.0

OPENSSL_CONFIG = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


# --- certificates ----------------------------------------------------------------------------


@dataclass
class Certs:
    dir: Path
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _openssl(directory: Path, *args: str) -> None:
    assert OPENSSL is not None
    result = subprocess.run(
        [OPENSSL, *args], cwd=directory, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def _issue(directory: Path, name: str, subject: str, extensions: str) -> None:
    _openssl(directory, "req", "-new", "-config", "openssl.cnf", "-newkey", "ec",
             "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", subject)  # fmt: skip
    _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey",
             "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "openssl.cnf",
             "-extensions", extensions, "-out", f"{name}.pem")  # fmt: skip


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("certs")
    (directory / "openssl.cnf").write_text(OPENSSL_CONFIG, encoding="ascii")
    _openssl(directory, "req", "-x509", "-config", "openssl.cnf", "-extensions", "ca_ext",
             "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=corral test CA")  # fmt: skip
    _issue(directory, "server", "/CN=localhost", "server_ext")
    _issue(directory, "client", "/CN=corral test client", "client_ext")
    # A client certificate that no CA we trust has signed.
    _openssl(directory, "req", "-x509", "-config", "openssl.cnf", "-extensions", "client_ext",
             "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "stranger.key", "-out", "stranger.pem", "-days", "2",
             "-subj", "/CN=stranger")  # fmt: skip
    return Certs(
        directory,
        str(directory / "ca.pem"),
        str(directory / "server.pem"),
        str(directory / "server.key"),
        str(directory / "client.pem"),
        str(directory / "client.key"),
    )


def server_settings(certs: Certs, **changes: Any) -> Settings:
    fields: dict[str, Any] = {"certfile": "server.pem", "keyfile": "server.key"}
    return Settings(chdir=str(certs.dir), **(fields | changes))


def server_context(certs: Certs, **changes: Any) -> ssl.SSLContext:
    context = build_context(server_settings(certs, **changes))
    assert context is not None
    return context


def client_context(certs: Certs, *, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certs.ca)
    if with_cert:
        context.load_cert_chain(certs.client_cert, certs.client_key)
    return context


# --- a miniature worker loop -----------------------------------------------------------------

Handler = Callable[[TLSConnection, bytes], None]


def respond(conn: TLSConnection, body: bytes) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    conn.send(head + body)


def hello(conn: TLSConnection, head: bytes) -> None:
    cert = conn.peer_certificate()
    subject = dict(item for rdn in cert["subject"] for item in rdn) if cert else {}
    respond(conn, f"hello over {conn.scheme}, {subject.get('commonName', 'anonymous')}".encode())


class TLSLoop:
    """An epoll loop over a listener and its TLSConnections, in a thread.

    Each connection ends with one outcome, queued with the client's port: "served" (the
    handler ran), "closed" (advance() returned None), "expired" (handshake deadline), or the
    handler's exception.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        handler: Handler = hello,
        *,
        timeout: float = DEADLINE,
        suppress_ragged_eofs: bool = True,
    ) -> None:
        self.context = context
        self.handler = handler
        self.timeout = timeout
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.wake_r, self.wake_w = os.pipe()
        self.outcomes: queue.Queue[tuple[str, str]] = queue.Queue()
        self.seen: dict[str, str] = {}
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> TLSLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        os.write(self.wake_w, b"x")
        self.thread.join(DEADLINE)
        self.listener.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        assert not self.thread.is_alive()

    def run(self) -> None:
        conns: dict[int, TLSConnection] = {}
        with select.epoll() as epoll:
            epoll.register(self.listener.fileno(), select.EPOLLIN)
            epoll.register(self.wake_r, select.EPOLLIN)
            try:
                while True:
                    for fd, _ in epoll.poll(0.05):
                        if fd == self.wake_r:
                            return
                        if fd == self.listener.fileno():
                            self.accept(epoll, conns)
                        elif fd in conns:
                            self.on_readable(epoll, conns, conns[fd])
                    now = time.monotonic()
                    for conn in list(conns.values()):
                        if conn.handshake_expired(now):
                            self.finish(conns, conn, "expired")
            finally:
                for conn in conns.values():
                    conn.close()

    def accept(self, epoll: select.epoll, conns: dict[int, TLSConnection]) -> None:
        while True:
            try:
                sock, peer = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            conn = TLSConnection(
                sock,
                peer,
                ("127.0.0.1", str(self.port)),
                False,
                self.timeout,
                time.monotonic(),
                context=self.context,
                suppress_ragged_eofs=self.suppress_ragged_eofs,
            )
            conns[conn.fd] = conn
            epoll.register(conn.fd, select.EPOLLIN)

    def on_readable(
        self, epoll: select.epoll, conns: dict[int, TLSConnection], conn: TLSConnection
    ) -> None:
        data = conn.advance()
        if data is None:
            self.finish(conns, conn, "closed")
            return
        conn.buf += data
        if b"\r\n\r\n" not in conn.buf:
            return
        epoll.unregister(conn.fd)
        try:
            self.handler(conn, conn.buf)
            outcome = "served"
        except Exception as exc:
            outcome = repr(exc)
        self.finish(conns, conn, outcome)

    def finish(self, conns: dict[int, TLSConnection], conn: TLSConnection, outcome: str) -> None:
        conns.pop(conn.fd)
        conn.close()
        self.outcomes.put((conn.remote_port, outcome))

    def outcome(self, port: int) -> str:
        """How the connection from this client port ended (waits for it)."""
        deadline = time.monotonic() + DEADLINE
        while str(port) not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no outcome for port {port}; have {self.seen}"
            with contextlib.suppress(queue.Empty):
                key, outcome = self.outcomes.get(timeout=remaining)
                self.seen[key] = outcome
        return self.seen[str(port)]


@pytest.fixture
def loop(certs: Certs) -> Iterator[TLSLoop]:
    with TLSLoop(server_context(certs)) as running:
        yield running


# --- clients ---------------------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)


def read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def fetch(port: int, context: ssl.SSLContext, request: bytes = GET) -> bytes:
    """Send a request over TLS and return everything the server sent before closing."""
    with context.wrap_socket(connect(port), server_hostname="localhost") as tls:
        tls.sendall(request)
        return read_to_end(tls)


def body_of(response: bytes) -> bytes:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), head
    return body


def attempt(port: int, context: ssl.SSLContext) -> tuple[int, bytes | Exception]:
    """(client port, the response or the exception) for a client that may be refused."""
    sock = connect(port)
    client_port = sock.getsockname()[1]
    try:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(GET)
            return client_port, read_to_end(tls)
    except OSError as exc:  # ssl.SSLError, a reset, a broken pipe: all mean "refused"
        return client_port, exc
    finally:
        sock.close()


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert all(record.exc_info is None for record in caplog.records)


# --- handshake and request/response with real clients ----------------------------------------


def test_python_client_gets_a_response(loop: TLSLoop, certs: Certs) -> None:
    context = client_context(certs)
    context.set_alpn_protocols(["http/1.1"])
    with context.wrap_socket(connect(loop.port), server_hostname="localhost") as tls:
        tls.sendall(GET)
        response = read_to_end(tls)
        assert tls.selected_alpn_protocol() == "http/1.1"
        client_port = tls.getsockname()[1]
    assert body_of(response) == b"hello over https, anonymous"
    assert loop.outcome(client_port) == "served"


@pytest.mark.skipif(CURL is None, reason="needs curl")
def test_curl_gets_a_response(loop: TLSLoop, certs: Certs) -> None:
    assert CURL is not None
    result = subprocess.run(
        [CURL, "-sS", "--max-time", "10", "--cacert", certs.ca, f"https://127.0.0.1:{loop.port}/"],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello over https, anonymous"


def test_openssl_s_client_gets_a_response(loop: TLSLoop, certs: Certs) -> None:
    assert OPENSSL is not None
    result = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{loop.port}", "-servername", "localhost",
         "-CAfile", certs.ca, "-verify_return_error", "-quiet", "-ign_eof"],
        input=GET,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert result.stdout.endswith(b"hello over https, anonymous")


def test_request_body_is_read_with_recv(certs: Certs) -> None:
    def echo(conn: TLSConnection, buf: bytes) -> None:
        body = buf.partition(b"\r\n\r\n")[2]
        while len(body) < 11:
            body += conn.recv()
        respond(conn, body)

    with TLSLoop(server_context(certs), echo) as loop:
        context = client_context(certs)
        with context.wrap_socket(connect(loop.port), server_hostname="localhost") as tls:
            tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello")
            tls.sendall(b" world")
            assert body_of(read_to_end(tls)) == b"hello world"


def test_clean_close_ends_the_connection(loop: TLSLoop, certs: Certs) -> None:
    with client_context(certs).wrap_socket(connect(loop.port), server_hostname="localhost") as tls:
        client_port = tls.getsockname()[1]
        tls.unwrap()  # close_notify, then waits for the server's
    assert loop.outcome(client_port) == "closed"


# --- client certificates ---------------------------------------------------------------------


def test_required_client_certificate_is_accepted(certs: Certs) -> None:
    context = server_context(certs, ca_certs="ca.pem", cert_reqs=2)
    with TLSLoop(context) as loop:
        response = fetch(loop.port, client_context(certs, with_cert=True))
    assert body_of(response) == b"hello over https, corral test client"


def test_peer_certificate_pem(certs: Certs) -> None:
    pems: list[str | None] = []

    def show(conn: TLSConnection, head: bytes) -> None:
        pems.append(conn.peer_certificate_pem())
        respond(conn, b"ok")

    context = server_context(certs, ca_certs="ca.pem", cert_reqs=1)
    with TLSLoop(context, show) as loop:
        fetch(loop.port, client_context(certs, with_cert=True))
        fetch(loop.port, client_context(certs))  # optional: no certificate is fine
    expected = ssl.DER_cert_to_PEM_cert(
        ssl.PEM_cert_to_DER_cert(Path(certs.client_cert).read_text())
    )
    assert pems == [expected, None]


@pytest.mark.parametrize(
    ("client_cert", "reason"),
    [
        (None, "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        ("stranger", "CERTIFICATE_VERIFY_FAILED (self"),  # "self signed" in OpenSSL 1.1
    ],
)
def test_client_without_a_valid_certificate_is_refused(
    certs: Certs, caplog: pytest.LogCaptureFixture, client_cert: str | None, reason: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="corral.error")
    client = client_context(certs)
    if client_cert is not None:
        client.load_cert_chain(certs.dir / f"{client_cert}.pem", certs.dir / f"{client_cert}.key")
    with TLSLoop(server_context(certs, ca_certs="ca.pem", cert_reqs=2)) as loop:
        client_port, result = attempt(loop.port, client)
        assert loop.outcome(client_port) == "closed"
    assert isinstance(result, Exception) or b"HTTP/1.1" not in result
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(messages) == 1
    assert messages[0].startswith(f"TLS handshake with 127.0.0.1 failed: {reason}"), messages
    assert_no_tracebacks(caplog)


# --- misbehaving clients ----------------------------------------------------------------------


def test_silent_client_does_not_hold_up_others_and_expires(certs: Certs) -> None:
    with TLSLoop(server_context(certs), timeout=1.0) as loop, connect(loop.port) as silent:
        started = time.monotonic()
        assert body_of(fetch(loop.port, client_context(certs))) == b"hello over https, anonymous"
        assert loop.outcome(silent.getsockname()[1]) == "expired"
        assert silent.recv(1) == b""
        assert time.monotonic() - started >= 1.0


def test_client_hello_in_pieces_does_not_hold_up_others(loop: TLSLoop, certs: Certs) -> None:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context(certs).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with connect(loop.port) as sock:
        with pytest.raises(ssl.SSLWantReadError):
            client.do_handshake()
        client_hello = outgoing.read()
        sock.sendall(client_hello[:7])  # not even a whole record header and length
        assert body_of(fetch(loop.port, client_context(certs))).startswith(b"hello")
        sock.sendall(client_hello[7:])
        while True:
            try:
                client.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        client.write(GET)
        sock.sendall(outgoing.read())
        response = b""
        while data := sock.recv(65536):
            incoming.write(data)
            with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                while part := client.read(65536):
                    response += part
    assert body_of(response) == b"hello over https, anonymous"


def test_plain_http_to_a_tls_port_is_closed(
    loop: TLSLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="corral.error")
    with connect(loop.port) as sock:
        sock.sendall(GET)
        reply = read_to_end(sock)
        assert loop.outcome(sock.getsockname()[1]) == "closed"
    assert b"HTTP/1.1" not in reply  # at most a TLS alert
    messages = [r.getMessage() for r in caplog.records]
    assert any("TLS handshake with 127.0.0.1 failed" in m for m in messages), messages
    assert_no_tracebacks(caplog)


def test_client_that_leaves_mid_handshake_is_closed_quietly(
    loop: TLSLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="corral.error")
    with connect(loop.port) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(b"\x16\x03\x01\x00")  # the start of a handshake record, then nothing
    assert loop.outcome(client_port) == "closed"
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert_no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("suppress", "expected"), [(True, "end of stream"), (False, "ClientDisconnected")]
)
def test_ragged_eof_in_a_body(certs: Certs, suppress: bool, expected: str) -> None:
    results: list[str] = []

    def read_body(conn: TLSConnection, buf: bytes) -> None:
        try:
            while conn.recv():
                pass
            results.append("end of stream")
        except ClientDisconnected:
            results.append("ClientDisconnected")

    with TLSLoop(server_context(certs), read_body, suppress_ragged_eofs=suppress) as loop:
        context = client_context(certs)
        with context.wrap_socket(connect(loop.port), server_hostname="localhost") as tls:
            client_port = tls.getsockname()[1]
            tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            tls.shutdown(socket.SHUT_WR)  # FIN without close_notify
            assert loop.outcome(client_port) == "served"
    assert results == [expected]


# --- the context and the ssl_context hook ------------------------------------------------------


def test_ssl_context_hook_replaces_the_context(certs: Certs) -> None:
    calls: list[object] = []

    def tls13_only(config: Any, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        calls.append(config)
        context = default_factory()
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return context

    settings = server_settings(certs, ssl_context=tls13_only)
    context = build_context(settings)
    assert context is not None and calls == [settings]
    old_client = client_context(certs)
    old_client.maximum_version = ssl.TLSVersion.TLSv1_2
    with TLSLoop(context) as loop:
        _, result = attempt(loop.port, old_client)
        assert isinstance(result, ssl.SSLError)
        with client_context(certs).wrap_socket(
            connect(loop.port), server_hostname="localhost"
        ) as tls:
            assert tls.version() == "TLSv1.3"
            tls.sendall(GET)
            assert body_of(read_to_end(tls)).startswith(b"hello")


def test_ssl_context_hook_must_return_a_context(certs: Certs) -> None:
    with pytest.raises(ConfigError, match="ssl_context hook returned NoneType"):
        build_context(server_settings(certs, ssl_context=lambda config, factory: None))


def test_no_certfile_means_no_tls() -> None:
    assert build_context(Settings()) is None


def test_client_certificates_without_ca_warn(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    server_context(certs, cert_reqs=2)
    assert any("no CA certificate is loaded" in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="session")
def bad_files(certs: Certs) -> Path:
    directory = certs.dir
    _openssl(directory, "pkey", "-in", "server.key", "-aes256", "-passout", "pass:secret",
             "-out", "encrypted.key")  # fmt: skip
    (directory / "empty.pem").write_text("", encoding="ascii")
    return directory


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"certfile": "missing.pem"}, r"^Cannot read certfile .*/missing\.pem: No such file"),
        ({"keyfile": "missing.key"}, r"^Cannot read keyfile .*/missing\.key: No such file"),
        ({"certfile": "server.key"}, r"^Cannot load certfile .*/server\.key: no PEM certificate"),
        ({"keyfile": "empty.pem"}, r"^Cannot load keyfile .*/empty\.pem: no PEM private key"),
        ({"keyfile": None}, r"^Cannot load certfile .*/server\.pem: no PEM private key"),
        ({"keyfile": "client.key"}, r"^Cannot load certfile .*/server\.pem and keyfile .*/client"),
        ({"keyfile": "encrypted.key"}, r"^Cannot load keyfile .*/encrypted\.key: .*passphrase"),
        ({"ca_certs": "missing-ca.pem"}, r"^Cannot read ca_certs .*/missing-ca\.pem"),
        ({"ca_certs": "empty.pem"}, r"^Cannot load ca_certs .*/empty\.pem"),
        ({"ciphers": "NO-SUCH-CIPHER"}, r"^Invalid value for ciphers: 'NO-SUCH-CIPHER'"),
    ],
)
def test_unusable_files_are_config_errors_naming_them(
    certs: Certs, bad_files: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build_context(server_settings(certs, **changes))
    assert "\n" not in str(caught.value)


# --- large responses -----------------------------------------------------------------------------


def test_five_megabyte_response_arrives_intact(certs: Certs) -> None:
    payload = os.urandom(5 * 1024 * 1024)

    def large(conn: TLSConnection, head: bytes) -> None:
        respond(conn, payload)

    with TLSLoop(server_context(certs), large) as loop:
        body = body_of(fetch(loop.port, client_context(certs)))
    assert len(body) == len(payload)
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()


def sendfile_all(conn: TLSConnection, fd: int, offset: int, count: int) -> int:
    """The engine's way: sendfile_some whenever the socket is writable, until end of file."""
    total = 0
    while total < count:
        sent = conn.sendfile_some(fd, offset + total, count - total)
        if sent is None:
            select.select([], [conn.sock], [], 5)
            continue
        if sent == 0:
            break
        total += sent
    while not conn.flush_some():
        select.select([], [conn.sock], [], 5)
    return total


def test_sendfile_over_tls(certs: Certs, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    counts: list[int] = []

    def send_file(conn: TLSConnection, head: bytes) -> None:
        length = len(payload) - 100 + 5
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length)
        with open(path, "rb") as file:
            counts.append(sendfile_all(conn, file.fileno(), 100, len(payload) - 100))
            counts.append(sendfile_all(conn, file.fileno(), len(payload) - 5, 50))  # past the end

    with TLSLoop(server_context(certs), send_file) as loop:
        body = body_of(fetch(loop.port, client_context(certs)))
    assert counts == [len(payload) - 100, 5]
    assert body == payload[100:] + payload[-5:]
