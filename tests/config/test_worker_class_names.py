"""Worker class names through the real command line: other servers' names for corral's workers
are served with one info line saying so; any other name is a one-line startup error that lists
the names corral has, with a non-zero exit, whether it comes from a flag or a config file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from corral.config import converters as conv
from support.client import connect, read_response
from support.server import TESTS, Server, run_corral

ASGI_NAMES = [
    "uvicorn.workers.UvicornWorker",
    "uvicorn_worker.UvicornWorker",
    "gunicorn.workers.gasgi.ASGIWorker",
]


@pytest.mark.parametrize("name", ASGI_NAMES)
def test_asgi_names_are_served_by_the_asgi_worker_with_one_info_line(name: str) -> None:
    with Server("support.asgi_apps:app", "-k", name) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(sock)[0].status == 200
        line = f"[INFO] Worker class {name} is served by corral's asgi worker"
        assert srv.log().count(line) == 1
        assert "Using worker: asgi" in srv.log()


def test_gunicorn_sync_name_says_which_worker_runs_and_own_names_say_nothing() -> None:
    with Server(
        "support.apps:echo", "-k", "gunicorn.workers.sync.SyncWorker", "--threads", "2"
    ) as srv:
        assert "Worker class gunicorn.workers.sync.SyncWorker is served by corral's gthread" in (
            srv.log()
        )
    with Server("support.asgi_apps:app", "-k", "asgi") as srv:
        assert "is served by corral's" not in srv.log()


def check_refused(result: subprocess.CompletedProcess[str], name: str) -> None:
    assert result.returncode == 2, result.stderr
    stderr = result.stderr
    assert stderr.count("\n") == 1, stderr  # one line
    assert stderr.startswith("Error: Invalid value for worker_class")
    assert f"'{name}'" in stderr
    for known in ("sync", "gthread", "asgi", *ASGI_NAMES):
        assert known in stderr
    assert "Booting worker" not in stderr and "Listening at" not in stderr


@pytest.mark.parametrize(
    "name", ["mypkg.MyWorker", "eventlet", "tornado", "gunicorn.workers.geventlet.EventletWorker"]
)
def test_other_worker_classes_are_a_one_line_startup_error(name: str) -> None:
    args = ["--pythonpath", str(TESTS), "--bind", "127.0.0.1:0", "-k", name, "support.apps:echo"]
    check_refused(run_corral(args), name)


def test_other_worker_class_in_a_config_file_is_refused_too(tmp_path: Path) -> None:
    config = tmp_path / "corral.conf.py"
    config.write_text('worker_class = "mypkg.MyWorker"\n')
    args = ["-c", str(config), "--pythonpath", str(TESTS), "--bind", "127.0.0.1:0"]
    check_refused(run_corral([*args, "support.apps:echo"]), "mypkg.MyWorker")


def test_converter_remembers_the_other_name() -> None:
    chosen = conv.worker_class(" uvicorn.workers.UvicornWorker ")
    assert chosen == "asgi"
    assert conv.requested_worker_class(chosen) == "uvicorn.workers.UvicornWorker"
    assert conv.requested_worker_class(conv.worker_class("asgi")) == ""
    assert conv.requested_worker_class("sync") == ""
