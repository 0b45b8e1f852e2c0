"""What every worker does around its engine: boot in the child, signals, hooks, retiring.

`WorkerLifecycle` is the half of `Worker` that is not the connection engine: it loads the
application after fork, installs the signal handlers (which only set flags or raise SystemExit:
the loop does the work), calls the server hooks, and decides when the worker should retire
(max_requests, max_worker_memory, --reload, an orphaned worker). It never touches a client
connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from corral.adapters.wsgi import WSGIAdapter, WSGIApp
from corral.app_loader import load_app
from corral.config import settings as default_hooks
from corral.errors import EXIT_APP_LOAD_ERROR, EXIT_WORKER_BOOT_ERROR, AppLoadError
from corral.hooks import HookRequest, HookResponse, call_hook
from corral.http.parser import Request
from corral.logs.logger import Logger
from corral.metrics.statsd import StatsdClient
from corral.process import set_process_title
from corral.resources import rss_bytes
from corral.workers.heartbeat import REASON_MAX_MEMORY, REASON_RELOAD
from corral.workers.privileges import drop_privileges

if TYPE_CHECKING:
    from corral.config import Settings
    from corral.metrics.stats import WorkerStats
    from corral.workers.heartbeat import Heartbeat

log = logging.getLogger("corral.error")

# More requests than any worker has between pre_request and post_request at once: past this,
# the ones kept belong to clients that left before their response (see install_request_hooks).
MAX_REQUESTS_BETWEEN_HOOKS = 4096


class WorkerLifecycle:
    """Boot, signals, hooks and retirement; the engine (`Worker`) supplies `serve()`."""

    settings: Settings
    pid: int
    app: WSGIApp | None
    adapter: WSGIAdapter | None
    heartbeat: Heartbeat
    alive: bool
    multithread: bool
    epoll: Any
    fd_handlers: dict[int, Callable[[], None]]
    wake_r: int
    wake_w: int
    pre_request: Callable[[Any, Request], object] | None
    stats: WorkerStats | None
    statsd: StatsdClient | None
    reopen_requested: bool
    logger: Logger
    handled: int
    aborted_at: float

    # ---- what hooks use: Gunicorn's names for the worker's state ----------------------------
    # Besides these, hooks read `pid`, `ppid`, `age` (the spawn number), `alive`, `cfg` (the
    # settings) and `app`, which the engine sets under those names.

    @property
    def log(self) -> Logger:
        """The logger (`worker.log.info(...)` writes to the error log)."""
        return self.logger

    @property
    def nr(self) -> int:
        """Requests this worker has started serving."""
        return self.handled

    @property
    def wsgi(self) -> WSGIApp | None:
        """The loaded application (what Gunicorn's `worker.wsgi` is); None before it loads."""
        return self.app

    @property
    def booted(self) -> bool:
        """Whether the worker has loaded the application and serves."""
        try:
            return self.heartbeat.ready()
        except ValueError:  # the master has closed the block of a worker it reaped
            return False

    @property
    def aborted(self) -> bool:
        """Master side: whether the timeout abort has been sent to this worker."""
        return bool(self.aborted_at)

    def serve(self) -> None:
        raise NotImplementedError

    @staticmethod
    def multithread_for(settings: Settings) -> bool:
        """Whether this class serves requests from several threads at once."""
        return False

    def run(self) -> int:
        """Entry point in the child; returns the exit status."""
        self.pid = os.getpid()
        try:
            self.init_process()
        except AppLoadError as exc:
            log.error("%s", exc)
            details = exc.details
            if details:
                sys.stderr.write(details if details.endswith("\n") else details + "\n")
            return EXIT_APP_LOAD_ERROR
        except Exception:
            log.exception("Exception in worker process")
            return EXIT_WORKER_BOOT_ERROR
        self.serve()
        return 0

    def init_process(self) -> None:
        s = self.settings
        drop_privileges(s.user, s.group, s.initgroups)
        self.init_signals()
        set_process_title(f"worker [{self.settings.proc_name or self.settings.app_spec}]")
        if self.app is None:
            assert self.settings.app_spec is not None
            self.app = load_app(self.settings.app_spec)
        s = self.settings
        self.statsd = StatsdClient.from_settings(s)
        self.make_adapter()
        self.epoll = select.epoll()
        # Signals and other threads wake the loop through this pipe.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.watch(self.wake_r, lambda: drain_pipe(self.wake_r))
        self.install_request_hooks()
        if s.reload:
            self.start_reloader()
        self.call_hook("post_worker_init", self)

    def make_adapter(self) -> None:
        """The WSGI adapter; the asgi worker has its own."""
        s = self.settings
        assert self.app is not None
        access = self.logger.access_writer() if self.logger.access_enabled else None
        self.adapter = WSGIAdapter(
            self.app,
            multithread=self.multithread,
            sendfile=s.sendfile is not False,
            secure_scheme_headers=s.secure_scheme_headers,
            forwarder_headers=s.forwarder_headers,
            header_map=s.header_map,
            access=access,
        )
        # Gauges only (the control socket without metrics): nothing to do per request.
        self.adapter.stats = self.stats if self.stats is not None and self.stats.counting else None
        self.adapter.statsd = self.statsd

    def install_request_hooks(self) -> None:
        """pre_request/post_request cost a call per request: only wire them in when set.

        They receive Gunicorn's request and response attributes (corral.hooks), and the
        request object pre_request saw is the one post_request gets, so that a value a hook
        stores on it (a start time) is still there."""
        s = self.settings
        pre = s.pre_request if s.pre_request is not default_hooks.pre_request else None
        post = s.post_request if s.post_request is not default_hooks.post_request else None
        # Requests between the two hooks, by id(req): only kept when both hooks are set.
        seen: dict[int, HookRequest] = {}
        if pre is not None:
            keep = post is not None

            def pre_request(worker: Any, req: Request) -> None:
                view = HookRequest(req)
                if keep:
                    if len(seen) > MAX_REQUESTS_BETWEEN_HOOKS:
                        seen.clear()  # requests that never reached post_request (gone clients)
                    seen[id(req)] = view
                pre(worker, view)

            self.pre_request = pre_request
        else:
            self.pre_request = None
        if post is not None and self.adapter is not None:

            def post_request(req: Request, environ: dict[str, Any], resp: object) -> None:
                view = seen.pop(id(req), None) or HookRequest(req)
                try:
                    post(self, view, environ, HookResponse(resp))
                except Exception:
                    log.exception("Exception in post_request hook")

            self.adapter.post_request = post_request

    def start_reloader(self) -> None:
        from corral.workers.reloader import Reloader  # ctypes and threads only when --reload is on

        def on_change(path: str) -> None:
            log.info("Worker reloading: %s modified", path)
            self.retire(REASON_RELOAD)
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"\0")  # wake the loop now rather than at its next turn

        Reloader(
            on_change, self.settings.reload_extra_files, engine=self.settings.reload_engine
        ).start()

    def watch(self, fd: int, handler: Callable[[], None]) -> None:
        """Call `handler` from the loop whenever `fd` is readable (wake-up pipes)."""
        self.fd_handlers[fd] = handler
        self.epoll.register(fd, select.EPOLLIN)

    def init_signals(self) -> None:
        for signum in (signal.SIGHUP, signal.SIGWINCH, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self.handle_term)
        signal.signal(signal.SIGINT, self.handle_quit)
        signal.signal(signal.SIGQUIT, self.handle_quit)
        signal.signal(signal.SIGABRT, self.handle_abort)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        # A signal interrupts system calls instead of letting them resume unnoticed.
        signal.siginterrupt(signal.SIGTERM, True)
        signal.siginterrupt(signal.SIGUSR1, True)

    def handle_term(self, signum: int, frame: FrameType | None) -> None:
        self.alive = False

    def handle_quit(self, signum: int, frame: FrameType | None) -> None:
        self.alive = False
        self.call_hook("worker_int", self)
        raise SystemExit(0)

    def handle_usr1(self, signum: int, frame: FrameType | None) -> None:
        # Not from the handler (it could interrupt a log write): the loop reopens the files.
        self.reopen_requested = True

    def reopen_logs_if_requested(self) -> None:
        if self.reopen_requested:
            self.reopen_requested = False
            self.logger.reopen_files()

    def handle_abort(self, signum: int, frame: FrameType | None) -> None:
        """The master saw no heartbeat for `timeout` seconds: show where every thread is."""
        self.alive = False
        stacks = []
        names = {t_id: name for t_id, name in _thread_names().items()}
        for thread_id, thread_frame in sys._current_frames().items():
            name = names.get(thread_id, str(thread_id))
            stack = "".join(traceback.format_stack(thread_frame))
            stacks.append(f"Thread {name} (most recent call last):\n{stack}")
        log.critical(
            "Worker (pid:%s) timed out; stack of each thread:\n%s", self.pid, "\n".join(stacks)
        )
        self.call_hook("worker_abort", self)
        raise SystemExit(1)

    def call_hook(self, name: str, *args: object) -> None:
        call_hook(self.settings, name, *args)

    def retire(self, reason: int) -> None:
        """Finish what is in flight, then exit; the master learns why from the heartbeat."""
        self.heartbeat.set_exit_reason(reason)
        self.alive = False

    def check_memory(self) -> None:
        """The loop's once-a-second look at itself: the memory limit, and (while it is here)
        the count of requests served published for the master (`show workers`)."""
        if self.stats is not None:
            self.stats.set_served(self.handled)
        limit = self.settings.max_worker_memory
        if limit and self.alive:
            rss = rss_bytes()
            if rss > limit * 1024 * 1024:
                log.warning(
                    "Worker (pid:%s) uses %d MiB, over max_worker_memory (%d MiB): "
                    "restarting after the current requests",
                    self.pid,
                    rss >> 20,
                    limit,
                )
                self.retire(REASON_MAX_MEMORY)


def drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _thread_names() -> dict[int, str]:
    return {t.ident: t.name for t in threading.enumerate() if t.ident is not None}
