"""Every corral setting, declared once as a typed field of the `Settings` dataclass.

Each field carries a `SettingSpec` in its metadata: flags, section, converter, help, and the
environment variable that seeds it, if any. The command-line parser, the config-file keys, the
environment seeds and docs/settings.md are all generated from these declarations
(`sources.py`, `reference.py`), so a setting is added by adding one field here and nowhere else.

Names, flags, defaults and meanings follow Gunicorn's so that a Gunicorn command line or config
file works unchanged. This module only declares: it never reads argv, the environment or files.
"""

# Every field default is a call to `setting` or `server_hook`, which return `dataclasses.field`
# objects just as `field` does, so RUF009 (function call in a dataclass default) does not apply.
# ruff: noqa: RUF009

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from corral.config import converters as conv
from corral.config import http2 as h2_conv
from corral.config import log_converters as log_conv
from corral.config import metrics_converters as metrics_conv
from corral.config import protocols as protocol_conv
from corral.config.converters import (
    HeaderMapMode,
    LogLevel,
    ProxyProtocolMode,
    ReloadEngine,
    WorkerClassName,
)
from corral.control.protocol import default_socket_path

T = TypeVar("T")

# Hook types. The server, worker and request objects belong to other modules; hooks receive them
# as they are, so the parameters are typed loosely.
ServerHook = Callable[[Any], object]
ServerWorkerHook = Callable[[Any, Any], object]
WorkerHook = Callable[[Any], object]
PreRequestHook = Callable[[Any, Any], object]
PostRequestHook = Callable[[Any, Any, Any, Any], object]
NworkersChangedHook = Callable[[Any, int, int | None], object]
# ssl_context(config, default_factory): the factory returns an ssl.SSLContext and so must the
# hook; corral.workers.tls checks that at run time, so this module need not import ssl.
SSLContextHook = Callable[[Any, Callable[[], Any]], object]
Hook = Callable[..., object]

DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
SECTIONS = (
    "Config File",
    "Server Socket",
    "Worker Processes",
    "Security",
    "SSL",
    "HTTP/2",
    "Debugging",
    "Server Mechanics",
    "Logging",
    "Metrics",
    "Control",
    "Process Naming",
    "Server Hooks",
)


@dataclass(frozen=True)
class SettingSpec:
    """Everything the generators need to know about one setting, besides its type."""

    name: str  # the dataclass field name
    key: str  # the config-file name (Gunicorn's)
    flags: tuple[str, ...]
    section: str
    help: str
    convert: Callable[[object], object]
    meta: str | None = None
    action: str = "store"  # argparse action; "positional" for APP_MODULE, "none" without flags
    const: object = None
    env: str | None = None  # an environment variable that seeds this setting
    env_convert: Callable[[str], object] | None = None  # env string -> raw value for convert
    default_doc: str | None = None  # how docs show a default that depends on the machine
    type_doc: str = ""
    file_settable: bool = True
    hook_params: tuple[str, ...] | None = None

    @property
    def is_hook(self) -> bool:
        return self.hook_params is not None

    @property
    def short_help(self) -> str:
        """The first paragraph of the help, on one line, for --help."""
        return " ".join(self.help.split("\n\n")[0].split())


def setting(
    default: T,
    *flags: str,
    section: str,
    help: str,
    convert: Callable[[object], T],
    meta: str | None = None,
    action: str | None = None,
    const: object = None,
    env: str | None = None,
    env_convert: Callable[[str], object] | None = None,
    key: str = "",
    default_doc: str | None = None,
    factory: Callable[[], T] | None = None,
    type_doc: str = "",
    file_settable: bool = True,
) -> T:
    """Declare one setting: a dataclass field whose metadata is its `SettingSpec`."""
    if action is None:
        action = "store_true" if isinstance(default, bool) else "store"
    spec = SettingSpec(
        name="",
        key=key,
        flags=flags,
        section=section,
        help=help,
        convert=convert,
        meta=meta,
        action=action if flags or action == "positional" else "none",
        const=const,
        env=env,
        env_convert=env_convert,
        default_doc=default_doc,
        type_doc=type_doc,
        file_settable=file_settable,
    )
    metadata = {"corral": spec}
    if factory is None and isinstance(default, (list, dict)):
        factory = lambda: copy.deepcopy(default)  # noqa: E731
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def server_hook(
    default: Hook, *params: str, help: str, convert: Callable[[object], Hook] | None = None
) -> Any:
    """Declare a hook: config-file only, called with `params`, a no-op unless set.

    Returns Any, as `dataclasses.field` does, so that the field's annotation gives the type.
    """
    spec = SettingSpec(
        name="",
        key="",
        flags=(),
        section="Server Hooks",
        help=help,
        convert=convert or conv.hook(params),
        action="none",
        default_doc="a function that does nothing",
        type_doc=f"callable ({', '.join(params)})",
        hook_params=params,
    )
    return field(default=default, metadata={"corral": spec})


# --- default hooks: Gunicorn's signatures, doing nothing -------------------------------------


def on_starting(server: Any) -> None:
    """Default on_starting hook: does nothing."""


def on_reload(server: Any) -> None:
    """Default on_reload hook: does nothing."""


def when_ready(server: Any) -> None:
    """Default when_ready hook: does nothing."""


def pre_fork(server: Any, worker: Any) -> None:
    """Default pre_fork hook: does nothing."""


def post_fork(server: Any, worker: Any) -> None:
    """Default post_fork hook: does nothing."""


def post_worker_init(worker: Any) -> None:
    """Default post_worker_init hook: does nothing."""


def worker_int(worker: Any) -> None:
    """Default worker_int hook: does nothing."""


def worker_abort(worker: Any) -> None:
    """Default worker_abort hook: does nothing."""


def pre_exec(server: Any) -> None:
    """Default pre_exec hook: does nothing."""


def pre_request(worker: Any, req: Any) -> None:
    """Default pre_request hook: does nothing."""


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """Default post_request hook: does nothing."""


def child_exit(server: Any, worker: Any) -> None:
    """Default child_exit hook: does nothing."""


def worker_exit(server: Any, worker: Any) -> None:
    """Default worker_exit hook: does nothing."""


def nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    """Default nworkers_changed hook: does nothing."""


def on_exit(server: Any) -> None:
    """Default on_exit hook: does nothing."""


def ssl_context(config: Any, default_factory: Callable[[], Any]) -> Any:
    """Default ssl_context hook: the context corral builds from the SSL settings."""
    return default_factory()


_CONFIG = "Config File"
_SOCKET = "Server Socket"
_WORKERS = "Worker Processes"
_SECURITY = "Security"
_SSL = "SSL"
_HTTP2 = "HTTP/2"
_DEBUG = "Debugging"
_MECHANICS = "Server Mechanics"
_LOGGING = "Logging"
_METRICS = "Metrics"
_NAMING = "Process Naming"
_CONTROL = "Control"


@dataclass
class Settings:
    """The resolved configuration. Fields are in the order the reference lists them."""

    # --- Config File ---------------------------------------------------------------------------
    config: str | None = setting(
        None,
        "-c",
        "--config",
        section=_CONFIG,
        convert=conv.optional_str,
        meta="CONFIG",
        file_settable=False,
        default_doc="None (look for ./corral.conf.py, then ./gunicorn.conf.py)",
        help="""
The configuration file to load: a path, `file:PATH`, or `python:MODULE` to import a module.

When it is not given, corral loads `corral.conf.py` from the current directory if that file
exists, otherwise `gunicorn.conf.py` if that one exists, so that an existing Gunicorn config
file keeps working. The file is ordinary Python; each top-level name that is a setting's
config-file name sets that setting, and each function named after a server hook installs it.
After loading, this field holds the file (or `python:MODULE`) actually loaded, if any.""",
    )
    app_spec: str | None = setting(
        None,
        section=_CONFIG,
        convert=conv.optional_str,
        meta="APP_MODULE",
        key="wsgi_app",
        action="positional",
        help="""
The WSGI application to serve, written `MODULE:VARIABLE`, for example `myproject.wsgi:app`.

On the command line it is the positional APP_MODULE argument; in a config file it is called
`wsgi_app`. The command line wins when both are given.""",
    )

    # --- Server Socket -------------------------------------------------------------------------
    bind: list[str] = setting(
        ["127.0.0.1:8000"],
        "-b",
        "--bind",
        section=_SOCKET,
        convert=conv.bind_list,
        meta="ADDRESS",
        action="append",
        env="PORT",
        env_convert=conv.bind_from_port,
        help="""
An address to listen on; give the flag several times to listen on several addresses.

Accepted forms: `HOST`, `HOST:PORT`, `[IPv6]`, `[IPv6]:PORT`, `unix:PATH`, and `fd://N` for
a socket that is already open as file descriptor N (handed over by a supervisor). Without a
port, port 8000 is used. Gunicorn's `unix://PATH` and `tcp://HOST:PORT` are read as
`unix:PATH` and `HOST:PORT`. When the `PORT` environment variable is set, the default becomes
`0.0.0.0:$PORT`.""",
    )
    backlog: int = setting(
        2048,
        "--backlog",
        section=_SOCKET,
        convert=conv.positive_int,
        meta="INT",
        help="""
How many connections the kernel may queue on each listening socket while they wait to be
accepted.

The kernel silently caps the value at its own limit (net.core.somaxconn on Linux).""",
    )

    # --- Worker Processes ----------------------------------------------------------------------
    workers: int = setting(
        1,
        "-w",
        "--workers",
        section=_WORKERS,
        convert=conv.positive_int,
        meta="INT",
        env="WEB_CONCURRENCY",
        help="""
How many worker processes to fork for handling requests.

A sync worker serves one request at a time, so a usual starting point is two to four workers
per CPU core, adjusted by measuring. When the `WEB_CONCURRENCY` environment variable is set,
it replaces the default.""",
    )
    worker_class: WorkerClassName = setting(
        "sync",
        "-k",
        "--worker-class",
        section=_WORKERS,
        convert=conv.worker_class,
        meta="STRING",
        type_doc="'sync' | 'gthread' | 'gevent' | 'asgi'",
        help="""
The kind of worker process: `sync`, `gthread` or `gevent` for WSGI applications, `asgi` for
ASGI ones.

A `sync` worker handles one connection at a time. A `gthread` worker runs a pool of `threads`
threads and also keeps idle keep-alive connections open. A `gevent` worker (the `corral[gevent]`
extra) serves each connection in a greenlet, with the standard library patched. An `asgi` worker
runs an asyncio event loop. Gunicorn's spellings (`gunicorn.workers.sync.SyncWorker`,
`gunicorn.workers.gthread.ThreadWorker`, `gunicorn.workers.ggevent.GeventWorker`,
`gunicorn.workers.gasgi.ASGIWorker`, `gevent_wsgi`, `gevent_pywsgi`) are accepted as well,
and uvicorn's worker classes (`uvicorn.workers.UvicornWorker`, `uvicorn_worker.UvicornWorker`)
select `asgi`; the master logs which worker serves such a name.
Any other name is refused at startup: corral does not load worker classes from modules. As with
Gunicorn, choosing `sync` together with more than one thread runs the `gthread` worker.""",
    )
    threads: int = setting(
        1,
        "--threads",
        section=_WORKERS,
        convert=conv.positive_int,
        meta="INT",
        help="""
How many threads each gthread worker uses to run the application.

A value above 1 with the `sync` worker class selects the `gthread` worker instead.""",
    )
    worker_connections: int = setting(
        1000,
        "--worker-connections",
        section=_WORKERS,
        convert=conv.positive_int,
        meta="INT",
        help="""
The most client connections a gthread worker keeps open at the same time.

Idle keep-alive connections count. Further clients wait in the listen backlog.""",
    )
    max_requests: int = setting(
        0,
        "--max-requests",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
Restart a worker, gracefully, once it has handled this many requests.

A simple defence against memory that the application leaks. 0 turns it off.""",
    )
    max_requests_jitter: int = setting(
        0,
        "--max-requests-jitter",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
An upper bound for a random number added to max_requests for each worker.

The randomness keeps workers from all restarting at the same moment.""",
    )
    timeout: int = setting(
        30,
        "-t",
        "--timeout",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
Kill and replace a worker that has shown no sign of life for this many seconds.

For a sync worker this also bounds how long a single request may run. 0 disables the check.""",
    )
    graceful_timeout: int = setting(
        30,
        "--graceful-timeout",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
Seconds a worker may take to finish its requests after a graceful stop or restart.

Workers still busy when this runs out are killed.""",
    )
    keepalive: int = setting(
        2,
        "--keep-alive",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
Seconds an idle keep-alive connection may wait for its next request before it is closed.

0 turns keep-alive off: every connection is closed after one response.""",
    )
    asgi_loop: conv.AsgiLoop = setting(
        "auto",
        "--asgi-loop",
        section=_WORKERS,
        convert=conv.asgi_loop,
        meta="STRING",
        type_doc="'auto' | 'asyncio' | 'uvloop'",
        help="""
The event loop of `asgi` workers: `asyncio` (the standard library's), `uvloop` (must be
installed), or `auto`, which takes uvloop when it is installed.""",
    )
    asgi_lifespan: conv.AsgiLifespan = setting(
        "auto",
        "--asgi-lifespan",
        section=_WORKERS,
        convert=conv.asgi_lifespan,
        meta="STRING",
        type_doc="'auto' | 'on' | 'off'",
        help="""
The ASGI lifespan protocol in `asgi` workers: `on` runs it (an application that does not
support it stops the worker), `off` never does, `auto` runs it and goes on without it when the
application raises before receiving its first message.

An application that sends `lifespan.startup.failed` stops the server in `auto` and `on`.""",
    )
    asgi_disconnect_grace_period: int = setting(
        3,
        "--asgi-disconnect-grace-period",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
Seconds an ASGI application has, once its client has gone (it receives `http.disconnect`), to
finish the request before the worker cancels it. 0 cancels at once.""",
    )
    root_path: str = setting(
        "",
        "--root-path",
        section=_WORKERS,
        convert=conv.to_str,
        meta="STRING",
        help="""
The `root_path` of every ASGI scope: the path prefix under which the application is mounted
(behind a proxy that strips it).""",
    )
    websocket_max_message_size: int = setting(
        16 * 1024 * 1024,
        "--websocket-max-message-size",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
The largest WebSocket message, in bytes, the `asgi` worker accepts (ASGI hands whole messages to
the application, so each is held in memory until its last frame). A larger one closes the
connection with 1009 (message too big), detected from the frame header before its payload is
read. 0 removes the limit.""",
    )
    websocket_max_queue: int = setting(
        32,
        "--websocket-max-queue",
        section=_WORKERS,
        convert=conv.positive_int,
        meta="INT",
        help="""
WebSocket messages the `asgi` worker holds for an application that has not received them yet.
When that many are waiting, the worker stops reading the socket until the application catches
up, so a fast sender cannot make it buffer without bound.""",
    )
    websocket_ping_interval: int = setting(
        20,
        "--websocket-ping-interval",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
Seconds between the Ping frames the `asgi` worker sends on an open WebSocket that has been
quiet for that long. 0 sends none.""",
    )
    websocket_ping_timeout: int = setting(
        20,
        "--websocket-ping-timeout",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
Seconds a client has to answer a server Ping (with a Pong, or any frame) before the connection
is closed with 1011. 0 waits for ever.""",
    )
    websocket_per_message_deflate: bool = setting(
        True,
        "--no-websocket-per-message-deflate",
        section=_WORKERS,
        convert=conv.to_bool,
        action="store_const",
        const=False,
        help="""
Offer the permessage-deflate extension (RFC 7692) to WebSocket clients that ask for it.

Its memory per connection is bounded: windows of at most 2**15 bytes each way plus zlib's own
state (about 300 KiB per connection in the worst case), and an inflated message is held to
`websocket_max_message_size`. `--no-websocket-per-message-deflate` (or `False` in a config
file) turns it off.""",
    )
    asgi_startup_timeout: int = setting(
        60,
        "--asgi-startup-timeout",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
Seconds an ASGI application has to complete its lifespan startup. One that takes longer stops
the worker as a failed startup would. 0 waits for ever.""",
    )
    asgi_shutdown_timeout: int = setting(
        30,
        "--asgi-shutdown-timeout",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
Seconds an ASGI application has to complete its lifespan shutdown. The worker then exits
anyway. It is also bounded by what `graceful_timeout` leaves.""",
    )
    limit_request_body: int = setting(
        0,
        "--limit-request-body",
        section=_SECURITY,
        convert=conv.non_negative_int,
        meta="BYTES",
        help="""
The largest request body, in bytes, any worker accepts. A larger one is answered 413 (Content
Too Large) and the connection is closed: from its Content-Length before the application is
called (and without a 100 Continue), or as soon as a chunked body passes the limit. 0 (the
default) sets no limit. Gunicorn has no such setting.""",
    )
    request_body_buffer: int = setting(
        64 * 1024 * 1024,
        "--request-body-buffer",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="BYTES",
        help="""
Request bodies up to this many bytes are received by the worker before the application is
called, so a slow uploader never holds a thread or a sync worker.

Above it (known from Content-Length, or reached by a chunked body) the application reads the rest
from the connection as it goes, as Gunicorn does: a slow client then holds the thread while it
reads. 0 turns buffering off, for applications that stream large uploads.""",
    )
    request_body_memory: int = setting(
        1024 * 1024,
        "--request-body-memory",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="BYTES",
        help="""
A buffered request body is held in memory up to this many bytes, and spooled to an unnamed
temporary file above it.""",
    )
    request_body_timeout: int = setting(
        300,
        "--request-body-timeout",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
Seconds a client may take to send a whole buffered request body, however steadily it sends.

A client that sends nothing for `timeout` seconds is cut off sooner. Answered with 408.
0 removes the total limit.""",
    )
    response_write_timeout: int = setting(
        3600,
        "--response-write-timeout",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
Seconds a client may take to receive a response that does not fit the socket's buffers,
however steadily it reads; then the connection is closed.

A client that reads nothing for `timeout` seconds is cut off sooner. 0 removes the total
limit.""",
    )
    max_worker_memory: int = setting(
        0,
        "--max-worker-memory",
        section=_WORKERS,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
New in corral, not a Gunicorn setting: restart a worker, gracefully, once its resident
memory exceeds this many MiB.

0 turns the check off.""",
    )

    # --- Security ------------------------------------------------------------------------------
    limit_request_line: int = setting(
        4094,
        "--limit-request-line",
        section=_SECURITY,
        convert=conv.request_line_limit,
        meta="INT",
        help="""
The longest request line accepted, in bytes: method, target and HTTP version together, without
the line's CRLF (counted as Gunicorn counts it).

Longer request lines are answered with 414. The value goes from 0 to 8190; 0 lifts the limit
as in Gunicorn, up to a hard bound of 1 MiB. It bounds, in practice, the length of URLs.""",
    )
    limit_request_fields: int = setting(
        100,
        "--limit-request-fields",
        section=_SECURITY,
        convert=conv.header_fields_limit,
        meta="INT",
        help="""
The most header fields one request may carry.

Requests with more are answered with 431. The value may not exceed 32768.""",
    )
    limit_request_field_size: int = setting(
        8190,
        "--limit-request-field_size",
        "--limit-request-field-size",
        section=_SECURITY,
        convert=conv.non_negative_int,
        meta="INT",
        help="""
The largest header field line, in bytes, counted as Gunicorn counts it: name, colon, value and
CRLF (a folded field: all its lines with their CRLFs).

Larger fields are answered with 431. 0 means 8190, as in Gunicorn 27's code; values above
65536 mean 65536. Gunicorn spells the flag with an underscore; both spellings are accepted.""",
    )

    # --- SSL -----------------------------------------------------------------------------------
    certfile: str | None = setting(
        None,
        "--certfile",
        section=_SSL,
        convert=conv.optional_str,
        meta="FILE",
        help="""
The server's certificate in PEM form, followed by any intermediate certificates. Setting it
turns on TLS: every listener then speaks HTTPS.

A relative path is taken from `chdir`. The file is read by each worker as it starts, so a HUP,
which starts new workers, picks up a renewed certificate. See docs/tls.md.""",
    )
    keyfile: str | None = setting(
        None,
        "--keyfile",
        section=_SSL,
        convert=conv.optional_str,
        meta="FILE",
        help="""
The private key of the certificate in certfile, in PEM form, without a passphrase.

When unset, the key is read from certfile itself.""",
    )
    ca_certs: str | None = setting(
        None,
        "--ca-certs",
        section=_SSL,
        convert=conv.optional_str,
        meta="FILE",
        help="""
The certificate authorities, in one PEM file, that client certificates are checked against.

Only used when cert_reqs asks clients for a certificate.""",
    )
    cert_reqs: int = setting(
        0,
        "--cert-reqs",
        section=_SSL,
        convert=conv.int_between(0, 2),
        meta="INT",
        help="""
Whether clients must present a certificate: 0 never asks for one (ssl.CERT_NONE), 1 asks and
checks one if it is sent (ssl.CERT_OPTIONAL), 2 refuses clients without a valid one
(ssl.CERT_REQUIRED).""",
    )
    ciphers: str | None = setting(
        None,
        "--ciphers",
        section=_SSL,
        convert=conv.optional_str,
        meta="CIPHERS",
        help="""
The TLS 1.2 cipher suites to allow, as an OpenSSL cipher list such as
`ECDHE+AESGCM:ECDHE+CHACHA20`.

None keeps Python's defaults. TLS 1.3 suites are not affected by this list.""",
    )
    do_handshake_on_connect: bool = setting(
        False,
        "--do-handshake-on-connect",
        section=_SSL,
        convert=conv.to_bool,
        help="""
Accepted so that Gunicorn command lines and config files keep working; it changes nothing.

In Gunicorn it chooses whether the TLS handshake runs as soon as a connection is accepted.
corral's workers always run the handshake in their event loop, a step each time the client
sends something, starting right after the accept; no worker ever waits for a handshake.""",
    )
    suppress_ragged_eofs: bool = setting(
        True,
        "--suppress-ragged-eofs",
        section=_SSL,
        convert=conv.to_bool,
        help="""
Treat a client that closes the connection without a TLS close_notify alert as having simply
reached the end of its stream, rather than as an error.

Most clients close this way. When False, such a close in the middle of a request body is
reported to the application as a lost connection. As in Gunicorn, the flag can only turn it
on; set `suppress_ragged_eofs = False` in a config file to turn it off.""",
    )

    # --- HTTP/2 --------------------------------------------------------------------------------
    http_protocols: list[h2_conv.HttpProtocol] = setting(
        ["h1"],
        "--http-protocols",
        section=_HTTP2,
        convert=h2_conv.http_protocols,
        meta="STRING",
        type_doc="list of 'h1' | 'h2'",
        help="""
The HTTP versions to serve, most preferred first: `h1` (HTTP/1.1), `h2` (HTTP/2), or both, as
in `--http-protocols h2,h1`.

The default, `h1`, serves HTTP/1.1 only, as before. On TLS listeners the list becomes the ALPN
protocols offered in the handshake (`h1` is offered as `http/1.1`), and the client picks one; a
client that picks none is served HTTP/1.1. Without TLS, HTTP/2 is served only as
http2_cleartext allows. In a config file a list such as `["h2", "h1"]` is accepted too; an
unknown name or a name given twice is refused. See docs/http2.md.

`h2` needs the optional `h2` library (`pip install corral[http2]`) and the `gthread` or `asgi`
worker: the server refuses to start otherwise, since the `sync` worker handles one request at a
time and cannot multiplex streams.""",
    )
    http2_cleartext: h2_conv.Http2Cleartext = setting(
        "off",
        "--http2-cleartext",
        section=_HTTP2,
        convert=h2_conv.http2_cleartext,
        meta="STRING",
        type_doc="'off' | 'prior-knowledge' | 'upgrade' | 'both'",
        help="""
Whether to serve HTTP/2 without TLS (h2c), and how a connection gets there: `off`,
`prior-knowledge` (the client opens with the HTTP/2 connection preface, RFC 9113 section 3.3),
`upgrade` (an HTTP/1.1 request with `Upgrade: h2c`), or `both`.

h2c is accepted only from peers whose address is in forwarded_allow_ips, as in Gunicorn:
every other peer is served HTTP/1.1 as if this were `off`. It is meant for a trusted proxy
or load balancer that ends TLS and speaks HTTP/2 to corral; do not offer it to the internet.
With TLS (certfile) it has no effect: every listener speaks TLS and ALPN chooses HTTP/2. It
needs `h2` in http_protocols. In a config file, `True` means `prior-knowledge` and `False`
means `off`.""",
    )
    http2_max_concurrent_streams: int = setting(
        100,
        "--http2-max-concurrent-streams",
        section=_HTTP2,
        convert=h2_conv.http2_max_concurrent_streams,
        meta="INT",
        help="""
The most streams (requests in progress) one HTTP/2 connection may have open at once, announced
to the client as SETTINGS_MAX_CONCURRENT_STREAMS. At least 1.""",
    )
    http2_initial_window_size: int = setting(
        65535,
        "--http2-initial-window-size",
        section=_HTTP2,
        convert=h2_conv.http2_window_size,
        meta="INT",
        help="""
How many bytes of a request body a client may send on each stream before corral grants more,
announced as SETTINGS_INITIAL_WINDOW_SIZE: from 0 to 2147483647 (2^31-1).

A larger window speeds up large uploads over distant links; it is also how much body data a
stream may have waiting for the application.""",
    )
    http2_max_frame_size: int = setting(
        16384,
        "--http2-max-frame-size",
        section=_HTTP2,
        convert=h2_conv.http2_frame_size,
        meta="INT",
        help="""
The largest frame payload, in bytes, corral accepts from a client, announced as
SETTINGS_MAX_FRAME_SIZE: from 16384 (the protocol's minimum and default) to 16777215.""",
    )
    http2_max_header_list_size: int = setting(
        65536,
        "--http2-max-header-list-size",
        section=_HTTP2,
        convert=h2_conv.http2_header_list_size,
        meta="INT",
        help="""
The largest header list, in bytes as RFC 9113 counts it (each field's name and value plus 32),
that one request may carry once HPACK has decompressed it; announced as
SETTINGS_MAX_HEADER_LIST_SIZE. It bounds the decoded size: with HPACK a few bytes on the wire
can stand for a large header list.

Unlike Gunicorn, where 0 removes the limit, corral never runs without one: 0, and any value
above 1048576 (1 MiB), mean 1 MiB.""",
    )

    # --- Debugging -----------------------------------------------------------------------------
    reload: bool = setting(
        False,
        "--reload",
        section=_DEBUG,
        convert=conv.to_bool,
        help="""
Restart the workers when the application's source files change.

Meant for development: watching files costs time and a change restarts every worker.""",
    )
    reload_engine: ReloadEngine = setting(
        "auto",
        "--reload-engine",
        section=_DEBUG,
        convert=conv.reload_engine,
        meta="STRING",
        help="""
How reload notices changes: `inotify` (the kernel tells us; no polling), `poll` (file times
checked every second), or `auto` (inotify when the system has it, polling otherwise).

corral's inotify support needs no extra package: it calls the C library directly.""",
    )
    reload_extra_files: list[str] = setting(
        [],
        "--reload-extra-file",
        section=_DEBUG,
        convert=conv.str_list,
        meta="FILES",
        action="append",
        help="""
A further file to watch when reload is on, such as a template or a data file.

Give the flag several times to watch several files.""",
    )
    check_config: bool = setting(
        False,
        "--check-config",
        section=_DEBUG,
        convert=conv.to_bool,
        help="""
Check the configuration and that the application loads, then exit.

The exit status is 0 when both are fine and 1 otherwise.""",
    )
    print_config: bool = setting(
        False,
        "--print-config",
        section=_DEBUG,
        convert=conv.to_bool,
        help="""
Print the value every setting resolved to, then exit as check_config does.""",
    )

    # --- Server Mechanics ----------------------------------------------------------------------
    preload_app: bool = setting(
        False,
        "--preload",
        section=_MECHANICS,
        convert=conv.to_bool,
        help="""
Import the application in the master once, before the workers are forked.

Workers then start faster and share the memory the import used. The price: whatever the
import opens (database connections, files, threads) exists in the master and is inherited,
in its forked state, by every worker.""",
    )
    sendfile: bool | None = setting(
        None,
        "--no-sendfile",
        section=_MECHANICS,
        convert=conv.optional_bool,
        action="store_const",
        const=False,
        env="SENDFILE",
        env_convert=conv.sendfile_from_env,
        default_doc="None (sendfile is used)",
        help="""
Turn off sending file responses (`wsgi.file_wrapper`) with the sendfile() system call.

sendfile() is used unless this setting is False: `--no-sendfile` on the command line,
`sendfile = False` in a config file, or `SENDFILE=0` (or `false`, `no`, `off`) in the
environment.""",
    )
    reuse_port: bool = setting(
        False,
        "--reuse-port",
        section=_MECHANICS,
        convert=conv.to_bool,
        help="""
Set SO_REUSEPORT on the listening sockets.

Several servers can then bind the same address, and the kernel spreads new connections
among them.""",
    )
    chdir: str = setting(
        "",
        "--chdir",
        section=_MECHANICS,
        convert=conv.to_str,
        factory=os.getcwd,
        default_doc="the directory corral was started in",
        help="""
The directory to change to before the application is loaded.

A relative path is taken from the directory corral was started in; the result is stored as
an absolute path and must exist.""",
    )
    daemon: bool = setting(
        False,
        "-D",
        "--daemon",
        section=_MECHANICS,
        convert=conv.to_bool,
        help="""
Detach from the terminal and run in the background.

Leave it off under a process supervisor such as systemd, which expects the server to stay
in the foreground.""",
    )
    raw_env: list[str] = setting(
        [],
        "-e",
        "--env",
        section=_MECHANICS,
        convert=conv.env_list,
        meta="ENV",
        action="append",
        help="""
An environment variable to set for the application, written KEY=VALUE.

Give the flag several times to set several variables.""",
    )
    pidfile: str | None = setting(
        None,
        "-p",
        "--pid",
        section=_MECHANICS,
        convert=conv.optional_str,
        meta="FILE",
        help="""
A file to write the master's process id to; it is removed when the server exits.""",
    )
    worker_tmp_dir: str | None = setting(
        None,
        "--worker-tmp-dir",
        section=_MECHANICS,
        convert=conv.optional_str,
        meta="DIR",
        help="""
Accepted so that Gunicorn command lines and config files keep working, and otherwise unused.

Gunicorn keeps each worker's heartbeat in a temporary file in this directory, which is why
its users point it at a tmpfs. corral keeps heartbeats in shared memory instead, so there is
no file and nothing to tune.""",
    )
    user: int = setting(
        0,
        "-u",
        "--user",
        section=_MECHANICS,
        convert=conv.user_id,
        meta="USER",
        factory=os.geteuid,
        default_doc="the effective user id of the process",
        help="""
The user the workers run as, by name or by numeric id.

Switching to another user requires starting the master as root.""",
    )
    group: int = setting(
        0,
        "-g",
        "--group",
        section=_MECHANICS,
        convert=conv.group_id,
        meta="GROUP",
        factory=os.getegid,
        default_doc="the effective group id of the process",
        help="""
The group the workers run as, by name or by numeric id.""",
    )
    umask: int = setting(
        0,
        "-m",
        "--umask",
        section=_MECHANICS,
        convert=conv.umask,
        meta="INT",
        help="""
The umask applied to files the server creates, such as unix sockets and the pid file.

A number with a leading zero is octal, as in a shell: `022` and `0o22` are the same mask as
the decimal `18`.""",
    )
    initgroups: bool = setting(
        False,
        "--initgroups",
        section=_MECHANICS,
        convert=conv.to_bool,
        help="""
When switching to `user`, also give the workers that user's supplementary groups.""",
    )
    secure_scheme_headers: dict[str, str] = setting(
        {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"},
        section=_MECHANICS,
        convert=conv.str_dict,
        help="""
Headers by which a trusted proxy (see forwarded_allow_ips) tells that the client used HTTPS.

A dict from upper-case header name to the value that means HTTPS; a request carrying one of
them gets `wsgi.url_scheme` set to `https`. An empty dict ignores such headers. This can only
be set in a config file.""",
    )
    forwarded_allow_ips: list[str] = setting(
        ["127.0.0.1", "::1"],
        "--forwarded-allow-ips",
        section=_MECHANICS,
        convert=conv.forwarded_ips,
        meta="STRING",
        env="FORWARDED_ALLOW_IPS",
        help="""
The proxies whose secure_scheme_headers and forwarder_headers are believed.

A comma-separated list (or, in a config file, a list) of IP addresses and networks, or `*`
to trust every peer, which is only safe when nothing but the proxy can reach the server.
When the `FORWARDED_ALLOW_IPS` environment variable is set, it replaces the default.""",
    )
    proxy_protocol: ProxyProtocolMode = setting(
        "off",
        "--proxy-protocol",
        section=_MECHANICS,
        convert=conv.proxy_protocol,
        meta="MODE",
        const="auto",
        help="""
Expect a PROXY protocol header (HAProxy's, versions 1 and 2) at the start of every connection
from an address in `proxy_allow_ips`: `off`, `v1`, `v2`, or `auto` (either version).

REMOTE_ADDR and REMOTE_PORT then come from the header, for every request on the connection. A
connection from an allowed address that does not start with a valid header is closed. Given
without a value, `--proxy-protocol` means `auto`; Gunicorn's `proxy_protocol = True` in a
config file means `auto` too. See docs/proxy-protocol.md.""",
    )
    protocol: protocol_conv.ServerProtocol = setting(
        "http",
        "--protocol",
        section=_MECHANICS,
        convert=protocol_conv.server_protocol,
        meta="STRING",
        type_doc="'http' | 'uwsgi'",
        help="""
What clients speak on every listener: `http` (HTTP/1.x, and HTTP/2 where it is on) or `uwsgi`,
the binary protocol nginx's `uwsgi_pass` sends (with `include uwsgi_params;`), for the sync,
gthread, gevent and asgi workers.

Over uwsgi, REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT and HTTPS come from nginx's
variables only when the peer is in forwarded_allow_ips (a unix socket always is); each
connection carries one request and is closed after the response. See docs/deployment.md.""",
    )
    uwsgi_allow_ips: list[str] = setting(
        ["127.0.0.1", "::1"],
        "--uwsgi-allow-from",
        section=_MECHANICS,
        convert=conv.forwarded_ips,
        meta="STRING",
        help="""
Under `--protocol uwsgi`, the peers allowed to send requests at all: a comma-separated list of
addresses and networks, or `*` for any peer. A connection from another address gets 403 and is
closed; unix socket peers are always allowed. Which of nginx's variables are believed is
decided separately, by forwarded_allow_ips.""",
    )
    proxy_allow_ips: list[str] = setting(
        ["127.0.0.1", "::1"],
        "--proxy-allow-from",
        section=_MECHANICS,
        convert=conv.forwarded_ips,
        meta="STRING",
        help="""
The proxies allowed to send a PROXY protocol header: a comma-separated list of addresses and
networks, or `*` for any peer. From other addresses a PROXY header is not interpreted (the
bytes are read as HTTP, and refused).""",
    )
    pythonpath: str | None = setting(
        None,
        "--pythonpath",
        section=_MECHANICS,
        convert=conv.optional_str,
        meta="STRING",
        help="""
Directories, separated by commas, to put in front of the module search path before the
application is loaded.""",
    )
    permit_obsolete_folding: bool = setting(
        False,
        "--permit-obsolete-folding",
        section=_MECHANICS,
        convert=conv.to_bool,
        help="""
Accept header values continued on the next line (obsolete line folding, RFC 9112 section
5.2) instead of rejecting the request.

Each fold (the line end and the spaces and tabs around it) becomes one space in the value.
Still rejected: folded Host, Content-Length and Transfer-Encoding fields (a proxy that reads
them differently could be used to smuggle requests), blank continuation lines, and folding in
trailer fields.""",
    )
    strip_header_spaces: bool = setting(
        False,
        "--strip-header-spaces",
        section=_MECHANICS,
        convert=conv.to_bool,
        help="""
Dangerous: accept whitespace between a header name and its colon, and strip it.

RFC 9112 requires such requests to be rejected, because a proxy in front may read the header
differently from the server, which opens the way to request smuggling. Turn this on only for
clients that cannot be fixed and when no proxy sits in front.""",
    )
    permit_unconventional_http_method: bool = setting(
        False,
        "--permit-unconventional-http-method",
        section=_MECHANICS,
        convert=conv.to_bool,
        help="""
Accept request methods that are valid tokens but do not look like real methods, such as
lower-case or very short or long ones, instead of rejecting the request.""",
    )
    permit_unconventional_http_version: bool = setting(
        False,
        "--permit-unconventional-http-version",
        section=_MECHANICS,
        convert=conv.to_bool,
        help="""
Accept HTTP/1.x request lines with a minor version other than 0 and 1 (HTTP/1.2 to
HTTP/1.9) and handle them as HTTP/1.1, instead of rejecting them as likely malformed.

Other major versions, such as HTTP/0.9 and HTTP/2.0, are still answered with 505.""",
    )
    casefold_http_method: bool = setting(
        False,
        "--casefold-http-method",
        section=_MECHANICS,
        convert=conv.to_bool,
        help="""
Upper-case the request method before the application sees it, so `get` arrives as `GET`.

Only matters together with permit_unconventional_http_method.""",
    )
    forwarder_headers: list[str] = setting(
        ["SCRIPT_NAME", "PATH_INFO"],
        "--forwarder-headers",
        section=_MECHANICS,
        convert=conv.header_names,
        meta="FORWARDER_HEADERS",
        help="""
Header names, in upper case, that a trusted proxy (see forwarded_allow_ips) may send with
underscores in them and that are then passed on to the application.

Typical uses are SCRIPT_NAME, PATH_INFO and REMOTE_USER set by the proxy. From any other
peer, header_map decides what happens to names with underscores.""",
    )
    header_map: HeaderMapMode = setting(
        "drop",
        "--header-map",
        section=_MECHANICS,
        convert=conv.header_map,
        meta="HEADER_MAP",
        type_doc="'drop' | 'refuse' | 'dangerous'",
        help="""
What to do with a header whose name contains an underscore: `drop`, `refuse` or `dangerous`.

In the WSGI environ `X_Foo` and `X-Foo` become the same key, so a client could pass one off
as the other. `drop` discards such headers, `refuse` answers 400, and `dangerous` passes
them on. forwarder_headers from a trusted proxy are always passed on.""",
    )

    # --- Logging -------------------------------------------------------------------------------
    accesslog: str | None = setting(
        None,
        "--access-logfile",
        section=_LOGGING,
        convert=conv.optional_str,
        meta="FILE",
        help="""
Where to write the access log: a file path, or `-` for standard output.

None, the default, writes no access log.""",
    )
    access_log_format: str = setting(
        DEFAULT_ACCESS_LOG_FORMAT,
        "--access-logformat",
        section=_LOGGING,
        convert=conv.to_str,
        meta="STRING",
        help="""
The layout of each access log line, built from Gunicorn's %-style atoms.

For example %(h)s is the client address, %(r)s the request line, %(s)s the status, %(b)s the
response length, %(f)s the referer and %(a)s the user agent.""",
    )
    access_log_json: bool = setting(
        False,
        "--access-log-json",
        section=_LOGGING,
        convert=conv.to_bool,
        help="""
New in corral, not a Gunicorn setting: write each access log line as one JSON object
instead of in access_log_format.

The keys are time, remote_addr, method, path, query, protocol, status, response_length,
request_time_us, referer, user_agent and pid; docs/logging.md describes each. Every value
the client chose is JSON-escaped, so no request can add a line or a key.""",
    )
    errorlog: str = setting(
        "-",
        "--error-logfile",
        "--log-file",
        section=_LOGGING,
        convert=conv.to_str,
        meta="FILE",
        help="""
Where to write the error log: a file path, or `-` for standard error.""",
    )
    loglevel: LogLevel = setting(
        "info",
        "--log-level",
        section=_LOGGING,
        convert=conv.log_level,
        meta="LEVEL",
        type_doc="'debug' | 'info' | 'warning' | 'error' | 'critical'",
        help="""
The least severe messages the error log keeps: debug, info, warning, error or critical.""",
    )
    capture_output: bool = setting(
        False,
        "--capture-output",
        section=_LOGGING,
        convert=conv.to_bool,
        help="""
Send what the application writes to standard output and standard error into the error log.

errorlog must then name a file.""",
    )
    logger_class: str | type[Any] = setting(
        log_conv.LOGGER_CLASS_DEFAULT,
        "--logger-class",
        section=_LOGGING,
        convert=log_conv.logger_class,
        meta="STRING",
        type_doc="str (dotted path) | class",
        help="""
The class that sets up logging and writes the access log: the dotted path of a subclass of
`corral.logs.logger.Logger` (or, in a config file, the class itself).

Override its methods to change what corral logs and where; docs/logging.md lists them.
Gunicorn's default, `gunicorn.glogging.Logger`, is accepted and means corral's default.""",
    )
    logconfig: str | None = setting(
        None,
        "--log-config",
        section=_LOGGING,
        convert=conv.optional_str,
        meta="FILE",
        help="""
An ini file in the format of the standard library's `logging.config.fileConfig`, applied at
startup and on each reload.

The loggers it configures (`corral.error`, `corral.access`, or Gunicorn's names
`gunicorn.error` and `gunicorn.access`) get its handlers instead of the usual ones.""",
    )
    logconfig_dict: dict[str, Any] = setting(
        {},
        section=_LOGGING,
        convert=log_conv.logconfig_dict,
        type_doc="dict",
        help="""
A logging configuration dict, in the schema of `logging.config.dictConfig`; config file only.

It is laid over a default configuration that defines the handlers `console` (standard
output) and `error_console` (standard error) and the formatter `generic`. Of logconfig_dict,
logconfig_json and logconfig, only the first that is set is applied.""",
    )
    logconfig_json: str | None = setting(
        None,
        "--log-config-json",
        section=_LOGGING,
        convert=conv.optional_str,
        meta="FILE",
        help="""
A JSON file holding a `logging.config.dictConfig` configuration, treated as logconfig_dict
is.

logconfig_dict wins over it when both are set; it wins over logconfig.""",
    )
    syslog_addr: str = setting(
        "udp://localhost:514",
        "--log-syslog-to",
        section=_LOGGING,
        convert=log_conv.syslog_address,
        meta="SYSLOG_ADDR",
        help="""
The syslog daemon to send to when syslog is on.

Written `udp://HOST:PORT`, `tcp://HOST:PORT`, or `unix://PATH` for a local socket such as
`unix:///dev/log`. A unix path may end in `#dgram` or `#stream` to choose the socket type;
without it a datagram socket is tried first. The port defaults to 514.""",
    )
    syslog: bool = setting(
        False,
        "--log-syslog",
        section=_LOGGING,
        convert=conv.to_bool,
        help="""
Also send the error log, and the access log, to syslog (see syslog_addr).

Each message is tagged `gunicorn.PREFIX.error` or `gunicorn.PREFIX.access` (see
syslog_prefix), as Gunicorn tags them.""",
    )
    syslog_prefix: str | None = setting(
        None,
        "--log-syslog-prefix",
        section=_LOGGING,
        convert=conv.optional_str,
        meta="SYSLOG_PREFIX",
        help="""
The program name in the syslog tag, between `gunicorn.` and `.error` or `.access`.

When unset, the process name is used (proc_name, else the application spec), with each `:`
written as `.`.""",
    )
    syslog_facility: str = setting(
        "user",
        "--log-syslog-facility",
        section=_LOGGING,
        convert=log_conv.syslog_facility,
        meta="SYSLOG_FACILITY",
        help="""
The syslog facility messages are filed under: `user`, `daemon`, `local0` to `local7`, or
another standard facility name.""",
    )
    disable_redirect_access_to_syslog: bool = setting(
        False,
        "--disable-redirect-access-to-syslog",
        section=_LOGGING,
        convert=conv.to_bool,
        help="""
With syslog on, send only the error log there, not the access log.""",
    )

    # --- Process Naming ------------------------------------------------------------------------
    proc_name: str | None = setting(
        None,
        "-n",
        "--name",
        section=_NAMING,
        convert=conv.optional_str,
        meta="STRING",
        help="""
The name processes show in tools such as ps and top, when the optional setproctitle package
is installed.

When unset, the application spec is used.""",
    )

    # --- Metrics -------------------------------------------------------------------------------
    statsd_host: str | None = setting(
        None,
        "--statsd-host",
        section=_METRICS,
        convert=metrics_conv.statsd_address,
        meta="STATSD_ADDR",
        help="""
Send StatsD metrics to this address: `HOST:PORT`, `HOST` (port 8125), `[IPv6]:PORT`, or
`unix:PATH` for a unix datagram socket (Gunicorn's `unix://PATH` is accepted too).

The metric names are Gunicorn's (`gunicorn.requests`, `gunicorn.request.duration`,
`gunicorn.request.status.<code>`, `gunicorn.workers`, `gunicorn.log.<level>`), so existing
dashboards keep working. Each process sums its counters and sends them in batched datagrams
about once a second; sending never blocks and a lost datagram is dropped. A host name is
resolved once, when the process starts. None, the default, sends nothing. See
docs/metrics.md.""",
    )
    statsd_prefix: str = setting(
        "",
        "--statsd-prefix",
        section=_METRICS,
        convert=conv.to_str,
        meta="STATSD_PREFIX",
        help="""
A prefix put in front of every StatsD metric name, followed by a dot (added when missing).

With `--statsd-prefix myapp` requests are counted as `myapp.gunicorn.requests`.""",
    )
    dogstatsd_tags: str = setting(
        "",
        "--dogstatsd-tags",
        section=_METRICS,
        convert=metrics_conv.dogstatsd_tags,
        meta="DOGSTATSD_TAGS",
        help="""
Datadog tags attached to every StatsD metric: comma-separated `key:value` pairs or bare
tags, as in `env:prod,service:shop`.

They are sent in DogStatsD's `|#tags` extension, which plain StatsD servers do not read.""",
    )
    enable_backlog_metric: bool = setting(
        False,
        "--enable-backlog-metric",
        section=_METRICS,
        convert=conv.to_bool,
        help="""
Also send, as Gunicorn 23 does, `gunicorn.backlog`: how many connections wait in the
listening TCP sockets' accept queues, summed, about once a second (Linux only).

Needs statsd_host. The Prometheus endpoint always reports the queues, per listener.""",
    )
    metrics_bind: str | None = setting(
        None,
        "--metrics-bind",
        section=_METRICS,
        convert=metrics_conv.metrics_address,
        meta="ADDRESS",
        help="""
New in corral, not a Gunicorn setting: serve Prometheus metrics at `http://ADDRESS/metrics`,
where ADDRESS is `HOST:PORT` or `[IPv6]:PORT`.

The master answers the scrapes itself, from counters the workers keep in shared memory, so a
scrape works even when every worker is busy and adds no work to them. The endpoint has no
authentication: bind it to a private address such as `127.0.0.1:9100`. None, the default,
serves no metrics. See docs/metrics.md.""",
    )
    health_path: str | None = setting(
        None,
        "--health-path",
        section=_METRICS,
        convert=metrics_conv.url_path,
        meta="PATH",
        help="""
New in corral, not a Gunicorn setting: a request path, such as `/healthz`, that the workers
answer themselves without calling the application.

The answer is 200 while the worker is serving and 503 once it has begun to shut down, so a
load balancer stops sending it traffic before it goes away. The query string is ignored. None,
the default, passes every path to the application.""",
    )

    # --- Control -------------------------------------------------------------------------------
    control_socket: str = setting(
        "",
        "--control-socket",
        section=_CONTROL,
        convert=conv.to_str,
        meta="PATH",
        factory=default_socket_path,
        default_doc="$XDG_RUNTIME_DIR/corral.ctl, or ~/.corral/corral.ctl",
        help="""
The unix socket the master answers `corral ctl` (and Gunicorn's `gunicornc`) on.

By default `$XDG_RUNTIME_DIR/corral.ctl` when that directory exists, else
`~/.corral/corral.ctl` (the directory is created with mode 0700). A relative path is taken from
the `--chdir` directory. When another running server already answers on the path, this one
logs a warning and opens none rather than take it over. See docs/control.md.""",
    )
    control_socket_mode: int = setting(
        0o600,
        "--control-socket-mode",
        section=_CONTROL,
        convert=conv.umask,
        meta="INT",
        default_doc="0o600",
        help="""
The permission bits of the control socket; `0600` lets only its owner connect, `0660` its
group too.

The socket has these bits from its creation on. Commands that change anything (`worker`,
`reload`, `reopen`, `shutdown`) are accepted from the owning user and root only, whatever the
mode allows.""",
    )
    control_socket_disable: bool = setting(
        False,
        "--no-control-socket",
        section=_CONTROL,
        convert=conv.to_bool,
        help="""
Open no control socket.""",
    )

    # --- Server Hooks --------------------------------------------------------------------------
    on_starting: ServerHook = server_hook(
        on_starting,
        "server",
        help="Called in the master as it starts, before the listening sockets are opened.",
    )
    on_reload: ServerHook = server_hook(
        on_reload,
        "server",
        help="Called in the master when a HUP signal makes it reload its configuration.",
    )
    when_ready: ServerHook = server_hook(
        when_ready,
        "server",
        help="Called in the master once it listens, before the first workers are forked.",
    )
    pre_fork: ServerWorkerHook = server_hook(
        pre_fork,
        "server",
        "worker",
        help="Called in the master just before it forks a worker.",
    )
    post_fork: ServerWorkerHook = server_hook(
        post_fork,
        "server",
        "worker",
        help="Called in a new worker process right after the fork.",
    )
    post_worker_init: WorkerHook = server_hook(
        post_worker_init,
        "worker",
        help="Called in a worker once it has loaded the application.",
    )
    worker_int: WorkerHook = server_hook(
        worker_int,
        "worker",
        help="Called in a worker when it receives INT or QUIT.",
    )
    worker_abort: WorkerHook = server_hook(
        worker_abort,
        "worker",
        help="Called in a worker when it receives ABRT, which the master sends on timeout.",
    )
    pre_exec: ServerHook = server_hook(
        pre_exec,
        "server",
        help="Called in the master just before it executes a new copy of itself (USR2).",
    )
    pre_request: PreRequestHook = server_hook(
        pre_request,
        "worker",
        "req",
        help="Called in a worker before each request is passed to the application.",
    )
    post_request: PostRequestHook = server_hook(
        post_request,
        "worker",
        "req",
        "environ",
        "resp",
        convert=conv.post_request_hook,
        help="""
Called in a worker after each request has been answered.

As in Gunicorn, a function taking only (worker, req) or (worker, req, environ) is accepted.""",
    )
    child_exit: ServerWorkerHook = server_hook(
        child_exit,
        "server",
        "worker",
        help="Called in the master after a worker process has exited.",
    )
    worker_exit: ServerWorkerHook = server_hook(
        worker_exit,
        "server",
        "worker",
        help="Called in a worker process as it exits.",
    )
    nworkers_changed: NworkersChangedHook = server_hook(
        nworkers_changed,
        "server",
        "new_value",
        "old_value",
        help="""
Called in the master with (server, new_value, old_value) whenever the number of workers is set:
first with old_value None, then on TTIN, TTOU and every reload (HUP), even when the number
stays the same, as Gunicorn 27 does.""",
    )
    on_exit: ServerHook = server_hook(
        on_exit,
        "server",
        help="Called in the master just before the server exits.",
    )
    ssl_context: SSLContextHook = server_hook(
        ssl_context,
        "config",
        "default_factory",
        help="""
Called in each worker, when certfile is set, to make the ssl.SSLContext its connections use.

`default_factory()` returns the context corral builds from the SSL settings; the hook returns
the context to use, typically that one adjusted (a minimum TLS version, ALPN protocols, a
passphrase-protected key). `config` is the resolved settings.""",
    )

    @property
    def effective_worker_class(self) -> WorkerClassName:
        """The worker class to run: `sync` with more than one thread means `gthread`."""
        if self.worker_class == "sync" and self.threads > 1:
            return "gthread"
        return self.worker_class

    @property
    def env(self) -> dict[str, str]:
        """raw_env as a dict (later entries win)."""
        return dict(item.partition("=")[::2] for item in self.raw_env)


def _specs() -> tuple[SettingSpec, ...]:
    specs = []
    for item in dataclasses.fields(Settings):
        spec: SettingSpec = item.metadata["corral"]
        specs.append(
            dataclasses.replace(
                spec,
                name=item.name,
                key=spec.key or item.name,
                help=spec.help.strip(),
                type_doc=spec.type_doc or str(item.type),
            )
        )
    return tuple(specs)


SPECS: tuple[SettingSpec, ...] = _specs()
SPECS_BY_NAME: dict[str, SettingSpec] = {spec.name: spec for spec in SPECS}
SPECS_BY_KEY: dict[str, SettingSpec] = {spec.key: spec for spec in SPECS}


def default_value(spec: SettingSpec) -> object:
    """The declared default of a setting, freshly made (factories are called)."""
    item = next(f for f in dataclasses.fields(Settings) if f.name == spec.name)
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def show_value(value: object, quote: bool = False) -> str:
    """A value for messages and --print-config: callables by name, others by str or repr."""
    if callable(value):
        return f"<{getattr(value, '__qualname__', type(value).__name__)}()>"
    return repr(value) if quote else str(value)


def format_settings(settings: Settings) -> str:
    """For --print-config: one "key = value" line per setting, sorted by config-file name."""
    width = max(len(spec.key) for spec in SPECS)
    lines = [
        f"{spec.key:{width}} = {show_value(getattr(settings, spec.name))}"
        for spec in sorted(SPECS, key=lambda spec: spec.key)
    ]
    return "\n".join(lines)
