"""A worker killed by the kernel's OOM killer is reported as such, from the kill counter.

The test makes a memory cgroup of its own with a small limit, starts corral inside it, and has
the application allocate past the limit: the kernel kills the worker, for real.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.resources import OomCounter
from support.server import Server, wait_for


def _memory_cgroup_dir() -> Path | None:
    """Our own memory cgroup directory (v1 `memory` controller or v2 unified), if any."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            base = Path("/sys/fs/cgroup") / line[3:].lstrip("/")
            if "memory" in (base / "cgroup.subtree_control").read_text(errors="ignore"):
                return base
    return None


@contextlib.contextmanager
def limited_cgroup(limit_bytes: int) -> Iterator[Path]:
    parent = _memory_cgroup_dir()
    if parent is None:
        pytest.skip("no memory cgroup to nest in")
    child = parent / f"corral-test-{os.getpid()}"
    try:
        child.mkdir()
        limit_file = (
            "memory.limit_in_bytes"
            if (child / "memory.limit_in_bytes").exists()
            else ("memory.max")
        )
        (child / limit_file).write_text(str(limit_bytes))
        swap = child / "memory.memsw.limit_in_bytes"
        if swap.exists():
            with contextlib.suppress(OSError):
                swap.write_text(str(limit_bytes))
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup here: {exc}")
    try:
        yield child
    finally:
        procs = child / "cgroup.procs"
        for pid in procs.read_text().split() if procs.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(OSError):
            wait_for(lambda: not procs.read_text().split(), 10)
            child.rmdir()


def test_oom_killed_worker_is_reported() -> None:
    with limited_cgroup(200 << 20) as cgroup:
        wrapper = ["sh", "-c", f'echo $$ > {cgroup / "cgroup.procs"} && exec "$@"', "sh"]
        with Server("support.apps:echo", wrapper=wrapper) as srv:
            if "memory" not in OomCounter().source and "vmstat" not in OomCounter().source:
                pytest.skip("no OOM-kill counter readable")
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn.request("GET", "/grow?400")
                conn.getresponse().read()
            conn.close()
            srv.wait_log("killed by the kernel's OOM killer", timeout=20)
            srv.wait_booted(2)
            assert "Perhaps out of memory" not in srv.log()


def test_plain_sigkill_is_not_called_oom() -> None:
    if not OomCounter().source:
        pytest.skip("no OOM-kill counter readable")
    with Server("support.apps:echo") as srv:
        os.kill(srv.worker_pids()[0], signal.SIGKILL)
        srv.wait_log("not the OOM killer")
        assert "killed by the kernel's OOM killer" not in srv.log()
