"""The master's metrics in Prometheus' text format (0.0.4), and the endpoint that serves them.

  render         the page: request counts, latency histogram, in-flight requests, workers,
                 restarts by cause, per-status-code counts, listen queues.
  MetricsServer  a tiny HTTP/1.x responder for `--metrics-bind`, driven by the master's loop:
                 `fileno()` goes into its select, `handle_ready()` runs when it is readable.
                 GET or HEAD /metrics gets the page, other paths 404, other methods 405.

The server is built for scrapers, not users, and lives inside the master, so it must never
block: every socket is non-blocking and `handle_ready` only does what is ready now (the
accepting, reading, writing and dropping are master/loop_server.py's). A client that has not
finished its exchange by its deadline is dropped, and only a few clients are held at once. It
must never use the worker engine or the HTTP parser (a scrape needs one line of one request),
never run the application, and never raise into the master's loop.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable

from corral.addresses import split_host_port
from corral.errors import HaltServer
from corral.master.listeners import listener_url
from corral.master.loop_server import Client, LoopServer
from corral.metrics.stats import StatsAggregator, Totals, listen_queue_info

log = logging.getLogger("corral.error")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = b"/metrics"
MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 2.0  # seconds from accept to the end of the exchange
MAX_CLIENTS = 8
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


# --- the page -------------------------------------------------------------------------------

Labels = dict[str, str]
Sample = tuple[str, Labels, float]  # name suffix, labels, value
Family = tuple[str, str, str, list[Sample]]  # name, type, help, samples


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value == float("inf"):
        return "+Inf"
    return repr(value)


def _family(out: list[str], name: str, kind: str, text: str, rows: list[Sample]) -> None:
    """HELP and TYPE lines, then each (suffix, labels, value) sample, under `name`."""
    if not rows:
        return
    out.append(f"# HELP {name} {text}")
    out.append(f"# TYPE {name} {kind}")
    for suffix, labels, value in rows:
        pairs = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
        out.append(
            f"{name}{suffix}{{{pairs}}} {_number(value)}"
            if pairs
            else f"{name}{suffix} {_number(value)}"
        )


def _request_families(totals: Totals) -> list[Family]:
    histogram: list[Sample] = [
        ("_bucket", {"le": _number(bound)}, n) for bound, n in totals.buckets
    ]
    histogram.append(("_sum", {}, totals.duration_sum))
    histogram.append(("_count", {}, totals.duration_count))
    requests: list[Sample] = [
        ("", {"method": method, "status_class": cls}, n)
        for (method, cls), n in totals.requests.items()
    ]
    codes: list[Sample] = [
        ("", {"code": str(code)}, n) for code, n in sorted(totals.status_codes.items())
    ]
    return [
        (
            "corral_requests_total",
            "counter",
            "Requests answered, by method and status class.",
            requests,
        ),
        (
            "corral_responses_total",
            "counter",
            "Responses by status code (codes sent at least once).",
            codes,
        ),
        (
            "corral_request_duration_seconds",
            "histogram",
            "Time from the request's arrival to the end of its response.",
            histogram,
        ),
        (
            "corral_requests_in_flight",
            "gauge",
            "Requests being served right now.",
            [("", {}, totals.in_flight)],
        ),
        (
            "corral_connections",
            "gauge",
            "Open client connections by engine state (updated by each worker once a second).",
            [("", {"state": state}, n) for state, n in totals.connections.items()],
        ),
    ]


def _process_families(totals: Totals, queues: list[tuple[str, tuple[int, int]]]) -> list[Family]:
    restarts: list[Sample] = [("", {"cause": cause}, n) for cause, n in totals.restarts.items()]
    lengths: list[Sample] = [("", {"listener": url}, length) for url, (length, _) in queues]
    limits: list[Sample] = [("", {"listener": url}, limit) for url, (_, limit) in queues]
    return [
        ("corral_workers", "gauge", "Worker processes alive.", [("", {}, totals.workers)]),
        ("corral_worker_restarts_total", "counter", "Workers replaced, by cause.", restarts),
        (
            "corral_listen_queue",
            "gauge",
            "Connections waiting to be accepted, per listening TCP socket.",
            lengths,
        ),
        (
            "corral_listen_queue_max",
            "gauge",
            "The most connections the kernel queues on the listening socket (the backlog).",
            limits,
        ),
    ]


def render(aggregator: StatsAggregator, listeners: Iterable[socket.socket]) -> str:
    """The whole exposition, ending with a newline."""
    totals = aggregator.collect()
    queues = [
        (listener_url(sock), info)
        for sock in listeners
        if sock.fileno() >= 0 and (info := listen_queue_info(sock)) is not None
    ]
    out: list[str] = []
    for name, kind, text, samples in _request_families(totals) + _process_families(totals, queues):
        _family(out, name, kind, text, samples)
    return "\n".join(out) + "\n"


# --- the endpoint ---------------------------------------------------------------------------


def _response(status: int, body: bytes, head_only: bool = False, extra: str = "") -> bytes:
    content_type = CONTENT_TYPE if status == 200 else "text/plain; charset=utf-8"
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + body


def _bind(address: str) -> socket.socket:
    host, port = split_host_port(address, 0)
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise HaltServer(f"Can't serve metrics at {address}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise HaltServer(f"Can't serve metrics at {address}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


class MetricsServer:
    """Serves `page()` at /metrics on `address` (HOST:PORT), one short exchange per connection.

    Raises HaltServer when the address cannot be bound. Everything else (client errors, a page
    that fails to render) is handled here and logged, never raised. Deadlines are checked in
    `handle_ready`, so a master that calls it on every turn of its loop, ready or not (it costs
    one epoll_wait with no timeout), disconnects stalled clients on time.
    """

    def __init__(
        self,
        address: str,
        page: Callable[[], str],
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.page = page
        self.request_timeout = request_timeout
        self.max_clients = max_clients
        self.sock = _bind(address)
        self._server = LoopServer(
            self.sock,
            name="Metrics endpoint",
            open_session=lambda conn: bytearray(),  # the request head as it arrives
            received=self._received,
            first_timeout=request_timeout,
            max_clients=max_clients,
            recv_size=4096,
            clock=clock,
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def fileno(self) -> int:
        """Readable whenever there is something for `handle_ready` to do."""
        return self._server.fileno()

    def handle_ready(self) -> None:
        """Accept, read and answer what is ready now; drop clients past their deadline."""
        self._server.handle_ready()

    def close(self) -> None:
        """Close the listener and every client. In a forked child this leaves the parent's
        endpoint working (nothing is unregistered from the shared epoll set)."""
        self._server.close()

    def _received(self, client: Client[bytearray], data: bytes, now: float) -> bool:
        inbox = client.session
        inbox += data
        end = inbox.find(b"\r\n\r\n")
        if end >= 0:
            client.reply(self._respond(bytes(inbox[:end])), last=True)
        elif len(inbox) > MAX_REQUEST_HEAD:
            client.reply(_response(431, b"Request head too large\n"), last=True)
        return True

    def _respond(self, head: bytes) -> bytes:
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _response(400, b"Bad request\n")
        method, target = parts[0], parts[1]
        if target.split(b"?", 1)[0] != METRICS_PATH:
            return _response(404, b"Not found: metrics are at /metrics\n")
        if method not in (b"GET", b"HEAD"):
            return _response(405, b"Method not allowed\n", extra="Allow: GET, HEAD\r\n")
        try:
            body = self.page().encode("utf-8")
        except Exception:
            log.exception("Error rendering the metrics page")
            return _response(500, b"Internal error\n")
        return _response(200, body, head_only=method == b"HEAD")
