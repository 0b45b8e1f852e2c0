"""`gevent`: a greenlet per connection, for WSGI applications that spend their time waiting on
the network (outbound HTTP calls, databases) and are written in blocking style.

The worker monkey-patches the standard library with gevent's cooperative versions first thing
in the child, before the application is imported, so a blocking call in the application
(socket, ssl, time.sleep, select) switches to another greenlet instead of holding the worker.
gevent's patching removes `select.epoll`, so this worker is not the engine's epoll loop; it is
the engine's state machine driven by greenlets instead:

- one acceptor greenlet per listener takes connections (the engine's `accept`, batches and
  `worker_connections` included) and gives each its own greenlet from a gevent Pool of
  `worker_connections`;
- a connection's greenlet runs the engine's reading and writing code (the one parser, the
  body decoders, the PROXY protocol, the health path, the WSGI adapter and its access log and
  metrics), and where the engine would ask its epoll set to wait for the socket, it waits on
  the socket through gevent's hub instead;
- the main greenlet beats the master's shared-memory heartbeat, runs the engine's sweep once a
  second (the deadlines of heads, idle keep-alive connections, bodies and parked responses,
  and requests that run past `timeout`, which are reported with their greenlet's stack), and
  stops the worker gracefully.

What this module must never do: import gevent before the worker process patches (the master
imports this module), close a socket a greenlet is waiting on (the owner is woken and closes
it), or let a connection's greenlet block the others (sockets stay non-blocking; every wait
goes through the hub).
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from typing import TYPE_CHECKING, Any

from corral.app_loader import load_app
from corral.errors import EXIT_WORKER_BOOT_ERROR
from corral.metrics.statsd import StatsdClient
from corral.process import set_process_title
from corral.workers.connection import CLOSED, Connection
from corral.workers.engine import Worker, _server_address
from corral.workers.heartbeat import REASON_ORPHANED, REASON_STUCK_REQUEST
from corral.workers.privileges import drop_privileges
from corral.workers.writing import WRITE

if TYPE_CHECKING:
    from types import FrameType

log = logging.getLogger("corral.error")

REQUIREMENT = (24, 0)
# How often the main greenlet looks at its flags (TERM, QUIT, USR1) and beats the heartbeat.
TICK = 0.25

PRELOAD_WARNING = (
    "The application was loaded in the master (--preload), before this gevent worker "
    "monkey-patched the standard library: the modules it imported keep the blocking socket, "
    "ssl, select, time and threading functions they bound then, and a call to one of them "
    "stops every greenlet of the worker. Start without --preload to have the application "
    "imported after patching."
)


class ConnectionClosed(Exception):
    """Thrown into a connection's greenlet whose socket the sweep closed while it waited."""


def import_gevent() -> Any:
    """gevent, or exit as a worker that cannot boot, with a one-line reason."""
    try:
        import gevent  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        log.error("The gevent worker needs gevent: pip install 'corral[gevent]'")
        raise SystemExit(EXIT_WORKER_BOOT_ERROR) from None
    # From __version__: gevent's version_info is not kept up to date (26.9 says 20.0).
    found = re.match(r"(\d+)\.(\d+)", gevent.__version__)
    if found is None or (int(found[1]), int(found[2])) < REQUIREMENT:
        log.error("The gevent worker needs gevent 24 or later; %s is installed", gevent.__version__)
        raise SystemExit(EXIT_WORKER_BOOT_ERROR)
    return gevent


class GeventWorker(Worker):
    """The engine's reading and writing, one greenlet per connection (see the module doc)."""

    keep_alive_allowed = True
    inline = False  # `execute` runs the application in the connection's own greenlet

    def init_process(self) -> None:
        """Patch, then boot as `WorkerLifecycle.init_process` does, without its epoll set and
        wake-up pipe (the main greenlet looks at the signal flags every TICK instead)."""
        self.quitting = False
        # The connection each greenlet owns, and the socket watcher it is waiting on now.
        self.owners: dict[Connection, Any] = {}
        self.waiting: dict[Connection, Any] = {}
        self.closing: set[Connection] = set()  # closed by the sweep; their owner closes them
        self.flush_scheduled = False
        # The handlers first: they only set flags, and importing gevent and patching take a
        # while, during which the master's TERM would otherwise reach its own inherited handler.
        self.init_signals()
        if "h2" in self.settings.http_protocols:
            # ALPN would offer h2 to clients that this worker cannot answer in HTTP/2.
            log.error("The gevent worker serves HTTP/1.1 only: remove h2 from http_protocols")
            raise SystemExit(EXIT_WORKER_BOOT_ERROR)
        self.patch()
        self.multithread = True  # greenlets: wsgi.multithread, and stuck requests are found
        s = self.settings
        if s.keepalive <= 0:
            self.keep_alive_allowed = False
        drop_privileges(s.user, s.group, s.initgroups)
        set_process_title(f"worker [{s.proc_name or s.app_spec}]")
        if self.app is None:
            assert s.app_spec is not None
            self.app = load_app(s.app_spec)
        self.statsd = StatsdClient.from_settings(s)
        self.make_adapter()
        self.wake_r = self.wake_w = -1
        self.install_request_hooks()
        if s.reload:
            self.start_reloader()
        self.call_hook("post_worker_init", self)

    def patch(self) -> None:
        """Monkey-patch before the application is imported (without --preload, it has not
        been yet); with --preload it was imported in the master, which is worth a warning."""
        gevent = import_gevent()
        from gevent import monkey

        patched_before = monkey.is_module_patched("socket")
        monkey.patch_all()
        gevent.reinit()  # the hub and its loop belong to this process, not to one forked from
        if self.app is not None and not patched_before:
            log.warning("%s", PRELOAD_WARNING)
        self.gevent = gevent
        self.hub = gevent.get_hub()

    # ---- signals ----------------------------------------------------------------------------

    def handle_quit(self, signum: int, frame: FrameType | None) -> None:
        # Not SystemExit from here: the handler runs in whichever greenlet was running.
        self.alive = False
        self.quitting = True

    # ---- the main greenlet --------------------------------------------------------------------

    def serve(self) -> None:
        from gevent.pool import Pool  # type: ignore[import-untyped,unused-ignore]

        self.pool = Pool(self.settings.worker_connections)
        for sock in self.listeners:
            self.listening[sock.fileno()] = sock
            self.server_addrs[sock.fileno()] = (sock.family.value, _server_address(sock))
        acceptors = [self.gevent.spawn(self.accept_from, sock) for sock in self.listeners]
        self.heartbeat.mark_ready()
        deadline = 0.0
        next_sweep = 0.0
        while True:
            now = time.monotonic()
            if self.quitting:  # QUIT, INT: at once, as the other workers leave
                self.call_hook("worker_int", self)
                self.logger.flush()
                raise SystemExit(0)
            if not self.alive:
                if deadline == 0.0:
                    deadline = now + self.settings.graceful_timeout
                    self.gevent.killall(acceptors)
                    self.stop_accepting()
                if self.drained() or now > deadline:
                    break
            self.heartbeat.beat(now)
            self.reopen_logs_if_requested()
            if now >= next_sweep:
                next_sweep = now + 1.0
                self.sweep(now)
                if os.getppid() != self.ppid:
                    log.info("Parent changed, shutting down: %s", self.pid)
                    self.retire(REASON_ORPHANED)
            self.logger.flush()
            self.gevent.sleep(TICK)
        # Past graceful_timeout, or only stuck requests are left: they end with the worker.
        self.pool.kill(block=True, timeout=1.0)
        self.logger.flush()

    def accept_from(self, listener: Any) -> None:
        """One listener's acceptor: wait for connections while there is room for them."""
        watcher = self.hub.loop.io(listener.fileno(), 1)
        limit = self.settings.worker_connections
        try:
            while True:
                if len(self.conns) >= limit:
                    self.pool.wait_available()
                    continue
                self.hub.wait(watcher)
                self.accept(listener, time.monotonic())
        finally:
            watcher.close()

    def on_event(self, conn: Connection, now: float) -> None:
        """The engine's accept hands each new connection here: it gets its own greenlet."""
        try:
            self.pool.spawn(self.run_connection, conn)
        except BaseException:  # the acceptor was stopped while the pool was full
            self.close(conn)
            raise

    def overdue(self, conn: Connection, now: float) -> bool:
        """`--timeout 0` turns the check off here, as it does the master's: long-polling is
        a common reason to run gevent."""
        return self.settings.timeout > 0 and super().overdue(conn, now)

    def report_stuck(self, conn: Connection, now: float) -> None:
        """As the engine reports a stuck thread: with the stack of the request's greenlet."""
        conn.stuck = True
        owner = self.owners.get(conn)
        frame = getattr(owner, "gr_frame", None)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
        log.error(
            "Worker (pid:%s): a request from %s has run for %.0f s (timeout %d); "
            "stack of its greenlet:\n%s",
            self.pid,
            conn.remote_addr,
            now - conn.started,
            self.settings.timeout,
            stack,
        )
        self.retire(REASON_STUCK_REQUEST)

    # ---- a connection's greenlet --------------------------------------------------------------

    def run_connection(self, conn: Connection) -> None:
        """Drive one connection through the engine's states: where the engine's loop would
        wait for the socket (`wait_for`), this greenlet waits on it through the hub."""
        hub = self.hub
        reading = hub.loop.io(conn.fd, 1)
        writing = None
        self.owners[conn] = self.gevent.getcurrent()
        try:
            if conn.state != CLOSED:
                Worker.on_event(self, conn, time.monotonic())
            while conn.state != CLOSED:
                if conn.events == WRITE:
                    watcher = writing = writing or hub.loop.io(conn.fd, 2)
                else:
                    watcher = reading
                self.flush_soon()
                self.waiting[conn] = watcher
                try:
                    hub.wait(watcher)
                except ConnectionClosed:
                    break
                finally:
                    self.waiting.pop(conn, None)
                if conn.state == CLOSED:
                    break
                Worker.on_event(self, conn, time.monotonic())
        finally:
            if conn.state != CLOSED:  # killed at the end of a stop
                self.abandon(conn)
            if conn in self.closing:
                self.closing.discard(conn)
                conn.close()
            reading.close()
            if writing is not None:
                writing.close()
            del self.owners[conn]

    def wait_for(self, conn: Connection, events: int) -> None:
        """What the engine's reading and writing ask to wait for; the greenlet does it."""
        conn.events = events

    def execute(self, conn: Connection) -> None:
        """Run (or resume) the response in this greenlet; `started` dates each run, as a
        thread's does in gthread, for the stuck-request report."""
        conn.started = time.monotonic()
        super().execute(conn)

    def close(self, conn: Connection) -> None:
        if self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]
        conn.state = CLOSED
        watcher = self.waiting.pop(conn, None)
        if watcher is None:
            conn.close()
            return
        # Its greenlet waits on this socket: wake it, and it closes the socket once its
        # watcher has stopped (a descriptor closed under a live watcher could be reused).
        self.closing.add(conn)
        self.hub.cancel_wait(watcher, ConnectionClosed())

    def flush_soon(self) -> None:
        """Access lines reach their file once the greenlets that ran now have all run (one
        write for them all, as the engine writes once per turn of its loop)."""
        if self.logger.pending and not self.flush_scheduled:
            self.flush_scheduled = True
            self.hub.loop.run_callback(self.flush_access)

    def flush_access(self) -> None:
        self.flush_scheduled = False
        self.logger.flush()
