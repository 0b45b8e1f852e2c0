"""Server hooks from a Gunicorn-style config file: called, in order, with the right arguments."""

from __future__ import annotations

import http.client
import signal
from pathlib import Path

from support.server import Server, wait_for

HOOKS_CONF = """
import os
LOG = {log!r}

def _note(*parts):
    with open(LOG, "a") as fh:
        fh.write(" ".join(str(p) for p in parts) + "\\n")

def on_starting(server):
    _note("on_starting", type(server).__name__, os.getpid())

def on_reload(server):
    _note("on_reload", os.getpid())

def when_ready(server):
    _note("when_ready", len(server.listeners))

def pre_fork(server, worker):
    _note("pre_fork", worker.age)

def post_fork(server, worker):
    _note("post_fork", worker.age, worker.pid == os.getpid())

def post_worker_init(worker):
    _note("post_worker_init", worker.pid == os.getpid(), callable(worker.app))

def pre_request(worker, req):
    _note("pre_request", req.method, req.path)

def post_request(worker, req, environ, resp):
    _note("post_request", req.method, environ["PATH_INFO"], resp.status)

def child_exit(server, worker):
    _note("child_exit", worker.age, os.getpid() == server.pid)

def worker_exit(server, worker):
    _note("worker_exit", worker.pid == os.getpid())

def nworkers_changed(server, new_value, old_value):
    _note("nworkers_changed", new_value, old_value)

def on_exit(server):
    _note("on_exit")

def worker_abort(worker):
    _note("worker_abort")

def worker_int(worker):
    _note("worker_int")
"""


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_hooks_in_order(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    conf = tmp_path / "hooks.conf.py"
    conf.write_text(HOOKS_CONF.format(log=str(log)))
    srv = Server("support.apps:echo", "-c", str(conf), workers=1)
    with srv:
        wait_for(lambda: any(x.startswith("post_worker_init") for x in lines(log)))
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/hooked")
        assert conn.getresponse().read()
        conn.close()
        wait_for(lambda: any(x.startswith("post_request") for x in lines(log)))
        srv.signal(signal.SIGTTIN)
        wait_for(lambda: "nworkers_changed 2 1" in lines(log))
        srv.signal(signal.SIGHUP)
        wait_for(lambda: any(x.startswith("on_reload") for x in lines(log)))
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit() == 0
    seen = lines(log)
    names = [x.split()[0] for x in seen]
    # As Gunicorn: the worker count is first set (old value None) before on_starting.
    assert seen[0] == "nworkers_changed 1 None"
    assert names[1:4] == ["on_starting", "when_ready", "pre_fork"]
    assert "post_fork 1 True" in seen
    assert "post_worker_init True True" in seen
    assert "pre_request GET /hooked" in seen
    assert "post_request GET /hooked 200 OK" in seen
    assert names.index("pre_request") < names.index("post_request")
    assert "worker_exit True" in seen
    assert any(x.startswith("child_exit") and x.endswith("True") for x in seen)
    assert names[-1] == "on_exit"
    assert seen[1].split()[1] == "Arbiter"


def test_hook_that_raises_is_logged_not_fatal(tmp_path: Path) -> None:
    conf = tmp_path / "bad_hooks.conf.py"
    conf.write_text(
        "def pre_request(worker, req):\n    raise ValueError('hook blew up')\n"
        "def when_ready(server):\n    raise ValueError('ready blew up')\n"
    )
    with Server("support.apps:echo", "-c", str(conf)) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        srv.wait_log("hook blew up")
        assert "ready blew up" in srv.log()


def test_nworkers_changed_on_start_reload_and_ttou(tmp_path: Path) -> None:
    """The hook sees every change of the worker count: None -> the first value, a HUP that
    reads a new `workers` from the config file, and TTOU."""
    log = tmp_path / "hooks.log"
    conf = tmp_path / "workers.conf.py"
    hook = (
        f"def nworkers_changed(server, new_value, old_value):\n"
        f"    with open({str(log)!r}, 'a') as fh:\n"
        f"        fh.write(f'{{new_value}} {{old_value}}\\n')\n"
    )
    conf.write_text("workers = 1\n" + hook)
    srv = Server("support.apps:echo", "-c", str(conf), workers=1, workers_flag=False)
    with srv:
        assert lines(log) == ["1 None"]
        conf.write_text("workers = 3\n" + hook)
        srv.signal(signal.SIGHUP)
        wait_for(lambda: "3 1" in lines(log), what="nworkers_changed 3 1 after HUP")
        wait_for(lambda: len(srv.worker_pids()) == 3, 15, "three workers")
        srv.signal(signal.SIGTTOU)
        wait_for(lambda: "2 3" in lines(log), what="nworkers_changed 2 3 after TTOU")
        wait_for(lambda: len(srv.worker_pids()) == 2, 15, "two workers")
    assert lines(log) == ["1 None", "3 1", "2 3"]
