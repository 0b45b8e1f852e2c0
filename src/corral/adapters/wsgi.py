"""WSGI (PEP 3333): a parsed request becomes an environ; the app is called; its answer framed.

The adapter never imports socket or selectors: it talks to the connection through the small
`Transport` protocol the worker implements (recv, send) and yields its output for the engine
to send as the socket drains. What it must never do: send a response head the application did
not validate, hold a whole large request body in memory, or keep a connection alive whose
framing it is no longer sure of.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import IO, Any, Protocol
from urllib.parse import unquote_to_bytes

from corral import SERVER_SOFTWARE
from corral.adapters.body import DRAIN_SECONDS, EMPTY_BODY, Body, EmptyBody, FileWrapper
from corral.adapters.response import FileRange, Output, Response
from corral.addresses import split_host_port
from corral.errors import ClientDisconnected, ProtocolError
from corral.http.parser import Request
from corral.http.writer import REASONS
from corral.metrics.stats import WorkerStats
from corral.metrics.statsd import StatsdClient
from corral.trust import stated_scheme

log = logging.getLogger("corral.error")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
# Writes one access-log line: (environ, status, response headers, body bytes sent, seconds).
AccessWriter = Callable[
    [Mapping[str, Any], str, Sequence[tuple[str, str]], "int | None", float], None
]

# wsgi.input: nothing, a body buffered by the worker (memory or a spooled file), or a stream.
Input = Body | EmptyBody | IO[bytes]
# One request's response, as output for the engine; returns the next request's bytes or None.
Exchange = Generator[Output, None, None]

# A list response whose pieces add up to at most this is joined and sent in one call.
_JOIN_LIMIT = 65536

# Request header name (as the parser gives it: upper case) -> environ key. Filled lazily.
_SPECIAL_KEYS = {"CONTENT-TYPE": "CONTENT_TYPE", "CONTENT-LENGTH": "CONTENT_LENGTH"}


class Transport(Protocol):
    """What the adapter needs from a connection; workers provide it."""

    remote_addr: str
    remote_port: str
    server_name: str
    server_port: str
    trusted: bool
    timeout: float
    scheme: str
    leftover: bytes | None  # set by the exchange when it ends

    def recv(self) -> bytes: ...

    def send(self, data: bytes) -> None: ...


class ErrorStream:
    """wsgi.errors: what the application writes here lands in the error log."""

    def write(self, text: str) -> int:
        if text.strip():
            log.error("%s", text.rstrip("\n"))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


class WSGIAdapter:
    """One per worker: the constant parts of the environ and the per-request call."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        multithread: bool,
        sendfile: bool,
        secure_scheme_headers: dict[str, str],
        forwarder_headers: Iterable[str],
        header_map: str,
        access: AccessWriter | None,
        environ: dict[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.app = app
        self.sendfile = sendfile
        self.access = access
        self.script_name = env.get("SCRIPT_NAME", "").rstrip("/")
        self.secure_keys = [
            ("HTTP_" + name.upper().replace("-", "_"), value.lower())
            for name, value in secure_scheme_headers.items()
        ]
        self.forwarder_headers = {h.strip().upper().replace("-", "_") for h in forwarder_headers}
        self.header_map = header_map
        self.keys: dict[str, str | None] = dict(_SPECIAL_KEYS)
        self.hosts: dict[str, tuple[str, str]] = {}
        # Set by the worker when metrics are on (Prometheus through shared memory, StatsD).
        self.stats: WorkerStats | None = None
        self.statsd: StatsdClient | None = None
        # Set by the worker when a post_request hook is configured: (req, environ, resp).
        self.post_request: Callable[[Request, dict[str, Any], Response], None] | None = None
        self.base: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.errors": ErrorStream(),
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "SCRIPT_NAME": self.script_name,
        }

    def header_key(self, name: str, trusted: bool) -> str | None:
        """The environ key of a request header, or None when the header is dropped."""
        key = self.keys.get(name)
        if key is not None or name in self.keys:
            return key
        flat = name.replace("-", "_")
        if "_" in name:
            # A header spelled with "_" would collide with its "-" twin in the environ
            # (X_Forwarded_For vs X-Forwarded-For); only trusted forwarders may send listed ones.
            if trusted and flat in self.forwarder_headers:
                return "HTTP_" + flat
            if self.header_map == "refuse":
                raise ProtocolError(400, f"header name with underscore: {name!r}")
            if self.header_map == "drop":
                return None
        key = "HTTP_" + flat
        if len(self.keys) < 4096:
            self.keys[name] = key
        return key

    def apply_scheme_headers(self, environ: dict[str, Any]) -> None:
        """wsgi.url_scheme from a trusted proxy's `secure_scheme_headers`; a proxy that says
        both https and http is refused rather than guessed."""
        scheme = stated_scheme(
            (value, secure)
            for key, secure in self.secure_keys
            if (value := environ.get(key)) is not None
        )
        if scheme is not None:
            environ["wsgi.url_scheme"] = scheme

    def server_address(self, host: str, conn: Transport) -> tuple[str, str]:
        """SERVER_NAME and SERVER_PORT from a Host value: HOST[:PORT] or [IPv6][:PORT], the
        brackets kept as in the header. What it lacks, or a value that is not a host and
        port, is filled from the connection (so the cache holds only what the header says)."""
        parsed = self.hosts.get(host)
        if parsed is None:
            try:
                name, port = split_host_port(host)
            except ValueError:
                name, port = "", None
            parsed = (f"[{name}]" if ":" in name else name, "" if port is None else str(port))
            if len(self.hosts) < 256:
                self.hosts[host] = parsed
        return parsed[0] or conn.server_name, parsed[1] or conn.server_port

    def build_environ(self, req: Request, conn: Transport, body: Input) -> dict[str, Any]:
        path = req.path
        if "%" in path:
            path = unquote_to_bytes(path).decode("latin-1")
        environ: dict[str, Any] = {
            **self.base,
            "REQUEST_METHOD": req.method,
            "RAW_URI": req.target,
            "PATH_INFO": path,
            "QUERY_STRING": req.query,
            "SERVER_PROTOCOL": req.version,
            "REMOTE_ADDR": conn.remote_addr,
            "REMOTE_PORT": conn.remote_port,
            "SERVER_NAME": conn.server_name,
            "SERVER_PORT": conn.server_port,
            "wsgi.url_scheme": conn.scheme,
            "wsgi.input": body,
        }
        trusted = conn.trusted
        keys = self.keys
        for name, value in req.headers:
            key = keys.get(name) or self.header_key(name, trusted)
            if key is None:
                continue
            if key in environ:
                environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
            else:
                environ[key] = value
        if trusted:
            self.apply_scheme_headers(environ)
        if req.authority is not None and req.method != "CONNECT":
            # RFC 9112 §3.2.2: with an absolute-form target, its authority wins over Host.
            environ["HTTP_HOST"] = req.authority
        host = environ.get("HTTP_HOST")
        if host:
            environ["SERVER_NAME"], environ["SERVER_PORT"] = self.server_address(host, conn)
        script_name = self.script_name
        if trusted and "HTTP_SCRIPT_NAME" in environ:
            script_name = environ["SCRIPT_NAME"] = environ["HTTP_SCRIPT_NAME"].rstrip("/")
        if script_name and (path == script_name or path.startswith(script_name + "/")):
            environ["PATH_INFO"] = path[len(script_name) :]
        return environ

    def exchange(
        self,
        conn: Transport,
        req: Request,
        body: Input,
        pending: bytes,
        keep_alive: bool,
        response: Response | None = None,
    ) -> Exchange:
        """Serve one request as a generator of output for the engine to send as the socket
        drains: the application is called on the first `next()`, its iterable pulled one
        chunk per `next()`. When it ends it leaves on `conn.leftover` the bytes read past the
        request (the next pipelined request) when the connection may be kept alive, or None
        to close (a plain attribute: cheaper than a generator's return value, which costs an
        exception per request). Closing the generator early (the client left) still closes
        the application's iterable and logs the request. `response` replaces the HTTP/1.1
        framing (an HTTP/2 stream passes adapters/response_h2.py's)."""
        stats = self.stats
        timed = stats is not None or self.access is not None or self.statsd is not None
        started = time.monotonic() if timed else 0.0
        resp = Response(conn.send, req, keep_alive) if response is None else response
        try:
            environ = self.build_environ(req, conn, body)
        except ProtocolError as exc:
            conn.leftover = None
            yield resp.error_output(exc.status)
            return
        if stats is not None:
            stats.begin()
        try:
            result: Iterable[bytes] | None = self.app(environ, resp.start_response)
            if type(result) is list and not resp.head_sent:
                # The usual answer: the whole body at once, framed with its length and sent
                # with its head in one buffer (joined first when it is in small pieces).
                if len(result) == 1:
                    yield from resp.whole(result[0])
                    result = None
                elif (total := sum(map(len, result))) <= _JOIN_LIMIT:
                    yield from resp.whole(b"".join(result))
                    result = None
                elif resp.content_length is None:
                    resp.content_length = total
            if result is not None:
                yield from self.stream(result, resp)
        except (ClientDisconnected, ConnectionError, TimeoutError):
            resp.keep_alive = False
        except ProtocolError as exc:
            # The body's framing broke while the application read it.
            yield from self.answer_error(resp, exc.status)
        except Exception:
            log.exception("Error handling request %s %s", req.method, req.target)
            yield from self.answer_error(resp, 500)
        finally:
            if timed:
                self.account(req, environ, resp, time.monotonic() - started)
            if self.post_request is not None:
                self.post_request(req, environ, resp)
            if body is not EMPTY_BODY and type(body) is not Body:
                body.close()  # type: ignore[union-attr]  # a buffered body: its file goes now
        if not resp.keep_alive:
            conn.leftover = None
        elif type(body) is not Body:
            conn.leftover = pending
        else:
            conn.leftover = self.drain(conn, body)

    @staticmethod
    def drain(conn: Transport, body: Body) -> bytes | None:
        """A streamed body the application left unread is skipped (within bounds) so the
        connection can go on; the bytes past it are the next request."""
        if body.failed:
            return None
        if not body.done:
            # Each wait for the rest of the body is bounded too, not only the total.
            timeout, conn.timeout = conn.timeout, min(conn.timeout, DRAIN_SECONDS)
            try:
                if not body.drain():
                    return None
            except (ProtocolError, OSError):
                return None
            finally:
                conn.timeout = timeout
        return body.leftover

    def account(
        self, req: Request, environ: dict[str, Any], resp: Response, seconds: float
    ) -> None:
        """Access log and metrics for one finished request (only what is switched on). A
        failure here is logged and never reaches the connection or the worker."""
        try:
            self.record(req, environ, resp, seconds)
        except Exception:
            log.exception("Error recording request %s %s", req.method, req.target)

    def record(self, req: Request, environ: dict[str, Any], resp: Response, seconds: float) -> None:
        if self.access is not None:
            self.access(environ, resp.status or "500", resp.headers, resp.sent, seconds)
        if self.stats is not None:
            self.stats.end()
            if resp.code:
                self.stats.record(req.method, resp.code, seconds)
        if self.statsd is not None and resp.code:
            self.statsd.request(resp.code, seconds)

    @staticmethod
    def answer_error(resp: Response, status: int) -> Iterator[Output]:
        """Answer `status` unless a response head already left (then closing is all we can do)."""
        resp.keep_alive = False
        if not resp.head_sent:
            resp.code = status
            resp.status = f"{status} {REASONS.get(status, 'Error')}"
            resp.headers = []
            resp.sent = 0
            resp.head_sent = True
            yield resp.error_output(status)

    def stream(self, result: Iterable[bytes], resp: Response) -> Iterator[Output]:
        """A response that is not a ready list: pulled one chunk per `next()` (so only as fast
        as the client drains it), or a file for sendfile; the iterable is closed at the end."""
        try:
            if type(result) is FileWrapper and self.sendfile:
                file_range = self.file_range(result, resp)
                if file_range is not None:
                    yield resp.head()
                    if not resp.is_head and file_range.count:
                        yield file_range
                    tail = resp.tail()  # b"" on HTTP/1.1; END_STREAM on HTTP/2
                    if tail:
                        yield tail
                    return
            for chunk in result:
                if chunk:
                    yield from resp.pieces(chunk)
            tail = resp.tail()
            if tail:
                yield tail
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    @staticmethod
    def file_range(wrapper: FileWrapper, resp: Response) -> FileRange | None:
        """The part of a real file to send with sendfile; None when it is not one (the
        wrapper is then iterated instead)."""
        if resp.status is None or resp.head_sent:
            return None
        fileno = getattr(wrapper.filelike, "fileno", None)
        if fileno is None:
            return None
        try:
            fd = fileno()
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        except (OSError, ValueError):
            return None
        count = max(info.st_size - offset, 0)
        if resp.content_length is not None:
            count = min(count, resp.content_length)
        else:
            resp.content_length = count
        if not resp.is_head:
            # Counted as sent now; the engine closes the connection if the file ends early.
            resp.sent += count
        return FileRange(fd, offset, count)
