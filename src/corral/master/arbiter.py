"""The master process: binds the listeners, keeps the pen of workers, and answers signals.

Signal handlers only enqueue the signal and wake the loop (through the wake-up fd); the loop
does the work in `handle_<signame>`. The master never calls the application and never parses
HTTP. It reaps and replaces workers, kills the ones whose heartbeat is older than `timeout`
(after asking them to dump their stacks), and stops with a message when a worker cannot boot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from corral import __version__
from corral.config.converters import requested_worker_class
from corral.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_WORKER_BOOT_ERROR,
    CorralError,
    HaltServer,
)
from corral.hooks import call_hook
from corral.logs.logger import Logger, load_logger
from corral.master import control_commands, systemd, upgrade
from corral.master.control import ControlServer, SocketInUse
from corral.master.exits import ExitReporter
from corral.master.listeners import (
    activated_listeners,
    close_listeners,
    create_listeners,
    listener_url,
    refuse_new_connections,
)
from corral.metrics.connections import ConnectionTable
from corral.metrics.prometheus import MetricsServer, render
from corral.metrics.stats import ConnectionGauges, StatsAggregator, WorkerStats, listen_queue
from corral.metrics.statsd import StatsdClient
from corral.process import Pidfile, set_process_title
from corral.resources import limit_warnings
from corral.workers.asgi import AsgiWorker
from corral.workers.engine import Worker
from corral.workers.gevent import GeventWorker
from corral.workers.gthread import ThreadWorker
from corral.workers.heartbeat import Heartbeat
from corral.workers.sync import SyncWorker

if TYPE_CHECKING:
    import ssl

    from corral.adapters.wsgi import WSGIApp
    from corral.config import Settings

log = logging.getLogger("corral.error")

WORKER_CLASSES: dict[str, type[Worker]] = {
    "sync": SyncWorker,
    "gthread": ThreadWorker,
    "asgi": AsgiWorker,
    "gevent": GeventWorker,
}
HANDLED_SIGNALS = ("HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "USR2", "WINCH")
# After the abort signal, how long a timed-out worker gets to print its stacks before SIGKILL.
ABORT_GRACE = 2.0


def build_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context, when certfile is set; ssl is not even imported otherwise."""
    if settings.certfile is None:
        return None
    from corral.workers.tls import build_context as build

    return build(settings)


class Arbiter:
    def __init__(
        self,
        settings: Settings,
        app: WSGIApp | None = None,
        reload_settings: Callable[[], Settings] | None = None,
        argv: Sequence[str] = (),
        cwd: str | None = None,
        logger: Logger | None = None,
    ) -> None:
        self.settings = settings
        self.logger: Logger = logger if logger is not None else load_logger(settings)
        self.argv = list(argv)
        self.cwd = cwd or os.getcwd()
        self.reexec_pid = 0  # the new master started by USR2, while it runs
        self.upgrade_parent = upgrade.upgrade_parent(os.environ)
        # Built here, once, before any fork (so keys readable only by the starting user work
        # after workers switch to --user); rebuilt on HUP to pick up renewed certificates.
        self.tls_context = build_context(settings)
        self.notifier = systemd.Notifier(os.environ, unset=True)
        self.announced_ready = False
        self.exits = ExitReporter()
        self.stats = StatsAggregator()
        self.metrics: MetricsServer | None = None
        self.statsd: StatsdClient | None = None
        self.reload_settings = reload_settings
        self.retiring: set[int] = set()  # workers of the previous generation, after HUP
        self.retire_deadline = 0.0
        self.cfg = settings  # the name Gunicorn's hooks use
        self.app = app
        self.pid = os.getpid()
        self.workers: dict[int, Worker] = {}
        self.listeners: list[socket.socket] = []
        self.signals: list[int] = []
        self.worker_age = 0
        self._num_workers: int | None = None
        self.num_workers = settings.workers  # the first nworkers_changed, old value None
        self.pidfile: Pidfile | None = None
        self.worker_class = WORKER_CLASSES[settings.effective_worker_class]
        self.wake_r = self.wake_w = -1
        self.stopping = False
        self.control: ControlServer | None = None
        # For the control socket's `show workers` and `show stats` (Gunicorn's counters).
        self.spawned_at: dict[int, float] = {}
        self.started_at = time.time()
        self.workers_killed = 0
        self.reloads = 0

    # ---- what hooks use: Gunicorn's names (besides cfg, pid, app and num_workers) -----------

    @property
    def log(self) -> Logger:
        """The logger (`server.log.info(...)` writes to the error log)."""
        return self.logger

    @property
    def WORKERS(self) -> dict[int, Worker]:
        """The running workers by pid."""
        return self.workers

    @property
    def LISTENERS(self) -> list[socket.socket]:
        """The listening sockets."""
        return self.listeners

    @property
    def num_workers(self) -> int:
        """How many workers the master keeps running."""
        return self._num_workers or 0

    @num_workers.setter
    def num_workers(self, value: int) -> None:
        # Every assignment calls the hook, as Gunicorn's does, so that hooks written for it see
        # the same calls: None as the old value the first time, and one call on each reload
        # (even one that keeps the count), TTIN, TTOU and WINCH.
        old = self._num_workers
        self._num_workers = value
        self.call_hook("nworkers_changed", self, value, old)

    # ---- start and the main loop --------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
            while True:
                self.wait_for_signal()
                if self.control is not None:
                    self.control.handle_ready()  # may queue signals, handled right below
                while self.signals:
                    signum = self.signals.pop(0)
                    handler = getattr(self, "handle_" + signal.Signals(signum).name[3:].lower())
                    handler()
                self.exits.mark()
                self.reap_workers()
                self.exits.settle()
                self.report_metrics()
                self.check_upgrade_parent()
                self.murder_workers()
                self.replace_leaving_workers()
                self.manage_workers()
        except StopServer as stop:
            self.halt(stop.exit_status, graceful=stop.graceful)
            return stop.exit_status
        except HaltServer as exc:
            log.error("Shutting down: %s", exc.reason)
            self.halt(exc.exit_status, graceful=False)
            return exc.exit_status
        except Exception:
            log.exception("Unhandled exception in main loop")
            self.halt(1, graceful=False)
            return 1

    def start(self) -> None:
        s = self.settings
        log.info("Starting corral %s", __version__)
        self.call_hook("on_starting", self)
        self.init_signals()
        if s.pidfile:
            # The new master of a USR2 upgrade writes <pidfile>.2 until the old one is gone.
            self.pidfile = Pidfile(s.pidfile + (".2" if self.upgrade_parent else ""))
            self.pidfile.create(self.pid)
        self.listeners = (
            upgrade.inherited_listeners(os.environ)
            or activated_listeners(systemd.listen_fds(os.environ), s.backlog)
            or create_listeners(s.bind, s.backlog, s.umask, s.reuse_port)
        )
        for sock in self.listeners:
            log.info("Listening at: %s (%s)", listener_url(sock), self.pid)
        if s.metrics_bind:
            self.metrics = MetricsServer(s.metrics_bind, lambda: render(self.stats, self.listeners))
            log.info("Serving metrics at: http://%s:%s/metrics", *self.metrics.address)
        self.statsd = StatsdClient.from_settings(s)
        if not self.upgrade_parent:  # the old master serves it until it exits
            self.open_control()
        log.info("Using worker: %s", s.effective_worker_class)
        if requested := requested_worker_class(s.worker_class):
            # A Gunicorn or uvicorn worker class name: corral runs its own worker for it.
            log.info(
                "Worker class %s is served by corral's %s worker",
                requested,
                s.effective_worker_class,
            )
        for warning in limit_warnings(s.backlog, s.worker_connections, s.workers):
            log.warning("%s", warning)
        set_process_title(f"master [{s.proc_name or s.app_spec}]")
        # As in Gunicorn: "ready" means the listeners are bound; workers are forked next.
        self.call_hook("when_ready", self)
        self.manage_workers()

    def init_signals(self) -> None:
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for name in HANDLED_SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), self.enqueue_signal)
        signal.signal(signal.SIGCHLD, self.handle_chld)

    def enqueue_signal(self, signum: int, frame: object) -> None:
        if len(self.signals) < 5:
            self.signals.append(signum)

    def handle_chld(self, signum: int, frame: object) -> None:
        """Only wakes the loop (through the wake-up fd); reaping happens there."""

    def report_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.handle_ready()
        if self.statsd is not None:
            self.statsd.workers(self.stats.workers)
            if self.settings.enable_backlog_metric:
                queues = [listen_queue(sock) for sock in self.listeners]
                self.statsd.backlog(sum(q for q in queues if q is not None))
            self.statsd.flush_if_due()

    def wait_for_signal(self, timeout: float = 1.0) -> None:
        if self.signals:
            return
        if self.retiring or not self.announced_ready:
            timeout = 0.05
        watched = [self.wake_r]
        for server in (self.metrics, self.control):
            if server is not None:
                watched.append(server.fileno())
        try:
            ready, _, _ = select.select(watched, [], [], timeout)
            if self.wake_r in ready:
                while os.read(self.wake_r, 4096):
                    pass
        except (BlockingIOError, InterruptedError):
            pass

    # ---- signals ------------------------------------------------------------------------

    def handle_term(self) -> None:
        raise StopServer(EXIT_OK, graceful=True)

    def handle_int(self) -> None:
        raise StopServer(EXIT_OK, graceful=False)

    handle_quit = handle_int

    def handle_ttin(self) -> None:
        self.num_workers += 1

    def handle_ttou(self) -> None:
        if self.num_workers > 1:
            self.num_workers -= 1

    def handle_hup(self) -> None:
        """Reload: settings again, logs reopened, listeners re-bound if `bind` changed, then a
        new generation of workers; the old one is stopped once the new one serves."""
        log.info("Hang up: Master")
        self.reloads += 1
        self.notifier.reloading()
        self.announced_ready = False
        if self.reload_settings is not None:
            try:
                new = self.reload_settings()
                tls_context = build_context(new)
                new_logger = load_logger(new)
                new_logger.setup(new)
            except CorralError as exc:
                self.logger.setup(self.settings)  # a failed setup may have left it half done
                log.error("Reload failed, keeping the previous settings: %s", exc)
                return
            self.logger = new_logger
            self.apply_settings(new, tls_context)
        else:
            self.num_workers = self.settings.workers
        self.call_hook("on_reload", self)
        self.retiring.update(pid for pid, w in self.workers.items() if w.alive)
        self.retire_deadline = time.monotonic() + max(self.settings.timeout, 30)
        for _ in range(self.num_workers):
            self.spawn_worker()

    def apply_settings(self, new: Settings, tls_context: ssl.SSLContext | None) -> None:
        old = self.settings
        self.tls_context = tls_context
        if new.bind != old.bind:
            listeners = create_listeners(new.bind, new.backlog, new.umask, new.reuse_port)
            close_listeners(self.listeners, unlink=True)
            self.listeners = listeners
            for sock in listeners:
                log.info("Listening at: %s (%s)", listener_url(sock), self.pid)
        self.settings = self.cfg = new
        if control_settings(new) != control_settings(old):
            self.close_control()
            self.open_control()
        self.num_workers = new.workers
        self.worker_class = WORKER_CLASSES[new.effective_worker_class]

    def announce_ready(self) -> None:
        """sd_notify READY=1 once every worker of the current generation serves (not before)."""
        if self.announced_ready or self.retiring:
            return
        workers = [w for w in self.workers.values() if w.alive]
        if len(workers) >= self.num_workers and all(w.heartbeat.ready() for w in workers):
            self.announced_ready = True
            self.notifier.ready(f"Serving with {len(workers)} workers")

    def retire_old_generation(self) -> None:
        """TERM the previous generation once as many new workers are ready as we want."""
        if not self.retiring:
            return
        self.retiring &= set(self.workers)
        fresh = [w for pid, w in self.workers.items() if pid not in self.retiring and w.alive]
        ready = sum(1 for w in fresh if w.heartbeat.ready())
        if ready >= min(self.num_workers, len(fresh)) or time.monotonic() > self.retire_deadline:
            for pid in self.retiring:
                self.kill_worker(pid, signal.SIGTERM)
            self.retiring.clear()

    def handle_usr1(self) -> None:
        self.logger.reopen_files()
        for pid in list(self.workers):
            self.kill_worker(pid, signal.SIGUSR1)

    def handle_usr2(self) -> None:
        """Binary upgrade: a new master on the same sockets; this one keeps serving."""
        if self.reexec_pid:
            log.warning("USR2 ignored: a new master (pid %s) is already running", self.reexec_pid)
            return
        if self.upgrade_parent:
            log.warning("USR2 ignored: the upgrade that started this master is not finished")
            return
        log.info("Starting a new master (binary upgrade)")
        self.reexec_pid = upgrade.spawn_new_master(
            self.argv, self.cwd, self.listeners, lambda: self.call_hook("pre_exec", self)
        )

    def handle_winch(self) -> None:
        """Stop this master's workers gracefully, when a new master serves (or daemonized);
        a terminal sends WINCH on every resize, so it is ignored otherwise."""
        if not (self.reexec_pid or self.settings.daemon):
            log.info("SIGWINCH ignored. Not daemonized")
            return
        log.info("graceful stop of workers")
        self.num_workers = 0
        for pid in list(self.workers):
            self.kill_worker(pid, signal.SIGTERM)

    def check_upgrade_parent(self) -> None:
        """The new master becomes the master once the old one has exited."""
        if self.upgrade_parent and os.getppid() != self.upgrade_parent:
            log.info("Old master %s is gone; taking over", self.upgrade_parent)
            self.upgrade_parent = 0
            self.open_control()
            if self.pidfile is not None and self.settings.pidfile:
                old_path = self.pidfile.path
                self.pidfile = Pidfile(self.settings.pidfile)
                self.pidfile.create(self.pid)
                with contextlib.suppress(OSError):
                    os.unlink(old_path)

    # ---- workers ------------------------------------------------------------------------

    def manage_workers(self) -> None:
        self.retire_old_generation()
        self.announce_ready()
        alive = [w for pid, w in self.workers.items() if w.alive and pid not in self.retiring]
        if len(alive) < self.num_workers:
            for _ in range(self.num_workers - len(alive)):
                self.spawn_worker()
        elif len(alive) > self.num_workers:
            oldest = sorted(alive, key=lambda w: w.age)
            for worker in oldest[: len(alive) - self.num_workers]:
                self.kill_worker(worker.pid, signal.SIGTERM)

    def spawn_worker(self) -> None:
        self.worker_age += 1
        worker = self.worker_class(
            self.worker_age,
            self.pid,
            self.listeners,
            self.settings,
            self.app,
            Heartbeat(),
            self.tls_context,
            self.logger,
        )
        worker.server = self  # type: ignore[attr-defined]
        s = self.settings
        if s.metrics_bind or s.statsd_host:
            worker.stats = WorkerStats(threaded=worker.multithread_for(s))
        elif self.control is not None:
            # What `show workers` lists, at no cost per request.
            worker.stats = ConnectionGauges()
        if worker.stats is not None:
            self.stats.add(worker.stats)
        if self.control is not None:
            worker.connection_table = ConnectionTable()  # the rows of `show connections`
        self.call_hook("pre_fork", self, worker)
        pid = os.fork()
        if pid:
            worker.pid = pid
            self.workers[pid] = worker
            self.spawned_at[pid] = time.monotonic()
            return
        # Child: never return into the master's loop.
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            os.close(self.wake_r)
            os.close(self.wake_w)
            if self.control is not None:
                self.control.close_in_child()
            if self.metrics is not None:
                # The child's copies only: a scrape the master drops must see its end, not
                # stay open for as long as this worker lives.
                self.metrics.close()
            worker.pid = os.getpid()
            log.info("Booting worker with pid: %s", worker.pid)
            self.call_hook("post_fork", self, worker)
            status = worker.run()
            self.call_hook("worker_exit", self, worker)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
            self.call_hook("worker_exit", self, worker)
        except BaseException:
            log.exception("Exception in worker process")
            # As Gunicorn: the boot-failure status only from a worker that never served.
            status = EXIT_ERROR if worker.heartbeat.ready() else EXIT_WORKER_BOOT_ERROR
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                logging.shutdown()
                save_coverage()
            finally:
                os._exit(status)

    def kill_worker(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        else:
            worker = self.workers.get(pid)
            if worker is not None and sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGKILL):
                worker.alive = False
            if sig in (signal.SIGTERM, signal.SIGKILL):
                self.workers_killed += 1  # as Gunicorn counts them

    def reap_workers(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            self.spawned_at.pop(pid, None)
            if worker is None:
                if pid == self.reexec_pid:
                    log.info("New master (pid %s) exited; this master stays", pid)
                    self.reexec_pid = 0
                continue  # otherwise not ours (we may be PID 1 in a container): reaped quietly
            try:
                cause = self.exits.report(worker, status, self.stopping)
                if cause is not None and not self.stopping:
                    self.stats.count_restart(cause)
                # Before the shared blocks close: the hook may read `worker.booted`.
                self.call_hook("child_exit", self, worker)
            finally:
                worker.heartbeat.close()
                if worker.stats is not None:
                    self.stats.retire(worker.stats)
                    worker.stats.close()
                if worker.connection_table is not None:
                    worker.connection_table.close()

    def replace_leaving_workers(self) -> None:
        """A worker that told it is leaving for a reason that warrants it (a request stuck past
        timeout) no longer counts: manage_workers starts its replacement now, while it finishes
        its other requests."""
        running = [w for w in self.workers.values() if w.alive]
        for worker in self.exits.leaving(running):
            worker.alive = False

    def murder_workers(self) -> None:
        timeout = self.settings.timeout
        if timeout <= 0:
            return
        now = time.monotonic()
        for pid, worker in list(self.workers.items()):
            if worker.aborted_at:
                if now - worker.aborted_at > ABORT_GRACE:
                    self.kill_worker(pid, signal.SIGKILL)
                continue
            if now - worker.heartbeat.last() <= timeout:
                continue
            log.critical("WORKER TIMEOUT (pid:%s)", pid)
            worker.aborted_at = now
            worker.alive = False
            self.kill_worker(pid, signal.SIGABRT)

    # ---- stopping -----------------------------------------------------------------------

    def stop(self, graceful: bool = True) -> None:
        """Close the listeners, signal every worker, wait up to graceful_timeout, then KILL."""
        self.stopping = True
        self.notifier.stopping()
        shared = bool(self.reexec_pid or self.upgrade_parent)
        if not shared:
            # Connections arriving from now on wait in SYN retries and are refused once the
            # workers have closed the socket, instead of being queued and then reset. The
            # workers take what is already queued.
            for sock in self.listeners:
                refuse_new_connections(sock)
        # Another master may serve from the same unix socket: then leave its path alone.
        close_listeners(self.listeners, unlink=not shared)
        self.listeners = []
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        if not shared:
            for worker in self.workers.values():
                worker.heartbeat.mark_master_stopping()
        for pid in list(self.workers):
            self.kill_worker(pid, sig)
        deadline = time.monotonic() + self.settings.graceful_timeout
        while self.workers and time.monotonic() < deadline:
            self.reap_workers_quietly()
            time.sleep(0.05)
        for pid in list(self.workers):
            self.kill_worker(pid, signal.SIGKILL)
        self.reap_workers_quietly()

    def reap_workers_quietly(self) -> None:
        with contextlib.suppress(HaltServer):
            self.reap_workers()

    def halt(self, exit_status: int, graceful: bool = True) -> None:
        self.close_control()
        self.stop(graceful)
        log.info("Shutting down: Master")
        if self.metrics is not None:
            self.metrics.close()
        if self.statsd is not None:
            self.statsd.close()
        if self.pidfile is not None:
            self.pidfile.unlink(self.pid)
        self.call_hook("on_exit", self)

    def call_hook(self, name: str, *args: object) -> None:
        call_hook(self.settings, name, *args)

    # ---- the control socket -------------------------------------------------------------

    def queue_signal(self, signum: int) -> None:
        """What a control command asks for, handled by the loop as the signal would be."""
        self.signals.append(signum)

    def open_control(self) -> None:
        """Serve the control socket, unless disabled; a path that cannot be used is a warning,
        not a reason to stop serving HTTP."""
        s = self.settings
        if s.control_socket_disable or self.control is not None:
            return
        path = os.path.abspath(s.control_socket)
        try:
            self.control = ControlServer(
                path,
                s.control_socket_mode,
                lambda words, privileged: control_commands.dispatch(self, words, privileged),
            )
        except SocketInUse:
            log.warning("Control socket %s is in use by another server; not opening one", path)
        except OSError as exc:
            log.warning("Failed to start control socket at %s: %s", path, exc.strerror or exc)
        else:
            log.info("Control socket listening at %s", path)

    def close_control(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None


def control_settings(settings: Settings) -> tuple[object, ...]:
    return (settings.control_socket_disable, settings.control_socket, settings.control_socket_mode)


def save_coverage() -> None:
    """Workers leave with os._exit, which skips atexit: when the test suite measures coverage
    (coverage.py is loaded and running), save this process's data first. Otherwise a no-op."""
    coverage = sys.modules.get("coverage")
    current = getattr(getattr(coverage, "Coverage", None), "current", None)
    running = current() if current is not None else None
    if running is not None:
        running.stop()
        running.save()


class StopServer(Exception):
    """Raised by a signal handler in the loop to stop the master."""

    def __init__(self, exit_status: int, graceful: bool) -> None:
        super().__init__(exit_status)
        self.exit_status = exit_status
        self.graceful = graceful
