"""`asgi`: an asyncio worker for ASGI applications, on the same master, parser and framing.

The worker runs the lifespan protocol (workers/asgi_lifespan.py), listens with one asyncio
Protocol per connection (workers/asgi_http.py, WebSockets in workers/asgi_websocket.py,
HTTP/2 in workers/asgi_h2*.py), and ends within `graceful_timeout`. The heartbeat is a timer of the
loop, so a worker whose loop is blocked by the application is caught by the master's timeout as
a sync worker is. What this module must never do: run the application outside the loop, or
parse HTTP a second way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, cast

from corral.adapters.asgi import ASGIApp
from corral.adapters.asgi_extensions import TlsFacts
from corral.errors import EXIT_WORKER_BOOT_ERROR
from corral.workers.asgi_accept import Acceptor
from corral.workers.asgi_hooks import request_hooks
from corral.workers.asgi_http import HttpProtocol
from corral.workers.asgi_lifespan import Lifespan, LifespanFailed
from corral.workers.connection_report import report_asgi_connections
from corral.workers.engine import Worker
from corral.workers.h2_setup import h2_enabled, h2_limits
from corral.workers.heartbeat import REASON_MAX_REQUESTS
from corral.workers.lifecycle import drain_pipe

if TYPE_CHECKING:
    from corral.http.h2 import H2Limits

log = logging.getLogger("corral.error")


class AsgiWorker(Worker):
    keep_alive_allowed = True
    h2_limits: H2Limits | None = None

    def make_adapter(self) -> None:
        # No WSGI here: the application is called through adapters/asgi.
        self.adapter = None
        self.asgi_app = cast(ASGIApp, self.app)
        s = self.settings
        self.access = self.logger.access_writer() if self.logger.access_enabled else None
        self.keep_alive_allowed = s.keepalive > 0  # 0 turns keep-alive off, as in gthread
        # Header names as the parser gives them (upper case) -> the value that means https.
        self.secure_scheme_headers = {
            name.upper(): value.lower() for name, value in s.secure_scheme_headers.items()
        }
        self.tls_facts = TlsFacts(self.tls, s.certfile) if self.tls is not None else None
        # HTTP/2 streams may be extended CONNECTs (RFC 8441): WebSockets over HTTP/2.
        self.h2_limits = h2_limits(s, self.limits, connect_protocol=True) if h2_enabled(s) else None
        # What each request does besides being served, decided once (asgi_request.py): a
        # gauge-only block (the control socket without metrics) costs nothing per request.
        stats = self.stats
        self.request_stats = stats if stats is not None and stats.counting else None
        self.timed = (
            self.access is not None or self.request_stats is not None or self.statsd is not None
        )
        self.request_hooks = request_hooks(self)

    def serve(self) -> None:
        loop = new_event_loop(self.settings.asgi_loop)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.main())
        finally:
            loop.close()

    async def main(self) -> None:
        self.lifespan_state: dict[str, Any] = {}
        self.protocols: set[HttpProtocol] = set()
        # Request and WebSocket tasks that outlived their connection (the client left while
        # they ran); the others are each connection's `task`.
        self.orphans: set[asyncio.Task[None]] = set()
        settings = self.settings
        lifespan = Lifespan(
            self.asgi_app,
            settings.asgi_lifespan,
            self.lifespan_state,
            startup_timeout=settings.asgi_startup_timeout,
            shutdown_timeout=settings.asgi_shutdown_timeout,
            beat=self.heartbeat.beat,
        )
        try:
            await lifespan.startup()
        except LifespanFailed as exc:
            log.error("Application startup failed: %s", exc)
            raise SystemExit(EXIT_WORKER_BOOT_ERROR) from None
        # TLS with the context the master built (and rebuilds on HUP), as the other workers.
        self.acceptor = Acceptor(self, lambda client: HttpProtocol(self, client), self.tls)
        self.acceptor.start()
        self.sweep_connections()
        self.heartbeat.mark_ready()
        interval = min(1.0, self.settings.timeout / 4) if self.settings.timeout > 0 else 1.0
        # Signals (through the wake-up fd) and --reload write to the wake-up pipe: the loop
        # below looks at `alive` at once instead of at the end of its interval.
        woken = asyncio.Event()

        def on_wake() -> None:
            drain_pipe(self.wake_r)
            woken.set()

        asyncio.get_running_loop().add_reader(self.wake_r, on_wake)
        while self.alive:
            self.heartbeat.beat()
            self.logger.flush()
            if self.reopen_requested:
                self.reopen_logs_if_requested()
            self.check_memory()
            self.report_metrics()
            woken.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woken.wait(), interval)
        self.acceptor.stop(take_queued=self.heartbeat.master_stopping())
        # The master kills at graceful_timeout: keep a reserve to end requests and lifespan.
        graceful = float(self.settings.graceful_timeout)
        # The master's clock started when it sent TERM: up to one `interval` before we noticed.
        end = time.monotonic() + graceful - interval
        deadline = end - min(5.0, graceful / 3)
        # A connection waiting for its next (or first) request may still get one, answered
        # with Connection: close, for `keepalive` seconds (at least one), as in gthread.
        linger = time.monotonic() + max(1.0, float(self.settings.keepalive))
        while (self.protocols or self.orphans or self.acceptor.opening) and (
            time.monotonic() < deadline
        ):
            for protocol in list(self.protocols):
                protocol.wind_down(linger)
            self.heartbeat.beat()
            await asyncio.sleep(0.05)
        await self.end_in_flight(end)
        self.heartbeat.beat()
        await lifespan.shutdown(end - time.monotonic() - 0.5)
        self.logger.flush()

    async def end_in_flight(self, end: float) -> None:
        """At the graceful stop's deadline: requests still running hear that their client is
        gone (`http.disconnect`, and a `send` raises), and get a moment to end on their own;
        then what is left is cancelled and its connection aborted."""
        for protocol in list(self.protocols):
            protocol.disconnect_exchange()
        # Every task, also those whose client left before the stop (no protocol holds them).
        if running := self.running_tasks():
            timeout = max(0.1, min(1.0, (end - time.monotonic()) / 3))
            await asyncio.wait(running, timeout=timeout)
        tasks = self.running_tasks()
        for protocol in list(self.protocols):
            protocol.abort()
        for task in tasks:
            task.cancel()  # their `finally` blocks run now, not never
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.1, (end - time.monotonic()) / 2))

    def running_tasks(self) -> list[asyncio.Task[None]]:
        tasks = [p.task for p in self.protocols if p.task is not None and not p.task.done()]
        for protocol in self.protocols:
            if protocol.h2 is not None:
                tasks += protocol.h2.tasks()
        return tasks + [task for task in self.orphans if not task.done()]

    def report_metrics(self) -> None:
        """Once a loop interval: StatsD lines that wait for a fuller packet, and the
        connections by state for Prometheus and the control socket (a WebSocket counts as
        serving), with one row per connection for `show connections`."""
        if self.statsd is not None:
            self.statsd.flush_if_due()
        if self.stats is not None or self.connection_table is not None:
            report_asgi_connections(self, time.monotonic())

    def sweep_connections(self) -> None:
        """Idle and body deadlines of every connection, checked a few times a second."""
        now = time.monotonic()
        for protocol in list(self.protocols):
            try:
                protocol.sweep(now)
            except Exception:  # one connection's failure stays its own
                log.exception("Error in a connection's deadline")
                protocol.abort()
        period = min(0.5, self.timeout / 4) if self.timeout > 0 else 0.5
        asyncio.get_running_loop().call_later(period, self.sweep_connections)

    def count_request(self) -> bool:
        """One more request; False once the worker should stop keeping connections."""
        self.handled += 1
        if self.handled >= self.max_requests and self.alive:
            log.info("Autorestarting worker after current request.")
            self.retire(REASON_MAX_REQUESTS)
        return self.alive


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """The `asgi_loop` setting: uvloop when asked for (or, with `auto`, when installed)."""
    if kind != "asyncio":
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            if kind == "uvloop":
                log.error("asgi_loop is 'uvloop' but uvloop is not installed (pip install uvloop)")
                raise SystemExit(EXIT_WORKER_BOOT_ERROR) from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()
