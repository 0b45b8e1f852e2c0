"""Run the real corral server as a subprocess on a socket the test binds to 127.0.0.1:0.

The test binds and listens first, then passes the socket with `--bind fd://N`, so there is no
fixed port and no race for one. The server runs in its own session; `stop()` TERMs the group,
waits, then KILLs, and the captured stderr is shown when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll `condition` until it returns something truthy, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def read_pid(path: Path) -> int:
    """The PID in a pidfile, or 0 while it is missing or being written."""
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Server:
    def __init__(
        self,
        app: str = "support.apps:echo",
        *args: str,
        workers: int = 1,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        bind: bool = True,
        workers_flag: bool = True,
        wrapper: Sequence[str] = (),
        error_log: Path | None = None,
        python: str | None = None,
    ) -> None:
        self.app = app
        # Another interpreter runs the same src/ (CORRAL_TEST_PYTHON: the whole suite's).
        self.python = python or os.environ.get("CORRAL_TEST_PYTHON") or sys.executable
        self.args = list(args)
        self.workers = workers
        self.env = env
        self.cwd = cwd
        self.bind = bind
        self.workers_flag = workers_flag
        self.wrapper = list(wrapper)  # a command prefix, e.g. to start inside a cgroup
        self.extra_fds: list[int] = []  # further descriptors to pass to the server
        self.error_log = error_log  # when the server logs to a file instead of stderr
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        # Closed in __exit__, after the log has been shown.
        self.log_file = tempfile.NamedTemporaryFile(prefix="corral-test-", suffix=".log")  # noqa: SIM115
        self.port = 0

    def command(self) -> list[str]:
        cmd = [*self.wrapper, self.python, "-m", "corral", "--pythonpath", str(TESTS)]
        if self.workers_flag:
            cmd += ["-w", str(self.workers)]
        if self.sock is not None:
            cmd += ["--bind", f"fd://{self.sock.fileno()}"]
        cmd += self.args
        if "asgi" in self.args and not any(a.startswith("--asgi-loop") for a in self.args):
            # The standard library's loop unless a test asks for another (uvloop, installed for
            # the tests, would be what `auto` picks): CORRAL_TEST_ASGI_LOOP=uvloop runs the
            # whole suite on uvloop instead.
            cmd += ["--asgi-loop", os.environ.get("CORRAL_TEST_ASGI_LOOP", "asyncio")]
        if self.app:
            cmd.append(self.app)
        return cmd

    def start(self, wait: bool = True) -> Server:
        if self.bind:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen(128)
            self.port = self.sock.getsockname()[1]
        env = dict(os.environ)
        env.pop("CORRAL_CMD_ARGS", None)
        env.pop("GUNICORN_CMD_ARGS", None)
        env.pop("WEB_CONCURRENCY", None)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(ROOT / "src")
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            self.command(),
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            pass_fds=[self.sock.fileno()] if self.sock is not None else self.extra_fds,
            start_new_session=True,
            env=env,
            cwd=self.cwd or str(ROOT),
        )
        if wait:
            self.wait_booted(self.workers)
        return self

    def log(self) -> str:
        text = Path(self.log_file.name).read_text(errors="replace")
        if self.error_log is not None and self.error_log.exists():
            text += self.error_log.read_text(errors="replace")
        return text

    def wait_log(self, text: str, count: int = 1, timeout: float = 10.0) -> None:
        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited ({self.proc.returncode}):\n{self.log()}")
            return self.log().count(text) >= count

        wait_for(seen, timeout, f"{text!r} x{count} in the log:\n{self.log()}")

    def wait_booted(self, count: int) -> None:
        self.wait_log("Booting worker with pid", count)

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            # Workers left behind by a killed master belong to our session: end them too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> Server:
        try:
            return self.start()
        except BaseException:
            self.stop()  # __exit__ does not run when __enter__ fails
            sys.stderr.write(f"--- server log ---\n{self.log()}\n")
            self.log_file.close()
            raise

    def __exit__(self, *exc: object) -> None:
        failed = exc[0] is not None
        self.stop()
        if failed:
            sys.stderr.write(f"--- server log ---\n{self.log()}\n")
        self.log_file.close()


def run_corral(
    args: Sequence[str],
    cwd: str | None = None,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run corral to completion (startup errors, --check-config, --version)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT / "src")
    for name in ("CORRAL_CMD_ARGS", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "PORT"):
        full_env.pop(name, None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "corral", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or str(ROOT),
        env=full_env,
        start_new_session=True,
    )
