"""Converters: turn a raw setting value into the typed value a `Settings` field holds.

A raw value is whatever a source hands over: a string from the command line or an environment
variable, or any Python object from a config file. Each converter either returns the typed value
or raises `ValueError` with a short reason ("must be at least 1"); the loader in `sources.py`
wraps that reason into a `ConfigError` naming the setting, where the value came from, and the
value itself. Converters are pure: they never read the environment, the clock or the current
directory, so a value converts the same way wherever it came from. The two exceptions are the
user and group names, which must be looked up in the system databases.
"""

from __future__ import annotations

import functools
import grp
import importlib
import inspect
import ipaddress
import pwd
import re
from collections.abc import Callable
from typing import Any, Literal, cast

from corral.addresses import split_host_port

WorkerClassName = Literal["sync", "gthread", "asgi", "gevent"]
AsgiLifespan = Literal["auto", "on", "off"]
AsgiLoop = Literal["auto", "asyncio", "uvloop"]
ASGI_LIFESPANS: dict[str, AsgiLifespan] = {"auto": "auto", "on": "on", "off": "off"}
ASGI_LOOPS: dict[str, AsgiLoop] = {"auto": "auto", "asyncio": "asyncio", "uvloop": "uvloop"}
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
HeaderMapMode = Literal["drop", "refuse", "dangerous"]
ReloadEngine = Literal["auto", "poll", "inotify"]
ProxyProtocolMode = Literal["off", "v1", "v2", "auto"]
PROXY_PROTOCOL_MODES: dict[str, ProxyProtocolMode] = {
    "off": "off",
    "v1": "v1",
    "v2": "v2",
    "auto": "auto",
    # Gunicorn's setting is a boolean: true meant "expect a (v1) header".
    "true": "auto",
    "false": "off",
}
RELOAD_ENGINES: dict[str, ReloadEngine] = {"auto": "auto", "poll": "poll", "inotify": "inotify"}

# corral's worker classes under their own names and under the names Gunicorn users give them.
WORKER_CLASSES: dict[str, WorkerClassName] = {
    "sync": "sync",
    "gthread": "gthread",
    "gunicorn.workers.sync.SyncWorker": "sync",
    "gunicorn.workers.gthread.ThreadWorker": "gthread",
    "egg:gunicorn#sync": "sync",
    "egg:gunicorn#gthread": "gthread",
    "asgi": "asgi",
    "gunicorn.workers.gasgi.ASGIWorker": "asgi",
    "egg:gunicorn#asgi": "asgi",
    # What Gunicorn users put in their configs to serve ASGI apps through uvicorn's worker:
    # corral cannot run that class, and serves the app with its own asgi worker instead.
    "uvicorn.workers.UvicornWorker": "asgi",
    "uvicorn_worker.UvicornWorker": "asgi",
    "gevent": "gevent",
    "gunicorn.workers.ggevent.GeventWorker": "gevent",
    "egg:gunicorn#gevent": "gevent",
    # Gunicorn's gevent_wsgi and gevent_pywsgi serve through gevent's own pywsgi server;
    # corral's gevent worker serves those names with its own parser and adapter.
    "gevent_wsgi": "gevent",
    "gevent_pywsgi": "gevent",
    "gunicorn.workers.ggevent.GeventPyWSGIWorker": "gevent",
    "egg:gunicorn#gevent_wsgi": "gevent",
    "egg:gunicorn#gevent_pywsgi": "gevent",
}
LOG_LEVELS: dict[str, LogLevel] = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "error": "error",
    "critical": "critical",
}
HEADER_MAP_MODES: dict[str, HeaderMapMode] = {
    "drop": "drop",
    "refuse": "refuse",
    "dangerous": "dangerous",
}
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "off"})

MAX_REQUEST_LINE = 8190
MAX_HEADER_FIELDS = 32768

# A DNS name (RFC 1123 labels, underscores tolerated as resolvers do) or a dotted IPv4 address.
HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_-]+)*\.?")
ENV_NAME = re.compile(r"[^=\s][^=]*")


# --- scalars -------------------------------------------------------------------------------


def to_str(value: object) -> str:
    """A string, stripped of surrounding whitespace."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value.strip()


def optional_str(value: object) -> str | None:
    """A string, or None."""
    return None if value is None else to_str(value)


def to_int(value: object) -> int:
    """An integer from an int or a decimal string; booleans are refused as mistakes."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise ValueError("not an integer") from None
    raise ValueError("must be an integer")


def int_between(low: int, high: int | None = None) -> Callable[[object], int]:
    """A converter for integers in [low, high] (no upper bound when high is None)."""

    def convert(value: object) -> int:
        number = to_int(value)
        if number < low:
            raise ValueError(f"must be at least {low}")
        if high is not None and number > high:
            raise ValueError(f"must be at most {high}")
        return number

    convert.__name__ = f"int_between_{low}_{high}"
    return convert


positive_int = int_between(1)
non_negative_int = int_between(0)
request_line_limit = int_between(0, MAX_REQUEST_LINE)
header_fields_limit = int_between(0, MAX_HEADER_FIELDS)


def to_bool(value: object) -> bool:
    """A boolean, or one of the words true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError("must be a boolean (true or false)")


def optional_bool(value: object) -> bool | None:
    """A boolean, or None for "not set"."""
    return None if value is None else to_bool(value)


def umask(value: object) -> int:
    """A file mode mask: an int, or a string read the way Gunicorn reads it ("022" is octal)."""
    if isinstance(value, str):
        text = value.strip()
        # A leading zero followed by a digit means octal, as in a shell's umask.
        if re.match(r"0\d", text):
            text = "0o" + text[1:]
        try:
            value = int(text, 0)
        except ValueError:
            raise ValueError("not an integer (use 022, 0o22 or 18)") from None
    mask = to_int(value)
    if not 0 <= mask <= 0o777:
        raise ValueError("must be between 0 and 0o777")
    return mask


def _choice(table: dict[str, Any], value: object, what: str) -> Any:
    if isinstance(value, str) and value.strip().lower() in table:
        return table[value.strip().lower()]
    raise ValueError(f"{what} must be one of: {', '.join(sorted(set(table.values())))}")


class WorkerClassChoice(str):
    """A worker class as corral runs it (equal to 'sync', 'gthread', 'asgi' or 'gevent'),
    remembering the other name it was chosen by (`gunicorn.workers.gasgi.ASGIWorker`,
    `uvicorn.workers.UvicornWorker`, `gevent_wsgi`), so that the master can say which worker
    serves that name.
    """

    requested = ""


def worker_class(value: object) -> WorkerClassName:
    """`sync`, `gthread`, `asgi` or `gevent`, also under Gunicorn's dotted and egg spellings
    (and uvicorn's worker class names, served by `asgi`, and Gunicorn's `gevent_wsgi` and
    `gevent_pywsgi`, served by `gevent`). Any other name is refused: corral runs only its own
    workers, never a class loaded from a module."""
    name = value.strip() if isinstance(value, str) else ""
    kind = WORKER_CLASSES.get(name)
    if kind is None:
        own = [key for key, target in WORKER_CLASSES.items() if key == target]
        dotted = [key for key in WORKER_CLASSES if "." in key]
        raise ValueError(
            f"unknown worker class; corral has {', '.join(own)} (also named {', '.join(dotted)})"
            " and cannot load worker classes from other modules"
        )
    if name == kind:
        return kind
    choice = WorkerClassChoice(kind)
    choice.requested = name
    return cast(WorkerClassName, choice)


def requested_worker_class(value: str) -> str:
    """The other name a worker class was chosen by (see `WorkerClassChoice`), or ""."""
    return value.requested if isinstance(value, WorkerClassChoice) else ""


def asgi_lifespan(value: object) -> AsgiLifespan:
    """auto, on or off (any case)."""
    mode: AsgiLifespan = _choice(ASGI_LIFESPANS, value, "the mode")
    return mode


def asgi_loop(value: object) -> AsgiLoop:
    """auto, asyncio or uvloop (any case)."""
    loop: AsgiLoop = _choice(ASGI_LOOPS, value, "the loop")
    return loop


def log_level(value: object) -> LogLevel:
    """One of debug, info, warning, error, critical (any case)."""
    level: LogLevel = _choice(LOG_LEVELS, value, "the level")
    return level


def header_map(value: object) -> HeaderMapMode:
    """One of drop, refuse, dangerous (any case)."""
    mode: HeaderMapMode = _choice(HEADER_MAP_MODES, value, "the mode")
    return mode


def proxy_protocol(value: object) -> ProxyProtocolMode:
    """off, v1, v2 or auto; Gunicorn's True/False mean auto/off."""
    if isinstance(value, bool):
        return "auto" if value else "off"
    mode: ProxyProtocolMode = _choice(PROXY_PROTOCOL_MODES, value, "the mode")
    return mode


def reload_engine(value: object) -> ReloadEngine:
    """auto, poll or inotify (any case)."""
    engine: ReloadEngine = _choice(RELOAD_ENGINES, value, "the engine")
    return engine


# --- users and groups ----------------------------------------------------------------------


def user_id(value: object) -> int:
    """A numeric uid, or a user name looked up in the password database."""
    if isinstance(value, int) and not isinstance(value, bool):
        return non_negative_int(value)
    name = to_str(value)
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise ValueError("no such user") from None


def group_id(value: object) -> int:
    """A numeric gid, or a group name looked up in the group database."""
    if isinstance(value, int) and not isinstance(value, bool):
        return non_negative_int(value)
    name = to_str(value)
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ValueError("no such group") from None


# --- lists and dicts -----------------------------------------------------------------------


def _strings(value: object, split_commas: bool) -> list[str]:
    """Accept a string (comma-separated when split_commas) or a list/tuple of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",") if split_commas else [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("must be a string or a list of strings")
    if not all(isinstance(item, str) for item in items):
        raise ValueError("must be a string or a list of strings")
    return [item.strip() for item in items if item.strip()]


def str_list(value: object) -> list[str]:
    """A list of strings; a single string is one item (Gunicorn's legacy spelling)."""
    return _strings(value, split_commas=False)


def comma_list(value: object) -> list[str]:
    """A list of strings, from a comma-separated string or a list."""
    return _strings(value, split_commas=True)


def forwarded_ips(value: object) -> list[str]:
    """Trusted proxy addresses: `*`, IP addresses and networks (host bits must be zero)."""
    items = comma_list(value)
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or network ({exc})") from None
    return items


def header_names(value: object) -> list[str]:
    """Upper-case header field names, from a comma-separated string or a list."""
    return [item.upper() for item in comma_list(value)]


def env_list(value: object) -> list[str]:
    """KEY=VALUE strings, each with a non-empty KEY."""
    items = str_list(value)
    for item in items:
        name, sep, _ = item.partition("=")
        if not sep or not ENV_NAME.fullmatch(name):
            raise ValueError(f"{item!r} is not in KEY=VALUE form")
    return items


def str_dict(value: object) -> dict[str, str]:
    """A dict of strings to strings (secure_scheme_headers)."""
    if not isinstance(value, dict):
        raise ValueError("must be a dict of header name to value")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("keys and values must be strings")
    return dict(value)


# --- bind addresses ------------------------------------------------------------------------


def bind_address(address: str) -> str:
    """Validate one bind address and return its canonical spelling.

    Accepted: HOST, HOST:PORT, [IPv6], [IPv6]:PORT, unix:PATH, fd://N. Gunicorn's spellings
    unix://PATH and tcp://HOST:PORT are accepted and rewritten to the forms above.
    """
    text = address.strip()
    if text.startswith("unix:"):
        path = text[7:] if text.startswith("unix://") else text[5:]
        if not path:
            raise ValueError("unix: needs a socket path")
        return "unix:" + path
    if text.startswith("fd://"):
        if not text[5:].isdigit():
            raise ValueError("fd:// needs a file descriptor number")
        return "fd://" + str(int(text[5:]))
    text = text.removeprefix("tcp://")
    if not text:
        raise ValueError("the address is empty")
    host, _ = split_host_port(text)
    if host and not text.startswith("[") and not HOSTNAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or IP address")
    return text


def bind_list(value: object) -> list[str]:
    """A non-empty list of bind addresses, each validated by `bind_address`."""
    items = str_list(value)
    if not items:
        raise ValueError("at least one address is needed")
    return [bind_address(item) for item in items]


# --- environment seeds ---------------------------------------------------------------------


def bind_from_port(port: str) -> list[str]:
    """The PORT environment variable means: listen on every IPv4 interface at that port."""
    return [f"0.0.0.0:{port.strip()}"]


def sendfile_from_env(value: str) -> bool:
    """SENDFILE=0/false/no/off disables sendfile; 1/true/yes/on enables it."""
    return to_bool(value)


# --- hooks ---------------------------------------------------------------------------------


def _accepts(func: Callable[..., object], count: int) -> bool:
    """Whether func can be called with `count` positional arguments."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return True  # builtins without a signature: trust the user
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def _resolve_callable(value: object) -> Callable[..., object]:
    """A callable, or a "package.module.function" string naming one (as Gunicorn allows)."""
    if isinstance(value, str):
        module_name, dot, attr = value.strip().rpartition(".")
        if not dot:
            raise ValueError("a string must name a callable as module.function")
        try:
            value = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import it: {exc}") from None
    if not callable(value):
        raise ValueError("must be callable")
    func: Callable[..., object] = value
    return func


def hook(params: tuple[str, ...]) -> Callable[[object], Callable[..., object]]:
    """A converter for a server hook called with exactly these positional parameters."""

    def convert(value: object) -> Callable[..., object]:
        func = _resolve_callable(value)
        if not _accepts(func, len(params)):
            count = f"{len(params)} positional argument{'s' if len(params) != 1 else ''}"
            raise ValueError(f"must accept {count} ({', '.join(params)})")
        return func

    return convert


def post_request_hook(value: object) -> Callable[..., object]:
    """post_request(worker, req, environ, resp); like Gunicorn, 2 or 3 parameters also do."""
    func = _resolve_callable(value)
    if _accepts(func, 4):
        return func
    if _accepts(func, 3):

        @functools.wraps(func)
        def call_with_environ(worker: object, req: object, environ: object, _: object) -> object:
            return func(worker, req, environ)

        return call_with_environ
    if _accepts(func, 2):

        @functools.wraps(func)
        def call_with_req(worker: object, req: object, _: object, __: object) -> object:
            return func(worker, req)

        return call_with_req
    raise ValueError("must accept 4 positional arguments (worker, req, environ, resp)")
