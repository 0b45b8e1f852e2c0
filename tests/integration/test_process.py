"""Process management: --user/--group, --daemon with --pid, process titles."""

from __future__ import annotations

import http.client
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from support.server import Server, run_corral, wait_for


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in /proc/{pid}/status")


def get_status(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_workers_run_as_user_and_group() -> None:
    nobody = pwd.getpwnam("nobody")
    # --preload: the interpreter here lives under /root, which nobody cannot read.
    args = ["--preload", "--user", "nobody", "--group", str(nobody.pw_gid)]
    with Server("support.apps:echo", *args) as srv:
        assert get_status(srv.port) == 200
        (worker,) = srv.worker_pids()
        assert status_field(worker, "Uid").split()[0] == str(nobody.pw_uid)
        assert status_field(worker, "Gid").split()[0] == str(nobody.pw_gid)
        assert srv.proc is not None
        assert status_field(srv.proc.pid, "Uid").split()[0] == str(os.geteuid())


def test_daemon_writes_pidfile_and_serves(tmp_path: Path) -> None:
    pidfile = tmp_path / "d.pid"
    srv = Server("support.apps:echo", "--daemon", "--pid", str(pidfile))
    srv.start(wait=False)
    try:
        assert srv.wait_exit() == 0  # the launching process returns at once
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10))  # type: ignore[arg-type]
        assert pid != srv.proc.pid  # type: ignore[union-attr]
        assert os.getsid(pid) != os.getsid(0)  # a session of its own, away from ours
        wait_for(lambda: get_status(srv.port) == 200, 10)
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pidfile.exists(), 15)
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        srv.stop()


def test_process_titles() -> None:
    pytest.importorskip("setproctitle")
    with Server("support.apps:echo", "-n", "titled") as srv:
        assert srv.proc is not None
        wait_for(lambda: b"master [titled]" in Path(f"/proc/{srv.proc.pid}/cmdline").read_bytes())  # type: ignore[union-attr]
        (worker,) = srv.worker_pids()
        cmdline = Path(f"/proc/{worker}/cmdline").read_bytes()
        assert cmdline.startswith(b"corral: worker [titled]")


def test_bad_user_is_a_startup_error() -> None:
    result = run_corral(["--user", "no-such-user-xyz", "support.apps:echo"])
    assert result.returncode != 0
    assert "no-such-user-xyz" in result.stderr


def test_pid1_reaps_orphans_quietly() -> None:
    """As PID 1 of a container, the master adopts orphans: reap them, never report them."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a PID namespace")
    wrapper = ["unshare", "--pid", "--fork", "--mount-proc"]
    with Server("support.apps:echo", wrapper=wrapper, workers=2) as srv:
        for _ in range(5):
            assert get_status(srv.port) == 200
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            conn.request("GET", "/orphan")
            assert conn.getresponse().status == 200
            conn.close()
        wait_for(lambda: zombies_in(srv) == 0, 10)
        assert get_status(srv.port) == 200
        assert "Worker (pid" not in srv.log()  # no orphan reported as a failed worker
        assert srv.log().count("Booting worker") == 2


def zombies_in(srv: Server) -> int:
    out = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.startswith("Z") and "python" in line)


def test_pidfile_never_replaces_a_device() -> None:
    result = run_corral(["--pid", "/dev/null", "--pythonpath", "tests", "support.apps:echo"])
    assert result.returncode != 0
    assert "not a regular file" in result.stderr
    assert Path("/dev/null").is_char_device()
