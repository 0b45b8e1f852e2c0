"""The servers under test: for each, how to start it with N workers on a port.

Every Python server runs on the same interpreter, from the peer venv, with the same
applications. corral runs as `python -m corral` from a copy of this working tree's src/ taken
when the benchmark starts: it is pure Python with no dependencies, so this is the code
`.venv/bin/corral` runs; the Flask scenario finds Flask in the same venv as every peer does;
and edits made to src/ while the benchmark runs cannot mix two versions in one report.

A server is a row in SERVERS; nothing here starts a process. The HTTP/2 rows (`-h2`) take
part only in the HTTP/2 scenarios, which name them; each has an HTTP/1.1 twin in H1_TWINS,
the same server without HTTP/2, which the HTTP/1.1 rows of those scenarios run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NGINX_TEMPLATE = HERE / "conf" / "nginx.conf"
HYPERCORN_H2_CONFIG = HERE / "conf" / "hypercorn_h2.toml"
HOST = "127.0.0.1"
BASELINE = "gunicorn-sync"
ASGI_BASELINE = "uvicorn-asgi"
# The HTTP/2 scenarios' reference: Gunicorn 27's own HTTP/2, on its faster worker; and the
# same worker over HTTP/1.1 in the HTTP/1.1 rows of those scenarios.
H2_BASELINE = "gunicorn-asgi-h2"
H2_H1_BASELINE = "gunicorn-asgi"
# Gunicorn's flags for HTTP/2, which corral takes too: h2c only by prior knowledge.
H2C_PRIOR_KNOWLEDGE = ("--http2-cleartext", "prior-knowledge")


@dataclass(frozen=True)
class Context:
    """What every run shares: the peer interpreter and the files made for this benchmark."""

    python: Path
    workdir: Path
    corral_src: Path  # the copy of src/ that corral runs from
    static_file: Path
    json_body: str
    # A self-signed certificate for 127.0.0.1 (the TLS scenarios); None if openssl failed.
    certfile: Path | None = None
    keyfile: Path | None = None


@dataclass(frozen=True)
class Launch:
    """One start of one server."""

    port: int
    workers: int
    app: str  # MODULE:ATTRIBUTE
    access_log: bool = False
    certfile: Path | None = None  # TLS: the listener's certificate and key
    keyfile: Path | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


Argv = Callable[[Context, Launch], list[str]]


@dataclass(frozen=True)
class Server:
    name: str
    argv: Argv
    # Peer distributions or commands it cannot run without.
    needs: tuple[str, ...]
    # How many processes it runs for N workers: the start waits until all are up.
    processes: Callable[[int], int]
    runs_corral_copy: bool = False  # needs ctx.corral_src on PYTHONPATH
    max_workers: int | None = None
    takes_access_log: bool = False
    # False for nginx: it answers fixed strings and the static file, runs no application.
    runs_python: bool = True
    # False for a server that only the checks (starvation, slow clients) compare with.
    in_load_scenarios: bool = True
    interface: str = "wsgi"  # or "asgi": the scenarios it takes part in


def prefork(module: str, *worker_args: str) -> Argv:
    """corral and Gunicorn: the same command line, only the module differs."""

    def argv(ctx: Context, launch: Launch) -> list[str]:
        command = [str(ctx.python), "-m", module, "-w", str(launch.workers)]
        command += ["-b", launch.address, *worker_args]
        if launch.access_log:
            command += ["--access-logfile", "/dev/null"]
        if launch.certfile and launch.keyfile:
            command += ["--certfile", str(launch.certfile), "--keyfile", str(launch.keyfile)]
        return [*command, launch.app]

    return argv


def granian_h2(interface: str, *options: str) -> Argv:
    """Granian with HTTP/2 only (`--http 2`): h2c by prior knowledge, or h2 over TLS."""

    def argv(ctx: Context, launch: Launch) -> list[str]:
        command = [str(ctx.python), "-m", "granian", "--interface", interface, *options]
        command += ["--http", "2", "--workers", str(launch.workers), "--no-access-log"]
        command += ["--log-level", "warning", "--host", HOST, "--port", str(launch.port)]
        if launch.certfile and launch.keyfile:
            command += ["--ssl-certificate", str(launch.certfile)]
            command += ["--ssl-keyfile", str(launch.keyfile)]
        return [*command, launch.app]

    return argv


def hypercorn_h2_argv(ctx: Context, launch: Launch) -> list[str]:
    # Its plain bind takes h2c by prior knowledge; with a certificate it offers h2 by ALPN.
    # The config file lifts its 1000 requests per connection (see the file).
    command = [*hypercorn_argv(ctx, launch)[:-1], "-c", str(HYPERCORN_H2_CONFIG)]
    if launch.certfile and launch.keyfile:
        command += ["--certfile", str(launch.certfile), "--keyfile", str(launch.keyfile)]
    return [*command, launch.app]


def uvicorn_argv(ctx: Context, launch: Launch) -> list[str]:
    return [
        *(str(ctx.python), "-m", "uvicorn", "--interface", "wsgi"),
        *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
        *("--log-level", "warning", "--host", HOST, "--port", str(launch.port)),
        *("--workers", str(launch.workers), launch.app),
    ]


def granian_argv(ctx: Context, launch: Launch) -> list[str]:
    return [
        *(str(ctx.python), "-m", "granian", "--interface", "wsgi", "--blocking-threads", "1"),
        *("--workers", str(launch.workers), "--no-access-log", "--log-level", "warning"),
        *("--host", HOST, "--port", str(launch.port), launch.app),
    ]


def uvicorn_asgi_argv(ctx: Context, launch: Launch) -> list[str]:
    return [
        *(str(ctx.python), "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools"),
        *("--ws", "websockets", "--no-access-log", "--log-level", "warning"),
        *("--host", HOST, "--port", str(launch.port), "--workers", str(launch.workers)),
        launch.app,
    ]


def granian_asgi_argv(ctx: Context, launch: Launch) -> list[str]:
    # --loop auto: uvloop, which the peer venv has.
    return [
        *(str(ctx.python), "-m", "granian", "--interface", "asgi", "--loop", "auto"),
        *("--workers", str(launch.workers), "--no-access-log", "--log-level", "warning"),
        *("--host", HOST, "--port", str(launch.port), launch.app),
    ]


def hypercorn_argv(ctx: Context, launch: Launch) -> list[str]:
    # Its uvloop worker class: the fastest Hypercorn has. No access log unless asked for.
    return [
        *(str(ctx.python), "-m", "hypercorn", "-k", "uvloop", "-w", str(launch.workers)),
        *("-b", launch.address, "--log-level", "warning", launch.app),
    ]


def waitress_argv(ctx: Context, launch: Launch) -> list[str]:
    return [str(ctx.python), "-m", "waitress", f"--listen={launch.address}", launch.app]


def bjoern_argv(ctx: Context, launch: Launch) -> list[str]:
    launcher = str(HERE / "bjoern_prefork.py")
    return [str(ctx.python), launcher, launch.app, HOST, str(launch.port), str(launch.workers)]


def nginx_argv(ctx: Context, launch: Launch) -> list[str]:
    """Writes this start's configuration under the workdir, then returns the command."""
    prefix = ctx.workdir / f"nginx-{launch.port}"
    prefix.mkdir(exist_ok=True)
    conf = Template(NGINX_TEMPLATE.read_text()).substitute(
        workers=launch.workers,
        prefix=prefix,
        port=launch.port,
        json=ctx.json_body,
        static_file=ctx.static_file,
    )
    (prefix / "nginx.conf").write_text(conf)
    return ["nginx", "-e", "stderr", "-p", str(prefix), "-c", str(prefix / "nginx.conf")]


def master_and(workers: int) -> int:
    return workers + 1


def one(workers: int) -> int:
    return 1


def same(workers: int) -> int:
    return workers


def uvicorn_processes(workers: int) -> int:
    # One worker runs in the main process; more are supervised by it.
    return 1 if workers == 1 else workers + 1


def corral(
    name: str, *worker_args: str, interface: str = "wsgi", in_load_scenarios: bool = True
) -> Server:
    return Server(
        name,
        prefork("corral", *worker_args),
        needs=("uvloop",) if "uvloop" in worker_args else (),
        processes=master_and,
        runs_corral_copy=True,
        takes_access_log=True,
        in_load_scenarios=in_load_scenarios,
        interface=interface,
    )


def gunicorn(
    name: str, *worker_args: str, in_load_scenarios: bool = True, interface: str = "wsgi"
) -> Server:
    return Server(
        name,
        prefork("gunicorn", *worker_args),
        needs=("gunicorn",),
        processes=master_and,
        takes_access_log=True,
        in_load_scenarios=in_load_scenarios,
        interface=interface,
    )


def h2_only(server: Server) -> Server:
    """An HTTP/2 row: only the HTTP/2 scenarios, which name it, run it."""
    return replace(server, in_load_scenarios=False)


SERVERS: dict[str, Server] = {
    server.name: server
    for server in (
        corral("corral-sync", "-k", "sync"),
        corral("corral-gthread-1", "-k", "gthread", "--threads", "1"),
        corral("corral-gthread-4", "-k", "gthread", "--threads", "4"),
        gunicorn(BASELINE, "-k", "sync"),
        # Only in the slow-clients check, beside corral-gthread-1.
        gunicorn("gunicorn-gthread-1", "-k", "gthread", "--threads", "1", in_load_scenarios=False),
        gunicorn("gunicorn-gthread-4", "-k", "gthread", "--threads", "4"),
        Server(
            "uvicorn",
            uvicorn_argv,
            needs=("uvicorn", "uvloop", "httptools", "a2wsgi"),
            processes=uvicorn_processes,
        ),
        Server("granian", granian_argv, needs=("granian",), processes=master_and),
        # One process (4 threads by default): it takes no part in the 2-worker scenario.
        Server("waitress", waitress_argv, needs=("waitress",), processes=one, max_workers=1),
        Server("bjoern", bjoern_argv, needs=("bjoern",), processes=same),
        Server("nginx", nginx_argv, needs=("nginx",), processes=master_and, runs_python=False),
        # ASGI: the standard library's loop, then uvloop, which only corral's second row uses.
        corral("corral-asgi", "-k", "asgi", "--asgi-loop", "asyncio", interface="asgi"),
        corral("corral-asgi-uvloop", "-k", "asgi", "--asgi-loop", "uvloop", interface="asgi"),
        # Gunicorn's own asgi worker; its --asgi-loop auto takes uvloop, which is installed.
        gunicorn("gunicorn-asgi", "-k", "asgi", interface="asgi"),
        Server(
            ASGI_BASELINE,
            uvicorn_asgi_argv,
            needs=("uvicorn", "uvloop", "httptools", "websockets"),
            processes=uvicorn_processes,
            interface="asgi",
        ),
        Server(
            "granian-asgi",
            granian_asgi_argv,
            needs=("granian",),
            processes=master_and,
            interface="asgi",
        ),
        Server(
            "hypercorn",
            hypercorn_argv,
            needs=("hypercorn", "uvloop"),
            processes=master_and,
            interface="asgi",
        ),
        # HTTP/2 (the h2c, h2-tls scenarios): corral as issue 12 asks for it, both families.
        corral(
            "corral-asgi-h2",
            *("-k", "asgi", "--asgi-loop", "asyncio", "--http-protocols", "h2,h1"),
            *H2C_PRIOR_KNOWLEDGE,
            interface="asgi",
            in_load_scenarios=False,
        ),
        corral(
            "corral-gthread-h2",
            *("-k", "gthread", "--threads", "4", "--http-protocols", "h2,h1"),
            *H2C_PRIOR_KNOWLEDGE,
            in_load_scenarios=False,
        ),
        gunicorn(
            H2_BASELINE,
            *("-k", "asgi", "--http-protocols", "h2", *H2C_PRIOR_KNOWLEDGE),
            interface="asgi",
            in_load_scenarios=False,
        ),
        gunicorn(
            "gunicorn-gthread-h2",
            *("-k", "gthread", "--threads", "4", "--http-protocols", "h2", *H2C_PRIOR_KNOWLEDGE),
            in_load_scenarios=False,
        ),
        h2_only(
            Server(
                "granian-h2",
                granian_h2("asgi", "--loop", "auto"),
                needs=("granian",),
                processes=master_and,
                interface="asgi",
            )
        ),
        h2_only(
            Server(
                "granian-wsgi-h2",
                granian_h2("wsgi", "--blocking-threads", "1"),
                needs=("granian",),
                processes=master_and,
            )
        ),
        h2_only(
            Server(
                "hypercorn-h2",
                hypercorn_h2_argv,
                needs=("hypercorn", "uvloop"),
                processes=master_and,
                interface="asgi",
            )
        ),
    )
}

# Each HTTP/2 row and its HTTP/1.1 twin (None: no HTTP/1.1 row, see bench/README.md).
H1_TWINS: dict[str, str | None] = {
    "corral-asgi-h2": "corral-asgi",
    "corral-gthread-h2": "corral-gthread-4",
    H2_BASELINE: H2_H1_BASELINE,
    "gunicorn-gthread-h2": "gunicorn-gthread-4",
    "granian-h2": "granian-asgi",
    "granian-wsgi-h2": "granian",
    # h2load --h1 counts every HTTP/1.1 response of Hypercorn 0.18 as failed.
    "hypercorn-h2": None,
}
H2_SERVERS = tuple(H1_TWINS)
