"""Master and worker lifecycle through the real server: startup errors, signals, respawn."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from support.server import Server, alive, run_corral, wait_for


def get(port: int, path: str, timeout: float = 30) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def write_module(tmp_path: Path, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(source)


@pytest.mark.parametrize(
    ("source", "spec", "message"),
    [
        ("import nonexistent_dependency_xyz\n", "badimport", "Failed to import 'badimport'"),
        ("application = None\napp = 1\n", "noattr:missing", "Failed to find attribute 'missing'"),
        ("app = 1\n", "notcallable:app", "must be callable"),
    ],
)
def test_app_load_errors_exit_4(tmp_path: Path, source: str, spec: str, message: str) -> None:
    write_module(tmp_path, spec.split(":")[0], source)
    for extra in ([], ["--preload"]):
        result = run_corral(["--chdir", str(tmp_path), "-b", "127.0.0.1:0", *extra, spec])
        assert result.returncode == 4, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr.split(message)[0]


def test_missing_module_exit_4(tmp_path: Path) -> None:
    result = run_corral(["--chdir", str(tmp_path), "-b", "127.0.0.1:0", "no_such_module_abc"])
    assert result.returncode == 4
    assert "No module named 'no_such_module_abc'" in result.stderr


def test_import_error_shows_traceback(tmp_path: Path) -> None:
    write_module(tmp_path, "raiser", "raise RuntimeError('exploded at import')\n")
    result = run_corral(["--chdir", str(tmp_path), "--preload", "raiser"])
    assert result.returncode == 4
    assert "Failed to import 'raiser'" in result.stderr
    assert "Traceback" in result.stderr and "exploded at import" in result.stderr


def test_worker_boot_failure_exit_3(tmp_path: Path) -> None:
    conf = tmp_path / "conf.py"
    conf.write_text("def post_worker_init(worker):\n    raise SystemExit(3)\n")
    write_module(tmp_path, "okapp", "def application(e, s):\n    return []\n")
    result = run_corral(["--chdir", str(tmp_path), "-c", str(conf), "-b", "127.0.0.1:0", "okapp"])
    assert result.returncode == 3, result.stderr
    assert "Worker failed to boot" in result.stderr


def test_bad_setting_is_one_line_error() -> None:
    result = run_corral(["--workers", "zero", "support.apps:echo"])
    assert result.returncode != 0
    assert "workers" in result.stderr and "zero" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_and_version(tmp_path: Path) -> None:
    ok = run_corral(["--check-config", "--pythonpath", "tests", "support.apps:echo"])
    assert ok.returncode == 0, ok.stderr
    bad = run_corral(["--check-config", "--pythonpath", "tests", "support.apps:not_callable"])
    assert bad.returncode == 4
    version = run_corral(["--version"])
    assert version.returncode == 0 and "corral" in version.stdout


def test_factory_spec() -> None:
    with Server('support.apps:create_app("hello", shout=True)') as srv:
        assert get(srv.port, "/") == (200, b"HELLO")


def test_config_precedence(tmp_path: Path) -> None:
    """file < CORRAL_CMD_ARGS < command line, seen through --print-config."""
    conf = tmp_path / "corral.conf.py"
    conf.write_text("workers = 3\ntimeout = 11\nkeepalive = 7\n")

    def printed(args: list[str], env: dict[str, str] | None = None) -> dict[str, str]:
        result = run_corral(["--print-config", *args, "x:y"], cwd=str(tmp_path), env=env)
        assert result.returncode == 0, result.stderr
        pairs = (line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)
        return {k.strip(): v.strip() for k, v in pairs}

    assert printed([])["workers"] == "3"
    env = {"CORRAL_CMD_ARGS": "--workers 4 --timeout 12", "WEB_CONCURRENCY": "9"}
    seen = printed([], env)
    assert (seen["workers"], seen["timeout"], seen["keepalive"]) == ("4", "12", "7")
    assert printed(["-w", "5"], env)["workers"] == "5"
    assert printed([], {"WEB_CONCURRENCY": "9"})["workers"] == "3"
    (tmp_path / "corral.conf.py").unlink()
    assert printed([], {"WEB_CONCURRENCY": "9"})["workers"] == "9"


def test_sigkill_worker_is_replaced() -> None:
    with Server("support.apps:echo", workers=2) as srv:
        pids = srv.worker_pids()
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        srv.wait_log("Booting worker with pid", 3)
        wait_for(lambda: len(srv.worker_pids()) == 2 and pids[0] not in srv.worker_pids())
        assert "SIGKILL" in srv.log()
        assert get(srv.port, "/after")[0] == 200


@pytest.mark.parametrize("kind", [["-k", "sync"], ["-k", "gthread", "--threads", "2"]])
def test_term_lets_slow_request_finish(kind: list[str]) -> None:
    srv = Server("support.apps:echo", *kind, "--graceful-timeout", "10")
    with srv:
        result: dict[str, object] = {}

        def slow() -> None:
            result["resp"] = get(srv.port, "/slow?1.5")

        t = threading.Thread(target=slow)
        t.start()
        wait_for(lambda: "/slow" in srv.log() or True)
        time.sleep(0.3)  # let the request reach the worker before TERM
        srv.signal(signal.SIGTERM)
        t.join(15)
        assert result.get("resp") == (200, b"slow")
        assert srv.wait_exit() == 0


def test_int_stops_quickly() -> None:
    with Server("support.apps:echo", workers=2) as srv:
        srv.signal(signal.SIGINT)
        assert srv.wait_exit() == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["INT", "QUIT"])
@pytest.mark.parametrize(
    "kind", [["-k", "sync"], ["-k", "gthread", "--threads", "2"]], ids=["sync", "gthread"]
)
def test_int_and_quit_cut_a_slow_request(tmp_path: Path, kind: list[str], sig: int) -> None:
    """INT and QUIT are the quick shutdown (TERM is the graceful one): the master must not
    wait for a request in flight, even with a long graceful_timeout."""
    seen = tmp_path / "seen"
    env = {"CORRAL_TEST_SEEN": str(seen)}
    with Server("support.apps:echo", *kind, "--graceful-timeout", "30", env=env) as srv:
        outcome: dict[str, object] = {}

        def slow() -> None:
            try:
                outcome["resp"] = get(srv.port, "/slow?10", timeout=20)
            except (ConnectionError, http.client.HTTPException) as exc:
                outcome["error"] = exc

        client = threading.Thread(target=slow)
        client.start()
        wait_for(lambda: seen.exists() and "/slow" in seen.read_text(), what="the slow request")
        started = time.monotonic()
        srv.signal(sig)
        assert srv.wait_exit(timeout=8) == 0
        assert time.monotonic() - started < 3, "the master waited for the request in flight"
        client.join(15)
        assert "resp" not in outcome, "the slow request should have been cut"
        assert "error" in outcome


def test_timeout_kills_stuck_worker_with_stack() -> None:
    with Server("support.apps:echo", "--timeout", "2") as srv:
        pid = json.loads(get(srv.port, "/pid")[1])["pid"]
        with contextlib.suppress(ConnectionError, http.client.HTTPException):
            get(srv.port, "/slow?30", timeout=15)
        srv.wait_log("WORKER TIMEOUT", timeout=15)
        srv.wait_log("time.sleep(seconds)", timeout=10)
        srv.wait_log("Booting worker with pid", 2)
        assert get(srv.port, "/pid")[0] == 200
        assert json.loads(get(srv.port, "/pid")[1])["pid"] != pid


def test_max_requests_recycles_worker() -> None:
    with Server("support.apps:echo", "--max-requests", "3") as srv:
        pids = {json.loads(get(srv.port, "/pid")[1])["pid"] for _ in range(7)}
        assert len(pids) >= 2
        srv.wait_log("Autorestarting worker")


def test_ttin_ttou() -> None:
    with Server("support.apps:echo", workers=2) as srv:
        srv.signal(signal.SIGTTIN)
        wait_for(lambda: len(srv.worker_pids()) == 3)
        srv.signal(signal.SIGTTOU)
        wait_for(lambda: len(srv.worker_pids()) == 2)


def test_pidfile(tmp_path: Path) -> None:
    pidfile = tmp_path / "corral.pid"
    with Server("support.apps:echo", "--pid", str(pidfile)) as srv:
        assert srv.proc is not None
        wait_for(pidfile.exists)
        assert int(pidfile.read_text()) == srv.proc.pid
        srv.signal(signal.SIGTERM)
        srv.wait_exit()
    assert not pidfile.exists()


def test_max_worker_memory_recycles_worker() -> None:
    with Server("support.apps:echo", "--max-worker-memory", "150") as srv:
        first = json.loads(get(srv.port, "/grow?200")[1])["pid"]
        srv.wait_log("over max_worker_memory", timeout=10)
        srv.wait_log("max_worker_memory exceeded", timeout=10)
        srv.wait_booted(2)
        assert json.loads(get(srv.port, "/pid")[1])["pid"] != first


DIES_WITH_3 = """
import os

def application(environ, start_response):
    if environ["PATH_INFO"] == "/die":
        os._exit(3)  # the boot-failure status, from a worker that has served
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.mark.parametrize("kind", [["-k", "sync"], ["-k", "gthread"]], ids=["sync", "gthread"])
def test_served_worker_exiting_3_is_replaced_not_a_boot_failure(
    tmp_path: Path, kind: list[str]
) -> None:
    write_module(tmp_path, "dies3", DIES_WITH_3)
    with Server("dies3", *kind, "--chdir", str(tmp_path)) as srv:
        status, first = get(srv.port, "/")
        assert status == 200
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            get(srv.port, "/die")
        srv.wait_log(f"Worker (pid:{int(first)}) exited with code 3")
        srv.wait_booted(2)
        status, second = get(srv.port, "/")
        assert status == 200 and second != first
        assert "failed to boot" not in srv.log()


# The engine calls worker.retire(REASON_STUCK_REQUEST) when a request thread runs past
# `timeout`; this app does the same from the request itself, then holds its thread until the
# test lets it go, so that the master's side can be watched without waiting for a timeout.
STUCK_APP = """
import os
import time

from corral.workers.heartbeat import REASON_STUCK_REQUEST

WORKER = None  # set by the post_worker_init hook
RELEASE = {release!r}


def application(environ, start_response):
    if environ["PATH_INFO"] == "/stuck":
        WORKER.retire(REASON_STUCK_REQUEST)
        deadline = time.monotonic() + 30
        while not os.path.exists(RELEASE) and time.monotonic() < deadline:
            time.sleep(0.01)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""

STUCK_CONF = """
def post_worker_init(worker):
    import stuckapp
    stuckapp.WORKER = worker
"""


def test_worker_with_stuck_request_is_replaced_at_once(tmp_path: Path) -> None:
    release = tmp_path / "release"
    write_module(tmp_path, "stuckapp", STUCK_APP.format(release=str(release)))
    conf = tmp_path / "stuck.conf.py"
    conf.write_text(STUCK_CONF)
    args = ["-k", "gthread", "--threads", "2", "-c", str(conf), "--chdir", str(tmp_path)]
    with Server("stuckapp", *args, "--metrics-bind", "127.0.0.1:0") as srv:
        found = re.search(r"Serving metrics at: http://127\.0\.0\.1:(\d+)/", srv.log())
        assert found is not None
        metrics_port = int(found.group(1))
        first = int(get(srv.port, "/")[1])
        stuck = threading.Thread(target=lambda: get(srv.port, "/stuck"))
        stuck.start()
        try:
            srv.wait_log(
                f"Worker (pid:{first}) is retiring: a request ran past timeout; "
                "starting its replacement now"
            )
            srv.wait_booted(2)
            assert alive(first), "the replacement must start while the old worker still runs"
            assert get(srv.port, "/")[0] == 200
        finally:
            release.touch()
            stuck.join(15)
        srv.wait_log(f"Worker exiting (pid: {first}): a request ran past timeout")
        metrics = get(metrics_port, "/metrics")[1].decode()
        assert 'corral_worker_restarts_total{cause="stuck_request"} 1' in metrics, metrics
