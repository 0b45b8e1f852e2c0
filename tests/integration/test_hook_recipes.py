"""Config files written for Gunicorn, as they are found in the wild, run unchanged: the hooks
use Gunicorn's attribute names on the server, worker, request and response objects, and the
server's log must show their lines and never an AttributeError or a traceback."""

from __future__ import annotations

import http.client
import json
import os
import signal
from pathlib import Path

import pytest

from support.server import Server, wait_for

RECIPES_CONF = """
import json
import random
import time

from prometheus_client import multiprocess

NOTES = {notes!r}


def note(**fields):
    with open(NOTES, "a") as fh:
        fh.write(json.dumps(fields) + "\\n")


def when_ready(server):
    server.log.info(
        "Server is ready. Spawning workers (%s of them, master %s, %s listener)",
        server.num_workers, server.pid, len(server.LISTENERS),
    )
    note(hook="when_ready", workers=server.cfg.workers, running=len(server.WORKERS))


def post_fork(server, worker):
    random.seed()  # the classic reseed; reconnecting a client goes here too
    server.log.info("Worker spawned (pid: %s)", worker.pid)


def post_worker_init(worker):
    worker.log.info("Worker initialized (pid: %s, ppid: %s)", worker.pid, worker.ppid)
    note(
        hook="post_worker_init", pid=worker.pid, ppid=worker.ppid, age=worker.age,
        alive=worker.alive, app=callable(worker.app), wsgi=callable(worker.wsgi),
        timeout=worker.cfg.timeout,
    )


def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)
    req.started = time.monotonic()
    note(
        hook="pre_request", method=req.method, path=req.path, uri=req.uri, query=req.query,
        version=list(req.version), headers=[list(h) for h in req.headers], nr=worker.nr,
    )


def post_request(worker, req, environ, resp):
    worker.log.info("%s %s -> %s", req.method, req.path, resp.status)
    note(
        hook="post_request", status=resp.status, code=resp.status_code,
        path_info=environ["PATH_INFO"], timed=time.monotonic() >= req.started,
        nr=worker.nr,
    )


def worker_int(worker):
    worker.log.info("worker received INT or QUIT signal")


def worker_abort(worker):
    worker.log.info("worker received SIGABRT signal (pid: %s)", worker.pid)


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
    server.log.info(
        "Worker exited, marked dead (pid: %s, booted: %s, aborted: %s)",
        worker.pid, worker.booted, worker.aborted,
    )


def on_exit(server):
    server.log.info("Server exiting (master %s)", server.pid)
"""


def notes(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def get(port: int, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def start(tmp_path: Path, *args: str, workers: int = 2) -> tuple[Server, Path, Path]:
    note_file = tmp_path / "notes.jsonl"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(RECIPES_CONF.format(notes=str(note_file)))
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    srv = Server(
        "support.hook_recipe_apps:app",
        "-c",
        str(conf),
        "--log-level",
        "debug",
        *args,
        workers=workers,
        env={"PROMETHEUS_MULTIPROC_DIR": str(prom_dir)},
    )
    return srv, note_file, prom_dir


def assert_clean(log: str) -> None:
    assert "AttributeError" not in log, log
    assert "Traceback" not in log, log
    assert "Exception in" not in log, log


@pytest.mark.parametrize("worker", [["-k", "sync"], ["-k", "gthread", "--threads", "4"]])
def test_gunicorn_recipes_see_gunicorn_attributes(tmp_path: Path, worker: list[str]) -> None:
    srv, note_file, _ = start(tmp_path, *worker)
    with srv:
        wait_for(lambda: len([n for n in notes(note_file) if n["hook"] == "post_worker_init"]) == 2)
        status, _ = get(srv.port, "/counted/a%20b?x=1&y=2", {"X-Recipe": "yes"})
        assert status == 200
        wait_for(lambda: any(n["hook"] == "post_request" for n in notes(note_file)))
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit() == 0
        log = srv.log()
    assert_clean(log)
    assert "Server is ready. Spawning workers (2 of them, master" in log
    assert log.count("Worker spawned (pid: ") == 2
    assert log.count("Worker initialized (pid: ") == 2
    assert "GET /counted/a%20b" in log  # pre_request's debug line
    assert "GET /counted/a%20b -> 200 OK" in log
    assert "Server exiting (master" in log
    by_hook = {n["hook"]: n for n in notes(note_file)}
    assert by_hook["when_ready"] == {"hook": "when_ready", "workers": 2, "running": 0}
    init = by_hook["post_worker_init"]
    assert init["alive"] and init["app"] and init["wsgi"] and init["timeout"] == 30
    assert init["pid"] != init["ppid"] and init["age"] in (1, 2)
    pre = by_hook["pre_request"]
    assert pre["method"] == "GET"
    assert pre["path"] == "/counted/a%20b"
    assert pre["uri"] == "/counted/a%20b?x=1&y=2"
    assert pre["query"] == "x=1&y=2"
    assert pre["version"] == [1, 1]
    assert ["X-RECIPE", "yes"] in pre["headers"]
    assert ["HOST", f"127.0.0.1:{srv.port}"] in pre["headers"]
    post = by_hook["post_request"]
    assert post["status"] == "200 OK" and post["code"] == 200
    assert post["path_info"] == "/counted/a b" and post["timed"] is True
    assert post["nr"] >= 1 and post["nr"] >= pre["nr"]


def test_prometheus_multiprocess_child_exit_marks_the_worker_dead(tmp_path: Path) -> None:
    srv, _, prom_dir = start(tmp_path, workers=1)
    with srv:
        (first,) = wait_for(srv.worker_pids)  # type: ignore[misc]
        status, body = get(srv.port, "/one")
        assert (status, int(body)) == (200, first)
        live = prom_dir / f"gauge_livesum_{first}.db"
        assert live.exists()
        srv.signal(signal.SIGTTIN)  # a second worker, then the first one goes
        wait_for(lambda: len(srv.worker_pids()) == 2)
        os.kill(first, signal.SIGTERM)
        srv.wait_log(f"Worker exited, marked dead (pid: {first}, booted: True, aborted: False)")
        assert not live.exists()  # mark_process_dead removed the dead worker's live gauge
        status, body = get(srv.port, "/metrics")
        assert status == 200
        text = body.decode()
        # The counter survives its worker; the live gauge counts only the one alive now.
        assert "recipe_requests_total 1.0" in text
        # Its replacement sets its own live gauge as it imports the application.
        wait_for(lambda: "recipe_workers_up 2.0" in get(srv.port, "/metrics")[1].decode())
        log = srv.log()
    assert_clean(log)


def test_worker_abort_and_worker_int_hooks_log(tmp_path: Path) -> None:
    srv, _, _ = start(tmp_path, "--timeout", "2", workers=1)
    with srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
        conn.request("GET", "/sleep")
        srv.wait_log("worker received SIGABRT signal (pid: ", timeout=20)
        conn.close()
        srv.wait_booted(2)  # its replacement
        srv.signal(signal.SIGINT)  # quick stop: workers get QUIT, hence worker_int
        srv.wait_log("worker received INT or QUIT signal")
        srv.wait_exit()
        log = srv.log()
    assert "AttributeError" not in log, log
    assert "Exception in" not in log, log
    assert "Server exiting (master" in log
