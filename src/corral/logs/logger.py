"""The error log and the access log: where they go, the logger class, and reopening files.

Two loggers, named as users configure them: ``corral.error`` (lifecycle lines, warnings,
application tracebacks) and ``corral.access`` (one line per request, built in `access.py`).
Call sites use ``%``-style lazy arguments.

`setup_logging` points both at their destinations: a file or a standard stream each, syslog as
well when asked (`syslog.py`), and, first of all, a user's own logging configuration
(`setup.py`), which takes over the loggers it names. `Logger` puts all of that behind the
few calls the master and the workers make; the logger_class setting names it or a subclass.

This module must never log from a signal handler (the arbiter's loop calls
:func:`reopen_log_files` after USR1 is queued), and must never let an access line be built
when no handler would receive it.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import sys
from collections.abc import Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any, TextIO

from corral.config.log_converters import DEFAULT_LOGGER_CLASS
from corral.errors import ConfigError
from corral.logs.access import (
    DEFAULT_ACCESS_LOG_FORMAT,
    LineBuilder,
    Writer,
    access_log,
    access_writer,
    compile_format,
    escape,
    json_line,
)
from corral.logs.batched_file import BatchedFile
from corral.logs.setup import ERROR_DATE_FORMAT, ERROR_FORMAT, LogConfig
from corral.logs.syslog import SyslogTarget, default_prefix, make_handler
from corral.metrics.statsd import StatsdClient, StatsdLogHandler

if TYPE_CHECKING:
    from corral.config.settings import Settings

__all__ = [
    "DEFAULT_ACCESS_LOG_FORMAT",
    "DEFAULT_LOGGER_CLASS",
    "LOG_LEVELS",
    "Logger",
    "access_log",
    "access_logging_enabled",
    "close_logging",
    "error_log",
    "escape",
    "load_logger",
    "reopen_log_files",
    "setup_logging",
]

error_log = logging.getLogger("corral.error")

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# A level no record reaches, so `access_log.isEnabledFor(...)` is False for every level.
_OFF = logging.CRITICAL + 10

# What setup_logging installed (or a user's configuration put on corral's two loggers), so that
# a second call (reload) or close_logging() removes exactly that.
_installed: list[tuple[logging.Logger, logging.Handler]] = []
_captured_path: str | None = None


def setup_logging(
    errorlog: str,
    loglevel: str,
    accesslog: str | None,
    capture_output: bool = False,
    *,
    syslog: SyslogTarget | None = None,
    log_config: LogConfig | None = None,
) -> None:
    """Point the error and access loggers at their destinations, replacing any earlier setup.

    `errorlog` "-" is stderr, anything else a file appended to; `accesslog` "-" is stdout, a
    path is a file, None writes no access file. `syslog` sends the error log, and the access
    log when `syslog.access`, to a syslog daemon as well. `log_config` is applied first; the
    loggers it configures keep its handlers instead. `capture_output` sends what the process
    (and the application) writes to file descriptors 1 and 2 into the error log file.
    """
    global _captured_path
    level = LOG_LEVELS.get(loglevel.lower())
    if level is None:
        choices = ", ".join(LOG_LEVELS)
        raise ConfigError(f"Invalid log level {loglevel!r}: expected one of {choices}.")
    close_logging()
    # A user's configuration that names one of these loggers without saying everything about
    # it starts from here: our level, and not propagating (as under Gunicorn).
    error_log.setLevel(level)
    access_log.setLevel(logging.INFO)
    for logger in (error_log, access_log):
        logger.propagate = False
        logger.disabled = False
    # The user's configuration goes first: applying one closes every handler that exists (the
    # logging module's way), so ours are added after it.
    configured = log_config.apply() if log_config is not None else frozenset()
    if error_log.name in configured:
        _adopt(error_log)
    else:
        _route_error_log(errorlog, syslog)
    if access_log.name in configured:
        _adopt(access_log)
    else:
        _route_access_log(accesslog, syslog)
    _captured_path = None
    if capture_output and errorlog != "-":
        _redirect_output(errorlog)
        _captured_path = errorlog


def _route_error_log(errorlog: str, syslog: SyslogTarget | None) -> None:
    handler = _make_handler(errorlog, sys.stderr)
    handler.setFormatter(logging.Formatter(ERROR_FORMAT, ERROR_DATE_FORMAT))
    _install(error_log, handler)
    if syslog is not None:
        _install(error_log, make_handler(syslog, "error"))


def _route_access_log(accesslog: str | None, syslog: SyslogTarget | None) -> None:
    if accesslog is not None:
        handler = _make_handler(accesslog, sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _install(access_log, handler)
    if syslog is not None and syslog.access:
        _install(access_log, make_handler(syslog, "access"))
    if not access_log.handlers:
        access_log.setLevel(_OFF)


def access_logging_enabled() -> bool:
    """Whether an access line would reach a handler now; when not, none should be built."""
    return (
        not access_log.disabled
        and access_log.isEnabledFor(logging.INFO)
        and access_log.hasHandlers()
    )


def reopen_log_files() -> None:
    """Reopen every log file of every logger; a file moved away is recreated at its path.

    Called from the master's loop and the workers on USR1, never from the signal handler. Files
    opened by a user's logging configuration are reopened too, as Gunicorn does.
    """
    seen: set[int] = set()
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):  # placeholders have none
            if isinstance(handler, logging.FileHandler) and id(handler) not in seen:
                seen.add(id(handler))
                try:
                    _reopen(handler)
                except OSError as exc:
                    error_log.error("Cannot reopen log file %s: %s", handler.baseFilename, exc)
    if _captured_path is not None:
        try:
            _redirect_output(_captured_path)
        except OSError as exc:
            error_log.error("Cannot reopen %s for captured output: %s", _captured_path, exc)


def close_logging() -> None:
    """Remove and close every handler setup_logging installed (output redirection stays)."""
    while _installed:
        logger, handler = _installed.pop()
        logger.removeHandler(handler)
        handler.close()


def _make_handler(destination: str, stream: TextIO) -> logging.Handler:
    if destination == "-":
        return logging.StreamHandler(stream)
    try:
        return logging.FileHandler(
            destination, mode="a", encoding="utf-8", errors="backslashreplace"
        )
    except OSError as exc:
        raise ConfigError(f"Cannot open log file {destination}: {exc.strerror}") from None


def _reopen(handler: logging.FileHandler) -> None:
    """Point a file handler back at its path, after logrotate moved the file.

    Reopening on request (USR1), rather than WatchedFileHandler's stat() before every record,
    keeps the per-request cost of access logging to one write.
    """
    handler.acquire()
    try:
        if handler.stream is None:  # closed, or delay=True: the next record opens the path
            return
        # Open the new file before closing the old one: if the open fails, records keep going
        # to the old file instead of nowhere. Append, whatever the handler's mode: a reopen
        # must never truncate.
        stream = open(  # noqa: SIM115 (the handler owns the file from here on)
            handler.baseFilename, "a", encoding=handler.encoding, errors=handler.errors
        )
        old, handler.stream = handler.stream, stream
        old.flush()
        old.close()
    finally:
        handler.release()


def _install(logger: logging.Logger, handler: logging.Handler) -> None:
    logger.addHandler(handler)
    # Our handlers are the whole story: a root handler set up by the application must not
    # print every server line a second time. A user's configuration that disabled existing
    # loggers did not mean ours, which it did not name.
    logger.propagate = False
    logger.disabled = False
    _installed.append((logger, handler))


def _adopt(logger: logging.Logger) -> None:
    """Track the handlers a user's configuration gave `logger`, so a reload removes them."""
    _installed.extend((logger, handler) for handler in logger.handlers)


def _redirect_output(path: str) -> None:
    """Make file descriptors 1 and 2 append to `path`."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
            # Workers leave with os._exit(): a block-buffered print would be lost.
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


# --- the logger class -------------------------------------------------------------------------


def _ignore(*request: object) -> None:
    """The access writer while no access line has anywhere to go."""


class Logger:
    """The logging calls corral makes; the logger_class setting names this class or a subclass.

    The master builds it with `load_logger(settings)` and calls `setup(settings)`, at startup
    and again on HUP with the new settings. Workers inherit it across fork; they call
    `access(...)` after each request, but only while `access_enabled` is true, `flush()` before
    each wait for events, and `reopen_files()` on USR1, as the master does.

    A subclass may override any of these. One that overrides `setup` should call the base
    method (or install handlers itself) and leave `access_enabled` true exactly when `access`
    should be called: it is what keeps the per-request cost at zero when nothing is logged.
    """

    # The first word of the syslog tag, "gunicorn.<prefix>.error": Gunicorn's, so that syslog
    # filters written for Gunicorn keep working. A subclass may choose another.
    syslog_program = "gunicorn"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.access_enabled = False
        self.line_builder: LineBuilder | None = None
        self.access_file: BatchedFile | None = None
        # The access file's waiting lines, or () without one: all `flush` looks at.
        self.pending: Sized = ()
        self.write_access: Writer = _ignore

    def setup(self, settings: Settings) -> None:
        """Install the handlers `settings` ask for, replacing earlier ones; ConfigError when a
        destination, the access log format or a logging configuration cannot be used."""
        self.settings = settings
        # Built before any handler changes: a broken format leaves logging as it was.
        build = (
            json_line if settings.access_log_json else compile_format(settings.access_log_format)
        )
        log_config = LogConfig(settings.logconfig, settings.logconfig_json, settings.logconfig_dict)
        setup_logging(
            settings.errorlog,
            settings.loglevel,
            settings.accesslog,
            settings.capture_output,
            syslog=self.syslog_target(settings) if settings.syslog else None,
            log_config=log_config,
        )
        given = log_config.given
        for name in given[1:]:
            error_log.warning("%s is ignored: %s takes precedence", name, given[0])
        self.access_enabled = access_logging_enabled()
        self.line_builder = build
        self.setup_access_file(settings, log_config)
        self.write_access = (
            access_writer(build, self.access_file) if self.access_enabled else _ignore
        )
        self.count_log_records(settings)

    def setup_access_file(self, settings: Settings, log_config: LogConfig) -> None:
        """Lines to a plain file or stdout skip the logging module: they are batched until the
        worker's loop writes them (see access.py)."""
        if self.access_file is not None:
            self.access_file.close()
            self.access_file = None
        plain = (
            settings.accesslog is not None
            and not (settings.syslog and not settings.disable_redirect_access_to_syslog)
            and not log_config.given
            and type(self).access is Logger.access
        )
        if plain and self.access_enabled:
            assert settings.accesslog is not None
            try:
                self.access_file = BatchedFile(settings.accesslog)
            except OSError as exc:
                raise ConfigError(f"Cannot open log file {settings.accesslog}: {exc}") from None
        self.pending = self.access_file.pending if self.access_file is not None else ()

    def count_log_records(self, settings: Settings) -> None:
        """With StatsD on, count the error log's warnings, errors, exceptions and critical
        records as gunicorn.log.* counters, as Gunicorn's StatsD logger does."""
        client = StatsdClient.from_settings(settings)
        if client is None:
            return
        if client.error is not None:
            error_log.warning("%s", client.error)
            return
        _install(error_log, StatsdLogHandler(client))

    def syslog_target(self, settings: Settings) -> SyslogTarget:
        """Where and how to send the logs to syslog, from the syslog_* settings."""
        prefix = settings.syslog_prefix or default_prefix(settings.proc_name, settings.app_spec)
        return SyslogTarget(
            address=settings.syslog_addr,
            facility=settings.syslog_facility,
            tag=f"{self.syslog_program}.{prefix}",
            access=not settings.disable_redirect_access_to_syslog,
        )

    def access(
        self,
        environ: Mapping[str, Any],
        status: str,
        response_headers: Sequence[tuple[str, str]],
        response_length: int | None,
        request_time: float,
    ) -> None:
        """Log one request: `response_length` is the body bytes sent (None when unknown),
        `request_time` the seconds from reading the request to the end of the response.
        Never raises: a line that cannot be built is reported in the error log instead."""
        self.write_access(environ, status, response_headers, response_length, request_time)

    def access_writer(self) -> Writer:
        """What a worker calls per request: `access`, or, unless a subclass overrides it, the
        writer itself, one call layer fewer."""
        if type(self).access is not Logger.access:
            return self.access
        return self.write_access

    def flush(self) -> None:
        """Write the access lines waiting in the batch. The worker's loop calls this before
        every wait for events; with nothing waiting it costs one attribute test."""
        if self.pending and self.access_file is not None:
            self.access_file.flush()

    def reopen_files(self) -> None:
        """Reopen the log files (USR1): logrotate has moved them away."""
        if self.access_file is not None:
            try:
                self.access_file.reopen()
            except OSError as exc:
                error_log.error("Cannot reopen log file %s: %s", self.access_file.path, exc)
        reopen_log_files()

    # ---- the error log, by the names Gunicorn's logger has ---------------------------------
    # Config files call `server.log.info(...)` and `worker.log.debug(...)`: these write to the
    # error log (corral.error) exactly as corral's own lines, with the caller's location.

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        error_log.debug(msg, *args, stacklevel=2, **kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        error_log.info(msg, *args, stacklevel=2, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        error_log.warning(msg, *args, stacklevel=2, **kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        error_log.error(msg, *args, stacklevel=2, **kwargs)

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        error_log.error(msg, *args, stacklevel=2, **kwargs)

    def critical(self, msg: object, *args: object, **kwargs: Any) -> None:
        error_log.critical(msg, *args, stacklevel=2, **kwargs)

    def log(self, lvl: int | str, msg: object, *args: object, **kwargs: Any) -> None:
        """Gunicorn's `log(lvl, msg)`: a level number or a name such as "info"."""
        level = logging.getLevelName(lvl.upper()) if isinstance(lvl, str) else lvl
        error_log.log(level if isinstance(level, int) else logging.INFO, msg, *args, **kwargs)

    def close(self) -> None:
        """Write what is waiting, and remove and close the handlers setup installed."""
        if self.access_file is not None:
            self.access_file.close()
            self.access_file = None
            self.pending = ()
        self.write_access = _ignore
        close_logging()


def load_logger(settings: Settings) -> Logger:
    """An instance of the logger_class setting, built with `settings` (not yet set up)."""
    value = settings.logger_class
    if isinstance(value, type):
        cls: object = value
    else:
        cls = Logger if value == DEFAULT_LOGGER_CLASS else _import_class(value)
    if not (isinstance(cls, type) and issubclass(cls, Logger)):
        raise ConfigError(
            f"Invalid logger_class {value!r}: not a subclass of corral.logs.logger.Logger"
        )
    return cls(settings)


def _import_class(path: str) -> object:
    module_name, _, name = path.rpartition(":" if ":" in path else ".")
    try:
        module = importlib.import_module(module_name)
    # The module is user code: whatever its import raises is a configuration error.
    except Exception as exc:
        raise ConfigError(f"Cannot import logger_class {path!r}: {exc}") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ConfigError(
            f"Cannot import logger_class {path!r}: no {name!r} in {module_name}"
        ) from None
