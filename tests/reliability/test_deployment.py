"""The deployment recipes in examples/ do what docs/deployment.md says.

- corral.service + corral.socket: corral started from the unit's ExecStart, with a socket made
  from the socket unit's ListenStream and passed as systemd passes it (fd 3, LISTEN_FDS,
  LISTEN_PID), serves, reports READY=1 (Type=notify) and stops within TimeoutStopSec;
- Dockerfile and k8s.yaml (not built or deployed here): every flag they use exists, the grace
  period outlasts preStop plus --graceful-timeout, the probes hit the --health-path corral
  answers, and corral started with the manifest's command answers that path.
"""

from __future__ import annotations

import http.client
import json
import re
import shlex
import signal
import socket
import sys
from pathlib import Path

import pytest

from reliability.apps import APP
from reliability.figures import Figures
from support.server import ROOT, TESTS, Server, run_corral, wait_for

EXAMPLES = ROOT / "examples"


def unit(path: Path) -> dict[str, list[str]]:
    """A systemd unit's keys (every section together), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def notifications(sock: socket.socket, seen: list[str]) -> list[str]:
    while True:
        try:
            seen.append(sock.recv(4096).decode())
        except BlockingIOError:
            return seen


def listening_socket(address: str, backlog: int, tmp: Path) -> tuple[socket.socket, str]:
    """What systemd would create for ListenStream=address, with the path or port moved into
    the test's reach; returns it and the address to reach it at."""
    if address.startswith("/"):
        path = str(tmp / Path(address).name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
    else:
        host, _, _ = address.rpartition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((host or "127.0.0.1", 0))
        path = f"127.0.0.1:{sock.getsockname()[1]}"
    sock.listen(backlog)
    return sock, path


def test_systemd_units_serve_with_socket_activation(tmp_path: Path, figures: Figures) -> None:
    service, sockets = unit(EXAMPLES / "corral.service"), unit(EXAMPLES / "corral.socket")
    assert "corral.socket" in service["Requires"][0]
    assert service["Type"] == ["notify"]
    argv = shlex.split(service["ExecStart"][0])
    assert argv[0].endswith("/corral") and ":" in argv[-1]
    workers = int(option(argv, "--workers"))
    assert int(service["TimeoutStopSec"][0]) > int(option(argv, "--graceful-timeout"))
    (address,) = sockets["ListenStream"]
    listener, reach = listening_socket(address, int(sockets["Backlog"][0]), tmp_path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    # As systemd does it: the socket on fd 3, LISTEN_PID naming the process it is meant for.
    activate = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_FDS'] = '1'; "
        "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[2], sys.argv[2:])"
    )
    srv = Server(
        APP,  # the unit's own application is not installed here
        *argv[1:-1],
        workers=workers,
        workers_flag=False,
        bind=False,
        wrapper=[sys.executable, "-c", activate, str(listener.fileno())],
        env={"NOTIFY_SOCKET": str(tmp_path / "notify")},
    )
    srv.extra_fds = [listener.fileno()]
    seen: list[str] = []
    try:
        with srv:
            wait_for(lambda: any("READY=1" in m for m in notifications(notify, seen)), 15)
            listener.close()  # systemd keeps its copy; corral must be serving from its own
            for _ in range(20):
                if reach.startswith("/"):
                    conn: http.client.HTTPConnection = UnixConnection(reach)
                else:
                    conn = http.client.HTTPConnection(*reach.split(":"), timeout=10)
                conn.request("GET", "/activated")
                resp = conn.getresponse()
                assert resp.status == 200
                assert json.loads(resp.read())["PATH_INFO"] == "/activated"
                conn.close()
            srv.signal(signal.SIGTERM)
            assert srv.wait_exit(int(service["TimeoutStopSec"][0])) == 0
    finally:
        listener.close()
        notify.close()
    figures.sent = 20
    figures.note(f"ExecStart flags {' '.join(argv[1:-1])}; ListenStream={address}")
    figures.report()


def dockerfile_command() -> list[str]:
    text = (EXAMPLES / "Dockerfile").read_text()
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    return list(json.loads(cmd))


def k8s_command() -> list[str]:
    text = (EXAMPLES / "k8s.yaml").read_text()
    (cmd,) = re.findall(r"^\s+command: (\[\"corral\".*\])$", text, re.MULTILINE)
    return list(json.loads(cmd))


def test_k8s_grace_period_outlasts_prestop_and_graceful_timeout() -> None:
    text = (EXAMPLES / "k8s.yaml").read_text()
    grace = int(re.findall(r"terminationGracePeriodSeconds: (\d+)", text)[0])
    pre_stop = int(re.findall(r'command: \["sleep", "(\d+)"\]', text)[0])
    command = k8s_command()
    assert grace > pre_stop + int(option(command, "--graceful-timeout"))
    health = option(command, "--health-path")
    probes = re.findall(r"(readiness|liveness)Probe:\s+httpGet:\s+path: (\S+)", text)
    assert sorted(probes) == [("liveness", health), ("readiness", health)]
    assert int(re.findall(r"containerPort: (\d+)", text)[0]) == int(
        option(command, "--bind").rpartition(":")[2]
    )


@pytest.mark.parametrize("source", ["Dockerfile", "k8s.yaml", "corral.service"])
def test_example_flags_exist(source: str) -> None:
    argv = {
        "Dockerfile": dockerfile_command,
        "k8s.yaml": k8s_command,
        "corral.service": lambda: shlex.split(unit(EXAMPLES / "corral.service")["ExecStart"][0]),
    }[source]()
    known = set(re.findall(r"(--[a-z][\w-]*)", run_corral(["--help"]).stdout))
    unknown = {arg for arg in argv if arg.startswith("--")} - known
    assert unknown == set()
    check = run_corral([*argv[1:-1], "--pythonpath", str(TESTS), "--check-config", APP])
    assert check.returncode == 0, check.stderr


def test_k8s_probe_path_is_answered(tmp_path: Path) -> None:
    """corral started with the manifest's command answers the probes' path itself."""
    command = k8s_command()
    args = command[1:-1]
    bind_at = args.index("--bind")
    del args[bind_at : bind_at + 2]  # the test's own socket instead of 0.0.0.0:8000
    seen = tmp_path / "seen"  # what reached the application
    health = option(command, "--health-path")
    with Server(APP, *args, workers=2, env={"CORRAL_TEST_SEEN": str(seen)}) as srv:
        for path in (health, "/app"):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            conn.request("GET", path)
            assert conn.getresponse().status == 200, path
            conn.close()
    assert seen.read_text().splitlines() == ["GET /app"]
