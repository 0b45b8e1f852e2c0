"""Where settings come from, and which source wins.

From lowest to highest precedence:

1. the defaults declared in `settings.py`;
2. environment seeds: WEB_CONCURRENCY, PORT, FORWARDED_ALLOW_IPS, SENDFILE;
3. the config file: `-c PATH`, `-c python:MODULE`, or else `./corral.conf.py`, or else
   `./gunicorn.conf.py`, when present in the working directory;
4. CORRAL_CMD_ARGS (or, when that is absent, GUNICORN_CMD_ARGS), parsed like the command line;
5. the command line.

A source only overrides the settings it actually names: the parser's defaults are
`argparse.SUPPRESS`, so an absent flag leaves no trace. Every value goes through its setting's
converter, and a bad one becomes a one-line `ConfigError` naming the setting, the source and
the value. Rules that look at several settings together run last (`check_http2`): they raise
the same kind of one-line error, or add warnings. This module reads the files and variables it
is handed and never changes the process (no chdir, no environment changes); only while a config
file runs is its directory put on sys.path, so that it can import its neighbours as under
Gunicorn.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import inspect
import os
import shlex
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from corral import __version__
from corral.config.http2 import check_http2
from corral.config.settings import (
    SECTIONS,
    SPECS,
    SPECS_BY_KEY,
    SPECS_BY_NAME,
    Settings,
    SettingSpec,
    default_value,
    show_value,
)
from corral.errors import ConfigError

Action = Literal["serve", "check_config", "print_config", "version"]

ENV_ARGS_VARIABLES = ("CORRAL_CMD_ARGS", "GUNICORN_CMD_ARGS")
DEFAULT_CONFIG_FILES = ("corral.conf.py", "gunicorn.conf.py")
CONFIG_MODULE_NAME = "__config__"
USAGE = "%(prog)s [OPTIONS] [APP_MODULE]\n       %(prog)s ctl [-s SOCKET] [-c COMMAND] [-j]"
EPILOG = (
    "`%(prog)s ctl` talks to a running server through its control socket (Gunicorn's "
    "gunicornc); `%(prog)s ctl --help` lists its options, docs/control.md its commands."
)

# Gunicorn 27 settings that corral does not implement: named in a config file, they get a
# clearer warning than "unknown setting".
GUNICORN_ONLY = frozenset(
    """
    asgi_disconnect_grace_period asgi_lifespan asgi_loop ca_certs cert_reqs certfile ciphers
    control_socket control_socket_disable control_socket_mode default_proc_name dirty_apps
    dirty_graceful_timeout dirty_post_fork dirty_threads dirty_timeout dirty_worker_exit
    dirty_worker_init dirty_workers disable_redirect_access_to_syslog
    do_handshake_on_connect dogstatsd_tags enable_backlog_metric enable_stdio_inheritance
    http_parser keyfile
    logconfig logconfig_dict logconfig_json logger_class on_dirty_starting paste protocol
    raw_paste_global_conf root_path spew
    ssl_context ssl_version statsd_host statsd_prefix suppress_ragged_eofs syslog
    syslog_addr syslog_facility syslog_prefix tmp_upload_dir uwsgi_allow_ips
    websocket_max_message_size
    """.split()  # noqa: SIM905 (a word list reads better than 57 quoted lines)
) - set(SPECS_BY_KEY)  # a name corral has since implemented is a setting, not a warning


@dataclass
class LoadResult:
    """What `load_settings` found: the settings, warnings to log, and what to do next."""

    settings: Settings
    warnings: list[str] = field(default_factory=list)
    action: Action = "serve"


# --- the command-line parser ----------------------------------------------------------------


class SettingsParser(argparse.ArgumentParser):
    """The generated parser. With a `source` (an environment variable), usage errors raise
    ConfigError naming that variable instead of exiting."""

    def __init__(self, *, source: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source

    def error(self, message: str) -> NoReturn:
        if self.source is None:
            super().error(message)
        raise ConfigError(f"{self.source}: {message}")


def _flag_help(spec: SettingSpec) -> str:
    text = f"{spec.short_help} [{spec.default_doc or show_value(default_value(spec))}]"
    return text.replace("%", "%%")


def fill_optional_values(argv: Sequence[str]) -> list[str]:
    """Flags whose value may be left out (`--proxy-protocol` alone means `auto`): when the next
    word is not a value the setting accepts, write the implied one in, so the word stays what
    it was (often the application spec, which a plain optional argument would swallow)."""
    words = list(argv)
    for index, word in enumerate(words):
        spec = _OPTIONAL_VALUE_FLAGS.get(word)
        if spec is None:
            continue
        following = words[index + 1] if index + 1 < len(words) else None
        try:
            accepted = following is not None and not following.startswith("-")
            accepted = accepted and spec.convert(following) is not None
        except ValueError:
            accepted = False
        if not accepted:
            words[index] = f"{word}={spec.const}"
    return words


_OPTIONAL_VALUE_FLAGS = {
    flag: spec
    for spec in SPECS
    if spec.action == "store" and spec.const is not None
    for flag in spec.flags
}


def build_parser(prog: str = "corral", source: str | None = None) -> SettingsParser:
    """The argparse parser for every setting that has flags, grouped by section."""
    parser = SettingsParser(
        source=source,
        prog=prog,
        usage=USAGE,
        description="corral: a pre-fork WSGI and ASGI server, compatible with Gunicorn.",
        epilog=EPILOG if source is None else None,
        argument_default=argparse.SUPPRESS,
        add_help=source is None,
    )
    parser.add_argument("-v", "--version", action="store_true", help="Print the version and exit.")
    groups = {section: parser.add_argument_group(section) for section in SECTIONS}
    for spec in SPECS:
        if spec.action == "positional":
            parser.add_argument(spec.name, nargs="?", metavar=spec.meta, help=_flag_help(spec))
        elif spec.flags:
            options: dict[str, Any] = {"dest": spec.name, "action": spec.action}
            if spec.action in ("store", "append"):
                options["metavar"] = spec.meta
            if spec.action == "store_const":
                options["const"] = spec.const

            groups[spec.section].add_argument(*spec.flags, help=_flag_help(spec), **options)
    return parser


# --- applying values ------------------------------------------------------------------------


def apply_value(settings: Settings, spec: SettingSpec, raw: object, origin: str) -> None:
    """Convert `raw` with the setting's converter and store it, or raise ConfigError."""
    try:
        value = spec.convert(raw)
    except ValueError as exc:
        raise ConfigError(
            f"Invalid value for {spec.key} ({origin}): {show_value(raw, quote=True)}: {exc}"
        ) from None
    setattr(settings, spec.name, value)


def _apply_env_seeds(settings: Settings, environ: Mapping[str, str]) -> None:
    for spec in SPECS:
        text = environ.get(spec.env) if spec.env else None
        if not text:
            continue
        origin = f"environment variable {spec.env}"
        try:
            raw = spec.env_convert(text) if spec.env_convert else text
            value = spec.convert(raw)
        except ValueError as exc:
            raise ConfigError(f"Invalid value for {spec.key} ({origin}): {text!r}: {exc}") from None
        setattr(settings, spec.name, value)


def _apply_args(settings: Settings, args: Mapping[str, object], where: str = "") -> None:
    for name, raw in args.items():
        spec = SPECS_BY_NAME.get(name)
        if spec is None or spec.name == "config":
            continue
        origin = "/".join(spec.flags) if spec.flags else spec.meta or spec.name
        apply_value(settings, spec, raw, origin + where)


def _env_args(environ: Mapping[str, str]) -> tuple[str, dict[str, object]]:
    """The variable holding extra arguments, and what it parses to."""
    for variable in ENV_ARGS_VARIABLES:
        if variable in environ:
            try:
                words = shlex.split(environ[variable])
            except ValueError as exc:
                raise ConfigError(f"{variable}: {exc}") from None
            parser = build_parser(source=variable)
            return variable, vars(parser.parse_args(fill_optional_values(words)))
    return "", {}


# --- the config file ------------------------------------------------------------------------


@contextlib.contextmanager
def _importable(directory: str) -> Iterator[None]:
    """Let a config file import modules next to it, as Gunicorn allows, for the duration."""
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        yield
    finally:
        if added and directory in sys.path:
            sys.path.remove(directory)


def _error_line(exc: BaseException, filename: str) -> str:
    """ "line N: ExcType: message", N being the deepest line of `filename` involved."""
    lineno = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            lineno = frame.lineno
    summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return f"line {lineno}: {summary}" if lineno else summary


def discover_config(cwd: str) -> str | None:
    """The default config file: corral.conf.py, else gunicorn.conf.py, in cwd."""
    for name in DEFAULT_CONFIG_FILES:
        path = os.path.join(cwd, name)
        if os.path.isfile(path):
            return path
    return None


def read_config(location: str, cwd: str) -> tuple[str, dict[str, object], str]:
    """Run a config file or import a config module: (resolved location, names, module name)."""
    if location.startswith("python:"):
        module_name = location.removeprefix("python:")
        with _importable(cwd):
            try:
                module = importlib.import_module(module_name)
            # The module is user code: whatever it raises is a configuration error.
            except Exception as exc:
                raise ConfigError(
                    f"Cannot import config module {module_name!r}: {_error_line(exc, '')}"
                ) from None
        return location, dict(vars(module)), module.__name__
    path = os.path.abspath(os.path.join(cwd, location.removeprefix("file:")))
    try:
        with open(path, "rb") as file:
            source = file.read()
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}") from None
    namespace: dict[str, object] = {"__file__": path, "__name__": CONFIG_MODULE_NAME}
    with _importable(os.path.dirname(path)):
        try:
            exec(compile(source, path, "exec"), namespace)
        # The file is user code: whatever it raises is a configuration error.
        except Exception as exc:
            raise ConfigError(f"Error in config file {path}, {_error_line(exc, path)}") from None
    return path, namespace, CONFIG_MODULE_NAME


def _unknown_name_warning(name: str, value: object, origin: str, module: str) -> str | None:
    """The warning for a name that is not a setting, or None when it is fine to ignore."""
    if name in GUNICORN_ONLY:
        return f"Gunicorn setting '{name}' in {origin} is not supported by corral; ignored"
    hooks = [spec.key for spec in SPECS if spec.is_hook]
    if inspect.ismodule(value) or inspect.isclass(value):
        return None
    if callable(value):
        # Helpers and imports are fine; a function of this file named almost like a hook is
        # most likely a misspelt hook.
        match = difflib.get_close_matches(name.lower(), hooks, n=1, cutoff=0.8)
        if match and getattr(value, "__module__", None) == module:
            return f"Unknown hook '{name}' in {origin}; did you mean '{match[0]}'?"
        return None
    keys = [spec.key for spec in SPECS if spec.file_settable and not spec.is_hook]
    match = difflib.get_close_matches(name.lower(), keys, n=1)
    hint = f"; did you mean '{match[0]}'?" if match else ""
    return f"Unknown setting '{name}' in {origin}{hint}"


def apply_config(
    settings: Settings, namespace: Mapping[str, object], origin: str, module: str
) -> list[str]:
    """Apply every setting a config namespace names; return warnings for the other names."""
    warnings = []
    for name, value in namespace.items():
        # Private names and CONSTANTS are the file's own helpers, never misspelt settings.
        if name.startswith("_") or name.isupper():
            continue
        spec = SPECS_BY_KEY.get(name)
        if spec is None:
            warning = _unknown_name_warning(name, value, origin, module)
            if warning:
                warnings.append(warning)
        elif not spec.file_settable:
            warnings.append(f"Setting '{name}' cannot be set in a config file ({origin}); ignored")
        else:
            apply_value(settings, spec, value, origin)
    return warnings


# --- putting it together ----------------------------------------------------------------------


def _finish(settings: Settings, cwd: str) -> None:
    """Checks that need the working directory."""
    chdir = os.path.normpath(os.path.join(cwd, settings.chdir))
    if not os.path.isdir(chdir):
        raise ConfigError(f"Invalid value for chdir: {settings.chdir!r}: no such directory")
    settings.chdir = chdir


def _action(settings: Settings) -> Action:
    if settings.print_config:
        return "print_config"
    return "check_config" if settings.check_config else "serve"


def load_settings(
    argv: Sequence[str], environ: Mapping[str, str], cwd: str | None = None
) -> LoadResult:
    """Resolve the settings from every source; see the module docstring for the precedence.

    `argv` excludes the program name. Usage errors and --help exit through argparse; a bad
    value raises ConfigError.
    """
    cwd = os.path.abspath(cwd if cwd is not None else os.getcwd())
    cli_args = vars(build_parser().parse_args(fill_optional_values(argv)))
    settings = Settings(chdir=cwd)
    if cli_args.get("version"):
        return LoadResult(settings, [], "version")
    env_variable, env_args = _env_args(environ)
    _apply_env_seeds(settings, environ)
    warnings: list[str] = []
    location = str(cli_args.get("config") or env_args.get("config") or "")
    location = location or discover_config(cwd) or ""
    if location:
        loaded, namespace, module = read_config(location, cwd)
        warnings += apply_config(settings, namespace, loaded, module)
        settings.config = loaded
    _apply_args(settings, env_args, f" in {env_variable}")
    _apply_args(settings, cli_args)
    _finish(settings, cwd)
    warnings += check_http2(settings)
    return LoadResult(settings, warnings, _action(settings))


def version_text(prog: str = "corral") -> str:
    """What --version prints."""
    return f"{prog} (version {__version__})"
