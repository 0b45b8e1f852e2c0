"""StatsD metrics, sent as Gunicorn sends them, over UDP or a unix datagram socket.

The names are Gunicorn's, so dashboards and the Datadog integration built for Gunicorn work
unchanged; `statsd_prefix` goes in front of them, joined by a dot:

    gunicorn.requests                 counter, per request
    gunicorn.request.status.<code>    counter, per request
    gunicorn.request.duration         timer (|ms), per request, in milliseconds
    gunicorn.workers                  gauge, from the master
    gunicorn.backlog                  timer (|ms) as Gunicorn sends it, from the master, when
                                      enable_backlog_metric is on (Linux TCP listeners)
    gunicorn.log.critical|error|warning|exception   counters, from `StatsdLogHandler`

`dogstatsd_tags` are appended to every line as `|#tag,tag`. Unlike Gunicorn, which sends one
datagram per metric, a client buffers: counters are summed and gauges keep their last value
until the next flush, timer values queue up, and a datagram leaves when about 1 KB is waiting
or `flush_interval` has passed (`flush_if_due`, which the process's loop calls). Sums are what
StatsD would compute anyway, so the numbers a server sees are the same.

One client per process: a worker makes its own after fork, or calls `after_fork` before using an
inherited one (the log counters' client, which the error log's handler carries across fork), so
that it never sends somebody else's buffer. This module must never block (the socket is
non-blocking and an unsendable datagram is dropped), never raise from sending, never resolve a
host name after construction, and never log (a log line would feed `StatsdLogHandler` and come
back here).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.config.metrics_converters import STATSD_DEFAULT_PORT, split_address, unix_path

if TYPE_CHECKING:
    from corral.config.settings import Settings

BASE = "gunicorn."
REQUESTS = BASE + "requests"
REQUEST_DURATION = BASE + "request.duration"
REQUEST_STATUS = BASE + "request.status."
WORKERS = BASE + "workers"
BACKLOG = BASE + "backlog"
LOG_CRITICAL = BASE + "log.critical"
LOG_ERROR = BASE + "log.error"
LOG_WARNING = BASE + "log.warning"
LOG_EXCEPTION = BASE + "log.exception"

FLUSH_INTERVAL = 1.0  # seconds
FLUSH_BYTES = 1024  # send once this much is waiting
MAX_DATAGRAM = 1432  # fits one Ethernet frame with IPv6 and UDP headers to spare


def normalize_prefix(prefix: str) -> str:
    """`app`, `app.` and `app..` all become `app.`; an empty prefix stays empty."""
    stem = prefix.strip().rstrip(".")
    return stem + "." if stem else ""


class StatsdClient:
    """Buffers metrics and sends them as StatsD datagrams; safe to call from several threads.

    `address` is a canonical `statsd_host` value: HOST:PORT, [IPv6]:PORT or unix:PATH. A host
    name is resolved once, here; if that fails (or the socket cannot be made) the client stays
    disabled, `error` says why, and every call is a cheap no-op.
    """

    def __init__(
        self,
        address: str,
        prefix: str = "",
        tags: str = "",
        *,
        flush_interval: float = FLUSH_INTERVAL,
        flush_bytes: int = FLUSH_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prefix = normalize_prefix(prefix)
        self.suffix = f"|#{tags}" if tags else ""
        self.flush_interval = flush_interval
        self.flush_bytes = flush_bytes
        self.clock = clock
        self.error: str | None = None
        self.dropped = 0  # datagrams the kernel refused (no server, buffer full...)
        self._sock: socket.socket | None = None
        self._target: str | tuple[Any, ...] = ""
        self._open(address)
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._gauges: dict[str, float] = {}
        self._lines: list[str] = []
        self._size = 0
        self._due = clock() + flush_interval
        self._duration_head = f"{self.prefix}{REQUEST_DURATION}:"
        self._timer_tail = f"|ms{self.suffix}"
        self._status_names: dict[int, str] = {}

    def _open(self, address: str) -> None:
        path = unix_path(address)
        try:
            if path is not None:
                family, self._target = socket.AF_UNIX, path
            else:
                host, port = split_address(address, STATSD_DEFAULT_PORT)
                info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
                family, self._target = info[0], info[4]
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            self.error = f"StatsD disabled: cannot use {address}: {exc.strerror or exc}"
            return
        sock.setblocking(False)
        self._sock = sock

    @classmethod
    def from_settings(cls, settings: Settings) -> StatsdClient | None:
        """The client `settings` ask for, or None when statsd_host is not set."""
        if settings.statsd_host is None:
            return None
        return cls(settings.statsd_host, settings.statsd_prefix, settings.dogstatsd_tags)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    # ---- recording --------------------------------------------------------------------------

    def request(self, status: int, seconds: float) -> None:
        """One answered request: its status code and its duration in seconds."""
        if self._sock is None:
            return
        name = self._status_names.get(status)
        if name is None:
            name = self._status_names.setdefault(status, f"{REQUEST_STATUS}{status:d}")
        line = f"{self._duration_head}{seconds * 1000.0:.3f}{self._timer_tail}"
        lock = self._lock
        lock.acquire()  # not `with`: on this hot path the context protocol costs more than the lock
        try:
            counters = self._counters
            counters[REQUESTS] = counters.get(REQUESTS, 0) + 1
            counters[name] = counters.get(name, 0) + 1
            self._lines.append(line)
            self._size += len(line) + 1
            full = self._size >= self.flush_bytes
        finally:
            lock.release()
        if full:
            self.flush()

    def increment(self, name: str, value: int = 1) -> None:
        if self._sock is None:
            return
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + value

    def gauge(self, name: str, value: float) -> None:
        if self._sock is None:
            return
        with self._lock:
            self._gauges[name] = value

    def timing(self, name: str, value: float) -> None:
        """A timer (`|ms`) value; StatsD servers keep each one for percentiles."""
        if self._sock is None:
            return
        line = f"{self.prefix}{name}:{_format(value)}{self._timer_tail}"
        with self._lock:
            self._lines.append(line)
            self._size += len(line) + 1
            full = self._size >= self.flush_bytes
        if full:
            self.flush()

    def workers(self, count: int) -> None:
        """The master's gauge of worker processes."""
        self.gauge(WORKERS, count)

    def backlog(self, waiting: int) -> None:
        """Connections waiting in the listen queues, summed (the master, once per turn)."""
        self.timing(BACKLOG, waiting)

    # ---- sending ----------------------------------------------------------------------------

    def flush_if_due(self, now: float | None = None) -> None:
        """Send what is waiting if flush_interval has passed since the last flush."""
        if self._sock is not None and (self.clock() if now is None else now) >= self._due:
            self.flush()

    def flush(self) -> None:
        """Send everything waiting now, in as few datagrams as fit."""
        sock = self._sock
        if sock is None:
            return
        with self._lock:
            counters, self._counters = self._counters, {}
            gauges, self._gauges = self._gauges, {}
            lines, self._lines = self._lines, []
            self._size = 0
            self._due = self.clock() + self.flush_interval
        prefix, suffix = self.prefix, self.suffix
        lines.extend(f"{prefix}{name}:{n}|c{suffix}" for name, n in counters.items())
        lines.extend(f"{prefix}{name}:{_format(v)}|g{suffix}" for name, v in gauges.items())
        for datagram in _pack(lines):
            try:
                sock.sendto(datagram, self._target)
            except OSError:
                self.dropped += 1

    def after_fork(self) -> None:
        """Make an inherited client this process's own: a fresh lock and empty buffers (what
        the parent had waiting is the parent's to send). The socket is shared, which is safe
        for datagrams, and the address is not looked up again."""
        self._lock = threading.Lock()
        self._counters, self._gauges, self._lines, self._size = {}, {}, [], 0

    def close(self) -> None:
        """Send what is waiting, then close the socket."""
        self.flush()
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _format(value: float) -> str:
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return f"{value:.3f}"


def _pack(lines: list[str]) -> list[bytes]:
    """Join lines with newlines into datagrams of at most MAX_DATAGRAM bytes (a longer line
    goes alone)."""
    datagrams: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode("ascii", "replace")
        if chunk and size + 1 + len(data) > MAX_DATAGRAM:
            datagrams.append(b"\n".join(chunk))
            chunk, size = [], 0
        size += len(data) + (1 if chunk else 0)
        chunk.append(data)
    if chunk:
        datagrams.append(b"\n".join(chunk))
    return datagrams


class StatsdLogHandler(logging.Handler):
    """Counts warning, error, exception and critical log records as gunicorn.log.* counters.

    An error record carrying exception information counts as `exception`, as Gunicorn's
    `log.exception()` does. `Logger.setup` attaches one to the error logger when StatsD is on;
    workers inherit it across fork. Each count is sent at once, as Gunicorn sends it: such
    records are rare, and a worker killed the next moment must not take them with it.
    """

    def __init__(self, client: StatsdClient) -> None:
        super().__init__(logging.WARNING)
        self.client = client
        self.pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelno
        if level >= logging.CRITICAL:
            name = LOG_CRITICAL
        elif level >= logging.ERROR:
            name = LOG_EXCEPTION if record.exc_info else LOG_ERROR
        else:
            name = LOG_WARNING
        client = self._own_client()
        client.increment(name)
        client.flush()

    def close(self) -> None:
        self._own_client().close()
        super().close()

    def _own_client(self) -> StatsdClient:
        if self.pid != os.getpid():  # a worker, forked with the master's handler
            self.pid = os.getpid()
            self.client.after_fork()
        return self.client
