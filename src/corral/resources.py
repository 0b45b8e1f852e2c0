"""Facts about processes and the host that the master reports: OOM kills, memory, limits.

  OomCounter      the kernel's count of OOM kills for our cgroup (or the whole system). The
                  master reads it at start and after a worker died by SIGKILL: a rise means the
                  OOM killer, not an operator, killed the worker.
  rss_bytes       a process's resident set size, in one read of /proc/<pid>/statm.
  limit_warnings  one-line warnings when RLIMIT_NOFILE or net.core.somaxconn are too low for
                  the configured connections and backlog.

Every file location is a parameter (defaults are the real /proc and /sys/fs/cgroup) so tests
can pass a fake tree. This module must never change a limit, a sysctl or a cgroup, never log
(the master words and logs what it finds), and never raise from a read of a counter that may be
absent: absent facts are None or no warning.
"""

from __future__ import annotations

import os
import resource

OOM_KILL = "oom_kill"
# Descriptors a worker needs beyond its connections: listeners, log files, epoll, the
# application's own files and sockets (database connections, templates).
FD_HEADROOM = 64


def _read_counter(path: str, key: str) -> int | None:
    """The value of the `key value` line of a flat-keyed kernel file, or None."""
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _cgroup_paths(proc_root: str) -> tuple[str | None, str | None]:
    """Our cgroup v2 path and cgroup v1 memory-controller path, from /proc/self/cgroup."""
    unified = memory = None
    try:
        with open(os.path.join(proc_root, "self", "cgroup")) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None, None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            unified = path
        elif "memory" in controllers.split(","):
            memory = path
    return unified, memory


class OomCounter:
    """Reads the OOM-kill counter of the first source that has one, chosen when built:

    1. cgroup v2: <cgroup_root>/<path>/memory.events, `oom_kill` (kills in our cgroup and
       below it), where /proc/self/cgroup has the line `0::<path>`; then
       <cgroup_root>/memory.events, for containers that mount their own cgroup there while
       /proc/self/cgroup shows the host's path;
    2. cgroup v1: <cgroup_root>/memory/<path>/memory.oom_control, `oom_kill`;
    3. <proc_root>/vmstat, `oom_kill`: kills anywhere on the host (kernel 4.13 and later).

    `source` names the file (empty when none has the counter); `read()` is None then, or when
    the file cannot be read any more.
    """

    def __init__(self, proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> None:
        unified, memory = _cgroup_paths(proc_root)
        candidates = []
        if unified is not None:
            candidates.append(_under(cgroup_root, unified, "memory.events"))
            candidates.append(os.path.join(cgroup_root, "memory.events"))
        if memory is not None:
            candidates.append(
                _under(os.path.join(cgroup_root, "memory"), memory, "memory.oom_control")
            )
        candidates.append(os.path.join(proc_root, "vmstat"))
        self.source = next((c for c in candidates if _read_counter(c, OOM_KILL) is not None), "")

    def read(self) -> int | None:
        return _read_counter(self.source, OOM_KILL) if self.source else None


def _under(root: str, cgroup: str, name: str) -> str:
    return os.path.join(root, cgroup.lstrip("/"), name)


def rss_bytes(pid: int | None = None, proc_root: str = "/proc") -> int:
    """Resident set size of `pid` (default: this process), in bytes.

    Raises OSError (FileNotFoundError) when the process does not exist.
    """
    path = os.path.join(proc_root, "self" if pid is None else str(pid), "statm")
    with open(path, "rb") as fh:
        fields = fh.read().split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def limit_warnings(
    backlog: int,
    worker_connections: int,
    workers: int,
    nofile: tuple[int, int] | None = None,
    somaxconn_path: str = "/proc/sys/net/core/somaxconn",
    file_max_path: str = "/proc/sys/fs/file-max",
) -> list[str]:
    """Warnings, one line each, about limits below what the settings need.

    `worker_connections` is the number of connections one worker may hold open at once.
    `nofile` is the (soft, hard) RLIMIT_NOFILE, this process's by default; workers inherit it.
    """
    warnings = []
    need = worker_connections + FD_HEADROOM
    soft, hard = nofile if nofile is not None else resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        how = (
            f"raise the soft limit to at least {need} (ulimit -n {need}, or LimitNOFILE={need} "
            "in the systemd unit)"
        )
        if hard != resource.RLIM_INFINITY and hard < need:
            how += f"; the hard limit ({hard}) must be raised too"
        warnings.append(
            f"The open files limit (RLIMIT_NOFILE) is {soft}, too low for --worker-connections "
            f"{worker_connections} plus {FD_HEADROOM} other descriptors per worker: {how}."
        )
    somaxconn = _read_int(somaxconn_path)
    if somaxconn is not None and somaxconn < backlog:
        warnings.append(
            f"net.core.somaxconn is {somaxconn}, below --backlog {backlog}: the kernel silently "
            f"shortens every listen queue to {somaxconn}; raise it with "
            f"sysctl -w net.core.somaxconn={backlog}."
        )
    file_max = _read_int(file_max_path)
    total = need * max(workers, 1)
    if file_max is not None and file_max < total:
        warnings.append(
            f"fs.file-max is {file_max}, below the {total} descriptors the workers may hold "
            f"together ({workers} x {need}): raise it with sysctl -w fs.file-max={total}."
        )
    return warnings
