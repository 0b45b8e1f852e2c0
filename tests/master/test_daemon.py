"""daemonize() in a real subprocess: new session, detached from its launcher, std fds nulled."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import corral

SRC = str(Path(corral.__file__).resolve().parents[1])

# Reports through an inherited pipe (which also shows that descriptors above 2 stay open), then
# waits to be killed by the test.
DAEMON = textwrap.dedent(
    """
    import json, os, sys, time
    from corral.master.daemon import daemonize

    report = int(sys.argv[1])
    print("before daemonize", flush=False)
    daemonize(0o027)
    info = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "pgid": os.getpgid(0),
        "cwd": os.getcwd(),
        "umask": os.umask(0o027),
        "std": [os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)],
    }
    os.write(report, json.dumps(info).encode())
    os.close(report)
    print("into /dev/null")
    time.sleep(120)
    """
)


def read_until_eof(fd: int, timeout: float) -> bytes:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
    raise AssertionError(f"no end of report before the deadline; got {b''.join(chunks)!r}")


def test_daemonize(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    env = {**os.environ, "PYTHONPATH": SRC}
    info: dict[str, Any] = {}
    try:
        launcher = subprocess.Popen(
            [sys.executable, "-c", DAEMON, str(write_end)],
            pass_fds=[write_end],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.close(write_end)
        write_end = -1
        # EOF on both pipes also shows that the daemon let go of the launcher's stdout/stderr.
        stdout, stderr = launcher.communicate(timeout=30)
        assert launcher.returncode == 0, stderr.decode()
        # Buffered output is flushed once, before the first fork, not once per process.
        assert stdout == b"before daemonize\n"
        info = json.loads(read_until_eof(read_end, timeout=30))
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        if "pid" in info:
            with contextlib.suppress(ProcessLookupError):
                os.kill(info["pid"], signal.SIGKILL)

    assert info["ppid"] not in (launcher.pid, os.getpid()), "not a child of the launcher"
    assert info["sid"] != os.getsid(0), "a new session"
    assert info["pgid"] == info["sid"]
    assert info["pid"] != info["sid"], "not a session leader, so it can never get a terminal"
    assert info["cwd"] == str(tmp_path)
    assert info["umask"] == 0o027
    assert info["std"] == ["/dev/null"] * 3
