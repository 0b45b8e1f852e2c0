"""The control socket of the real server: `corral ctl`, Gunicorn's own `gunicornc` against
corral, and `corral ctl` against a real Gunicorn 27; the socket's mode and directory, the
owner-only commands (SO_PEERCRED), and clients that misbehave."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.control.client import ClientError, CommandFailed, ControlClient
from corral.control.protocol import encode
from support.client import get_status
from support.server import ROOT, Server, alive, read_pid, wait_for

PEERS = ROOT / "bench" / ".peers" / "bin"


def _gunicorn_tool(name: str) -> Path:
    """Gunicorn 27's own programs: from the test environment (requirements-test.txt installs
    gunicorn to compare against), else from the benchmark's peers."""
    here = Path(sys.executable).parent / name
    return here if here.exists() else PEERS / name


GUNICORNC = _gunicorn_tool("gunicornc")
GUNICORN = _gunicorn_tool("gunicorn")


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A directory other users can traverse (pytest's tmp_path is 0700), for the uid tests."""
    path = Path(tempfile.mkdtemp(prefix="corral-ctl-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for item in path.iterdir():
            item.unlink()
        path.rmdir()


def ctl(*args: str, env: dict[str, str] | None = None, user: int | None = None) -> str:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **(env or {}))
    done = subprocess.run(
        [sys.executable, "-m", "corral", "ctl", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=full_env,
        user=user,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def get(port: int, target: str) -> int:
    return get_status(port, target)


def served(path: Path) -> int:
    with ControlClient(str(path)) as client:
        return sum(w["requests"] for w in client.send("show workers")["workers"])


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(20)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_corral_ctl_shows_and_changes_workers(sock_dir: Path) -> None:
    path = sock_dir / "corral.ctl"
    with Server("support.apps:echo", "--control-socket", str(path), workers=2) as srv:
        srv.wait_log("Control socket listening at " + str(path))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        for _ in range(3):
            assert get(srv.port, "/pid") == 200
        wait_for(lambda: served(path) == 3, what="3 requests in show workers")
        data = json.loads(ctl("-s", str(path), "-j", "-c", "show workers"))
        assert data["count"] == 2
        for row in data["workers"]:
            assert row["state"] == "serving" and row["booted"] is True
            assert row["rss"] > 1 << 20 and row["in_flight"] == 0
            assert row["last_heartbeat"] >= 0 and row["aborted"] is False
        assert sorted(row["pid"] for row in data["workers"]) == sorted(srv.worker_pids())
        table = ctl("-s", str(path), "-c", "show workers")
        assert table.splitlines()[0].split() == [
            "PID", "AGE", "STATE", "UPTIME", "REQUESTS", "IN", "FLIGHT", "RSS", "HEARTBEAT",
        ]  # fmt: skip
        assert "2 workers" in table
        added = json.loads(ctl("-s", str(path), "-j", "-c", "worker add 2"))
        assert added == {"added": 2, "previous": 2, "total": 4}
        wait_for(lambda: len(srv.worker_pids()) == 4)
        victim = srv.worker_pids()[0]
        assert json.loads(ctl("-s", str(path), "-j", "-c", f"worker kill {victim}")) == {
            "success": True,
            "killed": victim,
        }
        wait_for(lambda: victim not in srv.worker_pids() and len(srv.worker_pids()) == 4)
        removed = json.loads(ctl("-s", str(path), "-j", "-c", "worker remove 3"))
        assert removed == {"removed": 3, "previous": 4, "total": 1}
        wait_for(lambda: len(srv.worker_pids()) == 1)
        stats = json.loads(ctl("-s", str(path), "-j", "-c", "show stats"))
        assert stats["pid"] == srv.proc.pid  # type: ignore[union-attr]
        assert stats["workers_target"] == 1 and stats["workers_spawned"] >= 5
        assert stats["requests_served"] >= 3 and stats["counting"] is False
        listeners = json.loads(ctl("-s", str(path), "-j", "-c", "show listeners"))
        assert listeners["listeners"][0]["address"] == f"http://127.0.0.1:{srv.port}"
        config = json.loads(ctl("-s", str(path), "-j", "-c", "show config"))
        assert config["control_socket"] == str(path) and config["workers"] == 2
        ctl("-s", str(path), "-c", "reload")
        srv.wait_log("Hang up: Master")
        ctl("-s", str(path), "-c", "shutdown graceful")
        assert srv.wait_exit() == 0
        assert not path.exists()  # the master removed its socket
        assert "Traceback" not in srv.log()


def test_show_stats_with_prometheus_counters(sock_dir: Path) -> None:
    path = sock_dir / "corral.ctl"
    args = ("--control-socket", str(path), "--metrics-bind", "127.0.0.1:0")
    with Server("support.apps:echo", *args, workers=1) as srv:
        srv.wait_log("Control socket listening at")
        for target in ("/pid", "/pid", "/nothing-here"):
            get(srv.port, target)
        with ControlClient(str(path)) as client:
            stats = wait_for(lambda: client.send("show stats")["requests_total"] == 3 or None)
            stats = client.send("show stats")
            connections = client.send("show connections")
        assert stats["counting"] is True and stats["in_flight"] == 0
        assert sum(stats["status_codes"].values()) == 3
        assert stats["duration_seconds"]["count"] == 3
        assert set(connections["total"]) == {"head", "body", "queued", "serving", "writing", "idle"}


def test_gunicornc_works_against_corral(sock_dir: Path) -> None:
    if not GUNICORNC.exists():
        pytest.skip("Gunicorn 27's gunicornc is not installed (pip install gunicorn)")
    path = sock_dir / "corral.ctl"
    with Server("support.apps:echo", "--control-socket", str(path), workers=2) as srv:
        srv.wait_log("Control socket listening at")

        def gunicornc(command: str, *flags: str) -> str:
            done = subprocess.run(
                [str(GUNICORNC), "-s", str(path), "-c", command, *flags],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        table = gunicornc("show workers")
        pids = srv.worker_pids()
        assert all(str(pid) in table for pid in pids) and "Total: 2 workers" in table
        assert json.loads(gunicornc("worker add 1", "-j"))["total"] == 3
        wait_for(lambda: len(srv.worker_pids()) == 3)
        assert "WEB WORKERS (3)" in gunicornc("show all")
        assert "Workers target:   3" in gunicornc("show stats")
        assert f"http://127.0.0.1:{srv.port}" in gunicornc("show listeners")
        assert "worker add [N]" in gunicornc("help")
        gunicornc("shutdown quick")
        assert srv.wait_exit() == 0


GUNICORN_APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
"""


def test_corral_ctl_works_against_gunicorn(sock_dir: Path, tmp_path: Path) -> None:
    if not GUNICORN.exists():
        pytest.skip("bench/.peers has no Gunicorn")
    (tmp_path / "gapp.py").write_text(GUNICORN_APP)
    path = sock_dir / "gunicorn.ctl"
    log = tmp_path / "gunicorn.log"
    bind = f"unix:{sock_dir / 'http.sock'}"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(GUNICORN), "-w", "2", "-b", bind, "--control-socket", str(path), "gapp:app"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "Booting worker" in log.read_text() and path.exists(), timeout=20)
        data = wait_for(lambda: _try_workers(path, 2), timeout=20)
        assert isinstance(data, dict)
        table = ctl("-s", str(path), "-c", "show workers")
        assert all(str(row["pid"]) in table for row in data["workers"])
        assert "-" in table.splitlines()[2]  # corral's columns that Gunicorn does not send
        added = json.loads(ctl("-s", str(path), "-j", "-c", "worker add 1"))
        assert added["total"] == 3
        wait_for(lambda: _try_workers(path, 3), timeout=20)
        assert "workers" in ctl("-s", str(path), "-c", "show stats")
        ctl("-s", str(path), "-c", "shutdown")
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _try_workers(path: Path, count: int) -> dict[str, object] | None:
    try:
        with ControlClient(str(path), timeout=5) as client:
            data = client.send("show workers")
    except (ClientError, CommandFailed):
        return None
    return data if data.get("count") == count else None


def as_user(uid: int, path: Path, command: str) -> dict[str, object]:
    """One command sent from a forked child that has become `uid` (the interpreter itself may
    not be reachable by that user, so no new process is executed)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(10)
                sock.connect(str(path))
                sock.sendall(encode({"id": 7, "command": command, "args": []}))
                answer = b""
                while len(answer) < 4 or len(answer) < 4 + struct.unpack(">I", answer[:4])[0]:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            os.write(write_end, answer[4:])
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        payload = fh.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    answer = json.loads(payload)
    assert answer["id"] == 7
    return answer


def test_owner_only_commands_and_the_socket_mode(sock_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    path = sock_dir / "corral.ctl"
    args = ("--control-socket", str(path), "--control-socket-mode", "0666")
    with Server("support.apps:echo", *args, workers=1) as srv:
        srv.wait_log("Control socket listening at")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        nobody = 65534
        shown = as_user(nobody, path, "show workers")
        assert shown["status"] == "ok" and shown["data"]["count"] == 1
        refused = as_user(nobody, path, "worker add 1")
        assert refused["status"] == "error" and "Permission denied" in refused["error"]
        assert len(srv.worker_pids()) == 1
        assert json.loads(ctl("-s", str(path), "-j", "-c", "worker add 1"))["total"] == 2


def test_misbehaving_clients_are_dropped_and_the_master_carries_on(sock_dir: Path) -> None:
    path = sock_dir / "corral.ctl"
    with Server("support.apps:echo", "--control-socket", str(path), workers=1) as srv:
        srv.wait_log("Control socket listening at")
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(str(path))
        # A fork while it is connected: the worker must not keep its connection open.
        srv.signal(signal.SIGTTIN)
        wait_for(lambda: len(srv.worker_pids()) == 2)
        garbage = socket.socket(socket.AF_UNIX)
        garbage.connect(str(path))
        garbage.sendall(struct.pack(">I", 8) + b"not json")
        huge = socket.socket(socket.AF_UNIX)
        huge.connect(str(path))
        huge.sendall(struct.pack(">I", 0xFFFFFFFF) + b"{")
        array = socket.socket(socket.AF_UNIX)
        array.connect(str(path))
        array.sendall(encode({"x": 1})[:4] + b"[1,2,3]"[:7])
        assert closed_by_server(garbage)
        assert closed_by_server(huge)
        assert closed_by_server(array)
        with ControlClient(str(path)) as client:
            # Bad requests that are frames: an error answer, the connection stays.
            with pytest.raises(CommandFailed, match="Unknown command"):
                client.send("frobnicate")
            with pytest.raises(CommandFailed, match="Unknown show target"):
                client.send("show everything")
            with pytest.raises(CommandFailed, match="Invalid argument"):
                client.send("worker add many")
            with pytest.raises(CommandFailed, match="Unknown shutdown mode"):
                client.send("shutdown now")
            assert client.send("show workers")["count"] == 2
        assert closed_by_server(silent)  # sent nothing: dropped after a few seconds
        srv.signal(signal.SIGTTOU)  # signals are still handled as before
        wait_for(lambda: len(srv.worker_pids()) == 1)
        for sock in (silent, garbage, huge, array):
            sock.close()
        assert "Traceback" not in srv.log()


def test_a_socket_in_use_is_not_taken_over(sock_dir: Path) -> None:
    path = sock_dir / "corral.ctl"
    with Server("support.apps:echo", "--control-socket", str(path), workers=1) as first:
        first.wait_log("Control socket listening at")
        with Server("support.apps:echo", "--control-socket", str(path), workers=1) as second:
            second.wait_log(f"Control socket {path} is in use by another server")
            with ControlClient(str(path)) as client:
                assert client.send("show stats")["pid"] == first.proc.pid  # type: ignore[union-attr]
        assert path.exists()  # the second server did not remove the first one's socket


def test_default_paths_and_a_stale_socket(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    stale = home / ".corral" / "corral.ctl"
    with Server("support.apps:echo", workers=1, env=env) as srv:
        srv.wait_log(f"Control socket listening at {stale}")
        assert stat.S_IMODE(os.stat(stale.parent).st_mode) == 0o700
        assert "serving" in ctl("-c", "show workers", env=env)
        os.killpg(srv.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        srv.proc.wait(10)  # type: ignore[union-attr]
    assert stale.exists()  # left behind by the killed master: nobody answers on it
    runtime = tmp_path / "run"
    runtime.mkdir()
    with Server("support.apps:echo", workers=1, env=dict(env, XDG_RUNTIME_DIR=str(runtime))) as srv:
        srv.wait_log(f"Control socket listening at {runtime / 'corral.ctl'}")
    with Server("support.apps:echo", workers=1, env=env) as srv:
        srv.wait_log(f"Control socket listening at {stale}")  # the stale socket replaced
        assert "serving" in ctl("-c", "show workers", env=env)
    with Server("support.apps:echo", "--no-control-socket", workers=1, env=env) as srv:
        assert "Control socket" not in srv.log()


def _master_pid(path: Path) -> int | None:
    try:
        with ControlClient(str(path), timeout=5) as client:
            return int(client.send("show stats")["pid"])
    except (ClientError, CommandFailed):
        return None


def test_binary_upgrade_hands_the_socket_to_the_new_master(sock_dir: Path) -> None:
    path = sock_dir / "corral.ctl"
    pidfile = sock_dir / "corral.pid"
    args = ("--control-socket", str(path), "--pid", str(pidfile))
    with Server("support.apps:echo", *args, workers=1) as srv:
        assert srv.proc is not None
        old = srv.proc.pid
        srv.wait_log("Control socket listening at")
        srv.signal(signal.SIGUSR2)
        new = int(wait_for(lambda: read_pid(Path(f"{pidfile}.2")), 15))  # type: ignore[arg-type]
        srv.wait_booted(2)
        assert _master_pid(path) == old  # the old master keeps it while it runs
        assert "is in use by another server" not in srv.log()
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit() == 0
        try:
            wait_for(lambda: _master_pid(path) == new, 15, "the new master on the socket")
        finally:
            os.kill(new, signal.SIGTERM)
            wait_for(lambda: not alive(new), 15)
        assert not path.exists()


def test_corral_ctl_prompt(sock_dir: Path) -> None:
    path = sock_dir / "corral.ctl"
    with Server("support.apps:echo", "--control-socket", str(path), workers=1) as srv:
        srv.wait_log("Control socket listening at")
        done = subprocess.run(
            [sys.executable, "-m", "corral", "ctl", "-s", str(path)],
            input="help\n\nshow workers\nfrobnicate\nshow listeners\nquit\n",
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert f"Connected to {path}" in out
        assert "worker add [N]" in out and "1 workers" in out
        assert "Error: Unknown command: frobnicate" in out
        assert f"http://127.0.0.1:{srv.port}" in out  # the session went on after the error
    missing = subprocess.run(
        [sys.executable, "-m", "corral", "ctl", "-s", str(path), "-c", "help"],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )
    assert missing.returncode == 1 and "Cannot connect to" in missing.stderr


def test_asgi_workers_are_listed(sock_dir: Path) -> None:
    path = sock_dir / "corral.ctl"
    args = ("-k", "asgi", "--control-socket", str(path))
    with Server("support.asgi_apps:app", *args, workers=2) as srv:
        srv.wait_log("Control socket listening at")
        data = wait_for(
            lambda: (
                (d := json.loads(ctl("-s", str(path), "-j", "-c", "show workers")))
                and all(w["state"] == "serving" for w in d["workers"])
                and d
            )
        )
        assert isinstance(data, dict)
        assert sorted(w["pid"] for w in data["workers"]) == sorted(srv.worker_pids())
        # Without metrics the asgi worker still has the gauge block `show workers` reads.
        assert all(isinstance(w["requests"], int) and w["rss"] > 0 for w in data["workers"])
