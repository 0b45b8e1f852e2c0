"""What the scenarios read about the server's processes from /proc: resident memory and open
descriptors, once or sampled in a thread while a transfer runs."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable

from support.server import Server, wait_for


def rss_mib(pid: int) -> float | None:
    """VmRSS of `pid` in MiB (None once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None


def only_worker(srv: Server) -> int:
    pids = srv.worker_pids()
    assert len(pids) == 1, f"expected one worker, found {pids}"
    return pids[0]


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a master's workers)."""
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return [int(p) for p in out.split()]


def largest_rss(srv: Server | list[int]) -> float | None:
    """The largest worker RSS (workers are interchangeable; the largest is the one to watch)."""
    pids = srv if isinstance(srv, list) else srv.worker_pids()
    values = [v for v in map(rss_mib, pids) if v is not None]
    return max(values) if values else None


def largest_fds(srv: Server | list[int]) -> int | None:
    pids = srv if isinstance(srv, list) else srv.worker_pids()
    values = [v for v in map(fd_count, pids) if v is not None]
    return max(values) if values else None


def settle_fds(pid: int, baseline: int, timeout: float = 15.0) -> int:
    """Wait until `pid` holds no more descriptors than `baseline`; return what it holds."""
    wait_for(
        lambda: (fd_count(pid) or 0) <= baseline,
        timeout,
        f"worker {pid} back to {baseline} descriptors (has {fd_count(pid)})",
    )
    return fd_count(pid) or 0


def steady_fds(pid: int, quiet: float = 0.2, timeout: float = 10.0) -> int:
    """The descriptors `pid` holds once the count has not changed for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = fd_count(pid), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"descriptors of {pid} never settled (last {last})")
        time.sleep(0.02)
        now = fd_count(pid)
        if now != last:
            last, since = now, time.monotonic()
    assert last is not None, f"process {pid} is gone"
    return last


class PeakRss:
    """Samples a process's VmRSS every few milliseconds in a thread; `.peak` in MiB."""

    def __init__(self, pid: int | Callable[[], int], interval: float = 0.005) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0.0
        self.samples = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.stopping.wait(self.interval):
            pid = self.pid() if callable(self.pid) else self.pid
            value = rss_mib(pid)
            if value is not None:
                self.peak = max(self.peak, value)
                self.samples += 1

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)
