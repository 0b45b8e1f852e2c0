"""The engine's reading side: heads parsed as bytes arrive, request bodies received before the
application is called, PROXY protocol headers, and TLS input.

This is the one place requests are parsed; pipelined ones come back here when the response
before them is done. Runs only in the worker's loop. What it must never do: wait for a client
(every read is non-blocking; an incomplete head or body waits in the epoll set), or call the
application.
"""

from __future__ import annotations

import functools
import logging
import select
from typing import TYPE_CHECKING

from corral.adapters.body import EMPTY_BODY, Body, BodyBuffer
from corral.adapters.wsgi import Input
from corral.errors import ProtocolError
from corral.http.body import decoder_for
from corral.http.h2_negotiation import H1, MORE, alpn_is_h2, preface_state, upgrade_settings
from corral.http.parser import Limits, Request, parse_head
from corral.http.proxy import parse_proxy_header
from corral.http.uwsgi import Packet, parse_packet
from corral.http.writer import CONTINUE
from corral.trust import is_trusted
from corral.workers.connection import BODY, HEAD, RECV_SIZE, Connection
from corral.workers.heartbeat import REASON_MAX_REQUESTS

if TYPE_CHECKING:
    from corral.config import Settings

log = logging.getLogger("corral.error")

READ = select.EPOLLIN | select.EPOLLRDHUP


class _SecureConnection(Connection):
    """A plain connection on which a trusted uwsgi proxy said HTTPS: wsgi.url_scheme is a
    class attribute of Connection (not a slot, to keep it free), so the connection changes
    class for the one request it carries."""

    __slots__ = ()
    scheme = "https"


def apply_proxy_vars(conn: Connection, packet: Packet) -> None:
    """The client and server a trusted uwsgi proxy names (REMOTE_ADDR, REMOTE_PORT,
    SERVER_NAME, SERVER_PORT, HTTPS) replace what the socket says."""
    if packet.remote_addr is not None:
        conn.remote_addr = packet.remote_addr
        conn.remote_port = packet.remote_port or ""
    if packet.server_name is not None:
        conn.server_name = packet.server_name
    if packet.server_port is not None:
        conn.server_port = packet.server_port
    if packet.https and type(conn) is Connection:
        conn.__class__ = _SecureConnection


class RequestReading:
    """Mixed into the engine's `Worker`; the names below are the engine's."""

    settings: Settings
    limits: Limits
    longest_line: int
    body_buffer: int
    handled: int
    max_requests: int
    alive: bool
    health_path: str | None
    tls: object
    # HTTP/2 (set by the gthread worker when h2 is on; workers/h2_engine.py does the rest).
    h2_alpn = False  # TLS: a handshake that selected "h2" switches the connection
    h2c_prior = False  # cleartext: trusted peers may start with the preface
    h2c_prior_only = False  # ... and must (an HTTP/1.1 request from them gets 400)
    h2c_upgrade = False  # cleartext: trusted peers may send `Upgrade: h2c`

    if TYPE_CHECKING:

        def wait_for(self, conn: Connection, events: int) -> None: ...
        def close(self, conn: Connection) -> None: ...
        def reject(self, conn: Connection, exc: ProtocolError) -> None: ...
        def retire(self, reason: int) -> None: ...
        def answer_health(self, conn: Connection, req: Request, rest: bytes) -> None: ...
        def dispatch(
            self, conn: Connection, req: Request, body: Input, rest: bytes, now: float
        ) -> None: ...
        def h2_switch(
            self,
            conn: Connection,
            data: bytes,
            now: float,
            upgrade: bytes | None = None,
            req: Request | None = None,
        ) -> None: ...

    def on_readable(self, conn: Connection, now: float) -> None:
        if self.tls is not None:
            handshaking = conn.handshaking  # type: ignore[attr-defined]
            data = self.read_tls(conn)
            if handshaking and self.h2_alpn and data is not None and self.alpn_h2(conn, data, now):
                return
        else:
            try:
                data = conn.sock.recv(RECV_SIZE)
            except BlockingIOError:
                self.wait_for(conn, READ)
                return
            except OSError:
                data = None
            else:
                if data and not conn.buf and conn.state != BODY:
                    self.process(conn, data, now)  # the usual case: a whole head, at once
                    return
                if not data:
                    data = None
        if data is None:
            self.close(conn)
        elif not data:
            self.wait_for(conn, READ)
        elif conn.state == BODY:
            conn.progress = now
            self.feed_body(conn, data, now)
        else:
            self.received(conn, data, now)

    def read_tls(self, conn: Connection) -> bytes | None:
        """TLS: the handshake and decryption advance without blocking. A PROXY header comes
        before the handshake, in the clear, so it is read from the socket first."""
        if conn.proxy_mode:
            try:
                raw = conn.sock.recv(RECV_SIZE)
            except BlockingIOError:
                return b""
            except OSError:
                return None
            if not raw:
                return None
            rest = self.read_proxy_header(conn, bytes(conn.buf) + raw)
            if rest is None or conn.proxy_mode:
                return b"" if rest is not None else None
            conn.buf = b""
            conn.feed_ciphertext(rest)  # type: ignore[attr-defined]
        data: bytes | None = conn.advance()  # type: ignore[attr-defined]
        return data

    def alpn_h2(self, conn: Connection, data: bytes, now: float) -> bool:
        """Right after the handshake: switch to HTTP/2 if ALPN selected it (RFC 9113 §3.2)."""
        if conn.handshaking or not alpn_is_h2(conn.alpn):  # type: ignore[attr-defined]
            return False
        self.h2_switch(conn, data, now)
        return True

    def received(self, conn: Connection, data: bytes, now: float) -> None:
        buf = conn.buf
        if not buf:
            self.process(conn, data, now)
            return
        # Part of a head is waiting. A head can only end at a line end, so until one arrives
        # just collect (in place): re-parsing on every tiny read would cost quadratic time.
        if type(buf) is not bytearray:
            buf = bytearray(buf)
        buf += data
        if b"\n" not in data and len(buf) <= self.longest_line and not self.uwsgi:
            conn.buf = buf
            self.wait_for(conn, READ)
            return
        self.process(conn, bytes(buf), now)

    def process(self, conn: Connection, buf: bytes, now: float) -> None:
        """Parse what the connection has sent and start the request it holds, if complete.
        This is the one place requests are parsed: pipelined ones come back here when the
        response before them is done."""
        if conn.proxy_mode and self.tls is None:
            rest = self.read_proxy_header(conn, buf)
            if rest is None:
                self.close(conn)
                return
            if conn.proxy_mode:
                self.wait_for(conn, READ)
                return
            buf = rest
        if self.uwsgi:
            self.process_uwsgi(conn, buf, now)
            return
        if self.h2c_prior and not conn.requests and conn.trusted:
            state = preface_state(buf)
            if state != H1:
                if state == MORE:
                    conn.buf = buf
                    self.wait_for(conn, READ)
                else:
                    self.h2_switch(conn, buf, now)
                return
            if self.h2c_prior_only:
                # RFC 9113 §3.3: this port expects HTTP/2 from these peers.
                self.reject(conn, ProtocolError(400, "HTTP/1.1 where HTTP/2 was expected"))
                return
        try:
            parsed = parse_head(buf, self.limits)
        except ProtocolError as exc:
            self.reject(conn, exc)
            return
        if parsed is None:
            conn.buf = buf
            conn.state = HEAD
            self.wait_for(conn, READ)
            return
        req, used = parsed
        conn.buf = b""
        if self.h2c_upgrade and conn.trusted and (settings := upgrade_settings(req)) is not None:
            self.h2_switch(conn, buf[used:], now, settings, req)  # counted as stream 1
            return
        self.start(conn, req, buf[used:], now)

    def start(self, conn: Connection, req: Request, rest: bytes, now: float) -> None:
        """Count a parsed request and start it: its body first if it has one."""
        self.handled += 1
        if self.handled >= self.max_requests and self.alive:
            log.info("Autorestarting worker after current request.")
            self.retire(REASON_MAX_REQUESTS)
        if req.chunked or req.content_length or req.path == self.health_path:
            self.begin(conn, req, rest, now)
        else:  # the usual request: no body, straight to the executor
            self.dispatch(conn, req, EMPTY_BODY, rest, now)

    @functools.cached_property
    def uwsgi(self) -> bool:
        """--protocol uwsgi: every connection starts with a uwsgi packet, not an HTTP head."""
        return self.settings.protocol == "uwsgi"

    def process_uwsgi(self, conn: Connection, buf: bytes, now: float) -> None:
        """The uwsgi packet at the start of `buf` (http/uwsgi.py): the request it describes,
        its body the CONTENT_LENGTH bytes after it. What the proxy says about the client and
        the scheme is believed from a trusted peer only. One request per connection: nginx
        reads the response until the connection closes."""
        try:
            if conn.remote_port and not is_trusted(
                (conn.remote_addr, 0), tuple(self.settings.uwsgi_allow_ips)
            ):  # a TCP peer outside uwsgi_allow_ips (unix peers have no port)
                raise ProtocolError(403, "uwsgi request from a peer not in uwsgi_allow_ips")
            parsed = parse_packet(buf, self.limits)
        except ProtocolError as exc:
            self.reject(conn, exc)
            return
        if parsed is None:
            conn.buf = buf
            conn.state = HEAD
            self.wait_for(conn, READ)
            return
        packet, used = parsed
        conn.buf = b""
        if conn.trusted:
            apply_proxy_vars(conn, packet)
        self.start(conn, packet.request, buf[used:], now)

    def read_proxy_header(self, conn: Connection, buf: bytes) -> bytes | None:
        """Consume the PROXY protocol header a trusted proxy sends first: the bytes after
        it, or b"" with `proxy_mode` still set when incomplete, or None (closed) if bad."""
        try:
            parsed = parse_proxy_header(buf, conn.proxy_mode)
        except ProtocolError as exc:
            log.info("Closing connection from %s: %s", conn.remote_addr, exc.reason)
            return None
        if parsed is None:
            conn.buf = buf
            return b""
        info, used = parsed
        conn.proxy_mode = ""
        if info.client_addr is not None:
            conn.remote_addr = info.client_addr
            conn.remote_port = str(info.client_port)
        return buf[used:]

    # ---- a request ----------------------------------------------------------------------

    def begin(self, conn: Connection, req: Request, rest: bytes, now: float) -> None:
        """A request with a body, or for the health path."""
        if req.path == self.health_path:
            self.answer_health(conn, req, rest)
            return
        try:
            # limit_request_body: a Content-Length above it is refused here, before any 100
            # Continue and before the application; a chunked body when it passes the limit.
            decoder = decoder_for(req, self.settings.limit_request_body)
        except ProtocolError as exc:
            self.reject(conn, exc)
            return
        size = req.content_length
        if self.body_buffer and (size is None or size <= self.body_buffer):
            conn.body = (
                req,
                BodyBuffer(decoder, self.settings.request_body_memory, self.body_buffer),
            )
            conn.state = BODY
            conn.progress = now
            limit = self.settings.request_body_timeout
            conn.deadline = now + limit if limit else 0.0
            if req.expect_continue and not rest:
                # RFC 9110 §10.1.1: the client waits for this before sending the body.
                conn.send_nowait(CONTINUE)
            if rest:
                self.feed_body(conn, rest, now)
            else:
                self.wait_for(conn, READ)
            return
        body = Body(decoder, rest, conn.recv, conn.send if req.expect_continue else None)
        self.dispatch(conn, req, body, b"", now)

    def feed_body(self, conn: Connection, data: bytes, now: float) -> None:
        req, buffer = conn.body
        try:
            rest = buffer.feed(data)
        except ProtocolError as exc:
            buffer.discard()
            conn.body = None
            self.reject(conn, exc)
            return
        except OSError as exc:  # the spool file: a full disk, a file size limit
            log.error("Cannot buffer the request body from %s: %s", conn.remote_addr, exc)
            buffer.discard()
            conn.body = None
            self.reject(conn, ProtocolError(503, "request body could not be buffered"))
            return
        if rest is not None:
            conn.body = None
            conn.deadline = 0.0
            self.dispatch(conn, req, buffer.input(), rest, now)
        elif buffer.over_max:
            conn.body = None
            conn.deadline = 0.0
            self.dispatch(conn, req, buffer.stream(conn.recv), b"", now)
        else:
            self.wait_for(conn, READ)
