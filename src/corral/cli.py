"""The `corral` command: settings from every source, then the master.

Startup errors (a bad setting, an application that does not load) end here as one line on
stderr and a non-zero exit status, never as a traceback (the application's own import
traceback is printed after that line, because it is the user's to read).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from corral import __version__
from corral.app_loader import load_app
from corral.config import Settings, format_settings, load_settings
from corral.errors import EXIT_APP_LOAD_ERROR, EXIT_USAGE, AppLoadError, ConfigError
from corral.logs.logger import load_logger
from corral.master.daemon import daemonize

log = logging.getLogger("corral.error")


def extend_sys_path(settings: Settings) -> None:
    """--pythonpath entries and the --chdir directory go in front of the module search path."""
    for entry in reversed([p for p in (settings.pythonpath or "").split(",") if p.strip()]):
        path = os.path.join(settings.chdir, entry.strip())
        if path not in sys.path:
            sys.path.insert(0, path)
    if settings.chdir not in sys.path:
        sys.path.insert(0, settings.chdir)


def prepare_environment(settings: Settings) -> None:
    """--chdir, --pythonpath and --env, applied once before the application is imported."""
    os.chdir(settings.chdir)
    extend_sys_path(settings)
    for item in settings.raw_env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    os.umask(settings.umask)


def report_app_error(exc: AppLoadError) -> None:
    sys.stderr.write(f"Error: {exc}\n")
    if exc.details:
        sys.stderr.write(exc.details if exc.details.endswith("\n") else exc.details + "\n")


def run(argv: Sequence[str]) -> int:
    # What a reload on HUP reads again: the same arguments, environment and directory.
    environ = dict(os.environ)
    cwd = os.getcwd()
    try:
        result = load_settings(argv, environ, cwd)
        settings = result.settings
        if result.action == "version":
            print(f"corral (version {__version__})")
            return 0
        extend_sys_path(settings)  # a --logger-class next to the application must import
        logger = load_logger(settings)
        logger.setup(settings)
    except ConfigError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return EXIT_USAGE
    for warning in result.warnings:
        log.warning("%s", warning)
    if result.action == "print_config":
        print(format_settings(settings))
        return 0
    if not settings.app_spec:
        sys.stderr.write("Error: No application module specified.\n")
        return EXIT_USAGE
    if settings.daemon:
        daemonize(settings.umask)
    prepare_environment(settings)
    app = None
    if result.action == "check_config" or settings.preload_app:
        try:
            app = load_app(settings.app_spec)
        except AppLoadError as exc:
            report_app_error(exc)
            return EXIT_APP_LOAD_ERROR
        if result.action == "check_config":
            return 0
    from corral.master.arbiter import Arbiter

    def reload_settings() -> Settings:
        return load_settings(argv, environ, cwd).settings

    try:
        arbiter = Arbiter(settings, app, reload_settings, argv, cwd, logger)
    except ConfigError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return EXIT_USAGE
    return arbiter.run()


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["ctl"]:
        # `corral ctl ...`: the control socket's client, not a server (docs/control.md).
        from corral.control.cli import main as ctl

        sys.exit(ctl(args[1:]))
    sys.exit(run(args))
